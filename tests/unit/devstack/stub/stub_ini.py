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

"""INI file edits with DevStack's semantics, for the DevStack stub.

Usage: ``stub_ini.py set|add|get|getall FILE SECTION OPTION [VALUE...]``.
Option lines are ``option = value``; an option may repeat (multi-valued).
"""

import pathlib
import re
import sys

_SECTION = re.compile(r'^\[(?P<name>[^\]]+)\]\s*$')
_OPTION = re.compile(r'^(?P<key>[^#;\s=][^=]*?)\s*=\s*(?P<value>.*)$')


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """Return ``{section: {option: [values]}}`` of an INI text.

    :param text: the file content.
    """
    result: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        found = _SECTION.match(line)
        if found:
            section = found.group('name')
            result.setdefault(section, {})
            continue
        found = _OPTION.match(line)
        if found and section is not None:
            result[section].setdefault(found.group('key'), []).append(
                found.group('value'))
    return result


def _edit(lines: list[str], section: str, option: str,
          values: list[str], replace: bool) -> list[str]:
    out: list[str] = []
    current = None
    seen_section = False
    inserted = False
    for line in lines:
        found = _SECTION.match(line)
        if found:
            if current == section and not inserted:
                out.extend(f'{option} = {v}' for v in values)
                inserted = True
            current = found.group('name')
            seen_section = seen_section or current == section
            out.append(line)
            continue
        opt = _OPTION.match(line)
        if (current == section and opt and opt.group('key') == option
                and replace):
            continue
        out.append(line)
    if current == section and not inserted:
        out.extend(f'{option} = {v}' for v in values)
        inserted = True
    if not seen_section:
        out.append(f'[{section}]')
        out.extend(f'{option} = {v}' for v in values)
    return out


def main(argv: list[str]) -> int:
    """Run one command; print values for get/getall."""
    command, path, section, option, *values = argv
    file = pathlib.Path(path)
    text = file.read_text() if file.exists() else ''
    if command in ('get', 'getall'):
        found = parse(text).get(section, {}).get(option, [])
        print('\n'.join(found[:1] if command == 'get' else found))
        return 0
    lines = _edit(text.splitlines(), section, option, values,
                  replace=command == 'set')
    file.write_text('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
