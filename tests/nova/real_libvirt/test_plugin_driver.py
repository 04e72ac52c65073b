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


"""This plugin's driver on real libvirt daemons, through Nova's API.

Every compute runs ``vtpm_migration_ext.driver.LibvirtDriver`` with its
own swtpm host TPM and protocol engine; the guest's own vTPM check is
the judge of the data plane.
"""

import hashlib
import time

from tests.nova.real_libvirt import base
from tests.support.libvirt import guest


class PluginDriverOnRealLibvirtTest(base.RealLibvirtPluginBase):
    """More than ``make demo`` shows (``test_demo_scenario.py`` runs it:
    an attested move, the refusal of an untrusted destination, a hard
    reboot and the destination's libvirtd dying mid-migration)."""

    def assert_no_persistent_secrets(self, *hostnames):
        for hostname in hostnames:
            self.assertEqual({}, self.secrets(hostname), hostname)
            self.assertEqual([], self.persistent_secret_files(hostname),
                             hostname)

    def test_aborted_migration_rolls_back_on_both_hosts(self):
        """The operator aborts a running migration (libvirt job cancelled
        while B's QEMU and swtpm wait for the stream): the key stays
        usable on A only, B keeps nothing."""
        self.start_compute('host-a')
        self.start_compute('host-b')
        server, before = self.boot_vtpm_server('host-a')
        secret = self.held_secret('host-a', server)
        digest = self.secret_digest('host-a', server)
        # 1 MiB/s: the migration runs long enough to be aborted.
        self.flags(live_migration_bandwidth=1, group='libvirt')

        tasks = len(self.migration_tasks.ended)
        self.admin_api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': 'host-b', 'block_migration': 'auto'}})
        migration = self._wait_for_migration_status(server, ['running'])
        deadline = time.monotonic() + base.TIMEOUT
        while not self.domains('host-b'):
            self.assertLess(time.monotonic(), deadline,
                            'no incoming domain on host-b')
            time.sleep(0.2)
        # B defined the incoming guest's secret from the unwrapped key.
        self.assertEqual(1, len(self.defined_secrets('host-b')))
        time.sleep(1)
        started = time.monotonic()
        self.admin_api.api_delete(
            f'/servers/{server["id"]}/migrations/{migration["id"]}')
        self.notifier.wait_for_versioned_notifications(
            'instance.live_migration_abort.end', timeout=base.TIMEOUT)
        self.notifier.wait_for_versioned_notifications(
            'instance.live_migration_rollback_dest.end',
            timeout=base.TIMEOUT)
        outcome, server = self.wait_for_live_migration_task(server, tasks)
        print(f'abort to rolled back: {time.monotonic() - started:.1f} s')

        # Nova 34 rolls back (the migration is "cancelled" for a moment),
        # then its _do_live_migration gets libvirt's "canceled by client"
        # error back and sets the migration to error and the instance to
        # ERROR, with the guest running on host-a.
        self.assertEqual(
            ('libvirtError', 'ERROR', 'host-a', None, 'error'),
            (outcome, server['status'], server['OS-EXT-SRV-ATTR:host'],
             server['OS-EXT-STS:task_state'],
             self._live_migrations(server)[-1]['status']))
        lines = self.wait_for_checks(server, count=2, after=before.seq + 1)
        self.assertEqual([], guest.mismatches(before, lines[-1]))
        self.assertEqual([server['id']], self.domains('host-a'))
        self.assertTrue(self.swtpm_state('host-a', server))
        mid = self.migration_uuid(server)
        self.assertEqual({mid: ('source', 'ABORTED')}, self.rows('host-a'))
        self.assertEqual({mid: ('destination', 'ABORTED')},
                         self.rows('host-b'))
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('host-a'))
        self.assertEqual({}, self.keys('host-b'))
        self.assertEqual(digest, self.secret_digest('host-a', server))
        self.assertIsNone(self.secret_digest('host-b', server))
        # B: no domain, no vTPM state, no libvirt secret.
        self.assertEqual([], self.domains('host-b'))
        self.assertFalse(self.swtpm_state('host-b', server))
        self.assert_no_persistent_secrets('host-a', 'host-b')
        self.assert_no_leak(secret)

    def test_round_trip_back_to_the_first_host(self):
        """A -> B -> A: the first host, which destroyed its key at the
        first commit, takes the guest back through the protocol."""
        self.start_compute('host-a')
        self.start_compute('host-b')
        server, before = self.boot_vtpm_server('host-a')
        digest = self.secret_digest('host-a', server)

        self.live_migrate(server, 'host-b')
        server = self.wait_for_server(server, host='host-b')
        first = self.migration_uuid(server)
        middle = self.wait_for_checks(server, count=2)[-1]
        self.live_migrate(server, 'host-a')
        server = self.wait_for_server(server, host='host-a')
        second = self.migration_uuid(server)

        after = self.wait_for_checks(server, count=2, after=middle.seq)[-1]
        self.assertEqual([], guest.mismatches(before, after))
        self.assertEqual({first: ('source', 'COMMITTED'),
                          second: ('destination', 'COMMITTED')},
                         self.rows('host-a'))
        self.assertEqual({first: ('destination', 'COMMITTED'),
                          second: ('source', 'COMMITTED')},
                         self.rows('host-b'))
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('host-a'))
        self.assertEqual({}, self.keys('host-b'))
        self.assertEqual(digest, self.secret_digest('host-a', server))
        self.assertIsNone(self.secret_digest('host-b', server))
        self.assertEqual([server['id']], self.domains('host-a'))
        self.assertEqual([], self.domains('host-b'))
        self.assertTrue(self.swtpm_state('host-a', server))
        self.assertFalse(self.swtpm_state('host-b', server))
        self.assert_no_persistent_secrets('host-a', 'host-b')

        # Deleting the server leaves nothing of it on A either.
        self._delete_server(server)
        self.assertEqual([], self.domains('host-a'))
        self.assertFalse(self.swtpm_state('host-a', server))
        self.assertEqual({}, self.keys('host-a'))
        self.assertIsNone(self.secret_digest('host-a', server))
        self.assert_no_persistent_secrets('host-a', 'host-b')

    def test_libvirt_storage_moves_a_persistent_secret_wrapped(self):
        """``libvirt_secret_storage = libvirt``: upstream ``host``
        semantics at rest (a persistent, readable libvirt secret where
        the guest runs), the secret still moving only wrapped."""
        self.flags(libvirt_secret_storage='libvirt', group='vtpm_migration')
        self.start_compute('host-a')
        self.start_compute('host-b')
        server, before = self.boot_vtpm_server('host-a')
        secret_uuid = self.instance(server).system_metadata[
            'vtpm_secret_uuid']
        self.assertEqual({'ephemeral': False, 'private': False,
                          'usage': server['id']},
                         self.secrets('host-a')[secret_uuid])
        value = bytes(self.daemon('host-a').conn.secretLookupByUUIDString(
            secret_uuid).value())
        digest = hashlib.sha256(value).hexdigest()

        self.live_migrate(server, 'host-b')
        server = self.wait_for_server(server, host='host-b')

        after = self.wait_for_checks(server, count=2)[-1]
        self.assertEqual([], guest.mismatches(before, after))
        # B defined it from the unwrapped key, persistent as upstream;
        # Nova removed A's.
        self.assertEqual({}, self.secrets('host-a'))
        self.assertEqual([], self.persistent_secret_files('host-a'))
        self.assertEqual({'ephemeral': False, 'private': False,
                          'usage': server['id']},
                         self.secrets('host-b')[secret_uuid])
        moved = bytes(self.daemon('host-b').conn.secretLookupByUUIDString(
            secret_uuid).value())
        self.assertEqual(digest, hashlib.sha256(moved).hexdigest())
        mid = self.migration_uuid(server)
        self.assertEqual({mid: ('destination', 'COMMITTED')},
                         self.rows('host-b'))
        self.assertIn('send_key', self.rpc.methods())
        self.assert_no_leak(value)
