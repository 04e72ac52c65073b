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

"""The host object: what the source accepts, the one availability guard,
and the trait cache."""

import types
import typing as ty

from nova.compute import provider_tree
from oslo_config import cfg
import pytest

from nova_vtpm_migration import conf as vtpm_conf  # noqa: F401
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.virt import flavor_policy
from nova_vtpm_migration.virt.libvirt import traits

CONF = cfg.CONF


class _Engine:
    def __init__(self) -> None:
        self.calls: list[tuple[ty.Any, ...]] = []

    def attest_peer(self, peer: str) -> ty.Any:
        self.calls.append(('attest_peer', peer))
        return types.SimpleNamespace(
            peer_identity=types.SimpleNamespace(ek_fingerprint='ab' * 32),
            peer_ak_name=b'ak-of-' + peer.encode())

    def migrate_key(self, instance_uuid: str, peer: str, migration_id: str,
                    state_blobs: dict[str, bytes], expect_ak: bytes = b'',
                    check_session: ty.Any = None) -> ty.Any:
        self.calls.append(('migrate_key', peer, migration_id, instance_uuid,
                           expect_ak))
        return types.SimpleNamespace(migration_id=migration_id, peer=peer)

    def abort(self, migration_id: str, reason: str = '') -> None:
        self.calls.append(('abort', migration_id))

    def commit(self, migration_id: str) -> None:
        self.calls.append(('commit', migration_id))


class _Vault:
    def holds(self, instance_uuid: str) -> bool:
        return True

    def envelope(self, instance_uuid: str) -> bytes:
        return b'sealed'

    def reconcile(self) -> list[str]:
        return []


class _Nova:
    def __init__(self) -> None:
        self.moving = True

    def check_attest_request(self, instance_uuid: str,
                             destination: str) -> None:
        if not self.moving:
            raise errors.UnexpectedDestination(
                dest=destination, instance=instance_uuid,
                expected='no live migration')

    def check_outgoing(self, instance_uuid: str, migration_uuid: str,
                       destination: str) -> None:
        pass

    def flavor_policy(self, instance_uuid: str) -> str | None:
        return None


class _SelfCheck:
    def __init__(self) -> None:
        self.calls = 0
        self.healthy = True

    def check(self) -> None:
        self.calls += 1
        if not self.healthy:
            raise RuntimeError('Policy rule pcr[7] violated')


@pytest.fixture
def svc() -> compute_host.ComputeHost:
    host = compute_host.ComputeHost(CONF, 'src')
    host.engine = _Engine()  # type: ignore[assignment]
    host.vault = _Vault()  # type: ignore[assignment]
    host._self = _SelfCheck()  # type: ignore[assignment]
    host._nova = _Nova()
    host._failure = None
    host._serving.set()
    return host


def test_unavailable_host_refuses_everything_with_its_reason() -> None:
    down = compute_host.ComputeHost.unavailable(CONF, 'dest',
                                                'no TPM at /dev/tpmrm0')
    for call in (lambda: down.commit('inst', 'mig'),
                 lambda: down.receive_key('inst', 'mig', 'src'),
                 lambda: down.handle_send_key('inst', 'mig', 'dest'),
                 lambda: down.holds_secret('inst'),
                 lambda: down.open_secret('inst')):
        with pytest.raises(errors.EngineUnavailable,
                           match='host dest .*no TPM at /dev/tpmrm0'):
            call()
    assert down.sealed_instances() == []
    assert down.expected_destination('inst') is None
    assert not down.attestation_fresh()
    down.stop()


def test_control_calls_wait_for_recovery(
        svc: compute_host.ComputeHost) -> None:
    svc._serving.clear()
    with pytest.raises(errors.EngineUnavailable, match='recovering'):
        svc.handle_attest('inst', 'dest')


def test_send_key_requires_the_attested_destination(
        svc: compute_host.ComputeHost) -> None:
    engine = ty.cast(_Engine, svc.engine)
    with pytest.raises(errors.UnexpectedDestination):
        svc.handle_send_key('inst', 'mig', 'dest')
    svc.handle_attest('inst', 'dest')
    with pytest.raises(errors.UnexpectedDestination, match='evil'):
        svc.handle_send_key('inst', 'mig', 'evil')
    svc.handle_send_key('inst', 'mig', 'dest')
    # The key moves only to the AK attested at the pre-check.
    assert engine.calls[-1] == ('migrate_key', 'dest', 'mig', 'inst',
                                b'ak-of-dest')


def test_attest_request_needs_a_nova_migration(
        svc: compute_host.ComputeHost) -> None:
    ty.cast(_Nova, svc._nova).moving = False
    with pytest.raises(errors.UnexpectedDestination):
        svc.handle_attest('inst', 'dest')
    assert svc.expected_destination('inst') is None


def test_attestation_record_expires(svc: compute_host.ComputeHost,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    svc.handle_attest('inst', 'dest')
    assert svc.expected_destination('inst') == 'dest'
    now = compute_host.time.monotonic()
    monkeypatch.setattr(compute_host.time, 'monotonic',
                        lambda: now + CONF.vtpm_migration.session_lifetime
                        + 1)
    assert svc.expected_destination('inst') is None


def test_commit_and_abort_forget_the_destination(
        svc: compute_host.ComputeHost) -> None:
    svc.handle_attest('inst', 'dest')
    svc.commit('inst', 'mig')
    assert svc.expected_destination('inst') is None
    svc.handle_attest('inst', 'dest')
    svc.abort('inst', 'mig')
    assert svc.expected_destination('inst') is None


def test_success_is_cached_failure_is_not(
        svc: compute_host.ComputeHost) -> None:
    check = ty.cast(_SelfCheck, svc._self)
    assert svc.attestation_fresh()
    assert svc.attestation_fresh()
    assert check.calls == 1
    svc._fresh_until = 0.0
    check.healthy = False
    assert not svc.attestation_fresh()
    assert not svc.attestation_fresh()
    assert check.calls == 3


def test_trait_follows_attestation() -> None:
    tree = provider_tree.ProviderTree()
    tree.new_root('node1', 'a0b8ef5e-0b8a-4b44-8f71-8e2b5e0a8b4c')
    traits.update(tree, 'node1', True)
    assert tree.has_traits('node1', [flavor_policy.ATTESTED_TRAIT])
    traits.update(tree, 'node1', False)
    assert not tree.has_traits('node1', [flavor_policy.ATTESTED_TRAIT])
