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


"""Happy path: a vTPM secret moves between two real swtpm hosts."""

import os

from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import states
from tests.functional.protocol import conftest

_K = states.KeyState


def test_migrate_commit(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst',
                                    state_blobs={'permall': b'\x01' * 100})
    mid = handle.migration_id
    assert src.engine.keystore.state(inst) is _K.LOCKED
    assert dst.engine.keystore.state(inst) is _K.PENDING
    assert dst.engine.take_pending_key(inst, mid) == secret
    assert dst.engine.take_state_blobs(inst, mid) == {
        'permall': b'\x01' * 100}
    receipt = src.engine.commit(mid)
    assert receipt['status'] == 'committed'
    assert src.engine.keystore.state(inst) is _K.DESTROYED
    assert dst.engine.keystore.state(inst) is _K.ACTIVE
    assert dst.engine.keystore.read(inst) == secret
    assert not os.listdir(os.path.join(src.state_dir, 'keys'))
    record = src.engine.record(mid)
    assert record is not None
    receipts.verify_record(record, cluster.policy)
    # and back again
    handle2 = dst.engine.migrate_key(inst, 'src')
    dst.engine.commit(handle2.migration_id)
    assert src.engine.keystore.read(inst) == secret
    assert dst.engine.keystore.state(inst) is _K.DESTROYED
