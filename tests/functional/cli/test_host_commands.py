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

"""The operator CLI against a real swtpm host TPM."""

import collections.abc
import json
import pathlib
import subprocess
import sys
import typing as ty

import pytest

from nova_vtpm_migration.cmd import manage
from tests.support import attestation
from tests.support import swtpm


@pytest.fixture(scope='module')
def golden(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
           ) -> collections.abc.Iterator[swtpm.SwtpmHostTpm]:
    with swtpm.SwtpmHostTpm(swtpm_ca, 'golden', clone=False) as host:
        yield host


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str,
                                                                  str]:
    code = manage.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _base(host: swtpm.SwtpmHostTpm, tmp: pathlib.Path) -> list[str]:
    return ['--config-file', '/dev/null', '--tcti', host.tcti,
            '--state-path', str(tmp / 'state')]


def test_enroll_writes_record(golden: swtpm.SwtpmHostTpm,
                              tmp_path: pathlib.Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    record = tmp_path / 'enroll.json'
    code, out, _ = _run(capsys, *_base(golden, tmp_path), '--format', 'json',
                        'enroll', '--host', 'golden', '--output', str(record))
    assert code == 0
    shown = json.loads(out)
    saved = json.loads(record.read_text())
    assert shown['ek_fingerprint'] == saved['ek_fingerprint']
    assert saved['host'] == 'golden'
    assert saved['ek_certificate'].startswith('-----BEGIN CERTIFICATE-----')
    assert len(bytes.fromhex(saved['ak_name'])) == 34
    # A second enrollment reuses the persisted AK.
    code, out, _ = _run(capsys, *_base(golden, tmp_path), '--format', 'json',
                        'enroll')
    assert json.loads(out)['ak_name'] == saved['ak_name']


def _attestation_ca(tmp_path: pathlib.Path) -> str:
    path = tmp_path / 'attestation-ca.pem'
    path.write_text(attestation.default_ca().pem)
    return str(path)


def test_policy_generate_then_check(golden: swtpm.SwtpmHostTpm,
                                    swtpm_ca: swtpm.SwtpmCA,  # noqa: F811
                                    tmp_path: pathlib.Path,
                                    capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    bundle = tmp_path / 'ca.pem'
    bundle.write_text('\n'.join(swtpm_ca.bundle_pem()))
    record = tmp_path / 'enroll.json'
    assert _run(capsys, *_base(golden, tmp_path), 'enroll', '--output',
                str(record))[0] == 0
    policy = tmp_path / 'policy.json'
    code, out, err = _run(capsys, *_base(golden, tmp_path), 'policy',
                          'generate', '--ca-bundle', str(bundle),
                          '--attestation-ca', _attestation_ca(tmp_path),
                          '--pcrs', '0,7,16', '--enrollment', str(record),
                          '--output', str(policy))
    assert code == 0, err
    doc = json.loads(policy.read_text())
    assert doc['pcr_selection'] == [0, 7, 16]
    assert len(doc['ek_fingerprints']) == 1
    code, out, _ = _run(capsys, '--format', 'json', '--config-file',
                        '/dev/null', 'policy', 'check', str(policy))
    assert code == 0
    assert json.loads(out)['golden_sets'] == [doc['golden_sets'][0]['name']]


def test_policy_generate_refuses_host_outside_ca(
        golden: swtpm.SwtpmHostTpm, untrusted_ca: swtpm.SwtpmCA,  # noqa: F811
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / 'other-ca.pem'
    bundle.write_text('\n'.join(untrusted_ca.bundle_pem()))
    code, _, err = _run(capsys, *_base(golden, tmp_path), 'policy',
                        'generate', '--ca-bundle', str(bundle),
                        '--attestation-ca', _attestation_ca(tmp_path),
                        '--output', str(tmp_path / 'p.json'))
    assert code == manage.EXIT_NEGATIVE
    assert 'EK certificate rejected' in err
    assert err.count('\n') == 1
    assert not (tmp_path / 'p.json').exists()


@pytest.mark.parametrize('content, reason', [
    ('{not json', 'not JSON'),
    ('{"version": 1}', 'nova-vtpm-migration policy upgrade'),
    ('{"version": 2}', "'attestation_ca_bundle' is a required property"),
    ('[]', '(root)'),
])
def test_policy_check_bad_files(tmp_path: pathlib.Path,
                                capsys: pytest.CaptureFixture[str],
                                content: str, reason: str) -> None:
    path = tmp_path / 'bad.json'
    path.write_text(content)
    code, _, err = _run(capsys, '--config-file', '/dev/null', 'policy',
                        'check', str(path))
    assert code == manage.EXIT_BAD_INPUT
    assert reason in err and 'Traceback' not in err
    assert err.count('\n') == 1


def test_missing_policy_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, '--config-file', '/dev/null', 'policy',
                        'check', '/nonexistent/policy.json')
    assert code == manage.EXIT_BAD_INPUT
    assert 'No such file' in err


def test_tpm_absent(tmp_path: pathlib.Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    port = swtpm.free_port_pair()
    code, _, err = _run(capsys, '--config-file', '/dev/null', '--tcti',
                        f'swtpm:host=127.0.0.1,port={port}', '--state-path',
                        str(tmp_path), 'enroll')
    assert code == manage.EXIT_UNAVAILABLE
    assert 'unavailable' in err


def test_bad_arguments_exit_2() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, '-m', 'nova_vtpm_migration.cmd.manage', 'policy',
         'generate', '--pcrs', '0,99', '--ca-bundle', 'x', '--output', 'y'],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == manage.EXIT_USAGE
    assert 'PCR indices must be between 0 and 23' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_enrollment_with_the_attestation_ca(
        golden: swtpm.SwtpmHostTpm, swtpm_ca: swtpm.SwtpmCA,  # noqa: F811
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's steps, each on its side: the CA's key never reaches
    the host, the secret of the challenge never leaves the CA, and the
    installed certificate names the host and is this TPM's."""
    ca_dir, host = tmp_path / 'ca', tmp_path / 'host'
    host.mkdir()
    bundle = tmp_path / 'ek-cas.pem'
    bundle.write_text('\n'.join(swtpm_ca.bundle_pem()))
    base = _base(golden, host)

    def run(*argv: str) -> dict[str, ty.Any]:
        code, out, err = _run(capsys, '--format', 'json', *argv)
        assert code == 0, err
        return ty.cast(dict[str, ty.Any], json.loads(out))

    run('--config-file', '/dev/null', 'ca', 'init', '--ca-dir', str(ca_dir))
    assert oct((ca_dir / 'ca-key.pem').stat().st_mode & 0o777) == '0o600'
    run(*base, 'enroll', '--host', 'compute-1', '--output',
        str(host / 'record.json'))
    run('--config-file', '/dev/null', 'ca', 'challenge', '--ca-dir',
        str(ca_dir), '--ek-ca-bundle', str(bundle), str(host / 'record.json'),
        '--output', str(host / 'challenge.json'))
    secret = next((ca_dir / 'pending').iterdir()).read_bytes()
    challenge = (host / 'challenge.json').read_bytes()
    assert secret not in challenge and secret.hex().encode() not in challenge
    run(*base, 'enroll', '--activate', str(host / 'challenge.json'),
        '--output', str(host / 'response.json'))
    assert secret not in (host / 'response.json').read_bytes()
    # A response for another host name is refused by the CA.
    response = json.loads((host / 'response.json').read_text())
    (host / 'forged.json').write_text(json.dumps(dict(response,
                                                      host='compute-2')))
    code, _, err = _run(capsys, '--config-file', '/dev/null', 'ca', 'issue',
                        '--ca-dir', str(ca_dir), str(host / 'record.json'),
                        str(host / 'forged.json'), '--output',
                        str(host / 'cert.pem'))
    assert code == manage.EXIT_BAD_INPUT and 'another host' in err
    run('--config-file', '/dev/null', 'ca', 'issue', '--ca-dir',
        str(ca_dir), str(host / 'record.json'), str(host / 'response.json'),
        '--output', str(host / 'cert.pem'))
    assert not list((ca_dir / 'pending').iterdir())
    # The certificate installs for this host only.
    code, _, err = _run(capsys, *base, 'enroll', '--install',
                        str(host / 'cert.pem'), '--host', 'compute-2')
    assert code == manage.EXIT_NEGATIVE and 'compute-2' in err
    out = run(*base, 'enroll', '--install', str(host / 'cert.pem'), '--host',
              'compute-1')
    installed = pathlib.Path(out['installed'])
    assert installed == host / 'state' / 'ak-certificate.pem'
    assert installed.read_bytes() == (host / 'cert.pem').read_bytes()


def test_policy_upgrade(swtpm_ca: swtpm.SwtpmCA,  # noqa: F811
                        tmp_path: pathlib.Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    old = attestation.policy_document(swtpm_ca.bundle_pem(),
                                      [('fw', {0: bytes(32)})])
    del old['attestation_ca_bundle']
    old['version'] = 1
    (tmp_path / 'old.json').write_text(json.dumps(old))
    code, _, err = _run(capsys, '--config-file', '/dev/null', 'policy',
                        'check', str(tmp_path / 'old.json'))
    assert code == manage.EXIT_BAD_INPUT and 'policy upgrade' in err
    code, _, err = _run(capsys, '--config-file', '/dev/null', 'policy',
                        'upgrade', str(tmp_path / 'old.json'),
                        '--attestation-ca', _attestation_ca(tmp_path),
                        '--output', str(tmp_path / 'new.json'))
    assert code == 0, err
    code, out, _ = _run(capsys, '--format', 'json', '--config-file',
                        '/dev/null', 'policy', 'check',
                        str(tmp_path / 'new.json'))
    assert code == 0 and json.loads(out)['version'] == 2
