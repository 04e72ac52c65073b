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

"""``make demo-dataplane``: the protocol on a hand-built data plane.

(``make demo`` runs it where real libvirt daemons cannot run; see
:mod:`tools.demo_launcher`.)

Three simulated compute hosts, each with its own swtpm standing in for the
hardware TPM (EK certificates from a private ``swtpm_localca`` CA); host C
boots unapproved firmware, so its PCRs are outside the trust policy. A QEMU
(TCG) guest with a vTPM holding recognisable state live-migrates from A to
B through the three phases (dual attestation, key-wrapped vTPM transfer,
QEMU migration + commit); then a migration B -> C is refused while the
guest keeps running on B. Every claim is checked; the exit status is
non-zero if any check fails.

``--transport-url rabbit://...`` runs the host-to-host protocol over
oslo.messaging on that broker instead of in-process; ``--rabbit`` starts a
private broker on loopback for that.
"""

import argparse
import logging
import os
import sys
import typing as ty

from nova_vtpm_migration.protocol import errors as protocol_errors
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import errors as tpm_errors
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import verify
from tests.support.dataplane import provision
from tests.support.dataplane import testbed as testbed_mod
from tools import reporting

HOSTS = ('host-a', 'host-b', 'host-c')
PHASE_ROWS = (
    ('phase1_attest', 'Phase 1', 'dual attestation + trusted channel'),
    ('phase2_transfer', 'Phase 2', 'binding key, wrapped key, receipt'),
    ('key_delivery', 'Phase 2', 'unwrap in dest TPM -> vTPM key'),
    ('destination_start', 'Phase 3', 'start incoming vTPM + QEMU'),
    ('qemu_migration', 'Phase 3', 'QEMU live migration'),
    ('commit', 'Phase 3', 'commit: dest activates, source destroys'),
    ('total', 'Total', ''),
)


class CapturingTransport(transport_mod.Transport):
    """Records every protocol message an engine sends and receives."""

    def __init__(self, inner: transport_mod.Transport,
                 sink: list[bytes]) -> None:
        self.inner = inner
        self.sink = sink

    def call(self, peer: str, request: bytes) -> bytes:
        """Forward *request* and record it and the reply."""
        self.sink.append(request)
        reply = self.inner.call(peer, request)
        self.sink.append(reply)
        return reply


def _short(data: bytes) -> str:
    return data.hex()[:16] + '...'


class Demo:
    """The demo scenario on a :class:`~testbed_mod.Testbed`."""

    def __init__(self, rep: reporting.Reporter,
                 tb: testbed_mod.Testbed) -> None:
        self.rep = rep
        self.tb = tb
        self.wire: list[bytes] = []
        for eng in tb.engines.values():
            eng.channel.transport = CapturingTransport(eng.transport,
                                                       self.wire)

    def custody(self, instance: str) -> dict[str, str]:
        """Host -> state of the instance's key in that host's key store."""
        out = {}
        for name, eng in self.tb.engines.items():
            state = eng.keystore.state(instance)
            out[name] = state.value if state is not None else '-'
        return out

    def show_hosts(self) -> None:
        rep, tb = self.rep, self.tb
        rep.heading('The hosts and what their TPMs prove')
        rows = []
        for name in HOSTS:
            tpm = tb.engines[name].tpm
            ident = tpm.identity()
            try:
                verify.verify_identity(ident, tb.policy)
                identity = 'EK chains to trusted CA'
            except tpm_errors.VerificationError as exc:
                identity = f'REFUSED: {exc}'
            bad = tb.policy.pcr_violations(tpm.pcr_values())
            rows.append({
                'host': name,
                'EK fingerprint': ident.ek_fingerprint[:16] + '...',
                'AK name': _short(objects.public_name(ident.ak_public)),
                'identity': identity,
                'PCR policy': ('in policy' if not bad
                               else f'OUTSIDE: {bad[0]}'),
            })
        rep.table(rows, ('host', 'EK fingerprint', 'AK name', 'identity',
                         'PCR policy'))
        rep.check('host A and B PCRs are in the trust policy',
                  rows[0]['PCR policy'] == rows[1]['PCR policy']
                  == 'in policy')
        rep.check('host C PCRs are outside the trust policy',
                  rows[2]['PCR policy'] != 'in policy')

    def run(self) -> None:
        rep, tb = self.rep, self.tb
        self.show_hosts()

        rep.heading('Provision a vTPM guest on host A')
        with rep.step('create instance: vTPM with NV data, a persistent '
                      'key and extended PCRs; start QEMU', 'setup'):
            inst, contents = tb.new_instance('host-a')
        assert contents is not None
        secret = tb.engines['host-a'].keystore.read(inst)
        rep.info(f'instance {inst}')
        rep.info(f'NV index {contents.nv_index:#x}: '
                 f'{len(contents.nv_data)} random bytes')
        rep.info(f'persistent key {contents.key_handle:#x}, name '
                 f'{_short(contents.key_name)}')
        pcrs = sorted(contents.pcrs.items())
        rep.info('PCRs ' + ', '.join(f'{i}={_short(v)}' for i, v in pcrs))
        rep.info(f'key custody: {self.custody(inst)}')
        guest = tb.hosts['host-a'].instance(inst).guest
        rep.check('guest runs on host A',
                  guest is not None and guest.is_running())

        rep.heading('Live-migrate A -> B through all three phases')
        for ctx in tb.tpm_contexts.values():
            ctx.reset_stats()
        before = len(self.wire)
        with rep.step('secured live migration host-a -> host-b', 'A->B'):
            result = tb.migrate(inst, 'host-a', 'host-b')
        rows = [{'phase': label, 'step': what,
                 'ms': round(result.phases_ms[key], 1)}
                for key, label, what in PHASE_ROWS
                if key in result.phases_ms]
        rep.table(rows, ('phase', 'step', 'ms'))
        if result.qemu is not None:
            rep.info(f'QEMU: status {result.qemu.status}, total-time '
                     f'{result.qemu.total_time_ms} ms, downtime '
                     f'{result.qemu.downtime_ms} ms')
        tpm_rows = []
        for name, ctx in tb.tpm_contexts.items():
            stats = ctx.stats
            tpm_rows.append({
                'host': name,
                'TPM commands': sum(s.count for s in stats.values()),
                'TPM ms': round(sum(s.total for s in stats.values()) * 1e3,
                                1)})
        rep.table(tpm_rows, ('host', 'TPM commands', 'TPM ms'))
        rep.check('migration A -> B committed', result.committed,
                  result.error or '')
        rep.check('attestation of A and B accepted (phase 1 ran)',
                  'phase1_attest' in result.phases_ms)
        custody = self.custody(inst)
        rep.info(f'key custody: {custody}')
        rep.check('exactly one usable key, on host B',
                  [h for h, s in custody.items() if s == 'ACTIVE']
                  == ['host-b'])
        rep.check('source vTPM state destroyed on host A',
                  not tb.hosts['host-a'].has_vtpm_state(inst))
        msgs = self.wire[before:]
        rep.check('vTPM secret never on the wire',
                  not any(secret in m for m in msgs),
                  f'{len(msgs)} messages, {sum(map(len, msgs))} bytes '
                  'searched')
        self.show_receipt(result.migration_id)
        self.verify_contents(inst, contents)
        self.refused(inst)

    def show_receipt(self, migration_id: str | None) -> None:
        rep, tb = self.rep, self.tb
        rep.heading('The signed record (source manifest + destination '
                    'receipt)')
        data = (tb.engines['host-a'].record(migration_id)
                if migration_id else None)
        if not rep.check('host A holds a signed record', data is not None):
            return
        assert data is not None
        with rep.step('verify the record offline (trust policy only)',
                      'audit'):
            record = receipts.verify_record(data, tb.policy)
        manifest, receipt = record['manifest'], record['receipt']
        rep.info(f'manifest: migration {manifest["migration_id"]}, '
                 f'instance {manifest["instance_uuid"]}')
        rep.info(f'  source AK {_short(manifest["source_ak_name"])} -> '
                 f'destination AK {_short(manifest["dest_ak_name"])}, '
                 f'binding key {_short(manifest["binding_key_name"])}')
        rep.info(f'  ciphertext sha256 {_short(manifest["ciphertext_hash"])}'
                 f'; signed by host A TPM '
                 f'({len(record["manifest_signature"])} B ECDSA)')
        rep.info(f'receipt: status {receipt["status"]}, manifest hash '
                 f'{_short(receipt["manifest_hash"])}; signed by host B '
                 f'TPM ({len(record["receipt_signature"])} B ECDSA)')
        rep.check('record verifies offline', True)
        forged = bytearray(data)
        forged[len(forged) // 2] ^= 0x01
        try:
            receipts.verify_record(bytes(forged), tb.policy)
            refused = ''
        except (protocol_errors.ProtocolError,
                tpm_errors.VerificationError) as exc:
            refused = str(exc)
        rep.check('a record with one flipped bit is refused', bool(refused),
                  refused[:70])

    def verify_contents(self, inst: str,
                        expected: provision.VtpmContents) -> None:
        rep, tb = self.rep, self.tb
        rep.heading('Verify the vTPM contents on host B')
        with rep.step('stop the guest on B and read its vTPM through '
                      'tpm2-pytss', 'verify'):
            actual = tb.hosts['host-b'].read_back(inst)
        diffs = provision.compare(expected, actual)
        rep.check('NV data, persistent key and PCRs equal what was '
                  'provisioned on A', not diffs, '; '.join(diffs)[:70])
        with rep.step('restart the guest on B', 'verify'):
            tb.hosts['host-b'].start_instance(inst)

    def refused(self, inst: str) -> None:
        rep, tb = self.rep, self.tb
        rep.heading('Try to live-migrate B -> C (C is outside the policy)')
        with rep.step('secured live migration host-b -> host-c', 'B->C'):
            result = tb.migrate(inst, 'host-b', 'host-c',
                                fresh_attestation=True)
        rep.info(f'outcome: {result.outcome}')
        rep.info(f'reason: {result.error}')
        rep.check('migration to C refused', not result.committed
                  and result.error is not None)
        rep.check('refusal names the PCR policy', 'pcr' in (
            result.error or '').lower())
        guest = tb.hosts['host-b'].instance(inst).guest
        rep.check('guest keeps running on host B',
                  guest is not None and guest.is_running())
        rep.check('host C never received a key or vTPM state',
                  self.custody(inst)['host-c'] == '-'
                  and not tb.hosts['host-c'].has_vtpm_state(inst))
        rep.check('key custody unchanged: usable only on host B',
                  [h for h, s in self.custody(inst).items()
                   if s == 'ACTIVE'] == ['host-b'])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='make demo-dataplane',
        description='Attested, key-wrapped vTPM live migration, end to end.')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--transport-url', default=None,
                   help='run the protocol over oslo.messaging on this URL '
                        '(e.g. rabbit://guest:guest@127.0.0.1:5672/)')
    g.add_argument('--rabbit', action='store_true',
                   help='start a private RabbitMQ on loopback and use it')
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    args = _parser().parse_args(argv)
    os.environ.setdefault('TSS2_LOG', 'all+NONE')
    # The demo reports refusals itself; keep the log quiet.
    logging.getLogger('nova_vtpm_migration').setLevel(logging.ERROR)
    rep = reporting.Reporter()
    rep.heading('nova-vtpm-migration demo: attested, key-wrapped vTPM '
                'live migration')
    broker: ty.Any = None
    url = args.transport_url
    try:
        if args.rabbit:
            from tests.support import rabbitmq
            with rep.step('start a private RabbitMQ broker on loopback',
                          'setup'):
                broker = rabbitmq.RabbitBroker().start()
            url = broker.transport_url
        rep.info('protocol transport: ' + (
            'oslo.messaging on ' + url.split('@')[-1] if url
            else 'in-process'))
        with rep.step('start 3 simulated compute hosts (swtpm host TPMs, '
                      'EK certificates from a private CA)', 'setup'):
            tb = testbed_mod.Testbed(HOSTS, transport_url=url)
        try:
            with rep.step('host C boots unapproved firmware (PCR 7 '
                          'extended)', 'setup'):
                tb.host_tpm('host-c').extend_pcr(7, b'unapproved bootloader')
            Demo(rep, tb).run()
        finally:
            with rep.step('tear down hosts, vTPMs and guests', 'teardown'):
                tb.close()
    except Exception as exc:  # noqa: BLE001 - report, then fail
        rep.check('demo ran to the end', False, f'{type(exc).__name__}: '
                                                f'{exc}'[:120])
    finally:
        if broker is not None:
            broker.cleanup()
    rep.summary()
    return 0 if rep.ok else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
