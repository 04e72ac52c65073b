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

"""The guest's memory goes only to the destination's certified name.

The real-libvirt tier migrates with QEMU's native TLS (``[libvirt]
live_migration_with_native_tls``, which ``vtpm_migration:attested=
required`` flavors need): the source QEMU checks the destination's
server certificate against the destination's host name. Here host-b's
certificate, from the same CA, names another host.
"""

import glob

from tests.nova.real_libvirt import base
from tests.support.libvirt import guest

MISMATCH = 'Certificate does not match the hostname host-b'


class NativeTlsOnRealLibvirtTest(base.RealLibvirtPluginBase):

    def test_destination_certificate_for_another_host_is_refused(self):
        """The TLS handshake fails after the key moved: the key move is
        aborted on both hosts, the guest keeps running on host-a with the
        only usable key, host-b keeps nothing."""
        self.start_compute('host-a')
        self.start_compute('host-b', tls_server_name='host-x')
        server, before = self.boot_vtpm_server('host-a')
        secret = self.held_secret('host-a', server)
        digest = self.secret_digest('host-a', server)
        seq = self.wait_for_checks(server)[-1].seq
        tasks = len(self.migration_tasks.ended)

        self.admin_api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': 'host-b', 'block_migration': 'auto'}})
        outcome, server = self.wait_for_live_migration_task(server, tasks)

        # QEMU on host-a refused host-b's certificate.
        logs = ''
        for path in glob.glob(self.daemon('host-a').path('log', 'qemu',
                                                        '*.log')):
            with open(path, errors='replace') as f:
                logs += f.read()
        self.assertIn(MISMATCH, logs)
        # The key had moved (phase 2 ran) and the move was aborted.
        mid = self.migration_uuid(server)
        self.assertEqual({mid: ('source', 'ABORTED')}, self.rows('host-a'))
        self.assertEqual({mid: ('destination', 'ABORTED')},
                         self.rows('host-b'))
        self.assertIn('send_key', self.rpc.methods())
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('host-a'))
        self.assertEqual({}, self.keys('host-b'))
        self.assertEqual(digest, self.secret_digest('host-a', server))
        self.assertIsNone(self.secret_digest('host-b', server))
        # Nova 34 after a failed libvirt migration: rolled back, then ERROR
        # with the guest still on the source.
        self.assertEqual(('libvirtError', 'ERROR', 'host-a'),
                         (outcome, server['status'],
                          server['OS-EXT-SRV-ATTR:host']))
        after = self.wait_for_checks(server, count=1, after=seq)[-1]
        self.assertEqual([], guest.mismatches(before, after))
        self.assertEqual([server['id']], self.domains('host-a'))
        self.assertEqual([], self.domains('host-b'))
        self.assertFalse(self.swtpm_state('host-b', server))
        for hostname in ('host-a', 'host-b'):
            self.assertEqual({}, self.secrets(hostname), hostname)
            self.assertEqual([], self.persistent_secret_files(hostname))
        self.assert_no_leak(secret)
