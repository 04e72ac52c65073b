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


"""The per-host migration engine: dispatch, the roles and recovery.

One :class:`MigrationEngine` per host ties together the host TPM, the
trust policy, the journal, the key store and the attested
:class:`~.channel.Channel` to peers, and hands both roles the same
explicit :class:`~.context.HostContext`: the source API
(:meth:`~MigrationEngine.migrate_key`, :meth:`~MigrationEngine.commit`,
:meth:`~MigrationEngine.abort`, in :mod:`.source`) and the destination's
transport entry point (:meth:`~MigrationEngine.handle`, handlers in
:mod:`.destination`). Defaults come from the caller; nothing here reads
configuration.
"""

import collections.abc
import os
import threading
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import batch_source
from nova_vtpm_migration.protocol import channel as channel_mod
from nova_vtpm_migration.protocol import context as context_mod
from nova_vtpm_migration.protocol import destination
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import keystore as keystore_mod
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import source
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import errors as tpm_errors

LOG = logging.getLogger(__name__)

#: Files of a host's state directory (see :meth:`MigrationEngine.open`).
JOURNAL_FILE = 'journal.sqlite'
KEY_DIR = 'keys'

#: ``oracle(row) -> 'commit' | 'abort' | 'unknown'`` decides an in-doubt
#: source migration at recovery; ``unknown`` leaves it in doubt.
OutcomeOracle = collections.abc.Callable[[journal_mod.MigrationRow], str]

#: The outcome an oracle returns when it cannot tell.
UNKNOWN = 'unknown'


def no_oracle(row: journal_mod.MigrationRow) -> str:
    """The default outcome oracle: it cannot tell, so nothing is decided.

    The Promela model (tests/model/commit.pml,
    ``MUTANT_PRESUMED_ABORT``) shows that presuming abort for a migration
    in TRANSFERRING/TRANSFERRED is unsafe whenever the guest may already
    have been handed over: the source key would become usable again while
    the guest runs on the destination. Without an oracle the migration
    therefore stays in doubt (source key LOCKED, destination key PENDING:
    nothing is lost and nothing is usable twice) until an oracle or the
    operator (``nova-vtpm-migration journal decide``) resolves it.
    """
    return UNKNOWN


def presumed_abort(row: journal_mod.MigrationRow) -> str:
    """An oracle for deployments where no hand-over can be in flight.

    Only safe where the caller knows the guest was never handed over
    (for example the data plane before QEMU started migrating).
    """
    return 'abort'


def open_state(state_dir: str, tpm: ty.Any
               ) -> tuple[journal_mod.Journal, keystore_mod.KeyStore]:
    """Open (or create) a host's journal and key store under *state_dir*.

    This is the one place that knows the layout of a host's protocol
    state: ``<state_dir>/journal.sqlite`` and ``<state_dir>/keys/``.
    """
    journal = journal_mod.Journal(os.path.join(state_dir, JOURNAL_FILE))
    keystore = keystore_mod.KeyStore(journal, os.path.join(state_dir, KEY_DIR),
                                     tpm)
    return journal, keystore


class MigrationEngine:
    """The migration protocol endpoint of one host.

    :param host: this host's transport address (sent to destinations so
        they can ask for the outcome during recovery).
    :param tpm: this host's ``HostTpm``.
    :param policy: the ``TrustPolicy`` every peer must satisfy.
    :param journal: this host's :class:`~.journal.Journal`.
    :param keystore: this host's :class:`~.keystore.KeyStore`.
    :param transport: how to reach peers.
    :param session_lifetime: seconds an attested session is reused
        (0: one phase 1 per migration).
    :param outcome_oracle: decides in-doubt migrations at recovery.
    :param handshake_rate: incoming handshakes answered per second
        (0: unlimited).
    :param state_lock: the lock serialising custody changes on this host
        (default: a new one); pass the one other users of the key store
        (the compute host's vault) hold.
    :param ak_certificate: this host's DER AK certificate (from the
        attestation CA, certifying *host*).
    :param abort_guard: whether a destination's rollback request may
        abort a migration this host coordinates (see
        :meth:`.source.SourceRole.on_rollback`).
    :param coalesce: concurrent migrations (and commits) towards one
        peer leave as one batch (see :mod:`.batch`).
    """

    def __init__(self, host: str, tpm: ty.Any, policy: ty.Any,
                 journal: journal_mod.Journal,
                 keystore: keystore_mod.KeyStore,
                 transport: transport_mod.Transport,
                 session_lifetime: float = (
                     channel_mod.DEFAULT_SESSION_LIFETIME),
                 outcome_oracle: OutcomeOracle = no_oracle,
                 handshake_rate: float = channel_mod.DEFAULT_HANDSHAKE_RATE,
                 state_lock: 'threading.RLock | None' = None,
                 ak_certificate: bytes = b'',
                 abort_guard: source.AbortGuard | None = None,
                 coalesce: bool = True) -> None:
        self.outcome_oracle = outcome_oracle
        self.channel = channel_mod.Channel(
            tpm, policy, journal, transport, host, ak_certificate,
            session_lifetime=session_lifetime,
            handshake_rate=handshake_rate)
        #: What the roles see of this host (shared by both).
        self.ctx = context_mod.HostContext(
            host=host, tpm=tpm, policy=policy, journal=journal,
            keystore=keystore, state_lock=state_lock or threading.RLock(),
            channel=self.channel)
        self.source = source.SourceRole(self.ctx, abort_guard)
        self.destination = destination.DestinationRole(
            self.ctx, self.source.decision)
        #: Concurrent migrations (and commits) towards one peer leave as
        #: one batch; may be switched at any time.
        self.coalesce = coalesce
        self._coalescer = batch_source.Coalescer(self.source)

    @classmethod
    def open(cls, host: str, tpm: ty.Any, policy: ty.Any, state_dir: str,
             transport: transport_mod.Transport,
             **kwargs: ty.Any) -> 'MigrationEngine':
        """Open (or create) the journal and key store under ``state_dir``
        and return an engine on them."""
        journal, keystore = open_state(state_dir, tpm)
        return cls(host, tpm, policy, journal, keystore, transport,
                   **kwargs)

    def close(self) -> None:
        """Close the journal; in-memory sessions are forgotten."""
        self.journal.close()

    @property
    def host(self) -> str:
        """This host's transport address."""
        return self.ctx.host

    @property
    def tpm(self) -> ty.Any:
        """This host's ``HostTpm``."""
        return self.ctx.tpm

    @property
    def policy(self) -> ty.Any:
        """The trust policy every peer must satisfy."""
        return self.ctx.policy

    @property
    def journal(self) -> journal_mod.Journal:
        """This host's durable journal."""
        return self.ctx.journal

    @property
    def keystore(self) -> keystore_mod.KeyStore:
        """This host's key custody."""
        return self.ctx.keystore

    @property
    def state_lock(self) -> threading.RLock:
        """Serialises state changes of migrations on this host."""
        return self.ctx.state_lock

    @property
    def transport(self) -> transport_mod.Transport:
        """How this host reaches its peers."""
        return self.channel.transport

    @property
    def session_lifetime(self) -> float:
        """Seconds an attested session is reused."""
        return self.channel.session_lifetime

    @property
    def local(self) -> ty.Any:
        """This host's public TPM evidence (collected once)."""
        return self.channel.local

    # -- phase 1 --------------------------------------------------------------

    def attest_peer(self, peer: str,
                    fresh: bool = False) -> session_mod.Session:
        """Return an attested session with ``peer`` (see
        :meth:`.channel.Channel.attest`)."""
        return self.channel.attest(peer, fresh=fresh)

    def forget_sessions(self) -> None:
        """Drop every session (e.g. after a policy change)."""
        self.channel.forget_sessions()

    # -- transport entry point -------------------------------------------

    def handle(self, request: bytes) -> bytes:
        """Process one request from a peer and return the reply bytes.

        Never raises: every failure becomes an ``error`` reply (sealed
        when the request was authenticated).
        """
        try:
            msg = messages.decode(request,
                                  allowed=('hello', 'attest', 'sealed'))
            if msg.type == 'hello':
                return self.channel.on_hello(request)
            if msg.type == 'attest':
                return self.channel.on_attest(msg)
            sess = self.channel.session_for(msg.body['session_id'])
            inner = sess.open(msg)
        except errors.HandshakeRateExceeded as exc:
            return _error_inner(exc)   # logged by the channel, sparingly
        except exception.VtpmMigrationException as exc:
            # The peer is not authenticated: the full reason stays here.
            LOG.warning('Refused a request: %s', exc)
            return _error_inner(exc, disclose=False)
        except Exception:
            LOG.exception('Internal error handling a request')
            return _internal_error()
        try:
            if inner.type == 'rollback':
                reply = self.source.on_rollback(sess, inner)
            else:
                reply = self.destination.dispatch(sess, inner)
        except exception.VtpmMigrationException as exc:
            LOG.warning('Refused %s from %s: %s', inner.type, sess.peer, exc)
            reply = _error_inner(exc)
        except Exception:
            LOG.exception('Internal error handling %s', inner.type)
            reply = _internal_error()
        return sess.seal(reply, request=request)

    # -- public API (delegates) -------------------------------------------

    def migrate_key(self, instance_uuid: str, peer: str,
                    migration_id: str | None = None,
                    state_blobs: dict[str, bytes] | None = None,
                    expect_ak: bytes = b'',
                    check_session: source.SessionCheck | None = None
                    ) -> 'source.MigrationHandle':
        """Phases 1 and 2 as source; see :meth:`.source.SourceRole.migrate`.

        Concurrent migrations towards ``peer`` leave as one batch (unless
        :attr:`coalesce` is off).
        """
        if self.coalesce:
            return self._coalescer.migrate(instance_uuid, peer,
                                           migration_id, state_blobs,
                                           expect_ak, check_session)
        return self.source.migrate(instance_uuid, peer, migration_id,
                                   state_blobs, expect_ak, check_session)

    def migrate_keys(self, items: list['batch_source.BatchItem'], peer: str,
                     expect_ak: bytes = b'',
                     check_session: source.SessionCheck | None = None
                     ) -> list['batch_source.Outcome']:
        """Phases 1 and 2 for several instances towards one peer as one
        batch (an evacuation); see :func:`.batch_source.migrate_batch`.

        :returns: per item, its handle or the exception that ended it.
        """
        return batch_source.migrate_batch(self.source, peer, items,
                                          expect_ak, check_session)

    def commit_many(self, migration_ids: list[str]
                    ) -> list[dict[str, ty.Any] | Exception]:
        """Commit several transferred migrations with one signature per
        host; see :func:`.batch_source.commit_batch`."""
        return batch_source.commit_batch(self.source, migration_ids)

    def request_rollback(self, migration_id: str,
                         reason: str = 'requested') -> None:
        """Destination: ask the source to abort an incoming migration; see
        :meth:`.destination.DestinationRole.request_rollback`."""
        self.destination.request_rollback(migration_id, reason)

    def commit(self, migration_id: str) -> dict[str, ty.Any]:
        """Commit a transferred migration; returns the signed receipt.

        Concurrent commits of migrations to one peer share their
        signatures (unless :attr:`coalesce` is off)."""
        if self.coalesce:
            return self._coalescer.commit(migration_id)
        return self.source.commit(migration_id)

    def abort(self, migration_id: str, reason: str = 'requested') -> None:
        """Abort a migration this host is the source of."""
        self.source.abort(migration_id, reason)

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        """Return a received secret to the local consumer (destination)."""
        return self.destination.take_pending_key(instance_uuid,
                                                 migration_id)

    def take_state_blobs(self, instance_uuid: str,
                         migration_id: str) -> dict[str, bytes]:
        """Return the state blobs received with a migration (in memory)."""
        return self.destination.take_state_blobs(instance_uuid,
                                                 migration_id)

    def decide(self, migration_id: str, outcome: str) -> str:
        """Resolve an in-doubt source migration (``commit``/``abort``).

        :returns: the migration's state afterwards.
        """
        return self.source.decide(migration_id, outcome)

    def record(self, migration_id: str) -> bytes | None:
        """The signed audit record of a committed migration, if any."""
        return self.journal.get_record(migration_id, 'record')

    def recover(self) -> dict[str, str]:
        """Resolve every unfinished migration of this host.

        Source migrations before TRANSFERRING are aborted; in-doubt ones
        (TRANSFERRING, TRANSFERRED) are decided by the outcome oracle;
        COMMITTING/ABORTING ones re-send their decision. Destination
        migrations in RESERVED are aborted; INSTALLED ones ask the source.
        Migrations whose peer cannot be reached stay as they are.

        :returns: migration id -> state after recovery.
        """
        self.keystore.wipe_orphans()
        result = self.source.recover(self.outcome_oracle)
        result.update(self.destination.recover())
        self.keystore.wipe_orphans()
        return result

    def settle(self, oracle: OutcomeOracle,
               min_age: float) -> dict[str, str]:
        """Finish what a running host can safely finish (periodically).

        Re-sends decided outcomes (a commit or abort whose delivery
        failed), puts source migrations in doubt for at least *min_age*
        seconds to *oracle* (which must answer ``commit`` or ``abort`` only
        when the hand-over is known to be over, e.g. from Nova's final
        migration status), and has INSTALLED destination migrations ask
        their source. Migrations that may still be in flight are never
        aborted here; that is :meth:`recover`'s job after a restart.

        :returns: migration id -> state afterwards, for those it touched.
        """
        result = self.source.settle(oracle, min_age)
        result.update(self.destination.settle(min_age))
        if result:
            self.keystore.wipe_orphans()
        return result


def _error_inner(exc: exception.VtpmMigrationException,
                 disclose: bool = True) -> bytes:
    """The ``error`` message of a refusal (code and printable text).

    :param disclose: the peer is authenticated and may read the reason.
        Otherwise the message names the kind of refusal (and the policy
        rule) but nothing of the policy's contents (golden PCR values,
        allow-lists) or of this host's evidence.
    """
    code = getattr(exc, 'code', type(exc).__name__)
    if disclose:
        text = str(exc)
    elif isinstance(exc, tpm_errors.PolicyViolation):
        text = f'refused: trust policy rule {exc.kwargs.get("rule")}'
    else:
        text = f'refused: {type(exc).__name__}'
    text = ''.join(c for c in text if c.isprintable())[:1024]
    return messages.encode('error', {'code': str(code)[:64],
                                     'message': text})


def _internal_error() -> bytes:
    return messages.encode('error', {'code': 'internal',
                                     'message': 'internal error'})
