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

"""The three columns of Table I and how each one drives the engines.

``plain`` (P)
    Upstream Nova's ``host`` mode: the destination is handed the vTPM key
    directly (:func:`tests.support.dataplane.migration.live_migrate_plain`);
    no host TPM command, no engine.
``traditional`` (T)
    The traditional secured protocol, as a real run of the plugin's own
    code with every amortisation off: the engines' session lifetime is 0,
    so each migration runs its own phase 1 inside ``migrate_key``
    (``source.SourceRole._run`` attests with ``fresh=True``) and its own
    phase 2 and commit on that session (no session reuse, no two
    migrations on one session, no batching: the engines' ``coalesce`` is
    off); and every handshake meets a new responder
    (:class:`RequestProbe` swaps it in on each ``hello``), whose first
    ``hello`` starts a new epoch, so the responder quotes afresh as well:
    a full dual attestation per migration.
``attested`` (A)
    This plugin as configured by default: the K migrations of a run share
    one phase 1 (the first caller attests, the others wait for its
    session) and run their phase 2 and commit on that session; concurrent
    migrations and commits coalesce into batches (one unwrap and one
    signature per host and batch).

Every run of every mode starts without attestation state
(:func:`forget_attestation`): no initiator or responder session and a new
responder, so the first handshake of a run costs both hosts a quote.

One amortisation is left on in T as in A: the destination's PCR-bound
binding key (``HostTpm.binding_key_lifetime``, one day; certified anew
for each session). A key per migration cannot run concurrently with this
code: the host keeps only the two newest binding keys
(``nova_vtpm_migration/tpm/keyblobs.py``, ``BindingKeys``:
``keep = [blob] + self.blobs()[:1]``), so the third
concurrent ``prepare`` makes the first migration's key unusable before its
``transfer`` arrives. Keeping it favours T, so A/T is if anything
overstated.
"""

import collections.abc
import contextlib
import dataclasses
import threading
import time
import typing as ty

from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from tests.support.dataplane import migration
from tests.support.dataplane import secured
from tests.support.dataplane import testbed as testbed_mod


@dataclasses.dataclass(frozen=True)
class Mode:
    """One column of Table I.

    :ivar name: ``plain``, ``traditional`` or ``attested``.
    :ivar letter: ``P``, ``T`` or ``A``.
    :ivar description: what the column stands for.
    :ivar secured: the key moves through the protocol.
    :ivar reuse_sessions: migrations of a run share an attested session.
    :ivar batches: concurrent migrations and commits coalesce into batches
        (the engines' ``coalesce``).
    """

    name: str
    letter: str
    description: str
    secured: bool
    reuse_sessions: bool
    batches: bool


PLAIN = Mode('plain', 'P', "upstream `host` mode: the key is handed to the "
             'destination directly', secured=False, reuse_sessions=False,
             batches=False)
TRADITIONAL = Mode('traditional', 'T', 'traditional secured protocol: a full '
                   'dual attestation (both hosts quote) and an independent '
                   'key transfer per migration; no session reuse, no '
                   'batching', secured=True, reuse_sessions=False,
                   batches=False)
ATTESTED = Mode('attested', 'A', 'this plugin: one fresh dual attestation '
                'per run, shared by its K migrations (session reuse); '
                'concurrent migrations and commits batched',
                secured=True, reuse_sessions=True, batches=True)
MODES = (PLAIN, TRADITIONAL, ATTESTED)


def rotation(repetition: int) -> tuple[Mode, ...]:
    """The order of the modes in *repetition*: P T A, T A P, A P T, ...
    (each mode is first, second and third equally often)."""
    shift = repetition % len(MODES)
    return MODES[shift:] + MODES[:shift]


def new_responder(engine: ty.Any) -> handshake.Responder:
    """A responder for *engine*'s channel with no epoch yet: its first
    ``hello`` costs a TPM quote."""
    channel = engine.channel
    return handshake.Responder(channel.tpm, channel.policy, channel.clocks,
                               lambda: channel.local)


def forget_attestation(engine: ty.Any) -> None:
    """Drop every session of *engine* and its responder epoch."""
    engine.forget_sessions()
    engine.channel.responder = new_responder(engine)


def configure(engines: collections.abc.Iterable[ty.Any], mode: Mode,
              session_lifetime: float) -> None:
    """Configure the engines for a run of *mode* and forget every
    attestation.

    :param session_lifetime: the lifetime A uses (the engines' own).
    """
    for engine in engines:
        engine.channel.session_lifetime = (
            session_lifetime if mode.reuse_sessions else 0.0)
        engine.coalesce = mode.batches
        forget_attestation(engine)


class AttestInsideTransfer(secured.EngineKeyExchange):
    """T's key exchange: phase 1 is not run separately.

    With a session lifetime of 0 ``migrate_key`` attests afresh on its
    own; a separate ``attest_peer`` first would be a second, wasted
    handshake per migration.
    """

    def attest(self) -> None:
        """Nothing: ``transfer`` runs phase 1 (see the class text)."""


def migrate(tb: testbed_mod.Testbed, mode: Mode, instance: str, src: str,
            dst: str, timeout: float) -> migration.MigrationResult:
    """Live-migrate *instance* from *src* to *dst* the way *mode* does."""
    if mode is PLAIN:
        return tb.migrate(instance, src, dst, secured_mode=False,
                          timeout=timeout)
    if mode is ATTESTED:
        return tb.migrate(instance, src, dst, secured_mode=True,
                          timeout=timeout)
    exchange = AttestInsideTransfer(tb.engines[src], tb.engines[dst])
    return migration.live_migrate(exchange, tb.hosts[src], tb.hosts[dst],
                                  instance, timeout=timeout)


@dataclasses.dataclass
class EndpointStats:
    """Requests one host's engine handled during a recording.

    :ivar requests: requests handled.
    :ivar max_in_flight: most requests inside the engine at once.
    :ivar handler_seconds: sum of the requests' times in the engine
        (waiting for its locks included).
    :ivar busy_seconds: time with at least one request in the engine.
    :ivar state_lock_taken: requests that arrived while another thread
        held the engine's state lock.
    """

    requests: int = 0
    max_in_flight: int = 0
    handler_seconds: float = 0.0
    busy_seconds: float = 0.0
    state_lock_taken: int = 0
    _in_flight: int = 0
    _busy_since: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The public fields, times in ms."""
        return {'requests': self.requests,
                'max_in_flight': self.max_in_flight,
                'handler_ms': round(self.handler_seconds * 1000.0, 1),
                'busy_ms': round(self.busy_seconds * 1000.0, 1),
                'state_lock_taken': self.state_lock_taken}


class RequestProbe:
    """The transport endpoint of every engine of a testbed, wrapped.

    It measures how the engines handle concurrent requests (requests in
    flight, whether the host's state lock was taken when one arrived)
    and, when :attr:`fresh_epoch_per_handshake` is set (T), gives each
    ``hello`` a new responder. It never holds a lock of its own across a
    request: its counters have a lock held for a few instructions.

    :param tb: the testbed whose endpoints it wraps (:meth:`install`).
    """

    def __init__(self, tb: testbed_mod.Testbed) -> None:
        self._tb = tb
        self._counters = threading.Lock()
        self._stats: dict[str, EndpointStats] = {}
        self.fresh_epoch_per_handshake = False

    def install(self) -> None:
        """Register the wrapped endpoints in the testbed's transport."""
        for name, engine in self._tb.engines.items():
            self._tb.transport.register(name, self._wrap(name, engine))

    def uninstall(self) -> None:
        """Register the engines' own endpoints again."""
        for name, engine in self._tb.engines.items():
            self._tb.transport.register(name, engine.handle)

    @contextlib.contextmanager
    def recording(self) -> collections.abc.Iterator[
            dict[str, EndpointStats]]:
        """Count requests per host while the block runs; the yielded
        mapping is filled in as they arrive."""
        stats = {name: EndpointStats() for name in self._tb.engines}
        with self._counters:
            self._stats = stats
        try:
            yield stats
        finally:
            with self._counters:
                self._stats = {}

    def _wrap(self, name: str, engine: ty.Any
              ) -> collections.abc.Callable[[bytes], bytes]:
        def handle(request: bytes) -> bytes:
            if self.fresh_epoch_per_handshake and _is_hello(request):
                engine.channel.responder = new_responder(engine)
            lock = engine.state_lock
            taken = not lock.acquire(blocking=False)
            if not taken:
                lock.release()
            start = self._enter(name, taken)
            try:
                reply: bytes = engine.handle(request)
                return reply
            finally:
                self._leave(name, start)

        return handle

    def _enter(self, name: str, taken: bool) -> float:
        now = time.perf_counter()
        with self._counters:
            s = self._stats.get(name)
            if s is not None:
                s.requests += 1
                s.state_lock_taken += int(taken)
                if s._in_flight == 0:
                    s._busy_since = now
                s._in_flight += 1
                s.max_in_flight = max(s.max_in_flight, s._in_flight)
        return now

    def _leave(self, name: str, start: float) -> None:
        now = time.perf_counter()
        with self._counters:
            s = self._stats.get(name)
            if s is None or s._in_flight == 0:
                return
            s._in_flight -= 1
            s.handler_seconds += now - start
            if s._in_flight == 0:
                s.busy_seconds += now - s._busy_since


def _is_hello(request: bytes) -> bool:
    try:
        msg = messages.decode(request, allowed=('hello', 'attest',
                                                'sealed'))
    except Exception:   # noqa: BLE001 - the engine refuses it itself
        return False
    return msg.type == 'hello'
