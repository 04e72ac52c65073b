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


"""Measure plain vs protocol-secured live migration on a local testbed.

Usage (from the repository root)::

    .venv/bin/python tools/dataplane_timings.py [--runs 12] [--no-return-path]

Prints, per mode, the median [min-max] of QEMU's ``downtime`` and
``total-time`` and the median of every phase. Each run provisions a fresh
instance, migrates it and verifies the destination vTPM bit for bit.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault('TSS2_LOG', 'all+NONE')

from tests.support.dataplane import migration  # noqa: E402
from tests.support.dataplane import provision  # noqa: E402
from tests.support.dataplane import testbed  # noqa: E402
from tools.bench import stats  # noqa: E402

MODES = {'plain': {'secured_mode': False},
         'secured': {},
         'secured-fresh-attestation': {'fresh_attestation': True}}


def _fmt(samples: list[float]) -> str:
    s = stats.summarize(samples)
    return f'{s.median:.1f} [{s.minimum:.0f}-{s.maximum:.0f}]'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=12)
    parser.add_argument('--no-return-path', action='store_true',
                        help='QEMU reports only the source side of the '
                             'downtime')
    args = parser.parse_args()
    results: dict[str, list[migration.MigrationResult]] = {
        m: [] for m in MODES}
    with testbed.Testbed() as tb:
        for h in tb.hosts.values():
            h.return_path = not args.no_return_path
        for _ in range(args.runs):
            for mode, kwargs in MODES.items():
                inst, contents = tb.new_instance('src')
                time.sleep(0.3)  # let the guest firmware run
                result = tb.migrate(inst, 'src', 'dst', **kwargs)
                if not result.committed:
                    print(f'{mode}: migration failed: {result.error}')
                    return 1
                assert contents is not None
                diff = provision.compare(contents,
                                         tb.hosts['dst'].read_back(inst))
                if diff:
                    print(f'{mode}: vTPM differs: {diff}')
                    return 1
                tb.hosts['dst'].destroy_instance(inst)
                results[mode].append(result)
    for mode, rs in results.items():
        qemu = [r.qemu for r in rs if r.qemu is not None]
        print(f'{mode} (n={len(rs)}): downtime '
              f'{_fmt([float(q.downtime_ms or 0) for q in qemu])} ms, '
              f'total-time {_fmt([float(q.total_time_ms or 0) for q in qemu])}'
              ' ms')
        for phase in rs[0].phases_ms:
            print(f'    {phase}: '
                  f'{_fmt([r.phases_ms[phase] for r in rs])} ms')
    return 0


if __name__ == '__main__':
    sys.exit(main())
