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


"""The migration protocol over oslo.messaging (``fake://``) between real
swtpm hosts."""

import collections.abc
import os
import typing as ty

from oslo_config import fixture as config_fixture
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import receipts
from tests.functional import swtpm_fixtures
from tests.support import cluster

CONF = nvm_conf.CONF


@pytest.fixture
def rpc(hosts: dict[str, swtpm_fixtures.SimHost], trust_policy: ty.Any
        ) -> collections.abc.Iterator[dict[str, engine_mod.MigrationEngine]]:
    fix = config_fixture.Config(CONF)
    fix.setUp()
    fix.config(rpc_timeout=2, group='vtpm_migration')
    sim = cluster.SimCluster(policy=trust_policy, label='rpc')
    transport = sim.messaging('fake://', CONF)
    proto = sim.rpc_peers(transport)
    engines = {}
    for name in ('src', 'dst'):
        sim.add(name, hosts[name])
        engines[name] = sim.engine(name, proto)
        sim.serve(name, engines[name], transport)
    yield engines
    sim.close()
    fix.cleanUp()


def test_migration_over_rpc(rpc: dict[str, engine_mod.MigrationEngine],
                            trust_policy: ty.Any) -> None:
    src, dst = rpc['src'], rpc['dst']
    inst = '0b3cd2f7-9a52-4bb5-9b55-3c0b7f2b6a11'
    secret = os.urandom(32)
    src.keystore.add(inst, secret)
    handle = src.migrate_key(inst, 'dst', state_blobs={'s': b'x' * 5000})
    assert dst.take_pending_key(inst, handle.migration_id) == secret
    src.commit(handle.migration_id)
    record = src.record(handle.migration_id)
    assert record is not None
    receipts.verify_record(record, trust_policy)
    assert dst.keystore.read(inst) == secret


def test_unreachable_host(rpc: dict[str, engine_mod.MigrationEngine]
                          ) -> None:
    with pytest.raises(errors.TransportError, match='no reply'):
        rpc['src'].attest_peer('nowhere')
