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

"""``make demo-nova``: the demo scenario through Nova's API, in-process.

Real nova-api, conductor, scheduler, placement and three libvirt-driver
computes running the plugin's driver (fake libvirt), each with its own
swtpm host TPM and protocol engine (the harness of
:mod:`tests.nova.base`). host-c's PCR 7 is extended, so it is outside the
trust policy. A vTPM server boots on host-a, live-migrates to host-b
through ``os-migrateLive``, then is asked to go to host-c, which fails
attestation while the server keeps running on host-b. Every claim is a
PASS/FAIL check; :func:`main` exits non-zero if one fails.

The module name does not start with ``test_``, so stestr's discovery does
not pick it up; run it with ``python -m tests.nova.demo_scenario``.
"""

import sys

from nova_vtpm_migration.virt import flavor_policy
from tests.nova import base
from tests.nova import demo_views


class DemoScenario(demo_views.ApiViews, base.VtpmServersBase):
    """The demo scenario as one Nova functional test."""

    def setUp(self) -> None:
        super().setUp()
        self.start_report()

    # -- the scenario --------------------------------------------------------

    def _scenario(self) -> None:
        out = self.out
        out.heading('Three computes, each with its own swtpm host TPM')
        with out.step('start host-a', 'setup'):
            self.start_compute('host-a')

        out.heading('Boot a vTPM server (lands on host-a, the only host)')
        with out.step('POST /servers (flavor with a host-secured vTPM)',
                      'boot'):
            server = self.create_vtpm_server(
                {flavor_policy.ATTESTED_SPEC: 'required'})
        with out.step('start host-b and host-c (host-c: PCR 7 extended)',
                      'setup'):
            self.make_untrusted('host-c')
            self.start_compute('host-b')
            self.start_compute('host-c')
        for host in ('host-a', 'host-b', 'host-c'):
            traits = self._get_provider_traits(self.compute_rp_uuids[host])
            seen = flavor_policy.ATTESTED_TRAIT in traits
            out.info(f'{host}: trait {flavor_policy.ATTESTED_TRAIT} '
                     f'{"reported" if seen else "NOT reported"}')
        self.server = server
        self.server_show(server)
        a_host = self.server_host(server)
        self.src = self.computes[a_host]
        secret = self.held_secret(a_host, server)
        out.check('server ACTIVE on host-a, its vTPM secret sealed to '
                  'host-a\'s TPM', a_host == 'host-a' and secret is not None,
                  a_host)
        if secret is None:
            return

        out.heading('Live-migrate host-a -> host-b (os-migrateLive)')
        self.dest = self.computes['host-b']
        with out.step('live migration to host-b', 'host-a -> host-b'):
            status, shown = self.watch_live_migration(server, 'host-b')
        self.server_show(server)
        self.migration_list(server)
        out.check('migration to host-b completed', status == 'completed',
                  status)
        out.check('server ACTIVE on host-b',
                  (shown['status'], shown['OS-EXT-SRV-ATTR:host'])
                  == ('ACTIVE', 'host-b'))
        mid = self.migration_uuid(server)
        out.info(f'protocol journal host-a: {self.rows("host-a")}')
        out.info(f'protocol journal host-b: {self.rows("host-b")}')
        out.check('journal on both hosts says COMMITTED',
                  self.rows('host-a') == {mid: ('source', 'COMMITTED')}
                  and self.rows('host-b') == {mid: ('destination',
                                                    'COMMITTED')})
        keys = {h: self.keys(h) for h in ('host-a', 'host-b', 'host-c')}
        out.info(f'key custody (non-destroyed): {keys}')
        out.check('the key is only on host-b',
                  keys == {'host-a': {}, 'host-b': {server['id']: 'ACTIVE'},
                           'host-c': {}}
                  and self.held_secret('host-b', server) == secret
                  and self.held_secret('host-a', server) is None)
        out.check('no libvirt secret left defined on any host',
                  all(not self.libvirt_secrets(h)
                      for h in ('host-a', 'host-b', 'host-c')))
        out.check('source-signed manifest and commit receipt kept on host-b',
                  {'manifest', 'receipt_committed'}
                  <= self.records('host-b', mid))

        out.heading('Live-migrate host-b -> host-c (outside the policy)')
        self.src, self.dest = self.computes['host-b'], self.computes['host-c']
        with out.step('live migration to host-c', 'host-b -> host-c'):
            status, shown = self.watch_live_migration(server, 'host-c')
        self.server_show(server)
        self.migration_list(server)
        details = ''
        if status == 'error':
            details = self.action_event_details(
                server, 'compute_check_can_live_migrate_destination') or ''
        start = details.find('Attestation between')
        out.info('instance action event details: '
                 f'{details[start if start >= 0 else 0:].strip()}')
        out.check('migration to host-c ends in error', status == 'error',
                  status)
        out.check('the reason is the failed attestation',
                  'Attestation between source host host-b and destination '
                  'host host-c failed' in details
                  and 'Policy rule pcr[7] violated' in details)
        out.check('server stays ACTIVE on host-b',
                  (shown['status'], shown['OS-EXT-SRV-ATTR:host'])
                  == ('ACTIVE', 'host-b')
                  and self.domains('host-b') == [server['id']])
        out.check('host-c holds no guest, secret or key',
                  self.domains('host-c') == []
                  and self.held_secret('host-c', server) is None
                  and self.keys('host-c') == {}
                  and self.keys('host-b') == {server['id']: 'ACTIVE'})
        ok, detail = self.no_leak(secret)
        out.check('vTPM secret never on the bus nor in the logs', ok, detail)


def main() -> int:
    """Run the scenario, printing its report; 0 if every check passed."""
    return demo_views.run(DemoScenario, 'demo-nova')


if __name__ == '__main__':
    sys.exit(main())
