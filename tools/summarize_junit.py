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

"""Print one summary line per runner result file and a total line.

Result files are JUnit XML (``*.xml``, pytest) or ``subunit-stats``
output (``*.stats``, stestr).

Exit status 1 when any test failed or errored, or when no test ran at all.
"""

import pathlib
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - our own runner output


def _counts(path: pathlib.Path) -> tuple[int, int, int]:
    root = ET.parse(path).getroot()  # noqa: S314 - trusted local file
    suites = [root] if root.tag == 'testsuite' else root.findall('testsuite')
    total = failed = skipped = 0
    for suite in suites:
        total += int(suite.get('tests', 0))
        failed += int(suite.get('failures', 0)) + int(suite.get('errors', 0))
        skipped += int(suite.get('skipped', 0))
    return total - failed - skipped, failed, skipped


def _stats_counts(path: pathlib.Path) -> tuple[int, int, int]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(':')
        if value.strip().isdigit():
            values[key.strip()] = int(value)
    return (values['Passed tests'], values['Failed tests'],
            values['Skipped tests'])


def main(paths: list[str]) -> int:
    passed = failed = skipped = 0
    for name in paths:
        path = pathlib.Path(name)
        if '*' in path.name:
            continue
        if not path.exists() or path.stat().st_size == 0:
            print(f'{path.stem}: no results (runner crashed?)')
            failed += 1
            continue
        try:
            p, f, s = (_stats_counts(path) if path.suffix == '.stats'
                       else _counts(path))
        except (KeyError, ET.ParseError) as exc:
            print(f'{path.stem}: unreadable results ({exc})')
            failed += 1
            continue
        print(f'{path.stem}: {p} passed, {f} failed, {s} skipped')
        passed, failed, skipped = passed + p, failed + f, skipped + s
    print(f'total: {passed} passed, {failed} failed, {skipped} skipped')
    if passed == 0:
        print('no test passed: treating the run as a failure')
        return 1
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
