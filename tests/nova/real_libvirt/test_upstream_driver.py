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


"""Nova's stock libvirt driver on real daemons: the baseline.

Boot through the API, ``os-migrateLive``, and the guest's own vTPM check
passes on the destination, as Nova 34's ``host`` secret mode does it
(a persistent, readable libvirt secret on the host that runs the guest).
"""

from tests.nova.real_libvirt import base
from tests.support.libvirt import guest


class UpstreamDriverOnRealLibvirtTest(base.RealLibvirtTestBase):

    def test_live_migration_keeps_the_guest_vtpm(self):
        self.start_compute('host-a')
        self.start_compute('host-b')
        server, before = self.boot_vtpm_server('host-a')
        self.assertTrue(before.ok and before.pcr_consistent, before)
        self.assertEqual([server['id']], self.domains('host-a'))
        self.assertTrue(self.swtpm_state('host-a', server))

        self.live_migrate(server, 'host-b')
        self.wait_for_server(server, host='host-b')

        after = self.wait_for_checks(server, count=2)[-1]
        self.assertEqual([], guest.mismatches(before, after))
        self.assertEqual([server['id']], self.domains('host-b'))
        self.assertEqual([], self.domains('host-a'))
        self.assertFalse(self.swtpm_state('host-a', server))
        self.assertTrue(self.swtpm_state('host-b', server))
        # Upstream host mode: a persistent, readable secret where the
        # guest runs, none left on the source.
        secret_uuid = self.instance(server).system_metadata[
            'vtpm_secret_uuid']
        self.assertEqual({}, self.secrets('host-a'))
        self.assertEqual({'ephemeral': False, 'private': False,
                          'usage': server['id']},
                         self.secrets('host-b')[secret_uuid])
