# Copyright 2026 The nova-vtpm-migration Authors
#
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""The ``[vtpm_migration]`` option group."""

from oslo_config import cfg
from oslo_config import types

vtpm_migration_group = cfg.OptGroup(
    'vtpm_migration',
    title='Attested vTPM live migration options',
    help="""
Options of the nova-vtpm-migration plugin, which makes Nova live-migrate
instances that have a virtual TPM only to destinations whose hardware TPM
proves they are trustworthy, and moves the vTPM secret only wrapped to a
non-migratable key of the destination TPM.
""")

tpm_opts = [
    cfg.StrOpt('tcti',
        default='device:/dev/tpmrm0',
        help="""
TCTI configuration string of this host's hardware TPM.

The string is passed to tpm2-pytss (``TCTILdr.parse``). The kernel resource
manager is the right choice on a real host because it virtualises the
transient object slots; the plugin still flushes every object and session it
creates.

Possible values:

* ``device:/dev/tpmrm0`` (default): the kernel TPM resource manager.
* ``device:/dev/tpm0``: the raw device (only if nothing else uses the TPM).
* ``swtpm:host=127.0.0.1,port=2321``: an swtpm simulator (tests, demos).

Related options:

* ``state_path``: where this host's TPM key blobs are kept.
"""),
    cfg.FloatOpt('tpm_lock_timeout',
        default=30.0,
        min=0.1,
        help="""
Seconds to wait for exclusive access to the host TPM.

All TPM commands of this process are serialised through one lock per TPM.
A caller that cannot take the lock within this time gets a "TPM busy" error
instead of waiting forever.

Possible values:

* A positive number of seconds.
"""),
    cfg.IntOpt('srk_handle',
        default=0x81000001,
        min=0x81000000,
        max=0x817FFFFF,
        help="""
Persistent handle of the storage root key (SRK) in the owner hierarchy.

The binding, signing and sealing keys are children of this key. If nothing
is persisted at the handle, the plugin creates an ECC P-256 SRK from the
standard template and persists it there.

Possible values:

* A persistent handle between 0x81000000 and 0x817FFFFF.

Related options:

* ``ak_handle``
"""),
    cfg.IntOpt('ak_handle',
        default=0x81010010,
        min=0x81000000,
        max=0x817FFFFF,
        help="""
Persistent handle of this host's attestation key (AK).

The AK is a restricted ECC P-256 signing key created under the endorsement
key, so that quote clock and reset counters are not obfuscated. It is
created at enrollment and kept across restarts at this handle.

Possible values:

* A persistent handle between 0x81000000 and 0x817FFFFF.

Related options:

* ``srk_handle``
"""),
    cfg.IntOpt('signing_key_handle',
        default=0x81000010,
        min=0x81000000,
        max=0x817FFFFF,
        help="""
Persistent handle where this host keeps its receipt signing key loaded.

The signing key (an AK-certified ECC P-256 key under the SRK, kept as a
TPM-encrypted blob in ``state_path``) signs every manifest and receipt.
Persisting it saves a ``TPM2_Load`` and a transient object slot per
signature. The plugin checks that the object at the handle is its own key
(by name) and replaces it otherwise.

Possible values:

* A persistent handle between 0x81000000 and 0x817FFFFF, other than
  ``srk_handle`` and ``ak_handle``.

Related options:

* ``srk_handle``, ``ak_handle``
"""),
    cfg.StrOpt('owner_auth_file',
        help="""
File holding the authorisation value of the TPM's owner (storage) hierarchy.

The plugin needs the owner hierarchy to create and persist the storage root
key and the attestation key (``TPM2_CreatePrimary`` and
``TPM2_EvictControl`` under ``TPM_RH_OWNER``), normally once per host. Leave
it unset when the owner hierarchy has no authorisation value (as after
``tpm2_clear``). The value is read from the file only when such a command
runs, never logged, and never passed on a command line. The file must be a
regular file that other users can neither read nor write (for example
``chown root:nova``, ``chmod 0640``).

Format: the value's bytes, without one trailing newline; a file starting
with ``hex:`` holds a hex-encoded value. This is the value given to
``tpm2_changeauth -c owner`` (as ``str:`` or ``hex:``).

Possible values:

* Unset (default): the owner hierarchy has an empty authorisation value.
* An absolute path to a file readable by nova-compute and not by others.

Related options:

* ``endorsement_auth_file``
* ``srk_handle``, ``ak_handle``
"""),
    cfg.StrOpt('endorsement_auth_file',
        help="""
File holding the authorisation value of the TPM's endorsement hierarchy.

The plugin needs the endorsement hierarchy to recreate the endorsement key
(EK) that its certificate names (``TPM2_CreatePrimary`` under
``TPM_RH_ENDORSEMENT``) and to use an EK of the low-range TCG templates,
whose policy is ``PolicySecret(TPM_RH_ENDORSEMENT)`` (creating the
attestation key, answering credential challenges). Same format and
permission rules as ``owner_auth_file``.

Possible values:

* Unset (default): the endorsement hierarchy has an empty authorisation
  value.
* An absolute path to a file readable by nova-compute and not by others.

Related options:

* ``owner_auth_file``
* ``ek_types``
"""),
    cfg.ListOpt('ek_types',
        default=['EK-ECC256', 'EK-RSA2048'],
        item_type=types.String(choices=[
            'EK-ECC256', 'EK-RSA2048', 'EK-HIGH-ECC256', 'EK-HIGH-ECC384',
            'EK-HIGH-ECC521', 'EK-HIGH-RSA2048', 'EK-HIGH-RSA3072',
            'EK-HIGH-RSA4096']),
        help="""
Endorsement key types whose certificate is looked for, in order of
preference.

The types are the templates of the TCG EK Credential Profile: the low range
(``EK-RSA2048`` = L-1, certificate at NV index 0x01C00002; ``EK-ECC256`` =
L-2, 0x01C0000A) and the high range (``EK-HIGH-RSA2048`` = H-1, 0x01C00012;
``EK-HIGH-ECC256`` = H-2, 0x01C00014; ``EK-HIGH-ECC384`` = H-3,
0x01C00016; ...). The first type whose certificate is in the TPM's NV
becomes this host's identity. An ECC EK is preferred by default because a
hardware TPM creates it in a fraction of an RSA EK's time.

Changing this list can change the host's EK, and so its enrollment record.
The attestation verifier of this release accepts the low-range templates
(``EK-ECC256``, ``EK-RSA2048``) only: list a high-range type only once every
peer accepts it.

Possible values:

* A comma-separated list of the EK types above.

Related options:

* ``endorsement_auth_file``
"""),
]

trust_opts = [
    cfg.StrOpt('policy_file',
        default='/etc/nova/vtpm-migration-policy.json',
        help="""
Path of the attestation (trust) policy file.

The policy names the attestation CA (which certifies each compute host's
AK for its host name), the trusted EK certificate authorities, optional
revocation lists, an optional allow-list of host EK fingerprints, the PCR
selection and the allowed PCR values (several golden sets may be given),
an optional minimum TPM firmware version and the maximum evidence age. A
peer that violates any rule is refused, with the rule named in the error.
``nova-vtpm-migration policy generate`` writes one from a golden host;
``nova-vtpm-migration policy upgrade`` converts a version 1 policy.

Possible values:

* An absolute path to a JSON policy file (see
  ``etc/vtpm-migration-policy.json.sample``).

Related options:

* ``ak_certificate_file``
"""),
    cfg.StrOpt('ak_certificate_file',
        help="""
Path of this host's AK certificate (PEM or DER).

The operator's attestation CA issues it at enrollment (``nova-vtpm-migration
enroll``, ``ca challenge``, ``enroll --activate``, ``ca issue``): it binds
this host's TPM attestation key to its EK and to this host's Nova host name
(``[DEFAULT] host``). Peers accept this host only for the host name it
certifies, so a migration's key and memory go only to the host Nova chose.
Without it the host's vTPM migration service does not start.

Possible values:

* Unset (default): ``<state_path>/ak-certificate.pem``.
* An absolute path.

Related options:

* ``policy_file``
* ``state_path``
"""),
    cfg.IntOpt('session_lifetime',
        default=300,
        min=0,
        help="""
Seconds during which an attested host-pair session may be reused.

Evacuating a host migrates many instances to the same destination; within
this window the dual attestation (phase 1) is not repeated, but every
migration still gets its own nonces and keys and the destination's binding
key still only works while its PCRs are as attested. A session never
starts a migration once its evidence is older than two thirds of the
policy's ``max_evidence_age`` (the responder's amortised quote may be up to
a third older), whatever this value.

Possible values:

* 0: attest both hosts again for every migration.
* A positive number of seconds.

Related options:

* ``evidence_max_age``
"""),
    cfg.IntOpt('max_handshake_rate',
        default=0,
        min=0,
        help="""
Incoming phase-1 handshakes (``hello`` messages) this host answers per
second, with bursts of as many; ``0`` (the default) answers all.

Answering a ``hello`` costs no TPM command (the host's quote is amortised
over an epoch of a third of ``max_evidence_age``) and keeps no state, so a
flood of forged ``hello`` messages neither uses the TPM nor pushes out
real handshakes; it costs some CPU. Set a limit to bound that CPU: above
it ``hello`` messages are refused (``[busy]``) before any work, and
initiators retry after a short pause, so a flood above the limit also
delays real handshakes while it lasts.

Possible values:

* A positive number of handshakes per second.
* ``0``: no limit.

Related options:

* ``session_lifetime``
"""),
    cfg.IntOpt('evidence_max_age',
        default=60,
        min=1,
        help="""
Maximum age in seconds of attestation evidence accepted from a peer.

Used when the policy file does not set its own maximum. Evidence includes
TPM quotes and the binding key certification.

Possible values:

* A positive number of seconds.

Related options:

* ``policy_file``
"""),
    cfg.IntOpt('binding_key_rotation_interval',
        default=86400,
        min=60,
        help="""
Seconds after which this host's binding key is replaced.

The binding key is the non-migratable, PCR-bound TPM key to which a source
wraps the vTPM secret. It is pre-created because RSA key generation takes
seconds on hardware TPMs; it is also replaced whenever the host's PCR values
change.

Possible values:

* A number of seconds, at least 60.
"""),
    cfg.StrOpt('enforcement',
        default='refuse',
        choices=[
            ('refuse', 'Refuse to live-migrate a vTPM instance unless the '
                       'peer runs the plugin and passes attestation.'),
            ('warn', 'Log a warning and fall back to upstream Nova '
                     'behaviour when the peer does not run the plugin. '
                     'Attestation failures are still refused.'),
        ],
        help="""
What to do when the peer host does not run nova-vtpm-migration.

Possible values:

* ``refuse`` (default): the live migration is refused at pre-check time.
* ``warn``: upstream Nova behaviour is used for that migration (the vTPM
  secret travels unprotected on the message bus in ``host`` mode). Only for
  rolling upgrades.
"""),
]

service_opts = [
    cfg.StrOpt('state_path',
        default='/var/lib/nova/vtpm_migration',
        help="""
Directory holding this host's durable plugin state.

It contains the migration journal (SQLite), TPM key blobs (encrypted by the
TPM; never plaintext keys), sealed per-instance vTPM secrets and signed
receipts. It must be on local, persistent storage.

Possible values:

* An absolute directory path, writable by nova-compute.
"""),
    cfg.StrOpt('rpc_topic',
        default='vtpm_migration',
        help="""
The oslo.messaging topic of the plugin's compute-to-compute RPC API.

Each compute host runs one RPC server on this topic with its host name as
server; it carries the migration protocol's messages and the plugin's
control calls. The transport is nova's ``[DEFAULT] transport_url``.

Possible values:

* Any topic name; every compute host must use the same one.
"""),
    cfg.IntOpt('rpc_timeout',
        default=60,
        min=1,
        help="""
Seconds to wait for a reply from the peer host during the protocol.

Possible values:

* A positive number of seconds.
"""),
]

nova_opts = [
    cfg.BoolOpt('require_native_tls',
        default=True,
        help="""
Refuse live migrations of instances whose flavor has
``vtpm_migration:attested=required`` unless ``[libvirt]
live_migration_with_native_tls`` is on.

The protocol sends the vTPM secret only to the TPM certified for the
destination host Nova chose, but the guest's memory (and whatever the guest
unsealed from its vTPM) is streamed by libvirt/QEMU. With native TLS,
libvirt checks the destination's certificate for the same host name, so
the memory goes only to that host too. Turn this off only where the
migration network is otherwise protected; the pre-check error names this
option.

Possible values:

* ``True`` (default): refuse, with a pre-check error.
* ``False``: allow (memory protected by other means, or not at all).
"""),
    cfg.IntOpt('settle_interval',
        default=120,
        min=0,
        help="""
Seconds between two passes that finish this host's unfinished migrations.

nova-compute resolves unfinished migrations when it starts. While it runs,
a migration can also be left unfinished: a commit or abort that could not
be delivered to the peer, or a move whose outcome Nova only recorded later.
Until it is finished the instance's key is usable nowhere (LOCKED at the
source, PENDING at the destination), so the guest cannot be restarted. Each
pass re-sends decided outcomes, and decides moves that have been in doubt
for ``rpc_timeout`` seconds when Nova's migration record has reached a
final state (``completed``: commit, if the guest left this host; ``error``,
``failed`` or ``cancelled``: abort, if it still runs here). It never aborts
a migration that may still be in flight.

Possible values:

* A positive number of seconds.
* ``0``: only at start-up (and ``nova-vtpm-migration journal recover``).

Related options:

* ``rpc_timeout``
"""),
    cfg.StrOpt('libvirt_secret_storage',
        default='sealed',
        choices=[
            ('sealed', 'Keep the vTPM secret of protected instances sealed '
                       'to the host TPM; give libvirt an ephemeral, private '
                       'secret only while a guest starts.'),
            ('libvirt', 'Upstream ``host`` mode: a persistent libvirt '
                        'secret that root can read back.'),
        ],
        help="""
Where a protected instance's vTPM secret is kept on this host at rest.

A protected instance is one with a vTPM and ``hw:tpm_secret_security=host``.
Upstream Nova keeps its vTPM secret as a persistent libvirt secret
(``/etc/libvirt/secrets``, base64, readable by root and through
``virsh secret-get-value``) so that the host can restart the guest without
the user's key manager token.

With ``sealed``, the plugin keeps the secret encrypted (AES-256-GCM) under a
per-instance key that is sealed to this host's TPM and its PCR policy
(``<state_path>/engine/vault``). Whenever libvirt must start the guest's swtpm
(boot, hard reboot, power on, resume after a host reboot, an incoming
live migration) the plugin unseals it and defines an ephemeral, private
libvirt secret, which it undefines as soon as the guest runs. A live
migration moves the encrypted secret as it is; the source never decrypts
it. Existing persistent libvirt secrets are taken into the vault (and
undefined) the next time their guest starts.

Possible values:

* ``sealed`` (default): no persistent plaintext vTPM secret on the host.
* ``libvirt``: upstream ``host`` semantics (for example while the plugin is
  being removed; see the admin guide).

Related options:

* ``state_path``
"""),
    cfg.DictOpt('named_policies',
        default={},
        help="""
Trust policies that flavors can select by name.

A flavor with the extra spec ``vtpm_migration:policy=<name>`` has the peer
host of its live migrations attested against the policy file mapped to
``<name>`` here instead of ``policy_file``. A live migration of a flavor
that names a policy missing from this map is refused at pre-check time.

Possible values:

* A comma-separated list of ``name:path`` pairs, for example
  ``pci-dss:/etc/nova/vtpm-pci-dss.json,default:/etc/nova/vtpm.json``.
  Names match ``[A-Za-z0-9_.-]{1,64}``.

Related options:

* ``policy_file``
"""),
]

ALL_OPTS = tpm_opts + trust_opts + service_opts + nova_opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[vtpm_migration]`` group and its options."""
    conf.register_group(vtpm_migration_group)
    conf.register_opts(ALL_OPTS, group=vtpm_migration_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    """Return the options of this module keyed by their group."""
    return {vtpm_migration_group: ALL_OPTS}
