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


"""Protocol-secured live migration with real swtpm host TPMs and QEMU.

Two hosts with distinct swtpm host TPMs (EK certificates from a private
CA) run protocol engines over an in-process transport; the destination
vTPM gets the instance secret only from its engine
(``take_pending_key``), unwrapped in its host TPM.
"""

import collections.abc
import os
import typing as ty

import pytest

from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional import swtpm_fixtures
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.functional.swtpm_fixtures import untrusted_ca  # noqa: F401
from tests.integration.dataplane import conftest
from tests.support import attestation
from tests.support import cluster
from tests.support import swtpm
from tests.support.dataplane import host as host_mod
from tests.support.dataplane import migration
from tests.support.dataplane import provision
from tests.support.dataplane import secured
from tests.support.dataplane import vtpm

_K = states.KeyState


@pytest.fixture(scope='module')
def host_tpms(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
              ) -> collections.abc.Iterator[list[swtpm_fixtures.SimHost]]:
    """Two host TPMs with distinct EKs, shared by the module."""
    with cluster.SimCluster(swtpm_ca, pcrs=swtpm_fixtures.PCRS,
                            label='dp') as sims:
        yield sims.start(('dp0', 'dp1'))


class Engines:
    """Protocol engines of the two hosts on a LocalTransport."""

    def __init__(self, tpms: list[swtpm_fixtures.SimHost],
                 policy: policy_mod.TrustPolicy,
                 src_policy: policy_mod.TrustPolicy | None = None,
                 dst_policy: policy_mod.TrustPolicy | None = None) -> None:
        self.sim = cluster.SimCluster(policy=policy, label='eng')
        self.dir = str(self.sim.root)
        self.transport = transport_mod.LocalTransport()
        self.src = self._open('src', tpms[0], src_policy or policy)
        self.dst = self._open('dst', tpms[1], dst_policy or policy)
        self.calls: list[str] = []

    def _open(self, name: str, sim: swtpm_fixtures.SimHost,
              policy: policy_mod.TrustPolicy) -> ty.Any:
        self.sim.add(name, sim)
        eng = self.sim.engine(name, self.transport, policy=policy,
                              session_lifetime=300)
        self.transport.register(name, eng.handle)
        return eng

    def close(self) -> None:
        self.sim.close()


@pytest.fixture
def trust_policy(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
                 ) -> policy_mod.TrustPolicy:
    return cluster.trust_policy(swtpm_ca, swtpm_fixtures.PCRS)


@pytest.fixture
def engines(host_tpms: list[swtpm_fixtures.SimHost],
            trust_policy: policy_mod.TrustPolicy
            ) -> collections.abc.Iterator[Engines]:
    e = Engines(host_tpms, trust_policy)
    yield e
    e.close()


def _start_protected_instance(engines: Engines, src: host_mod.SimHost,
                              inst_uuid: str) -> provision.VtpmContents:
    """The source's key store holds the secret; its vTPM uses it."""
    engines.src.keystore.add(inst_uuid, os.urandom(32))
    key = vtpm.VtpmKey(engines.src.keystore.read(inst_uuid))
    contents = src.provision_instance(inst_uuid, key)
    src.start_instance(inst_uuid)
    return contents


class SpyEngine:
    """Records what the destination engine hands out."""

    def __init__(self, real: ty.Any) -> None:
        self._real = real
        self.handed_out: list[bytes] = []

    def __getattr__(self, name: str) -> ty.Any:
        return getattr(self._real, name)

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        key = self._real.take_pending_key(instance_uuid, migration_id)
        self.handed_out.append(key)
        return ty.cast(bytes, key)


def test_secured_migration_key_only_from_protocol(hosts, instance_uuid,
                                                  engines):
    src, dst = hosts
    contents = _start_protected_instance(engines, src, instance_uuid)
    secret = engines.src.keystore.read(instance_uuid)
    spy = SpyEngine(engines.dst)

    result = secured.live_migrate_secured(engines.src, spy, src, dst,
                                          instance_uuid,
                                          fresh_attestation=True)

    assert result.committed, result.error
    assert result.mode == 'secured' and result.migration_id
    assert result.qemu.status == 'completed'
    for phase in (migration.PHASE_ATTEST, migration.PHASE_TRANSFER,
                  migration.PHASE_QEMU, migration.PHASE_COMMIT):
        assert result.phases_ms[phase] > 0
    # The destination vTPM's key came from its engine, once.
    assert spy.handed_out == [secret]
    assert dst.instance(instance_uuid).key.same_as(vtpm.VtpmKey(secret))
    # Custody moved: destroyed at the source, active at the destination.
    assert engines.src.keystore.state(instance_uuid) is _K.DESTROYED
    assert engines.dst.keystore.state(instance_uuid) is _K.ACTIVE
    assert not src.has_vtpm_state(instance_uuid)
    assert instance_uuid not in src.instances
    assert provision.compare(contents, dst.read_back(instance_uuid)) == []


@pytest.mark.parametrize('refuser', ['src', 'dst'])
def test_attestation_refused_starts_no_destination_vtpm(
        hosts, instance_uuid, host_tpms, trust_policy,
        untrusted_ca, refuser):  # noqa: F811
    src, dst = hosts
    # One side trusts another EK CA only: it refuses its peer.
    refusing = attestation.golden_policy(
        untrusted_ca.bundle_pem(), host_tpms[0].tpm.pcr_values())
    engines = Engines(host_tpms, trust_policy,
                      **{f'{refuser}_policy': refusing})
    try:
        contents = _start_protected_instance(engines, src, instance_uuid)

        result = secured.live_migrate_secured(engines.src, engines.dst,
                                              src, dst, instance_uuid,
                                              fresh_attestation=True)

        assert result.outcome == migration.ABORTED
        # Refused for the right reason (the source's own check, or the
        # destination's refusal reported back to it, which names the kind
        # of refusal only: the peer is not authenticated).
        assert ('EK certificate rejected' in result.error
                or '[EkCertificateError]' in result.error)
        assert result.qemu is None
        assert migration.PHASE_DEST_START not in result.phases_ms
        # No vTPM was ever started for the instance on the destination.
        assert not dst.has_vtpm_state(instance_uuid)
        assert not os.path.exists(os.path.join(dst.work_dir, 'vtpm'))
        assert conftest.processes_mentioning(dst.work_dir) == []
        assert engines.dst.keystore.state(instance_uuid) is None
        assert engines.src.keystore.state(instance_uuid) is _K.ACTIVE
        inst = src.instance(instance_uuid)
        assert inst.guest.is_running() and inst.vtpm.is_running()
        assert provision.compare(contents,
                                 src.read_back(instance_uuid)) == []
    finally:
        engines.close()


def test_secured_destination_killed_mid_migration(hosts, instance_uuid,
                                                  engines):
    src, dst = hosts
    contents = _start_protected_instance(engines, src, instance_uuid)

    def kill_destination(info):
        if info.get('status') == 'active' and instance_uuid in dst.instances:
            dst.instance(instance_uuid).kill()

    result = secured.live_migrate_secured(engines.src, engines.dst, src,
                                          dst, instance_uuid,
                                          max_bandwidth=100_000,
                                          on_poll=kill_destination)

    assert result.outcome == migration.ABORTED
    assert result.qemu is not None and result.qemu.status == 'failed'
    assert engines.src.keystore.state(instance_uuid) is _K.ACTIVE
    assert engines.dst.keystore.state(instance_uuid) in (None,
                                                         _K.DESTROYED)
    assert not dst.has_vtpm_state(instance_uuid)
    assert conftest.processes_mentioning(dst.work_dir) == []
    inst = src.instance(instance_uuid)
    assert inst.guest.is_running() and inst.vtpm.is_running()
    assert provision.compare(contents, src.read_back(instance_uuid)) == []


def test_source_guest_dying_mid_migration_is_reported_not_raised(
        hosts, instance_uuid, engines):
    """The source QEMU dies while the key is in flight: the migration
    aborts (the key is usable at the source again, nothing stays on the
    destination) and the result says the source guest is gone."""
    src, dst = hosts
    _start_protected_instance(engines, src, instance_uuid)

    def kill_source_guest(info):
        if info.get('status') == 'active':
            guest = src.instance(instance_uuid).guest
            if guest is not None and guest.is_alive():
                guest.kill()

    result = secured.live_migrate_secured(engines.src, engines.dst, src,
                                          dst, instance_uuid,
                                          max_bandwidth=100_000,
                                          on_poll=kill_source_guest)

    assert result.outcome == migration.ABORTED
    assert 'the source guest did not resume' in (result.error or '')
    assert engines.src.keystore.state(instance_uuid) is _K.ACTIVE
    assert engines.dst.keystore.state(instance_uuid) in (None,
                                                         _K.DESTROYED)
    assert not dst.has_vtpm_state(instance_uuid)
    # The source's vTPM state survives for a restart of the guest.
    assert src.has_vtpm_state(instance_uuid)
