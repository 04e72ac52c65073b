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

"""``nova-vtpm-migration vault list`` against a real swtpm host TPM."""

import collections.abc
import json
import os
import pathlib
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import serialization
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.cmd import manage
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.compute import layout
from tests.support import attestation
from tests.support import cluster
from tests.support import swtpm

SECRET = os.urandom(384).hex().encode()


def _enroll(sim: swtpm.SwtpmHostTpm, state_path: pathlib.Path,
            host: str) -> None:
    """Enroll the TPM with the test attestation CA and install the
    certificate where the host looks (as ``enroll --install`` does)."""
    tpm = cluster.open_host_tpm(sim.tcti, state_path / 'tpm', (0,))
    try:
        der = attestation.default_ca().enroll(tpm, host, sim.ca.bundle_pem())
    finally:
        tpm.ctx.close()
    (state_path / layout.AK_CERTIFICATE_FILE).write_bytes(
        x509.load_der_x509_certificate(der).public_bytes(
            serialization.Encoding.PEM))


@pytest.fixture
def host(swtpm_ca: swtpm.SwtpmCA,  # noqa: F811
         tmp_path: pathlib.Path
         ) -> collections.abc.Iterator[tuple[list[str], list[str]]]:
    """A host with two sealed secrets; yields (CLI base args, instances)."""
    with swtpm.SwtpmHostTpm(swtpm_ca, 'vault', clone=True) as sim:
        doc = attestation.policy_document(
            swtpm_ca.bundle_pem(), [('any', {0: bytes(32)})])
        policy_file = tmp_path / 'policy.json'
        policy_file.write_text(json.dumps(doc))
        base = ['--config-file', '/dev/null', '--tcti', sim.tcti,
                '--state-path', str(tmp_path / 'state'),
                '--policy-file', str(policy_file)]
        conf = nvm_conf.CONF
        for name, value in (('tcti', sim.tcti),
                            ('state_path', str(tmp_path / 'state')),
                            ('policy_file', str(policy_file))):
            conf.set_override(name, value, group='vtpm_migration')
        instances = [str(uuid.uuid4()), str(uuid.uuid4())]
        _enroll(sim, tmp_path / 'state', 'vault-host')
        try:
            built = compute_host.ComputeHost.open(conf, 'vault-host')
            for inst in instances:
                built.adopt_secret(inst, SECRET)
            built.stop()
        finally:
            for name in ('tcti', 'state_path', 'policy_file'):
                conf.clear_override(name, group='vtpm_migration')
        yield base, sorted(instances)


def _run(capsys: pytest.CaptureFixture[str], *argv: str
         ) -> tuple[int, str, str]:
    code = manage.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_from_the_journal(host: tuple[list[str], list[str]],
                               capsys: pytest.CaptureFixture[str]) -> None:
    base, instances = host
    code, out, _ = _run(capsys, *base, '--format', 'json', 'vault', 'list')
    assert code == 0
    rows = json.loads(out)
    assert [r['instance'] for r in rows] == instances
    assert {r['key_state'] for r in rows} == {'ACTIVE'}
    assert {r['verified'] for r in rows} == {'-'}
    assert SECRET.decode() not in out


def test_verify_opens_each_and_names_a_tampered_one(
        host: tuple[list[str], list[str]], tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    base, instances = host
    code, out, _ = _run(capsys, *base, 'vault', 'list', '--verify',
                        '--host', 'vault-host')
    assert code == 0, out
    assert out.count('| ok ') == 2
    envelope = (tmp_path / 'state' / layout.ENGINE_DIR / 'vault'
                / f'{instances[1]}.envelope')
    data = bytearray(envelope.read_bytes())
    data[-1] ^= 0xFF
    envelope.write_bytes(bytes(data))

    code, out, err = _run(capsys, *base, '--format', 'json', 'vault',
                          'list', '--verify', '--host', 'vault-host')

    assert code == 1, err
    verdicts = {r['instance']: r['verified'] for r in json.loads(out)}
    assert verdicts[instances[0]] == 'ok'
    assert 'does not decrypt' in verdicts[instances[1]]
    assert SECRET.decode() not in out + err


def test_no_journal_is_a_one_line_error(tmp_path: pathlib.Path,
                                        capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    code, _, err = _run(capsys, '--config-file', '/dev/null', '--state-path',
                        str(tmp_path / 'nothing'), 'vault', 'list')
    assert code == manage.EXIT_BAD_INPUT
    assert err.startswith('nova-vtpm-migration vault list: error: ')
    assert err.count('\n') == 1
