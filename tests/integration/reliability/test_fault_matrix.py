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



"""Fault-injection matrix: every (protocol step x fault) cell runs a
migration between two host *processes* on real swtpm TPMs, injects the
fault (real SIGKILLs, lost/duplicated/reordered messages, timeouts, TPM
errors, journal disk full / I/O errors), restarts what died, runs
recovery and checks the invariant: exactly one host holds a usable key,
equal to the original; nothing left LOCKED/PENDING or in doubt; no TPM
object leaked; no plaintext secret on disk.

``make test`` runs :data:`matrix.SUBSET`; ``NVM_FAULT_MATRIX=full`` (the
campaign) runs every cell. The table is printed at the end of the run.
"""

import typing as ty

import pytest

from tests.integration.reliability import matrix
from tests.integration.reliability import procs
from tests.support import faults

CELLS = matrix.selected_cells()


@pytest.mark.slow
@pytest.mark.parametrize(('step', 'fault'), CELLS,
                         ids=[f'{s.label}-{f}'.replace(' ', '')
                              for s, f in CELLS])
def test_cell(tpm_hosts: dict[str, procs.TpmHost],
              policy_doc: dict[str, ty.Any], step: faults.Step,
              fault: str) -> None:
    res = matrix.run_cell(tpm_hosts, policy_doc, step, fault)
    assert res.passed, res.detail


def test_matrix_shape() -> None:
    """Every step has at least one fault, every fault at least one step.
    """
    for step in faults.STEPS:
        assert any(faults.applicable(step, f) for f in faults.FAULTS)
    for fault in faults.FAULTS:
        assert any(faults.applicable(s, fault) for s in faults.STEPS)
    assert len(faults.cells()) >= 90
