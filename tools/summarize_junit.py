"""Print one summary line per JUnit XML file and a total line.

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


def main(paths: list[str]) -> int:
    passed = failed = skipped = 0
    for name in paths:
        path = pathlib.Path(name)
        if not path.exists() or path.stat().st_size == 0:
            print(f'{path.stem}: no results (runner crashed?)')
            failed += 1
            continue
        p, f, s = _counts(path)
        print(f'{path.stem}: {p} passed, {f} failed, {s} skipped')
        passed, failed, skipped = passed + p, failed + f, skipped + s
    print(f'total: {passed} passed, {failed} failed, {skipped} skipped')
    if passed == 0:
        print('no test passed: treating the run as a failure')
        return 1
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
