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


"""vTPM guests on real libvirtd/QEMU/swtpm, live-migrated by libvirt.

Two libvirt daemons on this machine stand for two hosts. The guest checks
its own vTPM (:mod:`tests.support.libvirt.guest`); after a live migration
the destination's console must show the same NV nonce, the same EK and
PCR 16 = SHA-256(0*32 || nonce). No Nova and no plugin here: this tier
proves the data plane the Nova tests run on.
"""

import base64
import os
import time
import uuid

import libvirt
import pytest

from tests.support.libvirt import daemons as daemons_mod
from tests.support.libvirt import domains
from tests.support.libvirt import guest
from tests.support.libvirt import introspect


def _secret_value() -> bytes:
    # As Nova makes them: base64 of 384 random bytes.
    return base64.b64encode(os.urandom(384))


class Guest:
    """A self-checking vTPM guest defined on a source daemon."""

    def __init__(self, fixture: daemons_mod.LibvirtDaemons,
                 artifacts: guest.GuestArtifacts, secret: bytes,
                 dest_secret: bytes | None = None) -> None:
        self.fixture = fixture
        self.uuid = str(uuid.uuid4())
        self.secret_uuid = str(uuid.uuid4())
        self.name = 'vtpm-' + self.uuid[:8]
        self.src = fixture.add('host-a')
        self.dst = fixture.add('host-b')
        self.artifacts = artifacts
        self.console = {name: os.path.join(fixture.base, f'console-{name}'
                                           '.log')
                        for name in ('host-a', 'host-b')}
        values = {'host-a': secret, 'host-b': dest_secret or secret}
        for daemon in (self.src, self.dst):
            domains.define_secret(daemon.conn, self.secret_uuid,
                                  values[daemon.name], self.name)
        self.dom = self.src.conn.defineXML(self.xml('host-a'))

    def xml(self, host: str) -> str:
        return domains.domain_xml(self.name, self.uuid, self.artifacts,
                                  self.secret_uuid, self.console[host])

    def boot(self) -> guest.CheckLine:
        started = time.monotonic()
        self.dom.create()
        lines = domains.wait_for_checks(self.console['host-a'])
        print(f'guest start to first vTPM check: '
              f'{time.monotonic() - started:.1f} s')
        return lines[-1]

    def migrate(self) -> None:
        started = time.monotonic()
        try:
            self.dom.migrateToURI3(
                self.dst.uri,
                {libvirt.VIR_MIGRATE_PARAM_URI: domains.MIGRATE_URI,
                 # The destination QEMU listens on loopback only.
                 libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: '127.0.0.1',
                 libvirt.VIR_MIGRATE_PARAM_DEST_XML: self.xml('host-b')},
                domains.MIGRATE_FLAGS)
        finally:
            print(f'migrateToURI3: {time.monotonic() - started:.1f} s')


def test_private_ephemeral_secret_value_is_not_readable(libvirt_daemons):
    daemon = libvirt_daemons.add('host-a')
    value = _secret_value()
    private = domains.define_secret(daemon.conn, str(uuid.uuid4()), value,
                                    'private', ephemeral=True, private=True)
    with pytest.raises(libvirt.libvirtError) as err:
        private.value()
    assert err.value.get_error_code() == libvirt.VIR_ERR_INVALID_SECRET
    assert 'secret is private' in str(err.value)
    print(f'secretGetValue refused: {err.value}')
    # Ephemeral: nothing on disk.
    assert not os.listdir(daemon.path('etc', 'secrets'))
    # Control: a public one is readable, so the refusal above is real.
    public = domains.define_secret(daemon.conn, str(uuid.uuid4()), value,
                                   'public', ephemeral=True, private=False)
    assert bytes(public.value()) == value


@pytest.mark.slow
def test_vtpm_guest_live_migrates_with_its_state(libvirt_daemons,
                                                  artifacts):
    secret = _secret_value()
    vm = Guest(libvirt_daemons, artifacts, secret)
    before = vm.boot()
    assert before.ok and before.pcr_consistent, before

    # libvirt hands the key to swtpm through a file descriptor.
    pids = introspect.program_pids(vm.src, 'swtpm')
    assert pids, 'no swtpm process found for the guest'
    for pid in pids:
        cmdline = introspect.read_proc(pid, 'cmdline')
        assert b'pwdfd=' in cmdline, cmdline
    assert introspect.process_leaks(vm.src, secret) == {}
    assert os.path.isdir(vm.src.swtpm_state_dir(vm.uuid))

    vm.migrate()

    after = domains.wait_for_checks(vm.console['host-b'], count=2)[-1]
    assert guest.mismatches(before, after) == []
    assert after.seq > before.seq  # the same boot, still counting
    assert [d.UUIDString() for d in vm.dst.conn.listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == [vm.uuid]
    assert vm.src.conn.listAllDomains() == []
    # UNDEFINE_SOURCE: libvirt removed the source's vTPM state.
    assert not os.path.exists(vm.src.swtpm_state_dir(vm.uuid))
    assert os.path.isdir(vm.dst.swtpm_state_dir(vm.uuid))
    dst_pids = introspect.program_pids(vm.dst, 'swtpm')
    assert dst_pids, 'no swtpm process on the destination'
    for pid in dst_pids:
        assert b'pwdfd=' in introspect.read_proc(pid, 'cmdline')
    assert introspect.process_leaks(vm.dst, secret) == {}


@pytest.mark.slow
def test_wrong_destination_secret_fails_and_source_keeps_vtpm(
        libvirt_daemons, artifacts):
    vm = Guest(libvirt_daemons, artifacts, _secret_value(),
               dest_secret=_secret_value())
    before = vm.boot()
    assert before.ok and before.pcr_consistent, before

    with pytest.raises(libvirt.libvirtError) as err:
        vm.migrate()
    print(f'migration refused: {err.value}')
    # Refused for the key: the destination's swtpm could not decrypt the
    # incoming state (libvirt's own error text depends on timing).
    with open(vm.dst.path('log', 'qemu', f'{vm.name}.log')) as f:
        assert 'decryption error' in f.read()

    assert vm.dom.isActive()
    assert vm.dst.conn.listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) == []
    # The guest keeps running on the source with its vTPM intact.
    lines = domains.wait_for_checks(vm.console['host-a'], count=2,
                                    after=before.seq + 1)
    assert guest.mismatches(before, lines[-1]) == []
    assert os.path.isdir(vm.src.swtpm_state_dir(vm.uuid))
