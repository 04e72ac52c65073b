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

    def assert_no_persistent_secrets(self, *hostnames):
        for hostname in hostnames:
            self.assertEqual({}, self.secrets(hostname), hostname)
            self.assertEqual([], self.persistent_secret_files(hostname),
                             hostname)

    def test_attested_live_migration_moves_the_vtpm(self):
        self.start_compute('host-a')
        self.start_compute('host-b')
        server, before = self.boot_vtpm_server('host-a')
        self.assertTrue(before.ok and before.pcr_consistent, before)
        secret = self.held_secret('host-a', server)
        self.assertIsNotNone(secret)
        digest = self.secret_digest('host-a', server)
        self.assert_no_persistent_secrets('host-a', 'host-b')

        self.live_migrate(server, 'host-b')
        self.wait_for_server(server, host='host-b')

        # The guest's own check, on the destination.
        after = self.wait_for_checks(server, count=2)[-1]
        self.assertEqual([], guest.mismatches(before, after))
        # The protocol committed on both hosts; only B holds the key.
        mid = self.migration_uuid(server)
        self.assertEqual({mid: ('source', 'COMMITTED')}, self.rows('host-a'))
        self.assertEqual({mid: ('destination', 'COMMITTED')},
                         self.rows('host-b'))
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('host-b'))
        self.assertEqual({}, self.keys('host-a'))
        self.assertEqual(digest, self.secret_digest('host-b', server))
        self.assertIsNone(self.secret_digest('host-a', server))
        # libvirt got the secret only as ephemeral, private secrets (boot
        # on A: Nova's spawn asks twice, incoming on B), and keeps none.
        secret_uuid = self.instance(server).system_metadata[
            'vtpm_secret_uuid']
        for hostname in ('host-a', 'host-b'):
            defined = self.defined_secrets(hostname)
            self.assertEqual({secret_uuid}, {s['uuid'] for s in defined},
                             hostname)
            for record in defined:
                self.assertTrue(record['ephemeral'], record)
                self.assertTrue(record['private'], record)
                self.assertFalse(record['readable'], record)
        self.assert_no_persistent_secrets('host-a', 'host-b')
        # Nothing of the instance is left on A.
        self.assertEqual([server['id']], self.domains('host-b'))
        self.assertEqual([], self.domains('host-a'))
        self.assertFalse(self.swtpm_state('host-a', server))
        self.assertTrue(self.swtpm_state('host-b', server))
        self.assert_no_leak(secret)

    def test_untrusted_destination_is_refused_at_precheck(self):
        self.start_compute('host-b')
        server, before = self.boot_vtpm_server('host-b')
        secret = self.held_secret('host-b', server)
        self.assertIsNotNone(secret)
        digest = self.secret_digest('host-b', server)
        self.start_compute('host-c')
        # Host C boots firmware outside the trust policy.
        self.make_untrusted('host-c')

        self.live_migrate(server, 'host-c', expected='error')

        details = self.action_event_details(
            server, 'compute_check_can_live_migrate_destination')
        self.assertIn('Policy rule pcr[7] violated', details)
        server = self.wait_for_server(server, host='host-b')
        self.assertEqual('ACTIVE', server['status'])
        # The guest keeps running on B with its vTPM.
        lines = self.wait_for_checks(server, count=2, after=before.seq + 1)
        self.assertEqual([], guest.mismatches(before, lines[-1]))
        self.assertEqual([server['id']], self.domains('host-b'))
        self.assertTrue(self.swtpm_state('host-b', server))
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('host-b'))
        self.assertEqual(digest, self.secret_digest('host-b', server))
        # C never had a domain, a libvirt secret or a key.
        self.assertEqual([], self.domains('host-c'))
        self.assertEqual([], self.defined_secrets('host-c'))
        self.assertFalse(self.swtpm_state('host-c', server))
        self.assertEqual({}, self.keys('host-c'))
        self.assertIsNone(self.secret_digest('host-c', server))
        self.assertNotIn('send_key', self.rpc.methods())
        self.assertNotIn('pre_live_migration', self.rpc.methods())
        self.assert_no_persistent_secrets('host-b', 'host-c')
        self.assert_no_leak(secret)

    def test_hard_reboot_reopens_the_sealed_secret(self):
        """A guest start after boot: the vault opens the secret again and
        swtpm decrypts the kept vTPM state with it."""
        self.start_compute('host-a')
        server, before = self.boot_vtpm_server('host-a')
        defined = len(self.defined_secrets('host-a'))

        started = time.monotonic()
        self.admin_api.post_server_action(server['id'],
                                          {'reboot': {'type': 'HARD'}})
        self.notifier.wait_for_versioned_notifications(
            'instance.reboot.end', timeout=base.TIMEOUT)
        self.wait_for_server(server, host='host-a')
        # A new boot counts from 1 again and finds its NV index.
        deadline = time.monotonic() + base.TIMEOUT
        while True:
            lines = guest.parse_console(self.console(server))
            starts = [i for i, line in enumerate(lines)
                      if line.seq == 1 and line.boot[0] == guest.RC_OK]
            if starts:
                lines = lines[starts[-1]:]
                break
            self.assertLess(time.monotonic(), deadline, lines[-1:])
            time.sleep(0.5)
        print(f'hard reboot to the guest vTPM check: '
              f'{time.monotonic() - started:.1f} s')
        after = lines[-1]
        self.assertEqual([], guest.mismatches(before, after))
        # NV_ReadPublic found the index: nothing was defined or written.
        self.assertEqual((guest.RC_OK, '-', '-', guest.RC_OK, guest.RC_OK),
                         after.boot)
        new = self.defined_secrets('host-a')[defined:]
        self.assertTrue(new, 'the reboot defined no libvirt secret')
        for record in new:
            self.assertEqual((True, True, False), (
                record['ephemeral'], record['private'], record['readable']))
        self.assert_no_persistent_secrets('host-a')
        self.assertEqual({server['id']: 'ACTIVE'}, self.keys('host-a'))

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
        self._wait_for_migration_status(server, ['cancelled'])
        self.notifier.wait_for_versioned_notifications(
            'instance.live_migration_rollback_dest.end',
            timeout=base.TIMEOUT)
        print(f'abort to rolled back: {time.monotonic() - started:.1f} s')

        server = self.wait_for_server(server, host='host-a')
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
