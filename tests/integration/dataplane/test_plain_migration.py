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


"""Plain (upstream-equivalent) live migration with real swtpm and QEMU.

The vTPM is provisioned with recognisable content, the guest is migrated
over loopback, and the destination vTPM is read back through tpm2-pytss.
The failure cases prove that a destination without the right key gets
nothing and that the source survives.
"""

import os

import pytest

from tests.support.dataplane import migration
from tests.support.dataplane import provision
from tests.support.dataplane import swtpm_ctrl
from tests.support.dataplane import vtpm


def _assert_source_intact(src, inst_uuid, key, contents):
    inst = src.instance(inst_uuid)
    assert inst.guest.is_running()
    assert inst.vtpm.is_running()
    assert not key.wiped
    # The guest kept its vTPM: stop it and read the state back.
    assert provision.compare(contents, src.read_back(inst_uuid)) == []


def _assert_nothing_on(host, inst_uuid):
    assert inst_uuid not in host.instances
    assert not host.has_vtpm_state(inst_uuid)
    assert host.pids() == []


def test_plain_migration_preserves_vtpm_bit_for_bit(hosts, running_instance):
    src, dst = hosts
    inst_uuid, key, contents = running_instance
    src_state = src.state_dir(inst_uuid)
    src_pids = src.pids()
    assert len(src_pids) == 2

    result = migration.live_migrate_plain(src, dst, inst_uuid)

    assert result.committed, result.error
    assert result.mode == 'plain'
    assert result.qemu.status == 'completed'
    assert result.qemu.downtime_ms is not None
    assert result.qemu.total_time_ms is not None
    for phase in (migration.PHASE_DEST_START, migration.PHASE_QEMU,
                  migration.PHASE_COMMIT, migration.PHASE_TOTAL):
        assert result.phases_ms[phase] >= 0
    # The migrated guest runs on the destination ...
    assert dst.instance(inst_uuid).guest.is_running()
    # ... and nothing of it is left on the source: state, key, processes.
    assert not os.path.exists(src_state)
    assert key.wiped
    assert inst_uuid not in src.instances
    for pid in src_pids:
        assert vtpm.cmdline_of(pid) is None
    # The destination vTPM holds exactly what was provisioned.
    assert provision.compare(contents, dst.read_back(inst_uuid)) == []


@pytest.mark.parametrize('return_path', [True, False])
def test_destination_with_wrong_key_is_refused(hosts, instance_uuid,
                                               return_path):
    src, dst = hosts
    src.return_path = dst.return_path = return_path
    key = vtpm.VtpmKey.generate()
    contents = src.provision_instance(instance_uuid, key)
    src.start_instance(instance_uuid)
    inst_uuid = instance_uuid

    result = migration.live_migrate_plain(src, dst, inst_uuid,
                                          key=vtpm.VtpmKey.generate())

    assert result.outcome == migration.ABORTED
    assert result.qemu is not None
    if return_path:
        # QEMU's return path told the source that the destination could
        # not load the vTPM state (swtpm: HMAC verification failed).
        assert result.qemu.status == 'failed'
    elif result.qemu.status == 'completed':
        # The source believes it finished; the destination died loading
        # the vTPM state, and the data plane resumed the source. (If the
        # destination died before the source had sent everything, the
        # source saw a write error and failed by itself.)
        assert 'destination guest is dead' in result.error
    else:
        assert result.qemu.status == 'failed'
    _assert_nothing_on(dst, inst_uuid)
    _assert_source_intact(src, inst_uuid, key, contents)


def test_destination_killed_mid_migration(hosts, running_instance):
    src, dst = hosts
    inst_uuid, key, contents = running_instance
    seen = []

    def kill_destination(info):
        seen.append(info.get('status'))
        if info.get('status') == 'active' and inst_uuid in dst.instances:
            dst.instance(inst_uuid).kill()

    # ~400 KB to send at 100 KB/s: the migration is still in flight when
    # the destination dies.
    result = migration.live_migrate_plain(src, dst, inst_uuid,
                                          max_bandwidth=100_000,
                                          on_poll=kill_destination)

    assert 'active' in seen
    assert result.outcome == migration.ABORTED
    params = src.instance(inst_uuid).guest.execute('query-migrate-parameters')
    assert params['max-bandwidth'] != 100_000  # the limit was lifted again
    assert result.qemu is not None and result.qemu.status == 'failed'
    _assert_nothing_on(dst, inst_uuid)
    _assert_source_intact(src, inst_uuid, key, contents)


def test_keys_are_passed_by_descriptor_only(hosts, instance_uuid):
    src, _ = hosts
    key = vtpm.VtpmKey.generate()
    raw = bytes(key._value)
    proc = vtpm.VtpmProcess(src.state_dir(instance_uuid), key,
                            standalone=True, startup_clear=True)
    proc.start()
    try:
        argv = vtpm.cmdline_of(proc.pid)
        joined = ' '.join(argv)
        assert 'fd=' in joined and 'aes-256-cbc' in joined
        assert raw.hex() not in joined.lower()
        with open(f'/proc/{proc.pid}/environ', 'rb') as f:
            env = f.read()
        assert raw not in env and raw.hex().encode() not in env
        # swtpm holds both a state-file key and a migration key.
        flags = proc.config_flags()
        assert flags & swtpm_ctrl.CONFIG_FLAG_FILE_KEY
        assert flags & swtpm_ctrl.CONFIG_FLAG_MIGRATION_KEY
    finally:
        proc.stop()
    # The key is in no file of the state directory.
    for name in os.listdir(proc.state_dir):
        with open(os.path.join(proc.state_dir, name), 'rb') as f:
            data = f.read()
        assert raw not in data and raw.hex().encode() not in data
    assert 'bits' in repr(key) and raw.hex() not in repr(key)


def test_seabios_guest_keeps_permanent_state(hosts, instance_uuid):
    """With SeaBIOS the guest starts the TPM itself (Startup(CLEAR)).

    The NV index and the persistent key (permanent state) still arrive;
    the PCRs do not survive the guest's own TPM2_Startup(CLEAR), which is
    why the other tests use a firmware that leaves the TPM alone.
    """
    src, dst = hosts
    src.firmware = dst.firmware = None
    key = vtpm.VtpmKey.generate()
    contents = src.provision_instance(instance_uuid, key)
    src.start_instance(instance_uuid)

    result = migration.live_migrate_plain(src, dst, instance_uuid)

    assert result.committed, result.error
    back = dst.read_back(instance_uuid)
    assert back.nv_data == contents.nv_data
    assert back.key_name == contents.key_name
    assert back.key_public == contents.key_public
    # Whether SeaBIOS reached its TPM2_Startup(CLEAR) before the guest was
    # stopped depends on timing; if it did not, the state still resumes.
    if back.resumed:
        assert back.pcrs == contents.pcrs


def test_migrate_there_and_back(hosts, running_instance):
    """The destination's re-encrypted state migrates on again."""
    src, dst = hosts
    inst_uuid, _, contents = running_instance

    there = migration.live_migrate_plain(src, dst, inst_uuid)
    back = migration.live_migrate_plain(dst, src, inst_uuid)

    assert there.committed and back.committed, (there.error, back.error)
    _assert_nothing_on(dst, inst_uuid)
    assert provision.compare(contents, src.read_back(inst_uuid)) == []
