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


"""Requirement B: confidentiality and integrity of the transfer.

* every single-byte change of every message of a migration is refused
  (phase 1 at the handshake level with real TPMs, the sealed phase-2 and
  outcome messages inside a live migration without disturbing it);
* the secret (and the state blobs) never appear in any captured message,
  log record, journal row, file of the state directories or exception
  text.
"""

import base64
import copy
import logging
import os
import pathlib
import typing as ty

import pytest

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport
from nova_vtpm_migration.tpm import evidence
from tests.functional import swtpm_fixtures
from tests.functional.protocol import conftest
from tests.support import attestation

REFUSED = (exception.VtpmMigrationException,)


class MemClocks:
    """An in-memory clock store (each flip trial gets a fresh one)."""

    def __init__(self) -> None:
        self.clocks: dict[bytes, evidence.ClockInfo] = {}

    def get_peer_clock(self, ak_name: bytes) -> evidence.ClockInfo | None:
        return self.clocks.get(ak_name)

    def set_peer_clock(self, ak_name: bytes,
                       clock: evidence.ClockInfo) -> None:
        self.clocks[ak_name] = clock


def flips(data: bytes) -> ty.Iterator[tuple[int, bytes]]:
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        yield i, bytes(bad)


def _fresh(obj: ty.Any) -> ty.Any:
    clone = copy.copy(obj)
    clone._clocks = MemClocks()
    return clone


@pytest.mark.slow
def test_b_every_phase1_byte_flip_refused(
        hosts: dict[str, swtpm_fixtures.SimHost],
        trust_policy: ty.Any) -> None:
    """Every one-byte change of every phase-1 message is refused, by the
    side that reads it or (for the responder's cookie, opaque to the
    initiator) by the responder when it comes back."""
    src, dst = hosts['src'].tpm, hosts['dst'].tpm
    ca = attestation.default_ca()
    s_local = handshake.local_evidence(
        src, ca.enroll(src, 'src', hosts['src'].swtpm.ca.bundle_pem()),
        'src')
    d_local = handshake.local_evidence(
        dst, ca.enroll(dst, 'dst', hosts['dst'].swtpm.ca.bundle_pem()),
        'dst')
    res = handshake.Responder(dst, trust_policy, MemClocks(),
                              lambda: d_local)
    ini = handshake.Initiator(src, trust_policy, MemClocks(), s_local,
                              'dst')
    hello = ini.hello()
    accepted = 0
    for _i, bad in flips(hello):
        try:
            reply = res.process_hello(bad)
        except REFUSED:
            continue
        accepted += 1
        with pytest.raises(REFUSED):
            _fresh(ini).process_hello_reply(reply)
    # Only nonce-like fields can be changed unnoticed by the responder;
    # the initiator then cannot read its evidence.
    assert accepted < 100

    reply = res.process_hello(hello)
    cookie = messages.decode(reply).body['cookie']
    passed_initiator = 0
    for _i, bad in flips(reply):
        try:
            attest = _fresh(ini).process_hello_reply(bad)
        except REFUSED:
            continue
        # Only the cookie is the responder's own business ...
        passed_initiator += 1
        assert messages.decode(bad).body['cookie'] != cookie
        with pytest.raises(REFUSED):
            _fresh(res).process_attest(messages.decode(attest))
    # (the cookie travels base64url-encoded: 4 characters per 3 bytes)
    assert 0 < passed_initiator <= -(-len(cookie) * 4 // 3)
    attest = ini.process_hello_reply(reply)

    for _i, bad in flips(attest):
        with pytest.raises(REFUSED):
            _fresh(res).process_attest(messages.decode(bad))
    attest_reply, _sess = res.process_attest(messages.decode(attest))

    for _i, bad in flips(attest_reply):
        with pytest.raises(REFUSED):
            ini.process_attest_reply(bad)
    assert ini.process_attest_reply(attest_reply).peer_ak_name == \
        d_local.ak_name


class FlipEverySealed(transport.Adversary):
    """For every sealed request: deliver each one-byte variant to the
    destination first (each must be answered with an error and change
    nothing), then the original. For every sealed reply: each variant
    must be refused by the source's session."""

    def __init__(self, cluster: conftest.Cluster) -> None:
        self.cluster = cluster
        self.checked: dict[str, int] = {}

    def on_request(self, peer: str, request: bytes) -> bytes:
        kind = conftest.inner_type(request)
        if conftest.msg_type(request) != 'sealed':
            return request
        for _i, bad in flips(request):
            reply = self.cluster.transport.deliver(peer, bad)
            assert messages.decode(reply).type in ('error', 'sealed')
            if messages.decode(reply).type == 'sealed':
                # Authenticated but refused: an inner error.
                assert conftest.inner_type(reply) == 'error'
        self.checked[kind] = len(request)
        return request

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if conftest.msg_type(reply) != 'sealed':
            return reply
        sess = self.cluster.nodes['src'].engine.channel._out[peer]
        for _i, bad in flips(reply):
            with pytest.raises(REFUSED):
                sess.open(messages.decode(bad), request=request)
        self.checked[conftest.inner_type(reply)] = len(reply)
        return reply


def test_b_every_sealed_byte_flip_refused(cluster: conftest.Cluster
                                          ) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    adversary = FlipEverySealed(cluster)
    cluster.transport.adversary = adversary
    handle = src.engine.migrate_key(inst, 'dst',
                                    state_blobs={'volatile': b'v' * 64})
    src.engine.commit(handle.migration_id)
    assert set(adversary.checked) == {
        'prepare', 'prepare_reply', 'transfer', 'transfer_reply', 'commit',
        'commit_reply'}
    assert dst.engine.keystore.read(inst) == secret


class TamperTransfer(transport.Adversary):
    def on_request(self, peer: str, request: bytes) -> bytes:
        if conftest.inner_type(request) == 'transfer':
            bad = bytearray(request)
            bad[len(bad) // 2] ^= 0x01
            return bytes(bad)
        return request


def _forms(data: bytes) -> list[bytes]:
    return [data, data.hex().encode(), data.hex().upper().encode(),
            base64.b64encode(data).rstrip(b'='),
            base64.urlsafe_b64encode(data).rstrip(b'=')]


def _scan(haystack: bytes, needles: list[bytes], where: str) -> None:
    for needle in needles:
        for form in _forms(needle):
            assert form not in haystack, f'secret found in {where}'


def test_b_secret_never_leaks(cluster: conftest.Cluster,
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    blob = os.urandom(3000)
    texts: list[str] = []
    # A failed attempt first (tampered transfer), then a good one.
    cluster.transport.adversary = TamperTransfer()
    with pytest.raises(errors.ProtocolError) as exc:
        src.engine.migrate_key(inst, 'dst', state_blobs={'state': blob})
    texts.append(str(exc.value))
    texts.append(repr(exc.value))
    cluster.transport.adversary = transport.Adversary()
    handle = src.engine.migrate_key(inst, 'dst', state_blobs={'state': blob})
    texts.append(repr(handle))
    assert dst.engine.take_pending_key(inst, handle.migration_id) == secret
    src.engine.commit(handle.migration_id)
    assert dst.engine.take_state_blobs(inst, handle.migration_id) == {
        'state': blob}
    needles = [secret, blob[:48], blob[-48:]]
    wire = b''.join(x.request + (x.reply or b'')
                    for x in cluster.transport.captured)
    _scan(wire, needles, 'a message')
    logs = '\n'.join(r.getMessage() + str(r.exc_text or '')
                     for r in caplog.records)
    _scan(logs.encode(), needles, 'a log record')
    _scan('\n'.join(texts).encode(), needles, 'an exception')
    for node in (src, dst):
        rows = node.engine.journal.execute(
            "SELECT * FROM migrations UNION ALL SELECT migration_id, kind, "
            "body, created_at, '', '', '', '' FROM records")
        _scan(repr(rows).encode(), needles, 'a journal row')
    for root in (cluster.dir, str(src.sim.tpm.state_dir),
                 str(dst.sim.tpm.state_dir)):
        for path in pathlib.Path(root).rglob('*'):
            if path.is_file():
                _scan(path.read_bytes(), needles, str(path))
