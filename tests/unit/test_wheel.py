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

"""Only the product ships: the wheel holds no test harness, demo or
benchmark, and nothing of Nova's namespace but the driver shim."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: What a wheel may contain below ``nova_vtpm_migration/``.
PRODUCT = {'__init__.py', 'exception.py', 'fileutils.py', 'i18n.py',
           'api', 'cmd', 'compute', 'conf', 'protocol', 'rpc',
           'scheduler', 'tpm', 'virt'}
HARNESS = ('sim', 'dataplane', 'bench', 'tests', 'tools', 'demo',
           'tpm_bench', 'reporting', 'hostd', 'faults', 'swtpm.py',
           '.pml')


@pytest.fixture(scope='module')
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from the files git tracks (as a release is)."""
    src = tmp_path_factory.mktemp('src')
    tracked = subprocess.run(  # noqa: S603
        ['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True,
        check=True).stdout.decode().split('\0')
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run(  # noqa: S603
        [sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
         '--no-build-isolation', '-w', str(out), str(src)],
        check=True, capture_output=True,
        env=dict(os.environ, PBR_VERSION='0.0.0'))
    built, = out.glob('*.whl')
    return zipfile.ZipFile(built)


def _top(names: list[str], prefix: str) -> set[str]:
    return {n[len(prefix):].split('/')[0] for n in names
            if n.startswith(prefix)}


def test_wheel_holds_the_product_only(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert _top(names, 'nova_vtpm_migration/') == PRODUCT
    assert {n.split('/')[0] for n in names if '.dist-info/' not in n} == {
        'nova_vtpm_migration', 'nova'}
    assert _top(names, 'nova/') == {'virt'}
    assert _top(names, 'nova/virt/') == {'vtpm_migration_ext'}
    assert 'nova/__init__.py' not in names
    assert 'nova/virt/__init__.py' not in names
    leaked = [n for n in names if any(h in n.split('/') or n.endswith(h)
                                      for h in HARNESS)]
    assert leaked == []


def test_check_finds_harness() -> None:
    """The harness names are ones the repository has (the check is not
    vacuous)."""
    assert (ROOT / 'tests' / 'support' / 'swtpm.py').exists()
    assert (ROOT / 'tests' / 'model' / 'commit.pml').exists()
    assert (ROOT / 'tools' / 'bench').is_dir()
