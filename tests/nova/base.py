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

"""Nova functional-test harness with the plugin's driver loaded.

Mix :class:`PluginDriverMixin` in front of a Nova functional test class
(``nova.tests.functional.libvirt.base.ServersTestBase`` or a subclass): the
computes then load ``compute_driver =
vtpm_migration_ext.driver.LibvirtDriver`` through the installed shim, as a
real deployment does, and each gets its own protocol engine.
"""

import importlib.util
import os
import sys

import fixtures
from nova import conf as nova_conf
from nova import context as nova_context
from nova import crypto
from nova import objects
from nova import utils
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import base as libvirt_base

# Registers the [vtpm_migration] options on Nova's CONF.
from nova_vtpm_migration import conf as vtpm_conf  # noqa: F401
from nova_vtpm_migration.compute import errors as virt_errors
from nova_vtpm_migration.virt.libvirt import driver as plugin_driver
from tests.nova import engines as vtpm_engines
from tests.nova import fixtures as vtpm_fixtures
from tests.nova import host_tpms

CONF = nova_conf.CONF
KEY_MANAGER = 'nova.tests.functional.libvirt.test_vtpm.FakeKeyManager'
FILTER = ('nova_vtpm_migration.scheduler.filters.'
          'VtpmMigrationAttestedFilter')

PLUGIN_DRIVER = 'vtpm_migration_ext.driver.LibvirtDriver'
SHIM_MODULE = 'nova.virt.vtpm_migration_ext.driver'
ENGINE_FACTORY = 'nova_vtpm_migration.compute.host.ComputeHost.open'


def shim_installed() -> bool:
    """Whether the installed package provides Nova's driver shim."""
    try:
        return importlib.util.find_spec(SHIM_MODULE) is not None
    except ImportError:
        return False


class ApiPasteMixin:
    """Point nova-api at the api-paste.ini the Nova wheel installed."""

    def _setup_services(self):
        # Nova's test config defaults [wsgi] api_paste_config to
        # <site-packages>/etc/nova/api-paste.ini, but the wheel installs it
        # below sys.prefix.
        paste = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')
        if os.path.exists(paste):
            self.flags(api_paste_config=paste, group='wsgi')
        super()._setup_services()


class PluginDriverMixin(ApiPasteMixin):
    """Load the plugin's driver in every compute of a Nova test."""

    def setUp(self):
        # Nova's ServiceFixture mocks shutdown_all_executors()
        # only until that fixture is cleaned up, but a compute stopped in
        # the test (restart_compute_service) finishes its graceful shutdown
        # in a background thread; when that thread outlives the mock it
        # shuts the process-wide executor factory down and every later test
        # of the worker fails. Keep it mocked for the whole test (this
        # fixture is cleaned up last).
        self.useFixture(fixtures.MonkeyPatch(
            'nova.thread_pool_factory.shutdown_all_executors',
            lambda: None))
        self.host_tpms = self.useFixture(host_tpms.HostTpms())
        self.engines = vtpm_engines.Engines(self.host_tpms)
        self.useFixture(fixtures.MonkeyPatch(ENGINE_FACTORY,
                                             self.engines.factory))
        super().setUp()
        self.flags(rpc_timeout=10, group='vtpm_migration')
        # Tests settle explicitly (or turn the periodic pass on).
        self.flags(settle_interval=0, group='vtpm_migration')

    def _setup_compute_service(self):
        # ServersTestBase starts computes in the tests themselves.
        if shim_installed():
            self.flags(compute_driver=PLUGIN_DRIVER)
        else:
            # A development venv without this package
            # installed has no nova.virt.vtpm_migration_ext; load the same
            # class through Nova's own driver path instead
            # (tests.nova.test_packaging fails loudly in that case).
            self.useFixture(fixtures.MonkeyPatch(
                'nova.virt.libvirt.LibvirtDriver',
                plugin_driver.LibvirtDriver))
            self.flags(compute_driver='libvirt.LibvirtDriver')


class VtpmServersBase(PluginDriverMixin, libvirt_base.LibvirtMigrationMixin,
                      libvirt_base.ServersTestBase):
    """vTPM servers on libvirt computes running the plugin driver.

    Sets Nova up as ``nova.tests.functional.libvirt.test_vtpm`` does
    (swtpm enabled, a castellan key manager double, vTPM domain
    capabilities) without inheriting its tests.
    """

    CAST_AS_CALL = False
    microversion = '2.34'
    #: Also load the plugin's scheduler filter.
    ENABLE_FILTER = False

    def setUp(self):
        self.flags(swtpm_enabled=True, group='libvirt')
        # Required for vtpm_migration:attested=required flavors
        # ([vtpm_migration] require_native_tls).
        self.flags(live_migration_with_native_tls=True, group='libvirt')
        self.flags(supported_tpm_secret_security=['user', 'host'],
                   group='libvirt')
        self.flags(backend=KEY_MANAGER, group='key_manager')
        if self.ENABLE_FILTER:
            self.flags(available_filters=[
                'nova.scheduler.filters.all_filters', FILTER],
                group='filter_scheduler')
        self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.virConnect._domain_capability_tpm',
            new=fakelibvirt.virConnect._domain_capability_tpm_supported))
        # Nova's own vTPM tests lower the minimum compute version check.
        self.useFixture(fixtures.MockPatch(
            'nova.compute.api.MIN_COMPUTE_VTPM_LIVE_MIGRATION', 5))
        self.useFixture(fixtures.MockPatch(
            'nova.objects.service.Service.get_minimum_version',
            return_value=74))
        self.rpc = self.useFixture(vtpm_fixtures.MessageCapture())
        super().setUp()
        # After Nova's StandardLogging, which replaces the root handlers.
        self.logs = self.useFixture(vtpm_fixtures.DebugLogCapture())
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver._check_vtpm_support'))
        self.key_mgr = crypto._get_key_manager()
        self.useFixture(fixtures.MockPatch(
            'nova.context.get_nova_service_user_context',
            lambda: nova_context.RequestContext(user_id='nova')))

    def _setup_scheduler_service(self):
        if self.ENABLE_FILTER:
            enabled = list(CONF.filter_scheduler.enabled_filters)
            enabled.append('VtpmMigrationAttestedFilter')
            self.flags(enabled_filters=enabled, group='filter_scheduler')
        return super()._setup_scheduler_service()

    # -- helpers -----------------------------------------------------------

    def create_vtpm_server(self, extra_specs=None, expected_state='ACTIVE'):
        specs = {'hw:tpm_model': 'tpm-tis', 'hw:tpm_version': '2.0',
                 'hw:tpm_secret_security': 'host'}
        specs.update(extra_specs or {})
        flavor_id = self._create_flavor(extra_spec=specs)
        return self._create_server(flavor_id=flavor_id,
                                   expected_state=expected_state)

    def start_pair(self, extra_specs=None, src_driver=None,
                   dest_driver=None):
        """Boot a vTPM server (``self.server``) on ``src``, then start
        ``dest``; return the secret ``src`` holds for it.

        ``src_driver``/``dest_driver`` run that host with another compute
        driver (e.g. upstream's) instead of the plugin's.
        """
        if src_driver:
            self.flags(compute_driver=src_driver)
        self.start_compute('src')
        self.src = self.computes['src']
        self.server = self.create_vtpm_server(extra_specs)
        if src_driver or dest_driver:
            self.flags(compute_driver=dest_driver or PLUGIN_DRIVER)
        self.start_compute('dest')
        self.dest = self.computes['dest']
        secret = self.held_secret('src', self.server)
        self.assertIsNotNone(secret)
        return secret

    def lose_commit(self):
        """The source's commit after the move never happens (as if its
        nova-compute died in post_live_migration)."""
        self.useFixture(fixtures.MockPatch(
            'nova_vtpm_migration.compute.host.ComputeHost.commit'))

    def failed_in_pre_live_migration(self):
        """Live-migrate the server to ``dest``, expect Nova to roll back
        after ``pre_live_migration`` failed; return that step's event
        details."""
        self.admin_api.post_server_action(self.server['id'], {
            'os-migrateLive': {'host': 'dest', 'block_migration': 'auto'}})
        self._wait_for_migration_status(self.server, ['error', 'failed'])
        self._wait_for_state_change(self.server, 'ACTIVE')
        self.notifier.wait_for_versioned_notifications(
            'instance.live_migration_rollback.end')
        return self.action_event_details(
            self.server, 'compute_pre_live_migration')

    def instance(self, server):
        return objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'])

    def libvirt_secret(self, hostname, server):
        """The value of the instance's libvirt vTPM secret on a host."""
        secret = self.computes[hostname].driver._host.find_secret(
            'vtpm', server['id'])
        return None if secret is None else bytes(secret.value())

    def held_secret(self, hostname, server):
        """The vTPM secret a host can give the server's guest: from its
        vault (``sealed`` storage), else from a persistent libvirt secret;
        ``None`` if it has neither."""
        adapter = self.engines.adapters.get(hostname)
        if adapter is not None and adapter.holds_secret(server['id']):
            try:
                return adapter.open_secret(server['id'])
            except virt_errors.SecretUnavailable:
                return None
        return self.libvirt_secret(hostname, server)

    def libvirt_secrets(self, hostname):
        """Every secret libvirt has defined on a host, as ``virsh
        secret-list`` lists them (libvirt's public API only: that
        the secrets libvirt got were ephemeral and private, and that the
        daemon refuses their value, is proved on real libvirt daemons by
        ``tests/nova/real_libvirt``)."""
        conn = self.computes[hostname].driver._host.get_connection()
        return conn.listAllSecrets(0)

    def domains(self, hostname):
        host = self.computes[hostname].driver._host
        return [d.UUIDString() for d in host.list_instance_domains()]

    def server_host(self, server):
        return self.admin_api.get_server(server['id'])[
            'OS-EXT-SRV-ATTR:host']

    def action_event_details(self, server, event_name):
        """The ``details`` of a failed instance action event (2.84)."""
        with utils.temporary_mutation(self.admin_api, microversion='2.84'):
            event = self._wait_for_instance_action_event(
                server, 'live-migration', event_name, 'Error')
        return event['details']

    def assert_no_leak(self, secret):
        """The secret is in no RPC message and no log line (DEBUG too)."""
        self.assertTrue(self.rpc.messages, 'no RPC message was captured')
        self.assertTrue(
            [r for r in self.logs.records if r.startswith('DEBUG')],
            'the DEBUG log capture is broken')
        for form in vtpm_fixtures.secret_encodings(secret):
            leaked = self.rpc.containing(form)
            self.assertEqual([], leaked, 'vTPM secret found on the bus')
            self.assertNotIn(form, self.logs.text,
                             'vTPM secret found in the logs')

    # -- the plugin's side of a compute --------------------------------------

    def vtpm_host(self, hostname):
        """The compute's ``ComputeHost`` (the plugin's host object)."""
        return self.engines.adapters[hostname]

    def answer_protocol_for(self, hostname, handler):
        """Protocol messages addressed to *hostname* are answered by
        *handler* (request bytes -> reply bytes) instead of its engine, as
        when an attacker holding the bus credentials serves (or a
        compromised compute relays) that host's RPC queue."""
        server = self.vtpm_host(hostname)._server
        endpoint = server.dispatcher.endpoints[0]
        self.addCleanup(setattr, endpoint, '_handler', endpoint._handler)
        endpoint._handler = handler

    def relay_protocol(self, hostname, to):
        """*hostname* forwards every protocol message to host *to* over
        the bus and returns its replies."""
        api = self.vtpm_host(hostname)._api
        self.answer_protocol_for(
            hostname, lambda request: api.exchange(to, request))

    # -- host TPM / engine state -------------------------------------------

    def make_untrusted(self, hostname):
        """Put the host's measured state outside the trust policy.

        Extends PCR 7 (secure-boot policy) of the host's swtpm, as booting
        with another secure-boot configuration would.
        """
        self.host_tpms.extend_pcr(hostname, 7, b'unexpected shim')

    def keys(self, hostname):
        """instance uuid -> key custody state held by the host's engine
        (destroyed keys left out)."""
        return {inst: str(state) for inst, state in
                self.engines.key_states(hostname).items()
                if str(state) != 'DESTROYED'}

    def rows(self, hostname):
        """migration id -> (role, state) in the host's journal."""
        return self.engines.rows(hostname)

    def records(self, hostname, migration_uuid):
        """Kinds of signed protocol records the host keeps for a move."""
        return self.engines.records(hostname, migration_uuid)

    def migration_uuid(self, server):
        """The UUID of the server's latest live migration."""
        migrations = objects.MigrationList.get_by_filters(
            nova_context.get_admin_context(),
            {'instance_uuid': server['id'],
             'migration_type': 'live-migration'})
        return sorted(migrations, key=lambda m: m.id)[-1].uuid
