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


"""Requirement A: authentication of both platforms (no MITM, no
bait-and-switch). Every attack must be refused with a clear error and
leave the source's key ACTIVE and nothing on any other host."""

import collections.abc
import time
import typing as ty

import pytest

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import errors as tpm_errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import keyblobs
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional import swtpm_fixtures
from tests.functional.protocol import conftest
from tests.support import swtpm

ACTIVE = {'src': 'ACTIVE'}


class ReplaceEphemeral(transport.Adversary):
    """MITM that substitutes its own ECDH key in hello and/or reply.

    In the reply it also re-encrypts the responder's genuine evidence
    (which it knows, e.g. from a handshake of its own) to the initiator
    under the key it substituted, so that the initiator can read it.
    """

    def __init__(self, in_hello: bool, in_reply: bool,
                 responder: ty.Any) -> None:
        self.in_hello, self.in_reply = in_hello, in_reply
        self.key = crypto.EphemeralKey()
        self.responder = responder
        self.hello = b''

    def on_request(self, peer: str, request: bytes) -> bytes:
        if conftest.msg_type(request) == 'hello':
            self.hello = request
        if self.in_hello:
            return conftest.edit(request, 'hello',
                                 ephemeral=self.key.public_bytes)
        return request

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if not self.in_reply or conftest.msg_type(reply) != 'hello_reply':
            return reply
        msg = messages.decode(reply)
        core = dict({k: msg.body[k] for k in handshake._REPLY_CORE},
                    ephemeral=self.key.public_bytes)
        epoch = self.responder.channel.responder._epoch()
        local = self.responder.channel.local
        evidence = wire.encode({
            'identity': messages.identity_to_wire(local.identity),
            'signing_key': messages.certified_to_wire(local.signing_key),
            'epoch_nonce': epoch.nonce,
            'quote': messages.quote_to_wire(epoch.quote)},
            messages.RESPONDER_EVIDENCE)
        eph = messages.decode(self.hello).body['ephemeral']
        salt = handshake._hs_r_salt(
            crypto.sha256(self.hello),
            crypto.sha256(wire.encode(core, handshake._REPLY_CORE)))
        sealed = handshake._seal(self.key.exchange(eph), salt, 'responder',
                                 evidence)
        return messages.encode('hello_reply', dict(
            msg.body, ephemeral=self.key.public_bytes, evidence=sealed))


@pytest.mark.parametrize('in_hello,in_reply,error', [
    # The responder encrypts its evidence for the attacker's key: the
    # initiator cannot read it.
    (True, False, errors.AuthenticationFailed),
    # The attacker's key is not the one the responder's TPM quoted.
    (False, True, tpm_errors.QualifyingDataMismatch),
    (True, True, tpm_errors.QualifyingDataMismatch)])
def test_a_mitm_swapping_ephemeral_keys(cluster: conftest.Cluster,
                                        in_hello: bool, in_reply: bool,
                                        error: type[Exception]) -> None:
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    cluster.transport.adversary = ReplaceEphemeral(
        in_hello, in_reply, cluster.nodes['dst'].engine)
    with pytest.raises(error):
        src.engine.migrate_key(inst, 'dst')
    assert conftest.usable_keys(cluster, inst) == ACTIVE


@pytest.fixture
def outside_policy_host(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
                        ) -> collections.abc.Iterator[
                            swtpm_fixtures.SimHost]:
    sw = swtpm.SwtpmHostTpm(swtpm_ca, 'tampered', clone=True)
    sw.extend_pcr(16, b'unapproved bootloader')
    sim = swtpm_fixtures.attach(sw)
    yield sim
    sim.stop()


def test_a_destination_pcr_outside_policy(
        cluster: conftest.Cluster,
        outside_policy_host: swtpm_fixtures.SimHost) -> None:
    cluster.add('tampered', outside_policy_host)
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    with pytest.raises(tpm_errors.PolicyViolation) as exc:
        src.engine.migrate_key(inst, 'tampered')
    assert 'pcr' in str(exc.value).lower()
    assert conftest.usable_keys(cluster, inst) == ACTIVE


def test_a_source_pcr_outside_policy(
        cluster: conftest.Cluster,
        outside_policy_host: swtpm_fixtures.SimHost) -> None:
    tampered = cluster.add('tampered', outside_policy_host)
    inst, _ = conftest.new_instance(tampered)
    with pytest.raises(errors.PeerRefused) as exc:
        tampered.engine.migrate_key(inst, 'dst')
    assert 'PolicyViolation' in str(exc.value) or 'pcr' in str(exc.value)
    assert conftest.usable_keys(cluster, inst) == {'tampered': 'ACTIVE'}


@pytest.fixture
def untrusted_host(untrusted_ca: swtpm.SwtpmCA  # noqa: F811
                   ) -> collections.abc.Iterator[swtpm_fixtures.SimHost]:
    sim = swtpm_fixtures.attach(swtpm.SwtpmHostTpm(untrusted_ca, 'rogue',
                                                   clone=True))
    yield sim
    sim.stop()


def test_a_ek_from_untrusted_ca(cluster: conftest.Cluster,
                                untrusted_host: swtpm_fixtures.SimHost
                                ) -> None:
    rogue = cluster.add('rogue', untrusted_host)
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    with pytest.raises(tpm_errors.EkCertificateError):
        src.engine.migrate_key(inst, 'rogue')
    inst2, _ = conftest.new_instance(rogue)
    with pytest.raises(errors.PeerRefused) as exc:
        rogue.engine.migrate_key(inst2, 'dst')
    assert exc.value.kwargs['peer_code'] == 'EkCertificateError'
    assert conftest.usable_keys(cluster, inst) == ACTIVE
    assert conftest.usable_keys(cluster, inst2) == {'rogue': 'ACTIVE'}


def _borrowed_identity(real: ty.Any, victim: ty.Any) -> ty.Any:
    """A host that presents a trusted victim's EK with its own AK (and
    the AK certificate of its own TPM)."""
    own = real.identity()
    stolen = victim.identity()
    ident = evidence.HostIdentity(ek_certificate=stolen.ek_certificate,
                                  ek_public=stolen.ek_public,
                                  ak_public=own.ak_public)
    return conftest.RogueTpm(
        real, identity=lambda: ident,
        activate_credential=lambda challenge: crypto.random_bytes(32))


def test_a_ak_not_bound_to_ek(cluster: conftest.Cluster,
                              hosts: dict[str, swtpm_fixtures.SimHost]
                              ) -> None:
    # The real TPM refuses a credential made for the victim's EK ...
    ident = hosts['other'].tpm.identity()
    challenge = conftest.verify_mod().make_credential(
        evidence.HostIdentity(ident.ek_certificate, ident.ek_public,
                              hosts['src'].tpm.identity().ak_public),
        b'c' * 32)
    with pytest.raises(tpm_errors.CredentialError):
        hosts['src'].tpm.activate_credential(challenge)
    # ... so the attestation CA certified the AK with its own EK only: a
    # source borrowing a trusted EK is refused,
    rogue = cluster.add('rogue-src', hosts['src'], tpm=_borrowed_identity(
        hosts['src'].tpm, hosts['other'].tpm))
    inst, _ = conftest.new_instance(rogue)
    with pytest.raises(errors.PeerRefused) as exc:
        rogue.engine.migrate_key(inst, 'dst')
    assert exc.value.kwargs['peer_code'] == 'AkCertificateError'
    # ... and so is a destination.
    cluster.add('rogue-dst', hosts['dst'], tpm=_borrowed_identity(
        hosts['dst'].tpm, hosts['other'].tpm))
    src = cluster.nodes['src']
    inst2, _ = conftest.new_instance(src)
    with pytest.raises(tpm_errors.AkCertificateError,
                       match='another AK or EK certificate'):
        src.engine.migrate_key(inst2, 'rogue-dst')
    assert conftest.usable_keys(cluster, inst2) == ACTIVE


def _foreign_binding_key(victim_tpm: ty.Any) -> ty.Any:
    return lambda qualifying_data, **_: victim_tpm.certified_binding_key(
        qualifying_data)


def _unfixed_binding_key(tpm: host_mod.HostTpm) -> ty.Any:
    """A real binding key of ``tpm`` without fixedTPM/fixedParent (it
    could be duplicated out of the TPM), certified by ``tpm``'s AK."""
    def make(qualifying_data: bytes, **_: ty.Any) -> evidence.CertifiedKey:
        from tpm2_pytss import constants
        unfixed = (objects.BINDING_ATTRIBUTES
                   & ~constants.TPMA_OBJECT.FIXEDTPM
                   & ~constants.TPMA_OBJECT.FIXEDPARENT)
        with tpm.ctx.esys() as e:
            srk = tpm._srk(e)
            values = tpm._read_pcrs(e)
            template = objects._ecc_public(
                unfixed, constants.TPM2_ALG.ECDH,
                auth_policy=policy_mod.pcr_policy_digest(values))
            priv, pub, *_ = e.create(srk, None, template)
            blob = keyblobs.KeyBlob(pub.marshal(), priv.marshal(),
                                    time.time(),
                                    policy_mod.pcr_composite_digest(values))
            return tpm._certify(e, e.load(srk, priv, pub), blob,
                                qualifying_data)
    return make


@pytest.mark.parametrize('kind', ['other_ak', 'not_fixed_tpm'])
def test_a_bad_binding_key(cluster: conftest.Cluster,
                           hosts: dict[str, swtpm_fixtures.SimHost],
                           kind: str) -> None:
    dst = hosts['dst']
    make = (_foreign_binding_key(hosts['other'].tpm) if kind == 'other_ak'
            else _unfixed_binding_key(dst.tpm))
    cluster.add('rogue-dst', dst, tpm=conftest.RogueTpm(
        dst.tpm, certified_binding_key=make))
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    expected = (tpm_errors.SignatureInvalid if kind == 'other_ak'
                else tpm_errors.BindingKeyError)
    with pytest.raises(expected, match='binding key'):
        src.engine.migrate_key(inst, 'rogue-dst')
    assert conftest.usable_keys(cluster, inst) == ACTIVE


class SwitchAfterPhase1(transport.Adversary):
    """Redirects every sealed (phase 2) request for ``dst`` to ``other``
    - another host the policy trusts."""

    def route(self, peer: str, request: bytes) -> str:
        if peer == 'dst' and conftest.msg_type(request) != 'hello' and \
                conftest.msg_type(request) != 'attest':
            return 'other'
        return peer


def test_a_identity_switched_between_phases(cluster: conftest.Cluster
                                            ) -> None:
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    # 'other' is trusted and has a session with src too.
    src.engine.attest_peer('other')
    src.engine.attest_peer('dst')
    cluster.transport.adversary = SwitchAfterPhase1()
    with pytest.raises(errors.ProtocolError):
        src.engine.migrate_key(inst, 'dst')
    assert conftest.usable_keys(cluster, inst) == ACTIVE
    assert cluster.nodes['other'].engine.journal.list_migrations() == []


class SwitchEverything(transport.Adversary):
    """Once phase 1 with ``dst`` is done, sends everything (a fresh
    handshake included) to ``other``."""

    def __init__(self) -> None:
        self.phase1_done = False

    def route(self, peer: str, request: bytes) -> str:
        if peer == 'dst' and self.phase1_done:
            return 'other'
        if conftest.msg_type(request) == 'attest':
            self.phase1_done = True
        return peer


def test_a_identity_switched_with_new_handshake(cluster: conftest.Cluster
                                                ) -> None:
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    cluster.transport.adversary = SwitchEverything()
    # The fresh handshake reaches a TPM certified for another host.
    with pytest.raises(tpm_errors.HostBindingError,
                       match='dst was expected.*certified for other'):
        src.engine.migrate_key(inst, 'dst')
    assert conftest.usable_keys(cluster, inst) == ACTIVE
    assert cluster.nodes['other'].engine.journal.list_migrations() == []


class Downgrade(transport.Adversary):
    """Strips the newest protocol version from the source's offer, or
    rewrites the destination's choice."""

    def __init__(self, where: str) -> None:
        self.where = where

    def on_request(self, peer: str, request: bytes) -> bytes:
        if self.where == 'hello':
            return conftest.edit(request, 'hello', versions=[2])
        return request

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if self.where == 'hello_reply':
            return conftest.edit(reply, 'hello_reply', version=2)
        return reply


@pytest.mark.parametrize('where,error', [
    # The initiator finds the responder's choice (made on the altered
    # offer) is not the best common one; had the attacker also altered
    # the reply's offer, the responder's evidence would not decrypt (both
    # offers are in its key derivation; see test_b).
    ('hello', errors.UnsupportedVersion),
    # The choice is not the best of the responder's offer.
    ('hello_reply', errors.UnsupportedVersion)])
def test_a_version_downgrade_refused(cluster: conftest.Cluster,
                                     monkeypatch: pytest.MonkeyPatch,
                                     where: str,
                                     error: type[Exception]) -> None:
    # Both hosts speak versions 2 and 3; the attacker wants 2.
    monkeypatch.setattr(messages, 'SUPPORTED_VERSIONS', (2, 3))
    src = cluster.nodes['src']
    assert src.engine.attest_peer('dst').version == 3
    cluster.transport.adversary = Downgrade(where)
    with pytest.raises(error):
        src.engine.attest_peer('dst', fresh=True)
