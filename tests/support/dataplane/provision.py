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


"""Recognisable vTPM content, written before and read back after migration.

:func:`provision_state` puts three kinds of state into an instance's vTPM
through tpm2-pytss (ESAPI over the swtpm TCTI):

- an NV index (owner-authorised) holding random bytes;
- a persistent ECC P-256 primary key with a random ``unique`` field
  (its public area and name identify it);
- extended PCRs (sha256 bank) with random digests.

:func:`read_back_state` reads the same items and :func:`compare` reports
every difference.

Order of operations, verified with swtpm 0.7.1 and QEMU 7.2 here:

1. Before the guest exists, the vTPM runs standalone (``--flags
   not-need-init,startup-clear``, server socket for the TCTI), is
   provisioned, then saved orderly with ``TPM2_Shutdown(STATE)`` and
   stopped with ``CMD_SHUTDOWN``. The permanent state file then holds the
   NV index, the persistent key and the saved PCRs.
2. The vTPM is restarted on the same state directory with the same key in
   QEMU mode (no ``--flags``); QEMU sends ``CMD_INIT`` and the guest runs.
3. After migration the destination guest is stopped (QEMU ``quit``, after
   which its swtpm exits), the vTPM is started standalone with ``--flags
   not-need-init`` and :func:`read_back_state` sends
   ``TPM2_Startup(STATE)`` (a TPM Resume), which restores the saved PCRs.

Consequences:

- PCRs are provisioned in the range 0-15 (the default here is 8 and 14):
  the PC Client PCRs 16-23 (debug, D-RTM, application) are reset by a
  TPM Resume, so PCR 16/23 values cannot survive step 3 on any TPM.
- A guest whose firmware starts the TPM (SeaBIOS sends
  ``TPM2_Startup(CLEAR)``) resets the PCRs in step 2, and swtpm 0.7.1
  does not save the volatile state when QEMU quits (the auto-shutdown came
  in 0.8), so PCR values can only be compared with a firmware that leaves
  the TPM alone (:data:`.guest.FIRMWARE_NO_TPM`). The NV index and the
  persistent key are permanent state and survive either way;
  :func:`read_back_state` falls back to ``TPM2_Startup(CLEAR)`` and
  reports ``resumed=False`` when the saved state cannot be resumed.
"""

import dataclasses
import os
import secrets

from oslo_log import log as logging
import tpm2_pytss
from tpm2_pytss import constants as tpm_const
from tpm2_pytss import types as tpm_types

from tests.support.dataplane import errors
from tests.support.dataplane import vtpm

LOG = logging.getLogger(__name__)

#: Owner-range NV index used for the recognisable data.
NV_INDEX = 0x01000180
#: Owner-range persistent handle of the recognisable key.
KEY_HANDLE = 0x81000180
#: PCRs extended (sha256 bank); saved by ``TPM2_Shutdown(STATE)``.
PCRS = (8, 14)
NV_SIZE = 64


@dataclasses.dataclass(frozen=True)
class VtpmContents:
    """What a vTPM holds (all public test data, nothing secret).

    :ivar nv_index: the NV index.
    :ivar nv_data: its contents.
    :ivar key_handle: the persistent key's handle.
    :ivar key_name: the key's TPM name (``nameAlg`` || digest).
    :ivar key_public: the key's marshalled ``TPM2B_PUBLIC``.
    :ivar pcrs: sha256 PCR values by PCR index.
    :ivar resumed: the TPM state was resumed (``TPM2_Startup(STATE)``);
        ``False`` if it had to be cleared, which resets the PCRs.
    """

    nv_index: int
    nv_data: bytes = dataclasses.field(repr=False)
    key_handle: int
    key_name: bytes
    key_public: bytes = dataclasses.field(repr=False)
    pcrs: dict[int, bytes] = dataclasses.field(repr=False)
    resumed: bool = True


def _esapi(tcti: str) -> tpm2_pytss.ESAPI:
    name, _, conf = tcti.partition(':')
    return tpm2_pytss.ESAPI(tpm2_pytss.TCTILdr(name, conf))


def _pcr_selection(pcrs: tuple[int, ...]) -> tpm_types.TPML_PCR_SELECTION:
    return tpm_types.TPML_PCR_SELECTION.parse(
        'sha256:' + ','.join(str(p) for p in pcrs))


def _read_pcrs(esys: tpm2_pytss.ESAPI,
               pcrs: tuple[int, ...]) -> dict[int, bytes]:
    _, _, digests = esys.pcr_read(_pcr_selection(pcrs))
    values = [bytes(d) for d in digests]
    if len(values) != len(pcrs):
        raise errors.ProvisioningError(
            state_dir='?',
            reason=f'PCR read returned {len(values)} of {len(pcrs)} values')
    return dict(zip(sorted(pcrs), values, strict=True))


def _key_template() -> tpm_types.TPM2B_PUBLIC:
    attrs = (tpm_const.TPMA_OBJECT.FIXEDTPM
             | tpm_const.TPMA_OBJECT.FIXEDPARENT
             | tpm_const.TPMA_OBJECT.SENSITIVEDATAORIGIN
             | tpm_const.TPMA_OBJECT.USERWITHAUTH
             | tpm_const.TPMA_OBJECT.SIGN_ENCRYPT)
    public = tpm_types.TPMT_PUBLIC.parse('ecc256:ecdsa-sha256',
                                         objectAttributes=attrs)
    # A random unique field makes the key differ from any
    # other primary key of this TPM, so a matching name after migration
    # cannot be a coincidence.
    public.unique.ecc.x = secrets.token_bytes(32)
    return tpm_types.TPM2B_PUBLIC(publicArea=public)


def provision(tcti: str, pcrs: tuple[int, ...] = PCRS,
              nv_index: int = NV_INDEX,
              key_handle: int = KEY_HANDLE) -> VtpmContents:
    """Write the recognisable content into a running, started TPM.

    :param tcti: TCTI configuration, e.g. ``swtpm:path=/x/tpm.sock``.
    :param pcrs: PCR indices to extend (sha256 bank).
    :param nv_index: NV index to define.
    :param key_handle: persistent handle for the key.
    :returns: what was written, as read back from the TPM.
    """
    nv_data = secrets.token_bytes(NV_SIZE)
    esys = _esapi(tcti)
    try:
        nv_public = tpm_types.TPM2B_NV_PUBLIC(
            nvPublic=tpm_types.TPMS_NV_PUBLIC(
                nvIndex=nv_index, nameAlg=tpm_const.TPM2_ALG.SHA256,
                attributes=(tpm_const.TPMA_NV.OWNERWRITE
                            | tpm_const.TPMA_NV.OWNERREAD
                            | tpm_const.TPMA_NV.NO_DA),
                dataSize=NV_SIZE))
        nv = esys.nv_define_space(None, nv_public)
        esys.nv_write(nv, nv_data, auth_handle=tpm_const.ESYS_TR.OWNER)
        handle, _, _, _, _ = esys.create_primary(None, _key_template())
        esys.evict_control(tpm_const.ESYS_TR.OWNER, handle, key_handle)
        esys.flush_context(handle)
        for pcr in pcrs:
            digest = tpm_types.TPMT_HA(
                hashAlg=tpm_const.TPM2_ALG.SHA256,
                digest=tpm_types.TPMU_HA(sha256=secrets.token_bytes(32)))
            esys.pcr_extend(_pcr_esys_tr(pcr),
                            tpm_types.TPML_DIGEST_VALUES([digest]))
        return _read(esys, pcrs, nv_index, key_handle, resumed=True)
    finally:
        esys.close()


def _pcr_esys_tr(pcr: int) -> tpm_const.ESYS_TR:
    return tpm_const.ESYS_TR(getattr(tpm_const.ESYS_TR, f'PCR{pcr}'))


def _read(esys: tpm2_pytss.ESAPI, pcrs: tuple[int, ...], nv_index: int,
          key_handle: int, resumed: bool) -> VtpmContents:
    nv = esys.tr_from_tpmpublic(nv_index)
    nv_pub, _ = esys.nv_read_public(nv)
    size = nv_pub.nvPublic.dataSize
    nv_data = bytes(esys.nv_read(nv, size, 0,
                                 auth_handle=tpm_const.ESYS_TR.OWNER))
    key = esys.tr_from_tpmpublic(key_handle)
    public, name, _ = esys.read_public(key)
    return VtpmContents(nv_index=nv_index, nv_data=nv_data,
                        key_handle=key_handle, key_name=bytes(name),
                        key_public=public.marshal(),
                        pcrs=_read_pcrs(esys, pcrs), resumed=resumed)


def read_back(tcti: str, pcrs: tuple[int, ...] = PCRS,
              nv_index: int = NV_INDEX,
              key_handle: int = KEY_HANDLE) -> VtpmContents:
    """Start a not-yet-started TPM and read the recognisable content.

    Sends ``TPM2_Startup(STATE)``; if the TPM has no orderly saved state,
    ``TPM2_Startup(CLEAR)`` (then ``resumed`` is ``False``).

    :param tcti: TCTI configuration.
    :param pcrs: PCR indices to read.
    :param nv_index: the NV index.
    :param key_handle: the persistent key's handle.
    """
    esys = _esapi(tcti)
    try:
        resumed = True
        try:
            esys.startup(tpm_const.TPM2_SU.STATE)
        except tpm2_pytss.TSS2_Exception as e:
            LOG.info('TPM2_Startup(STATE) refused (%s); clearing', e)
            esys.startup(tpm_const.TPM2_SU.CLEAR)
            resumed = False
        contents = _read(esys, pcrs, nv_index, key_handle, resumed)
        esys.shutdown(tpm_const.TPM2_SU.STATE)
        return contents
    finally:
        esys.close()


def provision_state(state_dir: str, key: vtpm.VtpmKey,
                    pcrs: tuple[int, ...] = PCRS) -> VtpmContents:
    """Provision an instance's vTPM state directory before its guest starts.

    Runs swtpm standalone on *state_dir* with *key*, provisions, saves the
    state orderly (``TPM2_Shutdown(STATE)``) and stops swtpm.

    :param state_dir: the vTPM state directory (created if missing).
    :param key: the instance's vTPM secret.
    :param pcrs: PCR indices to extend.
    :raises ProvisioningError: a TPM command failed.
    """
    proc = vtpm.VtpmProcess(state_dir, key, standalone=True,
                            startup_clear=True,
                            name='provision-{}'.format(os.path.basename(
                                state_dir)))
    proc.start()
    try:
        contents = provision(proc.tcti, pcrs)
        esys = _esapi(proc.tcti)
        try:
            esys.shutdown(tpm_const.TPM2_SU.STATE)
        finally:
            esys.close()
    except tpm2_pytss.TSS2_Exception as e:
        raise errors.ProvisioningError(state_dir=state_dir,
                                       reason=str(e)) from e
    finally:
        proc.stop()
    return contents


def read_back_state(state_dir: str, key: vtpm.VtpmKey,
                    pcrs: tuple[int, ...] = PCRS) -> VtpmContents:
    """Read a stopped vTPM's state directory back through tpm2-pytss.

    :param state_dir: the vTPM state directory; no other swtpm may run
        on it (stop the guest first).
    :param key: the vTPM secret the state files are encrypted with.
    :param pcrs: PCR indices to read.
    :raises ProcessStartError: swtpm cannot open the state (wrong key).
    :raises ProvisioningError: a TPM command failed (e.g. no NV index).
    """
    proc = vtpm.VtpmProcess(state_dir, key, standalone=True,
                            name='readback-{}'.format(os.path.basename(
                                state_dir)))
    proc.start()
    try:
        return read_back(proc.tcti, pcrs)
    except tpm2_pytss.TSS2_Exception as e:
        raise errors.ProvisioningError(state_dir=state_dir,
                                       reason=str(e)) from e
    finally:
        proc.stop()


def compare(expected: VtpmContents, actual: VtpmContents) -> list[str]:
    """List every difference between two contents (empty: identical).

    :param expected: what was provisioned.
    :param actual: what was read back.
    """
    problems = []
    if not actual.resumed:
        problems.append('TPM state could not be resumed (PCRs reset)')
    if actual.nv_data != expected.nv_data:
        problems.append(f'NV index 0x{expected.nv_index:x} data differs')
    if actual.key_name != expected.key_name:
        problems.append(
            f'persistent key 0x{expected.key_handle:x} name differs')
    if actual.key_public != expected.key_public:
        problems.append(
            f'persistent key 0x{expected.key_handle:x} public area differs')
    for pcr, value in sorted(expected.pcrs.items()):
        if actual.pcrs.get(pcr) != value:
            problems.append(f'PCR {pcr} differs')
    return problems
