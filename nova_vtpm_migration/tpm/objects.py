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

"""TPM object templates, required attributes and the wrapping KDF.

Shared by the TPM side (:mod:`~nova_vtpm_migration.tpm.host`) and the
software verifier (:mod:`~nova_vtpm_migration.tpm.verify`), so that what a
host creates and what a peer requires are defined in one place.
"""

import collections.abc
import typing as ty

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf import hkdf
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration.tpm import errors

_A = constants.TPMA_OBJECT

#: Attributes of the attestation key (restricted ECDSA signing key).
AK_ATTRIBUTES = (_A.RESTRICTED | _A.SIGN_ENCRYPT | _A.FIXEDTPM
                 | _A.FIXEDPARENT | _A.SENSITIVEDATAORIGIN | _A.USERWITHAUTH)

#: Attributes of the storage root key.
SRK_ATTRIBUTES = (_A.RESTRICTED | _A.DECRYPT | _A.FIXEDTPM | _A.FIXEDPARENT
                  | _A.SENSITIVEDATAORIGIN | _A.USERWITHAUTH | _A.NODA)

#: Exact attributes of a binding key: non-migratable ECDH decrypt key usable
#: only through its PCR policy (no userWithAuth; adminWithPolicy clear so
#: that TPM2_Certify can be authorised with the empty authValue).
BINDING_ATTRIBUTES = (_A.FIXEDTPM | _A.FIXEDPARENT | _A.SENSITIVEDATAORIGIN
                      | _A.DECRYPT)

#: Exact attributes of a signing key (unrestricted ECDSA, non-migratable).
SIGNING_ATTRIBUTES = (_A.FIXEDTPM | _A.FIXEDPARENT | _A.SENSITIVEDATAORIGIN
                      | _A.SIGN_ENCRYPT | _A.USERWITHAUTH)

#: Attributes of a sealed data object (PCR policy only).
SEAL_ATTRIBUTES = _A.FIXEDTPM | _A.FIXEDPARENT | _A.NODA

#: Wrap KDF label (HKDF info prefix) of :func:`derive_kek`.
WRAP_LABEL = b'nova-vtpm-migration/wrap/v1\x00'


def selection_string(pcrs: collections.abc.Iterable[int]) -> str:
    """tpm2-pytss selection string of sha256 PCRs (``sha256:0,1,7``)."""
    return 'sha256:' + ','.join(str(i) for i in sorted(pcrs))


def _ecc_public(attributes: int, scheme: int, *,
                auth_policy: bytes = b'',
                symmetric: types.TPMT_SYM_DEF_OBJECT | None = None
                ) -> types.TPM2B_PUBLIC:
    sym = symmetric or types.TPMT_SYM_DEF_OBJECT(
        algorithm=constants.TPM2_ALG.NULL)
    scheme_obj = types.TPMT_ECC_SCHEME(scheme=scheme)
    if scheme != constants.TPM2_ALG.NULL:
        scheme_obj.details.anySig.hashAlg = constants.TPM2_ALG.SHA256
    return types.TPM2B_PUBLIC(publicArea=types.TPMT_PUBLIC(
        type=constants.TPM2_ALG.ECC,
        nameAlg=constants.TPM2_ALG.SHA256,
        objectAttributes=attributes,
        authPolicy=auth_policy,
        parameters=types.TPMU_PUBLIC_PARMS(eccDetail=types.TPMS_ECC_PARMS(
            symmetric=sym,
            scheme=scheme_obj,
            curveID=constants.TPM2_ECC.NIST_P256,
            kdf=types.TPMT_KDF_SCHEME(scheme=constants.TPM2_ALG.NULL))),
        unique=types.TPMU_PUBLIC_ID(ecc=types.TPMS_ECC_POINT(
            x=b'\x00' * 32, y=b'\x00' * 32)),
    ))


def srk_template() -> types.TPM2B_PUBLIC:
    """The standard ECC P-256 SRK template (AES-128-CFB)."""
    return _ecc_public(SRK_ATTRIBUTES, constants.TPM2_ALG.NULL,
                       symmetric=types.TPMT_SYM_DEF_OBJECT(
                           algorithm=constants.TPM2_ALG.AES,
                           keyBits=types.TPMU_SYM_KEY_BITS(aes=128),
                           mode=types.TPMU_SYM_MODE(
                               aes=constants.TPM2_ALG.CFB)))


def ak_template() -> types.TPM2B_PUBLIC:
    """The attestation key template (restricted ECDSA-P256/SHA-256)."""
    return _ecc_public(AK_ATTRIBUTES, constants.TPM2_ALG.ECDSA)


def binding_template(auth_policy: bytes) -> types.TPM2B_PUBLIC:
    """The binding key template (ECDH P-256) with a PCR ``auth_policy``."""
    return _ecc_public(BINDING_ATTRIBUTES, constants.TPM2_ALG.ECDH,
                       auth_policy=auth_policy)


def signing_template() -> types.TPM2B_PUBLIC:
    """The signing key template (unrestricted ECDSA-P256/SHA-256)."""
    return _ecc_public(SIGNING_ATTRIBUTES, constants.TPM2_ALG.ECDSA)


def seal_template(auth_policy: bytes) -> types.TPM2B_PUBLIC:
    """A sealed data object template with a PCR ``auth_policy``."""
    return types.TPM2B_PUBLIC(publicArea=types.TPMT_PUBLIC(
        type=constants.TPM2_ALG.KEYEDHASH,
        nameAlg=constants.TPM2_ALG.SHA256,
        objectAttributes=SEAL_ATTRIBUTES,
        authPolicy=auth_policy,
        parameters=types.TPMU_PUBLIC_PARMS(
            keyedHashDetail=types.TPMS_KEYEDHASH_PARMS(
                scheme=types.TPMT_KEYEDHASH_SCHEME(
                    scheme=constants.TPM2_ALG.NULL))),
    ))


def unmarshal_public(data: bytes) -> types.TPM2B_PUBLIC:
    """Unmarshal a ``TPM2B_PUBLIC`` that must span all of ``data``.

    :raises ValueError: trailing bytes or a malformed structure.
    """
    pub, used = types.TPM2B_PUBLIC.unmarshal(data)
    if used != len(data):
        raise ValueError('trailing bytes after TPM2B_PUBLIC')
    # The TPM2B size must describe exactly the structure that
    # follows; otherwise one public area would have several encodings.
    if int.from_bytes(data[:2], 'big') != len(data) - 2:
        raise ValueError('TPM2B_PUBLIC size field does not match its '
                         'content')
    return pub


def public_name(public: bytes | types.TPM2B_PUBLIC) -> bytes:
    """The TPM name (nameAlg || H(TPMT_PUBLIC)) of a public area."""
    if isinstance(public, bytes):
        public = unmarshal_public(public)
    return bytes(public.get_name())


def derive_kek(shared_x: bytes, ephemeral_point: bytes, binding_name: bytes,
               info: bytes) -> bytes:
    """AES-256 key-encryption key of a :class:`~evidence.WrappedKey`.

    HKDF-SHA256 over the ECDH x-coordinate, salted with the ephemeral
    point, with info = label || binding key name || caller's ``info``.

    :param shared_x: ECDH shared x-coordinate (32 bytes).
    :param ephemeral_point: uncompressed ephemeral public point.
    :param binding_name: TPM name of the binding key.
    :param info: caller context (e.g. migration id) bound into the key.
    """
    return hkdf.HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral_point,
        info=WRAP_LABEL + len(binding_name).to_bytes(2, 'big')
        + binding_name + info,
    ).derive(shared_x)


def read_pcrs(e: ty.Any, pcrs: collections.abc.Sequence[int]
              ) -> dict[int, bytes]:
    """The sha256 values of ``pcrs`` (``TPM2_PCR_Read``, 8 per call).

    :param e: an ESAPI context (or :class:`~.context.Esys` proxy).
    :raises errors.TpmStateError: a PCR of the bank is not allocated.
    """
    values: dict[int, bytes] = {}
    todo = list(pcrs)
    while todo:
        chunk = todo[:8]
        _, sel, digests = e.pcr_read(selection_string(chunk))
        got = [i for s in sel for i in _bitmap_indices(s)]
        if not got:
            raise errors.TpmStateError(
                reason=f'PCRs {chunk} of the sha256 bank are not '
                       'allocated')
        for index, digest in zip(got, digests, strict=True):
            values[index] = bytes(digest)
        todo = [i for i in todo if i not in values]
    return values


def _bitmap_indices(sel: ty.Any) -> list[int]:
    bitmap = bytes(sel.pcrSelect)[:int(sel.sizeofSelect)]
    return [byte * 8 + bit for byte, value in enumerate(bitmap)
            for bit in range(8) if value >> bit & 1]
