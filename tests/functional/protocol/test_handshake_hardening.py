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

"""Phase 1 against an attacker on the message bus: identities hidden,
forged and flooded messages harmless, refusals that disclose nothing,
evidence never older than the policy allows. Real swtpm hosts."""

import base64
import collections.abc
import threading
import time
import typing as ty

import pytest

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import errors as tpm_errors
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional import swtpm_fixtures
from tests.functional.protocol import conftest
from tests.support import attestation


def _hello() -> bytes:
    return messages.encode('hello', {
        'versions': list(messages.SUPPORTED_VERSIONS),
        'suites': list(messages.SUPPORTED_SUITES),
        'nonce': crypto.random_bytes(32),
        'ephemeral': crypto.EphemeralKey().public_bytes})


class _CountingTpm(conftest.RogueTpm):
    """The real TPM, counting quotes (the TPM work of a handshake)."""

    def __init__(self, real: ty.Any) -> None:
        super().__init__(real, quote=self._quote)
        self.quotes = 0

    def _quote(self, qualifying_data: bytes) -> ty.Any:
        self.quotes += 1
        return self._real.quote(qualifying_data)


def test_hello_flood_costs_no_tpm_work_and_real_handshakes_go_on(
        hosts: dict[str, swtpm_fixtures.SimHost],
        trust_policy: ty.Any) -> None:
    """Anyone on the bus can send ``hello``: a flood of them (fresh keys)
    makes the responder quote at most once per epoch and keeps no state,
    and a real handshake completes during the flood."""
    cluster = conftest.Cluster(trust_policy)
    try:
        counting = _CountingTpm(hosts['dst'].tpm)
        cluster.add('src', hosts['src'])
        cluster.add('dst', hosts['dst'], tpm=counting)
        dst = cluster.nodes['dst'].engine
        stop = threading.Event()
        sent = [0]

        def flood() -> None:
            while not stop.is_set():
                dst.handle(_hello())
                sent[0] += 1

        threads = [threading.Thread(target=flood) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            sess = cluster.nodes['src'].engine.attest_peer('dst',
                                                           fresh=True)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert sess.peer_host == 'dst'
        assert sent[0] > 100
        assert counting.quotes <= 1, counting.quotes
        assert dst.channel.responder._consumed.keys() == {sess.session_id}
    finally:
        cluster.close()


class _ForgeAttest(transport_mod.Adversary):
    """Sends a forged ``attest`` (same session id and cookie, other
    evidence) ahead of the real one, and replays the real one later."""

    def __init__(self, transport: transport_mod.LocalTransport) -> None:
        self.transport = transport
        self.forged_reply = b''
        self.real_attest = b''

    def on_request(self, peer: str, request: bytes) -> bytes:
        msg = messages.decode(request)
        if msg.type == 'attest' and not self.real_attest:
            self.real_attest = request
            forged = messages.encode('attest', dict(
                msg.body, evidence=crypto.random_bytes(
                    len(msg.body['evidence']))))
            self.forged_reply = self.transport.deliver(peer, forged)
        return request


def test_forged_attest_cannot_kill_the_handshake_nor_be_replayed(
        cluster: conftest.Cluster) -> None:
    adversary = _ForgeAttest(cluster.transport)
    cluster.transport.adversary = adversary
    sess = cluster.nodes['src'].engine.attest_peer('dst', fresh=True)
    assert sess.peer_host == 'dst'
    refused = messages.decode(adversary.forged_reply)
    assert refused.type == 'error'
    assert refused.body['code'] == errors.AuthenticationFailed.code
    # The real attest, replayed, is refused: the handshake is finished.
    replay = messages.decode(cluster.transport.deliver(
        'dst', adversary.real_attest))
    assert replay.body['code'] == errors.ReplayDetected.code


def test_refusal_to_an_unauthenticated_peer_discloses_no_policy(
        swtpm_factory: collections.abc.Callable[..., ty.Any],
        cluster: conftest.Cluster) -> None:
    """A host outside the policy (PCR 7 extended) initiates: the refusal
    it gets names the rule, but not the golden values or its own."""
    bad = swtpm_factory('bad', clone=False)
    bad.extend_pcr(7, b'unsigned shim')
    node = cluster.add('bad', bad)
    golden = cluster.policy.golden_sets[0].pcrs[7]
    with pytest.raises(errors.PeerRefused) as exc:
        node.engine.attest_peer('dst', fresh=True)
    text = str(exc.value)
    assert 'pcr[7]' in text
    for value in (*golden, bad.tpm.pcr_values()[7]):
        assert value.hex() not in text
        assert base64.urlsafe_b64encode(value).decode()[:20] not in text
    # The destination's own log keeps the whole reason (not sent).
    assert exc.value.kwargs['peer_code'] in ('policy', 'verification',
                                             'PolicyViolation')


def test_passive_observer_learns_no_identity_and_no_pcr_value(
        swtpm_factory: collections.abc.Callable[..., ty.Any],
        swtpm_ca: ty.Any) -> None:
    """Everything phase 1 and a key transfer put on the wire, searched for
    both hosts' EK and AK certificates, AK public areas and PCR values
    (distinct per host: PCR 16 extended with random data)."""
    a, b = swtpm_factory('id-a', clone=False), swtpm_factory('id-b',
                                                             clone=False)
    a.extend_pcr(16, crypto.random_bytes(32))
    b.extend_pcr(16, crypto.random_bytes(32))
    pcrs_a, pcrs_b = a.tpm.pcr_values(), b.tpm.pcr_values()
    policy = policy_mod.TrustPolicy.from_dict(
        policy_mod.TrustPolicy.document(
            swtpm_ca.bundle_pem(), [('a', pcrs_a), ('b', pcrs_b)],
            attestation_ca_pems=[attestation.default_ca().pem]))
    cluster = conftest.Cluster(policy)
    try:
        src, dst = cluster.add('src', a), cluster.add('dst', b)
        inst, _secret = conftest.new_instance(src)
        src.engine.migrate_key(inst, 'dst')
        wire = b''.join(e.request + (e.reply or b'')
                        for e in cluster.transport.captured)
        secrets: list[bytes] = []
        for node in (src, dst):
            ident = node.engine.channel.local.identity
            secrets += [ident.ek_certificate, ident.ak_certificate,
                        ident.ak_public]
        secrets += [v for v in pcrs_a.values() if v != bytes(32)]
        secrets += [v for v in pcrs_b.values() if v != bytes(32)]
        assert len(secrets) == 8
        for value in secrets:
            for form in (value, base64.urlsafe_b64encode(value).rstrip(b'='),
                         value.hex().encode()):
                assert form[8:40] not in wire
        # The control: the same search finds what does travel in the clear.
        hello = next(e.request for e in cluster.transport.captured
                     if conftest.msg_type(e.request) == 'hello')
        eph = messages.decode(hello).body['ephemeral']
        assert base64.urlsafe_b64encode(eph).rstrip(b'=')[8:40] in wire
    finally:
        cluster.close()


def test_old_session_starts_no_migration(cluster: conftest.Cluster) -> None:
    """Evidence on a reused session is never older than the policy allows:
    the source re-attests, and a destination refuses ``prepare`` on a
    session older than that (the source then attests again)."""
    src = cluster.nodes['src'].engine
    dst = cluster.nodes['dst'].engine
    sess = src.attest_peer('dst')
    limit = cluster.policy.max_evidence_age * 2 / 3
    assert src.channel.reuse_limit == pytest.approx(limit)
    sess.established_at -= limit + 1
    assert src.attest_peer('dst') is not sess
    # The source still trusts its session, the destination finds it old.
    fresh = src.attest_peer('dst')
    responder = dst.channel.session_for(fresh.session_id)
    responder.established_at -= limit + 30
    hellos = [e for e in cluster.transport.captured
              if conftest.msg_type(e.request) == 'hello']
    inst, secret = conftest.new_instance(cluster.nodes['src'])
    handle = src.migrate_key(inst, 'dst')
    assert dst.take_pending_key(inst, handle.migration_id) == secret
    after = [e for e in cluster.transport.captured
             if conftest.msg_type(e.request) == 'hello']
    assert len(after) == len(hellos) + 1


def test_binding_key_is_released_only_on_fresh_evidence(
        cluster: conftest.Cluster) -> None:
    """The binding key's certification (a fresh TPM statement) must be
    within ``max_evidence_age`` of the quote the session was attested on,
    in the same boot (TPM clock, reset and restart counts)."""
    src = cluster.nodes['src'].engine
    sess = src.attest_peer('dst', fresh=True)
    clock = sess.peer_clock
    assert clock is not None
    inst, _secret = conftest.new_instance(cluster.nodes['src'])
    age = cluster.policy.max_evidence_age * 1000 + 5000
    sess.peer_clock = clock.__class__(clock=clock.clock - age,
                                      reset_count=clock.reset_count,
                                      restart_count=clock.restart_count,
                                      safe=True)
    with pytest.raises(tpm_errors.PolicyViolation,
                       match='max_evidence_age'):
        src.migrate_key(inst, 'dst')
    sess = src.attest_peer('dst', fresh=True)
    sess.peer_clock = clock.__class__(clock=clock.clock,
                                      reset_count=clock.reset_count - 1,
                                      restart_count=clock.restart_count,
                                      safe=True)
    with pytest.raises(tpm_errors.QuoteError, match='restarted'):
        src.migrate_key(inst, 'dst')
    assert conftest.usable_keys(cluster, inst) == {'src': 'ACTIVE'}
