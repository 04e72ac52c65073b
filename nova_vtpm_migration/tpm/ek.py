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

"""This host's endorsement key (EK): find its certificate, recreate or
reuse the key, authorise its use.

EK certificates sit in NV at the indices of the TCG EK Credential Profile
(2.x): the low range (``L-1`` RSA-2048 at 0x01C00002, ``L-2`` ECC P-256 at
0x01C0000A) and the high range (``H-1`` RSA-2048 at 0x01C00012, ``H-2``
ECC P-256 at 0x01C00014, ``H-3`` ECC P-384 at 0x01C00016, ...). The types
are tried in the configured order (``[vtpm_migration] ek_types``; ECC
before RSA by default: an ECC EK is created in a fraction of an RSA EK's
time on a hardware TPM). ``swtpm_setup --create-ek-cert`` writes ``L-1``
and ``H-3``.

The low-range templates only allow use through ``PolicySecret
(TPM_RH_ENDORSEMENT)``, so using such an EK needs the endorsement hierarchy
authorisation; the high-range templates set ``userWithAuth`` and are used
with their (empty) authValue.
"""

import collections.abc
import contextlib
import dataclasses
import hmac
import typing as ty

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from oslo_log import log as logging
from tpm2_pytss import constants
from tpm2_pytss import types
from tpm2_pytss import utils as tss_utils
from tpm2_pytss.internal import templates as ek_templates

from nova_vtpm_migration.tpm import auth
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import errors

LOG = logging.getLogger(__name__)

_TR = constants.ESYS_TR
_NO_SYM = types.TPMT_SYM_DEF(algorithm=constants.TPM2_ALG.NULL)
_NV_CHUNK = 512
_RC_HANDLE = 0x8B

#: EK types tried when none are configured: ECC before RSA, low range
#: (the templates every verifier of this version accepts).
DEFAULT_EK_TYPES = ('EK-ECC256', 'EK-RSA2048')

#: Every EK type a host can use, with the persistent handle where its EK
#: is looked for: TCG provisioning guidance for the low range; for the
#: high range the certificate index's low bits (0x01C000xx ->
#: 0x810100xx), where ``swtpm_setup`` persists ``H-3``. A wrong guess costs
#: only a CreatePrimary: a persisted object is used only when it is the
#: certified EK.
EK_TYPES: dict[str, int] = {
    'EK-RSA2048': 0x81010001,       # L-1
    'EK-ECC256': 0x81010002,        # L-2
    'EK-HIGH-RSA2048': 0x81010012,  # H-1
    'EK-HIGH-ECC256': 0x81010014,   # H-2
    'EK-HIGH-ECC384': 0x81010016,   # H-3
    'EK-HIGH-ECC521': 0x81010018,   # H-4
    'EK-HIGH-RSA3072': 0x8101001C,  # H-6
    'EK-HIGH-RSA4096': 0x8101001E,  # H-7
}


def canonical_type(name: str) -> str:
    """The ``EK-...`` name of an EK type given by name or TCG short name
    (``H-3`` -> ``EK-HIGH-ECC384``).

    :raises ValueError: not a supported EK type.
    """
    template = ek_templates.ek_template.lookup(name)
    canonical = template._names[0] if template is not None else None
    if canonical not in EK_TYPES:
        raise ValueError(f'unsupported EK type {name!r}; supported: '
                         f'{", ".join(EK_TYPES)}')
    return str(canonical)


@dataclasses.dataclass(frozen=True)
class Ek:
    """The EK found in the TPM.

    :ivar ek_type: its ``EK-...`` type.
    :ivar certificate: the DER EK certificate from NV.
    :ivar handle: ESYS_TR of the key (persistent or transient).
    :ivar public: its public area.
    :ivar transient: created by :func:`find` (flush it when done).
    """

    ek_type: str
    certificate: bytes
    handle: ty.Any
    public: types.TPM2B_PUBLIC
    transient: bool

    @property
    def needs_policy(self) -> bool:
        """Whether use of the key needs a ``PolicySecret`` session (no
        ``userWithAuth``: the low-range templates)."""
        return not (self.public.publicArea.objectAttributes
                    & constants.TPMA_OBJECT.USERWITHAUTH)


def nv_reader(e: context.Esys) -> collections.abc.Callable[[int], bytes]:
    """An NV read callback for ``tpm2_pytss.utils.create_ek_template``
    (raises ``NoSuchIndex`` for an undefined index)."""
    def read(index: int) -> bytes:
        _, cap = e.get_capability(constants.TPM2_CAP.HANDLES, index, 1)
        if not cap.data.handles or int(cap.data.handles[0]) != index:
            raise tss_utils.NoSuchIndex(index)
        nvh = e.tr_from_tpmpublic(index)
        nvpub, _ = e.nv_read_public(nvh)
        size = int(nvpub.nvPublic.dataSize)
        data = b''
        while len(data) < size:
            n = min(_NV_CHUNK, size - len(data))
            data += bytes(e.nv_read(nvh, n, len(data), auth_handle=nvh))
        return data
    return read


def check_matches_certificate(certificate: bytes,
                              public: types.TPM2B_PUBLIC) -> None:
    """Check that the EK's public key is the certificate's.

    :raises errors.EkCertificateError: unparsable or another key.
    """
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    try:
        cert_key = x509.load_der_x509_certificate(
            certificate).public_key().public_bytes(enc, fmt)
        ek_key = serialization.load_pem_public_key(
            public.publicArea.to_pem()).public_bytes(enc, fmt)
    except Exception as exc:
        raise errors.EkCertificateError(
            reason=f'cannot compare the EK with its certificate ({exc})'
        ) from exc
    if not hmac.compare_digest(cert_key, ek_key):
        raise errors.EkCertificateError(
            reason='the EK does not match the public key of its certificate')


def _persistent(e: context.Esys, handle: int) -> ty.Any:
    try:
        return e.tr_from_tpmpublic(handle)
    except errors.TpmCommandError as exc:
        if context.tpm_rc_code(exc.kwargs['rc']) == _RC_HANDLE:
            return None
        raise


def _persisted_ek(e: context.Esys, handle: int, cert: bytes,
                  template: types.TPM2B_PUBLIC) -> tuple[ty.Any, ty.Any]:
    """The EK persisted at ``handle`` when it is the certified EK of
    ``template``: (ESYS_TR, public), else (None, None)."""
    persisted = _persistent(e, handle)
    if persisted is None:
        return None, None
    pub, _, _ = e.read_public(persisted)
    want, got = template.publicArea, pub.publicArea
    if (got.objectAttributes == want.objectAttributes
            and bytes(got.authPolicy) == bytes(want.authPolicy)
            and got.type == want.type and got.nameAlg == want.nameAlg):
        try:
            check_matches_certificate(cert, pub)
            return persisted, pub
        except errors.EkCertificateError:
            pass
    LOG.warning('Ignoring the object at EK handle %#x: it is not the '
                'certified EK', handle)
    return None, None


def find(e: context.Esys, ek_types: collections.abc.Sequence[str],
         endorsement: auth.HierarchyAuth, *, recreate: bool = False) -> Ek:
    """The EK of the first type in ``ek_types`` whose certificate is in
    NV.

    Unless ``recreate`` is set, an EK persisted at its handle (see
    :data:`EK_TYPES`) is used when it has the template's attributes and
    policy and the certificate's key (CreatePrimary of an RSA EK takes
    seconds on hardware TPMs); otherwise the EK is recreated from the
    template (``CreatePrimary`` in the endorsement hierarchy).

    :raises errors.EkCertificateError: no certificate of these types.
    :raises auth.HierarchyAuthFailed: the endorsement authorisation was
        refused.
    """
    reader = nv_reader(e)
    for name in ek_types:
        ek_type = canonical_type(name)
        try:
            cert, template = tss_utils.create_ek_template(ek_type, reader)
        except ValueError:
            continue      # a high-range type without certificate
        if not cert:
            continue
        cert = bytes(cert)
        if not recreate:
            handle, pub = _persisted_ek(e, EK_TYPES[ek_type], cert,
                                        template)
            if handle is not None:
                return Ek(ek_type, cert, handle, pub, transient=False)
        with endorsement.authorize(e, 'CreatePrimary') as hierarchy:
            handle, pub, *_ = e.create_primary(None, template, hierarchy)
        return Ek(ek_type, cert, handle, pub, transient=True)
    raise errors.EkCertificateError(
        reason=f'no EK certificate of type {", ".join(ek_types)} in TPM NV')


@contextlib.contextmanager
def authorized(e: context.Esys, ek: Ek, endorsement: auth.HierarchyAuth
               ) -> collections.abc.Iterator[ty.Any]:
    """Yield the session that authorises one use of the EK (as parent, or
    in ActivateCredential): a ``PolicySecret(TPM_RH_ENDORSEMENT)`` policy
    session for low-range EKs (flushed afterwards), the password session
    for high-range EKs.

    :raises auth.HierarchyAuthFailed: the endorsement authorisation was
        refused.
    """
    if not ek.needs_policy:
        yield _TR.PASSWORD
        return
    s = e.start_auth_session(_TR.NONE, _TR.NONE, constants.TPM2_SE.POLICY,
                             _NO_SYM, constants.TPM2_ALG.SHA256)
    try:
        with endorsement.authorize(e, 'PolicySecret') as hierarchy:
            e.policy_secret(hierarchy, s)
        yield s
    finally:
        # Gone already when the command did not continue it.
        with contextlib.suppress(errors.TpmError):
            e.flush_context(s)
