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


"""Timings of phase 1, phase 2 and the commit on swtpm hosts (medians).

Run with ``-s`` to see the figures; the bounds only catch gross
regressions (swtpm is 100-1000x faster than a hardware TPM).
"""

import statistics
import time

import pytest

from tests.functional.protocol import conftest

RUNS = 7


def test_phase_timings(cluster: conftest.Cluster,
                       capsys: pytest.CaptureFixture[str]) -> None:
    src = cluster.nodes['src']
    phase1, phase2, commit = [], [], []
    for _ in range(RUNS):
        inst, _secret = conftest.new_instance(src)
        t0 = time.perf_counter()
        src.engine.attest_peer('dst', fresh=True)
        t1 = time.perf_counter()
        handle = src.engine.migrate_key(inst, 'dst')
        t2 = time.perf_counter()
        src.engine.commit(handle.migration_id)
        t3 = time.perf_counter()
        phase1.append(t1 - t0)
        phase2.append(t2 - t1)
        commit.append(t3 - t2)
    result = {name: statistics.median(values) * 1000
              for name, values in (('phase1', phase1), ('phase2', phase2),
                                   ('commit', commit))}
    with capsys.disabled():
        print(f"\nswtpm medians of {RUNS} runs: phase 1 "
              f"{result['phase1']:.1f} ms, phase 2 {result['phase2']:.1f} "
              f"ms, commit {result['commit']:.1f} ms")
    assert result['phase1'] < 10000 and result['phase2'] < 10000
