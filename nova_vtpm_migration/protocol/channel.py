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

"""The attested channel of one host: phase-1 sessions and sealed calls.

A :class:`Channel` runs phase 1 (:mod:`.handshake`) as initiator towards
peers and as responder for them, keeps the resulting sessions, and sends
sealed requests (:mod:`.session`) through a :class:`~.transport.Transport`.
The migration roles (:mod:`.source`, :mod:`.destination`) use it through
their :class:`~.context.HostContext`; they never see a transport.
"""

import collections
import collections.abc
import random
import threading
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import ratelimit
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import transport as transport_mod

LOG = logging.getLogger(__name__)

#: Seconds an attested session is reused by default (``[vtpm_migration]
#: session_lifetime`` sets it on a compute host).
DEFAULT_SESSION_LIFETIME = 300.0
#: Incoming handshakes answered per second by default (``[vtpm_migration]
#: max_handshake_rate``); 0 means unlimited (a ``hello`` costs no TPM
#: command and keeps no state).
DEFAULT_HANDSHAKE_RATE = 0.0
#: Responder sessions outlive the initiator's lifetime by this much, so a
#: migration that started just before expiry can finish.
RESPONDER_GRACE = 120.0
#: Responder sessions kept, at most (the oldest are dropped first).
MAX_RESPONDER_SESSIONS = 256
#: A new migration may start on a session whose evidence is younger than
#: this fraction of the policy's ``max_evidence_age`` (the responder's
#: epoch quote may be a third older; see :mod:`.handshake`).
FRESH_FRACTION = 2.0 / 3.0
#: Allowance for message delays when a responder judges that age.
FRESHNESS_SLACK = 10.0
#: Pauses (seconds, randomly stretched up to twice) before asking a busy
#: peer again for a handshake.
BUSY_RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0)


class Channel:
    """Phase-1 sessions of one host and the sealed calls made on them.

    :param tpm: this host's ``HostTpm``.
    :param policy: the ``TrustPolicy`` every peer must satisfy.
    :param clocks: where the last-seen clock of each peer AK is kept (the
        journal).
    :param transport: how to reach peers.
    :param host: this host's name (its AK certificate names it).
    :param ak_certificate: this host's DER AK certificate.
    :param session_lifetime: seconds an attested session is reused
        (0: one handshake per migration); never longer than the policy's
        evidence age allows.
    :param handshake_rate: incoming handshakes answered per second
        (0: unlimited).
    """

    def __init__(self, tpm: ty.Any, policy: ty.Any,
                 clocks: handshake.ClockStore,
                 transport: transport_mod.Transport, host: str,
                 ak_certificate: bytes,
                 session_lifetime: float = DEFAULT_SESSION_LIFETIME,
                 handshake_rate: float = DEFAULT_HANDSHAKE_RATE) -> None:
        self.tpm = tpm
        self.policy = policy
        self.clocks = clocks
        self.transport = transport
        self.host = host
        self.ak_certificate = ak_certificate
        self.session_lifetime = float(session_lifetime)
        self._hellos = ratelimit.TokenBucket(handshake_rate)
        self._lock = threading.RLock()
        self._local_lock = threading.Lock()
        self._local: handshake.LocalEvidence | None = None
        self._out: dict[str, session_mod.Session] = {}
        self._in: collections.OrderedDict[bytes, session_mod.Session] = (
            collections.OrderedDict())
        #: peer -> lock held while phase 1 with it runs.
        self._handshakes: dict[str, threading.Lock] = {}
        #: peer -> (when, error) of the last failed phase 1 with it.
        self._failures: dict[str, tuple[float, Exception]] = {}
        self.responder = handshake.Responder(tpm, policy, clocks,
                                             lambda: self.local)

    @property
    def local(self) -> handshake.LocalEvidence:
        """This host's public TPM evidence (collected once; the TPM's
        keys and sessions are made ready for migrations at the same
        time, so that the first migration costs what later ones do)."""
        local = self._local
        if local is not None:
            return local
        # Its own lock: sessions and calls do not wait for these TPM
        # commands (under self._lock they would).
        with self._local_lock:
            if self._local is None:
                local = handshake.local_evidence(
                    self.tpm, self.ak_certificate, self.host)
                warm_up = getattr(self.tpm, 'warm_up', None)
                if warm_up is not None:
                    warm_up()
                self._local = local
            return self._local

    @property
    def reuse_limit(self) -> float:
        """Seconds a session of this host starts new migrations: the
        session lifetime, capped by the policy's evidence age."""
        return min(self.session_lifetime,
                   float(self.policy.max_evidence_age) * FRESH_FRACTION)

    def fresh_enough(self, sess: session_mod.Session) -> bool:
        """Whether a responder session may start a new migration (its
        evidence is within the policy's age, allowing for delays)."""
        return sess.valid and sess.age <= (
            self.policy.max_evidence_age * FRESH_FRACTION + FRESHNESS_SLACK)

    # -- initiator ------------------------------------------------------

    def attest(self, peer: str, fresh: bool = False) -> session_mod.Session:
        """Return an attested session with ``peer``, running phase 1 if
        there is none younger than :attr:`reuse_limit`. The peer must be
        certified for the host name *peer*.

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
        # One handshake per peer at a time. Callers that waited for
        # another's handshake use its session, or fail with its error,
        # instead of each running phase 1 (N concurrent migrations to one
        # host would otherwise cost N attestations on both TPMs).
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
                new = self._handshake(peer)
            except Exception as exc:
                self._failures[peer] = (time.monotonic(), exc)
                raise
            LOG.debug('Phase 1 with %s took %.1f ms', peer,
                      (time.monotonic() - started) * 1000)
            with self._lock:
                self._out[peer] = new
                self._failures.pop(peer, None)
            return new

    def _handshake(self, peer: str) -> session_mod.Session:
        """Phase 1 with *peer*; a peer that is busy (above its handshake
        rate, e.g. during a flood of forged hellos) is asked again after a
        short, growing pause."""
        restarted = False
        for pause in BUSY_RETRY_PAUSES + (None,):
            initiator = handshake.Initiator(self.tpm, self.policy,
                                            self.clocks, self.local, peer)
            try:
                reply = self.raw_call(peer, initiator.hello())
                attest = initiator.process_hello_reply(reply)
                return initiator.process_attest_reply(
                    self.raw_call(peer, attest))
            except errors.PeerRefused as exc:
                code = exc.kwargs.get('peer_code')
                if code == errors.SessionError.code and not restarted:
                    # The responder's state changed under its epoch (or
                    # the handshake outlived it): once more, at once.
                    restarted = True
                    continue
                if code != errors.HandshakeRateExceeded.code or \
                        pause is None:
                    raise
                time.sleep(pause * (1 + random.random()))  # noqa: S311
        raise AssertionError('unreachable')

    def _current_session(self, peer: str) -> session_mod.Session | None:
        with self._lock:
            current = self._out.get(peer)
        if current is None or current.expired(self.reuse_limit):
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
            sess = session or self.attest(peer)
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
        # No lock is held across the round trip: concurrent
        # requests on one session may overtake each other (the peer
        # accepts each sequence number once, within a window).
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

    # -- responder ------------------------------------------------------

    def on_hello(self, request: bytes) -> bytes:
        """Answer a peer's ``hello`` (phase 1, first round trip).

        :raises HandshakeRateExceeded: above the handshake rate; refused
            before any work.
        """
        if not self._hellos.take():
            # Logged once per 100 refusals, so that a flood does not flood
            # the log either.
            if self._hellos.refused % 100 == 1:
                LOG.warning('Refusing incoming handshakes above %s per '
                            'second (%d refused so far)', self._hellos.rate,
                            self._hellos.refused)
            raise errors.HandshakeRateExceeded(rate=self._hellos.rate)
        return self.responder.process_hello(request)

    def on_attest(self, msg: messages.Message) -> bytes:
        """Finish a handshake this host answered (second round trip)."""
        reply, sess = self.responder.process_attest(msg)
        with self._lock:
            self._in[sess.session_id] = sess
            while len(self._in) > MAX_RESPONDER_SESSIONS:
                self._in.popitem(last=False)
        return reply

    def session_for(self, session_id: bytes) -> session_mod.Session:
        """The responder session a sealed request names.

        :raises SessionError: unknown or expired.
        """
        with self._lock:
            sess = self._in.get(session_id)
            if sess is not None and sess.expired(
                    self.session_lifetime + RESPONDER_GRACE):
                del self._in[session_id]
                sess = None
        if sess is None:
            raise errors.SessionError(reason='unknown or expired session')
        return sess
