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


"""The per-host migration engine: sessions, dispatch and recovery.

One :class:`MigrationEngine` per host ties together the host TPM, the
trust policy, the journal, the key store and a transport. It plays both
roles: the source API (:meth:`~MigrationEngine.migrate_key`,
:meth:`~MigrationEngine.commit`, :meth:`~MigrationEngine.abort`, in
:mod:`.source`) and the destination's transport entry point
(:meth:`~MigrationEngine.handle`, handlers in :mod:`.destination`).
"""

import collections
import collections.abc
import os
import threading
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import destination
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import keystore as keystore_mod
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import ratelimit
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import source
from nova_vtpm_migration.protocol import transport as transport_mod

LOG = logging.getLogger(__name__)
CONF = nvm_conf.CONF

#: Responder sessions outlive the initiator's lifetime by this much, so a
#: migration that started just before expiry can finish.
#: Files of a host's state directory (see :meth:`MigrationEngine.open`).
JOURNAL_FILE = 'journal.sqlite'
KEY_DIR = 'keys'
RESPONDER_GRACE = 120.0
MAX_PENDING_HANDSHAKES = 64
PENDING_HANDSHAKE_TTL = 60.0
MAX_RESPONDER_SESSIONS = 256

#: ``oracle(row) -> 'commit' | 'abort' | 'unknown'`` decides an in-doubt
#: source migration at recovery; ``unknown`` leaves it in doubt.
OutcomeOracle = collections.abc.Callable[[journal_mod.MigrationRow], str]

#: The outcome an oracle returns when it cannot tell.
UNKNOWN = 'unknown'


def no_oracle(row: journal_mod.MigrationRow) -> str:
    """The default outcome oracle: it cannot tell, so nothing is decided.

    NOTE(vtpm): the Promela model (tests/model/commit.pml,
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
        (default ``[vtpm_migration] session_lifetime``).
    :param outcome_oracle: decides in-doubt migrations at recovery.
    :param handshake_rate: incoming handshakes answered per second
        (default ``[vtpm_migration] max_handshake_rate``; 0: unlimited).
    """

    def __init__(self, host: str, tpm: ty.Any, policy: ty.Any,
                 journal: journal_mod.Journal,
                 keystore: keystore_mod.KeyStore,
                 transport: transport_mod.Transport,
                 session_lifetime: float | None = None,
                 outcome_oracle: OutcomeOracle = no_oracle,
                 handshake_rate: float | None = None) -> None:
        self.host = host
        self.tpm = tpm
        self.policy = policy
        self.journal = journal
        self.keystore = keystore
        self.transport = transport
        if session_lifetime is None:
            session_lifetime = CONF.vtpm_migration.session_lifetime
        self.session_lifetime = float(session_lifetime)
        self.outcome_oracle = outcome_oracle
        if handshake_rate is None:
            handshake_rate = CONF.vtpm_migration.max_handshake_rate
        self._hellos = ratelimit.TokenBucket(handshake_rate)
        self._lock = threading.RLock()
        #: Serialises state changes of migrations on this host.
        self.state_lock = threading.RLock()
        self._local: handshake.LocalEvidence | None = None
        self._out: dict[str, session_mod.Session] = {}
        self._in: collections.OrderedDict[bytes, session_mod.Session] = (
            collections.OrderedDict())
        #: peer -> lock held while phase 1 with it runs.
        self._handshakes: dict[str, threading.Lock] = {}
        #: peer -> (when, error) of the last failed phase 1 with it.
        self._failures: dict[str, tuple[float, Exception]] = {}
        self._pending: collections.OrderedDict[
            bytes, tuple[handshake.Responder, float]] = (
            collections.OrderedDict())
        self.source = source.SourceRole(self)
        self.destination = destination.DestinationRole(self)

    @classmethod
    def open(cls, host: str, tpm: ty.Any, policy: ty.Any, state_dir: str,
             transport: transport_mod.Transport,
             **kwargs: ty.Any) -> 'MigrationEngine':
        """Open (or create) the journal and key store under ``state_dir``
        and return an engine on them."""
        journal = journal_mod.Journal(os.path.join(state_dir, JOURNAL_FILE))
        keystore = keystore_mod.KeyStore(journal,
                                         os.path.join(state_dir, KEY_DIR),
                                         tpm)
        return cls(host, tpm, policy, journal, keystore, transport,
                   **kwargs)

    def close(self) -> None:
        """Close the journal; in-memory sessions are forgotten."""
        self.journal.close()

    @property
    def local(self) -> handshake.LocalEvidence:
        """This host's public TPM evidence (collected once)."""
        with self._lock:
            if self._local is None:
                self._local = handshake.local_evidence(self.tpm)
            return self._local

    # -- phase 1 --------------------------------------------------------------

    def attest_peer(self, peer: str,
                    fresh: bool = False) -> session_mod.Session:
        """Return an attested session with ``peer``, running phase 1 if
        there is none younger than the session lifetime.

        Concurrent callers share one handshake: those that waited for it
        get its session, or its error.

        :param fresh: always run phase 1.
        :raises ProtocolError: the handshake failed or was refused.
        :raises VerificationError: the peer's evidence was refused.
        """
        if not fresh:
            current = self._current_session(peer)
            if current is not None:
                return current
        waited_since = time.monotonic()
        # NOTE(vtpm): one handshake per peer at a time. Callers that
        # waited for another's handshake use its session, or fail with its
        # error, instead of each running phase 1 (N concurrent migrations
        # to one host would otherwise cost N attestations on both TPMs).
        with self._peer_lock(peer):
            if not fresh:
                current = self._current_session(peer)
                if current is not None:
                    return current
                failed = self._failures.get(peer)
                if failed is not None and failed[0] >= waited_since:
                    raise failed[1]
            started = time.monotonic()
            try:
                initiator = handshake.Initiator(self.tpm, self.policy,
                                                self.journal, self.local,
                                                peer)
                reply = self.raw_call(peer, initiator.hello())
                attest = initiator.process_hello_reply(reply)
                new = initiator.process_attest_reply(
                    self.raw_call(peer, attest))
            except Exception as exc:
                self._failures[peer] = (time.monotonic(), exc)
                raise
            LOG.debug('Phase 1 with %s took %.1f ms', peer,
                      (time.monotonic() - started) * 1000)
            with self._lock:
                self._out[peer] = new
                self._failures.pop(peer, None)
            return new

    def _current_session(self, peer: str) -> session_mod.Session | None:
        with self._lock:
            current = self._out.get(peer)
        if current is None or current.expired(self.session_lifetime):
            return None
        return current

    def _peer_lock(self, peer: str) -> threading.Lock:
        with self._lock:
            return self._handshakes.setdefault(peer, threading.Lock())

    def forget_sessions(self) -> None:
        """Drop every session (e.g. after a policy change)."""
        with self._lock:
            self._out.clear()
            self._in.clear()
            self._pending.clear()
            self._failures.clear()

    def raw_call(self, peer: str, request: bytes) -> bytes:
        """Send bytes through the transport, mapping failures to
        :class:`~.errors.TransportError`."""
        try:
            return self.transport.call(peer, request)
        except errors.ProtocolError:
            raise
        except Exception as exc:
            raise errors.TransportError(peer=peer,
                                        reason=type(exc).__name__) from None

    def call(self, peer: str, msg_type: str,
             body: collections.abc.Mapping[str, ty.Any],
             session: session_mod.Session | None = None,
             expect_ak: bytes = b''
             ) -> tuple[messages.Message, bytes, session_mod.Session]:
        """Send one sealed request and return the verified reply.

        :param session: the session to use (default: current, attested on
            demand; re-attested once if the peer forgot it).
        :param expect_ak: the peer AK this migration is bound to.
        :returns: the reply message, the encoded inner request and the
            session used.
        :raises PeerRefused: the peer answered with an error.
        :raises PeerIdentityMismatch: the peer is not ``expect_ak``.
        """
        inner = messages.encode(msg_type, body)
        for attempt in (1, 2):
            sess = session or self.attest_peer(peer)
            if expect_ak and sess.peer_ak_name != expect_ak:
                raise errors.PeerIdentityMismatch(
                    reason=f'{peer} now presents another TPM identity')
            try:
                return self._exchange(sess, msg_type, inner), inner, sess
            except errors.PeerRefused as exc:
                if exc.kwargs.get('peer_code') != errors.SessionError.code \
                        or attempt == 2:
                    raise
                sess.valid = False
                session = None
        raise AssertionError('unreachable')

    def _exchange(self, sess: session_mod.Session, msg_type: str,
                  inner: bytes) -> messages.Message:
        with sess.call_lock:
            envelope = sess.seal(inner)
            raw = self.raw_call(sess.peer, envelope)
            msg = messages.decode(raw, allowed=('sealed', 'error'))
            if msg.type == 'error':
                raise errors.PeerRefused(
                    peer=sess.peer, request=msg_type,
                    peer_code=msg.body['code'],
                    peer_message=msg.body['message'])
            try:
                reply = sess.open(msg, request=envelope)
            except errors.ProtocolError:
                sess.valid = False
                raise
        if reply.type == 'error':
            raise errors.PeerRefused(peer=sess.peer, request=msg_type,
                                     peer_code=reply.body['code'],
                                     peer_message=reply.body['message'])
        if reply.type != messages.REPLIES[msg_type]:
            raise errors.UnexpectedMessage(type=reply.type,
                                           reason=f'reply to {msg_type}')
        return reply

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
                return self._on_hello(request)
            if msg.type == 'attest':
                return self._on_attest(msg)
            sess = self._session_for(msg.body['session_id'])
            inner = sess.open(msg)
        except errors.HandshakeRateExceeded as exc:
            return _error_inner(exc)   # logged by _on_hello, sparingly
        except exception.VtpmMigrationException as exc:
            LOG.warning('Refused a request: %s', exc)
            return _error_inner(exc)
        except Exception:
            LOG.exception('Internal error handling a request')
            return _internal_error()
        try:
            reply = self.destination.dispatch(sess, inner)
        except exception.VtpmMigrationException as exc:
            LOG.warning('Refused %s from %s: %s', inner.type, sess.peer, exc)
            reply = _error_inner(exc)
        except Exception:
            LOG.exception('Internal error handling %s', inner.type)
            reply = _internal_error()
        return sess.seal(reply, request=request)

    def _on_hello(self, request: bytes) -> bytes:
        if not self._hellos.take():
            # NOTE(vtpm): refused before any TPM work; logged once per
            # 100 refusals so that a flood does not flood the log either.
            if self._hellos.refused % 100 == 1:
                LOG.warning('Refusing incoming handshakes above %s per '
                            'second (%d refused so far)', self._hellos.rate,
                            self._hellos.refused)
            raise errors.HandshakeRateExceeded(rate=self._hellos.rate)
        responder = handshake.Responder(self.tpm, self.policy, self.journal,
                                        self.local)
        reply = responder.process_hello(request)
        with self._lock:
            self._expire_pending()
            self._pending[responder.session_id] = (responder,
                                                   time.monotonic())
            while len(self._pending) > MAX_PENDING_HANDSHAKES:
                self._pending.popitem(last=False)
        return reply

    def _on_attest(self, msg: messages.Message) -> bytes:
        with self._lock:
            self._expire_pending()
            entry = self._pending.pop(msg.body['session_id'], None)
        if entry is None:
            raise errors.SessionError(reason='no handshake pending for '
                                             'this session id')
        reply, sess = entry[0].process_attest(msg)
        with self._lock:
            self._in[sess.session_id] = sess
            while len(self._in) > MAX_RESPONDER_SESSIONS:
                self._in.popitem(last=False)
        return reply

    def _expire_pending(self) -> None:
        now = time.monotonic()
        for sid in [s for s, (_r, t) in self._pending.items()
                    if now - t > PENDING_HANDSHAKE_TTL]:
            del self._pending[sid]

    def _session_for(self, session_id: bytes) -> session_mod.Session:
        with self._lock:
            sess = self._in.get(session_id)
            if sess is not None and sess.expired(
                    self.session_lifetime + RESPONDER_GRACE):
                del self._in[session_id]
                sess = None
        if sess is None:
            raise errors.SessionError(reason='unknown or expired session')
        return sess

    # -- public API (delegates) -------------------------------------------

    def migrate_key(self, instance_uuid: str, peer: str,
                    migration_id: str | None = None,
                    state_blobs: dict[str, bytes] | None = None
                    ) -> 'source.MigrationHandle':
        """Phases 1 and 2 as source; see :meth:`.source.SourceRole.migrate`.
        """
        return self.source.migrate(instance_uuid, peer, migration_id,
                                   state_blobs)

    def commit(self, migration_id: str) -> dict[str, ty.Any]:
        """Commit a transferred migration; returns the signed receipt."""
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
        result = self.source.recover()
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


def _error_inner(exc: exception.VtpmMigrationException) -> bytes:
    """The ``error`` message of a refusal (code and printable text)."""
    code = getattr(exc, 'code', type(exc).__name__)
    text = ''.join(c for c in str(exc) if c.isprintable())[:1024]
    return messages.encode('error', {'code': str(code)[:64],
                                     'message': text})


def _internal_error() -> bytes:
    return messages.encode('error', {'code': 'internal',
                                     'message': 'internal error'})
