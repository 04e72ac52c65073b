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


"""The sealed envelope: MAC, sequence numbers and request binding.

Pure software: the sessions are built from fixed keys, no TPM step.
"""

import pytest

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.tpm import evidence

MID = '12345678-1234-4234-8234-123456789abc'


def _pair() -> tuple[session_mod.Session, session_mod.Session]:
    keys = crypto.derive_session_keys(b'z' * 32, b't' * 32)
    ident = evidence.HostIdentity(b'c', b'e', b'a')
    key = evidence.CertifiedKey(b'p', b'a', b's')
    common = dict(session_id=b's' * 16, keys=keys, version=1,
                  suite=messages.SUITE, peer_identity=ident,
                  peer_signing_key=key, peer_pcr_values=())
    ini = session_mod.Session(peer='d', initiator=True,
                              local_ak_name=b'S', peer_ak_name=b'D',
                              **common)  # type: ignore[arg-type]
    res = session_mod.Session(peer='s', initiator=False,
                              local_ak_name=b'D', peer_ak_name=b'S',
                              **common)  # type: ignore[arg-type]
    return ini, res


def _status() -> bytes:
    return messages.encode('status', {'migration_id': MID})


def _reply() -> bytes:
    return messages.encode('status_reply', {'migration_id': MID,
                                            'state': 'NEW',
                                            'decision': 'pending'})


def test_request_reply() -> None:
    ini, res = _pair()
    req = ini.seal(_status())
    inner = res.open(messages.decode(req))
    assert inner.type == 'status'
    rep = res.seal(_reply(), request=req)
    assert ini.open(messages.decode(rep), request=req).type == \
        'status_reply'


def test_replay_refused_reorder_within_window_accepted_once() -> None:
    """Concurrent requests on one session may overtake each other (no
    lock across the round trip): each number is accepted once, and a
    message older than the window is refused."""
    ini, res = _pair()
    first, second = ini.seal(_status()), ini.seal(_status())
    res.open(messages.decode(second))
    res.open(messages.decode(first))
    for replayed in (first, second):
        with pytest.raises(errors.ReplayDetected):
            res.open(messages.decode(replayed))
    old = ini.seal(_status())
    newer = [ini.seal(_status()) for _ in range(session_mod.REPLAY_WINDOW)]
    res.open(messages.decode(newer[-1]))
    with pytest.raises(errors.ReplayDetected, match='older'):
        res.open(messages.decode(old))
    res.open(messages.decode(newer[0]))


def test_direction_keys() -> None:
    ini, res = _pair()
    req = ini.seal(_status())
    # A request reflected back to its sender does not verify.
    with pytest.raises(errors.AuthenticationFailed):
        ini.open(messages.decode(req))


def test_reply_bound_to_request() -> None:
    ini, res = _pair()
    req1 = ini.seal(_status())
    res.open(messages.decode(req1))
    rep1 = res.seal(_reply(), request=req1)
    req2 = ini.seal(_status())
    with pytest.raises(errors.AuthenticationFailed):
        ini.open(messages.decode(rep1), request=req2)


def test_every_byte_flip_refused_without_consuming_state() -> None:
    ini, res = _pair()
    req = ini.seal(_status())
    for i in range(len(req)):
        bad = bytearray(req)
        bad[i] ^= 0x01
        with pytest.raises((errors.MalformedMessage,
                            errors.AuthenticationFailed,
                            errors.UnsupportedVersion,
                            errors.UnexpectedMessage)):
            res.open(messages.decode(bytes(bad)))
    assert res.open(messages.decode(req)).type == 'status'


def test_other_session_refused() -> None:
    ini, res = _pair()
    other = crypto.derive_session_keys(b'y' * 32,
                                       b't' * 32)
    ini.keys = other
    with pytest.raises(errors.AuthenticationFailed):
        res.open(messages.decode(ini.seal(_status())))


def test_expiry() -> None:
    ini, _ = _pair()
    assert not ini.expired(60)
    assert ini.expired(-1)
    ini.valid = False
    assert ini.expired(60)
