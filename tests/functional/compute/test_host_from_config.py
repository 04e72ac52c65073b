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

"""The compute driver builds its host object from nova.conf as the CLI
does."""

import pathlib

from nova import rpc as nova_rpc
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.compute import layout
from nova_vtpm_migration.virt.libvirt import mixin

CONF = nvm_conf.CONF


class _Nova:
    def outcome(self, migration_uuid: str, instance_uuid: str,
                after_restart: bool) -> str:
        return 'unknown'


def test_build_from_config(configured: pathlib.Path) -> None:
    built = compute_host.ComputeHost.open(CONF, 'host-a', nova_rpc.TRANSPORT)
    try:
        built.start(_Nova())  # type: ignore[arg-type]
        assert built.available
        assert built.attestation_fresh()
        # The journal is where `nova-vtpm-migration journal ...` looks.
        journal = layout.open_journal(CONF)
        journal.close()
    finally:
        built.stop()
    assert not built.available


def test_bad_policy_makes_the_host_unavailable(
        configured: pathlib.Path) -> None:
    (configured / 'policy.json').write_text('{"version": 99}')
    down = mixin.build_host('host-a')
    assert not down.available
    with pytest.raises(compute_host.errors.EngineUnavailable,
                       match='host host-a .*attestation_ca_bundle'):
        down.commit('inst', 'mig')
