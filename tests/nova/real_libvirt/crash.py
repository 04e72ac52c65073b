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

"""The destination's libvirtd dies during the QEMU migration.

A step of the real-libvirt demo (:mod:`.demo_scenario`): the server runs
on host-b; ``os-migrateLive`` to host-a with the migration bandwidth at
1 MiB/s; once the key has moved (PENDING on host-a, LOCKED on host-b) and
QEMU is streaming memory, host-a's libvirtd gets SIGKILL. What happens,
as seen on libvirt 9.0 and Nova 34:

* libvirt on host-b loses its peer connection and cancels the migration
  ("Lost connection to destination host"); host-a's incoming QEMU gets
  no more stream and exits, and its swtpm with it; the guest keeps
  running on host-b.
* Nova's libvirt driver sees the job failed and rolls back: the plugin's
  source rollback aborts the key move on both hosts (the key is ACTIVE
  on host-b again, destroyed on host-a); the rollback RPC to host-a then
  fails in Nova's own cleanup (``HypervisorUnavailable``), after the
  plugin's part ran.
* Nova 34 then re-raises libvirt's error from ``migrateToURI3`` in the
  source's ``_do_live_migration``, which sets the migration to ``error``
  and the instance to ERROR although the guest runs on host-b (Nova does
  this for every failed libvirt migration, an operator's abort too). An
  operator resets the state (``openstack server set --state active``).
"""

import json
import time
import typing as ty

import libvirt
import libvirt_qemu

from tests.nova.real_libvirt import base
from tests.support.libvirt import daemons as daemons_mod
from tests.support.libvirt import guest
from tests.support.libvirt import introspect

LOST_PEER = 'Lost connection to destination host'


class DestinationDaemonCrash:
    """Run the step on a :class:`.demo_scenario.RealLibvirtDemo`.

    :param demo: the running demo scenario (a Nova functional test).
    :param server: the server, on host-b.
    :param before: the guest's check line from its first boot.
    """

    def __init__(self, demo: ty.Any, server: dict[str, ty.Any],
                 before: guest.CheckLine) -> None:
        self.t = demo
        self.out = demo.out
        self.server = server
        self.before = before

    def run(self) -> None:
        t, out, server = self.t, self.out, self.server
        out.heading('Live-migrate host-b -> host-a; host-a\'s libvirtd dies '
                    'during the QEMU migration')
        # Slow enough to kill the destination's daemon mid-stream.
        t.flags(live_migration_bandwidth=1, group='libvirt')
        out.info('[libvirt] live_migration_bandwidth = 1 (MiB/s)')
        mark = t.phases.mark()
        tasks = len(t.migration_tasks.ended)
        out.info(f'$ openstack server migrate --live-migration --host '
                 f'host-a {server["id"]}')
        t.admin_api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': 'host-a', 'block_migration': 'auto'}})
        with out.step('until the key moved and QEMU streams the guest\'s '
                      'memory to host-a', 'crash'):
            streamed = self.wait_until_streaming()
        moving = t.show_custody()
        out.info(f'QEMU migration on host-b: {streamed} bytes of memory '
                 'sent so far')
        params = self.migration_parameters()
        out.info('host-b QEMU query-migrate-parameters: tls-creds='
                 f'{params.get("tls-creds")!r} tls-hostname='
                 f'{params.get("tls-hostname")!r}')
        out.check('QEMU streams the memory with native TLS, checking the '
                  'certificate for host-a', bool(params.get('tls-creds'))
                  and params.get('tls-hostname') == 'host-a')
        out.check('the key has moved: PENDING on host-a, LOCKED on host-b',
                  moving == {'host-a': {server['id']: 'PENDING'},
                             'host-b': {server['id']: 'LOCKED'},
                             'host-c': {}})
        daemon = t.daemon('host-a')
        namespace = daemon.namespace
        assert daemon.process is not None and namespace is not None
        with out.step(f'kill -9 {daemon.process.pid} (libvirtd of host-a)',
                      'crash'):
            daemon.kill()
        with out.step('until Nova\'s live-migration task on host-b is over',
                      'crash'):
            result, shown = t.wait_for_live_migration_task(server, tasks)
        t.flags(live_migration_bandwidth=0, group='libvirt')
        seq = t.latest_seq(server)
        t.server_show(server)
        t.migration_list(server)
        out.table(t.phases.rows(mark), ('phase', 'step', 'ms'))
        self.check_libvirt(namespace)
        self.check_nova(result, shown)
        self.check_custody(seq)
        self.check_restarted_destination()
        self.reset_state()

    def wait_until_streaming(self) -> int:
        """Wait until host-a holds the key PENDING and has the incoming
        domain, and QEMU on host-b has sent memory; return how much."""
        t, uuid = self.t, self.server['id']
        source = t.daemon('host-b').conn.lookupByUUIDString(uuid)
        deadline = time.monotonic() + base.TIMEOUT
        while time.monotonic() < deadline:
            if (t.keys('host-a') == {uuid: 'PENDING'}
                    and t.domains('host-a') == [uuid]):
                processed = source.jobStats().get('memory_processed', 0)
                if processed > 0:
                    return int(processed)
            time.sleep(0.1)
        raise AssertionError('the QEMU migration to host-a did not start '
                             f'within {base.TIMEOUT} s')

    def migration_parameters(self) -> dict[str, ty.Any]:
        """The source QEMU's migration parameters (QMP
        ``query-migrate-parameters``, through libvirt)."""
        dom = self.t.daemon('host-b').conn.lookupByUUIDString(
            self.server['id'])
        reply = libvirt_qemu.qemuMonitorCommand(
            dom, '{"execute": "query-migrate-parameters"}', 0)
        return dict(json.loads(reply)['return'])

    def check_libvirt(self, namespace: str) -> None:
        t, out = self.t, self.out
        with open(t.daemon('host-b').daemon_log, errors='replace') as f:
            lost = [line for line in f if LOST_PEER in line]
        out.info(f'host-b libvirtd.log: {lost[-1].strip() if lost else "-"}')
        out.check('libvirt on host-b lost its peer and cancelled the '
                  'migration', bool(lost))
        deadline = time.monotonic() + 10
        left = daemons_mod.processes_in_namespace(namespace)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = daemons_mod.processes_in_namespace(namespace)
        out.check('host-a\'s incoming QEMU and its swtpm exited with the '
                  'stream', left == [], str(left))

    def check_nova(self, result: str, shown: dict[str, ty.Any]) -> None:
        t, out, server = self.t, self.out, self.server
        status = t._migrations(server)[-1]['status']
        mid = t.migration_uuid(server)
        rows = {h: t.rows(h).get(mid) for h in ('host-a', 'host-b')}
        out.info(f'protocol journals for {mid}: {rows}')
        out.check('both hosts aborted the key move',
                  rows == {'host-a': ('destination', 'ABORTED'),
                           'host-b': ('source', 'ABORTED')})
        # Nova 34 does this after any failed libvirt migration: its
        # _do_live_migration gets libvirt's error back after the rollback.
        out.check('Nova rolled back, then set the migration to error and '
                  'the server to ERROR, on host-b',
                  (result, status, shown['status'],
                   shown['OS-EXT-SRV-ATTR:host'])
                  == ('libvirtError', 'error', 'ERROR', 'host-b'),
                  f'{result} {status} {shown["status"]}')

    def check_custody(self, seq: int) -> None:
        t, out, server = self.t, self.out, self.server
        custody = t.show_custody()
        running = [h for h in ('host-a', 'host-b')
                   if t.daemon(h).alive() and server['id'] in [
                       d.UUIDString() for d in t.daemon(h).conn.listAllDomains(
                           libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]]
        after = t.wait_for_checks(server, count=1, after=seq)[-1]
        t.show_check(after, 'host-b')
        out.check('exactly one usable key, on host-b, where the guest runs',
                  custody == {'host-a': {}, 'host-b': {server['id']:
                                                       'ACTIVE'},
                              'host-c': {}}
                  and running == ['host-b']
                  and t.secret_digest('host-b', server) == t.digest
                  and t.secret_digest('host-a', server) is None,
                  f'guest runs on {running}')
        out.check('the guest keeps its vTPM on host-b',
                  guest.mismatches(self.before, after) == [])

    def check_restarted_destination(self) -> None:
        t, out, server = self.t, self.out, self.server
        with out.step('restart host-a\'s libvirtd until it has reconnected '
                      'to its domains', 'crash'):
            t.daemon('host-a').start()
            # libvirtd reconnects to the domains of its status files in
            # threads after it answers; the incoming domain's QEMU is gone,
            # so it stops that domain and removes it with its vTPM state.
            deadline = time.monotonic() + base.TIMEOUT
            while (t.domains('host-a') or t.swtpm_state('host-a', server)
                   ) and time.monotonic() < deadline:
                time.sleep(0.1)
        holds = {'domains': t.domains('host-a'),
                 'secrets': t.secrets('host-a'),
                 'secret files': t.persistent_secret_files('host-a'),
                 'swtpm state': t.swtpm_state('host-a', server),
                 'processes': introspect.namespace_programs(
                     t.daemon('host-a'))}
        out.info(f'host-a after the restart: {holds}')
        out.check('host-a holds no domain, libvirt secret, vTPM state or '
                  'key of the instance',
                  holds == {'domains': [], 'secrets': {}, 'secret files': [],
                            'swtpm state': False, 'processes': ['libvirtd']}
                  and t.keys('host-a') == {}
                  and t.held_secret('host-a', server) is None)

    def reset_state(self) -> None:
        t, out, server = self.t, self.out, self.server
        out.info(f'$ openstack server set --state active {server["id"]}')
        seq = t.latest_seq(server)
        t.admin_api.post_server_action(
            server['id'], {'os-resetState': {'state': 'active'}})
        shown = t._show(server)
        after = t.wait_for_checks(server, count=1, after=seq)[-1]
        out.check('after the operator\'s reset the server is ACTIVE on '
                  'host-b, its guest still checking its vTPM',
                  (shown['status'], shown['OS-EXT-SRV-ATTR:host'])
                  == ('ACTIVE', 'host-b')
                  and guest.mismatches(self.before, after) == [])
