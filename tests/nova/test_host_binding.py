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

"""The key and the guest go only to the host Nova chose, through Nova.

An attacker holds the message-bus credentials (so can register a compute,
serve any host's RPC queue and send any RPC), or is root on a compute that
is not the target. Each test runs the attack through Nova's own services
(nova-api, conductor, scheduler, computes on fake libvirt) with the plugin
driver on swtpm host TPMs, and checks that it is refused with a clear
reason and that exactly one usable key exists, where the guest runs.
"""

import json
import os
import time

from nova import context as nova_context
from nova import objects
import oslo_messaging as messaging

from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.protocol import errors as protocol_errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.virt import flavor_policy
from tests.nova import base
from tests.support import attestation


class HostBindingTest(base.VtpmServersBase):
    """The TPM that answers must be the one certified for Nova's host."""

    def _refused_at_precheck(self, host):
        self._live_migrate(self.server, migration_expected_state='error',
                           server_expected_state='ACTIVE',
                           api=self.admin_api, host=host)
        return self.action_event_details(
            self.server, 'compute_check_can_live_migrate_destination')

    def _only_at_source(self, secret, *others):
        self.assertEqual('src', self.server_host(self.server))
        self.assertEqual([self.server['id']], self.domains('src'))
        self.assertEqual(secret, self.held_secret('src', self.server))
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('src'))
        for host in others:
            self.assertEqual([], self.domains(host), host)
            self.assertEqual({}, self.keys(host), host)
            self.assertIsNone(self.held_secret(host, self.server), host)

    def test_relay_compute_forwarding_a_trusted_hosts_protocol(self):
        """Nova is asked to move the guest to 'relay', a compute registered
        with the bus credentials whose plugin forwards every protocol
        message to the trusted host 'dest' (its own TPM never answers).
        The source sees dest's TPM, certified for dest, not for relay:
        refused at the pre-check, so libvirt never streams the guest's
        memory to relay."""
        secret = self.start_pair()
        self.start_compute('relay')
        self.relay_protocol('relay', to='dest')

        details = self._refused_at_precheck('relay')

        self.assertIn('Host relay was expected, but the TPM identity '
                      'presented is certified for dest', details)
        self._only_at_source(secret, 'relay', 'dest')
        self.assertEqual({}, self.rows('dest'))
        self.assertNotIn('pre_live_migration', self.rpc.methods())
        self.assert_no_leak(secret)

    def test_trusted_host_answering_for_the_chosen_host(self):
        """Nova chose 'dest'; 'other', a host the trust policy accepts,
        answers everything addressed to dest's queue: refused, its TPM is
        certified for other."""
        secret = self.start_pair()
        self.start_compute('other')
        other = self.vtpm_host('other').engine
        self.answer_protocol_for('dest', other.handle)

        details = self._refused_at_precheck('dest')

        self.assertIn('Host dest was expected, but the TPM identity '
                      'presented is certified for other', details)
        self._only_at_source(secret, 'dest', 'other')
        self.assertEqual({}, self.rows('other'))
        self.assert_no_leak(secret)

    def _answered_after_precheck(self, engine):
        """Between Nova's pre-check and pre_live_migration the source's
        session with dest expires, and from then on *engine* answers for
        dest."""
        src = self.vtpm_host('src')
        send_key = src.handle_send_key

        def later(*args, **kwargs):
            src.engine.forget_sessions()
            self.answer_protocol_for('dest', engine.handle)
            return send_key(*args, **kwargs)
        src.handle_send_key = later

    def test_session_expires_and_a_trusted_host_answers(self):
        """The pre-check attested dest; the key is sent on a new session,
        answered by 'other' (trusted, certified for other): refused."""
        secret = self.start_pair()
        self.start_compute('other')
        self._answered_after_precheck(self.vtpm_host('other').engine)

        details = self.failed_in_pre_live_migration()

        self.assertIn('Host dest was expected, but the TPM identity '
                      'presented is certified for other', details)
        self._only_at_source(secret, 'dest', 'other')
        self.assert_no_leak(secret)

    def test_session_expires_and_another_tpm_certified_for_dest_answers(
            self):
        """The new session leads to another TPM the attestation CA also
        certified for dest (a replaced machine, a stale certificate): the
        key moves only to the AK attested at Nova's pre-check."""
        secret = self.start_pair()
        cluster = self.host_tpms.cluster
        impostor = cluster.engine(
            'dest', transport_mod.LocalTransport(),
            tpm=self.host_tpms.tpm('impostor'),
            state_dir=self.host_tpms.state_dir('impostor'),
            ak_certificate=cluster.ak_certificate('impostor', host='dest'))
        self._answered_after_precheck(impostor)

        details = self.failed_in_pre_live_migration()

        self.assertIn('another TPM', details)
        self._only_at_source(secret, 'dest')
        self.assertIsNone(impostor.keystore.state(self.server['id']))
        self.assertEqual([], impostor.journal.list_migrations())
        self.assert_no_leak(secret)


class NamedPolicyTest(base.VtpmServersBase):
    """Both sides take the named trust policy from the instance's flavor
    in Nova's database; no request carries it."""

    def _named_policy(self, name, **kwargs):
        doc = attestation.policy_document(
            self.host_tpms.ca.bundle_pem(),
            [(name, self.host_tpms.tpm('src').pcr_values())], **kwargs)
        path = os.path.join(self.host_tpms.root, f'{name}.json')
        with open(path, 'w') as f:
            json.dump(doc, f)
        self.flags(named_policies={name: path}, group='vtpm_migration')

    def _ek_fingerprint(self, host):
        return self.host_tpms.tpm(host).identity().ek_fingerprint

    def test_forged_attest_call_cannot_drop_the_flavors_policy(self):
        """The flavor names 'pair' (an EK allow-list of src and dest). A
        bus attacker asks the source to attest 'other' for the instance,
        with and without a policy argument: the source applies the
        flavor's policy anyway, or refuses the unknown argument."""
        self._named_policy('pair', ek_fingerprints=[
            self._ek_fingerprint('src'), self._ek_fingerprint('dest')])
        secret = self.start_pair({flavor_policy.POLICY_SPEC: 'pair'})
        self.start_compute('other')
        other = self.vtpm_host('other')
        # Nova is moving the instance away from src (to a host not yet
        # chosen), as during the conductor's pre-checks.
        migration = objects.Migration(
            nova_context.get_admin_context(), source_compute='src',
            source_node='src', instance_uuid=self.server['id'],
            status='accepted', migration_type='live-migration')
        migration.create()

        ex = self.assertRaises(errors.VirtIntegrationError,
                               other.attest_source, self.server['id'],
                               'src')
        self.assertIn('ek_fingerprints', str(ex))
        ex = self.assertRaises(
            errors.VirtIntegrationError, other._control,
            'attest_destination', 'src', instance_uuid=self.server['id'],
            destination='other', policy='default')
        self.assertIn('policy', str(ex))
        self.assertIsNone(self.vtpm_host('src').expected_destination(
            self.server['id']))
        # The same flavor lets the move to dest go ahead.
        migration.status = 'error'
        migration.save()
        self._live_migrate(self.server, api=self.admin_api, host='dest')
        self.assertEqual(secret, self.held_secret('dest', self.server))

    def test_destination_applies_the_flavors_policy_to_the_source(self):
        """The flavor's policy allows dest's EK only: the source attests
        dest and sends the key, but dest checks the sender against the
        same policy (from Nova's database) and refuses it on arrival;
        Nova rolls back and the key stays usable at the source only."""
        self._named_policy('dest-only',
                           ek_fingerprints=[self._ek_fingerprint('dest')])
        # Passes at the source only if src applies the policy to dest.
        secret = self.start_pair({flavor_policy.POLICY_SPEC: 'dest-only'})

        details = self.failed_in_pre_live_migration()
        self.assertIn('ek_fingerprints', details)
        self.assertEqual('src', self.server_host(self.server))
        self.assertEqual({self.server['id']: 'ACTIVE'}, self.keys('src'))
        self.assertEqual(secret, self.held_secret('src', self.server))
        self.assertEqual({}, self.keys('dest'))
        self.assertEqual([], self.vtpm_host('dest').vault.instances())
        self.assert_no_leak(secret)


class ForgedControlTest(base.VtpmServersBase):
    """Forged control and rollback requests during the hand-over."""

    def test_forged_rollback_after_the_hand_over(self):
        """The guest runs on dest, the source's commit is not done yet
        (both keys in custody). A bus attacker sends the removed
        ``abort_migration`` call, and a forged protocol rollback; Nova's
        destination rollback path runs (a bus attacker can send Nova's
        own rollback RPC): each is refused, and the key ends usable
        exactly once, on dest, where the guest runs."""
        secret = self.start_pair()
        self.lose_commit()
        self._live_migrate(self.server, api=self.admin_api)
        self.assertEqual('dest', self.server_host(self.server))
        mid = self.migration_uuid(self.server)
        inst = self.server['id']
        self.assertEqual({inst: 'LOCKED'}, self.keys('src'))
        self.assertEqual({inst: 'PENDING'}, self.keys('dest'))
        self.start_compute('evil')
        evil = self.vtpm_host('evil')

        # The control call that used to abort from outside is gone.
        self.assertRaises(
            (messaging.RemoteError, messaging.NoSuchMethod,
             errors.VirtIntegrationError), evil._api._call, 'src', '1.1',
            'abort_migration', instance_uuid=inst, migration_uuid=mid)
        # A protocol rollback needs the destination's session keys.
        forged = messages.encode('sealed', {
            'session_id': os.urandom(16), 'seq': 1, 'request_hash': b'',
            'payload': messages.encode('rollback', {
                'migration_id': mid, 'reason': 'forged'}),
            'mac': os.urandom(32)})
        reply = messages.decode(evil._api.exchange('src', forged))
        self.assertEqual('error', reply.type)
        # Nova's rollback at the destination asks the source over dest's
        # own attested session; the source sees in Nova's record that the
        # guest was handed over and refuses; dest keeps what it received.
        ex = self.assertRaises(protocol_errors.PeerRefused,
                               self.vtpm_host('dest').abort_incoming,
                               inst, mid, 'src')
        self.assertIn('abort_refused', str(ex.kwargs))
        self.assertEqual({inst: 'LOCKED'}, self.keys('src'))
        self.assertEqual({inst: 'PENDING'}, self.keys('dest'))

        # The source's periodic settle pass finishes the lost commit (the
        # move is old enough for it after a second with this timeout).
        self.flags(rpc_timeout=1, group='vtpm_migration')
        time.sleep(1.1)
        self.vtpm_host('src').settle()

        self.assertEqual({inst: 'ACTIVE'}, self.keys('dest'))
        self.assertEqual({}, self.keys('src'))
        self.assertEqual(('source', 'COMMITTED'), self.rows('src')[mid])
        self.assertEqual(('destination', 'COMMITTED'),
                         self.rows('dest')[mid])
        self.assertEqual(secret, self.held_secret('dest', self.server))
        self.assert_no_leak(secret)


class NativeTlsTest(base.VtpmServersBase):
    """The guest's memory goes only to the attested host too."""

    def test_required_flavor_without_native_tls_is_refused(self):
        secret = self.start_pair({flavor_policy.ATTESTED_SPEC: 'required'})
        self.flags(live_migration_with_native_tls=False, group='libvirt')

        self._live_migrate(self.server, migration_expected_state='error',
                           server_expected_state='ACTIVE',
                           api=self.admin_api, host='dest')

        details = self.action_event_details(
            self.server, 'compute_check_can_live_migrate_destination')
        self.assertIn('live_migration_with_native_tls is off', details)
        self.assertIn('require_native_tls', details)
        self.assertNotIn('attest_destination', self.rpc.methods())
        self.assertEqual(secret, self.held_secret('src', self.server))

    def test_documented_switch_allows_it(self):
        secret = self.start_pair({flavor_policy.ATTESTED_SPEC: 'required'})
        self.flags(live_migration_with_native_tls=False, group='libvirt')
        self.flags(require_native_tls=False, group='vtpm_migration')

        self._live_migrate(self.server, api=self.admin_api, host='dest')

        self.assertEqual('dest', self.server_host(self.server))
        self.assertEqual(secret, self.held_secret('dest', self.server))
