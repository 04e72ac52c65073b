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


"""Pure cryptographic helpers."""

import pytest

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors


def test_transcript_hash_is_unambiguous() -> None:
    assert crypto.transcript_hash('x', b'ab', b'c') != \
        crypto.transcript_hash('x', b'a', b'bc')
    assert crypto.transcript_hash('x', b'a') != \
        crypto.transcript_hash('y', b'a')
    assert crypto.transcript_hash('x', b'') != crypto.transcript_hash('x')


def test_session_keys_are_direction_separated() -> None:
    keys = crypto.derive_session_keys(b'z' * 32, b't' * 32)
    parts = {keys.i2r, keys.r2i, keys.confirm_r}
    assert len(parts) == 3 and all(len(p) == 32 for p in parts)
    other = crypto.derive_session_keys(b'z' * 32, b'u' * 32)
    assert other.i2r != keys.i2r
    assert keys.i2r.hex() not in repr(keys) and str(keys.i2r) not in \
        repr(keys)


def test_mac() -> None:
    tag = crypto.mac(b'k' * 32, 'l', b'data')
    assert crypto.mac_ok(b'k' * 32, 'l', b'data', tag)
    assert not crypto.mac_ok(b'k' * 32, 'm', b'data', tag)
    assert not crypto.mac_ok(b'j' * 32, 'l', b'data', tag)


def test_aead_binds_aad() -> None:
    key, nonce = b'k' * 32, b'n' * 12
    ct = crypto.aead_encrypt(key, nonce, b'secret', b'aad')
    assert crypto.aead_decrypt(key, nonce, ct, b'aad') == b'secret'
    for args in ((key, nonce, ct, b'aae'), (key, b'm' * 12, ct, b'aad'),
                 (b'j' * 32, nonce, ct, b'aad'),
                 (key, nonce, ct[:-1] + bytes([ct[-1] ^ 1]), b'aad'),
                 (key, b'short', ct, b'aad')):
        with pytest.raises(errors.DecryptionFailed):
            crypto.aead_decrypt(*args)


def test_ecdh() -> None:
    a, b = crypto.EphemeralKey(), crypto.EphemeralKey()
    assert a.exchange(b.public_bytes) == b.exchange(a.public_bytes)
    bad = bytearray(b.public_bytes)
    bad[-1] ^= 1
    with pytest.raises(errors.FieldOutOfRange):
        a.exchange(bytes(bad))
    with pytest.raises(errors.FieldOutOfRange):
        a.exchange(b'\x02' + b.public_bytes[1:33])
