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

"""What a user of the demos sees, and how a demo scenario runs.

:class:`ApiViews` is mixed into a demo scenario (a Nova functional test
with ``admin_api`` whose ``_scenario`` records checks on a
:class:`tools.reporting.Reporter` as ``out``): ``openstack server
show``-style fields, ``openstack server migration list``-style rows, a
live migration whose server and migration states are printed as they
change, and ``test_scenario``, which fails if a check failed. :func:`run`
runs a scenario from the command line.
"""

import io
import logging
import sys
import time
import typing as ty
import unittest

from nova import utils

from tools import reporting

TERMINAL = ('completed', 'error', 'failed', 'cancelled')
# The microversion of the displayed views: flavor extra specs in server
# show (2.47), migration UUIDs (2.59), action event details (2.84).
SHOW_MICROVERSION = '2.84'
SERVER_FIELDS = (('status', 'status'),
                 ('OS-EXT-SRV-ATTR:host', 'host'),
                 ('OS-EXT-STS:task_state', 'task_state'),
                 ('OS-EXT-STS:vm_state', 'vm_state'))
MIGRATION_COLUMNS = ('Id', 'UUID', 'Source Compute', 'Dest Compute',
                     'Dest Host', 'Status', 'Type')


class ApiViews:
    """``openstack``-style views for a demo scenario (a mixin)."""

    #: Where the report goes; :func:`run` sets the console.
    stream: ty.TextIO | None = None
    admin_api: ty.Any
    out: reporting.Reporter
    rpc: ty.Any
    logs: ty.Any

    def start_report(self) -> None:
        """Report to :attr:`stream` (kept in memory when it is unset)."""
        self.out = reporting.Reporter(self.stream or io.StringIO())

    def test_scenario(self) -> None:
        """Run ``_scenario``, print the summary; fail if a check failed."""
        try:
            self._scenario()  # type: ignore[attr-defined]
        except Exception as exc:
            self.out.check('the scenario ran to its end', False,
                           f'{type(exc).__name__}: {exc}'[:200])
        self.out.summary()
        failed = [c.name for c in self.out.checks if not c.passed]
        self.assertTrue(  # type: ignore[attr-defined]
            self.out.ok, f'demo checks failed: {failed}')

    def _show(self, server: dict[str, ty.Any]) -> dict[str, ty.Any]:
        with utils.temporary_mutation(self.admin_api,
                                      microversion=SHOW_MICROVERSION):
            return ty.cast(dict[str, ty.Any],
                           self.admin_api.get_server(server['id']))

    def _migrations(self, server: dict[str, ty.Any]
                    ) -> list[dict[str, ty.Any]]:
        with utils.temporary_mutation(self.admin_api,
                                      microversion=SHOW_MICROVERSION):
            body = self.admin_api.api_get(
                f'/os-migrations?instance_uuid={server["id"]}').body
        return sorted((m for m in body['migrations']
                       if m['instance_uuid'] == server['id']),
                      key=lambda m: m['id'])

    def server_show(self, server: dict[str, ty.Any]) -> None:
        """Print ``openstack server show``-style fields."""
        shown = self._show(server)
        rows = [{'Field': label, 'Value': shown.get(key)}
                for key, label in SERVER_FIELDS]
        specs = shown.get('flavor', {}).get('extra_specs', {})
        rows.append({'Field': 'flavor extra_specs',
                     'Value': ', '.join(f'{k}={v}' for k, v in
                                        sorted(specs.items()))})
        self.out.info(f'$ openstack server show {server["id"]}')
        self.out.table(rows, ('Field', 'Value'))

    def migration_list(self, server: dict[str, ty.Any]) -> None:
        """Print ``openstack server migration list``-style rows."""
        self.out.info(f'$ openstack server migration list --server '
                      f'{server["id"]}')
        rows = [{'Id': m['id'], 'UUID': m['uuid'],
                 'Source Compute': m['source_compute'],
                 'Dest Compute': m['dest_compute'],
                 'Dest Host': m['dest_host'], 'Status': m['status'],
                 'Type': m['migration_type']}
                for m in self._migrations(server)]
        self.out.table(rows, MIGRATION_COLUMNS)

    def watch_live_migration(self, server: dict[str, ty.Any], host: str,
                             timeout: float = 60,
                             until: ty.Callable[[], bool] | None = None,
                             ) -> tuple[str, dict[str, ty.Any]]:
        """POST ``os-migrateLive`` to *host*; print states as they change
        until the migration is final and the server has no task (and
        *until*, if given, holds).

        :returns: the migration's final status and the server view.
        """
        before = len(self._migrations(server))
        self.out.info(f'$ openstack server migrate --live-migration '
                      f'--host {host} {server["id"]}')
        self.admin_api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': host, 'block_migration': 'auto'}})
        seen = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self._show(server)
            migrations = self._migrations(server)
            status = (migrations[-1]['status']
                      if len(migrations) > before else '-')
            state = (shown['status'], shown['OS-EXT-SRV-ATTR:host'],
                     shown['OS-EXT-STS:task_state'], status)
            if state != seen:
                self.out.info('server status={} host={} task_state={} | '
                              'migration status={}'.format(*state))
                seen = state
            if (status in TERMINAL and state[2] is None
                    and (until is None or until())):
                return status, shown
            time.sleep(0.05)
        raise AssertionError(f'live migration to {host} did not finish in '
                             f'{timeout} s')

    def no_leak(self, secret: bytes) -> tuple[bool, str]:
        """Whether the secret stayed off the bus and out of the logs, and
        how much was searched (``assert_no_leak`` as a check)."""
        try:
            self.assert_no_leak(secret)  # type: ignore[attr-defined]
        except AssertionError as exc:
            return False, str(exc).splitlines()[0]
        return True, (f'{len(self.rpc.messages)} RPC messages and '
                      f'{len(self.logs.records)} log records searched')


def run(scenario: type[ApiViews], label: str) -> int:
    """Run *scenario*'s ``test_scenario``, printing its report; return 0
    if every check passed (the failure and Nova's logs go to stderr)."""
    scenario.stream = sys.stdout
    # Nova's services log their thread pools' shutdown after
    # the test's log capture is gone; that is noise in a demo.
    logging.getLogger('nova.thread_pool_factory').setLevel(logging.WARNING)
    suite = unittest.TestSuite([scenario('test_scenario')])  # type: ignore
    runner_out = io.StringIO()
    result = unittest.TextTestRunner(stream=runner_out,
                                     verbosity=0).run(suite)
    if result.skipped:
        print(f'{label}: skipped: {result.skipped[0][1]}')
        return 1
    if not result.wasSuccessful():
        sys.stderr.write(runner_out.getvalue())
        print(f'{label}: FAILED')
        return 1
    return 0
