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

"""The swtpm simulation module itself: CA, hosts, teardown."""

import os
import pathlib
import subprocess
import sys
import textwrap

from cryptography import x509
import pytest
import tpm2_pytss

from tests.functional.swtpm_fixtures import attach
from tests.support import swtpm

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_ca_bundle(swtpm_ca: swtpm.SwtpmCA) -> None:
    root, inter = (x509.load_pem_x509_certificate(p.encode())
                   for p in swtpm_ca.bundle_pem())
    assert root.subject == root.issuer
    inter.verify_directly_issued_by(root)
    assert str(swtpm_ca.dir).startswith(('/tmp', os.environ.get(
        'TMPDIR', '/tmp')))


def test_untrusted_ca_differs(swtpm_ca: swtpm.SwtpmCA,
                              untrusted_ca: swtpm.SwtpmCA) -> None:
    assert swtpm_ca.bundle_pem() != untrusted_ca.bundle_pem()


def test_extend_and_power_cycle(swtpm_factory: object) -> None:
    sim = swtpm_factory('cycle')  # type: ignore
    before = sim.tpm.pcr_values()
    sim.swtpm.extend_pcr(16, b'x')
    assert sim.tpm.pcr_values()[16] != before[16]
    sim.swtpm.power_cycle()
    assert sim.tpm.pcr_values() == before
    assert sim.swtpm.tcti.startswith('swtpm:host=127.0.0.1,port=')


def test_failed_start_leaves_nothing(swtpm_ca: swtpm.SwtpmCA,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swtpm, 'SWTPM', '/bin/false')
    before = set(pathlib.Path('/tmp').glob('nvm-doomed-*'))
    with pytest.raises(swtpm.SimulationError, match='did not start'):
        swtpm.SwtpmHostTpm(swtpm_ca, 'doomed', clone=True)
    assert set(pathlib.Path('/tmp').glob('nvm-doomed-*')) == before


def test_killed_runner_leaves_no_swtpm(tmp_path: pathlib.Path) -> None:
    """SIGKILL of the process owning a host also ends its swtpm."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.support import swtpm
        ca = swtpm.SwtpmCA('orphan', base_dir={str(tmp_path)!r})
        host = swtpm.SwtpmHostTpm(ca, 'orphan', clone=True,
                                  base_dir={str(tmp_path)!r})
        print(host.port, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, '-c', script],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    import time
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            tpm2_pytss.ESAPI(f'swtpm:host=127.0.0.1,port={port}').close()
        except tpm2_pytss.TSS2_Exception:
            break
        time.sleep(0.05)
    else:
        pytest.fail('swtpm survived its killed parent')


def test_attach_gives_working_host(swtpm_factory: object) -> None:
    sim = swtpm_factory('attach')  # type: ignore
    again = attach(sim.swtpm)
    assert again.tpm.identity() == sim.tpm.identity()
