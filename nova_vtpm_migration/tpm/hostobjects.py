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

"""The TPM objects every host TPM operation stands on.

:class:`HostObjects` is the base of
:class:`~nova_vtpm_migration.tpm.host.HostTpm`: inside a
:class:`~nova_vtpm_migration.tpm.context.TpmContext` block it finds, or
creates when missing, the SRK and the AK (persistent) and the EK, keeps
the salted sessions and the loaded keys resident, runs a command under
``TPM2_PolicyPCR`` over the configured PCRs and reads those PCRs. The
operations themselves (identity, quotes, keys, sealing) are in
:mod:`~nova_vtpm_migration.tpm.host`.
"""

import collections.abc
import contextlib
import typing as ty

from oslo_log import log as logging
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration.tpm import auth
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import ek as ek_mod
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import keyblobs
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import rc

LOG = logging.getLogger(__name__)

_TR = constants.ESYS_TR
_AES128CFB = types.TPMT_SYM_DEF(
    algorithm=constants.TPM2_ALG.AES,
    keyBits=types.TPMU_SYM_KEY_BITS(aes=128),
    mode=types.TPMU_SYM_MODE(aes=constants.TPM2_ALG.CFB))
_T = ty.TypeVar('_T')


class HostObjects:
    """SRK, EK, AK, resident sessions and keys of this host's TPM (the
    low-level helpers of :class:`~nova_vtpm_migration.tpm.host.HostTpm`,
    whose constructor sets the attributes below). Every method runs
    inside an esys block.
    """

    #: Persistent handle of the SRK (created if absent).
    srk_handle: int
    #: Persistent handle of the AK (created if absent).
    ak_handle: int
    #: sha256 PCR indices quoted and used in policies.
    pcr_selection: tuple[int, ...]
    #: EK types whose certificate is looked for, in order.
    ek_types: tuple[str, ...]
    #: The owner hierarchy's authorisation value.
    owner_auth: auth.HierarchyAuth
    #: The endorsement hierarchy's authorisation value.
    endorsement_auth: auth.HierarchyAuth

    def _srk(self, e: context.Esys) -> ty.Any:
        try:
            return e.persistent(self.srk_handle)
        except errors.TpmCommandError as exc:
            if context.tpm_rc_code(exc.kwargs['rc']) != rc.RC_HANDLE:
                raise
        LOG.info('Creating the SRK at persistent handle %#x',
                 self.srk_handle)
        with self.owner_auth.authorize(e, 'CreatePrimary') as owner:
            tmp, *_ = e.create_primary(None, objects.srk_template(), owner)
        with self.owner_auth.authorize(e, 'EvictControl') as owner:
            e.evict_control(owner, tmp, self.srk_handle)
        e.flush_context(tmp)
        return e.persistent(self.srk_handle)

    def _ek(self, e: context.Esys, recreate: bool = False) -> ek_mod.Ek:
        """This host's EK (see :func:`~nova_vtpm_migration.tpm.ek.find`).
        """
        return ek_mod.find(e, self.ek_types, self.endorsement_auth,
                           recreate=recreate)

    def _session(self, e: context.Esys, kind: str) -> ty.Any:
        """The resident session ``kind`` salted to the SRK: ``policy``
        (PolicyPCR; the TPM encrypts the first response parameter: Z,
        unsealed data) or ``hmac`` (the caller's first command parameter,
        a secret to seal, travels encrypted)."""
        srk = self._srk(e)

        def start(e: context.Esys) -> ty.Any:
            policy_kind = kind == 'policy'
            s = e.start_auth_session(
                srk, _TR.NONE, constants.TPM2_SE.POLICY if policy_kind
                else constants.TPM2_SE.HMAC, _AES128CFB,
                constants.TPM2_ALG.SHA256)
            e.trsess_set_attributes(
                s, constants.TPMA_SESSION.CONTINUESESSION
                | (constants.TPMA_SESSION.ENCRYPT if policy_kind
                   else constants.TPMA_SESSION.DECRYPT))
            return s
        return e.resident(f'{kind}-session/{self.srk_handle:#x}', start)

    def _with_pcr_policy(self, e: context.Esys,
                         command: collections.abc.Callable[[ty.Any], _T]
                         ) -> _T:
        """Run ``command(session)`` on the resident policy session armed
        with PolicyPCR over the configured PCRs.

        The TPM resets a policy session after a successful use; after a
        failed one it is restarted here (``TPM2_PolicyRestart``).
        """
        s = self._session(e, 'policy')
        try:
            e.policy_pcr(s, None, objects.selection_string(self.pcr_selection))
            return command(s)
        except context.ResidentLost:
            raise
        except errors.TpmError:
            with contextlib.suppress(errors.TpmError):
                e.policy_restart(s)
            raise

    def _ak(self, e: context.Esys) -> ty.Any:
        try:
            return e.persistent(self.ak_handle)
        except errors.TpmCommandError as exc:
            if context.tpm_rc_code(exc.kwargs['rc']) != rc.RC_HANDLE:
                raise
        # Identity() creates the AK; it must have been proven to the
        # peers through a credential challenge first.
        self._create_ak(e)
        return e.persistent(self.ak_handle)

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
        return objects.read_pcrs(e, self.pcr_selection)

    def _loaded(self, e: context.Esys, kind: str,
                blob: keyblobs.KeyBlob) -> ty.Any:
        """``blob`` loaded under the SRK as the resident ``kind`` (one
        key of each kind stays loaded)."""
        srk = self._srk(e)
        pub = objects.unmarshal_public(blob.public)
        key = f'{kind}/{objects.public_name(pub).hex()}'
        for other in e.resident_keys():
            if other.startswith(kind + '/') and other != key:
                e.drop_resident(other)

        def load(e: context.Esys) -> ty.Any:
            priv, _ = types.TPM2B_PRIVATE.unmarshal(blob.private)
            return e.load(srk, priv, pub)
        return e.resident(key, load)
