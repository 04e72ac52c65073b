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
encoding of the other four fields. ``seq`` strictly increases per
direction (replays and reordering inside a session are refused); a reply
carries the hash of the exact request it answers, so a reply cannot be
moved to another request.
"""

import dataclasses
import threading
import time

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import evidence

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
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock,
                                             repr=False)
    #: Serialises request/reply exchanges of the initiator, so requests
    #: leave in sequence-number order.
    call_lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False)
    valid: bool = True
    peer_host: str = ''
    peer_clock: evidence.ClockInfo | None = None

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
        :raises ReplayDetected: sequence number not above the last one.
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
            if body['seq'] <= self.recv_seq:
                raise errors.ReplayDetected(
                    reason=f"sequence number {body['seq']} not above "
                           f'{self.recv_seq}')
            self.recv_seq = body['seq']
        return messages.decode(body['payload'],
                               allowed=messages.SEALED_TYPES)
