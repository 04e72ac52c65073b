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



"""Fault injection around a migration engine, from the outside.

A :class:`FaultPlan` names one *step* of the protocol and one *fault*;
:class:`Injector` wraps the engine's transport, TPM object, journal
database connection and request handlers (no change to the protocol
code) and fires the fault at the step's n-th occurrence:

============  ===========================================================
fault         effect
============  ===========================================================
kill_src      ``SIGKILL`` of the source process at the step
kill_dst      ``SIGKILL`` of the destination process at the step
lost          the request is dropped (sender: transport error)
duplicated    the request is delivered twice (first reply returned)
reordered     the request is held back and delivered after the next one
timeout       the request is delivered, its reply dropped
tpm_error     the TPM command fails (``TpmCommandError``, TPM_RC_FAILURE)
disk_full     the journal's file system is really filled (with
              ``fill_dir``, e.g. a private tmpfs) or the journal write
              fails with SQLITE_FULL and every later write too; until
              :meth:`Injector.heal` (space freed)
io_error      the journal write fails once with SQLITE_IOERR
============  ===========================================================

Steps are ``msg.<type>`` (a request and its reply), ``<host>.tpm.<method>``
(a ``HostTpm`` command) and ``<host>.journal.<STATE>`` (the journal write
entering a state, durable at its transaction's commit). A kill at a
message step happens after the receiver processed the request: in the
source after the reply arrived (before it is used), in the destination
before the reply is sent. A kill at a TPM step happens after the command
returned, at a journal step right after the transaction committed.

Simulation and test code only: product code never imports it.
"""

import collections
import dataclasses
import json
import os
import signal
import sqlite3
import threading
import typing as ty

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import errors as tpm_errors

ENV = 'NVM_FAULT'
#: Directory on the file system a real ``disk_full`` fault fills.
FILL_ENV = 'NVM_FAULT_FILL'
FILLER = '.nvm-filler'

FAULTS = ('kill_src', 'kill_dst', 'lost', 'duplicated', 'reordered',
          'timeout', 'tpm_error', 'disk_full', 'io_error')
MSG_FAULTS = ('kill_src', 'kill_dst', 'lost', 'duplicated', 'reordered',
              'timeout')
TPM_METHODS = frozenset({'quote', 'activate_credential',
                         'certified_binding_key', 'unwrap', 'sign', 'seal',
                         'unseal', 'identity', 'certified_signing_key'})
_ROLE_HOST = {'source': 'src', 'destination': 'dst'}
_WRITES = ('INSERT', 'UPDATE', 'DELETE', 'REPLACE')


@dataclasses.dataclass(frozen=True)
class Step:
    """One protocol step of the fault matrix.

    :ivar name: ``msg.<type>``, ``<host>.tpm.<method>`` or
        ``<host>.journal.<STATE>``.
    :ivar flow: ``commit`` or ``abort``: the orchestrator's decision
        after the key transfer (abort-only steps need the abort flow).
    :ivar nth: which occurrence of the step is faulted.
    """

    name: str
    flow: str = 'commit'
    nth: int = 1

    @property
    def kind(self) -> str:
        """``msg``, ``tpm`` or ``journal``."""
        return 'msg' if self.name.startswith('msg.') else \
            self.name.split('.')[1]

    @property
    def owner(self) -> str:
        """The host performing the step (``src``/``dst``; for a message
        the sender, always the source in the migration flow)."""
        return 'src' if self.kind == 'msg' else self.name.split('.')[0]

    @property
    def label(self) -> str:
        """The row label of the matrix."""
        suffix = f'#{self.nth}' if self.nth > 1 else ''
        flow = ' (abort)' if self.flow == 'abort' else ''
        return f'{self.name}{suffix}{flow}'


def _s(name: str, flow: str = 'commit', nth: int = 1) -> Step:
    return Step(name, flow, nth)


#: Every step of the matrix, in protocol order.
STEPS: tuple[Step, ...] = (
    _s('msg.hello'), _s('msg.attest'), _s('msg.prepare'),
    _s('msg.transfer'), _s('msg.commit'), _s('msg.abort', 'abort'),
    _s('src.tpm.quote'), _s('src.tpm.activate_credential'),
    _s('src.tpm.unseal'), _s('src.tpm.sign'),
    _s('dst.tpm.quote'), _s('dst.tpm.activate_credential'),
    _s('dst.tpm.certified_binding_key'), _s('dst.tpm.unwrap'),
    _s('dst.tpm.seal'), _s('dst.tpm.sign'),
    _s('src.journal.ATTESTED'), _s('src.journal.PREPARED'),
    _s('src.journal.TRANSFERRING'), _s('src.journal.TRANSFERRED'),
    _s('src.journal.COMMITTING'), _s('src.journal.COMMITTED'),
    _s('src.journal.ABORTING', 'abort'), _s('src.journal.ABORTED', 'abort'),
    _s('dst.journal.RESERVED'), _s('dst.journal.INSTALLED'),
    _s('dst.journal.COMMITTED'), _s('dst.journal.ABORTED', 'abort'),
)


def applicable(step: Step, fault: str) -> bool:
    """Whether ``fault`` is meaningful at ``step`` (else the matrix cell
    is "n/a")."""
    if step.kind == 'msg':
        return fault in MSG_FAULTS
    if fault in ('kill_src', 'kill_dst'):
        return fault == f'kill_{step.owner}'
    if step.kind == 'tpm':
        return fault == 'tpm_error'
    return fault in ('disk_full', 'io_error')


def cells() -> list[tuple[Step, str]]:
    """Every applicable (step, fault) cell."""
    return [(s, f) for s in STEPS for f in FAULTS if applicable(s, f)]


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """The fault one process injects."""

    step: str
    fault: str
    nth: int = 1

    def to_env(self) -> str:
        """Serialise for the :data:`ENV` environment variable."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls, environ: ty.Mapping[str, str] | None = None
                 ) -> 'FaultPlan | None':
        """The plan in :data:`ENV`, if any."""
        text = (environ if environ is not None else os.environ).get(ENV)
        return cls(**json.loads(text)) if text else None

    @classmethod
    def for_cell(cls, step: Step, fault: str) -> tuple[str, 'FaultPlan']:
        """The host that injects a cell's fault, and its plan."""
        if fault == 'kill_dst':
            host = 'dst'
        elif step.kind == 'msg':
            host = 'src'
        else:
            host = step.owner
        return host, cls(step.name, fault, step.nth)


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Injector:
    """Fires one :class:`FaultPlan` in this process.

    :param host: the role name of this process (``src``/``dst``), the
        prefix of its TPM steps.
    :param plan: the fault (``None``: wrap but never fire).
    :param kill: how to die (default: ``SIGKILL`` of this process).
    :param fill_dir: a directory on the journal's file system: a
        ``disk_full`` fault really fills it (else SQLITE_FULL is injected).
    """

    def __init__(self, host: str, plan: FaultPlan | None,
                 kill: ty.Callable[[], None] = _sigkill,
                 fill_dir: str | None = None) -> None:
        self.host = host
        self.fill_dir = fill_dir
        self.plan = plan
        self.kill = kill
        self.counts: collections.Counter[str] = collections.Counter()
        self.fired = False
        self.full = False
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._held: list[tuple[transport_mod.Transport, str, bytes]] = []

    def hit(self, step: str, *faults: str) -> str | None:
        """Count one occurrence of ``step``; return the fault to fire now
        (one of ``faults``) or ``None``."""
        with self._lock:
            self.counts[step] += 1
            plan = self.plan
            if (self.fired or plan is None or plan.step != step
                    or plan.fault not in faults
                    or self.counts[step] != plan.nth):
                return None
            self.fired = True
            return plan.fault

    def heal(self) -> None:
        """The disk has space again."""
        self.full = False
        if self.fill_dir:
            try:
                os.unlink(os.path.join(self.fill_dir, FILLER))
            except FileNotFoundError:
                pass

    def fill(self) -> None:
        """Fill the file system of :attr:`fill_dir` (real ENOSPC)."""
        assert self.fill_dir
        chunk = b'\0' * 65536
        fd = os.open(os.path.join(self.fill_dir, FILLER),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, chunk)
                except OSError:
                    if len(chunk) == 1:
                        break
                    chunk = chunk[:len(chunk) // 2]
        finally:
            os.close(fd)

    # -- wiring -----------------------------------------------------------

    def install(self, engine: ty.Any) -> None:
        """Wrap a ``MigrationEngine``'s transport, TPM, journal and
        handlers (instance attributes; the classes are untouched)."""
        channel = engine.channel
        channel.transport = FaultyTransport(channel.transport, self)
        tpm = FaultyTpm(engine.tpm, self)
        engine.ctx.tpm = tpm
        channel.tpm = tpm
        engine.keystore._tpm = tpm
        engine.journal._db = FaultyConnection(engine.journal._db, self)
        call = channel.call

        def traced_call(peer: str, msg_type: str, *args: ty.Any,
                        **kwargs: ty.Any) -> ty.Any:
            self._tls.msg_type = msg_type
            try:
                return call(peer, msg_type, *args, **kwargs)
            finally:
                self._tls.msg_type = None
        channel.call = traced_call  # type: ignore[method-assign]
        dispatch = engine.destination.dispatch

        def killing_dispatch(sess: ty.Any, msg: ty.Any) -> bytes:
            reply: bytes = dispatch(sess, msg)
            if self.hit(f'msg.{msg.type}', 'kill_dst'):
                self.kill()
            return reply
        engine.destination.dispatch = killing_dispatch
        for name, msg_type in (('on_hello', 'hello'),
                               ('on_attest', 'attest')):
            channel.__dict__[name] = self._killing_phase1(
                getattr(channel, name), msg_type)

    def _killing_phase1(self, fn: ty.Callable[[ty.Any], bytes],
                        msg_type: str) -> ty.Callable[[ty.Any], bytes]:
        def wrapped(arg: ty.Any) -> bytes:
            reply = fn(arg)
            if self.hit(f'msg.{msg_type}', 'kill_dst'):
                self.kill()
            return reply
        return wrapped

    def message_type(self, request: bytes) -> str:
        """The type of an outgoing request (inner type if sealed)."""
        try:
            outer = messages.decode(request).type
        except errors.ProtocolError:
            return '?'
        if outer == 'sealed':
            return str(getattr(self._tls, 'msg_type', None) or 'sealed')
        return outer

    def flush(self) -> int:
        """Deliver every held-back (reordered) request now."""
        held, self._held = self._held, []
        for transport, peer, request in held:
            try:
                transport.call(peer, request)
            except errors.ProtocolError:
                pass
        return len(held)


class FaultyTransport(transport_mod.Transport):
    """Message faults on the requests this host sends."""

    def __init__(self, inner: transport_mod.Transport,
                 injector: Injector) -> None:
        self.inner = inner
        self.injector = injector

    def call(self, peer: str, request: bytes) -> bytes:
        inj = self.injector
        msg_type = inj.message_type(request)
        step = f'msg.{msg_type}'
        fault = inj.hit(step, 'kill_src', 'lost', 'duplicated',
                        'reordered', 'timeout')
        if fault == 'lost':
            raise errors.TransportError(peer=peer, reason='message lost')
        if fault == 'reordered':
            inj._held.append((self.inner, peer, request))
            raise errors.TransportError(peer=peer, reason='timed out')
        reply = self.inner.call(peer, request)
        inj.flush()   # reordered requests arrive after this one
        if fault == 'duplicated':
            try:
                self.inner.call(peer, request)
            except errors.ProtocolError:
                pass
        elif fault == 'timeout':
            raise errors.TransportError(peer=peer, reason='timed out')
        elif fault == 'kill_src':
            inj.kill()
        return reply


class FaultyTpm:
    """A ``HostTpm`` whose commands can fail or be followed by a kill."""

    def __init__(self, real: ty.Any, injector: Injector) -> None:
        self._real = real
        self._injector = injector

    def __getattr__(self, name: str) -> ty.Any:
        attr = getattr(self._real, name)
        if name not in TPM_METHODS:
            return attr
        injector = self._injector

        def command(*args: ty.Any, **kwargs: ty.Any) -> ty.Any:
            step = f'{injector.host}.tpm.{name}'
            fault = injector.hit(step, 'tpm_error', 'kill_src', 'kill_dst')
            if fault == 'tpm_error':
                raise tpm_errors.TpmCommandError(
                    command=name, error='injected TPM_RC_FAILURE', rc=0x101)
            result = attr(*args, **kwargs)
            if fault:
                injector.kill()
            return result
        return command


class FaultyConnection:
    """A ``sqlite3.Connection`` whose migration-state writes can fail
    (disk full, I/O error) or be followed by a kill at commit."""

    def __init__(self, real: sqlite3.Connection, injector: Injector) -> None:
        self._real = real
        self._injector = injector
        self._kill_at_commit = False

    def __getattr__(self, name: str) -> ty.Any:
        return getattr(self._real, name)

    @staticmethod
    def _step(sql: str, params: ty.Sequence[ty.Any]) -> str | None:
        if sql.startswith('INSERT INTO migrations'):
            role, state = params[1], params[2]
        elif sql.startswith('UPDATE migrations SET state'):
            state, role = params[0], params[4]
        else:
            return None
        return f'{_ROLE_HOST.get(role, role)}.journal.{state}'

    def execute(self, sql: str, params: ty.Sequence[ty.Any] = ()
                ) -> sqlite3.Cursor:
        inj = self._injector
        write = sql.lstrip().upper().startswith(_WRITES)
        if write and inj.full:
            raise sqlite3.OperationalError('database or disk is full')
        step = self._step(sql, params)
        if step is not None:
            fault = inj.hit(step, 'disk_full', 'io_error',
                            'kill_src', 'kill_dst')
            if fault == 'disk_full' and inj.fill_dir:
                inj.fill()  # the real write below hits ENOSPC
            elif fault == 'disk_full':
                inj.full = True
                raise sqlite3.OperationalError('database or disk is full')
            if fault == 'io_error':
                raise sqlite3.OperationalError('disk I/O error')
            if fault in ('kill_src', 'kill_dst'):
                self._kill_at_commit = True
        cursor = self._real.execute(sql, params)
        if sql == 'COMMIT' and self._kill_at_commit:
            inj.kill()
        return cursor

