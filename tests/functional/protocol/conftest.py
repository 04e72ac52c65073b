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


"""Fixtures of the protocol tests: real swtpm hosts, engines on them and
an in-process transport with a Dolev-Yao adversary hook."""

import collections.abc
import dataclasses
import os
import pathlib
import typing as ty
import uuid

import pytest

from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional import swtpm_fixtures
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.functional.swtpm_fixtures import swtpm_factory  # noqa: F401
from tests.functional.swtpm_fixtures import untrusted_ca  # noqa: F401
from tests.support import attestation
from tests.support import cluster as cluster_mod
from tests.support import swtpm

os.environ.setdefault('TSS2_LOG', 'all+NONE')


class SimulatedCrash(BaseException):
    """Raised by a test adversary to model a process dying mid-protocol.

    A ``BaseException`` so that the engine's failure handling (which
    catches ``Exception``) does not run, as if the process was gone.
    """


@dataclasses.dataclass
class Node:
    """One simulated host: swtpm + HostTpm + engine on a state dir."""

    name: str
    sim: swtpm_fixtures.SimHost
    state_dir: str
    cluster: 'Cluster'
    engine: engine_mod.MigrationEngine = dataclasses.field(init=False)
    policy: policy_mod.TrustPolicy | None = None
    #: Replaces the host TPM object (compromised host software).
    tpm: ty.Any = None
    oracle: engine_mod.OutcomeOracle = engine_mod.presumed_abort
    #: The AK certificate the host presents (default: its own, from the
    #: test attestation CA).
    ak_certificate: bytes | None = None

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        self.engine = self.cluster.sim.engine(
            self.name, self.cluster.transport, tpm=self.tpm or self.sim.tpm,
            policy=self.policy or self.cluster.policy,
            state_dir=self.state_dir,
            session_lifetime=self.cluster.session_lifetime,
            outcome_oracle=self.oracle,
            ak_certificate=(self.ak_certificate
                            or self.cluster.sim.ak_certificate(self.name)))
        self.cluster.transport.register(self.name, self.engine.handle)

    def crash(self) -> None:
        """Drop the engine (sessions, memory) as a killed process would."""
        self.cluster.transport.unregister(self.name)
        self.engine.close()

    def restart(self) -> None:
        self.crash()
        self.open()


class Cluster:
    """Engines on real swtpm hosts connected by a LocalTransport (the
    in-process layer over :class:`tests.support.cluster.SimCluster`)."""

    def __init__(self, policy: policy_mod.TrustPolicy,
                 session_lifetime: float = 300) -> None:
        self.sim = cluster_mod.SimCluster(policy=policy, label='cluster')
        self.policy = policy
        self.session_lifetime = session_lifetime
        self.transport = transport_mod.LocalTransport()
        self.nodes: dict[str, Node] = {}
        self.dir = str(self.sim.root)

    def add(self, name: str, sim: swtpm_fixtures.SimHost,
            **kwargs: ty.Any) -> Node:
        self.sim.add(name, sim)
        node = Node(name, sim, self.sim.state_dir(name), self, **kwargs)
        self.nodes[name] = node
        return node

    def close(self) -> None:
        for node in self.nodes.values():
            node.crash()
        self.sim.close()


class RogueTpm:
    """A real host TPM driven by compromised host software: the given
    methods are replaced, everything else goes to the real TPM."""

    def __init__(self, real: ty.Any, **overrides: ty.Any) -> None:
        self._real = real
        self._overrides = overrides

    def __getattr__(self, name: str) -> ty.Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._real, name)


def extend_pcr(sim: swtpm_fixtures.SimHost, index: int,
               data: bytes) -> None:
    """Extend a sha256 PCR of a running host through its own context."""
    sim.extend_pcr(index, data)


def policy_for(ca: swtpm.SwtpmCA,
               sim: swtpm_fixtures.SimHost) -> policy_mod.TrustPolicy:
    """A policy trusting ``ca`` with ``sim``'s current PCRs as golden."""
    return attestation.golden_policy(ca.bundle_pem(),
                                              sim.tpm.pcr_values())


@pytest.fixture(scope='session')
def hosts(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
          ) -> collections.abc.Iterator[dict[str, swtpm_fixtures.SimHost]]:
    """Three hosts with distinct EKs (src, dst, other), shared by all
    protocol tests; tests must not change their PCRs."""
    names = ('src', 'dst', 'other')
    with cluster_mod.SimCluster(swtpm_ca, pcrs=swtpm_fixtures.PCRS,
                                label='proto') as sims:
        yield dict(zip(names, sims.start(names), strict=True))


@pytest.fixture(scope='session')
def trust_policy(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
                 ) -> policy_mod.TrustPolicy:
    """Trusts ``swtpm_ca`` with the PCRs of fresh hosts as golden."""
    return cluster_mod.trust_policy(swtpm_ca, swtpm_fixtures.PCRS)


@pytest.fixture
def cluster(hosts: dict[str, swtpm_fixtures.SimHost],
            trust_policy: policy_mod.TrustPolicy
            ) -> collections.abc.Iterator[Cluster]:
    """Fresh engines (new journals and key stores) on the shared hosts."""
    c = Cluster(trust_policy)
    for name, sim in hosts.items():
        c.add(name, sim)
    yield c
    c.close()


def new_instance(node: Node, secret: bytes | None = None
                 ) -> tuple[str, bytes]:
    """Provision a random instance key ACTIVE on ``node``."""
    inst = str(uuid.uuid4())
    secret = secret if secret is not None else os.urandom(32)
    node.engine.keystore.add(inst, secret)
    return inst, secret


def states_mod() -> ty.Any:
    from nova_vtpm_migration.protocol import states
    return states


def verify_mod() -> ty.Any:
    from nova_vtpm_migration.tpm import verify
    return verify


def edit(raw: bytes, msg_type: str, **changes: ty.Any) -> bytes:
    """Re-encode a message of ``msg_type`` with body fields changed
    (other messages are returned unchanged)."""
    from nova_vtpm_migration.protocol import messages
    msg = messages.decode(raw)
    if msg.type != msg_type:
        return raw
    body = dict(msg.body)
    for name, value in changes.items():
        body[name] = value(body[name]) if callable(value) else value
    return messages.encode(msg.type, body)


def msg_type(raw: bytes) -> str:
    """The type of a (valid) message, or '?'."""
    from nova_vtpm_migration.protocol import messages
    try:
        return messages.decode(raw).type
    except Exception:
        return '?'


def inner_type(raw: bytes) -> str:
    """The inner type of a sealed message (its payload is plain)."""
    from nova_vtpm_migration.protocol import messages
    try:
        msg = messages.decode(raw)
        if msg.type != 'sealed':
            return msg.type
        return messages.decode(msg.body['payload']).type
    except Exception:
        return '?'


def usable_keys(cluster: Cluster, instance: str) -> dict[str, str]:
    """Host -> key state of ``instance``, for hosts that have one."""
    out = {}
    for name, node in cluster.nodes.items():
        state = node.engine.keystore.state(instance)
        if state is not None:
            out[name] = state.value
    return out


__all__ = ['Cluster', 'Node', 'RogueTpm', 'SimulatedCrash', 'extend_pcr',
           'edit', 'inner_type', 'msg_type', 'new_instance', 'pathlib',
           'policy_for', 'usable_keys']
