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

"""``make demo``: the product's own path on real libvirt, where it runs.

Runs :mod:`tests.nova.real_libvirt.demo_scenario` (Nova's services
in-process, this plugin's driver, real libvirt daemons, QEMU guests and
swtpm host TPMs). When this machine cannot run libvirt daemons (no
mount-namespace rights, packages missing) it says why and runs the
data-plane demo (:mod:`tools.demo`: QEMU, QMP and swtpm driven directly,
no Nova, no libvirt) instead. The exit status is the demo's.
"""

import argparse
import sys

from tests.support.libvirt import daemons


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='make demo',
        description='Nova live-migrates a vTPM guest on real libvirt '
                    'daemons through this plugin (the data-plane demo '
                    'where libvirt daemons cannot run).')
    p.add_argument('--dataplane', action='store_true',
                   help='run the data-plane demo (tools/demo.py) even '
                        'where libvirt daemons can run')
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the real-libvirt demo, or the data-plane demo; return the
    exit status."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest:
        parser.error(f'{" ".join(rest)}: options of the data-plane demo '
                     '(make demo-dataplane DEMO_ARGS=...)')
    reason = None if args.dataplane else daemons.unavailable_reason()
    if args.dataplane or reason is not None:
        if reason is not None:
            print(f'make demo: real libvirt daemons cannot run on this '
                  f'machine: {reason}')
            print('make demo: running the data-plane demo instead '
                  '(tools/demo.py: QEMU, QMP and swtpm driven directly, '
                  'without Nova and libvirt)', flush=True)
        from tools import demo
        return demo.main([])
    # Imported only here: it loads libvirt and Nova's test fixtures.
    from tests.nova.real_libvirt import demo_scenario
    return int(demo_scenario.main())


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
