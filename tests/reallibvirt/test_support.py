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


"""The harness itself: daemon isolation and clean-up, the statfs shim."""

import os
import re
import subprocess
import uuid

from tests.support.libvirt import daemons as daemons_mod
from tests.support.libvirt import domains
from tests.support.libvirt import statfs_shim


def _fs_type(path: str, shared: str) -> str:
    env = dict(os.environ, LD_PRELOAD=statfs_shim.build())
    env[statfs_shim.ENV_VAR] = shared
    return subprocess.run(['stat', '-f', '-c', '%t', path], env=env,
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def test_statfs_shim_reports_nfs_only_below_the_listed_paths(tmp_path):
    shared = tmp_path / 'instances'
    (shared / 'uuid').mkdir(parents=True)
    sibling = tmp_path / 'instances-not'
    sibling.mkdir()
    nfs = f'{statfs_shim.NFS_SUPER_MAGIC:x}'
    assert _fs_type(str(shared), f'/nowhere:{shared}') == nfs
    assert _fs_type(str(shared / 'uuid'), str(shared)) == nfs
    assert _fs_type(str(sibling), str(shared)) != nfs
    assert _fs_type(str(tmp_path), str(shared)) != nfs


def test_daemons_are_isolated_and_leave_nothing(libvirt_daemons):
    a = libvirt_daemons.add('host-a')
    b = libvirt_daemons.add('host-b')
    print(f'daemon start: {a.startup_seconds:.2f} s, '
          f'{b.startup_seconds:.2f} s')
    uuids = [re.search(r'<uuid>([^<]+)</uuid>', d.conn.getCapabilities())
             .group(1) for d in (a, b)]
    assert uuids == [a.host_uuid, b.host_uuid] and uuids[0] != uuids[1]
    # Each reports its own host name (UTS namespace).
    assert [a.conn.getHostname(), b.conn.getHostname()] == ['host-a',
                                                            'host-b']
    assert a.namespace != b.namespace
    assert (a.port_min, a.port_max) != (b.port_min, b.port_max)
    # Each daemon has its own /etc/libvirt.
    secret_uuid = str(uuid.uuid4())
    domains.define_secret(a.conn, secret_uuid, b'not a key', 'isolation')
    assert [s.UUIDString() for s in a.conn.listAllSecrets()] == [
        secret_uuid]
    assert b.conn.listAllSecrets() == []
    assert os.listdir(a.path('etc', 'secrets'))
    pids = [a.process.pid, b.process.pid]
    namespaces = [a.namespace, b.namespace]

    libvirt_daemons.stop_all()

    for pid in pids:
        assert not os.path.exists(f'/proc/{pid}')
    for ns in namespaces:
        assert daemons_mod.processes_in_namespace(ns) == []
