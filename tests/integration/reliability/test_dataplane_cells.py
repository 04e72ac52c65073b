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


"""Data-plane cells of the fault-injection matrix.

Each cell live-migrates a fresh instance with the real data plane of a
shared :class:`~tests.support.dataplane.testbed.Testbed` (swtpm host
TPMs, protocol engines, QEMU TCG guests, swtpm vTPMs), injects one fault
at one step, runs recovery and checks, together:

- the guest runs on exactly one host (or, when the fault killed the only
  running guest, the key is usable exactly where the vTPM state
  survives);
- exactly one key store holds an ACTIVE key for the instance;
- no swtpm/QEMU of the instance is left on the losing host;
- the secret's bytes are in no file under the testbed directory.

Steps: ``before_qemu`` (phase 2 done, destination vTPM and incoming QEMU
started, source QEMU not yet migrating), ``during_qemu`` (the QEMU
migration is in flight, kept there by a bandwidth cap), ``before_commit``
(QEMU reported ``completed``, the engines have not committed).

Faults: SIGKILL of the destination QEMU, of the destination vTPM, of the
source QEMU, and a crash of the source engine (the process running the
migration dies: the engine is dropped and reopened from its journal and
key store on disk, then recovers with an outcome oracle that asks the
data plane where the guest runs).

The data-plane part of recovery (what Nova's rollback / the restarted
compute service does: cancel an outgoing QEMU migration, resume a paused
source, remove the instance from the host it does not run on) is done by
:func:`_settle_dataplane` here; the key custody is left entirely to the
engines' ``recover()``.
"""

import collections
import os
import time
import typing as ty

import pytest

from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import states
from tests.integration.dataplane import conftest as dp_conftest
from tests.support.dataplane import host as host_mod
from tests.support.dataplane import migration
from tests.support.dataplane import secured
from tests.support.dataplane import testbed as testbed_mod

_K = states.KeyState

STEPS = ('before_qemu', 'during_qemu', 'before_commit')
FAULTS = ('kill_dst_qemu', 'kill_dst_vtpm', 'kill_src_qemu',
          'crash_src_engine')

#: Cells that make no sense, with the reason.
SKIPPED: dict[tuple[str, str], str] = {
    # Before QEMU starts, killing the source QEMU is a plain
    # guest crash before any hand-over: the data plane refuses to migrate
    # a guest that does not run and there is nothing migration-specific
    # left to observe (the during_qemu cell covers the source QEMU dying
    # while the key is in flight).
    ('before_qemu', 'kill_src_qemu'): 'a guest crash before any hand-over',
}

#: Cells that show a known product bug (strict xfail): cell -> finding.
XFAIL: dict[tuple[str, str], str] = {}

#: (step, fault) -> (passed, outcome, seconds), for the printed table.
RESULTS: dict[tuple[str, str], tuple[str, str, float]] = (
    collections.OrderedDict())


class Crash(BaseException):
    """The process running the migration dies here (not an ``Exception``:
    nothing in the data plane may catch and "handle" it)."""


@pytest.fixture(scope='module')
def tb(request: pytest.FixtureRequest
       ) -> ty.Iterator[testbed_mod.Testbed]:
    os.environ.setdefault('TSS2_LOG', 'all+NONE')
    bed = testbed_mod.Testbed(distinct_eks=False)
    try:
        yield bed
    finally:
        tb_dir = bed.dir
        bed.close()
        stray = dp_conftest.processes_mentioning(tb_dir)
        _print_table(request)
        assert not stray, f'stray processes left behind: {stray}'


def table() -> str:
    """The cells of this run as a text table."""
    lines = [f'{"step":14s} {"fault":17s} {"result":6s} {"secs":>5s}  '
             'outcome']
    for (step, fault), (res, outcome, secs) in RESULTS.items():
        lines.append(f'{step:14s} {fault:17s} {res:6s} {secs:5.1f}  '
                     f'{outcome}')
    return '\n'.join(lines)


def _print_table(request: pytest.FixtureRequest) -> None:
    if not RESULTS:
        return
    capman = request.config.pluginmanager.get_plugin('capturemanager')
    text = '\n--- data-plane fault cells ---\n' + table() + '\n'
    if capman is None:
        print(text)
        return
    with capman.global_and_fixture_disabled():
        print(text)


# -- fault injection ---------------------------------------------------------

#: Faults actually injected in the current cell (step label per fault).
INJECTED: list[str] = []
#: Oracle answers given in the current cell.
ORACLE: list[str] = []


def _inject(tb: testbed_mod.Testbed, inst: str, fault: str) -> None:
    src, dst = tb.hosts['src'], tb.hosts['dst']
    INJECTED.append(fault)
    if fault == 'kill_dst_qemu':
        guest = dst.instance(inst).guest
        assert guest is not None
        guest.kill()
    elif fault == 'kill_dst_vtpm':
        vt = dst.instance(inst).vtpm
        assert vt is not None
        vt.kill()
    elif fault == 'kill_src_qemu':
        guest = src.instance(inst).guest
        assert guest is not None
        guest.kill()
    elif fault == 'crash_src_engine':
        raise Crash()
    else:  # pragma: no cover - a typo in the matrix
        raise AssertionError(fault)


class FaultyExchange(secured.EngineKeyExchange):
    """The secured exchange, with a fault just before the commit."""

    def __init__(self, tb: testbed_mod.Testbed, inst: str,
                 fault: str | None) -> None:
        super().__init__(tb.engines['src'], tb.engines['dst'])
        self.tb = tb
        self.inst = inst
        self.fault = fault

    def commit(self, instance_uuid: str) -> None:
        if self.fault is not None:
            fault, self.fault = self.fault, None
            _inject(self.tb, self.inst, fault)
        super().commit(instance_uuid)


def _run(tb: testbed_mod.Testbed, inst: str, step: str,
         fault: str) -> tuple[str, FaultyExchange]:
    """Migrate *inst* src -> dst with *fault* at *step*.

    :returns: the data plane's outcome (``crashed`` if the migrating
        process died) and the exchange (for the migration id).
    """
    src, dst = tb.hosts['src'], tb.hosts['dst']
    exchange = FaultyExchange(tb, inst,
                              fault if step == 'before_commit' else None)
    kwargs: dict[str, ty.Any] = {}
    real_prepare = dst.prepare_incoming
    if step == 'before_qemu':
        def prepare(uuid: str, key: ty.Any) -> str:
            uri = real_prepare(uuid, key)
            _inject(tb, inst, fault)
            return uri
        # An instance attribute shadows the method for this
        # cell only; removed below.
        dst.prepare_incoming = prepare  # type: ignore[method-assign]
    elif step == 'during_qemu':
        fired: list[bool] = []

        def on_poll(info: dict[str, ty.Any]) -> None:
            if not fired and info.get('status') == 'active' \
                    and info.get('ram', {}).get('transferred', 0) > 0:
                fired.append(True)
                _inject(tb, inst, fault)
        kwargs = {'max_bandwidth': 2_000_000, 'on_poll': on_poll}
    try:
        result = migration.live_migrate(exchange, src, dst, inst,
                                        timeout=30.0, **kwargs)
        outcome = result.outcome
    except Crash:
        outcome = 'crashed'
    except Exception as e:  # noqa: BLE001 - recorded as the outcome
        outcome = f'raised {type(e).__name__}'
    finally:
        if step == 'before_qemu':
            del dst.prepare_incoming
    return outcome, exchange


# -- recovery ----------------------------------------------------------------

def _running_on(tb: testbed_mod.Testbed, inst: str) -> list[str]:
    out = []
    for name, h in tb.hosts.items():
        i = h.instances.get(inst)
        if i is not None and i.guest is not None and i.guest.is_running():
            out.append(name)
    return out


def _oracle(tb: testbed_mod.Testbed
            ) -> ty.Callable[[journal_mod.MigrationRow], str]:
    """Outcome oracle: where does the guest of the row's instance run?"""
    def oracle(row: journal_mod.MigrationRow) -> str:
        where = _running_on(tb, row.instance_uuid)
        answer = engine_mod.UNKNOWN
        if where == [row.peer]:
            answer = 'commit'
        elif where == ['src']:
            answer = 'abort'
        ORACLE.append(answer)
        return answer
    return oracle


def _reopen_src_engine(tb: testbed_mod.Testbed,
                       oracle: engine_mod.OutcomeOracle | None = None
                       ) -> None:
    """The source host's engine restarts from its files on disk."""
    old = tb.engines['src']
    tpm = old.tpm
    tb.transport.unregister('src')
    old.close()
    new = engine_mod.MigrationEngine.open(
        'src', tpm, tb.policy, os.path.join(tb.dir, 'src', 'engine'),
        tb.transport, session_lifetime=300,
        outcome_oracle=oracle or _oracle(tb),
        ak_certificate=tb.sim.ak_certificate('src'))
    tb.transport.register('src', new.handle)
    tb.engines['src'] = new


def _settle_dataplane(tb: testbed_mod.Testbed, inst: str) -> None:
    """What the restarted compute service / Nova's rollback does.

    An outgoing QEMU migration of a dead migration job is cancelled and
    the source resumed (as libvirt does for a job without its daemon);
    a destination whose guest does not run is removed when the source
    still has a guest process to resume.
    """
    src, dst = tb.hosts['src'], tb.hosts['dst']
    s = src.instances.get(inst)
    sg = s.guest if s is not None else None
    if sg is not None and sg.is_alive():
        info = sg.execute('query-migrate')
        if info.get('status') not in (None, 'completed', 'failed',
                                      'cancelled'):
            sg.execute('migrate_cancel')
            deadline = time.monotonic() + 10
            while sg.execute('query-migrate').get('status') not in (
                    'failed', 'cancelled', 'completed') and \
                    time.monotonic() < deadline:
                time.sleep(0.01)
    dst_runs = 'dst' in _running_on(tb, inst)
    if not dst_runs and sg is not None and sg.is_alive():
        dst.destroy_instance(inst)
        if sg.status() in ('postmigrate', 'paused', 'finish-migrate'):
            sg.execute('cont')


def _recover(tb: testbed_mod.Testbed, inst: str, crashed: bool,
             oracle: engine_mod.OutcomeOracle | None = None) -> None:
    if crashed:
        _settle_dataplane(tb, inst)
        _reopen_src_engine(tb, oracle)
    for name in ('src', 'dst'):
        tb.engines[name].outcome_oracle = oracle or _oracle(tb)
    for _ in range(2):
        for name in ('src', 'dst'):
            tb.engines[name].recover()
    # The data plane follows the key custody: a host whose key store no
    # longer holds the key drops what is left of the instance.
    for name, h in tb.hosts.items():
        if inst in h.instances and \
                tb.engines[name].keystore.state(inst) is not _K.ACTIVE \
                and name not in _running_on(tb, inst):
            h.destroy_instance(inst)


# -- invariants ------------------------------------------------------------

def _files_with(root: str, needle: bytes) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            try:
                with open(path, 'rb') as fh:
                    data = fh.read()
            except OSError:
                continue
            if needle in data or needle.hex().encode() in data:
                found.append(path)
    return found


def _instance_procs(h: host_mod.SimHost, inst: str) -> list[ty.Any]:
    return (dp_conftest.processes_mentioning(h.state_dir(inst))
            + dp_conftest.processes_mentioning(h.run_dir(inst)))


def _check(tb: testbed_mod.Testbed, inst: str, secret: bytes) -> str:
    running = _running_on(tb, inst)
    active = [n for n in tb.names
              if tb.engines[n].keystore.state(inst) is _K.ACTIVE]
    with_state = [n for n in tb.names if tb.hosts[n].has_vtpm_state(inst)]
    assert len(active) == 1, f'ACTIVE keys at {active}'
    if running:
        assert running == active, (
            f'guest runs on {running}, key ACTIVE at {active}')
        winner = running[0]
    else:
        # The fault killed the only running guest: the key stays usable
        # exactly where the surviving vTPM state is.
        assert with_state == active, (
            f'no guest runs; vTPM state at {with_state}, key ACTIVE at '
            f'{active}')
        winner = active[0]
    for name in tb.names:
        if name != winner:
            assert _instance_procs(tb.hosts[name], inst) == [], name
            assert not tb.hosts[name].has_vtpm_state(inst), name
    assert _files_with(tb.dir, secret) == []
    return ('runs on ' + running[0]) if running else (
        'guest lost; key+state on ' + winner)


# -- the matrix ------------------------------------------------------------

def _params() -> list[ty.Any]:
    out = []
    for step in STEPS:
        for fault in FAULTS:
            marks: list[ty.Any] = []
            if (step, fault) in SKIPPED:
                marks.append(pytest.mark.skip(reason=SKIPPED[step, fault]))
            if (step, fault) in XFAIL:
                marks.append(pytest.mark.xfail(strict=True,
                                               reason=XFAIL[step, fault]))
            out.append(pytest.param(step, fault, marks=marks,
                                    id=f'{step}-{fault}'))
    return out


@pytest.mark.parametrize('step,fault', _params())
def test_cell(tb: testbed_mod.Testbed, step: str, fault: str) -> None:
    started = time.monotonic()
    outcome = 'not run'
    res = 'FAIL'
    try:
        INJECTED.clear()
        ORACLE.clear()
        inst, _contents = tb.new_instance('src')
        secret = bytes(tb.engines['src'].keystore.read(inst))
        outcome, _exchange = _run(tb, inst, step, fault)
        # The cell tested what it says: the fault happened at its step.
        assert INJECTED == [fault], INJECTED
        _recover(tb, inst, outcome == 'crashed')
        if fault == 'crash_src_engine':
            # The source crashed with the key move in doubt: only the
            # oracle (the data plane) could decide it.
            assert outcome == 'crashed'
            assert ORACLE and ORACLE[0] != engine_mod.UNKNOWN, ORACLE
            outcome += f' (oracle: {ORACLE[0]})'
        outcome = f'{outcome}; ' + _check(tb, inst, secret)
        res = 'pass'
    finally:
        RESULTS[step, fault] = (res, outcome, time.monotonic() - started)


def test_secret_scan_finds_a_plaintext_secret(tb: testbed_mod.Testbed
                                               ) -> None:
    """The "no plaintext secret" check can fail."""
    secret = os.urandom(32)
    path = os.path.join(tb.dir, 'leak.bin')
    with open(path, 'wb') as f:
        f.write(b'x' * 100 + secret + b'y')
    try:
        assert _files_with(tb.dir, secret) == [path]
    finally:
        os.unlink(path)


def test_presumed_abort_oracle_breaks_the_invariant(
        tb: testbed_mod.Testbed) -> None:
    """The cell check can fail: the before_commit source crash recovered
    with ``presumed_abort`` (unsafe once the guest may have been handed
    over, see ``engine.no_oracle``) leaves the guest running on the
    destination while the source's key is the ACTIVE one."""
    inst, _contents = tb.new_instance('src')
    secret = bytes(tb.engines['src'].keystore.read(inst))
    try:
        outcome, _exchange = _run(tb, inst, 'before_commit',
                                  'crash_src_engine')
        assert outcome == 'crashed'
        _recover(tb, inst, True, oracle=engine_mod.presumed_abort)
        assert _running_on(tb, inst) == ['dst']
        assert tb.engines['src'].keystore.state(inst) is _K.ACTIVE
        with pytest.raises(AssertionError, match='guest runs on'):
            _check(tb, inst, secret)
    finally:
        for h in tb.hosts.values():
            h.destroy_instance(inst)
        for eng in tb.engines.values():
            eng.outcome_oracle = _oracle(tb)
