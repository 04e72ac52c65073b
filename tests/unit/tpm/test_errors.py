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

"""Translation of TSS2 response codes into the TPM error tree (no TPM)."""

import pytest
import tpm2_pytss

from nova_vtpm_migration import exception
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import errors


@pytest.mark.parametrize('rc, expected', [
    (0x000A000A, errors.TpmUnavailable),      # tcti: IO failure
    (0x000A0008, errors.TpmUnavailable),      # tcti: no connection
    (0x000A0009, errors.TpmBusy),             # tcti: try again
    (0x00000101, errors.TpmFailureMode),
    (0x00000100, errors.TpmUnavailable),      # TPM_RC_INITIALIZE
    (0x00000921, errors.TpmLockout),
    (0x00000922, errors.TpmBusy),             # TPM_RC_RETRY
    (0x00000908, errors.TpmBusy),             # TPM_RC_YIELDED
    (0x0000099D, errors.TpmPolicyCheckFailed),  # session 1 policy fail
    (0x00000128, errors.TpmPolicyCheckFailed),  # PCR changed
    (0x0000018B, errors.TpmCommandError),     # handle 1 not found
    (0x000001DF, errors.TpmCommandError),     # param 1 integrity
    (0x00070007, errors.TpmCommandError),     # esys: bad sequence
    (0x000B0922, errors.TpmBusy),             # resmgr-forwarded retry
])
def test_mapping(rc: int, expected: type[errors.TpmError]) -> None:
    err = context.map_tss_error('swtpm:port=1', 'quote',
                                tpm2_pytss.TSS2_Exception(rc))
    assert type(err) is expected
    assert isinstance(err, exception.VtpmMigrationException)
    assert str(err)


def test_rc_code() -> None:
    assert context.tpm_rc_code(0x99D) == 0x9D
    assert context.tpm_rc_code(0x1DF) == 0x9F
    assert context.tpm_rc_code(0x922) == 0x922
    assert context.tpm_rc_code(0xA000A) is None


def test_trees_are_separate() -> None:
    assert issubclass(errors.PolicyViolation, errors.VerificationError)
    assert not issubclass(errors.VerificationError, errors.TpmError)
    v = errors.PolicyViolation(rule='pcr[7]', expected='a', actual='b')
    assert v.rule == 'pcr[7]' and 'pcr[7]' in str(v)
