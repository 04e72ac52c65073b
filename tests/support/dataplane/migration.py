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


"""Live migration of an instance between two :class:`~.host.SimHost`.

Both modes run the same sequence; they differ only in how the destination
obtains the vTPM secret, which is the seam :class:`KeyExchange`:

``plain`` (:func:`live_migrate_plain`, :class:`DirectKeyExchange`)
    The secret is handed to the destination directly, as upstream Nova's
    ``host`` secret-security mode effectively does (the libvirt secret
    travels in the live-migration data).

``secured`` (:func:`live_migrate_secured`)
    Phases 1-2 of the protocol run between the two hosts' engines; the
    destination vTPM is started with the secret obtained **only** from the
    destination engine (unwrapped in the destination host TPM); after the
    QEMU migration the engines commit, or abort.

Sequence::

    phase 1  exchange.attest()               (mutual attestation)
    phase 2  exchange.transfer(instance)     (key wrapped to destination)
             key = exchange.take_pending_key(instance)   (destination)
             destination: vTPM(key) + QEMU -incoming, listen
             source: QMP migrate, poll query-migrate
    success  exchange.commit(instance); source QEMU quit, vTPM state dir
             removed, key wiped (if the commit itself fails the outcome
             is in doubt and left to the protocol's recovery)
    failure  exchange.abort(instance); destination QEMU and vTPM killed,
             state dir removed, key wiped; source guest resumed

If phase 1 or 2 fails, no destination vTPM is started at all.
"""

import dataclasses
import time
import typing as ty

from oslo_log import log as logging

from tests.support.dataplane import errors
from tests.support.dataplane import guest as guest_mod
from tests.support.dataplane import host as host_mod
from tests.support.dataplane import vtpm

LOG = logging.getLogger(__name__)

COMMITTED = 'committed'
ABORTED = 'aborted'
IN_DOUBT = 'in-doubt'

#: Phase names used as keys of :attr:`MigrationResult.phases_ms`.
PHASE_ATTEST = 'phase1_attest'
PHASE_TRANSFER = 'phase2_transfer'
PHASE_KEY = 'key_delivery'
PHASE_DEST_START = 'destination_start'
PHASE_QEMU = 'qemu_migration'
PHASE_COMMIT = 'commit'
PHASE_ABORT = 'abort'
PHASE_TOTAL = 'total'


class KeyExchange(ty.Protocol):
    """How the destination obtains an instance's vTPM secret."""

    #: ``plain`` or ``secured``.
    mode: str

    def attest(self) -> None:
        """Phase 1: authenticate both hosts (may reuse a session)."""

    def transfer(self, instance_uuid: str) -> None:
        """Phase 2: move the instance's secret to the destination."""

    def take_pending_key(self, instance_uuid: str
                         ) -> 'bytes | bytearray | vtpm.VtpmKey':
        """Destination: return the secret delivered by phase 2."""

    def commit(self, instance_uuid: str) -> None:
        """The guest runs on the destination: make it final."""

    def abort(self, instance_uuid: str) -> None:
        """The migration failed: the source keeps the instance."""


class DirectKeyExchange:
    """Upstream-equivalent: the destination is simply given the secret.

    :param key: the secret handed to the destination (normally the
        source's; tests pass a wrong one).
    """

    mode = 'plain'

    def __init__(self, key: vtpm.VtpmKey) -> None:
        self._key = key

    def attest(self) -> None:
        """No attestation in plain mode."""

    def transfer(self, instance_uuid: str) -> None:
        """Nothing to transfer: the key is handed over directly."""

    def take_pending_key(self, instance_uuid: str) -> 'vtpm.VtpmKey':
        """Return a copy of the key for the destination vTPM."""
        # A copy, so wiping the source's key object on commit
        # does not touch the destination's.
        return self._key.copy()

    def commit(self, instance_uuid: str) -> None:
        """Nothing to record."""

    def abort(self, instance_uuid: str) -> None:
        """Nothing to record."""


@dataclasses.dataclass
class MigrationResult:
    """Outcome and timings of one live migration.

    :ivar instance: the instance id.
    :ivar mode: ``plain`` or ``secured``.
    :ivar outcome: ``committed``, ``aborted`` or ``in-doubt`` (the guest
        runs on the destination but the commit failed; the source stays
        paused with its vTPM state until the protocol's recovery decides).
    :ivar qemu: the source QEMU's statistics (``None`` if QEMU never
        migrated, e.g. attestation refused).
    :ivar phases_ms: wall time per phase in milliseconds (``PHASE_*``).
    :ivar error: why it was aborted (or is in doubt).
    :ivar error_type: the class name of that error.
    :ivar migration_id: the protocol's migration id (secured mode).
    """

    instance: str
    mode: str
    outcome: str = ABORTED
    qemu: guest_mod.MigrationStats | None = None
    phases_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    migration_id: str | None = None

    @property
    def committed(self) -> bool:
        """Whether the instance now runs on the destination."""
        return self.outcome == COMMITTED


class _Timer:
    def __init__(self, result: MigrationResult, phase: str) -> None:
        self.result = result
        self.phase = phase
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.result.phases_ms[self.phase] = (
            (time.perf_counter() - self.start) * 1000.0)


def live_migrate(exchange: KeyExchange, src: host_mod.SimHost,
                 dst: host_mod.SimHost, instance_uuid: str, *,
                 timeout: float = 60.0, max_bandwidth: int | None = None,
                 on_poll: ty.Callable[[dict[str, ty.Any]], None] | None
                 = None) -> MigrationResult:
    """Live-migrate a running instance from *src* to *dst*.

    :param exchange: how the destination gets the vTPM secret.
    :param src: the host the instance runs on.
    :param dst: the destination host.
    :param instance_uuid: the instance.
    :param timeout: seconds for the QEMU migration.
    :param max_bandwidth: migration bandwidth limit in bytes/s (tests use
        it to keep a migration in flight).
    :param on_poll: called with each source ``query-migrate`` answer.
    :returns: the outcome; on failure (``aborted``) the destination holds
        nothing of the instance, the source holds the key again and its
        guest runs again, unless that guest itself died (``error`` then
        says "the source guest did not resume").
    """
    result = MigrationResult(instance=instance_uuid, mode=exchange.mode)
    t0 = time.perf_counter()
    inst = src.instance(instance_uuid)
    if inst.guest is None or not inst.guest.is_running():
        raise errors.MigrationFailed(instance=instance_uuid,
                                     reason='the source guest is not '
                                            'running')
    src_guest = inst.guest
    try:
        with _Timer(result, PHASE_ATTEST):
            exchange.attest()
        with _Timer(result, PHASE_TRANSFER):
            exchange.transfer(instance_uuid)
        with _Timer(result, PHASE_KEY):
            delivered = exchange.take_pending_key(instance_uuid)
            key = (delivered if isinstance(delivered, vtpm.VtpmKey)
                   else vtpm.VtpmKey(delivered))
        with _Timer(result, PHASE_DEST_START):
            uri = dst.prepare_incoming(instance_uuid, key)
        previous_bandwidth = None
        if max_bandwidth is not None:
            previous_bandwidth = src_guest.set_max_bandwidth(max_bandwidth)
        try:
            with _Timer(result, PHASE_QEMU):
                result.qemu = src_guest.migrate(uri, timeout=timeout,
                                                on_poll=on_poll)
        finally:
            if previous_bandwidth is not None and src_guest.is_alive():
                src_guest.set_max_bandwidth(previous_bandwidth)
        _check_outcome(result, dst, instance_uuid)
    except Exception as e:  # noqa: BLE001 - every failure aborts
        result.error = str(e)
        result.error_type = type(e).__name__
        LOG.warning('Live migration of %s from %s to %s failed: %s',
                    instance_uuid, src.name, dst.name, e)
        with _Timer(result, PHASE_ABORT):
            try:
                _abort(exchange, src, dst, instance_uuid)
            except errors.MigrationFailed as abort_exc:
                # The key is back at the source (the protocol
                # aborted) but its guest is gone: report it, as a guest
                # crash, in the result rather than raise past it.
                result.error = f'{result.error}; {abort_exc}'
                LOG.error('After the failed migration of %s: %s',
                          instance_uuid, abort_exc)
        result.outcome = ABORTED
    else:
        with _Timer(result, PHASE_COMMIT):
            try:
                exchange.commit(instance_uuid)
            except Exception as e:  # noqa: BLE001 - reported in the result
                # The guest runs on the destination but the
                # key move is not final; the protocol's recovery decides.
                # The paused source keeps its vTPM state until then.
                result.error = str(e)
                result.error_type = type(e).__name__
                result.outcome = IN_DOUBT
                LOG.error('Commit of the migration of %s failed; the '
                          'outcome is in doubt: %s', instance_uuid, e)
            else:
                src.destroy_instance(instance_uuid)
                result.outcome = COMMITTED
    result.phases_ms[PHASE_TOTAL] = (time.perf_counter() - t0) * 1000.0
    result.migration_id = getattr(exchange, 'migration_id', None)
    LOG.info('Live migration (%s) of %s: %s in %.1f ms', result.mode,
             instance_uuid, result.outcome, result.phases_ms[PHASE_TOTAL])
    return result


def _check_outcome(result: MigrationResult, dst: host_mod.SimHost,
                   instance_uuid: str) -> None:
    assert result.qemu is not None
    if result.qemu.status != 'completed':
        raise errors.MigrationFailed(
            instance=instance_uuid,
            reason='QEMU reports {}{}'.format(
                result.qemu.status,
                f': {result.qemu.error}' if result.qemu.error else ''))
    dst_guest = dst.instance(instance_uuid).guest
    assert dst_guest is not None
    state = dst_guest.wait_status({'running'}, timeout=10.0)
    if state != 'running':
        raise errors.MigrationFailed(
            instance=instance_uuid,
            reason=f'the destination guest is {state}{dst_guest.log_tail()}')


def _abort(exchange: KeyExchange, src: host_mod.SimHost,
           dst: host_mod.SimHost, instance_uuid: str) -> None:
    # Destination first: nothing of the instance may survive there.
    dst.destroy_instance(instance_uuid)
    try:
        exchange.abort(instance_uuid)
    except Exception:  # noqa: BLE001 - the data plane must still recover
        LOG.exception('Protocol abort of %s failed', instance_uuid)
    guest = src.instance(instance_uuid).guest
    if guest is None:
        return
    state = guest.wait_status({'running', 'postmigrate', 'paused',
                               'finish-migrate'}, timeout=10.0)
    if state in ('postmigrate', 'paused', 'finish-migrate'):
        # Like libvirt's Confirm phase after a failed Finish:
        # the source resumes the guest it had stopped.
        guest.execute('cont')
    if not guest.is_running():
        raise errors.MigrationFailed(
            instance=instance_uuid,
            reason=f'the source guest did not resume ({guest.status()})')


def live_migrate_plain(src: host_mod.SimHost, dst: host_mod.SimHost,
                       instance_uuid: str,
                       key: vtpm.VtpmKey | None = None,
                       **kwargs: ty.Any) -> MigrationResult:
    """Upstream-equivalent migration: the destination is given the key.

    :param src: the source host.
    :param dst: the destination host.
    :param instance_uuid: the instance.
    :param key: the key given to the destination; the source's by default.
    :param kwargs: see :func:`live_migrate`.
    """
    if key is None:
        key = src.instance(instance_uuid).key
    return live_migrate(DirectKeyExchange(key), src, dst, instance_uuid,
                        **kwargs)
