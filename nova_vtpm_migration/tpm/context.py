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
TCTI string), hands out a proxy of the ESAPI context and, when the block
ends, flushes every transient object and session that was loaded inside
it -- also when the block raises, and also for objects loaded through the
raw ESAPI context. This matters on a TPM without resource manager (swtpm,
``/dev/tpm0``) where libtpms has only three transient object slots and
objects survive their client connection. Which handles a block loaded is
known from the commands themselves (the metering TCTI follows every
loading command and every ``FlushContext``), so a block costs no
``GetCapability``: the TPM's handle list is read only when a connection is
opened (to free what a crashed earlier user left) and under memory
pressure.

A few objects and sessions are worth keeping loaded between blocks (the
signing key, the binding key, a salted policy session): :meth:`Esys.resident`
keeps them in the connection's *resident* cache. Residents are a cache,
never a commitment: they are evicted (flushed) when a load runs out of TPM
memory, forgotten when the connection is replaced, and
:class:`ResidentLost` tells the caller to load them again when another
client flushed them (a TPM without resource manager shared with a
process that cleans up at connect).

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
from nova_vtpm_migration.tpm import rc

LOG = logging.getLogger(__name__)

_T = ty.TypeVar('_T')

# ESAPI calls whose result is a new TPM object or session to be flushed.
_CREATING_CALLS = frozenset((
    'create_primary', 'load', 'load_external', 'create_loaded',
    'start_auth_session', 'context_load', 'hmac_start', 'hash_sequence_start',
))
#: Re-exported from :mod:`.rc` (their historic home).
tpm_rc_code = rc.tpm_rc_code
map_tss_error = rc.map_tss_error


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


class ResidentLost(errors.TpmError):
    """A resident object or session is no longer loaded (another client
    flushed it); the residents were forgotten, run the operation again."""

    msg_fmt = 'TPM %(tcti)s: a resident object was flushed by another client'


class _TpmSlot:
    """Process-wide state of one TPM: its lock, its open connection, the
    meter of every command sent on it and what is kept loaded on it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.esapi: tpm2_pytss.ESAPI | None = None
        self.tcti: meter_mod.MeteredTcti | None = None
        self.depth = 0
        self.meter = meter_mod.TpmMeter()
        #: key -> ESYS_TR of an object or session kept loaded.
        self.resident: dict[str, ty.Any] = {}
        #: persistent TPM handle -> ESYS_TR (no ReadPublic per block).
        self.persistent: dict[int, ty.Any] = {}
        #: keys of residents in use by an open block (never evicted).
        self.pinned: set[str] = set()
        #: the proxies of the open (nested) blocks.
        self.blocks: list[Esys] = []

    @property
    def live(self) -> set[int]:
        """TPM handles loaded through the current connection."""
        return self.tcti.live_handles if self.tcti is not None else set()

    def forget_connection_state(self) -> None:
        """Forget what belonged to the connection (it is being replaced)."""
        self.resident.clear()
        self.persistent.clear()
        self.pinned.clear()


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
        self.pinned: set[str] = set()

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
            for attempt in (1, 2):
                try:
                    result = attr(*args, **kwargs)
                    break
                except tpm2_pytss.TSS2_Exception as exc:
                    err = map_tss_error(self._ctx.tcti, name, exc)
                    code = tpm_rc_code(int(exc.rc))
                    if isinstance(err, errors.TpmUnavailable):
                        self._ctx._broken = True
                    elif (code in rc.MEMORY_CODES and attempt == 1
                          and self._ctx._evict(self)):
                        continue     # room made: once more
                    elif (code == rc.RC_HANDLE or code in rc.REFERENCE_CODES
                          or int(exc.rc) == rc.ESYS_BAD_TR) \
                            and self._uses_resident(args, kwargs):
                        self._ctx._lost_residents()
                        raise ResidentLost(tcti=self._ctx.tcti) from exc
                    raise err from exc
            if name in _CREATING_CALLS:
                self.created.append(
                    result[0] if isinstance(result, tuple) else result)
            elif name in ('tr_from_tpmpublic', 'evict_control') and \
                    int(result) not in self._cached():
                # ESAPI hands out one ESYS_TR per TPM handle: one kept
                # for the connection (persistent()) is never closed.
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
        with contextlib.suppress(Exception):
            self._ctx._slot.live.discard(int(
                self._esapi.tr_get_tpm_handle(handle)))

    def _cached(self) -> set[int]:
        """ESYS_TRs kept for the connection (residents, persistent)."""
        kept = {int(r) for r in self._ctx._slot.resident.values()}
        kept.update(int(r) for r in self._ctx._slot.persistent.values())
        return kept

    def _uses_resident(self, args: tuple[ty.Any, ...],
                       kwargs: dict[str, ty.Any]) -> bool:
        kept = self._cached()
        return any(isinstance(v, int) and int(v) in kept
                   for v in list(args) + list(kwargs.values()))

    def resident(self, key: str,
                 load: collections.abc.Callable[['Esys'], ty.Any]) -> ty.Any:
        """The resident object or session ``key``, loaded by
        ``load(self)`` when it is not (yet) kept on this connection.

        It stays loaded after the block and is not evicted while the
        block runs.
        """
        slot = self._ctx._slot
        tr = slot.resident.get(key)
        if tr is None:
            tr = load(self)
            with contextlib.suppress(ValueError):
                self.created.remove(tr)
            slot.resident[key] = tr
        self.pinned.add(key)
        slot.pinned.add(key)
        return tr

    def resident_keys(self) -> list[str]:
        """The keys of the residents kept on this connection."""
        return list(self._ctx._slot.resident)

    def drop_resident(self, key: str) -> None:
        """Flush the resident ``key`` (if loaded) and forget it."""
        tr = self._ctx._slot.resident.pop(key, None)
        self.pinned.discard(key)
        self._ctx._slot.pinned.discard(key)
        if tr is not None:
            with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                self._esapi.flush_context(tr)

    def persistent(self, handle: int) -> ty.Any:
        """The ESYS_TR of a persistent object, read once per connection
        (``TPM2_ReadPublic``).

        :raises errors.TpmCommandError: nothing at ``handle``.
        """
        cache = self._ctx._slot.persistent
        tr = cache.get(handle)
        if tr is None:
            tr = self.__getattr__('tr_from_tpmpublic')(handle)
            self.tr_handles = [t for t in self.tr_handles
                               if int(t) != int(tr)]
            cache[handle] = tr
        return tr

    def forget_persistent(self, handle: int) -> None:
        """Forget the cached ESYS_TR of ``handle`` (evicted or replaced).
        """
        tr = self._ctx._slot.persistent.pop(handle, None)
        if tr is not None:
            with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                self._esapi.tr_close(tr)


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
        tcti.live_handles.clear()
        self._slot.tcti = tcti
        return esapi

    def _open(self) -> tpm2_pytss.ESAPI:
        """The open connection (connecting first if there is none).

        A connection that died (the TPM daemon restarted) is noticed by
        the first command of a block, which raises
        :class:`~errors.TpmUnavailable` and drops it; the next block
        connects again.
        """
        if self._slot.esapi is None:
            self._slot.forget_connection_state()
            self._slot.esapi = self._connect()
        return self._slot.esapi

    def _disconnect(self) -> None:
        esapi, self._slot.esapi = self._slot.esapi, None
        self._slot.forget_connection_state()
        self._slot.tcti = None
        if esapi is not None:
            with contextlib.suppress(Exception):
                _close(esapi)

    @contextlib.contextmanager
    def esys(self) -> collections.abc.Iterator[Esys]:
        """Take the TPM lock and yield an :class:`Esys` proxy.

        Objects and sessions loaded in the block are flushed when it
        ends, also on error, except residents (:meth:`Esys.resident`).
        Blocks may nest within one thread.

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
            esapi = self._open()
            before = set(slot.live)
            proxy = Esys(self, esapi)
            self._blocks.append(proxy)
            try:
                yield proxy
            finally:
                self._blocks.remove(proxy)
                self._cleanup(esapi, proxy, before, outermost)
        finally:
            slot.depth -= 1
            slot.lock.release()

    @property
    def _blocks(self) -> list[Esys]:
        return self._slot.blocks

    def run(self, operation: collections.abc.Callable[[Esys], _T]) -> _T:
        """Run ``operation(e)`` in an :meth:`esys` block; once more when
        it lost a resident (:class:`ResidentLost`) or found the connection
        of an earlier block dead (the TPM daemon restarted), so callers
        see neither.

        :raises errors.TpmUnavailable: the TPM cannot be reached.
        """
        for attempt in (1, 2):
            reused = self._slot.esapi is not None and self._slot.depth == 0
            try:
                with self.esys() as e:
                    return operation(e)
            except ResidentLost:
                if attempt == 2 or self._slot.depth:
                    raise
            except errors.TpmUnavailable:
                if attempt == 2 or not reused:
                    raise
                LOG.info('Reconnecting to TPM %s', self.tcti)
        raise AssertionError('unreachable')

    def _kept(self) -> set[int]:
        """TPM handles that must stay loaded: residents and what open
        blocks loaded."""
        esapi = self._slot.esapi
        kept: set[int] = set()
        if esapi is None:
            return kept
        for tr in self._slot.resident.values():
            with contextlib.suppress(Exception):
                kept.add(int(esapi.tr_get_tpm_handle(tr)))
        for block in self._blocks:
            for tr in block.created:
                with contextlib.suppress(Exception):
                    kept.add(int(esapi.tr_get_tpm_handle(tr)))
        return kept

    def _cleanup(self, esapi: tpm2_pytss.ESAPI, proxy: Esys,
                 before: set[int], outermost: bool) -> None:
        slot = self._slot
        for key in proxy.pinned:
            if not any(key in b.pinned for b in self._blocks):
                slot.pinned.discard(key)
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
            # Loaded through the raw context (or not tracked): the
            # TCTI saw the loading command, so no handle scan is needed.
            for handle in sorted(set(slot.live) - before - self._kept()):
                LOG.debug('Flushing leftover TPM handle %#x', handle)
                _flush_tpm_handle(esapi, handle)
                slot.live.discard(handle)
        except (tpm2_pytss.TSS2_Exception, errors.TpmError):
            if not outermost:
                return  # a nested block: the outermost one handles it
            # Reconnecting flushes whatever is left (see
            # _connect), so a lost connection cannot leak slots for good.
            LOG.warning('Dropping TPM connection %s after an error during '
                        'cleanup', self.tcti)
            self._broken = False
            self._disconnect()

    def _evict(self, proxy: Esys) -> bool:
        """Make room in the TPM after a memory error: flush the residents
        no open block uses and any loaded handle nobody keeps (a leak of
        another client, read from the TPM's handle list).

        :returns: whether anything was flushed.
        """
        slot = self._slot
        esapi = slot.esapi
        if esapi is None:
            return False
        flushed = False
        for key in [k for k in slot.resident if k not in slot.pinned]:
            tr = slot.resident.pop(key)
            with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                esapi.flush_context(tr)
                flushed = True
        if flushed:
            LOG.debug('Evicted resident TPM objects to make room')
            return True
        try:
            leftover = _loaded_handles(esapi) - self._kept()
            for handle in leftover:
                _flush_tpm_handle(esapi, handle)
                slot.live.discard(handle)
        except tpm2_pytss.TSS2_Exception:
            return False
        return bool(leftover)

    def _lost_residents(self) -> None:
        """Forget every resident and cached persistent handle (another
        client flushed them); flush the residents that may survive."""
        slot = self._slot
        esapi = slot.esapi
        residents = list(slot.resident.values())
        slot.forget_connection_state()
        for tr in residents:
            if esapi is not None:
                with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                    esapi.flush_context(tr)

    def resident_handles(self) -> set[int]:
        """TPM handles of the residents kept on the open connection."""
        with self._slot.lock:
            esapi = self._slot.esapi
            if esapi is None:
                return set()
            return {int(esapi.tr_get_tpm_handle(tr))
                    for tr in self._slot.resident.values()}

    def release(self) -> None:
        """Flush every resident of this TPM (they load again on demand)."""
        with self._slot.lock:
            esapi = self._slot.esapi
            if esapi is None:
                return
            for key in [k for k in self._slot.resident
                        if k not in self._slot.pinned]:
                tr = self._slot.resident.pop(key)
                with contextlib.suppress(tpm2_pytss.TSS2_Exception):
                    esapi.flush_context(tr)

    def close(self) -> None:
        """Close the shared connection to this TPM (reopened on demand);
        residents are flushed first."""
        with self._slot.lock:
            if self._slot.depth == 0:
                self.release()
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
    """TPM handles of the loaded transient objects and sessions that are
    not residents of ``ctx``'s connection (asked from the TPM).

    :param ctx: the TPM to ask.
    """
    with ctx.esys() as e:
        return _loaded_handles(e.raw) - ctx.resident_handles()
