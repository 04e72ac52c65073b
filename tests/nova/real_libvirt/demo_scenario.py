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

"""``make demo``: Nova live-migrates a vTPM guest on real libvirt daemons.

Nova's own services run in-process (nova-api, conductor, scheduler,
placement: :class:`~tests.nova.real_libvirt.base.RealLibvirtTestBase`);
three nova-computes run this plugin's driver, each on its own libvirtd 9.0
with real QEMU (TCG) guests and its own swtpm host TPM. host-c's PCR 7 is
extended, so it is outside the trust policy. Through Nova's API:

1. a server boots on host-a from a host-secured vTPM flavor with
   ``vtpm_migration:attested=required``; its guest writes an NV nonce into
   its vTPM, extends PCR 16 with it and reads its EK, and prints them on
   its console every second;
2. ``os-migrateLive`` to host-b: the phases with their times, then the
   guest itself reads the same values back on host-b; journals, key
   custody, libvirt secrets (asked of the daemons), nothing left on host-a;
3. ``os-migrateLive`` to host-c: refused at the pre-check, the guest
   keeps running on host-b, host-c never had a domain, secret or key;
4. a hard reboot on host-b: the vault opens the secret, the guest
   restarts with its vTPM intact;
5. ``os-migrateLive`` back to host-a, whose libvirtd is killed during the
   QEMU migration (after the key moved): exactly one usable key, on
   host-b where the guest runs.

Every claim is a PASS/FAIL check; :func:`main` exits non-zero if one
fails. ``tools/demo_launcher.py`` (``make demo``) runs :func:`main` when
this machine can run libvirt daemons. The module name does not start with
``test_``; ``test_demo_scenario.py`` runs the scenario in the suite.
"""

import hashlib
import sys
import time
import typing as ty

from tests.nova import demo_views
from tests.nova.real_libvirt import base
from tests.nova.real_libvirt import crash
from tests.nova.real_libvirt import phases
from tests.support.libvirt import guest
from tests.support.libvirt import introspect
from tests.support.libvirt import migration_tls

HOSTS = ('host-a', 'host-b', 'host-c')
TRAIT = 'CUSTOM_VTPM_MIGRATION_ATTESTED'
MIB = 1024 * 1024


def _short(value: str | None) -> str:
    return '-' if value is None else value[:16] + '...'


class RealLibvirtDemo(demo_views.ApiViews, base.RealLibvirtPluginBase):
    """The demo scenario as one Nova functional test."""

    def setUp(self) -> None:
        super().setUp()
        self.start_report()
        self.phases = self.useFixture(phases.PhaseTimer())

    def timed(self, label: str, started: float) -> None:
        self.out.info(f'{label}: {time.monotonic() - started:.1f} s')

    # -- views -------------------------------------------------------------

    def show_check(self, line: guest.CheckLine, host: str) -> None:
        """Print a guest self-check line as its console shows it."""
        self.out.info(f'guest console (os-getConsoleOutput, {host}): '
                      f'{guest.LINE_TAG} seq={line.seq} nv={_short(line.nv)}'
                      f' pcr16={_short(line.pcr16)} ek={_short(line.ek)} '
                      f'rc={"ok" if line.ok else ",".join(line.rc)}')

    def custody(self) -> dict[str, dict[str, str]]:
        """Host -> instance -> key state (destroyed keys left out)."""
        return {host: self.keys(host) for host in HOSTS}

    def show_custody(self) -> dict[str, dict[str, str]]:
        custody = self.custody()
        self.out.info('key custody (engines\' key stores, destroyed keys '
                      f'left out): {custody}')
        return custody

    def latest_seq(self, server: dict[str, ty.Any]) -> int:
        lines = guest.parse_console(self.console(server))
        return lines[-1].seq if lines else 0

    def check_secrets_private(self, records: list[dict[str, ty.Any]],
                              secret_uuid: str, where: str) -> None:
        """Check the libvirt secrets Nova defined: the instance's,
        ephemeral and private, and the daemon refuses to give its value."""
        for record in records:
            self.out.info(
                f'{record["host"]}: virsh secret-dumpxml {record["uuid"]}: '
                f'ephemeral={record["ephemeral"]} private='
                f'{record["private"]}; secret-get-value -> '
                f'{record["refusal"] or "VALUE RETURNED"}')
        self.out.check(
            f'{where}: only ephemeral, private libvirt secrets; the daemon '
            'refuses secret-get-value',
            bool(records) and all(
                r['uuid'] == secret_uuid and r['ephemeral'] and r['private']
                and not r['readable'] for r in records),
            f'{len(records)} secret(s) defined')

    def check_no_persistent_secrets(self) -> None:
        lists = {h: self.secrets(h) for h in HOSTS}
        files = {h: self.persistent_secret_files(h) for h in HOSTS}
        self.out.info(f'virsh secret-list: {lists}; persistent secret files:'
                      f' {files}')
        self.out.check('no libvirt secret exists on any host (none '
                       'persistent, none left defined)',
                       all(v == {} for v in lists.values())
                       and all(v == [] for v in files.values()))

    # -- the scenario --------------------------------------------------------

    def _scenario(self) -> None:
        self.out.heading('nova-vtpm-migration demo: Nova live-migrates a '
                         'vTPM guest through the plugin on real libvirt')
        self._start_hosts()
        server, before = self._boot()
        secret = self.held_secret('host-a', server)
        if not self.out.check(
                'the vTPM secret is sealed in host-a\'s vault',
                self.engines.adapters['host-a'].holds_secret(server['id'])
                and secret is not None):
            return
        assert secret is not None
        self.digest = hashlib.sha256(secret).hexdigest()
        self._migrate_a_to_b(server, before)
        self._refused_b_to_c(server, before)
        self._hard_reboot_on_b(server, before)
        crash.DestinationDaemonCrash(self, server, before).run()
        self._key_material(secret)

    def _start_hosts(self) -> None:
        out = self.out
        out.heading('Three compute hosts: a real libvirtd, nova-compute with '
                    'the plugin\'s driver and an swtpm host TPM each')
        with out.step('start host-a, host-b, host-c (host-c: PCR 7 '
                      'extended, outside the trust policy)', 'setup'):
            self.make_untrusted('host-c')
            for host in HOSTS:
                self.start_compute(host)
        rows = []
        for host in HOSTS:
            daemon = self.daemon(host)
            traits = self._get_provider_traits(
                self._get_provider_uuid_by_host(host))
            rows.append({'host': host, 'libvirtd pid': daemon.process.pid
                         if daemon.process else '-',
                         'host name': daemon.conn.getHostname(),
                         'migration TLS cert': migration_tls.server_name(
                             daemon.tls_dir()),
                         TRAIT: 'reported' if TRAIT in traits else 'no'})
        out.table(rows, ('host', 'libvirtd pid', 'host name',
                         'migration TLS cert', TRAIT))
        out.check('host-a and host-b attest themselves, host-c does not',
                  [r[TRAIT] for r in rows] == ['reported', 'reported', 'no'])

    def _boot(self) -> tuple[dict[str, ty.Any], guest.CheckLine]:
        out = self.out
        out.heading('Boot a server from a host-secured vTPM flavor')
        with out.step('POST /servers on host-a until the guest\'s first '
                      'vTPM self-check', 'boot'):
            server, before = self.boot_vtpm_server('host-a')
        self.server_show(server)
        self.show_check(before, 'host-a')
        out.check('server ACTIVE on host-a',
                  self.server_host(server) == 'host-a'
                  and self.domains('host-a') == [server['id']])
        out.check('the guest wrote its vTPM: NV nonce, PCR 16 = '
                  'sha256(0*32 || nonce), EK; every TPM command succeeded',
                  before.ok and before.pcr_consistent)
        self.secret_uuid = self.instance(server).system_metadata[
            'vtpm_secret_uuid']
        self.check_secrets_private(self.defined_secrets('host-a'),
                                   self.secret_uuid, 'boot on host-a')
        return server, before

    def _migrate_a_to_b(self, server: dict[str, ty.Any],
                        before: guest.CheckLine) -> None:
        out = self.out
        out.heading('Live-migrate host-a -> host-b (os-migrateLive)')
        mark = self.phases.mark()
        defined = len(self.secret_spy.created)
        with out.step('live migration to host-b', 'host-a -> host-b'):
            status, shown = self.watch_live_migration(
                server, 'host-b', timeout=base.TIMEOUT)
        moved_at = self.latest_seq(server)
        self.server_show(server)
        self.migration_list(server)
        rows = self.phases.rows(mark)
        out.table(rows, ('phase', 'step', 'ms'))
        job = phases.completed_job(self.daemon('host-b').conn, server['id'])
        out.info(f'libvirt on host-b (virsh domjobinfo --completed): '
                 f'{job.get("time_elapsed", "-")} ms, downtime '
                 f'{job.get("downtime", "-")} ms, '
                 f'{job.get("memory_processed", 0) / MIB:.1f} MiB of memory')
        out.check('migration to host-b completed', status == 'completed',
                  status)
        out.check('server ACTIVE on host-b, its domain and vTPM state '
                  'there', (shown['status'], shown['OS-EXT-SRV-ATTR:host'])
                  == ('ACTIVE', 'host-b')
                  and self.domains('host-b') == [server['id']]
                  and self.swtpm_state('host-b', server))
        out.check('phases 1, 2 and 3 ran: attestation, key transfer, QEMU '
                  'migration, commit',
                  len(rows) == len(phases.PHASES)
                  and not any('failed' in r['step'] for r in rows))
        after = self.wait_for_checks(server, count=1, after=moved_at)[-1]
        self.show_check(after, 'host-b')
        out.check('the guest reads back on host-b what it wrote on host-a '
                  '(NV nonce, PCR 16, EK)',
                  guest.mismatches(before, after) == [],
                  '; '.join(guest.mismatches(before, after))[:80])
        mid = self.migration_uuid(server)
        out.info(f'protocol journal host-a: {self.rows("host-a")}')
        out.info(f'protocol journal host-b: {self.rows("host-b")}')
        out.check('journal on both hosts says COMMITTED',
                  self.rows('host-a') == {mid: ('source', 'COMMITTED')}
                  and self.rows('host-b') == {mid: ('destination',
                                                    'COMMITTED')})
        kept = self.records('host-b', mid)
        out.info(f'signed records kept on host-b: {sorted(kept)}')
        out.check('host-b keeps the source-signed manifest and its own '
                  'commit receipt', {'manifest', 'receipt_committed'}
                  <= kept)
        custody = self.show_custody()
        out.check('the key is only on host-b, and it opens the same secret',
                  custody == {'host-a': {}, 'host-b': {server['id']:
                                                       'ACTIVE'},
                              'host-c': {}}
                  and self.secret_digest('host-b', server) == self.digest
                  and self.secret_digest('host-a', server) is None)
        self.check_secrets_private(self.secret_spy.created[defined:],
                                   self.secret_uuid, 'incoming on host-b')
        self.check_no_persistent_secrets()
        swtpm = [introspect.read_proc(pid, 'cmdline').replace(b'\0', b' ')
                 for pid in introspect.program_pids(self.daemon('host-b'),
                                                    'swtpm')]
        out.info('host-b swtpm key options: ' + ', '.join(
            w.decode() for line in swtpm for w in line.split()
            if b'pwdfd=' in w))
        out.check('host-b\'s swtpm gets the key by file descriptor',
                  len(swtpm) == 1 and swtpm[0].count(b'pwdfd=') == 2)
        left = {'domains': self.domains('host-a'),
                'swtpm state': self.swtpm_state('host-a', server),
                'keys': self.keys('host-a'),
                'secret': self.held_secret('host-a', server) is not None,
                'processes': introspect.namespace_programs(
                    self.daemon('host-a'))}
        out.info(f'host-a: {left}')
        out.check('nothing of the instance is left on host-a',
                  left == {'domains': [], 'swtpm state': False, 'keys': {},
                           'secret': False, 'processes': ['libvirtd']})

    def _refused_b_to_c(self, server: dict[str, ty.Any],
                        before: guest.CheckLine) -> None:
        out = self.out
        out.heading('Live-migrate host-b -> host-c (outside the policy)')
        methods = len(self.rpc.methods())
        defined = len(self.secret_spy.created)
        mark = self.phases.mark()
        with out.step('live migration to host-c', 'host-b -> host-c'):
            status, shown = self.watch_live_migration(
                server, 'host-c', timeout=base.TIMEOUT)
        seq = self.latest_seq(server)
        self.migration_list(server)
        out.table(self.phases.rows(mark), ('phase', 'step', 'ms'))
        details = ''
        if status == 'error':
            details = self.action_event_details(
                server, 'compute_check_can_live_migrate_destination') or ''
        start = details.find('Attestation between')
        out.info('$ openstack server event show: compute_check_can_live_'
                 'migrate_destination: '
                 f'{details[start if start >= 0 else 0:].strip()[:200]}')
        out.check('migration to host-c ends in error', status == 'error',
                  status)
        out.check('the reason is host-c\'s failed attestation',
                  'Attestation between source host host-b and destination '
                  'host host-c failed' in details
                  and 'Policy rule pcr[7] violated' in details)
        out.check('server stays ACTIVE on host-b',
                  (shown['status'], shown['OS-EXT-SRV-ATTR:host'])
                  == ('ACTIVE', 'host-b')
                  and self.domains('host-b') == [server['id']]
                  and self.swtpm_state('host-b', server))
        after = self.wait_for_checks(server, count=1, after=seq)[-1]
        self.show_check(after, 'host-b')
        out.check('the guest keeps running on host-b with its vTPM',
                  guest.mismatches(before, after) == [])
        new = self.rpc.methods()[methods:]
        c_holds = {'domains': self.domains('host-c'),
                   'libvirt secrets defined': [
                       r['uuid'] for r in self.secret_spy.created[defined:]],
                   'swtpm state': self.swtpm_state('host-c', server),
                   'keys': self.keys('host-c'),
                   'secret': self.held_secret('host-c', server) is not None,
                   'processes': introspect.namespace_programs(
                       self.daemon('host-c'))}
        out.info(f'host-c: {c_holds}')
        out.check('host-c never had a domain, a libvirt secret, vTPM state '
                  'or a key; no key was requested',
                  c_holds == {'domains': [], 'libvirt secrets defined': [],
                              'swtpm state': False, 'keys': {},
                              'secret': False, 'processes': ['libvirtd']}
                  and 'send_key' not in new
                  and 'pre_live_migration' not in new)
        out.check('key custody unchanged: usable only on host-b',
                  self.show_custody() == {
                      'host-a': {}, 'host-b': {server['id']: 'ACTIVE'},
                      'host-c': {}}
                  and self.secret_digest('host-b', server) == self.digest)

    def _hard_reboot_on_b(self, server: dict[str, ty.Any],
                          before: guest.CheckLine) -> None:
        out = self.out
        out.heading('Hard reboot on host-b: the vault opens the secret')
        defined = len(self.secret_spy.created)
        with out.step('POST /servers/{id}/action reboot HARD until the '
                      'guest\'s first check', 'hard reboot'):
            self.admin_api.post_server_action(server['id'],
                                              {'reboot': {'type': 'HARD'}})
            self.notifier.wait_for_versioned_notifications(
                'instance.reboot.end', timeout=base.TIMEOUT)
            self.wait_for_server(server, host='host-b')
            lines = self.wait_for_new_boot(server)
        after = lines[-1]
        self.show_check(after, 'host-b')
        out.info(f'this boot\'s NV_ReadPublic, NV_DefineSpace, NV_Write, '
                 f'NV_Read, PCR_Extend: {",".join(after.boot)}')
        self.check_secrets_private(self.secret_spy.created[defined:],
                                   self.secret_uuid, 'hard reboot on host-b')
        out.check('the guest restarted and found its NV index (nothing '
                  'defined or written): swtpm decrypted its kept state',
                  after.boot == (guest.RC_OK, '-', '-', guest.RC_OK,
                                 guest.RC_OK))
        out.check('same NV nonce and EK; PCR 16 extended again with the '
                  'nonce', guest.mismatches(before, after) == [],
                  '; '.join(guest.mismatches(before, after))[:80])
        self.check_no_persistent_secrets()
        out.check('the key stays ACTIVE on host-b only',
                  self.custody() == {'host-a': {}, 'host-b': {
                      server['id']: 'ACTIVE'}, 'host-c': {}})

    def wait_for_new_boot(self, server: dict[str, ty.Any]
                          ) -> list[guest.CheckLine]:
        """The check lines of the guest's latest boot (it counts from 1
        again, and its first NV_ReadPublic succeeded)."""
        deadline = time.monotonic() + base.TIMEOUT
        while True:
            lines = guest.parse_console(self.console(server))
            starts = [i for i, line in enumerate(lines)
                      if line.seq == 1 and line.boot[0] == guest.RC_OK]
            if starts:
                return lines[starts[-1]:]
            if time.monotonic() > deadline:
                raise AssertionError(f'no new boot within {base.TIMEOUT} s:'
                                     f' {lines[-1:]}')
            time.sleep(0.5)

    def _key_material(self, secret: bytes) -> None:
        out = self.out
        out.heading('Where the vTPM secret never was')
        files = {h: introspect.file_leaks(self.daemon(h), secret)
                 for h in HOSTS}
        procs = {h: introspect.process_leaks(self.daemon(h), secret)
                 for h in HOSTS}
        out.check('in no file of any libvirt daemon (configuration, '
                  'secrets, domain and swtpm state, logs)',
                  all(v == {} for v in files.values()), str(files)[:80])
        out.check('on no command line or in no environment of libvirtd, '
                  'QEMU or swtpm', all(v == {} for v in procs.values()),
                  str(procs)[:80])
        ok, detail = self.no_leak(secret)
        out.check('never on the message bus nor in the logs', ok, detail)


def main() -> int:
    """Run the scenario, printing its report; 0 if every check passed."""
    return demo_views.run(RealLibvirtDemo, 'demo')


if __name__ == '__main__':
    sys.exit(main())
