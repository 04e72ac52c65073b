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



"""In-process migration engines on real swtpm TPMs talking over a real
RabbitMQ broker through the oslo.messaging binding
(:mod:`nova_vtpm_migration.rpc`); the hosts are built by
:mod:`tests.support.cluster`."""

import collections.abc
import dataclasses
import os
import pathlib
import shutil
import typing as ty

from oslo_config import cfg

from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import context
from tests.integration.reliability import procs
from tests.support import cluster
from tests.support import faults

Hook = collections.abc.Callable[[str, str], None]


class HookTransport(transport_mod.Transport):
    """Runs ``hook(peer, message type)`` before a request leaves."""

    def __init__(self, inner: transport_mod.Transport,
                 injector: faults.Injector) -> None:
        self.inner = inner
        self.injector = injector
        self.hooks: list[Hook] = []

    def call(self, peer: str, request: bytes) -> bytes:
        msg_type = self.injector.message_type(request)
        for hook in list(self.hooks):
            hook(peer, msg_type)
        return self.inner.call(peer, request)


@dataclasses.dataclass
class Node:
    name: str
    ctx: context.TpmContext
    engine: engine_mod.MigrationEngine
    server: ty.Any
    hooks: HookTransport
    state_dir: pathlib.Path


class RabbitCluster:
    """One engine per TPM host, each with its RPC server on the broker.

    :param tpms: host name -> TPM.
    :param policy_doc: the trust policy document.
    :param url: the broker's ``rabbit://`` transport URL.
    """

    def __init__(self, tpms: dict[str, procs.TpmHost],
                 policy_doc: dict[str, ty.Any], url: str,
                 rpc_timeout: int = 30) -> None:
        self.sim = cluster.SimCluster(pcrs=procs.PCRS, label='rabbit',
                                      lock_timeout=300, policy=policy_doc)
        self.dir = self.sim.root
        cfg.CONF.set_override('rpc_timeout', rpc_timeout,
                              group='vtpm_migration')
        cfg.CONF.set_override('rpc_topic', f'vtpm-rel-{os.getpid()}',
                              group='vtpm_migration')
        # Oslo.messaging 18 registers its options on the
        # global CONF only.
        self.transport = self.sim.messaging(url)
        self.policy = self.sim.policy
        #: instance -> host its guest runs on (the outcome oracle).
        self.guest: dict[str, str] = {}
        self.nodes: dict[str, Node] = {}
        for name, tpm_host in tpms.items():
            self.nodes[name] = self._open(name, tpm_host)

    def _open(self, name: str, tpm_host: procs.TpmHost) -> Node:
        # Its own context: many migrations queue for the TPM lock.
        sim = self.sim.add(name, tpm_host, reopen=True)
        injector = faults.Injector(name, None)
        hooks = HookTransport(self.sim.rpc_peers(self.transport), injector)
        engine = self.sim.engine(name, hooks, session_lifetime=600,
                                 outcome_oracle=self.oracle)
        injector.install(engine)  # traces message types; never fires
        server = self.sim.serve(name, engine, self.transport)
        return Node(name, sim.ctx, engine, server, hooks, self.dir / name)

    def oracle(self, row: ty.Any) -> str:
        """Commit iff the guest runs on the migration's destination."""
        return ('commit' if self.guest.get(row.instance_uuid) == row.peer
                else 'abort')

    def migrate(self, src: str, dst: str, instance: str) -> None:
        """Key transfer, guest hand-over, commit (the Nova order)."""
        engine = self.nodes[src].engine
        handle = engine.migrate_key(instance, dst)
        self.guest[instance] = dst
        engine.commit(handle.migration_id)

    def close(self) -> None:
        self.sim.close()
        cfg.CONF.clear_override('rpc_timeout', group='vtpm_migration')
        cfg.CONF.clear_override('rpc_topic', group='vtpm_migration')

    def provision(self, name: str, secret: bytes | None = None
                  ) -> tuple[str, bytes]:
        inst, _mid, generated = procs.new_ids()
        secret = secret or generated
        self.nodes[name].engine.keystore.add(inst, secret)
        return inst, secret

    def recover_all(self, rounds: int = 3) -> None:
        """Run recovery on every host until nothing is in doubt."""
        for _ in range(rounds):
            for node in self.nodes.values():
                node.engine.recover()
            if not self.in_doubt():
                return

    def in_doubt(self) -> list[str]:
        return [f'{n.name}:{r.role.value}:{r.state}'
                for n in self.nodes.values()
                for r in n.engine.journal.list_migrations()
                if r.state not in procs.FINAL]

    def check(self, instance: str, secret: bytes) -> tuple[str, list[str]]:
        """The invariant for one instance: (holder, problems)."""
        problems = []
        active = []
        for node in self.nodes.values():
            state = node.engine.keystore.state(instance)
            if state is states.KeyState.ACTIVE:
                active.append(node.name)
                try:
                    if node.engine.keystore.read(instance) != secret:
                        problems.append(f'{node.name}: wrong key')
                except errors.ProtocolError as exc:
                    problems.append(f'{node.name}: unusable key: {exc}')
            elif state not in (None, states.KeyState.DESTROYED):
                problems.append(f'{node.name}: key left {state.value}')
        if len(active) != 1:
            problems.append(f'{len(active)} usable keys: {active}')
        return (active[0] if active else ''), problems

    def loaded_handles(self) -> dict[str, int]:
        return {n.name: len(context.loaded_handles(n.ctx))
                for n in self.nodes.values()}

    def leaks(self, secret: bytes) -> list[str]:
        return procs.plaintext_leaks(self.dir, secret)


def rss_kb() -> int:
    """Resident set size of this process."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


__all__ = ['HookTransport', 'Node', 'RabbitCluster', 'rss_kb', 'shutil']
