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

"""The real host object for every nova-compute of a functional test.

Each compute's :class:`~nova_vtpm_migration.compute.host.ComputeHost` is
built by the product's ``ComputeHost.from_parts`` from that host's swtpm
TPM, state directory and the test trust policy
(:meth:`tests.support.cluster.SimCluster.compute_host`), and talks to its
peers over Nova's (in-process) message bus, as in a deployment. Tests install
:meth:`Engines.factory` in place of ``ComputeHost.open``, which reads one
host's ``[vtpm_migration]`` options.
"""

import typing as ty

from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.protocol import states


class Engines:
    """Builds and remembers each host's engine adapter."""

    def __init__(self, tpms: ty.Any) -> None:
        self.tpms = tpms
        self.adapters: dict[str, ty.Any] = {}

    def factory(self, cls: type[compute_host.ComputeHost], conf: ty.Any,
                host: str, transport: ty.Any = None
                ) -> compute_host.ComputeHost:
        """``ComputeHost.open`` (a classmethod) for several computes in
        one process."""
        built = self.tpms.cluster.compute_host(conf, host, transport,
                                               cls=cls)
        self.adapters[host] = built
        return built

    def _engine(self, host: str) -> ty.Any:
        adapter = self.adapters.get(host)
        return None if adapter is None else adapter.engine

    def rows(self, host: str) -> dict[str, tuple[str, str]]:
        engine = self._engine(host)
        if engine is None:
            return {}
        return {row.migration_id: (str(row.role), row.state)
                for row in engine.journal.list_migrations()}

    def key_states(self, host: str) -> dict[str, str]:
        engine = self._engine(host)
        if engine is None:
            return {}
        return {inst: str(state)
                for inst, state in engine.keystore.instances().items()
                if state is not states.KeyState.DESTROYED}

    RECORD_KINDS = ('manifest', 'dest_evidence', 'receipt_installed',
                    'receipt_committed', 'record')

    def records(self, host: str, migration_id: str) -> set[str]:
        """The kinds of signed records the host keeps for a migration."""
        engine = self._engine(host)
        if engine is None:
            return set()
        return {kind for kind in self.RECORD_KINDS
                if engine.journal.get_record(migration_id, kind)}
