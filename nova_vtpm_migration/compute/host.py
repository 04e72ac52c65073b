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

"""The host object: one compute host's vTPM migration service.

One :class:`ComputeHost` runs in each nova-compute. It is built once from
``[vtpm_migration]`` (:meth:`ComputeHost.open`), owns the host's protocol
engine, vault and RPC server, and offers Nova's hooks a handful of
Nova-shaped operations. When it cannot be built or started it stays
*unavailable*: every operation then raises
:class:`~.errors.EngineUnavailable` naming the cause (one guard,
:meth:`ComputeHost._ready`), the host reports no attestation trait, and
its instances keep running.

Roles, for one migration of instance *i* from S to D:

=====================  ====================================  ==============
Nova step              host object call                      host
=====================  ====================================  ==============
dest pre-check         :meth:`attest_source` -> RPC ->       D -> S
                       :meth:`handle_attest` (phase 1)       S
source pre-check       :meth:`expected_destination`          S
dest pre_live_migr.    :meth:`receive_key` -> RPC ->         D -> S
                       :meth:`handle_send_key` (phase 2)     S
source post_live_m.    :meth:`commit`                        S
rollbacks              :meth:`abort`, :meth:`abort_incoming` S, D
init_host              :meth:`start` (recovery)              both
=====================  ====================================  ==============
"""

import contextlib
import threading
import time
import typing as ty

from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging as messaging

from nova_vtpm_migration.compute import envelope
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.compute import layout
from nova_vtpm_migration.compute import nova_view
from nova_vtpm_migration.compute import self_attestation
from nova_vtpm_migration.compute import vault as vault_mod
from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import errors as protocol_errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.rpc import rpcapi
from nova_vtpm_migration.rpc import server as rpc_server
from nova_vtpm_migration.rpc import transport as rpc_transport
from nova_vtpm_migration.tpm import config as tpm_config
from nova_vtpm_migration.tpm import enrollment
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify

LOG = logging.getLogger(__name__)


class ComputeHost:
    """One compute host's vTPM migration service; see the module docstring.

    Build it with :meth:`open` (from configuration), :meth:`from_parts`
    (explicit parts) or :meth:`unavailable`.

    :param conf: the configuration (``[vtpm_migration]``).
    :param host: this compute service's host name (its RPC server name).
    :param transport: the oslo.messaging transport of the RPC server and
        client (Nova's; default: from ``[DEFAULT] transport_url``).
    """

    def __init__(self, conf: cfg.ConfigOpts, host: str,
                 transport: ty.Any = None) -> None:
        self.conf = conf
        self.host = host
        #: The protocol engine (``None`` until built).
        self.engine: engine_mod.MigrationEngine | None = None
        #: The vault of sealed vTPM secrets (``None`` until built).
        self.vault: vault_mod.SecretVault | None = None
        self._transport = transport
        self._failure: str | None = 'it was never built'
        self._api: rpcapi.VtpmMigrationAPI | None = None
        self._self: self_attestation.SelfAttestation | None = None
        self._nova: nova_view.NovaView | None = None
        self._server: ty.Any = None
        self._serving = threading.Event()
        self._lock = threading.Lock()
        # instance uuid -> (attested destination, its AK name, when)
        self._expected: dict[str, tuple[str, bytes, float]] = {}
        self._fresh_until = 0.0
        self._settle_lock = threading.Lock()
        self._settler: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- building ----------------------------------------------------------

    @classmethod
    def open(cls, conf: cfg.ConfigOpts, host: str,
             transport: ty.Any = None) -> 'ComputeHost':
        """Build this host's service from ``[vtpm_migration]``: trust
        policy, host TPM, and the journal, key store and vault under
        ``state_path`` (where the operator CLI looks).

        :raises Exception: the policy, TPM, AK certificate or state cannot
            be used.
        """
        policy = tpm_config.trust_policy(conf)
        certificate = layout.read_ak_certificate(conf)
        tpm = tpm_config.host_tpm(conf, policy)
        return cls.from_parts(conf, host, tpm, policy,
                              layout.engine_state_dir(conf), certificate,
                              transport)

    @classmethod
    def from_parts(cls, conf: cfg.ConfigOpts, host: str, tpm: ty.Any,
                   policy: policy_mod.TrustPolicy, state_dir: str,
                   ak_certificate: bytes,
                   transport: ty.Any = None) -> 'ComputeHost':
        """Build the service from explicit parts (several computes in one
        process, as in the functional tests).

        :raises errors.VerificationError: the AK certificate is not this
            TPM's or not for *host*.
        """
        built = cls(conf, host, transport)
        built._build(tpm, policy, state_dir, ak_certificate)
        return built

    @classmethod
    def unavailable(cls, conf: cfg.ConfigOpts, host: str,
                    reason: str) -> 'ComputeHost':
        """A host whose service could not be built (*reason*, no
        secrets): it refuses every protected migration with that reason.
        """
        failed = cls(conf, host)
        failed._failure = reason
        return failed

    def _build(self, tpm: ty.Any, policy: policy_mod.TrustPolicy,
               state_dir: str, ak_certificate: bytes) -> None:
        # This TPM's AK, certified for this host: a clear error at start
        # rather than peers refusing every handshake later.
        certificate = enrollment.check_installable(
            tpm.identity(), ak_certificate, self.host)
        if self._transport is None:
            self._transport = messaging.get_rpc_transport(self.conf)
        self._api = rpcapi.VtpmMigrationAPI(self._transport)
        journal, keystore = engine_mod.open_state(state_dir, tpm)
        state_lock = threading.RLock()
        group = self.conf.vtpm_migration
        self.engine = engine_mod.MigrationEngine(
            self.host, tpm, policy, journal, keystore,
            rpc_transport.RpcTransport(self._api),
            session_lifetime=group.session_lifetime,
            handshake_rate=group.max_handshake_rate,
            outcome_oracle=self._outcome, state_lock=state_lock,
            ak_certificate=certificate, abort_guard=self._may_abort)
        self.vault = vault_mod.SecretVault(keystore, state_lock, self.host)
        self._self = self_attestation.SelfAttestation(tpm, policy,
                                                      certificate, self.host)
        self._failure = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether the engine is built and was not stopped."""
        return self.engine is not None and self._failure is None

    def _ready(self) -> engine_mod.MigrationEngine:
        """The engine; the one guard of every operation.

        :raises EngineUnavailable: the service did not build or start.
        """
        if self.engine is None or self._failure is not None:
            raise errors.EngineUnavailable(
                host=self.host, reason=self._failure or 'it is not built')
        return self.engine

    def _vault(self) -> vault_mod.SecretVault:
        self._ready()
        assert self.vault is not None
        return self.vault

    def start(self, nova: nova_view.NovaView) -> None:
        """Serve the RPC API, recover in-doubt migrations, then accept
        control calls and settle periodically.

        A failure leaves the host unavailable (logged, not raised).

        :param nova: what the host needs to know from Nova and libvirt
            (:class:`~nova_vtpm_migration.compute.nova_view.NovaView`).
        """
        try:
            engine = self._ready()
            self._nova = nova
            self._server = rpc_server.start_server(
                self.host, engine.handle, transport=self._transport,
                control_handler=self)
            result = engine.recover()
            if result:
                LOG.info('Recovered vTPM migrations: %s', result)
            self._vault().reconcile()
        except Exception as exc:
            LOG.exception('The vTPM migration service of host %s did not '
                          'start; vTPM live migrations with this host will '
                          'be refused', self.host)
            self.stop()
            self._failure = f'{type(exc).__name__}: {exc}'
            return
        self._serving.set()
        interval = self.conf.vtpm_migration.settle_interval
        if interval > 0:
            self._settler = threading.Thread(
                target=self._settle_loop, args=(interval,),
                name=f'vtpm-migration-settle-{self.host}', daemon=True)
            self._settler.start()
        LOG.info('vTPM migration service of host %s started', self.host)

    def stop(self) -> None:
        """Stop serving and release the engine and the TPM."""
        self._stopping.set()
        self._serving.clear()
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.join()
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            server.wait()
        engine = self.engine
        if engine is not None and self._failure is None:
            self._failure = 'it is stopped'
            engine.close()
            with contextlib.suppress(Exception):
                engine.tpm.ctx.close()

    def _outcome(self, row: ty.Any, after_restart: bool = True) -> str:
        if self._nova is None:
            return engine_mod.UNKNOWN
        return self._nova.outcome(row.migration_id, row.instance_uuid,
                                  after_restart)

    def _may_abort(self, row: ty.Any) -> bool:
        """A destination's rollback request is honoured only while Nova has
        not handed the guest over."""
        if self._nova is None:
            return False
        return self._nova.may_abort(row.migration_id, row.instance_uuid)

    def settle(self) -> None:
        """Finish unfinished migrations that can be finished while running
        (decided outcomes not delivered; moves Nova recorded as over)."""
        engine = self._ready()
        if self._nova is None:
            return
        with self._settle_lock:
            result = engine.settle(
                lambda row: self._outcome(row, after_restart=False),
                min_age=self.conf.vtpm_migration.rpc_timeout)
            if result:
                LOG.info('Settled vTPM migrations: %s', result)
            self._vault().reconcile()

    def _settle_loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            try:
                self.settle()
            except Exception:  # noqa: BLE001 - next pass retries
                LOG.exception('Settling the vTPM migrations of host %s '
                              'failed; retrying in %s s', self.host,
                              interval)

    # -- self attestation (placement trait) --------------------------------

    def attestation_fresh(self) -> bool:
        """Return whether this host currently passes its own policy.

        The result of a successful check is reused for half of
        ``[vtpm_migration] evidence_max_age``; a failure is never cached.
        """
        if not self.available or self._self is None:
            return False
        now = time.monotonic()
        if now < self._fresh_until:
            return True
        try:
            self._self.check()
        except Exception as exc:  # noqa: BLE001 - any failure means "no"
            LOG.warning('Host %s does not pass its own attestation policy: '
                        '%s', self.host, exc)
            return False
        self._fresh_until = (now + self.conf.vtpm_migration.evidence_max_age
                             / 2)
        return True

    # -- control calls to a peer ---------------------------------------------

    def _control(self, method: str, peer: str, **kwargs: ty.Any) -> ty.Any:
        self._ready()
        assert self._api is not None
        try:
            return getattr(self._api, method)(peer, **kwargs)
        except messaging.MessagingTimeout as exc:
            raise errors.PeerWithoutPlugin(
                peer=peer, topic=self.conf.vtpm_migration.rpc_topic,
                timeout=self.conf.vtpm_migration.rpc_timeout) from exc
        except messaging.RemoteError as exc:
            # Exception classes outside the transport's allowed modules
            # arrive as RemoteError; keep their type and text.
            raise errors.VirtIntegrationError(
                reason=f'{exc.exc_type}: {exc.value}') from exc
        except Exception as exc:
            name = type(exc).__name__.removesuffix('_Remote')
            raise errors.VirtIntegrationError(
                reason=f'{name}: {exc}') from exc

    # -- destination side --------------------------------------------------

    def attest_source(self, instance_uuid: str,
                      source: str) -> dict[str, ty.Any]:
        """Destination pre-check: have *source* attest this host (phase 1).

        The source derives the trust policy from the instance's flavor and
        checks Nova's record itself.

        :raises PeerWithoutPlugin: the source does not answer.
        :raises VirtIntegrationError: attestation failed.
        """
        return ty.cast(dict[str, ty.Any], self._control(
            'attest_destination', source, instance_uuid=instance_uuid,
            destination=self.host))

    def receive_key(self, instance_uuid: str, migration_uuid: str,
                    source: str) -> bytes:
        """Destination pre_live_migration: pull the secret (phase 2), keep
        its envelope in the vault.

        :returns: the unwrapped secret, to be handed to libvirt only.
        """
        self._control('send_key', source, instance_uuid=instance_uuid,
                      migration_uuid=migration_uuid, destination=self.host)
        engine = self._ready()
        try:
            self._check_arrival(engine, instance_uuid, migration_uuid)
        except Exception as exc:
            # The source aborts (Nova has not handed the guest over) and
            # tells this host to drop the key; if it cannot be reached the
            # key stays PENDING here until settled, never lost.
            try:
                engine.request_rollback(migration_uuid,
                                        reason=f'refused at arrival: {exc}')
            except Exception:  # noqa: BLE001 - the refusal is what matters
                LOG.exception('Source %s did not abort refused migration '
                              '%s', source, migration_uuid)
            raise
        kek = engine.take_pending_key(instance_uuid, migration_uuid)
        blobs = engine.take_state_blobs(instance_uuid, migration_uuid)
        if envelope.BLOB not in blobs:
            raise errors.VirtIntegrationError(
                reason=f'migration {migration_uuid} carried no vTPM secret')
        sealed = blobs[envelope.BLOB]
        secret = envelope.unwrap(kek, instance_uuid, sealed)
        # Verified: keep it sealed at rest (opens once the key is ACTIVE).
        self._vault().store(instance_uuid, sealed)
        return secret

    def _check_arrival(self, engine: engine_mod.MigrationEngine,
                       instance_uuid: str, migration_uuid: str) -> None:
        """The key came from the TPM certified for the source of Nova's
        record, and that source satisfies the flavor's named policy."""
        row = engine.journal.get(migration_uuid, states.Role.DESTINATION)
        if row is None or row.instance_uuid != instance_uuid:
            raise errors.VirtIntegrationError(
                reason=f'no key of instance {instance_uuid} arrived with '
                       f'migration {migration_uuid}')
        assert self._nova is not None
        self._nova.check_incoming(instance_uuid, migration_uuid,
                                  row.context.get('source_host', ''))
        name = self._nova.flavor_policy(instance_uuid)
        if name:
            source = engine.journal.get_record(migration_uuid,
                                               'source_evidence')
            if source is None:
                raise errors.VirtIntegrationError(
                    reason=f'no source evidence for {migration_uuid}')
            signer = wire.decode(source, receipts.SIGNER)
            pcrs = {int(i): bytes.fromhex(v)
                    for i, v in row.context.get('peer_pcrs', [])}
            self._check_named_policy(
                name, messages.identity_from_wire(signer['identity']),
                pcrs, row.context.get('source_host', ''))

    def abort_incoming(self, instance_uuid: str, migration_uuid: str,
                       source: str) -> None:
        """Destination rollback: drop what arrived, ask the source to abort.

        The source coordinates the outcome; asking it covers Nova's
        pre_live_migration failure path, in which the source driver's
        ``rollback_live_migration_at_source`` is not called. The request
        travels sealed on this host's own attested session with the
        source's TPM, and the source honours it only while Nova has not
        handed the guest over.
        """
        engine = self._ready()
        try:
            engine.request_rollback(migration_uuid, reason='nova rollback')
        finally:
            self._vault().reconcile()

    # -- source side -------------------------------------------------------

    def expected_destination(self, instance_uuid: str) -> str | None:
        """Return the destination attested for *instance_uuid*, if fresh."""
        entry = self._attested(instance_uuid)
        return None if entry is None else entry[0]

    def _attested(self, instance_uuid: str) -> tuple[str, bytes] | None:
        if not self.available:
            return None
        with self._lock:
            entry = self._expected.get(instance_uuid)
        if entry is None:
            return None
        dest, ak_name, when = entry
        if (time.monotonic() - when
                > self.conf.vtpm_migration.session_lifetime):
            return None
        return dest, ak_name

    def commit(self, instance_uuid: str, migration_uuid: str) -> None:
        """Source post-migration: commit the key move."""
        engine = self._ready()
        try:
            engine.commit(migration_uuid)
        finally:
            self._vault().reconcile()
        with self._lock:
            self._expected.pop(instance_uuid, None)

    def abort(self, instance_uuid: str, migration_uuid: str) -> None:
        """Source rollback: abort; the source key becomes usable again."""
        self._abort(migration_uuid)
        with self._lock:
            self._expected.pop(instance_uuid, None)

    def _abort(self, migration_uuid: str) -> None:
        engine = self._ready()
        try:
            engine.abort(migration_uuid, reason='nova rollback')
        except protocol_errors.UnknownMigration:
            # Not the source of it (the destination's rollback), or never
            # started: nothing to abort here.
            pass
        finally:
            self._vault().reconcile()

    # -- control calls served (run on the source) ----------------------------

    def _serving_controls(self) -> engine_mod.MigrationEngine:
        engine = self._ready()
        if not self._serving.is_set():
            raise errors.EngineUnavailable(
                host=self.host, reason='it is recovering after a restart')
        return engine

    def handle_attest(self, instance_uuid: str,
                      destination: str) -> dict[str, ty.Any]:
        """Run phase 1 towards *destination*; remember its TPM identity for
        the instance.

        Harmless by construction: it only attests the host certified for
        *destination*, for an instance Nova is moving away from here, under
        the policy of the instance's flavor (from Nova's database).
        """
        engine = self._serving_controls()
        assert self._nova is not None
        self._nova.check_attest_request(instance_uuid, destination)
        policy = self._nova.flavor_policy(instance_uuid)
        LOG.info('Attesting destination %s for instance %s', destination,
                 instance_uuid)
        session = engine.attest_peer(destination)
        if policy:
            self._check_session_policy(policy, session)
        with self._lock:
            self._expected[instance_uuid] = (
                destination, session.peer_ak_name, time.monotonic())
        return {'peer': destination,
                'ek': session.peer_identity.ek_fingerprint[:16],
                'policy': policy or 'default'}

    def _check_session_policy(self, name: str, session: ty.Any) -> None:
        self._check_named_policy(name, session.peer_identity,
                                 dict(session.peer_pcr_values),
                                 session.peer_host)

    def _check_named_policy(self, name: str, identity: ty.Any,
                            pcrs: dict[int, bytes], host: str) -> None:
        group = self.conf.vtpm_migration
        path = group.named_policies.get(name)
        if path is None:
            raise errors.VirtIntegrationError(
                reason=f'trust policy {name!r} is not in [vtpm_migration] '
                       f'named_policies')
        named = policy_mod.TrustPolicy.load(
            path, default_max_age=group.evidence_max_age)
        verify.verify_identity(identity, named, host=host)
        named.check_pcr_values(pcrs)

    def handle_send_key(self, instance_uuid: str, migration_uuid: str,
                        destination: str) -> dict[str, ty.Any]:
        """Run phase 2 towards *destination* if it is the attested one and
        the one of Nova's migration record."""
        engine = self._serving_controls()
        attested = self._attested(instance_uuid)
        if attested is None or attested[0] != destination:
            raise errors.UnexpectedDestination(
                dest=destination, instance=instance_uuid,
                expected=attested[0] if attested else 'none')
        assert self._nova is not None
        self._nova.check_outgoing(instance_uuid, migration_uuid, destination)
        policy = self._nova.flavor_policy(instance_uuid)
        vault = self._vault()
        if vault.holds(instance_uuid):
            # The vault's envelope moves as it is: no plaintext here.
            sealed = vault.envelope(instance_uuid)
        else:
            # Kept by libvirt (``libvirt`` storage): the same envelope.
            secret = self._nova.read_libvirt_secret(instance_uuid)
            try:
                sealed = vault.seal_envelope(instance_uuid, secret)
            finally:
                del secret
        handle = engine.migrate_key(
            instance_uuid, destination, migration_uuid,
            state_blobs={envelope.BLOB: sealed}, expect_ak=attested[1],
            check_session=(None if not policy else
                           lambda s: self._check_session_policy(policy, s)))
        return {'migration': handle.migration_id, 'peer': handle.peer}

    # -- the vault (vTPM secrets sealed at rest) ---------------------------

    def holds_secret(self, instance_uuid: str) -> bool:
        """Return whether this host's vault holds the instance's secret."""
        return self._vault().holds(instance_uuid)

    def adopt_secret(self, instance_uuid: str, secret: bytes) -> None:
        """Seal an instance's secret in this host's vault."""
        self._vault().adopt(instance_uuid, secret)

    def open_secret(self, instance_uuid: str) -> bytes:
        """Return the vault's secret (for an ephemeral libvirt secret)."""
        return self._vault().open(instance_uuid)

    def forget_secret(self, instance_uuid: str) -> None:
        """Destroy the vault's copy of an instance's secret."""
        self._vault().forget(instance_uuid)

    def sealed_instances(self) -> list[str]:
        """The instances whose secrets this host's vault holds (none when
        the service is unavailable)."""
        if not self.available:
            return []
        return self._vault().held_instances()
