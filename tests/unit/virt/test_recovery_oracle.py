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

"""The recovery oracle never presumes abort after a possible hand-over."""

from unittest import mock

from nova import exception as nova_exception
from nova import objects
import pytest

from nova_vtpm_migration.virt.libvirt import live_migration as lm

objects.register_all()


def _oracle(guest_here: bool, status: str, instance_host: str,
            after_restart: bool = True) -> str:
    host = mock.Mock()
    if not guest_here:
        host.get_guest.side_effect = nova_exception.InstanceNotFound(
            instance_id='i')
    migration = mock.Mock(status=status, dest_compute='dest')
    instance = mock.Mock(host=instance_host)
    with mock.patch.object(objects.Migration, 'get_by_uuid',
                           return_value=migration), \
            mock.patch.object(objects.Instance, 'get_by_uuid',
                              return_value=instance), \
            mock.patch('nova.context.get_admin_context'):
        return lm.LibvirtNovaView(host, 'src').outcome('mig', 'inst',
                                                       after_restart)


@pytest.mark.parametrize('guest_here, status, instance_host, outcome', [
    # Hand-over recorded and the guest left: commit.
    (False, 'completed', 'dest', 'commit'),
    (False, 'running', 'dest', 'commit'),
    # The guest is here and Nova's migration ended without hand-over.
    (True, 'failed', 'src', 'abort'),
    (True, 'error', 'src', 'abort'),
    (True, 'preparing', 'src', 'abort'),
    # Anything else stays in doubt.
    (False, 'running', 'src', 'unknown'),
    (False, 'failed', 'src', 'unknown'),
    (True, 'running', 'src', 'unknown'),
    (True, 'completed', 'dest', 'unknown'),
])
def test_oracle(guest_here: bool, status: str, instance_host: str,
                outcome: str) -> None:
    assert _oracle(guest_here, status, instance_host) == outcome


def test_missing_records_stay_in_doubt() -> None:
    host = mock.Mock()
    with mock.patch.object(
            objects.Migration, 'get_by_uuid',
            side_effect=nova_exception.MigrationNotFound(migration_id='m')), \
            mock.patch('nova.context.get_admin_context'):
        assert lm.LibvirtNovaView(host, 'src').outcome(
            'mig', 'inst', True) == 'unknown'


@pytest.mark.parametrize('guest_here, status, instance_host, outcome', [
    # Only a final Nova status decides while the service runs.
    (False, 'completed', 'dest', 'commit'),
    (True, 'failed', 'src', 'abort'),
    (True, 'error', 'src', 'abort'),
    (True, 'cancelled', 'src', 'abort'),
    # In flight (pre_live_migration runs while Nova says preparing; the
    # QEMU migration while it says running): never decided.
    (True, 'preparing', 'src', 'unknown'),
    (True, 'accepted', 'src', 'unknown'),
    (False, 'running', 'dest', 'unknown'),
    (True, 'running', 'src', 'unknown'),
    (False, 'post-migrating', 'dest', 'unknown'),
    # Contradictions stay in doubt.
    (True, 'completed', 'dest', 'unknown'),
    (False, 'failed', 'src', 'unknown'),
])
def test_settle_oracle(guest_here: bool, status: str, instance_host: str,
                       outcome: str) -> None:
    assert _oracle(guest_here, status, instance_host,
                   after_restart=False) == outcome
