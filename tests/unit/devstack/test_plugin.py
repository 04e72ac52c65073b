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

"""Run devstack/plugin.sh phase by phase against a stub of DevStack.

The stub (``stub/functions.sh``) implements DevStack's ini functions with
their semantics and records every other call; ``run_process`` really starts
the command, so the host-TPM stand-in (swtpm) the plugin configures is
started and answered over the TCTI written to nova.conf. The full lifecycle
test runs the real operator CLI against that swtpm; the other tests use a
recording stand-in with the same interface (``stub/nova-vtpm-migration``).
"""

import dataclasses
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
import pytest

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import policy as policy_mod

ROOT = pathlib.Path(__file__).resolve().parents[3]
DEVSTACK = ROOT / 'devstack'
STUB = pathlib.Path(__file__).resolve().parent / 'stub'

sys.path.insert(0, str(STUB))
import stub_ini as ini  # noqa: E402

FILTER = 'nova_vtpm_migration.scheduler.filters.VtpmMigrationAttestedFilter'
FILTER_NAME = 'VtpmMigrationAttestedFilter'
DEVSTACK_FILTERS = ('ComputeFilter,ComputeCapabilitiesFilter,'
                    'ImagePropertiesFilter')
BASE_NOVA_CONF = f"""[DEFAULT]
compute_driver = libvirt.LibvirtDriver

[libvirt]
virt_type = qemu

[filter_scheduler]
enabled_filters = {DEVSTACK_FILTERS}
"""


def _free_port_pair() -> int:
    """A TCP port p on loopback with p + 1 free too.

    Chosen below the kernel's ephemeral range, where busy hosts (many
    outgoing connections) leave few neighbouring ports free.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        socks = [socket.socket(), socket.socket()]
        try:
            socks[0].bind(('127.0.0.1', port))
            socks[1].bind(('127.0.0.1', port + 1))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return port
    raise AssertionError('no free port pair')


@dataclasses.dataclass
class Stack:
    """A temporary DevStack-like tree and the plugin's variables."""

    root: pathlib.Path
    env: dict[str, str]

    @property
    def nova_conf(self) -> pathlib.Path:
        return pathlib.Path(self.env['NOVA_CONF'])

    @property
    def log(self) -> list[str]:
        path = pathlib.Path(self.env['STUB_LOG'])
        return path.read_text().splitlines() if path.exists() else []

    def conf(self) -> dict[str, dict[str, list[str]]]:
        return ini.parse(self.nova_conf.read_text())

    def run(self, *phase: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        script = (
            'set -e\n'
            f'source {STUB}/functions.sh\n'
            f'source {DEVSTACK}/settings\n'
            f'source {DEVSTACK}/override-defaults\n'
            f'source {DEVSTACK}/plugin.sh {" ".join(phase)}\n')
        proc = subprocess.run(['bash', '-c', script], env=self.env,
                              capture_output=True, text=True, timeout=120,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f'plugin.sh {" ".join(phase)} failed:\n'
                                 f'{proc.stdout}\n{proc.stderr}')
        return proc


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> 'Stack':
    etc = tmp_path / 'etc' / 'nova'
    etc.mkdir(parents=True)
    (etc / 'nova.conf').write_text(BASE_NOVA_CONF)
    (tmp_path / 'run').mkdir()
    (tmp_path / 'tempest').mkdir()
    env = {
        'PATH': f'{STUB}:{os.environ["PATH"]}',
        'HOME': str(tmp_path),
        'STUB_LOG': str(tmp_path / 'calls.log'),
        'STUB_RUN': str(tmp_path / 'run'),
        'DEST': str(tmp_path / 'opt'),
        'DATA_DIR': str(tmp_path / 'data'),
        'NOVA_CONF_DIR': str(etc),
        'NOVA_CONF': str(etc / 'nova.conf'),
        'TEMPEST_CONFIG': str(tmp_path / 'tempest' / 'tempest.conf'),
        'STACK_USER': subprocess.run(['id', '-un'], capture_output=True,
                                     text=True, check=True).stdout.strip(),
        'ENABLED_SERVICES': 'n-api,n-cond,n-sch,n-cpu,tempest',
        'VTPM_MIGRATION_SWTPM_PORT': str(_free_port_pair()),
        'TSS2_LOG': 'all+NONE',
    }
    result = Stack(tmp_path, env)
    yield result
    result.run('unstack', check=False)      # never leave an swtpm behind


def _assert_nova_loads_filters(section: dict[str, list[str]]) -> None:
    """Nova's scheduler would load this ``[filter_scheduler]`` section: it
    imports every ``available_filters`` path and finds every
    ``enabled_filters`` name among the classes it loaded
    (``nova.scheduler.host_manager.HostManager``)."""
    from nova.scheduler import filters as nova_filters

    classes = nova_filters.HostFilterHandler().get_matching_classes(
        section['available_filters'])
    names = {cls.__name__ for cls in classes}
    enabled = section['enabled_filters'][0].split(',')
    assert set(enabled) <= names, set(enabled) - names


def _cli_calls(stack: Stack) -> list[str]:
    return [line for line in stack.log if line.startswith('cli ')]


def _packages_in_bindep() -> list[str]:
    lines = (DEVSTACK / 'files' / 'bindep.txt').read_text().splitlines()
    return [ln.split()[0] for ln in lines if ln and not ln.startswith('#')]


def test_install_phase(stack: Stack) -> None:
    stack.run('stack', 'install')
    installs = [ln for ln in stack.log if ln.startswith('install_package')]
    assert installs == ['install_package swtpm swtpm-tools tpm2-tools '
                        'libtss2-dev pkg-config']
    assert installs[0].split()[1:] == _packages_in_bindep()
    assert (f'setup_develop {stack.env["DEST"]}/nova-vtpm-migration'
            in stack.log)
    # install touches no configuration
    assert stack.nova_conf.read_text() == BASE_NOVA_CONF


def _real_cli(stack: Stack) -> pathlib.Path:
    """A ``nova-vtpm-migration`` that runs this tree's CLI."""
    cli = stack.root / 'bin' / 'nova-vtpm-migration'
    cli.parent.mkdir()
    cli.write_text('#!/bin/bash\n'
                   f'export PYTHONPATH={ROOT}\n'
                   f'exec {sys.executable} -m nova_vtpm_migration.cmd.manage'
                   ' "$@"\n')
    cli.chmod(0o755)
    return cli


def test_all_phases_all_in_one_with_swtpm_host_tpm(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'swtpm'
    stack.env['VTPM_MIGRATION_SWTPM_USER'] = 'swtpm'
    stack.env['VTPM_MIGRATION_SWTPM_GROUP'] = 'swtpm'
    stack.env['VTPM_MIGRATION_CLI'] = str(_real_cli(stack))
    data = pathlib.Path(stack.env['DATA_DIR'])
    port = int(stack.env['VTPM_MIGRATION_SWTPM_PORT'])

    # -- stack install
    stack.run('stack', 'install')

    # -- stack post-config
    stack.run('stack', 'post-config')
    conf = stack.conf()
    assert conf['DEFAULT']['compute_driver'] == [
        'vtpm_migration_ext.driver.LibvirtDriver']
    assert conf['libvirt']['swtpm_enabled'] == ['True']
    assert conf['libvirt']['swtpm_user'] == ['swtpm']
    assert conf['libvirt']['swtpm_group'] == ['swtpm']
    assert conf['libvirt']['supported_tpm_secret_security'] == [
        'user,host,deployment']
    assert conf['libvirt']['virt_type'] == ['qemu']     # untouched
    state = data / 'vtpm_migration'
    policy = pathlib.Path(stack.env['NOVA_CONF_DIR']) / (
        'vtpm-migration-policy.json')
    assert conf['vtpm_migration'] == {
        'tcti': [f'swtpm:host=127.0.0.1,port={port}'],
        'policy_file': [str(policy)],
        'state_path': [str(state)],
        'rpc_topic': ['vtpm_migration'],
        'enforcement': ['refuse'],
    }
    assert conf['filter_scheduler']['available_filters'] == [
        'nova.scheduler.filters.all_filters', FILTER]
    assert conf['filter_scheduler']['enabled_filters'] == [
        f'{DEVSTACK_FILTERS},{FILTER_NAME}']
    _assert_nova_loads_filters(conf['filter_scheduler'])

    # the host TPM stand-in: EK certificates from the private CA, running,
    # and reachable through the TCTI written to nova.conf
    ca = data / 'vtpm_migration_ek_ca'
    assert (ca / 'issuercert.pem').exists()
    assert (state / 'host-tpm' / 'tpm2-00.permall').exists()
    tpm_random = _get_random(conf['vtpm_migration']['tcti'][0],
                             stack.root / 'run' / 'vtpm-host-swtpm.log')
    assert len(tpm_random) == 8

    # the real CLI enrolled this host and wrote a policy trusting the
    # local CA, with this host's PCR values as the golden set
    host = subprocess.run(['hostname', '-s'], capture_output=True,
                          text=True, check=True).stdout.strip()
    nova_host = socket.gethostname()
    record = json.loads(
        (state / 'enrollment' / f'{host}.json').read_text())
    assert record['host'] == nova_host
    # ... certified its AK for its Nova host name with a local attestation
    # CA, and installed the certificate where nova-compute looks
    ak_cert = x509.load_pem_x509_certificate(
        (state / 'ak-certificate.pem').read_bytes())
    assert akcert.certified_host(ak_cert.public_bytes(
        serialization.Encoding.DER)) == nova_host
    assert 'BEGIN CERTIFICATE' in record['ek_certificate']
    assert 'swtpm-localca' in record['ek_issuer']
    document = json.loads(policy.read_text())
    trust = policy_mod.TrustPolicy.from_dict(document, source=str(policy))
    assert [g.name for g in trust.golden_sets] == [host]
    assert trust.ek_fingerprints is None         # CA trust, no allow-list
    issuers = {c.subject.rfc4514_string() for c in trust.ek_ca_certificates}
    assert any('swtpm-localca' in i for i in issuers)
    assert [c.subject for c in trust.attestation_ca_certificates] == [
        ak_cert.issuer]

    # -- stack extra: the real CLI checks the policy
    stack.run('stack', 'extra')

    # -- stack test-config: tempest knows vTPM live migration works
    stack.run('stack', 'test-config')
    tempest = ini.parse(pathlib.Path(stack.env['TEMPEST_CONFIG'])
                        .read_text())
    assert tempest['compute-feature-enabled'] == {
        'vtpm_device_supported': ['True'],
        'vtpm_live_migration': ['True'],
        'vtpm_live_migration_supported': ['True'],
    }

    # -- unstack: the swtpm is stopped
    pid = int((stack.root / 'run' / 'vtpm-host-swtpm.pid').read_text())
    stack.run('unstack')
    assert 'stop_process vtpm-host-swtpm' in stack.log
    _wait_gone(pid)

    # -- clean: the plugin's state, CA and policy are gone
    stack.run('clean')
    assert not state.exists()
    assert not ca.exists()
    assert not (data / 'vtpm_migration_attestation_ca').exists()
    assert not policy.exists()
    # nova.conf itself is DevStack's to remove
    assert stack.nova_conf.exists()


def test_post_config_calls_cli_with_its_interface(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'swtpm'
    stack.env['VTPM_MIGRATION_EK_ALLOW_LIST'] = 'True'
    state = pathlib.Path(stack.env['DATA_DIR']) / 'vtpm_migration'
    enrollment = state / 'enrollment'
    enrollment.mkdir(parents=True)
    # a peer's record, copied in by the operator
    (enrollment / 'peer.json').write_text('{}')
    policy = pathlib.Path(stack.env['NOVA_CONF_DIR']) / (
        'vtpm-migration-policy.json')
    stack.run('stack', 'post-config')
    host = subprocess.run(['hostname', '-s'], capture_output=True,
                          text=True, check=True).stdout.strip()
    record = enrollment / f'{host}.json'
    common = f'cli --config-file {stack.nova_conf} --format json'
    records = sorted([enrollment / 'peer.json', record])
    allow = ' '.join(f'--enrollment {r}' for r in records)
    ca_dir = pathlib.Path(stack.env['DATA_DIR']) / (
        'vtpm_migration_attestation_ca')
    bundle = state / 'ek-ca-bundle.pem'
    nova_host = socket.gethostname()
    assert _cli_calls(stack) == [
        f'{common} enroll --host {nova_host} --output {record}',
        f'{common} ca init --ca-dir {ca_dir}',
        f'{common} ca enroll-local --ca-dir {ca_dir} --ek-ca-bundle '
        f'{bundle} --host {nova_host}',
        f'{common} policy generate --ca-bundle {bundle} --attestation-ca '
        f'{ca_dir / "ca-cert.pem"} --name {host} {allow} --output {policy}',
    ]
    stack.run('stack', 'extra')
    assert _cli_calls(stack)[-1] == f'{common} policy check {policy}'


def test_hardware_tpm_needs_an_ek_ca_bundle(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'device'
    proc = stack.run('stack', 'post-config', check=False)
    assert proc.returncode != 0
    assert 'VTPM_MIGRATION_EK_CA_BUNDLE must name the PEM file' in (
        proc.stderr)
    assert _cli_calls(stack) == []


def _get_random(tcti: str, log: pathlib.Path) -> bytes:
    tpm2_pytss = pytest.importorskip('tpm2_pytss')
    deadline = time.monotonic() + 10
    while True:
        try:
            ctx = tpm2_pytss.ESAPI(tpm2_pytss.TCTILdr.parse(tcti))
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f'swtpm unreachable at {tcti}: {exc}; its log:\n'
                    f'{log.read_text() if log.exists() else "(none)"}'
                ) from exc
            time.sleep(0.1)
    with ctx:
        return bytes(ctx.get_random(8))


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # reap if it is our grandchild's zombie; otherwise wait
        time.sleep(0.05)
    raise AssertionError(f'swtpm {pid} still running after unstack')


def _vendor_bundle(stack: Stack) -> str:
    bundle = stack.root / 'vendor-ek-cas.pem'
    bundle.write_text('-----BEGIN CERTIFICATE-----\n')
    return str(bundle)


def test_post_config_is_idempotent(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'device'
    stack.env['VTPM_MIGRATION_EK_CA_BUNDLE'] = _vendor_bundle(stack)
    stack.run('stack', 'post-config')
    first = stack.nova_conf.read_text()
    stack.run('stack', 'post-config')
    assert stack.nova_conf.read_text() == first
    conf = stack.conf()
    assert conf['filter_scheduler']['available_filters'].count(FILTER) == 1
    assert conf['filter_scheduler']['enabled_filters'][0].split(',').count(
        FILTER_NAME) == 1


def test_compute_node_with_hardware_tpm(stack: Stack) -> None:
    stack.env['ENABLED_SERVICES'] = 'n-cpu'
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'device'
    stack.env['VTPM_MIGRATION_TCTI'] = 'device:/dev/tpmrm1'
    stack.env['VTPM_MIGRATION_ENFORCEMENT'] = 'warn'
    stack.env['VTPM_MIGRATION_EK_CA_BUNDLE'] = _vendor_bundle(stack)
    stack.run('stack', 'post-config')
    conf = stack.conf()
    assert conf['vtpm_migration']['tcti'] == ['device:/dev/tpmrm1']
    assert conf['vtpm_migration']['enforcement'] == ['warn']
    # detected: Debian's swtpm runs as tss, Ubuntu's as swtpm
    assert conf['libvirt']['swtpm_user'][0] in ('tss', 'swtpm')
    # no scheduler here: the filter list is DevStack's
    assert conf['filter_scheduler'] == {'enabled_filters': [DEVSTACK_FILTERS]}
    assert not any(ln.startswith('run_process') for ln in stack.log)
    assert [c.split()[5] for c in _cli_calls(stack)] == [
        'enroll', 'ca', 'ca', 'policy']
    assert f'--ca-bundle {_vendor_bundle(stack)}' in _cli_calls(stack)[3]
    stack.run('unstack')
    assert 'stop_process vtpm-host-swtpm' not in stack.log


def test_scheduler_node_without_enabled_filters(stack: Stack) -> None:
    stack.env['ENABLED_SERVICES'] = 'n-api,n-sch'
    stack.nova_conf.write_text('[DEFAULT]\n')
    stack.run('stack', 'post-config')
    conf = stack.conf()
    # Nova's default filters are kept, not replaced by ours alone
    assert conf['filter_scheduler']['enabled_filters'] == [
        'ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,'
        'ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter,'
        + FILTER_NAME]
    assert conf['filter_scheduler']['available_filters'] == [
        'nova.scheduler.filters.all_filters', FILTER]
    _assert_nova_loads_filters(conf['filter_scheduler'])
    assert 'vtpm_migration' not in conf
    assert 'compute_driver' not in conf['DEFAULT']
    assert _cli_calls(stack) == []
    stack.run('stack', 'extra')
    assert _cli_calls(stack) == []


def test_disabled_service_changes_nothing(stack: Stack) -> None:
    # local.conf's "disable_service vtpm-migration" runs before the
    # plugin's settings, which then cannot enable it again
    stack.env['DISABLED_SERVICES'] = 'vtpm-migration'
    for phase in (('stack', 'install'), ('stack', 'post-config'),
                  ('stack', 'extra'), ('stack', 'test-config'),
                  ('unstack',), ('clean',)):
        stack.run(*phase)
    assert stack.nova_conf.read_text() == BASE_NOVA_CONF
    assert not any(ln.startswith(('install_package', 'setup_develop',
                                  'cli ', 'iniset', 'run_process'))
                   for ln in stack.log)
    assert not pathlib.Path(stack.env['TEMPEST_CONFIG']).exists()


@pytest.mark.parametrize('failing', ['enroll', 'ca init', 'ca enroll-local',
                                     'policy generate'])
def test_cli_failure_stops_stack(stack: Stack, failing: str) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'device'
    stack.env['VTPM_MIGRATION_EK_CA_BUNDLE'] = _vendor_bundle(stack)
    stack.env['FAKE_CLI_FAIL'] = failing
    proc = stack.run('stack', 'post-config', check=False)
    assert proc.returncode != 0
    assert f'nova-vtpm-migration {failing} failed' in proc.stderr


def test_extra_without_policy_fails(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'device'
    proc = stack.run('stack', 'extra', check=False)
    assert proc.returncode != 0
    assert 'no trust policy at' in proc.stderr


def test_invalid_host_tpm_mode_fails(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_HOST_TPM'] = 'hardware'
    proc = stack.run('stack', 'post-config', check=False)
    assert proc.returncode != 0
    assert 'VTPM_MIGRATION_HOST_TPM must be auto, device or swtpm' in (
        proc.stderr)
    assert stack.nova_conf.read_text() == BASE_NOVA_CONF


def test_invalid_enforcement_fails(stack: Stack) -> None:
    stack.env['VTPM_MIGRATION_ENFORCEMENT'] = 'ignore'
    proc = stack.run('stack', 'post-config', check=False)
    assert proc.returncode != 0
    assert 'VTPM_MIGRATION_ENFORCEMENT must be refuse or warn' in proc.stderr


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which('shellcheck')
    assert shellcheck, 'shellcheck is required (Debian package shellcheck)'
    files = [DEVSTACK / 'plugin.sh', DEVSTACK / 'settings',
             DEVSTACK / 'override-defaults', STUB / 'functions.sh',
             DEVSTACK / 'tools' / 'ek-ca.sh', STUB / 'nova-vtpm-migration']
    proc = subprocess.run([shellcheck, '-s', 'bash', *map(str, files)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ek_ca_script_creates_then_reuses_the_ca(tmp_path: pathlib.Path
                                                 ) -> None:
    # The multinode job creates each node's CA before DevStack runs; the
    # plugin's swtpm must then get its EK certificate from that same CA.
    x509 = pytest.importorskip('cryptography.x509')
    script = DEVSTACK / 'tools' / 'ek-ca.sh'
    ca = tmp_path / 'ca'
    subprocess.run([str(script), str(ca)], check=True, timeout=120)
    issuer_pem = (ca / 'issuercert.pem').read_bytes()
    assert not list(tmp_path.glob('*/tpm2-00.permall'))    # CA only

    tpm = tmp_path / 'tpm'
    subprocess.run([str(script), str(ca), str(tpm)], check=True,
                   timeout=120)
    assert (ca / 'issuercert.pem').read_bytes() == issuer_pem   # reused
    issuer = x509.load_pem_x509_certificate(issuer_pem)
    root = x509.load_pem_x509_certificate(
        (ca / 'swtpm-localca-rootca-cert.pem').read_bytes())
    issuer.verify_directly_issued_by(root)
    ek_certs = sorted(tpm.glob('ek-*.crt'))
    assert ek_certs
    for path in ek_certs:
        x509.load_der_x509_certificate(path.read_bytes()
                                       ).verify_directly_issued_by(issuer)

    # a second run keeps the TPM state (no re-provisioning)
    before = (tpm / 'tpm2-00.permall').read_bytes()
    subprocess.run([str(script), str(ca), str(tpm)], check=True,
                   timeout=120)
    assert (tpm / 'tpm2-00.permall').read_bytes() == before
