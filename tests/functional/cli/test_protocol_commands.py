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

"""attest, journal and receipts commands over a real RabbitMQ broker.

The CLI runs in-process (``manage.main``) with a nova.conf naming a private
RabbitMQ broker; the peer hosts' protocol engines serve RPC on that broker,
each on its own real swtpm host TPM.
"""

import collections.abc
import json
import os
import pathlib
import typing as ty

from oslo_config import cfg
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.cmd import manage
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.protocol import engine as engine_mod
from tests.support import cluster as cluster_mod
from tests.support import rabbitmq
from tests.support import swtpm

PCRS = (0, 7)
INSTANCE = '4d0c1f2e-7b1a-4c55-9a3e-2f6f1e0c9b21'


class Cluster:
    """Three hosts on one broker: src (the CLI's host), dst, and bad."""

    def __init__(self, ca: swtpm.SwtpmCA, broker: rabbitmq.RabbitBroker
                 ) -> None:
        self.sim = cluster_mod.SimCluster(ca, pcrs=PCRS, label='cli')
        self.dir = self.sim.root
        try:
            self._start(broker)
        except BaseException:
            self.sim.close()
            raise

    def _start(self, broker: rabbitmq.RabbitBroker) -> None:
        self.sim.start(('src', 'dst', 'bad'))
        self.policy_file = self.sim.write_policy()
        self.policy = self.sim.policy
        self.sim.install_ak_certificate('src', self.sim.state_dir('src'))
        self.sim.extend_pcr('bad', 7, b'unapproved boot loader')
        self.conf_file = self.dir / 'nova.conf'
        self.conf_file.write_text(
            f'[DEFAULT]\ntransport_url = {broker.transport_url}\n'
            f'[vtpm_migration]\ntcti = {self.sim.tpm("src").tcti}\n'
            f'state_path = {self.sim.state_dir("src")}\n'
            f'policy_file = {self.policy_file}\nrpc_timeout = 15\n')
        self.transport = self.sim.messaging(broker.transport_url,
                                            nvm_conf.CONF)
        self.engines: dict[str, engine_mod.MigrationEngine] = {}
        for name in ('dst', 'bad'):
            self.serve(name, self.sim.engine(
                name, self.sim.rpc_peers(self.transport),
                state_dir=self.sim.state_dir(name, 'engine')))

    def serve(self, name: str, eng: engine_mod.MigrationEngine) -> None:
        self.engines[name] = eng
        self.sim.serve(name, eng, self.transport)

    def src_engine(self) -> engine_mod.MigrationEngine:
        """The CLI host's engine as nova-compute would build it."""
        nvm_conf.CONF(['--config-file', str(self.conf_file)],
                      project='nova', default_config_files=[])
        built = compute_host.ComputeHost.open(nvm_conf.CONF, 'src',
                                              self.transport)
        assert built.engine is not None
        return built.engine

    def close(self) -> None:
        self.sim.close()


@pytest.fixture(scope='module')
def cluster(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
            ) -> collections.abc.Iterator[Cluster]:
    with rabbitmq.RabbitBroker() as broker:
        c = Cluster(swtpm_ca, broker)
        try:
            yield c
        finally:
            c.close()
            nvm_conf.CONF.reset()


def cli(cluster: Cluster, capsys: pytest.CaptureFixture[str],
        *argv: str) -> tuple[int, ty.Any, str]:
    code = manage.main(['--config-file', str(cluster.conf_file), '--format',
                        'json', *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_attest_trusted_peer(cluster: Cluster,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(cluster, capsys, 'attest', 'dst', '--host', 'src')
    assert code == 0, err
    assert out['verdict'] == 'trusted'
    ident = cluster.engines['dst'].tpm.identity()
    assert out['ek_fingerprint'] == ident.ek_fingerprint
    assert set(out['pcrs']) == {'0', '7'}


def test_attest_refuses_peer_outside_policy(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(cluster, capsys, 'attest', 'bad', '--host', 'src')
    assert code == manage.EXIT_NEGATIVE, err
    assert out is None
    assert 'pcr' in err.lower() and 'Traceback' not in err
    assert err.count('\n') == 1


def test_attest_unreachable_peer(cluster: Cluster,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    nvm_conf.CONF.set_override('rpc_timeout', 2, group='vtpm_migration')
    try:
        code, _, err = cli(cluster, capsys, 'attest', 'nowhere', '--host',
                           'src')
    finally:
        nvm_conf.CONF.clear_override('rpc_timeout', group='vtpm_migration')
    assert code == manage.EXIT_UNAVAILABLE
    assert 'nowhere' in err


def test_receipts_and_journal(cluster: Cluster,
                              capsys: pytest.CaptureFixture[str]) -> None:
    src = cluster.src_engine()
    cluster.serve('src', src)
    secret = os.urandom(32)
    src.keystore.add(INSTANCE, secret)
    handle = src.migrate_key(INSTANCE, 'dst')
    src.commit(handle.migration_id)
    mid = handle.migration_id

    code, rows, _ = cli(cluster, capsys, 'receipts', 'list')
    assert code == 0 and [r['migration_id'] for r in rows] == [mid]
    code, shown, _ = cli(cluster, capsys, 'receipts', 'show', mid)
    assert shown['instance'] == INSTANCE
    assert shown['receipt_status'] == 'committed'
    record = cluster.dir / 'record.bin'
    code, _, _ = cli(cluster, capsys, 'receipts', 'export', mid, '--output',
                     str(record))
    assert code == 0
    code, verdict, _ = cli(cluster, capsys, 'receipts', 'verify',
                           str(record))
    assert (code, verdict['verdict']) == (0, 'valid')
    # An altered record does not verify.
    data = bytearray(record.read_bytes())
    pos = data.index(INSTANCE.encode())
    data[pos] = ord('5') if data[pos] != ord('5') else ord('6')
    forged = cluster.dir / 'forged.bin'
    forged.write_bytes(bytes(data))
    code, verdict, _ = cli(cluster, capsys, 'receipts', 'verify',
                           str(forged))
    assert (code, verdict['verdict']) == (1, 'INVALID')
    assert verdict['reason']

    code, rows, _ = cli(cluster, capsys, 'journal', 'status', '--all')
    assert {(r['migration_id'], r['state']) for r in rows} == {
        (mid, 'COMMITTED')}
    code, rows, _ = cli(cluster, capsys, 'journal', 'status')
    assert rows == []
    assert secret.hex() not in capsys.readouterr().out


def test_in_doubt_migration_decided_by_operator(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    src = cluster.engines['src']
    inst = '9e8d7c6b-5a49-4838-a726-150f4e3d2c1b'
    src.keystore.add(inst, os.urandom(32))
    handle = src.migrate_key(inst, 'dst')
    code, rows, _ = cli(cluster, capsys, 'journal', 'status')
    assert [(r['migration_id'], r['in_doubt']) for r in rows] == [
        (handle.migration_id, True)]
    code, out, err = cli(cluster, capsys, 'journal', 'decide',
                         handle.migration_id, 'abort', '--host', 'src')
    assert code == 0, err
    assert out['state'] == 'ABORTED'
    assert src.keystore.state(inst).value == 'ACTIVE'
    dst_state = cluster.engines['dst'].keystore.state(inst)
    assert dst_state is None or dst_state.value == 'DESTROYED'
    code, _, err = cli(cluster, capsys, 'journal', 'decide',
                       handle.migration_id, 'commit', '--host', 'src')
    assert code != 0 and 'Illegal' in err


def test_journal_missing(tmp_path: pathlib.Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    code = manage.main(['--config-file', '/dev/null', '--state-path',
                        str(tmp_path), 'journal', 'status'])
    _, err = capsys.readouterr()
    assert code == manage.EXIT_BAD_INPUT
    assert 'No migration journal' in err


def test_conf_is_global() -> None:
    assert nvm_conf.CONF is cfg.CONF
