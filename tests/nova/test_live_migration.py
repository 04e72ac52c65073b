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

"""vTPM live migration through Nova's own services with the plugin driver.

Each test drives real nova-api (``os-migrateLive``), nova-conductor,
nova-scheduler, placement and two or three libvirt-driver nova-compute
services (fake libvirt) in one process, and checks the outcome on both
the Nova side (server, migration, libvirt secrets, domains) and the
plugin side (journal rows, key custody), plus everything that went over
the bus.
"""

import json
import os
import time

import fixtures
from nova import context as nova_context
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_utils.fixture import uuidsentinel as uuids

from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.virt import flavor_policy
from tests.nova import base
from tests.support import attestation


class AttestedLiveMigrationTest(base.VtpmServersBase):
    """Protected moves through Nova: attested, refused, rolled back, and
    with peers that do not run the plugin."""

    def _refused_to_dest(self):
        """Live-migrate to ``dest``, expect the pre-check to refuse it;
        return the destination check's event details."""
        self._live_migrate(self.server, migration_expected_state='error',
                           server_expected_state='ACTIVE',
                           api=self.admin_api, host='dest')
        return self.action_event_details(
            self.server, 'compute_check_can_live_migrate_destination')

    def test_vtpm_server_live_migrates_with_wrapped_key(self):
        """Test 1: the protocol ran, the key moved, nothing leaked."""
        secret = self.start_pair()

        self._live_migrate(self.server, api=self.admin_api)

        self.assertEqual('dest', self.server_host(self.server))
        self.assertEqual([self.server['id']], self.domains('dest'))
        self.assertEqual([], self.domains('src'))
        # The protocol ran on both hosts under Nova's migration id; the
        # source keeps the destination's evidence and signed receipt, the
        # destination the source-signed manifest (non-repudiation) and its
        # own commit receipt.
        mid = self.migration_uuid(self.server)
        self.assertEqual({mid: ('source', 'COMMITTED')}, self.rows('src'))
        self.assertEqual({mid: ('destination', 'COMMITTED')},
                         self.rows('dest'))
        self.assertLessEqual({'manifest', 'dest_evidence',
                              'receipt_installed'}, self.records('src', mid))
        self.assertLessEqual({'manifest', 'receipt_committed'},
                             self.records('dest', mid))
        # The destination holds the key (sealed in its vault); the source
        # holds none.
        self.assertEqual(secret, self.held_secret('dest', self.server))
        self.assertIsNone(self.held_secret('src', self.server))
        # Sealed at rest: libvirt has no vTPM secret on either host (the
        # ones it got to start the guest are checked ephemeral and private
        # on real daemons, tests/nova/real_libvirt).
        for host in ('src', 'dest'):
            self.assertEqual([], self.libvirt_secrets(host), host)
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('dest'))
        self.assertEqual({}, self.keys('src'))
        # The plugin's own calls went over the bus, the secret did not.
        methods = self.rpc.methods()
        self.assertIn('attest_destination', methods)
        self.assertIn('send_key', methods)
        self.assertIn('pre_live_migration', methods)
        self.assert_no_leak(secret)

    def test_capture_sees_upstream_plaintext_secret(self):
        """Control: without the plugin the same capture finds the secret.

        Proves that the leak check of the other tests can fail.
        """
        self.flags(compute_driver='libvirt.LibvirtDriver')
        secret = self.start_pair()

        self._live_migrate(self.server, api=self.admin_api)

        self.assertEqual('dest', self.server_host(self.server))
        leaked = self.rpc.containing(secret.decode())
        self.assertTrue(leaked, 'upstream host mode put no secret on the '
                                'bus: the capture is broken')
        self.assertRaises(AssertionError, self.assert_no_leak, secret)

    def test_requested_destination_failing_attestation(self):
        """Test 2: readable error, server ACTIVE on source, dest empty."""
        secret = self.start_pair()
        self.make_untrusted('dest')

        details = self._refused_to_dest()
        self.assertIn('Attestation between source host src and destination '
                      'host dest failed', details)
        self.assertIn('Policy rule pcr[7] violated', details)
        self.assertEqual('src', self.server_host(self.server))
        self.assertEqual('ACTIVE', self.admin_api.get_server(
            self.server['id'])['status'])
        self.assertEqual([self.server['id']], self.domains('src'))
        self.assertEqual(secret, self.held_secret('src', self.server))
        # The destination holds nothing.
        self.assertEqual([], self.domains('dest'))
        self.assertIsNone(self.held_secret('dest', self.server))
        self.assertEqual({}, self.keys('dest'))
        self.assertNotIn('send_key', self.rpc.methods())
        self.assertNotIn('pre_live_migration', self.rpc.methods())
        self.assert_no_leak(secret)

    def _named_policy(self, name, pcr7):
        doc = attestation.policy_document(
            self.host_tpms.ca.bundle_pem(),
            [(name, {0: bytes(32), 7: pcr7})])
        path = os.path.join(self.host_tpms.root, f'{name}.json')
        with open(path, 'w') as f:
            json.dump(doc, f)
        return path

    def test_flavor_selects_a_stricter_named_policy(self):
        """``vtpm_migration:policy`` names a policy the dest fails."""
        strict = self._named_policy('strict', b'\x07' * 32)
        self.flags(named_policies={'strict': strict},
                   group='vtpm_migration')
        self.start_pair({flavor_policy.POLICY_SPEC: 'strict'})
        details = self._refused_to_dest()
        self.assertIn('Policy rule pcr[7] violated', details)
        self.assertEqual('src', self.server_host(self.server))

    def test_flavor_naming_an_unknown_policy_is_refused(self):
        self.start_pair({flavor_policy.POLICY_SPEC: 'gold'})
        details = self._refused_to_dest()
        self.assertIn("trust policy 'gold' is not in [vtpm_migration] "
                      "named_policies", details)

    def test_failure_during_migration_rolls_back(self):
        """Test 4: the libvirt job fails after the key moved."""
        secret = self.start_pair()

        def failing_migrate(domain, destination, params, flags):
            self.dest.driver._host.get_connection().createXML(
                params['destination_xml'],
                'fake-createXML-doesnt-care-about-flags')
            conn = self.src.driver._host.get_connection()
            conn.lookupByUUIDString(self.server['id']).fail_job()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            failing_migrate))
        self._live_migrate(self.server, migration_expected_state='failed',
                           api=self.admin_api)
        self.notifier.wait_for_versioned_notifications(
            'instance.live_migration_rollback_dest.end')

        self.assertEqual('src', self.server_host(self.server))
        self.assertEqual([self.server['id']], self.domains('src'))
        self.assertEqual(secret, self.held_secret('src', self.server))
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('src'))
        mid = self.migration_uuid(self.server)
        self.assertEqual({mid: ('source', 'ABORTED')}, self.rows('src'))
        # Destination cleaned: no guest, no libvirt secret, no key, no
        # envelope in its vault.
        self.assertEqual([], self.domains('dest'))
        self.assertIsNone(self.held_secret('dest', self.server))
        self.assertEqual([], self.libvirt_secrets('dest'))
        self.assertEqual({}, self.keys('dest'))
        self.assertEqual([], self.engines.adapters['dest'].vault.instances())
        self.assertEqual({mid: ('destination', 'ABORTED')},
                         self.rows('dest'))
        self.assert_no_leak(secret)

    def test_key_pull_without_nova_migration_is_refused(self):
        """Attack: a trusted host asks for a key Nova is not moving to it.

        "evil" runs the plugin and would pass attestation, but Nova is not
        live-migrating the instance: the source refuses to attest it for
        the instance, and to wrap the key for it or for any other host,
        with or without a (forged) migration id.
        """
        secret = self.start_pair()
        self.start_compute('evil')
        evil = self.computes['evil'].driver._vtpm

        ex = self.assertRaises(errors.VirtIntegrationError,
                               evil.attest_source, self.server['id'], 'src')
        self.assertIn('no live migration of it from this host', str(ex))

        def send_key(migration, destination):
            return evil._control('send_key', 'src',
                                 instance_uuid=self.server['id'],
                                 migration_uuid=migration,
                                 destination=destination)

        for forged in (uuids.forged_migration, self.server['id']):
            for claimed in ('evil', 'dest'):
                ex = self.assertRaises(errors.VirtIntegrationError,
                                       send_key, forged, claimed)
                self.assertIn('UnexpectedDestination', str(ex))

        self.assertEqual({}, self.rows('src'))
        self.assertEqual({}, self.keys('evil'))
        self.assertIsNone(self.vtpm_host('src').expected_destination(
            self.server['id']))
        self.assertEqual(secret, self.held_secret('src', self.server))
        self.assert_no_leak(secret)

    def test_host_without_working_engine_refuses_protected_moves(self):
        """A compute whose TPM/engine fails keeps running but never takes
        part in a protected live migration (and reports no trait)."""
        real_factory = self.engines.factory

        def factory(cls, conf, host, transport=None):
            if host == 'dest':
                raise RuntimeError('TPM device /dev/tpmrm0 missing')
            return real_factory(cls, conf, host, transport)

        self.useFixture(fixtures.MonkeyPatch(base.ENGINE_FACTORY, factory))
        secret = self.start_pair()
        self.assertNotIn(flavor_policy.ATTESTED_TRAIT,
                         self._get_provider_traits(
                             self.compute_rp_uuids['dest']))

        details = self._refused_to_dest()
        self.assertIn('The vTPM migration engine of host dest is not '
                      'available', details)
        self.assertEqual(secret, self.held_secret('src', self.server))
        self.assert_no_leak(secret)

    def test_non_vtpm_server_migrates_as_upstream(self):
        """Test 6: servers without vTPM never involve the plugin."""
        self.start_compute('src')
        self.src = self.computes['src']
        self.server = self._create_server()
        self.start_compute('dest')
        self.dest = self.computes['dest']

        self._live_migrate(self.server, api=self.admin_api)

        self.assertEqual('dest', self.server_host(self.server))
        self.assertEqual({}, self.rows('src'))
        self.assertEqual({}, self.rows('dest'))
        self.assertEqual({}, self.keys('src'))
        self.assertNotIn('attest_destination', self.rpc.methods())

    def test_source_refuses_destination_without_plugin(self):
        """A destination running upstream's driver gets no key at all."""
        secret = self.start_pair(dest_driver='libvirt.LibvirtDriver')
        details = self._refused_to_dest()
        self.assertIn('No attested destination is recorded on source host '
                      'src', details)
        self.assertEqual('src', self.server_host(self.server))
        self.assertIsNone(self.held_secret('dest', self.server))
        self.assert_no_leak(secret)

    def test_destination_refuses_source_without_plugin(self):
        """A source running upstream's driver is refused by the dest."""
        self.flags(rpc_timeout=2, group='vtpm_migration')
        self.start_pair(src_driver='libvirt.LibvirtDriver')
        details = self._refused_to_dest()
        self.assertIn('Host src does not run nova-vtpm-migration', details)
        self.assertEqual('src', self.server_host(self.server))
        self.assertNotIn('check_can_live_migrate_source', self.rpc.methods())

    def test_enforcement_warn_falls_back_to_upstream(self):
        """``enforcement = warn``: a plugin-less peer gets upstream mode."""
        self.flags(enforcement='warn', group='vtpm_migration')
        secret = self.start_pair(dest_driver='libvirt.LibvirtDriver')

        self._live_migrate(self.server, api=self.admin_api)

        self.assertEqual('dest', self.server_host(self.server))
        self.assertEqual(secret, self.held_secret('dest', self.server))
        self.assertIn('Falling back to upstream vTPM live migration',
                      self.logs.text)
        # The source's vault opened the secret for upstream's migrate_data
        # and forgot it once the guest had left.
        self.assertEqual({}, self.keys('src'))
        self.assertEqual([], self.engines.adapters['src'].vault.instances())

    def test_enforcement_warn_from_a_source_without_plugin_seals(self):
        """``warn``, source without the plugin: upstream hands the secret
        over in plaintext; the destination takes it into its vault and
        keeps no persistent libvirt secret."""
        self.flags(enforcement='warn', group='vtpm_migration')
        self.flags(rpc_timeout=2, group='vtpm_migration')
        secret = self.start_pair(src_driver='libvirt.LibvirtDriver')

        self._live_migrate(self.server, api=self.admin_api)

        self.assertEqual('dest', self.server_host(self.server))
        self.assertIsNone(self.libvirt_secret('dest', self.server))
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('dest'))
        self.assertEqual(secret, self.held_secret('dest', self.server))

    def test_flavor_requiring_attestation_never_falls_back(self):
        """``vtpm_migration:attested=required`` overrides ``warn``."""
        self.flags(enforcement='warn', group='vtpm_migration')
        secret = self.start_pair({flavor_policy.ATTESTED_SPEC: 'required'},
                                  dest_driver='libvirt.LibvirtDriver')

        self._refused_to_dest()

        self.assertEqual('src', self.server_host(self.server))
        self.assert_no_leak(secret)


class RecoveryTest(base.VtpmServersBase):
    """nova-compute restarts in the middle of a move."""

    def _key_holders(self):
        return [h for h in ('src', 'dest')
                if self.keys(h).get(self.server['id']) == 'ACTIVE']

    def test_restart_after_transfer_before_abort(self):
        """The guest stayed on the source: recovery aborts the move."""
        self.start_pair()
        # The outcome is lost: both hosts die before journaling the abort.
        self.useFixture(fixtures.MockPatch(
            'nova_vtpm_migration.compute.host.ComputeHost.abort'))
        self.useFixture(fixtures.MockPatch(
            'nova_vtpm_migration.compute.host.ComputeHost.abort_incoming'))

        def failing_migrate(domain, destination, params, flags):
            conn = self.src.driver._host.get_connection()
            conn.lookupByUUIDString(self.server['id']).fail_job()

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            failing_migrate))
        self._live_migrate(self.server, migration_expected_state='failed',
                           api=self.admin_api)
        self.notifier.wait_for_versioned_notifications(
            'instance.live_migration_rollback_dest.end')
        # In doubt: the source key is locked, the destination's pending.
        self.assertEqual('LOCKED', self.keys('src')[self.server['id']])
        self.assertEqual('PENDING', self.keys('dest')[self.server['id']])

        self.restart_compute_service('dest')
        self.restart_compute_service('src')

        self.assertEqual(['src'], self._key_holders())
        self.assertNotIn(self.server['id'], self.keys('dest'))
        mid = self.migration_uuid(self.server)
        self.assertEqual(('source', 'ABORTED'), self.rows('src')[mid])

    def test_restart_after_switch_before_commit(self):
        """The guest runs on the destination: recovery commits the move."""
        self.start_pair()
        self.lose_commit()

        self._live_migrate(self.server, api=self.admin_api)
        self.assertEqual('dest', self.server_host(self.server))
        self.assertEqual('LOCKED', self.keys('src')[self.server['id']])
        self.assertEqual('PENDING', self.keys('dest')[self.server['id']])

        self.restart_compute_service('src')

        self.assertEqual(['dest'], self._key_holders())
        self.assertNotIn(self.server['id'], self.keys('src'))
        mid = self.migration_uuid(self.server)
        self.assertEqual(('source', 'COMMITTED'), self.rows('src')[mid])
        self.assertEqual(('destination', 'COMMITTED'), self.rows('dest')[mid])


    def test_restart_in_doubt_waits_for_the_operator(self):
        """Nova has no record of the hand-over: nothing is decided.

        The guest left the source, but Nova's records say it did not (as
        if the hand-over had not been saved). Recovery must neither
        presume abort (the guest may run on the destination) nor commit:
        the key stays LOCKED at the source and PENDING at the destination,
        usable nowhere, until the operator decides.
        """
        self.start_pair()
        self.lose_commit()
        self._live_migrate(self.server, api=self.admin_api)
        mid = self.migration_uuid(self.server)
        ctx = nova_context.get_admin_context()
        migration = objects.Migration.get_by_uuid(ctx, mid)
        migration.status = 'running'
        migration.save()
        instance = objects.Instance.get_by_uuid(ctx, self.server['id'])
        instance.host = 'src'
        instance.save()

        self.restart_compute_service('src')

        self.assertEqual([], self._key_holders())
        self.assertEqual('LOCKED', self.keys('src')[self.server['id']])
        self.assertEqual('PENDING', self.keys('dest')[self.server['id']])

        self.engines.adapters['src'].engine.decide(mid, 'commit')
        self.assertEqual(['dest'], self._key_holders())
        self.assertNotIn(self.server['id'], self.keys('src'))


def _three_hosts_one_untrusted(test):
    """A vTPM server on ``src``, then ``bad`` (PCRs outside the policy)
    and ``good``. ``bad`` has the most free RAM, so the weighers would
    prefer it."""
    test.start_compute('src')
    test.src = test.computes['src']
    test.server = test.create_vtpm_server()
    test.make_untrusted('bad')
    test.start_compute('bad', host_info=fakelibvirt.HostInfo(
        cpu_nodes=2, cpu_sockets=1, cpu_cores=2, cpu_threads=2,
        kB_mem=33554432))
    test.start_compute('good')


class SchedulerGateTest(base.VtpmServersBase):
    """The conductor never hands the move to hosts that fail
    attestation."""

    ENABLE_FILTER = True

    def _traits(self, hostname):
        return self._get_provider_traits(self.compute_rp_uuids[hostname])

    def test_trait_follows_own_attestation(self):
        self.flags(evidence_max_age=1, group='vtpm_migration')
        self.start_compute('host1')
        self.assertIn(flavor_policy.ATTESTED_TRAIT, self._traits('host1'))

        self.make_untrusted('host1')
        time.sleep(0.6)
        self._run_periodics()

        self.assertNotIn(flavor_policy.ATTESTED_TRAIT, self._traits('host1'))

    def test_three_hosts_one_untrusted(self):
        _three_hosts_one_untrusted(self)
        self.assertNotIn(flavor_policy.ATTESTED_TRAIT, self._traits('bad'))
        self.assertIn(flavor_policy.ATTESTED_TRAIT, self._traits('good'))

        # Twice: src -> good, then good -> src; "bad" is never a candidate.
        for source, target in (('src', 'good'), ('good', 'src')):
            self.src, self.dest = self.computes[source], self.computes[target]
            self._live_migrate(self.server, api=self.admin_api)
            self.assertEqual(target, self.server_host(self.server))

        self.assertEqual({}, self.rows('bad'))
        self.assertFalse([m for m in self.rpc.containing('server=bad')
                          if 'check_can_live_migrate_destination' in m])


class ConductorRetryTest(base.VtpmServersBase):
    """Without the filter, the pre-check makes the conductor move on."""

    def test_untrusted_host_is_tried_refused_and_skipped(self):
        _three_hosts_one_untrusted(self)
        self.dest = self.computes['good']

        self._live_migrate(self.server, api=self.admin_api)

        self.assertEqual('good', self.server_host(self.server))
        # "bad" was preferred by the weighers, tried, and refused.
        tried = [m for m in self.rpc.containing('server=bad')
                 if 'check_can_live_migrate_destination' in m]
        self.assertTrue(tried)
        self.assertEqual({}, self.keys('bad'))
        self.assertEqual([], self.domains('bad'))
