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

"""Everything a host does with its own TPM.

:class:`HostTpm` proves the host's identity (EK certificate, EK, an AK under
the EK), answers credential challenges, quotes PCRs, offers a certified
non-migratable PCR-bound binding key and unwraps secrets wrapped to it,
signs with a certified non-migratable key and seals secrets under a PCR
policy. All TPM access goes through
:class:`~nova_vtpm_migration.tpm.context.TpmContext` blocks; the objects
and sessions the operations stand on (SRK, EK, AK, resident sessions and
keys) come from the base class of :class:`HostTpm`,
:class:`~nova_vtpm_migration.tpm.hostobjects.HostObjects`.

What a migration uses on every run stays loaded between operations: the
signing key is persistent (next to the SRK and the AK), and the current
binding key, one salted policy session (re-armed with ``TPM2_PolicyPCR``
for each use; the TPM resets it after a successful use,
``TPM2_PolicyRestart`` after a failed one) and one salted HMAC session
for parameter encryption into the TPM are residents of the TPM
connection (see :mod:`.context`). So an unwrap costs ``PolicyPCR`` +
``ECDH_ZGen``, a signature one ``Sign``, and no operation on the
migration path needs ``CreatePrimary``, ``StartAuthSession`` (an ECC
point multiplication for the salt) or ``GetCapability``. The binding key
is created ahead and replaced in the background before it expires
(:mod:`.keyblobs`); only a PCR change creates one on the spot, because
the key must be bound to the current PCR values.

Key blobs kept under ``state_dir`` are encrypted by the TPM (TPM2B_PRIVATE
under the SRK); no plaintext key material is ever written.
"""

import collections.abc
import hashlib
import json
import os
import pathlib
import threading
import time
import typing as ty

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.ciphers import aead
from oslo_log import log as logging
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration import fileutils
from nova_vtpm_migration.tpm import auth
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import ek as ek_mod
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import hostobjects
from nova_vtpm_migration.tpm import keyblobs
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy
from nova_vtpm_migration.tpm import rc

LOG = logging.getLogger(__name__)

_NULL_SCHEME = types.TPMT_SIG_SCHEME(scheme=constants.TPM2_ALG.NULL)
_SEAL_MAGIC = b'NVMSEAL1'
_MAX_SEAL = 128
#: EK certificate types tried in order (TCG EK credential profile names).
DEFAULT_EK_TYPES = ek_mod.DEFAULT_EK_TYPES


class HostTpm(hostobjects.HostObjects):
    """This host's TPM: identity, quotes, binding/signing keys, sealing.

    :param ctx: the TPM context.
    :param state_dir: directory for TPM-encrypted key blobs.
    :param srk_handle: persistent handle of the SRK (created if absent).
    :param ak_handle: persistent handle of the AK (created if absent).
    :param signing_key_handle: persistent handle where the signing key
        is kept loaded (replaced when another object is there).
    :param pcr_selection: sha256 PCR indices quoted and used in policies.
    :param binding_key_lifetime: seconds after which the binding key is
        replaced.
    :param ek_types: EK types whose certificate is looked for, in order
        (``EK-...`` names or TCG short names such as ``H-3``).
    :param owner_auth: the owner hierarchy's authorisation value (SRK and
        AK creation and persistence); default: the empty value.
    :param endorsement_auth: the endorsement hierarchy's authorisation
        value (EK creation and use); default: the empty value.
    :raises auth.AuthFileError: an authorisation file is unusable.
    :raises ValueError: an unknown EK type.
    """

    def __init__(self, ctx: context.TpmContext,
                 state_dir: str | os.PathLike[str],
                 srk_handle: int = 0x81000001, ak_handle: int = 0x81010010,
                 pcr_selection: collections.abc.Sequence[int] = (0, 7),
                 *, binding_key_lifetime: float = 86400.0,
                 ek_types: collections.abc.Sequence[str] = DEFAULT_EK_TYPES,
                 owner_auth: auth.HierarchyAuth | None = None,
                 endorsement_auth: auth.HierarchyAuth | None = None,
                 signing_key_handle: int = 0x81000010) -> None:
        self.ctx = ctx
        self.state_dir = pathlib.Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.srk_handle = srk_handle
        self.ak_handle = ak_handle
        self.signing_key_handle = signing_key_handle
        self.pcr_selection = tuple(sorted(set(pcr_selection)))
        policy.pcr_selection_bytes(self.pcr_selection)  # validates indices
        self.binding_key_lifetime = binding_key_lifetime
        self.ek_types = tuple(ek_mod.canonical_type(t) for t in ek_types)
        self.owner_auth = owner_auth or auth.HierarchyAuth('owner')
        self.endorsement_auth = (endorsement_auth
                                 or auth.HierarchyAuth('endorsement'))
        for hierarchy in (self.owner_auth, self.endorsement_auth):
            hierarchy.check()
        self._identity: evidence.HostIdentity | None = None
        self._binding = keyblobs.BindingKeys(
            self.state_dir / 'binding-key.json', binding_key_lifetime)
        self._rotating = threading.Lock()

    def pcr_values(self) -> dict[int, bytes]:
        """The current sha256 values of the configured PCRs."""
        return self.ctx.run(self._read_pcrs)

    def warm_up(self) -> None:
        """Make the first migration as cheap as the next ones: create
        what is missing (SRK, AK, signing and binding keys) and load the
        residents."""
        def op(e: context.Esys) -> None:
            self._ak(e)
            self._signing_key(e)
            self._loaded(e, 'binding', self._current_binding_key(
                e, self._srk(e), self._read_pcrs(e)))
            self._session(e, 'policy')
            self._session(e, 'hmac')
        self.ctx.run(op)

    # -- identity and attestation -----------------------------------------

    def identity(self) -> evidence.HostIdentity:
        """EK certificate, EK public area and AK public area.

        Recreates the EK from its template and checks it matches the EK
        certificate; creates and persists the AK on first use.

        :raises errors.EkCertificateError: no certificate or mismatch.
        """
        if self._identity is not None:
            return self._identity
        with self.ctx.esys() as e:
            ek = self._ek(e, recreate=True)
            if ek.transient:
                e.flush_context(ek.handle)
            ek_mod.check_matches_certificate(ek.certificate, ek.public)
            ak = self._ak(e)
            ak_pub, _, _ = e.read_public(ak)
        if (ak_pub.publicArea.objectAttributes != objects.AK_ATTRIBUTES
                or ak_pub.publicArea.type != constants.TPM2_ALG.ECC):
            raise errors.TpmStateError(
                reason=f'object at AK handle {self.ak_handle:#x} is not an '
                       'ECC attestation key')
        self._identity = evidence.HostIdentity(
            ek_certificate=ek.certificate, ek_public=ek.public.marshal(),
            ak_public=ak_pub.marshal())
        return self._identity

    def activate_credential(self,
                            challenge: evidence.CredentialChallenge) -> bytes:
        """Recover the secret of a credential made for (our EK, our AK).

        :raises errors.CredentialError: the credential was not made for
            this TPM's EK and AK name.
        """
        try:
            blob, _ = types.TPM2B_ID_OBJECT.unmarshal(
                challenge.credential_blob)
            secret, _ = types.TPM2B_ENCRYPTED_SECRET.unmarshal(
                challenge.encrypted_secret)
        except Exception as exc:
            raise errors.CredentialError(
                reason=f'malformed challenge: {exc}') from exc
        with self.ctx.esys() as e:
            ek = self._ek(e)
            ak = self._ak(e)
            with ek_mod.authorized(e, ek, self.endorsement_auth) as s:
                try:
                    cred = e.activate_credential(ak, ek.handle, blob,
                                                 secret, session2=s)
                except errors.TpmCommandError as exc:
                    raise errors.CredentialError(reason=str(exc)) from exc
                except errors.TpmFailureMode as exc:
                    # Libtpms 0.9 answers TPM_RC_FAILURE when the
                    # seed does not decrypt with our EK (a credential made
                    # for another EK) without entering failure mode. A TPM
                    # really in failure mode refuses GetRandom too.
                    e.get_random(1)
                    raise errors.CredentialError(
                        reason='the credential was not made for this EK') \
                        from exc
        return bytes(cred)

    def quote(self, qualifying_data: bytes) -> evidence.Quote:
        """A quote by the AK over the configured PCRs (``TPM2_Quote``,
        then ``TPM2_PCR_Read`` for the values it covers).

        :param qualifying_data: the verifier's nonce (at most 64 bytes).
        """
        sel = objects.selection_string(self.pcr_selection)

        def op(e: context.Esys) -> evidence.Quote:
            ak = self._ak(e)
            for _ in range(3):
                attest, sig = e.quote(ak, sel, qualifying_data, _NULL_SCHEME)
                values = self._read_pcrs(e)
                raw = bytes(attest)
                att, _ = types.TPMS_ATTEST.unmarshal(raw)
                if bytes(att.attested.quote.pcrDigest) == \
                        policy.pcr_composite_digest(values):
                    break
                LOG.debug('PCRs changed while quoting, quoting again')
            return evidence.Quote(attest=raw, signature=sig.marshal(),
                                  pcr_values=tuple(sorted(values.items())))
        return self.ctx.run(op)

    # -- binding key --------------------------------------------------------

    def _create_binding_key(self, e: context.Esys, srk: ty.Any,
                            values: dict[int, bytes]) -> keyblobs.KeyBlob:
        priv, pub, *_ = e.create(
            srk, None,
            objects.binding_template(policy.pcr_policy_digest(values)))
        blob = keyblobs.KeyBlob(pub.marshal(), priv.marshal(), time.time(),
                                policy.pcr_composite_digest(values))
        self._binding.add(blob)
        return blob

    def _current_binding_key(self, e: context.Esys, srk: ty.Any,
                             values: dict[int, bytes]) -> keyblobs.KeyBlob:
        blob = self._binding.usable(policy.pcr_composite_digest(values))
        if blob is None:
            # The key must be bound to the current PCR values: created now.
            return self._create_binding_key(e, srk, values)
        if self._binding.due():
            self._rotate_in_background()
        return blob

    def _rotate_in_background(self) -> None:
        if not self._rotating.acquire(blocking=False):
            return

        def rotate() -> None:
            try:
                def op(e: context.Esys) -> None:
                    values = self._read_pcrs(e)
                    if self._binding.due():
                        self._create_binding_key(e, self._srk(e), values)
                self.ctx.run(op)
            except Exception as exc:  # noqa: BLE001 - retried next time
                LOG.warning('Replacing the binding key failed: %s', exc)
            finally:
                self._rotating.release()
        threading.Thread(target=rotate, name='binding-key-rotation',
                         daemon=True).start()

    def certified_binding_key(self, qualifying_data: bytes, *,
                              reuse: evidence.CertifiedKey | None = None,
                              pcr_values: collections.abc.Mapping[
                                  int, bytes] | None = None
                              ) -> evidence.CertifiedKey:
        """The current binding key, certified by the AK (``TPM2_Certify``).

        The key is created when missing, older than
        ``binding_key_lifetime`` or bound to other PCR values than the
        current ones (``TPM2_PCR_Read`` tells).

        :param qualifying_data: the verifier's nonce, put in the
            certification.
        :param reuse: an earlier certification made with the same
            qualifying data: returned as it is (no ``TPM2_Certify``) when
            it still names the current key, which is bound to the current
            PCR values.
        :param pcr_values: the current PCR values, read by the caller
            just before (no ``TPM2_PCR_Read``).
        """
        def op(e: context.Esys) -> evidence.CertifiedKey:
            srk = self._srk(e)
            values = dict(pcr_values) if pcr_values is not None \
                else self._read_pcrs(e)
            blob = self._current_binding_key(e, srk, values)
            if reuse is not None and reuse.public == blob.public:
                return reuse
            return self._certify(e, self._loaded(e, 'binding', blob),
                                 blob, qualifying_data)
        return self.ctx.run(op)

    def _certify(self, e: context.Esys, key: ty.Any, blob: keyblobs.KeyBlob,
                 qualifying_data: bytes) -> evidence.CertifiedKey:
        attest, sig = e.certify(key, self._ak(e), qualifying_data,
                                _NULL_SCHEME)
        return evidence.CertifiedKey(public=blob.public,
                                     certify_attest=bytes(attest),
                                     certify_signature=sig.marshal())

    def unwrap(self, wrapped: evidence.WrappedKey, info: bytes) -> bytes:
        """Recover a secret wrapped to the binding key (see
        :func:`~nova_vtpm_migration.tpm.verify.wrap`).

        ``TPM2_ECDH_ZGen`` runs in the TPM under the PCR policy (the
        resident policy session; the TPM encrypts Z on its way out); HKDF
        and AES-GCM run in software. The current key is resident; the
        previous one is loaded only if the current one does not open it.

        :raises errors.TpmPolicyCheckFailed: the PCRs changed since the
            binding key(s) were created (no key could be used at all).
        :raises errors.UnwrapError: no binding key opens the wrapped key.
        """
        point = wrapped.ephemeral_point
        if len(point) != 65 or point[0] != 4:
            raise errors.UnwrapError(reason='ephemeral point is not an '
                                            'uncompressed P-256 point')
        ecc_point = types.TPM2B_ECC_POINT(point=types.TPMS_ECC_POINT(
            x=point[1:33], y=point[33:]))
        return self.ctx.run(lambda e: self._unwrap(e, wrapped, ecc_point,
                                                   info))

    def _unwrap(self, e: context.Esys, wrapped: evidence.WrappedKey,
                ecc_point: ty.Any, info: bytes) -> bytes:
        policy_error: errors.TpmPolicyCheckFailed | None = None
        opened = False
        srk = self._srk(e)
        for index, blob in enumerate(self._binding.blobs()):
            pub = objects.unmarshal_public(blob.public)
            if index == 0:
                key = self._loaded(e, 'binding', blob)
            else:
                priv, _ = types.TPM2B_PRIVATE.unmarshal(blob.private)
                key = e.load(srk, priv, pub)
            def zgen(s: ty.Any, k: ty.Any = key) -> ty.Any:
                return e.ecdh_zgen(k, ecc_point, session1=s)
            try:
                z = self._with_pcr_policy(e, zgen)
            except errors.TpmPolicyCheckFailed as exc:
                policy_error = policy_error or exc
                continue
            finally:
                if index:
                    e.flush_context(key)
            opened = True
            name = objects.public_name(pub)
            kek = objects.derive_kek(bytes(z.point.x),
                                     wrapped.ephemeral_point, name, info)
            try:
                return aead.AESGCM(kek).decrypt(
                    wrapped.nonce, wrapped.ciphertext, name)
            except crypto_exceptions.InvalidTag:
                continue
        if policy_error is not None and not opened:
            raise policy_error
        reason = 'no usable binding key of this host opens it (wrong key, ' \
                 'info or tampered)'
        if policy_error is not None:
            reason += '; an older binding key is unusable because the PCRs ' \
                      'changed'
        raise errors.UnwrapError(reason=reason)

    # -- signing key ----------------------------------------------------------

    def _signing_blob(self, e: context.Esys, srk: ty.Any) -> keyblobs.KeyBlob:
        path = self.state_dir / 'signing-key.json'
        try:
            return keyblobs.KeyBlob.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            pass
        priv, pub, *_ = e.create(srk, None, objects.signing_template())
        blob = keyblobs.KeyBlob(pub.marshal(), priv.marshal(), time.time())
        fileutils.atomic_write(path, json.dumps(blob.to_json()).encode())
        LOG.info('Created the signing key')
        return blob

    def _signing_key(self, e: context.Esys) -> tuple[ty.Any,
                                                     keyblobs.KeyBlob]:
        """The signing key, persisted at ``signing_key_handle``: a
        persistent object takes a transient slot only while a command
        uses it, which leaves room for ``TPM2_Load`` under the SRK (the
        SRK and the new object take two of libtpms' three slots) next to
        the resident binding key."""
        srk = self._srk(e)
        blob = self._signing_blob(e, srk)
        name = objects.public_name(blob.public)
        try:
            tr = e.persistent(self.signing_key_handle)
            if bytes(e.tr_get_name(tr)) == name:
                return tr, blob
            LOG.warning('Replacing the object at signing key handle %#x: '
                        'it is not this host\'s signing key',
                        self.signing_key_handle)
            with self.owner_auth.authorize(e, 'EvictControl') as owner:
                e.evict_control(owner, tr, self.signing_key_handle)
            e.forget_persistent(self.signing_key_handle)
        except errors.TpmCommandError as exc:
            if context.tpm_rc_code(exc.kwargs['rc']) != rc.RC_HANDLE:
                raise
        priv, _ = types.TPM2B_PRIVATE.unmarshal(blob.private)
        key = e.load(srk, priv, objects.unmarshal_public(blob.public))
        with self.owner_auth.authorize(e, 'EvictControl') as owner:
            e.evict_control(owner, key, self.signing_key_handle)
        e.flush_context(key)
        LOG.info('Persisted the signing key at handle %#x',
                 self.signing_key_handle)
        return e.persistent(self.signing_key_handle), blob

    def certified_signing_key(self, qualifying_data: bytes
                              ) -> evidence.CertifiedKey:
        """The signing key (created on first use), certified by the AK.

        :param qualifying_data: the verifier's nonce.
        """
        def op(e: context.Esys) -> evidence.CertifiedKey:
            key, blob = self._signing_key(e)
            return self._certify(e, key, blob, qualifying_data)
        return self.ctx.run(op)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with the signing key (``TPM2_Sign``).

        :returns: a DER-encoded ECDSA-P256/SHA-256 signature, verifiable
            with :func:`~nova_vtpm_migration.tpm.verify.verify_signature`.
        """
        digest = hashlib.sha256(message).digest()
        sig = self.ctx.run(lambda e: e.sign(self._signing_key(e)[0], digest,
                                            _NULL_SCHEME))
        return asym_utils.encode_dss_signature(
            int.from_bytes(bytes(sig.signature.ecdsa.signatureR), 'big'),
            int.from_bytes(bytes(sig.signature.ecdsa.signatureS), 'big'))

    # -- sealing ----------------------------------------------------------

    def seal(self, secret: bytes, *, bound_like: bytes | None = None
             ) -> bytes:
        """Seal ``secret`` to this TPM under a PolicyPCR of the current
        PCR values (``TPM2_Create`` of a sealed data object; the secret
        travels encrypted by the resident salted HMAC session). The result
        is TPM-encrypted and safe to store.

        :param secret: at most 128 bytes.
        :param bound_like: the public area of this host's binding key
            that just unwrapped ``secret``: its PCR policy is used, as a
            successful ``TPM2_ECDH_ZGen`` under it proved those are the
            current values (no ``TPM2_PCR_Read``).
        :raises ValueError: wrong size, or ``bound_like`` is not one of
            this host's binding keys.
        """
        if not 0 < len(secret) <= _MAX_SEAL:
            raise ValueError(f'can seal 1..{_MAX_SEAL} bytes')
        auth_policy = None
        if bound_like is not None:
            if all(b.public != bound_like for b in self._binding.blobs()):
                raise ValueError('not a binding key of this host')
            auth_policy = bytes(objects.unmarshal_public(
                bound_like).publicArea.authPolicy)
        sensitive = types.TPM2B_SENSITIVE_CREATE(
            sensitive=types.TPMS_SENSITIVE_CREATE(data=secret))

        def op(e: context.Esys) -> bytes:
            srk = self._srk(e)
            digest = auth_policy if auth_policy is not None else \
                policy.pcr_policy_digest(self._read_pcrs(e))
            priv, pub, *_ = e.create(srk, sensitive,
                                     objects.seal_template(digest),
                                     session1=self._session(e, 'hmac'))
            return bytes(_SEAL_MAGIC + pub.marshal() + priv.marshal())
        return self.ctx.run(op)

    def unseal(self, blob: bytes) -> bytes:
        """Recover a secret sealed by :meth:`seal` on this TPM
        (``TPM2_Load``, ``TPM2_PolicyPCR``, ``TPM2_Unseal`` with the
        output encrypted by the session, ``TPM2_FlushContext``).

        :raises errors.TpmPolicyCheckFailed: the PCRs changed.
        :raises errors.TpmCommandError: the blob is not from this TPM.
        """
        if not blob.startswith(_SEAL_MAGIC):
            raise errors.TpmStateError(reason='not a sealed blob')
        try:
            pub, used = types.TPM2B_PUBLIC.unmarshal(blob[len(_SEAL_MAGIC):])
            priv, _ = types.TPM2B_PRIVATE.unmarshal(
                blob[len(_SEAL_MAGIC) + used:])
        except Exception as exc:
            raise errors.TpmStateError(
                reason=f'malformed sealed blob: {exc}') from exc

        def op(e: context.Esys) -> bytes:
            obj = e.load(self._srk(e), priv, pub)
            try:
                data = self._with_pcr_policy(
                    e, lambda s: e.unseal(obj, session1=s))
            finally:
                e.flush_context(obj)
            return bytes(data)
        return self.ctx.run(op)
