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
policy. All TPM access goes through one
:class:`~nova_vtpm_migration.tpm.context.TpmContext` block per operation,
so nothing stays loaded in the TPM afterwards.

Key blobs kept under ``state_dir`` are encrypted by the TPM (TPM2B_PRIVATE
under the SRK); no plaintext key material is ever written.
"""

import collections.abc
import dataclasses
import hashlib
import json
import os
import pathlib
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
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy

LOG = logging.getLogger(__name__)

_TR = constants.ESYS_TR
_NULL_SCHEME = types.TPMT_SIG_SCHEME(scheme=constants.TPM2_ALG.NULL)
_AES128CFB = types.TPMT_SYM_DEF(
    algorithm=constants.TPM2_ALG.AES,
    keyBits=types.TPMU_SYM_KEY_BITS(aes=128),
    mode=types.TPMU_SYM_MODE(aes=constants.TPM2_ALG.CFB))
_SEAL_MAGIC = b'NVMSEAL1'
_MAX_SEAL = 128
_RC_HANDLE = 0x8B
#: EK certificate types tried in order (TCG EK credential profile names).
DEFAULT_EK_TYPES = ek_mod.DEFAULT_EK_TYPES


@dataclasses.dataclass(frozen=True)
class _KeyBlob:
    public: bytes
    private: bytes
    created: float = 0.0
    pcr_digest: bytes = b''

    def to_json(self) -> dict[str, ty.Any]:
        return {'public': self.public.hex(), 'private': self.private.hex(),
                'created': self.created, 'pcr_digest': self.pcr_digest.hex()}

    @classmethod
    def from_json(cls, data: dict[str, ty.Any]) -> '_KeyBlob':
        return cls(bytes.fromhex(data['public']),
                   bytes.fromhex(data['private']), float(data['created']),
                   bytes.fromhex(data['pcr_digest']))


class HostTpm:
    """This host's TPM: identity, quotes, binding/signing keys, sealing.

    :param ctx: the TPM context.
    :param state_dir: directory for TPM-encrypted key blobs.
    :param srk_handle: persistent handle of the SRK (created if absent).
    :param ak_handle: persistent handle of the AK (created if absent).
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
                 endorsement_auth: auth.HierarchyAuth | None = None
                 ) -> None:
        self.ctx = ctx
        self.state_dir = pathlib.Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.srk_handle = srk_handle
        self.ak_handle = ak_handle
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

    # -- low-level helpers (inside an esys block) --------------------------

    @staticmethod
    def _persistent(e: context.Esys, handle: int) -> ty.Any:
        try:
            return e.tr_from_tpmpublic(handle)
        except errors.TpmCommandError as exc:
            if context.tpm_rc_code(exc.kwargs['rc']) == _RC_HANDLE:
                return None
            raise

    def _srk(self, e: context.Esys) -> ty.Any:
        srk = self._persistent(e, self.srk_handle)
        if srk is not None:
            return srk
        LOG.info('Creating the SRK at persistent handle %#x',
                 self.srk_handle)
        with self.owner_auth.authorize(e, 'CreatePrimary') as owner:
            tmp, *_ = e.create_primary(None, objects.srk_template(), owner)
        with self.owner_auth.authorize(e, 'EvictControl') as owner:
            srk = e.evict_control(owner, tmp, self.srk_handle)
        e.flush_context(tmp)
        return srk

    def _ek(self, e: context.Esys, recreate: bool = False) -> ek_mod.Ek:
        """This host's EK (see :func:`~nova_vtpm_migration.tpm.ek.find`).
        """
        return ek_mod.find(e, self.ek_types, self.endorsement_auth,
                           recreate=recreate)

    def _pcr_session(self, e: context.Esys, srk: ty.Any,
                     encrypt: bool) -> ty.Any:
        """A PolicyPCR session salted to the SRK; with ``encrypt`` the
        TPM encrypts the first response parameter (Z, unsealed data)."""
        s = e.start_auth_session(srk, _TR.NONE, constants.TPM2_SE.POLICY,
                                 _AES128CFB, constants.TPM2_ALG.SHA256)
        attrs = constants.TPMA_SESSION.CONTINUESESSION
        if encrypt:
            attrs |= constants.TPMA_SESSION.ENCRYPT
        e.trsess_set_attributes(s, attrs)
        e.policy_pcr(s, None, objects.selection_string(self.pcr_selection))
        return s

    def _ak(self, e: context.Esys) -> ty.Any:
        ak = self._persistent(e, self.ak_handle)
        if ak is None:
            # Identity() creates the AK; it must have been
            # proven to the peers through a credential challenge first.
            self._create_ak(e)
            ak = self._persistent(e, self.ak_handle)
        return ak

    def _create_ak(self, e: context.Esys) -> None:
        ek = self._ek(e)
        with ek_mod.authorized(e, ek, self.endorsement_auth) as s:
            priv, pub, *_ = e.create(ek.handle, None, objects.ak_template(),
                                     session1=s)
        with ek_mod.authorized(e, ek, self.endorsement_auth) as s:
            ak = e.load(ek.handle, priv, pub, session1=s)
        with self.owner_auth.authorize(e, 'EvictControl') as owner:
            e.evict_control(owner, ak, self.ak_handle)
        e.flush_context(ak)
        if ek.transient:
            e.flush_context(ek.handle)
        LOG.info('Created the attestation key at persistent handle %#x',
                 self.ak_handle)

    def _read_pcrs(self, e: context.Esys) -> dict[int, bytes]:
        values: dict[int, bytes] = {}
        todo = list(self.pcr_selection)
        while todo:
            chunk = todo[:8]
            _, sel, digests = e.pcr_read(objects.selection_string(chunk))
            got = [i for s in sel for i in _bitmap_indices(s)]
            if not got:
                raise errors.TpmStateError(
                    reason=f'PCRs {chunk} of the sha256 bank are not '
                           'allocated')
            for index, digest in zip(got, digests, strict=True):
                values[index] = bytes(digest)
            todo = [i for i in todo if i not in values]
        return values

    def pcr_values(self) -> dict[int, bytes]:
        """The current sha256 values of the configured PCRs."""
        with self.ctx.esys() as e:
            return self._read_pcrs(e)

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
        """A quote by the AK over the configured PCRs.

        :param qualifying_data: the verifier's nonce (at most 64 bytes).
        """
        sel = objects.selection_string(self.pcr_selection)
        with self.ctx.esys() as e:
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

    # -- binding key --------------------------------------------------------

    @property
    def _binding_path(self) -> pathlib.Path:
        return self.state_dir / 'binding-key.json'

    def _binding_blobs(self) -> list[_KeyBlob]:
        try:
            data = json.loads(self._binding_path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            LOG.warning('Ignoring corrupt binding key cache %s: %s',
                        self._binding_path, exc)
            return []
        return [_KeyBlob.from_json(d) for d in data.get('keys', [])]

    def _current_binding_key(self, e: context.Esys, srk: ty.Any) -> _KeyBlob:
        values = self._read_pcrs(e)
        digest = policy.pcr_composite_digest(values)
        blobs = self._binding_blobs()
        if blobs and blobs[0].pcr_digest == digest and \
                0 <= time.time() - blobs[0].created < \
                self.binding_key_lifetime:
            return blobs[0]
        priv, pub, *_ = e.create(
            srk, None,
            objects.binding_template(policy.pcr_policy_digest(values)))
        blob = _KeyBlob(pub.marshal(), priv.marshal(), time.time(), digest)
        # Keep the previous key so that a wrap made just before
        # an age-based rotation can still be unwrapped.
        keep = [blob] + blobs[:1]
        fileutils.atomic_write(self._binding_path, json.dumps(
            {'keys': [b.to_json() for b in keep]}).encode())
        LOG.info('Created a new binding key (PCR digest %s)', digest.hex())
        return blob

    def _certify(self, e: context.Esys, srk: ty.Any, blob: _KeyBlob,
                 qualifying_data: bytes) -> evidence.CertifiedKey:
        pub = objects.unmarshal_public(blob.public)
        priv, _ = types.TPM2B_PRIVATE.unmarshal(blob.private)
        key = e.load(srk, priv, pub)
        attest, sig = e.certify(key, self._ak(e), qualifying_data,
                                _NULL_SCHEME)
        e.flush_context(key)
        return evidence.CertifiedKey(public=blob.public,
                                     certify_attest=bytes(attest),
                                     certify_signature=sig.marshal())

    def certified_binding_key(self, qualifying_data: bytes
                              ) -> evidence.CertifiedKey:
        """The current binding key, certified by the AK.

        The key is created when missing, older than
        ``binding_key_lifetime`` or bound to other PCR values than the
        current ones.

        :param qualifying_data: the verifier's nonce, put in the
            certification.
        """
        with self.ctx.esys() as e:
            srk = self._srk(e)
            blob = self._current_binding_key(e, srk)
            return self._certify(e, srk, blob, qualifying_data)

    def unwrap(self, wrapped: evidence.WrappedKey, info: bytes) -> bytes:
        """Recover a secret wrapped to the binding key (see
        :func:`~nova_vtpm_migration.tpm.verify.wrap`).

        ECDH_ZGen runs in the TPM inside a PolicyPCR session; HKDF and
        AES-GCM run in software.

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
        policy_error: errors.TpmPolicyCheckFailed | None = None
        opened = False
        with self.ctx.esys() as e:
            srk = self._srk(e)
            for blob in self._binding_blobs():
                pub = objects.unmarshal_public(blob.public)
                priv, _ = types.TPM2B_PRIVATE.unmarshal(blob.private)
                key = e.load(srk, priv, pub)
                s = self._pcr_session(e, srk, encrypt=True)
                try:
                    z = e.ecdh_zgen(key, ecc_point, session1=s)
                except errors.TpmPolicyCheckFailed as exc:
                    policy_error = policy_error or exc
                    continue
                finally:
                    e.flush_context(s)
                    e.flush_context(key)
                opened = True
                name = objects.public_name(pub)
                kek = objects.derive_kek(bytes(z.point.x), point, name, info)
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

    def _signing_blob(self, e: context.Esys, srk: ty.Any) -> _KeyBlob:
        path = self.state_dir / 'signing-key.json'
        try:
            return _KeyBlob.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            pass
        priv, pub, *_ = e.create(srk, None, objects.signing_template())
        blob = _KeyBlob(pub.marshal(), priv.marshal(), time.time())
        fileutils.atomic_write(path, json.dumps(blob.to_json()).encode())
        LOG.info('Created the signing key')
        return blob

    def certified_signing_key(self, qualifying_data: bytes
                              ) -> evidence.CertifiedKey:
        """The signing key (created on first use), certified by the AK.

        :param qualifying_data: the verifier's nonce.
        """
        with self.ctx.esys() as e:
            srk = self._srk(e)
            return self._certify(e, srk, self._signing_blob(e, srk),
                                 qualifying_data)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with the signing key.

        :returns: a DER-encoded ECDSA-P256/SHA-256 signature, verifiable
            with :func:`~nova_vtpm_migration.tpm.verify.verify_signature`.
        """
        digest = hashlib.sha256(message).digest()
        with self.ctx.esys() as e:
            srk = self._srk(e)
            blob = self._signing_blob(e, srk)
            priv, _ = types.TPM2B_PRIVATE.unmarshal(blob.private)
            key = e.load(srk, priv, objects.unmarshal_public(blob.public))
            sig = e.sign(key, digest, _NULL_SCHEME)
            e.flush_context(key)
        return asym_utils.encode_dss_signature(
            int.from_bytes(bytes(sig.signature.ecdsa.signatureR), 'big'),
            int.from_bytes(bytes(sig.signature.ecdsa.signatureS), 'big'))

    # -- sealing ----------------------------------------------------------

    def seal(self, secret: bytes) -> bytes:
        """Seal ``secret`` to this TPM under a PolicyPCR of the current
        PCR values. The result is TPM-encrypted and safe to store.

        :param secret: at most 128 bytes.
        """
        if not 0 < len(secret) <= _MAX_SEAL:
            raise ValueError(f'can seal 1..{_MAX_SEAL} bytes')
        sensitive = types.TPM2B_SENSITIVE_CREATE(
            sensitive=types.TPMS_SENSITIVE_CREATE(data=secret))
        with self.ctx.esys() as e:
            srk = self._srk(e)
            values = self._read_pcrs(e)
            # A salted session encrypts the secret on its way
            # into the TPM (parameter encryption).
            s = e.start_auth_session(srk, _TR.NONE, constants.TPM2_SE.HMAC,
                                     _AES128CFB, constants.TPM2_ALG.SHA256)
            e.trsess_set_attributes(
                s, constants.TPMA_SESSION.CONTINUESESSION
                | constants.TPMA_SESSION.DECRYPT)
            priv, pub, *_ = e.create(
                srk, sensitive,
                objects.seal_template(policy.pcr_policy_digest(values)),
                session1=s)
            e.flush_context(s)
        return bytes(_SEAL_MAGIC + pub.marshal() + priv.marshal())

    def unseal(self, blob: bytes) -> bytes:
        """Recover a secret sealed by :meth:`seal` on this TPM.

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
        with self.ctx.esys() as e:
            srk = self._srk(e)
            obj = e.load(srk, priv, pub)
            s = self._pcr_session(e, srk, encrypt=True)
            data = e.unseal(obj, session1=s)
            e.flush_context(s)
            e.flush_context(obj)
        return bytes(data)


def _bitmap_indices(sel: ty.Any) -> list[int]:
    bitmap = bytes(sel.pcrSelect)[:int(sel.sizeofSelect)]
    return [byte * 8 + bit for byte, value in enumerate(bitmap)
            for bit in range(8) if value >> bit & 1]
