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

"""A running compute finishes unfinished migrations (periodic settle).

Before, only nova-compute's start resolved a move whose commit did not get
through; until then the key was usable nowhere, so the guest could not even
be restarted on its new host. Real Nova services, fake libvirt, a real
swtpm host TPM per compute.
"""

import time

import fixtures

from tests.nova import base


class SettleTest(base.VtpmServersBase):

    def _age(self):
        """Make in-doubt rows old enough for a settle pass."""
        self.flags(rpc_timeout=1, group='vtpm_migration')
        time.sleep(1.1)

    def test_lost_commit_is_finished_without_a_restart(self):
        self.start_pair()
        self.lose_commit()
        self._live_migrate(self.server, api=self.admin_api)
        self.assertEqual({self.server['id']: 'PENDING'}, self.keys('dest'))
        self.assertEqual({self.server['id']: 'LOCKED'}, self.keys('src'))
        # Too young: a settle pass leaves it.
        self.src.driver._vtpm.settle()
        self.assertEqual({self.server['id']: 'LOCKED'}, self.keys('src'))

        self._age()
        self.src.driver._vtpm.settle()

        self.assertEqual({}, self.keys('src'))
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('dest'))
        mid = self.migration_uuid(self.server)
        self.assertEqual({mid: ('destination', 'COMMITTED')},
                         self.rows('dest'))
        # The guest can be restarted on its new host again.
        self._reboot_server(self.server, hard=True, api=self.admin_api)
        self.assertEqual('ACTIVE',
                         self.api.get_server(self.server['id'])['status'])

    def test_settle_never_touches_a_move_in_flight(self):
        """Both hosts settle right after the key moved (Nova's migration is
        ``preparing``) and during the QEMU migration (``running``); the
        move completes."""
        self.start_pair()
        self.flags(rpc_timeout=1, group='vtpm_migration')
        service_cls = type(self.dest.driver._vtpm)
        real_receive = service_cls.receive_key
        real_migrate = self.src.driver._host.get_connection(
            ).lookupByUUIDString(self.server['id']).migrateToURI3
        seen = []

        def settle_both(status):
            time.sleep(1.1)  # the moving rows are old enough to settle
            self.src.driver._vtpm.settle()
            self.dest.driver._vtpm.settle()
            seen.append((status, self.keys('src'), self.keys('dest')))

        def receive_and_settle(service, *args, **kwargs):
            secret = real_receive(service, *args, **kwargs)
            settle_both('preparing')
            return secret

        def migrate_and_settle(domain, *args, **kwargs):
            settle_both('running')
            return real_migrate(*args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova_vtpm_migration.compute.host.ComputeHost.receive_key',
            receive_and_settle))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            migrate_and_settle))
        self._live_migrate(self.server, api=self.admin_api)

        moving = ({self.server['id']: 'LOCKED'},
                  {self.server['id']: 'PENDING'})
        self.assertEqual([('preparing', *moving), ('running', *moving)],
                         seen)
        self.assertEqual('dest', self.server_host(self.server))
        self.assertEqual({}, self.keys('src'))
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('dest'))

    def test_periodic_pass_runs_in_the_background(self):
        self.flags(settle_interval=1, rpc_timeout=1, group='vtpm_migration')
        self.start_pair()
        self.lose_commit()
        self._live_migrate(self.server, api=self.admin_api)

        deadline = time.monotonic() + 15
        while ((self.keys('dest'), self.keys('src'))
               != ({self.server['id']: 'ACTIVE'}, {})
               and time.monotonic() < deadline):
            time.sleep(0.2)

        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('dest'))
        self.assertEqual({}, self.keys('src'))
