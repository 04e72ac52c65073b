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

"""Phase 1: dual TPM attestation and the trusted channel.

::

    I -> R  hello        versions, suites, nI, eI
    R -> I  hello_reply  versions, suites, version, suite (the best common
                         ones), sid, nR, eR,
                         {R.identity, R.signing_key, epoch nonce,
                          quote_R(H('responder-epoch', eR, epoch nonce))}_hsR,
                         cookie
    I -> R  attest       sid, {I.identity, I.signing_key,
                               quote_I(H('quote-initiator', T2, I's
                                         identity and key))}_hsI, cookie
    R -> I  attest_reply sid, confirm = HMAC(k_confirm, T3)

    R certifies its binding key for the session:
            certify_AK_R(binding key, H('binding-key', T3))

    Z = ECDH(eI, eR)
    hsR = HKDF(Z, H(hello, reply core)),  T2 = H(hello, reply core, {..}_hsR)
    hsI = HKDF(Z, T2),                    T3 = H(T2, {..}_hsI)
    i2r | r2i | k_confirm = HKDF(Z, T3)

Identities are the hosts' TPM identities with the AK certificate of the
operator's attestation CA (:mod:`nova_vtpm_migration.tpm.akcert`), which
binds each AK to its EK and to a Nova host name: the initiator accepts the
responder only if it is certified for exactly the host it called, and
every peer's host name is recorded in the session. The certificate makes
the online ``MakeCredential`` round trip unnecessary.

As in SIGMA-I and TLS 1.3, only nonces and ephemeral keys travel in the
clear: a passive observer learns neither host's certificates nor its PCR
values; the initiator reveals its identity only after it has verified the
responder, so its identity is hidden from active attackers too.

The responder's evidence is amortised over an *epoch*
(:class:`Epoch`, at most a third of the policy's ``max_evidence_age``):
one TPM quote binds the epoch's ECDH key ``eR`` to the responder's TPM and
PCRs, and only the holder of that key can produce the encrypted evidence
for the initiator's fresh ``eI``. The initiator's quote is fresh for every
handshake (it covers ``nR``). The responder keeps no per-handshake state:
what it needs to finish is in the cookie, encrypted under its own key, so
a flood of ``hello`` messages costs it no TPM command and cannot crowd out
or kill a real handshake; a forged ``attest`` changes nothing, and a
replayed one is refused (its session id was used).

A finished handshake costs the responder one ``TPM2_PCR_Read`` (its PCRs
must still be those of its epoch quote) and one ``TPM2_Certify``: its
binding key, certified with qualifying data bound to the session's
transcript, is presented for every migration on the session (see
:mod:`.transfer`).
"""

import collections
import dataclasses
import threading
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import verify

LOG = logging.getLogger(__name__)

#: The clear fields of ``hello_reply`` (its core, hashed into the
#: transcript).
_REPLY_CORE: wire.Schema = {
    name: field for name, field in messages.SCHEMAS['hello_reply'].items()
    if name not in ('evidence', 'cookie')}
#: What the initiator's quote covers besides the transcript.
_INITIATOR_KEYS: wire.Schema = {
    name: field for name, field in messages.INITIATOR_EVIDENCE.items()
    if name != 'quote'}
#: Session ids of finished handshakes kept against replays, at most.
MAX_CONSUMED = 4096
#: Appended to an AK name to keep the last clock of its epoch quotes.
EPOCH_CLOCK_SUFFIX = b"/epoch"


class ClockStore(ty.Protocol):
    """Persistent last-seen TPM clock of each peer AK."""

    def get_peer_clock(self, ak_name: bytes) -> evidence.ClockInfo | None:
        """The last accepted clock of a peer AK, or ``None``."""
        ...

    def set_peer_clock(self, ak_name: bytes,
                       clock: evidence.ClockInfo) -> None:
        """Persist the clock of a peer AK's accepted quote."""
        ...


@dataclasses.dataclass(frozen=True)
class LocalEvidence:
    """This host's public TPM evidence.

    :ivar identity: the TPM identity with this host's AK certificate.
    :ivar signing_key: the AK-certified signing key.
    :ivar ak_name: the AK's TPM name.
    :ivar host: the host name the AK certificate certifies.
    """

    identity: evidence.HostIdentity
    signing_key: evidence.CertifiedKey
    ak_name: bytes
    host: str


def local_evidence(tpm: ty.Any, ak_certificate: bytes,
                   host: str) -> LocalEvidence:
    """Collect this host's identity and certified signing key.

    :param tpm: the host's :class:`~nova_vtpm_migration.tpm.host.HostTpm`.
    :param ak_certificate: the DER AK certificate of this host.
    :param host: this host's name (the one its AK certificate names).
    """
    identity = dataclasses.replace(tpm.identity(),
                                   ak_certificate=ak_certificate)
    signing_key = tpm.certified_signing_key(crypto.SIGNING_KEY_QUALIFIER)
    return LocalEvidence(identity=identity, signing_key=signing_key,
                         ak_name=names.object_name(identity.ak_public),
                         host=host)


def verify_peer_keys(identity: evidence.HostIdentity,
                     signing_key: evidence.CertifiedKey, policy: ty.Any,
                     host: str | None = None,
                     now: ty.Any = None) -> tuple[bytes, str]:
    """Verify a peer's identity (EK chain, AK certificate for *host*) and
    its AK-certified signing key.

    :param host: the host name the identity must be certified for
        (``None``: any, returned).
    :param now: judge certificate validity at this time (audits).
    :returns: the peer's AK name and certified host name.
    :raises VerificationError: the TPM layer refused the evidence.
    """
    ak_name = names.object_name(identity.ak_public, 'identity.ak_public')
    with names.checked('identity'):
        certified = verify.verify_identity(identity, policy, host=host,
                                           now=now)
    with names.checked('signing key'):
        verify.verify_signing_key(signing_key, identity.ak_public,
                                  crypto.SIGNING_KEY_QUALIFIER)
    return ak_name, certified


def _check_quote(quote: evidence.Quote, identity: evidence.HostIdentity,
                 clock_key: bytes, qualifying_data: bytes, policy: ty.Any,
                 clocks: ClockStore) -> evidence.ClockInfo:
    previous = clocks.get_peer_clock(clock_key)
    with names.checked('quote'):
        clock = verify.verify_quote(quote, identity, qualifying_data,
                                    policy, previous)
    clocks.set_peer_clock(clock_key, clock)
    return clock


def _check_choice(body: dict[str, ty.Any]) -> None:
    """Refuse a version or suite other than the best common one of
    both sides' offers: no downgrade."""
    common = set(body['versions']) & set(messages.SUPPORTED_VERSIONS)
    if not common or body['version'] != max(common):
        raise errors.UnsupportedVersion(
            version=body['version'], supported=messages.SUPPORTED_VERSIONS)
    suites = [s for s in messages.SUPPORTED_SUITES if s in body['suites']]
    if not suites or body['suite'] != suites[0]:
        raise errors.UnsupportedSuite(suite=body['suite'],
                                      supported=messages.SUPPORTED_SUITES)


def _refusal(msg: messages.Message, peer: str, request: str) -> ty.NoReturn:
    raise errors.PeerRefused(peer=peer, request=request,
                             peer_code=msg.body['code'],
                             peer_message=msg.body['message'])


def _epoch_qualifier(point: bytes, nonce: bytes) -> bytes:
    return crypto.transcript_hash('responder-epoch', point, nonce)


def _hs_r_salt(hello_hash: bytes, core_hash: bytes) -> bytes:
    return crypto.transcript_hash('hs-r', hello_hash, core_hash)


def _t2(hello_hash: bytes, core_hash: bytes, evidence_hash: bytes) -> bytes:
    return crypto.transcript_hash('t2', hello_hash, core_hash, evidence_hash)


def _t3(t2: bytes, evidence_hash: bytes) -> bytes:
    return crypto.transcript_hash('t3', t2, evidence_hash)


def _seal(z: bytes, salt: bytes, label: str, plaintext: bytes) -> bytes:
    key, nonce = crypto.derive_handshake_key(z, salt, label)
    return crypto.aead_encrypt(key, nonce, plaintext, salt)


def _open(z: bytes, salt: bytes, label: str, ciphertext: bytes) -> bytes:
    key, nonce = crypto.derive_handshake_key(z, salt, label)
    try:
        return crypto.aead_decrypt(key, nonce, ciphertext, salt)
    except errors.DecryptionFailed:
        raise errors.AuthenticationFailed(
            reason=f'the {label} evidence does not decrypt under the '
                   'handshake key (not from the holder of the ephemeral '
                   'key, or altered)') from None


class Initiator:
    """The initiating side of one handshake (usually the source host).

    :param tpm: this host's ``HostTpm``.
    :param policy: the ``TrustPolicy`` the responder must satisfy.
    :param clocks: persistent per-peer clock store.
    :param local: this host's :class:`LocalEvidence`.
    :param peer: transport address of the responder.
    :param host: the host name the responder must be certified for
        (default: *peer*, as Nova's host names are the RPC server names).
    """

    def __init__(self, tpm: ty.Any, policy: ty.Any, clocks: ClockStore,
                 local: LocalEvidence, peer: str,
                 host: str | None = None) -> None:
        self._tpm = tpm
        self._policy = policy
        self._clocks = clocks
        self._local = local
        self._peer = peer
        self._host = host or peer
        self._eph = crypto.EphemeralKey()
        self._hello = b''
        self._started = time.monotonic()
        self._pending: tuple[ty.Any, ...] | None = None

    def hello(self) -> bytes:
        """Build the ``hello`` message (no identity in it)."""
        self._started = time.monotonic()
        self._hello = messages.encode('hello', {
            'versions': list(messages.SUPPORTED_VERSIONS),
            'suites': list(messages.SUPPORTED_SUITES),
            'nonce': crypto.random_bytes(crypto.NONCE_SIZE),
            'ephemeral': self._eph.public_bytes,
        })
        return self._hello

    def process_hello_reply(self, data: bytes) -> bytes:
        """Verify ``hello_reply`` and build ``attest``.

        :raises ProtocolError: malformed, downgraded or refused reply.
        :raises VerificationError: the responder's evidence is refused
            (``HostBindingError``: certified for another host).
        """
        msg = messages.decode(data, allowed=('hello_reply', 'error'))
        if msg.type == 'error':
            _refusal(msg, self._peer, 'hello')
        body = msg.body
        _check_choice(body)
        z = self._eph.exchange(body['ephemeral'])
        hello_hash = crypto.sha256(self._hello)
        core_hash = crypto.sha256(wire.encode(
            {k: body[k] for k in _REPLY_CORE}, _REPLY_CORE))
        salt = _hs_r_salt(hello_hash, core_hash)
        theirs = wire.decode(_open(z, salt, 'responder', body['evidence']),
                             messages.RESPONDER_EVIDENCE)
        identity = messages.identity_from_wire(theirs['identity'])
        signing_key = messages.certified_from_wire(theirs['signing_key'])
        ak_name, peer_host = verify_peer_keys(identity, signing_key,
                                              self._policy, host=self._host)
        quote = messages.quote_from_wire(theirs['quote'])
        # Epoch quotes are older than fresh ones of the same TPM: their
        # clocks are tracked apart.
        clock = _check_quote(
            quote, identity, ak_name + EPOCH_CLOCK_SUFFIX,
            _epoch_qualifier(body['ephemeral'], theirs['epoch_nonce']),
            self._policy, self._clocks)
        self._policy.check_evidence_age(time.monotonic() - self._started)
        # The responder is trusted: now reveal our own identity.
        t2 = _t2(hello_hash, core_hash, crypto.sha256(body['evidence']))
        keys = {'identity': messages.identity_to_wire(self._local.identity),
                'signing_key': messages.certified_to_wire(
                    self._local.signing_key)}
        own_quote = self._tpm.quote(crypto.transcript_hash(
            'quote-initiator', t2, wire.encode(keys, _INITIATOR_KEYS)))
        ours = wire.encode(dict(keys, quote=messages.quote_to_wire(
            own_quote)), messages.INITIATOR_EVIDENCE)
        sealed = _seal(z, t2, 'initiator', ours)
        attest = messages.encode('attest', {
            'session_id': body['session_id'], 'evidence': sealed,
            'cookie': body['cookie']})
        t3 = _t3(t2, crypto.sha256(sealed))
        self._pending = (msg, z, t3, identity, signing_key, ak_name,
                         peer_host, quote.pcr_values, clock)
        return attest

    def process_attest_reply(self, data: bytes) -> session_mod.Session:
        """Verify the responder's key confirmation.

        :returns: the established session.
        :raises AuthenticationFailed: confirmation mismatch.
        """
        if self._pending is None:
            raise errors.UnexpectedMessage(type='attest_reply',
                                           reason='no handshake in progress')
        (reply, z, t3, identity, signing_key, ak_name, peer_host, pcrs,
         clock) = self._pending
        msg = messages.decode(data, allowed=('attest_reply', 'error'))
        if msg.type == 'error':
            _refusal(msg, self._peer, 'attest')
        sid = reply.body['session_id']
        if msg.body['session_id'] != sid:
            raise errors.AuthenticationFailed(reason='session id mismatch')
        keys = crypto.derive_session_keys(z, t3)
        if not crypto.mac_ok(keys.confirm_r, 'confirm', t3,
                             msg.body['confirm']):
            raise errors.AuthenticationFailed(
                reason='key confirmation mismatch')
        LOG.info('Attested session with %s established (peer AK %s)',
                 peer_host, ak_name.hex()[:16])
        return session_mod.Session(
            session_id=sid, peer=self._peer, initiator=True, keys=keys,
            version=reply.body['version'], suite=reply.body['suite'],
            local_ak_name=self._local.ak_name, peer_ak_name=ak_name,
            peer_identity=identity, peer_signing_key=signing_key,
            peer_pcr_values=pcrs, peer_host=peer_host, peer_clock=clock,
            transcript=t3)


@dataclasses.dataclass(frozen=True)
class Epoch:
    """The responder's amortised evidence: an ECDH key its TPM quoted.

    :ivar epoch_id: 16 random bytes naming the epoch in cookies.
    :ivar key: the epoch's ECDH key (in memory only).
    :ivar nonce: the nonce of the epoch's quote.
    :ivar quote: the quote over ``H('responder-epoch', eR, nonce)``.
    :ivar created: monotonic time of the quote.
    """

    epoch_id: bytes
    key: crypto.EphemeralKey = dataclasses.field(repr=False)
    nonce: bytes
    quote: evidence.Quote = dataclasses.field(repr=False)
    created: float

    @classmethod
    def create(cls, tpm: ty.Any) -> 'Epoch':
        """A new epoch (one TPM quote)."""
        key = crypto.EphemeralKey()
        nonce = crypto.random_bytes(crypto.NONCE_SIZE)
        quote = tpm.quote(_epoch_qualifier(key.public_bytes, nonce))
        return cls(epoch_id=crypto.random_bytes(16), key=key, nonce=nonce,
                   quote=quote, created=time.monotonic())


class Responder:
    """The responding side of every handshake of one host.

    Long-lived and stateless per handshake (see the module docstring).

    :param tpm: this host's ``HostTpm``.
    :param policy: the ``TrustPolicy`` initiators must satisfy.
    :param clocks: persistent per-peer clock store.
    :param local: returns this host's :class:`LocalEvidence`.
    :param epoch_lifetime: seconds an epoch's quote is used (default: a
        third of the policy's ``max_evidence_age``).
    """

    def __init__(self, tpm: ty.Any, policy: ty.Any, clocks: ClockStore,
                 local: ty.Callable[[], LocalEvidence],
                 epoch_lifetime: float | None = None) -> None:
        self._tpm = tpm
        self._policy = policy
        self._clocks = clocks
        self._local = local
        self.epoch_lifetime = (float(epoch_lifetime)
                               if epoch_lifetime is not None
                               else policy.max_evidence_age / 3.0)
        self._lock = threading.Lock()
        self._epochs: collections.OrderedDict[bytes, Epoch] = (
            collections.OrderedDict())
        self._cookie_key = crypto.random_bytes(crypto.KEY_SIZE)
        self._consumed: collections.OrderedDict[bytes, float] = (
            collections.OrderedDict())

    @property
    def handshake_ttl(self) -> float:
        """Seconds between ``hello_reply`` and the ``attest`` that
        finishes it, at most (its epoch must still be known)."""
        return self.epoch_lifetime

    def _epoch(self) -> Epoch:
        with self._lock:
            now = time.monotonic()
            current = next(reversed(self._epochs.values()), None)
            if current is None or now - current.created > \
                    self.epoch_lifetime:
                current = Epoch.create(self._tpm)
                self._epochs[current.epoch_id] = current
                LOG.debug('New responder epoch %s', current.epoch_id.hex())
            # The current and the previous epoch can finish handshakes.
            while len(self._epochs) > 2:
                self._epochs.popitem(last=False)
            return current

    def _find_epoch(self, epoch_id: bytes) -> Epoch:
        with self._lock:
            epoch = self._epochs.get(epoch_id)
        if epoch is None or time.monotonic() - epoch.created > \
                2 * self.epoch_lifetime:
            raise errors.SessionError(reason='handshake expired (its epoch '
                                             'is over); start again')
        return epoch

    def _check_own_state(self, epoch: Epoch) -> dict[int, bytes]:
        """This host's PCRs are still those its epoch quote showed (one
        ``TPM2_PCR_Read`` per finished handshake, none per ``hello``):
        otherwise the epoch ends and the initiator attests again, so it
        sees the current state.

        :returns: the PCR values.
        :raises SessionError: the PCRs changed.
        """
        values = dict(self._tpm.pcr_values())
        if values == dict(epoch.quote.pcr_values):
            return values
        with self._lock:
            self._epochs.pop(epoch.epoch_id, None)
        LOG.warning('PCR values changed since the responder epoch was '
                    'quoted; starting a new one')
        raise errors.SessionError(reason="this host's measured state "
                                         'changed; attest again')

    def process_hello(self, data: bytes) -> bytes:
        """Answer ``hello`` with this host's encrypted evidence.

        Costs a TPM quote only when the epoch is renewed.

        :raises UnsupportedVersion: no common protocol version.
        :raises UnsupportedSuite: no common cipher suite.
        """
        msg = messages.decode(data, allowed=('hello',))
        body = msg.body
        common = set(body['versions']) & set(messages.SUPPORTED_VERSIONS)
        if not common:
            raise errors.UnsupportedVersion(
                version=body['versions'],
                supported=messages.SUPPORTED_VERSIONS)
        suites = [s for s in messages.SUPPORTED_SUITES
                  if s in body['suites']]
        if not suites:
            raise errors.UnsupportedSuite(
                suite=body['suites'], supported=messages.SUPPORTED_SUITES)
        crypto.load_point(body['ephemeral'])
        epoch = self._epoch()
        local = self._local()
        core = {
            'versions': list(messages.SUPPORTED_VERSIONS),
            'suites': list(messages.SUPPORTED_SUITES),
            'version': max(common),
            'suite': suites[0],
            'session_id': crypto.random_bytes(crypto.SESSION_ID_SIZE),
            'nonce': crypto.random_bytes(crypto.NONCE_SIZE),
            'ephemeral': epoch.key.public_bytes,
        }
        z = epoch.key.exchange(body['ephemeral'])
        hello_hash = crypto.sha256(msg.raw)
        core_hash = crypto.sha256(wire.encode(core, _REPLY_CORE))
        ours = wire.encode({
            'identity': messages.identity_to_wire(local.identity),
            'signing_key': messages.certified_to_wire(local.signing_key),
            'epoch_nonce': epoch.nonce,
            'quote': messages.quote_to_wire(epoch.quote)},
            messages.RESPONDER_EVIDENCE)
        sealed = _seal(z, _hs_r_salt(hello_hash, core_hash), 'responder',
                       ours)
        cookie = wire.encode({
            'session_id': core['session_id'], 'epoch_id': epoch.epoch_id,
            'created': int(time.time()), 'ephemeral': body['ephemeral'],
            'hello_hash': hello_hash, 'core_hash': core_hash,
            'evidence_hash': crypto.sha256(sealed),
            'version': core['version']}, messages.COOKIE)
        nonce = crypto.random_bytes(crypto.GCM_NONCE_SIZE)
        sealed_cookie = nonce + crypto.aead_encrypt(
            self._cookie_key, nonce, cookie, b'cookie')
        return messages.encode('hello_reply', dict(
            core, evidence=sealed, cookie=sealed_cookie))

    def _open_cookie(self, data: bytes) -> dict[str, ty.Any]:
        nonce, sealed = data[:crypto.GCM_NONCE_SIZE], \
            data[crypto.GCM_NONCE_SIZE:]
        try:
            plain = crypto.aead_decrypt(self._cookie_key, nonce, sealed,
                                        b'cookie')
        except errors.DecryptionFailed:
            raise errors.AuthenticationFailed(
                reason='not a cookie of this host') from None
        cookie = wire.decode(plain, messages.COOKIE)
        age = time.time() - cookie['created']
        if not -1.0 <= age <= 2 * self.handshake_ttl:
            raise errors.SessionError(reason='handshake expired; start '
                                             'again')
        return cookie

    def process_attest(self, msg: messages.Message
                       ) -> tuple[bytes, session_mod.Session]:
        """Verify ``attest`` and build ``attest_reply``.

        Nothing changes unless everything verifies, so a forged message
        cannot kill the handshake it names.

        :returns: the reply and the established session.
        :raises AuthenticationFailed: not from the holder of the
            initiator's ephemeral key, or altered.
        :raises ReplayDetected: the handshake was finished already.
        :raises VerificationError: the initiator's evidence is refused.
        """
        body = msg.body
        cookie = self._open_cookie(body['cookie'])
        sid = body['session_id']
        if cookie['session_id'] != sid:
            raise errors.AuthenticationFailed(reason='session id mismatch')
        with self._lock:
            if sid in self._consumed:
                raise errors.ReplayDetected(
                    reason='this handshake was finished already')
        epoch = self._find_epoch(cookie['epoch_id'])
        z = epoch.key.exchange(cookie['ephemeral'])
        t2 = _t2(cookie['hello_hash'], cookie['core_hash'],
                 cookie['evidence_hash'])
        theirs = wire.decode(_open(z, t2, 'initiator', body['evidence']),
                             messages.INITIATOR_EVIDENCE)
        identity = messages.identity_from_wire(theirs['identity'])
        signing_key = messages.certified_from_wire(theirs['signing_key'])
        ak_name, peer_host = verify_peer_keys(identity, signing_key,
                                              self._policy)
        self._policy.check_evidence_age(time.time() - cookie['created'])
        quote = messages.quote_from_wire(theirs['quote'])
        keys_part = wire.encode({k: theirs[k] for k in _INITIATOR_KEYS},
                                _INITIATOR_KEYS)
        clock = _check_quote(
            quote, identity, ak_name,
            crypto.transcript_hash('quote-initiator', t2, keys_part),
            self._policy, self._clocks)
        pcr_values = self._check_own_state(epoch)
        t3 = _t3(t2, crypto.sha256(body['evidence']))
        keys = crypto.derive_session_keys(z, t3)
        with self._lock:
            if sid in self._consumed:
                raise errors.ReplayDetected(
                    reason='this handshake was finished already')
            self._consumed[sid] = time.monotonic()
            while len(self._consumed) > MAX_CONSUMED:
                self._consumed.popitem(last=False)
        reply = messages.encode('attest_reply', {
            'session_id': sid,
            'confirm': crypto.mac(keys.confirm_r, 'confirm', t3)})
        sess = session_mod.Session(
            session_id=sid, peer=peer_host, initiator=False, keys=keys,
            version=cookie['version'], suite=messages.SUITE,
            local_ak_name=self._local().ak_name, peer_ak_name=ak_name,
            peer_identity=identity, peer_signing_key=signing_key,
            peer_pcr_values=quote.pcr_values, peer_host=peer_host,
            peer_clock=clock, transcript=t3)
        # The binding key is certified once per session, here, for
        # every migration the initiator starts on it (TPM2_Certify).
        sess.binding_key = self._tpm.certified_binding_key(
            sess.binding_qualifier(), pcr_values=pcr_values)
        LOG.info('Attested session with %s established (peer AK %s)',
                 peer_host, ak_name.hex()[:16])
        return reply, sess
