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


"""Attested host-pair sessions and the authenticated ``sealed`` envelope.

After phase 1 every message is the payload of a ``sealed`` envelope:
``{session_id, seq, request_hash, payload, mac}`` where ``mac`` is
HMAC-SHA256 under the key of the sender's direction over the canonical
encoding of the other four fields. ``seq`` increases per direction and
each number is accepted once: a receiver keeps the highest number seen and
a window of the :data:`REPLAY_WINDOW` numbers below it, so concurrent
requests on one session may overtake each other while a replay, or a
message older than the window, is refused. A reply carries the hash of
the exact request it answers, so a reply cannot be moved to another
request.
"""

import dataclasses
import threading
import time

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import evidence

#: Sequence numbers below the highest one seen that are still accepted
#: (once each).
REPLAY_WINDOW = 64

_MAC_INPUT: wire.Schema = {
    name: field for name, field in messages.SCHEMAS['sealed'].items()
    if name != 'mac'}


@dataclasses.dataclass(eq=False)
class Session:
    """One attested session between this host and a peer.

    :ivar session_id: 16 random bytes chosen by the responder.
    :ivar peer: transport address of the peer (initiator side) or a
        label derived from its AK name (responder side).
    :ivar initiator: whether this host started the handshake.
    :ivar keys: the session keys (never logged).
    :ivar peer_identity: the peer's verified TPM identity.
    :ivar peer_signing_key: the peer's verified, AK-certified signing key.
    :ivar peer_pcr_values: the PCR values of the peer's verified quote.
    :ivar peer_host: the host name the peer's AK certificate certifies.
    :ivar peer_clock: the TPM clock of the peer's verified quote (its
        evidence's age is judged against it later).
    :ivar transcript: the handshake transcript hash both sides derived
        the session keys from (binds per-session statements to it).
    :ivar binding_key: responder side: this host's binding key as
        certified for this session (reused by every migration on it).
    """

    session_id: bytes
    peer: str
    initiator: bool
    keys: crypto.SessionKeys = dataclasses.field(repr=False)
    version: int
    suite: str
    local_ak_name: bytes
    peer_ak_name: bytes
    peer_identity: evidence.HostIdentity = dataclasses.field(repr=False)
    peer_signing_key: evidence.CertifiedKey = dataclasses.field(
        repr=False)
    peer_pcr_values: tuple[tuple[int, bytes], ...] = dataclasses.field(
        repr=False)
    established_at: float = dataclasses.field(default_factory=time.monotonic)
    send_seq: int = 0
    recv_seq: int = 0
    #: Bit i set: ``recv_seq - i`` was accepted.
    recv_window: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock,
                                             repr=False)
    valid: bool = True
    peer_host: str = ''
    peer_clock: evidence.ClockInfo | None = None
    transcript: bytes = dataclasses.field(default=b'', repr=False)
    binding_key: evidence.CertifiedKey | None = dataclasses.field(
        default=None, repr=False)

    def binding_qualifier(self) -> bytes:
        """The qualifying data of the responder's binding key
        certification for this session: ``H('binding-key', transcript)``,
        fresh for every handshake (it covers the initiator's nonce and
        ephemeral key) and known to both sides only."""
        return crypto.transcript_hash('binding-key', self.transcript)

    @property
    def age(self) -> float:
        """Seconds since the session was established."""
        return time.monotonic() - self.established_at

    def expired(self, lifetime: float) -> bool:
        """Whether the session is older than ``lifetime`` seconds or was
        invalidated."""
        if not self.valid:
            return True
        return time.monotonic() - self.established_at > lifetime

    @property
    def _send_key(self) -> bytes:
        return self.keys.i2r if self.initiator else self.keys.r2i

    @property
    def _recv_key(self) -> bytes:
        return self.keys.r2i if self.initiator else self.keys.i2r

    def seal(self, payload: bytes, request: bytes = b'') -> bytes:
        """Wrap an encoded inner message into a MACed envelope.

        :param payload: the canonical inner message.
        :param request: for a reply, the exact sealed request it answers.
        """
        with self.lock:
            self.send_seq += 1
            seq = self.send_seq
        fields = {'session_id': self.session_id, 'seq': seq,
                  'request_hash': crypto.sha256(request) if request else b'',
                  'payload': payload}
        tag = crypto.mac(self._send_key, 'sealed',
                         wire.encode(fields, _MAC_INPUT))
        return messages.encode('sealed', dict(fields, mac=tag))

    def open(self, envelope: messages.Message,
             request: bytes = b'') -> messages.Message:
        """Verify a ``sealed`` envelope and decode its inner message.

        :param envelope: the decoded ``sealed`` message.
        :param request: for a reply, the sealed request this host sent.
        :raises AuthenticationFailed: wrong MAC, session or request hash.
        :raises ReplayDetected: sequence number seen before, or older
            than the replay window.
        :raises MalformedMessage: the inner message is malformed.
        """
        body = envelope.body
        if body['session_id'] != self.session_id:
            raise errors.AuthenticationFailed(reason='session id mismatch')
        fields = {k: body[k] for k in _MAC_INPUT}
        if not crypto.mac_ok(self._recv_key, 'sealed',
                             wire.encode(fields, _MAC_INPUT), body['mac']):
            raise errors.AuthenticationFailed(reason='message MAC mismatch')
        expected = crypto.sha256(request) if request else b''
        if body['request_hash'] != expected:
            raise errors.AuthenticationFailed(
                reason='reply does not answer this request')
        with self.lock:
            self._accept(body['seq'])
        return messages.decode(body['payload'],
                               allowed=messages.SEALED_TYPES)

    def _accept(self, seq: int) -> None:
        """Record ``seq`` as received (under :attr:`lock`).

        :raises ReplayDetected: seen before or older than the window.
        """
        if seq > self.recv_seq:
            shift = seq - self.recv_seq
            self.recv_window = ((self.recv_window << shift) | 1) & (
                (1 << REPLAY_WINDOW) - 1)
            self.recv_seq = seq
            return
        age = self.recv_seq - seq
        if age >= REPLAY_WINDOW or self.recv_window >> age & 1:
            raise errors.ReplayDetected(
                reason=f'sequence number {seq} seen before or older than '
                       f'the last {REPLAY_WINDOW} below {self.recv_seq}')
        self.recv_window |= 1 << age
