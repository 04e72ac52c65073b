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

"""``MigrationEngine.settle``: finishing migrations while the host runs.

Recovery at start-up aborts whatever was not in doubt, because the process
that ran it is gone. ``settle`` runs periodically in a live service, so it
must finish what it safely can (decided outcomes whose delivery failed,
in-doubt moves the oracle can decide) and never touch a migration that may
still be in flight. Real swtpm hosts, in-process transport.
"""

import time

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import states
from tests.functional.protocol import conftest

_K = states.KeyState


def _keys(cluster: conftest.Cluster, inst: str) -> dict[str, str | None]:
    return {name: (None if (s := node.engine.keystore.state(inst)) is None
                   else s.value)
            for name, node in cluster.nodes.items() if name != 'other'}


def _transferred(cluster: conftest.Cluster) -> tuple[str, str]:
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    return inst, handle.migration_id


def _never(row: object) -> str:
    raise AssertionError('the oracle must not be asked')


def test_commit_whose_delivery_failed_is_resent(
        cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, mid = _transferred(cluster)
    cluster.transport.unregister('dst')
    try:
        src.engine.commit(mid)
    except errors.ProtocolError:
        pass
    else:
        raise AssertionError('the commit reached an unregistered host')
    assert src.engine.journal.get(mid, states.Role.SOURCE).state == \
        'COMMITTING'
    assert src.engine.settle(_never, min_age=0) == {mid: 'COMMITTING'}
    cluster.transport.register('dst', dst.engine.handle)

    assert src.engine.settle(_never, min_age=0) == {mid: 'COMMITTED'}

    assert _keys(cluster, inst) == {'src': 'DESTROYED', 'dst': 'ACTIVE'}


def test_in_doubt_is_decided_only_when_old_enough_and_known(
        cluster: conftest.Cluster) -> None:
    src = cluster.nodes['src']
    inst, mid = _transferred(cluster)
    asked = []

    def oracle(row: object) -> str:
        asked.append(row)
        return 'unknown'

    assert src.engine.settle(oracle, min_age=3600) == {}
    assert asked == []
    assert src.engine.settle(oracle, min_age=0) == {mid: 'TRANSFERRED'}
    assert len(asked) == 1
    assert _keys(cluster, inst) == {'src': 'LOCKED', 'dst': 'PENDING'}

    assert src.engine.settle(lambda row: 'commit', min_age=0) == {
        mid: 'COMMITTED'}
    assert _keys(cluster, inst) == {'src': 'DESTROYED', 'dst': 'ACTIVE'}


def test_oracle_abort_gives_the_key_back(cluster: conftest.Cluster) -> None:
    src = cluster.nodes['src']
    inst, mid = _transferred(cluster)
    assert src.engine.settle(lambda row: 'abort', min_age=0) == {
        mid: 'ABORTED'}
    assert _keys(cluster, inst) == {'src': 'ACTIVE', 'dst': 'DESTROYED'}


def test_destination_asks_the_source_and_waits_while_undecided(
        cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, mid = _transferred(cluster)
    assert dst.engine.settle(_never, min_age=0) == {mid: 'INSTALLED'}
    assert _keys(cluster, inst) == {'src': 'LOCKED', 'dst': 'PENDING'}
    # The source decides, but its commit message is lost.
    cluster.transport.unregister('dst')
    try:
        src.engine.commit(mid)
    except errors.ProtocolError:
        pass
    cluster.transport.register('dst', dst.engine.handle)

    assert dst.engine.settle(_never, min_age=0) == {mid: 'COMMITTED'}
    assert _keys(cluster, inst)['dst'] == 'ACTIVE'


def test_migrations_in_flight_are_left_alone(
        cluster: conftest.Cluster) -> None:
    """Rows before the transfer (source) and reservations (destination)
    would be aborted by recover(); settle() leaves them."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, _ = conftest.new_instance(src)
    src.engine.journal.create_migration(
        'a4c0bdf6-45d4-4a2c-8f40-9f3b0d0e6a11', states.Role.SOURCE,
        'NEW', inst, 'dst')
    dst.engine.journal.create_migration(
        'b4c0bdf6-45d4-4a2c-8f40-9f3b0d0e6a12', states.Role.DESTINATION,
        'RESERVED', inst, 'src')
    time.sleep(0.01)

    assert src.engine.settle(_never, min_age=0) == {}
    assert dst.engine.settle(_never, min_age=0) == {}
    assert _keys(cluster, inst)['src'] == 'ACTIVE'
