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

"""Count and time every command that reaches the TPM, at the TCTI.

:class:`MeteredTcti` is a ``tpm2_pytss`` Python TCTI wrapped around the
real one (``swtpm:``, ``device:``, ``tabrmd:``, ... -- any
:class:`tpm2_pytss.TCTI.TCTI`). It reads the header of each command buffer
on its way to the TPM (tag, size, command code) and the response code of
the answer, and records the command in a :class:`TpmMeter` with its wall
time. Because it sits below ESAPI, it sees exactly what the TPM sees:
commands ESAPI sends on its own (``ReadPublic`` behind
``tr_from_tpmpublic``), calls through the raw ESAPI context, and nothing
for calls that send no command (``trsess_set_attributes``, ``tr_close``).

A :class:`TpmMeter` accumulates for the lifetime of one TPM's connection
slot (see :class:`~nova_vtpm_migration.tpm.context.TpmContext.meter`).
Attribute counts to a phase with a window::

    with ctx.meter.window() as w:
        host_tpm.quote(nonce)
    w.result.counts            # {'Quote': 1, 'PCR_Read': 1, ...}

or to several hosts at once with :func:`measure`. Windows are differences
of snapshots: they never reset the meter and may overlap, but a window
includes every command sent to that TPM meanwhile, also by other threads.

The meter never looks at parameters beyond the few fields that decide a
command's cost class (object type, curve, whether a session is salted, the
size of a credential's secret); it never records or logs buffer contents.
"""

import collections.abc
import contextlib
import dataclasses
import re
import threading
import time
import typing as ty

import tpm2_pytss
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration.tpm import profiles

_CC = constants.TPM2_CC

#: TPM command code -> TPM2_CC name (``Quote``, ``PCR_Read``, ...).
COMMAND_NAMES: dict[int, str] = {
    int(getattr(_CC, n)): n for n in dir(_CC)
    if n[:1].isupper() and n not in ('FIRST', 'LAST')
    and isinstance(getattr(_CC, n), int)}

_HEADER = 10
_ST_SESSIONS = 0x8002
_TRY_AGAIN = 9
_ALG_NAMES = {int(constants.TPM2_ALG.RSA): 'RSA',
              int(constants.TPM2_ALG.ECC): 'ECC',
              int(constants.TPM2_ALG.KEYEDHASH): 'KEYEDHASH',
              int(constants.TPM2_ALG.SYMCIPHER): 'SYMCIPHER'}
_CURVE_NAMES = {int(constants.TPM2_ECC.NIST_P256): 'NIST_P256',
                int(constants.TPM2_ECC.NIST_P384): 'NIST_P384',
                int(constants.TPM2_ECC.NIST_P521): 'NIST_P521'}
#: Handles in the command buffer of the commands classified further.
_HANDLES = {int(_CC.CreatePrimary): 1, int(_CC.Create): 1,
            int(_CC.CreateLoaded): 1, int(_CC.StartAuthSession): 2,
            int(_CC.ActivateCredential): 2}
_CREATING = frozenset((int(_CC.CreatePrimary), int(_CC.Create),
                       int(_CC.CreateLoaded)))
_RSA_SECRET_SIZES = frozenset((256, 384, 512))
#: Commands whose response's first handle is a new transient object or
#: session.
_LOADING = frozenset(int(c) for c in (
    _CC.CreatePrimary, _CC.Load, _CC.LoadExternal, _CC.CreateLoaded,
    _CC.StartAuthSession, _CC.ContextLoad, _CC.HMAC_Start,
    _CC.HashSequenceStart))


def command_name(code: int) -> str:
    """The TPM2_CC name of a command code (hex for unknown codes)."""
    return COMMAND_NAMES.get(code, f'0x{code:08x}')


@dataclasses.dataclass(frozen=True)
class CommandHeader:
    """The header of a TPM command buffer."""

    tag: int
    size: int
    code: int

    @property
    def name(self) -> str:
        """The command's TPM2_CC name."""
        return command_name(self.code)


def parse_header(command: bytes) -> CommandHeader:
    """Parse ``tag || commandSize || commandCode`` (big-endian).

    :raises ValueError: shorter than a header.
    """
    if len(command) < _HEADER:
        raise ValueError(f'TPM command of {len(command)} bytes has no '
                         'header')
    return CommandHeader(int.from_bytes(command[0:2], 'big'),
                         int.from_bytes(command[2:6], 'big'),
                         int.from_bytes(command[6:10], 'big'))


def _parameters(command: bytes, header: CommandHeader) -> int:
    """Offset of the first parameter (after handles and auth area)."""
    offset = _HEADER + 4 * _HANDLES[header.code]
    if header.tag == _ST_SESSIONS:
        auth_size = int.from_bytes(command[offset:offset + 4], 'big')
        offset += 4 + auth_size
    return offset


def _tpm2b(command: bytes, offset: int) -> tuple[int, int]:
    """(size, offset after) of the TPM2B at ``offset``."""
    if offset + 2 > len(command):
        raise ValueError('truncated TPM2B')
    size = int.from_bytes(command[offset:offset + 2], 'big')
    return size, offset + 2 + size


def _variant(command: bytes, header: CommandHeader) -> str:
    offset = _parameters(command, header)
    if header.code in _CREATING:
        _, offset = _tpm2b(command, offset)          # inSensitive
        size, end = _tpm2b(command, offset)          # inPublic
        public, _ = types.TPMT_PUBLIC.unmarshal(command[offset + 2:end])
        alg = int(public.type)
        parts = [_ALG_NAMES.get(alg, f'alg_{alg:#x}')]
        if alg == constants.TPM2_ALG.ECC:
            curve = int(public.parameters.eccDetail.curveID)
            parts.append(_CURVE_NAMES.get(curve, f'curve_{curve:#x}'))
        elif alg == constants.TPM2_ALG.RSA:
            parts.append(str(int(public.parameters.rsaDetail.keyBits)))
        return '/'.join(parts)
    if header.code == _CC.StartAuthSession:
        _, offset = _tpm2b(command, offset)          # nonceCaller
        salt, _ = _tpm2b(command, offset)            # encryptedSalt
        return 'salted' if salt else 'unsalted'
    # ActivateCredential: the seed is RSA-OAEP encrypted (the
    # modulus size) for an RSA EK, an ECC point for an ECC EK.
    _, offset = _tpm2b(command, offset)              # credentialBlob
    secret, _ = _tpm2b(command, offset)
    return 'RSA' if secret in _RSA_SECRET_SIZES else 'ECC'


def command_class(command: bytes) -> str:
    """The cost class of a command buffer: its TPM2_CC name, refined for
    commands whose cost depends on a parameter.

    ``CreatePrimary``/``Create``/``CreateLoaded`` get the object type and
    curve or key size (``CreatePrimary/ECC/NIST_P256``, ``Create/KEYEDHASH``),
    ``StartAuthSession`` whether it is ``salted`` (the TPM decrypts the salt
    with its key), ``ActivateCredential`` the EK type (``RSA``/``ECC``).
    A buffer that cannot be parsed that far keeps the plain name.

    :raises ValueError: shorter than a command header.
    """
    header = parse_header(command)
    if header.code not in _HANDLES:
        return header.name
    try:
        return f'{header.name}/{_variant(command, header)}'
    except Exception:   # noqa: BLE001 - malformed: unclassified
        return header.name


def _base_name(command_class_: str) -> str:
    return command_class_.split('/', 1)[0]


def esapi_name(name: str) -> str:
    """The ``tpm2_pytss.ESAPI`` method name of a TPM2_CC name
    (``PCR_Read`` -> ``pcr_read``, ``CreatePrimary`` -> ``create_primary``).
    """
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', name).lower()


@dataclasses.dataclass(frozen=True)
class CommandStat:
    """Counts and times of one command (or command class).

    :ivar count: commands sent to the TPM.
    :ivar seconds: wall time from sending to the complete response,
        including any injected delay.
    :ivar failed: commands answered with a non-zero response code.
    :ivar delay: seconds of injected (profile) delay included in
        ``seconds``.
    """

    count: int = 0
    seconds: float = 0.0
    failed: int = 0
    delay: float = 0.0

    def __add__(self, other: 'CommandStat') -> 'CommandStat':
        return CommandStat(self.count + other.count,
                           self.seconds + other.seconds,
                           self.failed + other.failed,
                           self.delay + other.delay)

    def __sub__(self, other: 'CommandStat') -> 'CommandStat':
        return CommandStat(self.count - other.count,
                           self.seconds - other.seconds,
                           self.failed - other.failed,
                           self.delay - other.delay)


@dataclasses.dataclass(frozen=True)
class MeterSnapshot:
    """Immutable per-command-class statistics of one TPM (or a sum).

    ``a - b`` is the window between two snapshots of one meter; ``a + b``
    sums the commands of several TPMs (e.g. source and destination).

    :ivar classes: command class -> :class:`CommandStat`.
    """

    classes: collections.abc.Mapping[str, CommandStat] = dataclasses.field(
        default_factory=dict)

    def _by_name(self) -> dict[str, CommandStat]:
        out: dict[str, CommandStat] = {}
        for cls, stat in self.classes.items():
            name = _base_name(cls)
            out[name] = out.get(name, CommandStat()) + stat
        return out

    @property
    def counts(self) -> dict[str, int]:
        """TPM2_CC name -> commands sent (classes merged)."""
        return {n: s.count for n, s in sorted(self._by_name().items())
                if s.count}

    @property
    def seconds(self) -> dict[str, float]:
        """TPM2_CC name -> wall seconds spent."""
        return {n: s.seconds for n, s in sorted(self._by_name().items())
                if s.count}

    @property
    def class_counts(self) -> dict[str, int]:
        """Command class -> commands sent (the input of
        :func:`~nova_vtpm_migration.tpm.profiles.project`)."""
        return {c: s.count for c, s in sorted(self.classes.items())
                if s.count}

    @property
    def total(self) -> int:
        """Commands sent."""
        return sum(s.count for s in self.classes.values())

    @property
    def total_seconds(self) -> float:
        """Wall seconds spent inside TPM commands."""
        return sum(s.seconds for s in self.classes.values())

    @property
    def failed(self) -> int:
        """Commands answered with a non-zero response code."""
        return sum(s.failed for s in self.classes.values())

    def _combine(self, other: 'MeterSnapshot', sign: int) -> 'MeterSnapshot':
        out = dict(self.classes)
        for cls, stat in other.classes.items():
            base = out.get(cls, CommandStat())
            out[cls] = base + stat if sign > 0 else base - stat
        return MeterSnapshot({c: s for c, s in out.items()
                              if s != CommandStat()})

    def __add__(self, other: 'MeterSnapshot') -> 'MeterSnapshot':
        return self._combine(other, 1)

    def __sub__(self, other: 'MeterSnapshot') -> 'MeterSnapshot':
        return self._combine(other, -1)

    def as_dict(self) -> dict[str, ty.Any]:
        """A JSON-friendly form: totals, per command and per class."""
        return {
            'total': self.total,
            'ms': round(self.total_seconds * 1000.0, 3),
            'failed': self.failed,
            'commands': {n: {'count': s.count,
                             'ms': round(s.seconds * 1000.0, 3)}
                         for n, s in sorted(self._by_name().items())
                         if s.count},
            'classes': self.class_counts,
        }


class Window:
    """The commands of one :meth:`TpmMeter.window` (set when it ends)."""

    def __init__(self) -> None:
        self._result: MeterSnapshot | None = None

    @property
    def result(self) -> MeterSnapshot:
        """The window's commands.

        :raises RuntimeError: the window has not ended yet.
        """
        if self._result is None:
            raise RuntimeError('the meter window is still open')
        return self._result


class TpmMeter:
    """Cumulative per-command statistics of one TPM, thread-safe.

    :ivar latency_profile: when set, :class:`MeteredTcti` delays every
        command to at least the profile's figure (benchmarks and tests
        only).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._classes: dict[str, CommandStat] = {}
        self.latency_profile: profiles.Profile | None = None

    def set_latency_profile(self, name: str | None) -> None:
        """Delay every later command to ``name``'s figure (``None``:
        no delay).

        :raises ValueError: unknown profile.
        """
        self.latency_profile = None if name is None else profiles.get(name)

    def record(self, command_class_: str, seconds: float, *,
               failed: bool = False, delay: float = 0.0) -> None:
        """Count one command that reached the TPM."""
        stat = CommandStat(1, seconds, int(failed), delay)
        with self._lock:
            self._classes[command_class_] = self._classes.get(
                command_class_, CommandStat()) + stat

    def snapshot(self) -> MeterSnapshot:
        """Everything counted since creation or the last :meth:`reset`."""
        with self._lock:
            return MeterSnapshot(dict(self._classes))

    def reset(self) -> None:
        """Forget everything counted so far (open windows then see
        negative counts: prefer windows)."""
        with self._lock:
            self._classes.clear()

    @contextlib.contextmanager
    def window(self) -> collections.abc.Iterator[Window]:
        """Measure the commands sent while the block runs.

        The window's :attr:`Window.result` is set also when the block
        raises.
        """
        win = Window()
        before = self.snapshot()
        try:
            yield win
        finally:
            win._result = self.snapshot() - before


class Measurement:
    """The windows of :func:`measure`, by label (set when it ends)."""

    def __init__(self, windows: dict[str, Window]) -> None:
        self._windows = windows

    def __getitem__(self, label: str) -> MeterSnapshot:
        return self._windows[label].result

    @property
    def labels(self) -> list[str]:
        """The labels given to :func:`measure`."""
        return list(self._windows)

    @property
    def total(self) -> MeterSnapshot:
        """The sum over all meters (e.g. both hosts of a migration)."""
        out = MeterSnapshot()
        for label in self._windows:
            out = out + self[label]
        return out


@contextlib.contextmanager
def measure(meters: collections.abc.Mapping[str, TpmMeter]
            ) -> collections.abc.Iterator[Measurement]:
    """One window on each of several meters, e.g. ``{'source':
    src_ctx.meter, 'destination': dst_ctx.meter}``.

    Meters given twice (two labels on one TPM) each see all of that
    TPM's commands.
    """
    with contextlib.ExitStack() as stack:
        windows = {label: stack.enter_context(meter.window())
                   for label, meter in meters.items()}
        yield Measurement(windows)


class MeteredTcti(tpm2_pytss.PyTCTI):  # type: ignore[misc]
    """A TCTI that forwards to ``inner`` and meters every command.

    Transport-agnostic: it only calls ``inner``'s public TCTI methods
    (``transmit``, ``receive``, ...), so it works the same over a socket
    (``swtpm:``), a character device (``device:``), a resource manager
    (``tabrmd:``) or another Python TCTI.

    :param inner: the real TCTI; :meth:`close` finalises it.
    :param meter: where commands are recorded.
    """

    def __init__(self, inner: tpm2_pytss.TCTI, meter: TpmMeter) -> None:
        super().__init__(max_size=4096, magic=b'NVMMETER')
        self._inner = inner
        self.meter = meter
        self._pending: tuple[str, float] | None = None
        self._header: tuple[int, int] = (0, 0)
        #: TPM handles of the transient objects and sessions loaded
        #: through this TCTI and not flushed since (see
        #: :meth:`_track`); the TPM is never asked.
        self.live_handles: set[int] = set()

    @property
    def inner(self) -> tpm2_pytss.TCTI:
        """The wrapped TCTI."""
        return self._inner

    def do_transmit(self, command: bytes) -> None:
        """Send ``command`` through the inner TCTI and start its clock."""
        cls = command_class(command)
        header = parse_header(command)
        flushed = int.from_bytes(command[10:14], 'big') \
            if header.code == _CC.FlushContext and len(command) >= 14 else 0
        self._header = (header.code, flushed)
        start = time.perf_counter()
        self._inner.transmit(command)
        # The command reached the transport; it is counted when
        # its answer (or the transport's failure) arrives.
        self._pending = (cls, start)

    def do_receive(self, timeout: int) -> bytes:
        """Receive the response; record the command; apply the profile
        delay, if any."""
        try:
            response = bytes(self._inner.receive(self._max_size, timeout))
        except Exception as exc:
            rc = getattr(exc, 'rc', None)
            if rc is None or int(rc) & 0xFFFF != _TRY_AGAIN:
                self._finish(failed=True)
            raise
        failed = len(response) < _HEADER or int.from_bytes(
            response[6:10], 'big') != 0
        self._track(response, failed)
        self._finish(failed=failed)
        return response

    def _track(self, response: bytes, failed: bool) -> None:
        """Follow which transient objects and sessions are loaded: the
        handle a loading command returns, minus flushed handles (also when
        the flush failed: the handle was gone)."""
        code, flushed = self._header
        if code in _LOADING and not failed and len(response) >= 14:
            self.live_handles.add(int.from_bytes(response[10:14], 'big'))
        elif code == _CC.FlushContext:
            self.live_handles.discard(flushed)

    def _finish(self, *, failed: bool) -> None:
        if self._pending is None:
            return
        cls, start = self._pending
        self._pending = None
        delay = 0.0
        profile = self.meter.latency_profile
        if profile is not None:
            elapsed = time.perf_counter() - start
            delay = max(0.0, profile.figure(cls).ms / 1000.0 - elapsed)
            if delay:
                time.sleep(delay)
        self.meter.record(cls, time.perf_counter() - start, failed=failed,
                          delay=delay)

    def do_cancel(self) -> None:
        """Forward a cancel to the inner TCTI."""
        self._inner.cancel()

    def do_get_poll_handles(self) -> tuple[tpm2_pytss.PollData, ...]:
        """The inner TCTI's poll handles."""
        return tuple(self._inner.get_poll_handles())

    def do_set_locality(self, locality: int) -> None:
        """Forward the locality to the inner TCTI."""
        self._inner.set_locality(locality)

    def do_make_sticky(self, handle: int, is_sticky: bool) -> None:
        """Forward to the inner TCTI (resource managers)."""
        self._inner.make_sticky(handle, is_sticky)

    def close(self) -> None:
        """Finalise the inner TCTI (after the ESAPI context is closed)."""
        inner = self._inner
        close = getattr(inner, 'close', None)
        if callable(close):
            close()
        else:
            inner.finalize()
