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

"""TPM response codes: classification and translation of a
``TSS2_Exception`` into the :mod:`~nova_vtpm_migration.tpm.errors` tree."""

import tpm2_pytss

from nova_vtpm_migration.tpm import errors

# TSS2 layers (bits 16-23 of a TSS2_RC) and base codes.
_LAYER_MASK = 0xFF0000
_TPM_LAYER = 0x000000
_RESMGR_TPM_LAYER = 0x0B0000
_BASE_NO_CONNECTION = 8
_BASE_TRY_AGAIN = 9
_BASE_IO_ERROR = 10

# TPM response codes (handle/session/parameter numbers removed).
_RC_INITIALIZE = 0x100
_RC_FAILURE = 0x101
_RC_POLICY = 0x126
_RC_PCR_CHANGED = 0x128
_RC_POLICY_FAIL = 0x09D
_RC_YIELDED = 0x908
_RC_TESTING = 0x90A
_RC_NV_UNAVAILABLE = 0x923
_RC_LOCKOUT = 0x921
_RC_RETRY = 0x922
RC_OBJECT_MEMORY = 0x902
RC_SESSION_MEMORY = 0x903
RC_HANDLE = 0x08B
#: ESAPI: the ESYS_TR is not (or no longer) a resource object.
ESYS_BAD_TR = 0x70018
#: The TPM is out of object or session slots.
MEMORY_CODES = frozenset((RC_OBJECT_MEMORY, RC_SESSION_MEMORY))
#: TPM_RC_REFERENCE_H0..H6 and _S0..S6: a handle or session not loaded.
REFERENCE_CODES = frozenset(range(0x910, 0x91F))
_BUSY_CODES = frozenset((_RC_YIELDED, _RC_TESTING, _RC_RETRY,
                         _RC_NV_UNAVAILABLE))
_POLICY_CODES = frozenset((_RC_POLICY_FAIL, _RC_PCR_CHANGED, _RC_POLICY))

def tpm_rc_code(rc: int) -> int | None:
    """The TPM response code of ``rc`` without its handle/session/parameter
    number, or ``None`` when ``rc`` does not come from the TPM.

    :param rc: a ``TSS2_RC``.
    """
    if rc & _LAYER_MASK not in (_TPM_LAYER, _RESMGR_TPM_LAYER):
        return None
    base = rc & 0xFFFF
    if base & 0x80:
        return base & 0xBF
    return base & 0xFFF


def map_tss_error(tcti: str, command: str,
                  exc: tpm2_pytss.TSS2_Exception) -> errors.TpmError:
    """Translate a ``TSS2_Exception`` into a :class:`~errors.TpmError`.

    :param tcti: the TPM's TCTI string (for the message).
    :param command: the ESAPI method that failed.
    :param exc: the exception raised by tpm2-pytss.
    """
    rc = int(exc.rc)
    code = tpm_rc_code(rc)
    if code is None:
        base = rc & 0xFFFF
        if base in (_BASE_NO_CONNECTION, _BASE_IO_ERROR):
            return errors.TpmUnavailable(
                tcti=tcti, reason=f'{command}: {exc} (rc={rc:#x})')
        if base == _BASE_TRY_AGAIN:
            return errors.TpmBusy(tcti=tcti, reason=f'{command}: {exc}')
        return errors.TpmCommandError(command=command, error=str(exc), rc=rc)
    if code == _RC_FAILURE:
        return errors.TpmFailureMode(tcti=tcti, command=command, rc=rc)
    if code == _RC_INITIALIZE:
        return errors.TpmUnavailable(
            tcti=tcti, reason=f'{command}: TPM not started (TPM2_Startup '
                              f'missing, rc={rc:#x})')
    if code == _RC_LOCKOUT:
        return errors.TpmLockout(tcti=tcti, command=command, rc=rc)
    if code in _BUSY_CODES:
        return errors.TpmBusy(
            tcti=tcti, reason=f'{command} returned {exc} (rc={rc:#x})')
    if code in _POLICY_CODES:
        return errors.TpmPolicyCheckFailed(command=command, error=str(exc),
                                           rc=rc)
    return errors.TpmCommandError(command=command, error=str(exc), rc=rc)
