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

"""Build the Sphinx documentation with warnings as errors."""

import pathlib
import re
import subprocess
import sys

import pytest

from nova_vtpm_migration.conf import vtpm_migration

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / 'doc' / 'source'


@pytest.fixture(scope='module')
def html(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp('html')
    doctrees = tmp_path_factory.mktemp('doctrees')
    proc = subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-b', 'html',
         '-d', str(doctrees), str(SOURCE), str(out)],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_every_page_is_built(html: pathlib.Path) -> None:
    sources = {p.relative_to(SOURCE).with_suffix('.html')
               for p in SOURCE.rglob('*.rst')}
    assert sources, 'no documentation sources'
    for page in sources:
        assert (html / page).is_file(), f'{page} was not built'


def test_configuration_reference_lists_every_option(
        html: pathlib.Path) -> None:
    page = (html / 'configuration' / 'index.html').read_text()
    for opt in vtpm_migration.ALL_OPTS:
        assert re.search(rf'\b{opt.name}\b', page), (
            f'option {opt.name} missing from the configuration reference')


def test_make_docs_target_uses_warnings_as_errors() -> None:
    makefile = (ROOT / 'Makefile').read_text()
    assert re.search(r'^docs:.*\n\t.*sphinx-build -W -b html doc/source '
                     r'doc/build/html', makefile, re.M)


def test_placeholders_are_marked() -> None:
    # Placeholders for exact error messages use one marker, so that they
    # can be found and filled; print how many are open.
    text = (SOURCE / 'admin' / 'troubleshooting.rst').read_text()
    open_items = text.count('FILL-IN(message)') - 1   # minus the note
    print(f'troubleshooting placeholders open: {open_items}')
    assert not re.search(r'\bTODO\b|\bXXX\b', text)
