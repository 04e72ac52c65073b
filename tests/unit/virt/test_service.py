"""The per-host facade: what the source accepts, and the trait cache."""

import typing as ty

from nova.compute import provider_tree
from oslo_config import cfg
import pytest

from nova_vtpm_migration import conf as vtpm_conf  # noqa: F401
from nova_vtpm_migration.virt import errors
from nova_vtpm_migration.virt import flavor_policy
from nova_vtpm_migration.virt import rpcapi
from nova_vtpm_migration.virt import service
from nova_vtpm_migration.virt.libvirt import traits

CONF = cfg.CONF


class _Engine:
    def __init__(self) -> None:
        self.calls: list[tuple[ty.Any, ...]] = []
        self.healthy = True

    def self_check(self) -> None:
        self.calls.append(('self_check',))
        if not self.healthy:
            raise RuntimeError('Policy rule pcr[7] violated')

    def attest_peer(self, peer: str, policy: str | None) -> dict[str, ty.Any]:
        self.calls.append(('attest_peer', peer, policy))
        return {'peer': peer}

    def migrate_key(self, peer: str, migration_id: str, instance_uuid: str,
                    secret: bytes) -> dict[str, ty.Any]:
        self.calls.append(('migrate_key', peer, migration_id, instance_uuid))
        return {}

    def abort(self, migration_id: str) -> None:
        self.calls.append(('abort', migration_id))

    def commit(self, migration_id: str) -> None:
        self.calls.append(('commit', migration_id))


@pytest.fixture
def svc(monkeypatch: pytest.MonkeyPatch) -> service.VtpmMigrationService:
    monkeypatch.setattr(rpcapi, 'ComputeAPI', lambda: None)

    def reader(ctx: ty.Any, inst: str, mid: str, dest: str) -> bytes:
        return b'secret'

    return service.VtpmMigrationService('src', _Engine(),  # type: ignore
                                        reader)


def test_send_key_requires_the_attested_destination(
        svc: service.VtpmMigrationService) -> None:
    engine = ty.cast(_Engine, svc.engine)
    with pytest.raises(errors.UnexpectedDestination):
        svc.handle_send_key(None, 'inst', 'mig', 'dest')
    svc.handle_attest(None, 'inst', 'dest', None)
    with pytest.raises(errors.UnexpectedDestination, match='evil'):
        svc.handle_send_key(None, 'inst', 'mig', 'evil')
    svc.handle_send_key(None, 'inst', 'mig', 'dest')
    assert engine.calls[-1] == ('migrate_key', 'dest', 'mig', 'inst')


def test_attestation_record_expires(svc: service.VtpmMigrationService,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    svc.handle_attest(None, 'inst', 'dest', 'gold')
    assert svc.expected_destination('inst') == 'dest'
    now = service.time.monotonic()
    monkeypatch.setattr(service.time, 'monotonic',
                        lambda: now + CONF.vtpm_migration.session_lifetime
                        + 1)
    assert svc.expected_destination('inst') is None


def test_commit_and_abort_forget_the_destination(
        svc: service.VtpmMigrationService) -> None:
    svc.handle_attest(None, 'inst', 'dest', None)
    svc.commit('inst', 'mig')
    assert svc.expected_destination('inst') is None
    svc.handle_attest(None, 'inst', 'dest', None)
    svc.abort('inst', 'mig')
    assert svc.expected_destination('inst') is None


def test_success_is_cached_failure_is_not(
        svc: service.VtpmMigrationService) -> None:
    engine = ty.cast(_Engine, svc.engine)
    assert svc.attestation_fresh()
    assert svc.attestation_fresh()
    assert engine.calls.count(('self_check',)) == 1
    svc._fresh_until = 0.0
    engine.healthy = False
    assert not svc.attestation_fresh()
    assert not svc.attestation_fresh()
    assert engine.calls.count(('self_check',)) == 3


def test_trait_follows_attestation() -> None:
    tree = provider_tree.ProviderTree()
    tree.new_root('node1', 'a0b8ef5e-0b8a-4b44-8f71-8e2b5e0a8b4c')
    traits.update(tree, 'node1', True)
    assert tree.has_traits('node1', [flavor_policy.ATTESTED_TRAIT])
    traits.update(tree, 'node1', False)
    assert not tree.has_traits('node1', [flavor_policy.ATTESTED_TRAIT])
