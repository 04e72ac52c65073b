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

"""The envelope that carries Nova's 512-byte vTPM passphrase."""

import base64
import os

from cryptography import exceptions as crypto_exc
import pytest

from nova_vtpm_migration.compute import envelope as env

INSTANCE = '0b8a4b44-8f71-4e2b-9e0a-8b4ca0b8ef5e'
# Nova's vTPM secret: base64 of 384 random bytes (nova.crypto).
SECRET = base64.b64encode(os.urandom(384))


def test_round_trip() -> None:
    kek = env.new_kek()
    blob = env.wrap(kek, INSTANCE, SECRET)
    assert SECRET not in blob
    assert env.unwrap(kek, INSTANCE, blob) == SECRET


def test_fresh_nonce_every_time() -> None:
    kek = env.new_kek()
    assert env.wrap(kek, INSTANCE, SECRET) != env.wrap(kek, INSTANCE, SECRET)


@pytest.mark.parametrize('attack', ['other-key', 'other-instance',
                                    'flipped-bit', 'truncated'])
def test_tampering_is_refused(attack: str) -> None:
    kek = env.new_kek()
    blob = env.wrap(kek, INSTANCE, SECRET)
    instance = INSTANCE
    if attack == 'other-key':
        kek = env.new_kek()
    elif attack == 'other-instance':
        instance = INSTANCE.replace('0b8a', '1b8a')
    elif attack == 'flipped-bit':
        blob = blob[:20] + bytes([blob[20] ^ 1]) + blob[21:]
    else:
        blob = blob[:-1]
    with pytest.raises(crypto_exc.InvalidTag):
        env.unwrap(kek, instance, blob)
