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


"""Pure cryptographic functions of the protocol (no I/O, no TPM).

* transcript hashing: SHA-256 over a label and length-prefixed parts, so
  no two different part lists hash the same;
* the key schedule: HKDF-SHA256 over the ECDH secret, salted with
  transcript hashes: the handshake keys that encrypt each side's evidence
  in phase 1, then direction-separated MAC keys and the key-confirmation
  key of the session;
* HMAC-SHA256 and AES-256-GCM helpers.
"""

import dataclasses
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import aead
from cryptography.hazmat.primitives.kdf import hkdf

from nova_vtpm_migration.protocol import errors

NONCE_SIZE = 32
KEY_SIZE = 32
GCM_NONCE_SIZE = 12
MAC_SIZE = 32
SESSION_ID_SIZE = 16
POINT_SIZE = 65

_DOMAIN = b'nova-vtpm-migration'


def random_bytes(size: int) -> bytes:
    """Return ``size`` bytes from the OS CSPRNG."""
    return os.urandom(size)


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def transcript_hash(label: str, *parts: bytes) -> bytes:
    """Hash a label and an ordered list of byte strings unambiguously.

    :param label: domain-separation label (ASCII).
    :param parts: the transcript parts, each length-prefixed.
    :returns: 32-byte SHA-256 digest.
    """
    h = hashlib.sha256()
    lab = _DOMAIN + b'/' + label.encode('ascii')
    h.update(len(lab).to_bytes(2, 'big'))
    h.update(lab)
    for part in parts:
        h.update(len(part).to_bytes(8, 'big'))
        h.update(part)
    return h.digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes,
                length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return hkdf.HKDF(algorithm=hashes.SHA256(), length=length, salt=salt,
                     info=_DOMAIN + b'/' + info).derive(ikm)


def mac(key: bytes, label: str, data: bytes) -> bytes:
    """HMAC-SHA256 of ``label`` and ``data`` under ``key``."""
    return hmac.new(key, transcript_hash(label, data),
                    hashlib.sha256).digest()


def mac_ok(key: bytes, label: str, data: bytes, tag: bytes) -> bool:
    """Constant-time check of a :func:`mac` tag."""
    return hmac.compare_digest(mac(key, label, data), tag)


@dataclasses.dataclass(frozen=True)
class SessionKeys:
    """The keys of one attested host-pair session.

    :ivar i2r: MAC key of messages from the initiator to the responder.
    :ivar r2i: MAC key of messages from the responder to the initiator.
    :ivar confirm_r: the responder's key-confirmation key.
    """

    i2r: bytes = dataclasses.field(repr=False)
    r2i: bytes = dataclasses.field(repr=False)
    confirm_r: bytes = dataclasses.field(repr=False)


def derive_session_keys(ecdh_secret: bytes,
                        transcript: bytes) -> SessionKeys:
    """Derive the session keys.

    :param ecdh_secret: the ECDH shared secret of the handshake.
    :param transcript: hash of the complete phase-1 transcript (salt).
    """
    okm = hkdf_sha256(ecdh_secret, transcript, b'session-keys/v2',
                      3 * KEY_SIZE)
    return SessionKeys(i2r=okm[0:32], r2i=okm[32:64], confirm_r=okm[64:96])


def derive_handshake_key(ecdh_secret: bytes, transcript: bytes,
                         label: str) -> tuple[bytes, bytes]:
    """The AES-256-GCM key and nonce that encrypt one side's phase-1
    evidence (each key encrypts exactly one message).

    :param ecdh_secret: the ECDH shared secret of the handshake.
    :param transcript: hash of the transcript so far (salt).
    :param label: which side's evidence (``responder``/``initiator``).
    """
    okm = hkdf_sha256(ecdh_secret, transcript,
                      b'handshake-' + label.encode('ascii') + b'/v2',
                      KEY_SIZE + GCM_NONCE_SIZE)
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


def payload_key(data_key: bytes, migration_hash: bytes) -> bytes:
    """Derive the AEAD key of one migration's payload from its data key."""
    return hkdf_sha256(data_key, migration_hash, b'payload-key/v1')


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes,
                 aad: bytes) -> bytes:
    """AES-256-GCM encryption; returns ciphertext || tag."""
    return aead.AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes,
                 aad: bytes) -> bytes:
    """AES-256-GCM decryption.

    :raises DecryptionFailed: wrong key, nonce, AAD or altered ciphertext.
    """
    if len(nonce) != GCM_NONCE_SIZE:
        raise errors.DecryptionFailed(reason='bad nonce length')
    try:
        return aead.AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise errors.DecryptionFailed(
            reason='authentication tag mismatch') from None


class EphemeralKey:
    """An ephemeral ECDH P-256 key pair for one handshake."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_bytes(self) -> bytes:
        """Uncompressed SEC1 encoding of the public point."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint)

    def exchange(self, peer_point: bytes) -> bytes:
        """ECDH with the peer's uncompressed public point.

        :raises MalformedMessage: the point is not on the curve.
        """
        return self._key.exchange(ec.ECDH(), load_point(peer_point))


def load_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """Parse and validate an uncompressed P-256 point.

    :raises FieldOutOfRange: not a valid point on P-256.
    """
    if len(point) != POINT_SIZE or point[0] != 4:
        raise errors.FieldOutOfRange(field='ephemeral',
                                     reason='not an uncompressed point')
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), point)
    except ValueError:
        raise errors.FieldOutOfRange(field='ephemeral',
                                     reason='not a point on P-256') from None


#: Qualifying data of the AK's certification of a host's signing key.
#: The certification is static (not per session) so that a
#: manifest or receipt can be verified offline from the certified key, the
#: AK, the EK chain and the policy alone; freshness comes from the quotes
#: and nonces, not from this certification.
SIGNING_KEY_QUALIFIER = transcript_hash('signing-key-certification/v1')
