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



"""Extended attack suite, on real swtpm hosts with an
in-process Dolev-Yao adversary or compromised host software. Each attack
is refused with a clear, documented error and leaves the key where it
was.

Already covered by the protocol's own tests (not repeated here):
a borrowed EK certificate with the attacker's own AK
(``test_a_ak_not_bound_to_ek``), PCR extend between the binding-key
certification and the unwrap (``test_e_toctou_pcr_change_before_unwrap``),
every byte flip of every message (``test_b_*_byte_flip_refused``),
stripping the newest of two supported versions from the offer or the
choice (``test_a_version_downgrade_refused``; here: envelope versions,
unsupported offers and cipher-suite downgrades on the wire),
replayed sessions and messages (``test_c_*``), altered or re-attributed
audit records (``test_d_*``).
"""

import collections.abc
import os
import typing as ty

import hypothesis
from hypothesis import strategies as st
import pytest

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import errors as tpm_errors
from tests.functional import swtpm_fixtures
from tests.functional.protocol import conftest as pconf
from tests.functional.protocol.conftest import cluster  # noqa: F401
from tests.functional.protocol.conftest import hosts  # noqa: F401
from tests.functional.protocol.conftest import trust_policy  # noqa: F401
from tests.fuzz import fuzzlib
from tests.support import swtpm

Cluster = pconf.Cluster
SimHosts = dict[str, swtpm_fixtures.SimHost]


def _only(cl: Cluster, holder: str, inst: str, secret: bytes) -> None:
    """The key is ACTIVE at ``holder``, equal to ``secret``; every other
    host has none or a DESTROYED one."""
    keys = pconf.usable_keys(cl, inst)
    assert keys.pop(holder) == 'ACTIVE'
    assert set(keys.values()) <= {'DESTROYED'}, keys
    assert cl.nodes[holder].engine.keystore.read(inst) == secret


def _only_src(cl: Cluster, inst: str, secret: bytes) -> None:
    _only(cl, 'src', inst, secret)


# -- cloned destination identity --------------------------------------------

@pytest.fixture
def spare(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
          ) -> collections.abc.Iterator[swtpm_fixtures.SimHost]:
    """A TPM of its own for the attacker (a failed credential activation
    can leave swtpm in failure mode for a moment; the shared hosts must
    not be affected)."""
    sim = swtpm_fixtures.attach(swtpm.SwtpmHostTpm(swtpm_ca, 'attacker',
                                                   clone=True))
    yield sim
    sim.stop()


@pytest.mark.parametrize('quotes', ['own', 'replayed'])
def test_cloned_destination_identity(cluster: Cluster,  # noqa: F811
                                     hosts: SimHosts,  # noqa: F811
                                     spare: swtpm_fixtures.SimHost,
                                     quotes: str) -> None:
    """A host on another TPM presents dst's complete public identity (EK
    certificate, EK, AK, AK certificate) and AK-certified signing key,
    and quotes with its own TPM or replays a quote dst made earlier.

    Under its own name it is refused for the host binding (the identity
    is certified for dst); answering in dst's place (the attacker holds
    the bus credentials to take dst's queue) it is refused for the
    quote."""
    victim = hosts['dst'].tpm
    stolen_quote = victim.quote(b'\x00' * 32)
    overrides: dict[str, ty.Any] = {
        'identity': victim.identity,
        'certified_signing_key': victim.certified_signing_key}
    if quotes == 'replayed':
        overrides['quote'] = lambda qualifying_data: stolen_quote
    clone = cluster.add('clone', spare,
                        tpm=pconf.RogueTpm(spare.tpm, **overrides),
                        ak_certificate=cluster.sim.ak_certificate('dst'))
    src = cluster.nodes['src'].engine
    inst, secret = pconf.new_instance(cluster.nodes['src'])
    with pytest.raises(tpm_errors.HostBindingError,
                       match='clone was expected.*certified for dst'):
        src.migrate_key(inst, 'clone')

    cluster.transport.register('dst', clone.engine.handle)
    expected = (tpm_errors.SignatureInvalid if quotes == 'own'
                else tpm_errors.QualifyingDataMismatch)
    with pytest.raises(expected) as exc:
        src.migrate_key(inst, 'dst')
    assert 'quote' in str(exc.value)
    _only_src(cluster, inst, secret)
    assert not clone.engine.journal.list_migrations()


def test_cloned_identity_as_source(cluster: Cluster,  # noqa: F811
                                   hosts: SimHosts,  # noqa: F811
                                   spare: swtpm_fixtures.SimHost) -> None:
    """The same clone cannot pose as a source either: its TPM cannot
    answer the destination's credential challenge (made for the victim's
    EK), and its quote does not verify with the victim's AK."""
    victim = hosts['src'].tpm
    rogue = cluster.add('clone', spare, tpm=pconf.RogueTpm(
        spare.tpm, identity=victim.identity,
        certified_signing_key=victim.certified_signing_key),
        ak_certificate=cluster.sim.ak_certificate('src'))
    inst, _secret = pconf.new_instance(rogue)
    with pytest.raises((tpm_errors.CredentialError,
                        errors.PeerRefused)) as exc:
        rogue.engine.migrate_key(inst, 'dst')
    if isinstance(exc.value, errors.PeerRefused):
        assert exc.value.kwargs['peer_code'] in ('SignatureInvalid',
                                                 'auth_failed')
    assert not cluster.nodes['dst'].engine.keystore.instances()


# -- stolen receipts ---------------------------------------------------------

def _substitute(node: pconf.Node, request_type: str, receipt: bytes,
                signature: bytes | None) -> None:
    """Compromised destination software: answers ``request_type`` with a
    stolen (genuine; TPM-signed when ``signature`` is given) receipt
    instead of the fresh one."""
    role = node.engine.destination
    dispatch = role.dispatch

    def rogue(sess: ty.Any, msg: messages.Message) -> bytes:
        reply = dispatch(sess, msg)
        if msg.type != request_type:
            return reply
        decoded = messages.decode(reply)
        body = dict(decoded.body, receipt=receipt)
        if signature is not None:
            body['receipt_signature'] = signature
        return messages.encode(decoded.type, body)
    role.dispatch = rogue  # type: ignore[method-assign]


def _stolen(cluster: Cluster) -> dict[str, ty.Any]:  # noqa: F811
    """Receipts of a genuine migration src -> dst (the 'installed' one is
    authenticated by the session, not signed; the 'committed' one is
    signed)."""
    src = cluster.nodes['src'].engine
    inst, _ = pconf.new_instance(cluster.nodes['src'])
    handle = src.migrate_key(inst, 'dst')
    committed = src.commit(handle.migration_id)
    signature = committed.pop('signature')
    assert wire.decode(src.journal.get_record(
        handle.migration_id, 'receipt_installed'),
        messages.RECEIPT) == handle.receipt
    return {'installed': (handle.receipt, None),
            'committed': (committed, signature)}


def test_stolen_installed_receipt_replayed_to_another_source(
        cluster: Cluster) -> None:  # noqa: F811
    """dst's genuine 'installed' receipt of src's migration, replayed by
    dst to another source (other) for a new migration: refused; other
    keeps its key, dst keeps nothing."""
    receipt, signature = _stolen(cluster)['installed']
    _substitute(cluster.nodes['dst'], 'transfer', receipt, signature)
    other = cluster.nodes['other']
    inst, secret = pconf.new_instance(other)
    with pytest.raises(errors.ReceiptInvalid, match='differ in '
                                                    'migration_id'):
        other.engine.migrate_key(inst, 'dst')
    _only(cluster, 'other', inst, secret)


def test_stolen_committed_receipt_replayed_to_another_source(
        cluster: Cluster) -> None:  # noqa: F811
    """A stolen 'committed' receipt in the commit reply of another
    migration: the source does not destroy its key (it stays LOCKED, not
    usable by anyone but recovery) and completes once dst answers
    honestly."""
    receipt, signature = _stolen(cluster)['committed']
    other = cluster.nodes['other']
    inst, secret = pconf.new_instance(other)
    handle = other.engine.migrate_key(inst, 'dst')
    _substitute(cluster.nodes['dst'], 'commit', receipt, signature)
    with pytest.raises(errors.ReceiptInvalid):
        other.engine.commit(handle.migration_id)
    assert other.engine.keystore.state(inst).value == 'LOCKED'
    cluster.nodes['dst'].engine.destination.__dict__.pop('dispatch')
    other.engine.recover()
    assert pconf.usable_keys(cluster, inst) == {'other': 'DESTROYED',
                                                'dst': 'ACTIVE'}
    assert cluster.nodes['dst'].engine.keystore.read(inst) == secret


# -- downgrade ----------------------------------------------------------

class Rewrite(transport.Adversary):
    """Rewrites the first request or reply of ``msg_type``."""

    def __init__(self, msg_type: str, change: ty.Callable[[bytes], bytes],
                 on: str = 'request') -> None:
        self.msg_type, self.change, self.on = msg_type, change, on
        self.done = False

    def _maybe(self, data: bytes) -> bytes:
        if not self.done and pconf.msg_type(data) == self.msg_type:
            self.done = True
            return self.change(data)
        return data

    def on_request(self, peer: str, request: bytes) -> bytes:
        return self._maybe(request) if self.on == 'request' else request

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        return self._maybe(reply) if self.on == 'reply' else reply


def _with_version(data: bytes, version: int) -> bytes:
    msg = messages.decode(data)
    return messages.encode(msg.type, msg.body, version=version)


def _body(**changes: ty.Any) -> ty.Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        msg = messages.decode(data)
        return messages.encode(msg.type, dict(msg.body, **changes))
    return change


#: A version this code does not speak (one after its own).
NEXT_VERSION = messages.VERSION + 1

DOWNGRADES: dict[str, tuple[str, str, ty.Callable[[bytes], bytes],
                            ty.Any, str]] = {
    # name: (message, request|reply, change, error, text in the error)
    'hello-envelope-old-version': (
        'hello', 'request', lambda d: _with_version(d, 0),
        errors.PeerRefused, 'unsupported_version'),
    'attest-envelope-new-version': (
        'attest', 'request', lambda d: _with_version(d, NEXT_VERSION),
        errors.PeerRefused, 'unsupported_version'),
    'reply-envelope-old-version': (
        'hello_reply', 'reply', lambda d: _with_version(d, 0),
        errors.UnsupportedVersion, 'Unsupported protocol version 0'),
    'hello-offers-only-weak-suite': (
        'hello', 'request', _body(suites=['p256-sha1-legacy']),
        errors.PeerRefused, 'unsupported_suite'),
    'hello-offers-only-other-version': (
        'hello', 'request', _body(versions=[NEXT_VERSION]),
        errors.PeerRefused, 'unsupported_version'),
    # (the offer the responder saw is in its handshake key derivation:
    # its evidence does not decrypt at the initiator)
    'hello-negotiation-tampered': (
        'hello', 'request', _body(versions=[messages.VERSION, NEXT_VERSION]),
        errors.AuthenticationFailed, 'does not decrypt'),
    # (refused as unsupported, or because the changed choice is in the
    # transcript the destination's quote covers)
    'reply-picks-other-version': (
        'hello_reply', 'reply', _body(version=NEXT_VERSION),
        (errors.ProtocolError, tpm_errors.QualifyingDataMismatch),
        'version|quote'),
    'reply-picks-weak-suite': (
        'hello_reply', 'reply', _body(suite='p256-sha1-legacy'),
        (errors.ProtocolError, tpm_errors.QualifyingDataMismatch),
        'suite|quote'),
}


@pytest.mark.parametrize('name', sorted(DOWNGRADES))
def test_downgrade_refused(cluster: Cluster, name: str  # noqa: F811
                           ) -> None:
    """A man in the middle changes the offered or chosen protocol version
    or cipher suite: refused (unsupported, or detected through the
    transcript bound into the handshake key and both TPM quotes)."""
    msg_type, on, change, error, text = DOWNGRADES[name]
    inst, secret = pconf.new_instance(cluster.nodes['src'])
    adversary = Rewrite(msg_type, change, on)
    cluster.transport.adversary = adversary
    with pytest.raises(error) as exc:
        cluster.nodes['src'].engine.migrate_key(inst, 'dst')
    assert adversary.done
    said = (str(exc.value) + ' ' + str(getattr(exc.value, 'kwargs', {})))
    assert any(t in said.lower() for t in text.lower().split('|')), said
    _only_src(cluster, inst, secret)


# -- PCR change after attestation, session reused --------------------------

@pytest.fixture
def volatile(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
             ) -> collections.abc.Iterator[swtpm_fixtures.SimHost]:
    sim = swtpm_fixtures.attach(swtpm.SwtpmHostTpm(swtpm_ca, 'volatile2',
                                                   clone=True))
    yield sim
    sim.stop()


def test_pcr_change_after_attestation_with_session_reuse(
        cluster: Cluster,  # noqa: F811
        volatile: swtpm_fixtures.SimHost) -> None:
    """The destination is attested (session kept for reuse), migrates one
    VM, then its PCRs change (runtime compromise). The next migration
    reuses the attested session, but the new binding key's PCR policy is
    not over the quoted PCRs: refused before any key is sent."""
    cluster.add('volatile', volatile)
    src = cluster.nodes['src'].engine
    inst1, _ = pconf.new_instance(cluster.nodes['src'])
    src.commit(src.migrate_key(inst1, 'volatile').migration_id)
    pconf.extend_pcr(volatile, 16, b'runtime compromise')
    inst2, secret2 = pconf.new_instance(cluster.nodes['src'])
    with pytest.raises(tpm_errors.BindingKeyError,
                       match='not PolicyPCR over the quoted PCRs'):
        src.migrate_key(inst2, 'volatile')
    assert pconf.usable_keys(cluster, inst2) == {'src': 'ACTIVE'}
    assert src.keystore.read(inst2) == secret2


# -- garbage and oversize at every endpoint -----------------------------

def _error_code(reply: bytes) -> str:
    msg = messages.decode(reply)
    assert msg.type == 'error', msg.type
    return str(msg.body['code'])


@fuzzlib.budget(3)
@hypothesis.given(st.one_of(
    st.binary(max_size=300),
    st.sampled_from(sorted(messages.SCHEMAS)).flatmap(
        lambda t: fuzzlib.schema_values(messages.SCHEMAS[t]).map(
            lambda b: messages.encode(t, b)))))
def test_garbage_at_destination_endpoint(cluster: Cluster,  # noqa: F811
                                         data: bytes) -> None:
    """Random bytes and well-formed messages of every type, unsolicited,
    at the destination's entry point: an 'error' reply with a documented
    code (never 'internal'), no journal row."""
    dst = cluster.nodes['dst'].engine
    fuzzlib.tick('attack.endpoint')
    code = _error_code(dst.handle(data))
    assert code != 'internal'
    assert not dst.journal.list_migrations()


@pytest.mark.parametrize('size', [wire.MAX_MESSAGE_SIZE + 1,
                                  64 * 1024 * 1024])
def test_oversize_at_destination_endpoint(cluster: Cluster,  # noqa: F811
                                          size: int) -> None:
    dst = cluster.nodes['dst'].engine
    assert _error_code(dst.handle(b'{' + b' ' * (size - 1))) == 'too_large'


class GarbageReply(transport.Adversary):
    """Replaces the reply to the first request of ``msg_type`` (inner
    type for sealed requests) with ``junk``."""

    def __init__(self, msg_type: str, junk: bytes) -> None:
        self.msg_type, self.junk, self.done = msg_type, junk, False

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if not self.done and pconf.inner_type(request) == self.msg_type:
            self.done = True
            return self.junk
        return reply


JUNK = {
    'random': os.urandom(200),
    'oversize': b'{"v":1' + b' ' * wire.MAX_MESSAGE_SIZE + b'}',
    'wrong-type': messages.encode('status', {
        'migration_id': '00000000-0000-4000-8000-000000000000'}),
    'truncated': b'{"body":{"code":"x","message":"y"},"type":"err',
}


@pytest.mark.parametrize('junk', sorted(JUNK))
@pytest.mark.parametrize('msg_type', ['hello', 'attest', 'prepare',
                                      'transfer'])
def test_garbage_reply_at_source(cluster: Cluster, msg_type: str,  # noqa
                                 junk: str) -> None:
    """Garbage, oversize, wrong-type or truncated replies to each source
    request: a documented error, the migration aborted, the key ACTIVE
    at the source and nothing left at the destination after recovery."""
    inst, secret = pconf.new_instance(cluster.nodes['src'])
    adversary = GarbageReply(msg_type, JUNK[junk])
    cluster.transport.adversary = adversary
    with pytest.raises(exception.VtpmMigrationException):
        cluster.nodes['src'].engine.migrate_key(inst, 'dst')
    assert adversary.done
    cluster.transport.adversary = transport.Adversary()
    cluster.nodes['src'].engine.recover()
    cluster.nodes['dst'].engine.recover()
    _only_src(cluster, inst, secret)
