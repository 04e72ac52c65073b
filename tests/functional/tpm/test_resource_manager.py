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

"""The host TPM layer behind a resource manager, as on a real host.

Real hosts reach their TPM through ``/dev/tpmrm0``, which virtualises the
transient object slots and flushes a client's objects and sessions when it
disconnects. ``tpm2-abrmd`` on a private D-Bus gives the same semantics in
front of swtpm; the layer talks to it through the ``tabrmd:`` TCTI.
"""

import collections.abc
import os
import pathlib
import shutil
import subprocess
import time

import pytest
import tpm2_pytss
from tpm2_pytss import constants

from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import PCRS
from tests.support import attestation
from tests.support import swtpm

TABRMD = 'tabrmd:bus_type=session'
_TR = constants.ESYS_TR


class _Abrmd:
    """dbus-daemon + tpm2-abrmd in front of one swtpm."""

    def __init__(self, sim: swtpm.SwtpmHostTpm) -> None:
        self.sim = sim
        self.procs: list[subprocess.Popen[str]] = []
        self.log = ''

    def start(self) -> str | None:
        """Start both daemons; return why not, or None."""
        for tool in ('dbus-daemon', 'tpm2-abrmd'):
            if shutil.which(tool) is None:
                return f'{tool} is not installed (tools/ensure-system-' \
                       'packages.sh installs it)'
        if not tpm2_pytss.TCTILdr.is_available('tabrmd'):
            return 'the tabrmd TCTI (libtss2-tcti-tabrmd0) is not installed'
        bus = subprocess.Popen(
            ['dbus-daemon', '--session', '--nofork', '--print-address=1'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append(bus)
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        if not address:
            return 'dbus-daemon did not start'
        os.environ['DBUS_SESSION_BUS_ADDRESS'] = address
        self.procs.append(subprocess.Popen(
            ['tpm2-abrmd', '--session', f'--tcti={self.sim.tcti}',
             '--allow-root'],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, TSS2_LOG='all+NONE')))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.procs[-1].poll() is not None:
                return 'tpm2-abrmd exited: ' + self._stderr()
            try:
                tpm2_pytss.TCTILdr.parse(TABRMD).close()
                return None
            except Exception:   # noqa: S112 - not registered on the bus yet
                time.sleep(0.1)
        return 'tpm2-abrmd did not register on D-Bus within 15 s'

    def _stderr(self) -> str:
        proc = self.procs[-1]
        return proc.stderr.read()[-500:] if proc.stderr else ''

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.environ.pop('DBUS_SESSION_BUS_ADDRESS', None)


@pytest.fixture(scope='module')
def abrmd(swtpm_ca: swtpm.SwtpmCA) -> collections.abc.Iterator[_Abrmd]:
    """One swtpm with a resource manager (one per module: the tabrmd TCTI
    keeps its D-Bus connection per process)."""
    saved = os.environ.get('DBUS_SESSION_BUS_ADDRESS')
    with swtpm.SwtpmHostTpm(swtpm_ca, 'abrmd', clone=True) as sim:
        rm = _Abrmd(sim)
        try:
            reason = rm.start()
            if reason is not None:
                pytest.skip(f'no resource manager: {reason}')
            yield rm
        finally:
            rm.stop()
            if saved is not None:
                os.environ['DBUS_SESSION_BUS_ADDRESS'] = saved


def _transient(e: tpm2_pytss.ESAPI) -> list[int]:
    _, cap = e.get_capability(constants.TPM2_CAP.HANDLES,
                              constants.TPM2_HC.TRANSIENT_FIRST, 16)
    return [int(h) for h in cap.data.handles]


def test_host_tpm_through_the_resource_manager(
        abrmd: _Abrmd, tmp_path: pathlib.Path) -> None:
    ctx = context.TpmContext(TABRMD, lock_timeout=10)
    try:
        tpm = host_mod.HostTpm(ctx, tmp_path, pcr_selection=PCRS)
        ident = tpm.identity()
        quote = tpm.quote(b'nonce')
        assert quote.attest
        binding = tpm.certified_binding_key(b'n')
        verify.verify_binding_key(
            binding, ident.ak_public, b'n',
            _policy(abrmd, tpm), dict(quote.pcr_values))
        wrapped = verify.wrap(binding.public, b'vtpm secret', b'info')
        assert tpm.unwrap(wrapped, b'info') == b'vtpm secret'
        assert tpm.unseal(tpm.seal(b'sealed')) == b'sealed'
        assert tpm.activate_credential(
            verify.make_credential(ident, b'c' * 32)) == b'c' * 32
        with ctx.meter.window() as w:
            tpm.quote(b'n')
        print('quote through tabrmd:', w.result.counts)
        assert w.result.counts['Quote'] == 1
        assert context.loaded_handles(ctx) == set()
    finally:
        ctx.close()
    # swtpm itself holds nothing: the resource manager swaps objects out.
    with tpm2_pytss.ESAPI(abrmd.sim.tcti) as raw:
        assert _transient(raw) == []


def test_objects_are_gone_when_the_client_disconnects(
        abrmd: _Abrmd) -> None:
    client = tpm2_pytss.ESAPI(TABRMD)
    try:
        client.create_primary(None, objects.srk_template(), _TR.OWNER)
        mine = _transient(client)
        assert len(mine) == 1      # the client sees its own object
        other = tpm2_pytss.ESAPI(TABRMD)
        try:
            assert _transient(other) == []   # virtualised per connection
        finally:
            other.close()
    finally:
        client.close()             # "crashes" without flushing
    # A later user finds nothing to clean up: the resource manager flushed
    # the disconnected client's object (without it, TpmContext's connect
    # would have to flush it, see test_leftover_without_resource_manager).
    ctx = context.TpmContext(TABRMD, lock_timeout=10)
    try:
        with ctx.meter.window() as w:
            assert context.loaded_handles(ctx) == set()
        with ctx.esys() as e:
            with pytest.raises(tpm2_pytss.TSS2_Exception):
                e.raw.tr_from_tpmpublic(mine[0])
    finally:
        ctx.close()
    assert 'FlushContext' not in w.result.counts
    with tpm2_pytss.ESAPI(abrmd.sim.tcti) as raw:
        assert _transient(raw) == []


def test_leftover_without_resource_manager(swtpm_factory: object) -> None:
    """The contrast: straight to swtpm, a crashed client's object stays
    loaded until TpmContext's connect flushes it (counted by the meter)."""
    sim = swtpm_factory('no-rm')  # type: ignore[operator]
    with tpm2_pytss.ESAPI(sim.swtpm.tcti) as client:
        client.create_primary(None, objects.srk_template(), _TR.OWNER)
    with tpm2_pytss.ESAPI(sim.swtpm.tcti) as raw:
        assert len(_transient(raw)) == 1
    with sim.ctx.meter.window() as w:
        assert context.loaded_handles(sim.ctx) == set()
    assert w.result.counts['FlushContext'] == 1



def _policy(abrmd: _Abrmd, tpm: host_mod.HostTpm
            ) -> policy_mod.TrustPolicy:
    return attestation.golden_policy(abrmd.sim.ca.bundle_pem(),
                                              tpm.pcr_values())
