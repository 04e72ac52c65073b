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

"""Nova's functional control plane with computes on REAL libvirt daemons.

nova-api, conductor, scheduler and placement are Nova's own in-process
functional-test services (``_IntegratedTestBase``); every nova-compute
runs Nova's real ``LibvirtDriver`` (or the plugin's, see
:class:`RealLibvirtPluginBase`) against its own libvirtd 9.0 from
:mod:`tests.support.libvirt.daemons`, with real QEMU (TCG) and swtpm.
The guest is the self-checking vTPM guest of
:mod:`tests.support.libvirt.guest`, booted from Glance images (kernel,
ramdisk, a 1 MiB raw root disk).

What Nova's functional fixtures poison or assume, and what is done about
it:

* ``libvirt`` is imported by this module, before ``TestCase.setUp``
  installs the import blocker (an already-loaded module passes).
* ``[libvirt] connection_uri`` is set before each ``start_service``
  (the driver reads it at construction); ``live_migration_uri`` is a
  ``%s`` template giving each destination's socket.
* ``Host._init_events`` (poisoned with ``sys.exit``) is a no-op: Nova then
  gets no lifecycle events and polls, which live migration does anyway.
* ``os.uname`` and ``psutil.net_if_addrs`` get their real functions back.
* Privileged calls run in-process (``sys_admin_pctxt`` client mode off):
  the tests run as root, there is no privsep daemon.
* All computes share one ``instances_path`` (one process); the daemons see
  it as NFS through the statfs shim so that libvirt's safety check agrees
  with Nova's shared-storage decision (non-block migration).
* Each daemon has its own host name (UTS namespace), which libvirt
  reports to Nova (compute node names) and gives the source QEMU as the
  destination of its migration stream; every daemon's ``/etc/hosts``
  resolves them to loopback.
* Migrations use QEMU's native TLS (``[libvirt]
  live_migration_with_native_tls``): each daemon has a server and a client
  certificate for its host name from a test CA
  (:mod:`tests.support.libvirt.migration_tls`), and the source QEMU checks
  the destination's certificate against the destination's host name.

Mocked because it cannot run here: nothing in the data plane. Nova's
Keystone, Glance, Neutron and Cinder are Nova's own test doubles as in
every Nova functional test, the key manager is Nova's vTPM test double
(``FakeKeyManager``), and there are no libvirt lifecycle events.
"""

import hashlib
import io
import os
import time
import uuid

import fixtures
import libvirt  # noqa: F401 - before nova.test's import blocker
from nova import conf as nova_conf
from nova import context as nova_context
from nova import objects
import nova.privsep
from nova.tests.functional import integrated_helpers
import psutil
import testtools

from tests.nova import base as nova_base
from tests.nova import fixtures as vtpm_fixtures
from tests.support.libvirt import daemons as daemons_mod
from tests.support.libvirt import guest
from tests.support.libvirt import introspect

CONF = nova_conf.CONF
_REAL_UNAME = os.uname
_REAL_NET_IF_ADDRS = psutil.net_if_addrs

VTPM_SPECS = {'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb',
              'hw:tpm_secret_security': 'host'}
#: How long a TCG guest may take to boot or a migration to finish here.
TIMEOUT = 120.0


class RealLibvirtTestBase(nova_base.ApiPasteMixin,
                          integrated_helpers._IntegratedTestBase):
    """Nova services with libvirt computes on real daemons.

    Computes are started by the tests with :meth:`start_compute`.
    """

    ADMIN_API = True
    CAST_AS_CALL = False
    microversion = 'latest'

    def setUp(self):
        # Before Nova's fixtures: these run subprocesses and
        # look at /proc, which Nova's poison fixtures do not expect.
        reason = daemons_mod.unavailable_reason()
        if reason is not None:
            self.skipTest(reason)
        self.artifacts = guest.ensure_artifacts()
        self.instances_path = self.useFixture(fixtures.TempDir()).path
        self.daemons = self.useFixture(daemons_mod.LibvirtDaemons(
            shared_paths=[self.instances_path], migration_tls=True))
        self.addOnException(self._add_libvirt_logs)
        self.computes = {}
        super().setUp()

        self.flags(instances_path=self.instances_path)
        self.flags(virt_type='qemu', swtpm_enabled=True,
                   swtpm_user='root', swtpm_group='root',
                   supported_tpm_secret_security=['user', 'host'],
                   live_migration_uri=self.daemons.uri_template(),
                   live_migration_with_native_tls=True,
                   group='libvirt')
        self.flags(backend=nova_base.KEY_MANAGER, group='key_manager')
        self.useFixture(fixtures.MonkeyPatch('os.uname', _REAL_UNAME))
        self.useFixture(fixtures.MonkeyPatch('psutil.net_if_addrs',
                                             _REAL_NET_IF_ADDRS))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host._init_events', lambda host: None))
        nova.privsep.sys_admin_pctxt.set_client_mode(False)
        self.addCleanup(nova.privsep.sys_admin_pctxt.set_client_mode, True)
        self.image_id = self._add_guest_images()
        self.migration_tasks = self.useFixture(MigrationTasks())

    def timed(self, label: str, started: float) -> None:
        """Report how long something took since *started* (the tests print
        it; the demo reports it)."""
        print(f'{label}: {time.monotonic() - started:.1f} s')

    def _setup_compute_service(self):
        # The tests start computes, each on its own daemon.
        self.flags(compute_driver='libvirt.LibvirtDriver')

    def _add_libvirt_logs(self, exc_info):
        self.addDetail('libvirt-logs',
                       testtools.content.text_content(self.daemons.logs()))

    def _add_guest_images(self) -> str:
        """Kernel, ramdisk and root disk images in Nova's Glance double."""
        ids = {}
        for kind, path, fmt in (('kernel', self.artifacts.kernel, 'aki'),
                                ('ramdisk', self.artifacts.initrd, 'ari')):
            with open(path, 'rb') as f:
                data = f.read()
            image = self.glance.create(None, {
                'name': f'vtpm-check-{kind}', 'disk_format': fmt,
                'container_format': fmt, 'size': len(data),
                'visibility': 'public', 'properties': {}},
                data=io.BytesIO(data))
            ids[kind] = image['id']
        disk = bytes(1024 * 1024)
        image = self.glance.create(None, {
            'name': 'vtpm-check', 'disk_format': 'raw',
            'container_format': 'bare', 'size': len(disk),
            'visibility': 'public', 'min_disk': 0, 'min_ram': 0,
            'properties': {
                'kernel_id': ids['kernel'], 'ramdisk_id': ids['ramdisk'],
                'os_command_line': self.artifacts.cmdline,
                'hw_machine_type': 'q35', 'hw_architecture': 'x86_64'}},
            data=io.BytesIO(disk))
        return str(image['id'])

    # -- computes ------------------------------------------------------------

    def start_compute(self, hostname: str, tls_server_name=None):
        """Start host *hostname*'s libvirtd, then its nova-compute.

        :param tls_server_name: the name the daemon's migration server
            certificate is for (default: *hostname*).
        """
        started = time.monotonic()
        daemon = self.daemons.add(hostname, tls_server_name)
        self.flags(connection_uri=daemon.uri, group='libvirt')
        node_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, hostname))
        with fixtures.MockPatch('nova.virt.node.get_local_node_uuid',
                                return_value=node_uuid):
            compute = self.start_service('compute', host=hostname)
            compute.driver._host.get_node_uuid()
        self.computes[hostname] = compute
        self.timed(f'start libvirtd and nova-compute {hostname}', started)
        return compute

    def daemon(self, hostname: str) -> daemons_mod.LibvirtDaemon:
        return self.daemons[hostname]

    # -- servers ------------------------------------------------------------

    def create_vtpm_flavor(self, extra_specs=None) -> str:
        specs = dict(VTPM_SPECS)
        specs.update(extra_specs or {})
        return self._create_flavor(memory_mb=128, vcpu=1, disk=1,
                                   ephemeral=0, extra_spec=specs)

    def wait_for_server(self, server, status='ACTIVE', host=None,
                        timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            server = self.admin_api.get_server(server['id'])
            if (server['status'] == status and not server.get(
                    'OS-EXT-STS:task_state')
                    and host in (None, server['OS-EXT-SRV-ATTR:host'])):
                return server
            if server['status'] == 'ERROR' and status != 'ERROR':
                self.fail(f'server went to ERROR: {server.get("fault")}')
            if time.monotonic() > deadline:
                self.fail(f'server not {status} on {host} within '
                          f'{timeout} s: {server["status"]} '
                          f'{server.get("OS-EXT-STS:task_state")} on '
                          f'{server.get("OS-EXT-SRV-ATTR:host")}')
            time.sleep(0.2)

    def boot_vtpm_server(self, host: str, extra_specs=None):
        """Boot the self-checking vTPM guest on *host*; return the server
        and its first check line."""
        flavor_id = self.create_vtpm_flavor(extra_specs)
        started = time.monotonic()
        server = self.admin_api.post_server({'server': self._build_server(
            image_uuid=self.image_id, flavor_id=flavor_id,
            networks='none', host=host)})
        server = self.wait_for_server(server, host=host)
        self.timed('boot through the API to ACTIVE', started)
        line = self.wait_for_checks(server)[-1]
        self.timed('boot through the API to the guest vTPM check', started)
        return server, line

    def console(self, server) -> str:
        """The guest's console through ``os-getConsoleOutput``."""
        return self.admin_api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output']

    def wait_for_checks(self, server, count=1, after=0, timeout=TIMEOUT):
        """Wait for *count* check lines above sequence *after* in the
        console output; return all check lines."""
        deadline = time.monotonic() + timeout
        while True:
            lines = guest.parse_console(self.console(server))
            if len([line for line in lines if line.seq > after]) >= count:
                return lines
            if time.monotonic() > deadline:
                tail = '\n'.join(self.console(server).splitlines()[-10:])
                self.fail(f'no vTPM check line after seq {after} within '
                          f'{timeout} s; console tail:\n{tail}')
            time.sleep(0.5)

    def _live_migrations(self, server) -> list[dict]:
        return [m for m in self.admin_api.api_get(
            '/os-migrations').body['migrations']
            if m['instance_uuid'] == server['id']
            and m['migration_type'] == 'live-migration']

    def live_migrate(self, server, host, expected='completed',
                     timeout=TIMEOUT):
        """``os-migrateLive`` to *host*; wait for the migration to reach
        *expected* (or another final state) and return it."""
        earlier = {m['id'] for m in self._live_migrations(server)}
        started = time.monotonic()
        self.admin_api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': host, 'block_migration': 'auto'}})
        final = {'completed', 'error', 'failed', 'cancelled'}
        deadline = time.monotonic() + timeout
        while True:
            new = [m for m in self._live_migrations(server)
                   if m['id'] not in earlier]
            latest = max(new, key=lambda m: m['id'], default=None)
            if latest is not None and latest['status'] in final:
                break
            if time.monotonic() > deadline:
                self.fail(f'live migration not finished within {timeout} '
                          f's: {latest}')
            time.sleep(0.2)
        self.timed(f'os-migrateLive to {host} until {latest["status"]}',
                   started)
        self.assertEqual(expected, latest['status'], latest)
        return latest

    migration_uuid = nova_base.VtpmServersBase.migration_uuid

    def wait_for_live_migration_task(self, server, after, timeout=TIMEOUT):
        """Wait until the source compute's live-migration task that comes
        after the first *after* ones (``len(self.migration_tasks.ended)``
        before the migration was requested) is over; return how it ended
        (``'returned'`` or the name of the exception it raised) and the
        server then.

        After a failed or cancelled libvirt migration Nova 34 first rolls
        back (the migration turns ``failed``/``cancelled``), then its
        ``_do_live_migration`` gets the libvirt error back and sets the
        migration to ``error`` and the instance to ERROR: only the end of
        that task is a stable state to look at.
        """
        deadline = time.monotonic() + timeout
        while len(self.migration_tasks.ended) <= after:
            if time.monotonic() > deadline:
                self.fail(f'no live-migration task ended within {timeout} s')
            time.sleep(0.2)
        migration, outcome = self.migration_tasks.ended[after]
        self.assertEqual(self.migration_uuid(server), migration)
        return outcome, self.admin_api.get_server(server['id'])

    # -- what the daemons hold ---------------------------------------------

    def domains(self, hostname: str) -> list[str]:
        """UUIDs of every domain (active or defined) on a daemon."""
        return sorted(d.UUIDString() for d in
                      self.daemon(hostname).conn.listAllDomains())

    def secrets(self, hostname: str) -> dict[str, dict]:
        """secret UUID -> {'ephemeral', 'private', 'usage'} on a daemon
        (``virsh secret-list``)."""
        return {uuid: {'ephemeral': info.ephemeral,
                       'private': info.private, 'usage': info.usage_id}
                for uuid, info in introspect.secret_list(
                    self.daemon(hostname).conn).items()}

    def persistent_secret_files(self, hostname: str) -> list[str]:
        """Files of persistent secrets in the daemon's /etc/libvirt."""
        return introspect.persistent_secret_files(self.daemon(hostname))

    def swtpm_state(self, hostname: str, server) -> bool:
        """Whether the daemon keeps swtpm state for the server."""
        return os.path.exists(self.daemon(hostname).swtpm_state_dir(
            server['id']))

    def instance(self, server):
        return objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'])


class MigrationTasks(fixtures.Fixture):
    """Records how each source compute's live-migration task ended.

    Wraps (does not replace) ``ComputeManager._do_live_migration``, the
    task Nova's ``live_migration`` RPC hands to a thread pool (the
    instance action event ``compute_live_migration`` ends when it is
    handed over, not when it is done).
    """

    def _setUp(self) -> None:
        import nova.compute.manager as manager_mod
        #: (migration UUID, 'returned' or the exception's class name), in
        #: the order the tasks ended.
        self.ended: list[tuple[str, str]] = []
        real = manager_mod.ComputeManager._do_live_migration

        def do_live_migration(manager, context, dest, instance,
                              block_migration, migration, migrate_data):
            outcome = 'returned'
            try:
                return real(manager, context, dest, instance,
                            block_migration, migration, migrate_data)
            except Exception as exc:
                outcome = type(exc).__name__
                raise
            finally:
                self.ended.append((migration.uuid, outcome))

        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.manager.ComputeManager._do_live_migration',
            do_live_migration))


class SecretSpy(fixtures.Fixture):
    """Asks the daemon about every libvirt secret Nova or the plugin
    defines.

    Wraps (does not replace) ``nova.virt.libvirt.host.Host.create_secret``:
    right after the real call it asks the daemon itself, over the test's
    own connection (``virsh secret-dumpxml`` and ``secret-get-value``), how
    the secret is kept and whether libvirt gives its value back.

    :param daemons: the daemons, to find a compute's one by its URI.
    """

    def __init__(self, daemons: daemons_mod.LibvirtDaemons) -> None:
        super().__init__()
        self.daemons = daemons

    def _setUp(self) -> None:
        import nova.virt.libvirt.host as host_mod
        self.created: list[dict] = []
        real = host_mod.Host.create_secret

        def create_secret(host, usage_type, usage_id, *args, **kwargs):
            secret = real(host, usage_type, usage_id, *args, **kwargs)
            self._record(host._uri, secret.UUIDString())
            return secret

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.create_secret', create_secret))

    def _record(self, uri: str, secret_uuid: str) -> None:
        daemon = next(d for d in self.daemons.daemons.values()
                      if d.uri == uri)
        info = introspect.secret_info(daemon.conn, secret_uuid)
        refusal = introspect.value_refusal(daemon.conn, secret_uuid)
        self.created.append({'uri': uri, 'host': daemon.name,
                             'usage': info.usage_id, 'uuid': secret_uuid,
                             'ephemeral': info.ephemeral,
                             'private': info.private,
                             'readable': refusal is None,
                             'refusal': refusal})


class RealLibvirtPluginBase(nova_base.PluginDriverMixin, RealLibvirtTestBase):
    """The computes run this plugin's driver (``compute_driver =
    vtpm_migration_ext.driver.LibvirtDriver``) on real daemons.

    Each host gets its own swtpm host TPM and protocol engine from
    ``tests.nova.host_tpms`` and ``tests.nova.engines`` (through
    :class:`tests.nova.base.PluginDriverMixin`); every RPC message and
    log record is captured to check that the vTPM secret never shows.
    """

    ATTESTED_SPECS = {'vtpm_migration:attested': 'required'}

    def setUp(self):
        self.rpc = self.useFixture(vtpm_fixtures.MessageCapture())
        super().setUp()
        self.logs = self.useFixture(vtpm_fixtures.DebugLogCapture())
        self.secret_spy = self.useFixture(SecretSpy(self.daemons))

    def boot_vtpm_server(self, host, extra_specs=None):
        specs = dict(self.ATTESTED_SPECS)
        specs.update(extra_specs or {})
        return super().boot_vtpm_server(host, specs)

    def secret_digest(self, hostname: str, server) -> str | None:
        """SHA-256 of the vTPM secret a host can give the guest (``None``
        if none): compared instead of the secret, so that a failing
        assertion never prints key material."""
        secret = self.held_secret(hostname, server)
        return None if secret is None else hashlib.sha256(secret).hexdigest()

    def libvirt_secret(self, hostname: str, server) -> bytes | None:
        """The value of the instance's vTPM secret that the host's daemon
        gives back (``None``: no such secret, or a private one)."""
        return introspect.vtpm_secret_value(self.daemon(hostname).conn,
                                            server['id'])

    def defined_secrets(self, hostname: str) -> list[dict]:
        uri = self.daemon(hostname).uri
        return [s for s in self.secret_spy.created if s['uri'] == uri]

    # Reused from the fake-libvirt Nova tests (they only need
    # self.engines, self.host_tpms, self.rpc, self.logs and Nova's API).
    make_untrusted = nova_base.VtpmServersBase.make_untrusted
    keys = nova_base.VtpmServersBase.keys
    rows = nova_base.VtpmServersBase.rows
    records = nova_base.VtpmServersBase.records
    held_secret = nova_base.VtpmServersBase.held_secret
    server_host = nova_base.VtpmServersBase.server_host
    action_event_details = nova_base.VtpmServersBase.action_event_details
    assert_no_leak = nova_base.VtpmServersBase.assert_no_leak
