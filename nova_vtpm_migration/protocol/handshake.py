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

    I -> R  hello        versions, suites, nI, eI, I.identity, I.signing_key
    R -> I  hello_reply  versions, suites, version, suite (the best
                         common ones), sid, nR, eR, R.identity,
                         R.signing_key, cred(I.EK, I.AK, cI),
                         quote_R(H('quote-responder', hello, all of the
                                   above))
    I -> R  attest       sid, proof_I = HMAC(cI, T2), cred(R.EK, R.AK, cR),
                         quote_I(H('quote-initiator', T2, all of the
                                   above))
    R -> I  attest_reply sid, proof_R = HMAC(cR, T3),
                         confirm = HMAC(k_confirm, T3)

    T2 = H(hello, hello_reply), T3 = H(hello, hello_reply, attest)
    keys = HKDF(ECDH(eI, eR) || cI || cR, salt = T3)

Each side's ephemeral ECDH key is in the transcript its own TPM quotes, so
a man in the middle who substitutes a key breaks the peer's quote check.
Everything a side sends is under its quote, so tampering is detected in
software before the receiving TPM does any work.
The credential round trip proves that each AK lives in the same TPM as the
EK whose certificate chains to a trusted CA, and both credential secrets
enter the key schedule. The versions and suites offered and chosen are in
the transcript; the initiator refuses a choice that is not the best common
one of both (quoted) offers (no downgrade).
"""

import dataclasses
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

#: The part of ``hello_reply`` the responder's quote covers (all but the
#: quote itself).
_REPLY_CORE: wire.Schema = {
    name: field for name, field in messages.SCHEMAS['hello_reply'].items()
    if name != 'quote'}
#: The part of ``attest`` the initiator's quote covers.
_ATTEST_CORE: wire.Schema = {
    name: field for name, field in messages.SCHEMAS['attest'].items()
    if name != 'quote'}


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
    """This host's public TPM evidence (identity and signing key)."""

    identity: evidence.HostIdentity
    signing_key: evidence.CertifiedKey
    ak_name: bytes


def local_evidence(tpm: ty.Any) -> LocalEvidence:
    """Collect this host's identity and certified signing key.

    :param tpm: the host's :class:`~nova_vtpm_migration.tpm.host.HostTpm`.
    """
    identity = tpm.identity()
    signing_key = tpm.certified_signing_key(crypto.SIGNING_KEY_QUALIFIER)
    return LocalEvidence(identity=identity, signing_key=signing_key,
                         ak_name=names.object_name(identity.ak_public))


def verify_peer_keys(identity: evidence.HostIdentity,
                     signing_key: evidence.CertifiedKey,
                     policy: ty.Any) -> bytes:
    """Verify a peer's EK chain and AK-certified signing key.

    :returns: the peer's AK name.
    :raises VerificationError: the TPM layer refused the evidence.
    """
    ak_name = names.object_name(identity.ak_public, 'identity.ak_public')
    with names.checked('identity'):
        verify.verify_identity(identity, policy)
    with names.checked('signing key'):
        verify.verify_signing_key(signing_key, identity.ak_public,
                                  crypto.SIGNING_KEY_QUALIFIER)
    return ak_name


def _check_quote(quote: evidence.Quote, identity: evidence.HostIdentity,
                 ak_name: bytes, qualifying_data: bytes, policy: ty.Any,
                 clocks: ClockStore) -> None:
    previous = clocks.get_peer_clock(ak_name)
    with names.checked('quote'):
        clock = verify.verify_quote(quote, identity.ak_public,
                                    qualifying_data, policy, previous)
    clocks.set_peer_clock(ak_name, clock)


def _check_choice(body: dict[str, ty.Any]) -> None:
    """Refuse a version or suite other than the best common one of
    both sides' (quoted) offers: no downgrade."""
    common = set(body['versions']) & set(messages.SUPPORTED_VERSIONS)
    if not common or body['version'] != max(common):
        raise errors.UnsupportedVersion(
            version=body['version'], supported=messages.SUPPORTED_VERSIONS)
    suites = [s for s in messages.SUPPORTED_SUITES if s in body['suites']]
    if not suites or body['suite'] != suites[0]:
        raise errors.UnsupportedSuite(suite=body['suite'],
                                      supported=messages.SUPPORTED_SUITES)


def _make_credential(identity: evidence.HostIdentity,
                     secret: bytes) -> evidence.CredentialChallenge:
    with names.checked('EK public area'):
        return verify.make_credential(identity, secret)


def _refusal(msg: messages.Message, peer: str, request: str) -> ty.NoReturn:
    raise errors.PeerRefused(peer=peer, request=request,
                             peer_code=msg.body['code'],
                             peer_message=msg.body['message'])


class Initiator:
    """The initiating side of one handshake (usually the source host).

    :param tpm: this host's ``HostTpm``.
    :param policy: the ``TrustPolicy`` the responder must satisfy.
    :param clocks: persistent per-peer clock store.
    :param local: this host's :class:`LocalEvidence`.
    :param peer: transport address of the responder.
    """

    def __init__(self, tpm: ty.Any, policy: ty.Any, clocks: ClockStore,
                 local: LocalEvidence, peer: str) -> None:
        self._tpm = tpm
        self._policy = policy
        self._clocks = clocks
        self._local = local
        self._peer = peer
        self._eph = crypto.EphemeralKey()
        self._hello = b''
        self._reply: messages.Message | None = None
        self._attest = b''
        self._th3 = b''
        self._c_r = b''
        self._keys: crypto.SessionKeys | None = None
        self._peer_identity: evidence.HostIdentity | None = None
        self._peer_signing_key: evidence.CertifiedKey | None = None
        self._peer_ak_name = b''
        self._peer_pcrs: tuple[tuple[int, bytes], ...] = ()
        self._started = time.monotonic()

    def hello(self) -> bytes:
        """Build the ``hello`` message."""
        self._started = time.monotonic()
        self._hello = messages.encode('hello', {
            'versions': list(messages.SUPPORTED_VERSIONS),
            'suites': list(messages.SUPPORTED_SUITES),
            'nonce': crypto.random_bytes(crypto.NONCE_SIZE),
            'ephemeral': self._eph.public_bytes,
            'identity': messages.identity_to_wire(self._local.identity),
            'signing_key': messages.certified_to_wire(
                self._local.signing_key),
        })
        return self._hello

    def process_hello_reply(self, data: bytes) -> bytes:
        """Verify ``hello_reply`` and build ``attest``.

        :raises ProtocolError: malformed, downgraded or refused reply.
        :raises VerificationError: the responder's evidence is refused.
        """
        msg = messages.decode(data, allowed=('hello_reply', 'error'))
        if msg.type == 'error':
            _refusal(msg, self._peer, 'hello')
        body = msg.body
        identity = messages.identity_from_wire(body['identity'])
        signing_key = messages.certified_from_wire(body['signing_key'])
        ak_name = verify_peer_keys(identity, signing_key, self._policy)
        # The quote is at most as old as this handshake, whose
        # nonce it contains; the policy bounds that age.
        self._policy.check_evidence_age(time.monotonic() - self._started)
        reply_core = wire.encode({k: body[k] for k in _REPLY_CORE},
                                 _REPLY_CORE)
        quote = messages.quote_from_wire(body['quote'])
        _check_quote(quote, identity, ak_name,
                     crypto.transcript_hash('quote-responder', self._hello,
                                            reply_core),
                     self._policy, self._clocks)
        _check_choice(body)
        # The responder's quote checked out, so it is the
        # trusted TPM that chose eR (and the version). Now prove our own
        # AK-EK binding.
        c_i = self._tpm.activate_credential(
            messages.credential_from_wire(body['credential']))
        th2 = crypto.transcript_hash('t2', self._hello, msg.raw)
        self._c_r = crypto.random_bytes(crypto.NONCE_SIZE)
        core = {
            'session_id': body['session_id'],
            'proof': crypto.mac(c_i, 'proof-initiator', th2),
            'credential': messages.credential_to_wire(
                _make_credential(identity, self._c_r)),
        }
        own_quote = self._tpm.quote(crypto.transcript_hash(
            'quote-initiator', th2, wire.encode(core, _ATTEST_CORE)))
        self._attest = messages.encode('attest', dict(
            core, quote=messages.quote_to_wire(own_quote)))
        self._th3 = crypto.transcript_hash('t3', self._hello, msg.raw,
                                           self._attest)
        self._keys = crypto.derive_session_keys(
            self._eph.exchange(body['ephemeral']), c_i, self._c_r,
            self._th3)
        self._reply = msg
        self._peer_identity = identity
        self._peer_signing_key = signing_key
        self._peer_ak_name = ak_name
        self._peer_pcrs = quote.pcr_values
        return self._attest

    def process_attest_reply(self, data: bytes) -> session_mod.Session:
        """Verify the responder's credential proof and key confirmation.

        :returns: the established session.
        :raises AuthenticationFailed: proof or confirmation mismatch.
        """
        if (self._reply is None or self._keys is None
                or self._peer_identity is None
                or self._peer_signing_key is None):
            raise errors.UnexpectedMessage(type='attest_reply',
                                           reason='no handshake in progress')
        msg = messages.decode(data, allowed=('attest_reply', 'error'))
        if msg.type == 'error':
            _refusal(msg, self._peer, 'attest')
        body = msg.body
        sid = self._reply.body['session_id']
        if body['session_id'] != sid:
            raise errors.AuthenticationFailed(reason='session id mismatch')
        if not crypto.mac_ok(self._c_r, 'proof-responder', self._th3,
                             body['proof']):
            raise errors.AuthenticationFailed(
                reason='responder did not activate the credential for its '
                       'AK (AK not bound to its EK)')
        if not crypto.mac_ok(self._keys.confirm_r, 'confirm', self._th3,
                             body['confirm']):
            raise errors.AuthenticationFailed(
                reason='key confirmation mismatch')
        LOG.info('Attested session with %s established (peer AK %s)',
                 self._peer, self._peer_ak_name.hex()[:16])
        return session_mod.Session(
            session_id=sid, peer=self._peer, initiator=True,
            keys=self._keys, version=self._reply.body['version'],
            suite=self._reply.body['suite'],
            local_ak_name=self._local.ak_name,
            peer_ak_name=self._peer_ak_name,
            peer_identity=self._peer_identity,
            peer_signing_key=self._peer_signing_key,
            peer_pcr_values=self._peer_pcrs)


class Responder:
    """The responding side of one handshake (usually the destination).

    One instance is created per ``hello`` and kept until ``attest``.
    """

    def __init__(self, tpm: ty.Any, policy: ty.Any, clocks: ClockStore,
                 local: LocalEvidence) -> None:
        self._tpm = tpm
        self._policy = policy
        self._clocks = clocks
        self._local = local
        self._eph = crypto.EphemeralKey()
        self.session_id = crypto.random_bytes(crypto.SESSION_ID_SIZE)
        self._hello: messages.Message | None = None
        self._reply = b''
        self._c_i = b''
        self._identity: evidence.HostIdentity | None = None
        self._signing_key: evidence.CertifiedKey | None = None
        self._ak_name = b''
        self._started = time.monotonic()

    def process_hello(self, data: bytes) -> bytes:
        """Verify ``hello`` and build ``hello_reply`` (quotes our TPM).

        :raises UnsupportedVersion: no common protocol version.
        :raises UnsupportedSuite: no common cipher suite.
        :raises VerificationError: the initiator's evidence is refused.
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
        identity = messages.identity_from_wire(body['identity'])
        signing_key = messages.certified_from_wire(body['signing_key'])
        self._ak_name = verify_peer_keys(identity, signing_key, self._policy)
        crypto.load_point(body['ephemeral'])
        self._c_i = crypto.random_bytes(crypto.NONCE_SIZE)
        core = {
            'versions': list(messages.SUPPORTED_VERSIONS),
            'suites': list(messages.SUPPORTED_SUITES),
            'version': max(common),
            'suite': suites[0],
            'session_id': self.session_id,
            'nonce': crypto.random_bytes(crypto.NONCE_SIZE),
            'ephemeral': self._eph.public_bytes,
            'identity': messages.identity_to_wire(self._local.identity),
            'signing_key': messages.certified_to_wire(
                self._local.signing_key),
            'credential': messages.credential_to_wire(
                _make_credential(identity, self._c_i)),
        }
        quote = self._tpm.quote(crypto.transcript_hash(
            'quote-responder', msg.raw, wire.encode(core, _REPLY_CORE)))
        self._reply = messages.encode('hello_reply', dict(
            core, quote=messages.quote_to_wire(quote)))
        self._hello = msg
        self._identity = identity
        self._signing_key = signing_key
        return self._reply

    def process_attest(self, msg: messages.Message
                       ) -> tuple[bytes, session_mod.Session]:
        """Verify ``attest`` and build ``attest_reply``.

        :returns: the reply and the established session.
        :raises AuthenticationFailed: the initiator's credential proof is
            wrong (its AK is not bound to its EK).
        :raises VerificationError: the initiator's quote is refused.
        """
        if (self._hello is None or self._identity is None
                or self._signing_key is None):
            raise errors.UnexpectedMessage(type='attest',
                                           reason='no hello received')
        body = msg.body
        if body['session_id'] != self.session_id:
            raise errors.AuthenticationFailed(reason='session id mismatch')
        self._policy.check_evidence_age(time.monotonic() - self._started)
        th2 = crypto.transcript_hash('t2', self._hello.raw, self._reply)
        quote = messages.quote_from_wire(body['quote'])
        core = wire.encode({k: body[k] for k in _ATTEST_CORE}, _ATTEST_CORE)
        _check_quote(quote, self._identity, self._ak_name,
                     crypto.transcript_hash('quote-initiator', th2, core),
                     self._policy, self._clocks)
        if not crypto.mac_ok(self._c_i, 'proof-initiator', th2,
                             body['proof']):
            raise errors.AuthenticationFailed(
                reason='initiator did not activate the credential for its '
                       'AK (AK not bound to its EK)')
        c_r = self._tpm.activate_credential(
            messages.credential_from_wire(body['credential']))
        th3 = crypto.transcript_hash('t3', self._hello.raw, self._reply,
                                     msg.raw)
        keys = crypto.derive_session_keys(
            self._eph.exchange(self._hello.body['ephemeral']), self._c_i,
            c_r, th3)
        reply = messages.encode('attest_reply', {
            'session_id': self.session_id,
            'proof': crypto.mac(c_r, 'proof-responder', th3),
            'confirm': crypto.mac(keys.confirm_r, 'confirm', th3),
        })
        version = max(set(self._hello.body['versions'])
                      & set(messages.SUPPORTED_VERSIONS))
        LOG.info('Attested session with peer AK %s established',
                 self._ak_name.hex()[:16])
        return reply, session_mod.Session(
            session_id=self.session_id,
            peer='ak:' + self._ak_name.hex()[:16], initiator=False,
            keys=keys, version=version, suite=messages.SUITE,
            local_ak_name=self._local.ak_name, peer_ak_name=self._ak_name,
            peer_identity=self._identity,
            peer_signing_key=self._signing_key,
            peer_pcr_values=quote.pcr_values)
