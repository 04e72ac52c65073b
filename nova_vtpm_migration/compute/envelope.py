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

"""Envelope for Nova's vTPM secret inside the migration protocol.

Nova's vTPM secret is a 512-character passphrase; the protocol's key store
seals keys with ``TPM2_Create`` (at most 128 bytes). The plugin therefore
gives each instance a random 32-byte key-encryption key (KEK) that the
protocol moves and keeps sealed, and moves the passphrase encrypted under
that KEK (AES-256-GCM, bound to the instance) as a state blob of the same
transfer, which the protocol encrypts again under the transfer's data key.
"""

import os

from cryptography.hazmat.primitives.ciphers import aead

#: State blob name of the encrypted passphrase.
BLOB = 'nova_vtpm_secret'
KEK_SIZE = 32
_NONCE = 12
_AAD = b'nova-vtpm-migration/libvirt-vtpm-secret/v1/'


def new_kek() -> bytes:
    """Return a fresh random key-encryption key."""
    return os.urandom(KEK_SIZE)


def wrap(kek: bytes, instance_uuid: str, secret: bytes) -> bytes:
    """Encrypt *secret* for *instance_uuid* under *kek*."""
    nonce = os.urandom(_NONCE)
    return nonce + aead.AESGCM(kek).encrypt(
        nonce, secret, _AAD + instance_uuid.encode())


def unwrap(kek: bytes, instance_uuid: str, blob: bytes) -> bytes:
    """Decrypt a :func:`wrap` result.

    :raises cryptography.exceptions.InvalidTag: wrong key, instance or
        tampered blob.
    """
    return aead.AESGCM(kek).decrypt(blob[:_NONCE], blob[_NONCE:],
                                    _AAD + instance_uuid.encode())
