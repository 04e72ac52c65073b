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

"""``make demo``: an attested vTPM live migration, end to end.

This module grows with the project; it runs the most complete end-to-end
flow that exists and says what is still missing.
"""

import sys

MISSING = (
    'host TPM trust layer (issue 3)',
    'migration protocol (issue 4)',
    'QEMU + swtpm data plane (issue 6)',
)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    print('nova-vtpm-migration demo')
    print('Not yet available:')
    for item in MISSING:
        print(f'  - {item}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
