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

"""Serialised, leak-free access to one TPM through tpm2-pytss ESAPI.

``with ctx.esys() as e:`` takes the process-wide lock of the TPM (one per
TCTI string), hands out a proxy of the ESAPI context and, when the
outermost block ends, flushes every transient object and session that was
created inside it -- also when the block raises. This matters on a TPM
without resource manager (swtpm, ``/dev/tpm0``) where libtpms has only three
transient object slots and objects survive their client connection.

A ``TSS2_Exception`` from an ESAPI call made through the proxy is
translated into the :mod:`~nova_vtpm_migration.tpm.errors` tree. Every
command that reaches the TPM -- through the proxy, the raw ESAPI context or
the context's own housekeeping (the handle scans and flushes at block entry
and exit) -- is counted and timed at the TCTI by the TPM's
:class:`~nova_vtpm_migration.tpm.meter.TpmMeter` (``ctx.meter``).
"""

import collections.abc
import contextlib
import dataclasses
import threading
import typing as ty

from oslo_log import log as logging
import tpm2_pytss
from tpm2_pytss import constants

from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import meter as meter_mod

LOG = logging.getLogger(__name__)

# TSS2 layers (bits 16-23 of a TSS2_RC) and base codes.
_LAYER_MASK = 0xFF0000
_TPM_LAYER = 0x000000
_RESMGR_TPM_LAYER = 0x0B0000
_BASE_NO_CONNECTION = 8
_BASE_TRY_AGAIN = 9
_BASE_IO_ERROR = 10

# TPM response codes (handle/session/parameter numbers removed).
_RC_INITIALIZE = 0x100
_RC_FAILURE = 0x101
_RC_POLICY = 0x126
_RC_PCR_CHANGED = 0x128
_RC_POLICY_FAIL = 0x09D
_RC_YIELDED = 0x908
_RC_TESTING = 0x90A
_RC_NV_UNAVAILABLE = 0x923
_RC_LOCKOUT = 0x921
_RC_RETRY = 0x922
_BUSY_CODES = frozenset((_RC_YIELDED, _RC_TESTING, _RC_RETRY,
                         _RC_NV_UNAVAILABLE))
_POLICY_CODES = frozenset((_RC_POLICY_FAIL, _RC_PCR_CHANGED, _RC_POLICY))

# ESAPI calls whose result is a new TPM object or session to be flushed.
_CREATING_CALLS = frozenset((
    'create_primary', 'load', 'load_external', 'create_loaded',
    'start_auth_session', 'context_load', 'hmac_start', 'hash_sequence_start',
))


def tpm_rc_code(rc: int) -> int | None:
    """The TPM response code of ``rc`` without its handle/session/parameter
    number, or ``None`` when ``rc`` does not come from the TPM.

    :param rc: a ``TSS2_RC``.
    """
    if rc & _LAYER_MASK not in (_TPM_LAYER, _RESMGR_TPM_LAYER):
        return None
    base = rc & 0xFFFF
    if base & 0x80:
        return base & 0xBF
    return base & 0xFFF


def map_tss_error(tcti: str, command: str,
                  exc: tpm2_pytss.TSS2_Exception) -> errors.TpmError:
    """Translate a ``TSS2_Exception`` into a :class:`~errors.TpmError`.

    :param tcti: the TPM's TCTI string (for the message).
    :param command: the ESAPI method that failed.
    :param exc: the exception raised by tpm2-pytss.
    """
    rc = int(exc.rc)
    code = tpm_rc_code(rc)
    if code is None:
        base = rc & 0xFFFF
        if base in (_BASE_NO_CONNECTION, _BASE_IO_ERROR):
            return errors.TpmUnavailable(
                tcti=tcti, reason=f'{command}: {exc} (rc={rc:#x})')
        if base == _BASE_TRY_AGAIN:
            return errors.TpmBusy(tcti=tcti, reason=f'{command}: {exc}')
        return errors.TpmCommandError(command=command, error=str(exc), rc=rc)
    if code == _RC_FAILURE:
        return errors.TpmFailureMode(tcti=tcti, command=command, rc=rc)
    if code == _RC_INITIALIZE:
        return errors.TpmUnavailable(
            tcti=tcti, reason=f'{command}: TPM not started (TPM2_Startup '
                              f'missing, rc={rc:#x})')
    if code == _RC_LOCKOUT:
        return errors.TpmLockout(tcti=tcti, command=command, rc=rc)
    if code in _BUSY_CODES:
        return errors.TpmBusy(
            tcti=tcti, reason=f'{command} returned {exc} (rc={rc:#x})')
    if code in _POLICY_CODES:
        return errors.TpmPolicyCheckFailed(command=command, error=str(exc),
                                           rc=rc)
    return errors.TpmCommandError(command=command, error=str(exc), rc=rc)


@dataclasses.dataclass
class CommandStats:
    """Count and cumulated wall time of one TPM command (see
    :attr:`TpmContext.stats`)."""

    count: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float:
        """Mean seconds per call (0 when never called)."""
        return self.total / self.count if self.count else 0.0


class _TpmSlot:
    """Process-wide state of one TPM: its lock, its open connection and
    the meter of every command sent on it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.esapi: tpm2_pytss.ESAPI | None = None
        self.depth = 0
        self.meter = meter_mod.TpmMeter()


_SLOTS: dict[str, _TpmSlot] = {}
_SLOTS_GUARD = threading.Lock()


def _slot(tcti: str) -> _TpmSlot:
    with _SLOTS_GUARD:
        slot = _SLOTS.get(tcti)
        if slot is None:
            slot = _SLOTS[tcti] = _TpmSlot()
        return slot


class Esys:
    """Proxy of an ESAPI context handed out by :meth:`TpmContext.esys`.

    Attribute access returns the ESAPI method wrapped with error
    translation and bookkeeping of created objects and sessions. The raw
    context is :attr:`raw` (for helpers such as ``NVReadEK``); commands
    sent through either are metered at the TCTI.
    """

    def __init__(self, ctx: 'TpmContext', esapi: tpm2_pytss.ESAPI) -> None:
        self._ctx = ctx
        self._esapi = esapi
        self.created: list[ty.Any] = []
        self.tr_handles: list[ty.Any] = []

    @property
    def raw(self) -> tpm2_pytss.ESAPI:
        """The underlying ``tpm2_pytss.ESAPI`` (objects it creates are not
        tracked; its commands are still metered)."""
        return self._esapi

    def __getattr__(self, name: str) -> ty.Any:
        attr = getattr(self._esapi, name)
        if not callable(attr):
            return attr

        def call(*args: ty.Any, **kwargs: ty.Any) -> ty.Any:
            try:
                result = attr(*args, **kwargs)
            except tpm2_pytss.TSS2_Exception as exc:
                err = map_tss_error(self._ctx.tcti, name, exc)
                if isinstance(err, errors.TpmUnavailable):
                    self._ctx._broken = True
                raise err from exc
            if name in _CREATING_CALLS:
                self.created.append(
                    result[0] if isinstance(result, tuple) else result)
            elif name in ('tr_from_tpmpublic', 'evict_control'):
                self.tr_handles.append(result)
            elif name == 'flush_context' and args:
                with contextlib.suppress(ValueError):
                    self.created.remove(args[0])
            return result

        return call

    def forget(self, handle: ty.Any) -> None:
        """Stop tracking ``handle`` (e.g. after it was made persistent)."""
        with contextlib.suppress(ValueError):
            self.created.remove(handle)


class TpmContext:
    """Access to one TPM, serialised by a per-TPM lock.

    :param tcti: TCTI configuration string (``device:/dev/tpmrm0``,
        ``swtpm:host=127.0.0.1,port=2321``, ...).
    :param lock_timeout: seconds to wait for the TPM lock before raising
        :class:`~errors.TpmBusy`.
    :param latency_profile: benchmarks and tests only: delay every command
        sent to this TPM to the figure of this
        :mod:`~nova_vtpm_migration.tpm.profiles` profile (``dtpm_slow``,
        ``ftpm``). It applies to every context on the same TCTI.
    """

    def __init__(self, tcti: str, lock_timeout: float = 30.0, *,
                 latency_profile: str | None = None) -> None:
        self.tcti = tcti
        self.lock_timeout = lock_timeout
        self._slot = _slot(tcti)
        self._broken = False
        if latency_profile is not None:
            self._slot.meter.set_latency_profile(latency_profile)

    @property
    def meter(self) -> meter_mod.TpmMeter:
        """The meter of every command sent to this TPM by this process
        (shared by all contexts on the same TCTI string)."""
        return self._slot.meter

    @property
    def stats(self) -> dict[str, CommandStats]:
        """Per-command count and wall time of this TPM, keyed by the ESAPI
        method name of the TPM command (``quote``, ``pcr_read``).

        A view of :attr:`meter` (so it includes commands ESAPI sends on
        its own and the context's housekeeping); prefer ``meter`` and its
        windows in new code.
        """
        snap = self.meter.snapshot()
        return {meter_mod.esapi_name(name): CommandStats(
                    count, snap.seconds[name])
                for name, count in snap.counts.items()}

    def reset_stats(self) -> None:
        """Reset this TPM's :attr:`meter`."""
        self.meter.reset()

    def _connect(self) -> tpm2_pytss.ESAPI:
        try:
            inner = tpm2_pytss.TCTILdr.parse(self.tcti)
        except tpm2_pytss.TSS2_Exception as exc:
            raise map_tss_error(self.tcti, 'connect', exc) from exc
        except (OSError, ValueError, RuntimeError) as exc:
            # TCTILdr raises plain Python errors for unknown
            # TCTI modules or missing device nodes.
            raise errors.TpmUnavailable(tcti=self.tcti,
                                        reason=str(exc)) from exc
        tcti = meter_mod.MeteredTcti(inner, self._slot.meter)
        try:
            esapi = tpm2_pytss.ESAPI(tcti)
        except tpm2_pytss.TSS2_Exception as exc:
            tcti.close()
            raise map_tss_error(self.tcti, 'connect', exc) from exc
        # Without a resource manager objects outlive their
        # connection. Under our lock nothing else of ours is loaded, so
        # anything transient left at connect time is a leak of a crashed
        # earlier user; free the slots. Behind /dev/tpmrm0 the list is empty.
        try:
            for handle in _loaded_handles(esapi):
                _flush_tpm_handle(esapi, handle)
        except tpm2_pytss.TSS2_Exception as exc:
            _close(esapi)
            raise map_tss_error(self.tcti, 'connect', exc) from exc
        return esapi

    def _open(self) -> set[int]:
        """Make sure the connection works; return the loaded handles.

        A connection found dead (the TPM daemon restarted) is replaced
        once, transparently.
        """
        for attempt in (1, 2):
            if self._slot.esapi is None:
                self._slot.esapi = self._connect()
            try:
                return _loaded_handles(self._slot.esapi)
            except tpm2_pytss.TSS2_Exception as exc:
                err = map_tss_error(self.tcti, 'get_capability', exc)
                self._disconnect()
                if attempt == 2 or not isinstance(err,
                                                  errors.TpmUnavailable):
                    raise err from exc
                LOG.info('Reconnecting to TPM %s', self.tcti)
        raise AssertionError('unreachable')

    def _disconnect(self) -> None:
        esapi, self._slot.esapi = self._slot.esapi, None
        if esapi is not None:
            with contextlib.suppress(Exception):
                _close(esapi)

    @contextlib.contextmanager
    def esys(self) -> collections.abc.Iterator[Esys]:
        """Take the TPM lock and yield an :class:`Esys` proxy.

        Objects and sessions created in the block are flushed when it
        ends, also on error. Blocks may nest within one thread.

        :raises errors.TpmBusy: the lock was not free within
            ``lock_timeout`` seconds.
        :raises errors.TpmUnavailable: the TPM cannot be reached.
        """
        slot = self._slot
        if not slot.lock.acquire(timeout=self.lock_timeout):
            raise errors.TpmBusy(
                tcti=self.tcti,
                reason=f'lock not free within {self.lock_timeout}s')
        try:
            slot.depth += 1
            outermost = slot.depth == 1
            before = self._open() if outermost else set()
            esapi = slot.esapi
            assert esapi is not None
            proxy = Esys(self, esapi)
            try:
                yield proxy
            finally:
                self._cleanup(esapi, proxy, before if outermost else None)
        finally:
            slot.depth -= 1
            slot.lock.release()

    def _cleanup(self, esapi: tpm2_pytss.ESAPI, proxy: Esys,
                 before: set[int] | None) -> None:
        try:
            if self._broken:
                raise errors.TpmUnavailable(tcti=self.tcti,
                                            reason='connection lost')
            for tr in reversed(proxy.created):
                # The session may be gone already (no continueSession).
                with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                    esapi.flush_context(tr)
            for tr in proxy.tr_handles:
                with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                    esapi.tr_close(tr)
            if before is not None:
                for handle in _loaded_handles(esapi) - before:
                    LOG.debug('Flushing leftover TPM handle %#x', handle)
                    _flush_tpm_handle(esapi, handle)
        except (tpm2_pytss.TSS2_Exception, errors.TpmError):
            if before is None:
                return  # a nested block: the outermost one handles it
            # Reconnecting flushes whatever is left (see
            # _connect), so a lost connection cannot leak slots for good.
            LOG.warning('Dropping TPM connection %s after an error during '
                        'cleanup', self.tcti)
            self._broken = False
            self._disconnect()

    def close(self) -> None:
        """Close the shared connection to this TPM (reopened on demand)."""
        with self._slot.lock:
            if self._slot.depth == 0:
                self._disconnect()


def _close(esapi: tpm2_pytss.ESAPI) -> None:
    """Finalise an ESAPI context and the TCTI it was opened on (ESAPI
    only finalises TCTIs it loaded itself)."""
    tcti = esapi.get_tcti()
    try:
        esapi.close()
    finally:
        if isinstance(tcti, meter_mod.MeteredTcti):
            tcti.close()


def _loaded_handles(esapi: tpm2_pytss.ESAPI) -> set[int]:
    handles: set[int] = set()
    for first in (constants.TPM2_HC.TRANSIENT_FIRST,
                  constants.TPM2_HC.LOADED_SESSION_FIRST):
        more, cap = esapi.get_capability(constants.TPM2_CAP.HANDLES,
                                         first, 64)
        for handle in cap.data.handles:
            if handle >> 24 == first >> 24 or (
                    first == constants.TPM2_HC.LOADED_SESSION_FIRST
                    and handle >> 24 == 0x03):
                handles.add(int(handle))
    return handles


def _flush_tpm_handle(esapi: tpm2_pytss.ESAPI, handle: int) -> None:
    tr = esapi.tr_from_tpmpublic(handle)
    esapi.flush_context(tr)


def loaded_handles(ctx: TpmContext) -> set[int]:
    """TPM handles of all loaded transient objects and sessions.

    :param ctx: the TPM to ask.
    """
    with ctx.esys() as e:
        return _loaded_handles(e.raw)
