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


"""Fixtures for the data-plane tests: two simulated hosts, real processes.

Every host lives in a short directory below one per-module base directory;
at the end of the module no process whose command line mentions that
directory may be left (stray swtpm/QEMU check), and the directory is
removed.
"""

import collections.abc
import os
import shutil
import tempfile
import uuid

import pytest

from tests.support.dataplane import host as host_mod
from tests.support.dataplane import vtpm

REQUIRED = ('swtpm', 'qemu-system-x86_64')


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains *text*."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        argv = vtpm.cmdline_of(int(entry))
        if argv and any(text in a for a in argv):
            found.append((int(entry), ' '.join(argv)[:200]))
    return found


@pytest.fixture(scope='module')
def base_dir() -> collections.abc.Iterator[str]:
    missing = [b for b in REQUIRED if shutil.which(b) is None]
    if missing:
        pytest.skip(f'not installed: {", ".join(missing)} '
                    '(tools/ensure-system-packages.sh)')
    os.environ.setdefault('TSS2_LOG', 'all+NONE')
    path = tempfile.mkdtemp(prefix='nvm-t-')
    yield path
    stray = processes_mentioning(path)
    for pid, _ in stray:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    shutil.rmtree(path, ignore_errors=True)
    assert not stray, f'stray processes left behind: {stray}'


@pytest.fixture
def hosts(base_dir: str) -> collections.abc.Iterator[
        tuple[host_mod.SimHost, host_mod.SimHost]]:
    """A source and a destination host; everything killed afterwards."""
    tag = uuid.uuid4().hex[:6]
    src = host_mod.SimHost('src', os.path.join(base_dir, tag + 's'))
    dst = host_mod.SimHost('dst', os.path.join(base_dir, tag + 'd'))
    try:
        yield src, dst
    finally:
        src.cleanup()
        dst.cleanup()
        for h in (src, dst):
            assert not processes_mentioning(h.work_dir)
            shutil.rmtree(h.work_dir, ignore_errors=True)


@pytest.fixture
def instance_uuid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def running_instance(hosts: tuple[host_mod.SimHost, host_mod.SimHost],
                     instance_uuid: str) -> tuple[str, vtpm.VtpmKey, object]:
    """A provisioned instance running on the source host."""
    src, _ = hosts
    key = vtpm.VtpmKey.generate()
    contents = src.provision_instance(instance_uuid, key)
    src.start_instance(instance_uuid)
    return instance_uuid, key, contents
