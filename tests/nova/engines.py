"""The real protocol engine for every nova-compute of a functional test.

Each compute's engine is built by the product's
``nova_vtpm_migration.virt.engine_factory.assemble`` from that host's
swtpm TPM, state directory and the test trust policy, and talks to its
peers over Nova's (in-process) message bus, as in a deployment.
"""

import os
import typing as ty

from nova_vtpm_migration import service as host_service
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.virt import engine_factory


class Engines:
    """Builds and remembers each host's engine adapter."""

    def __init__(self, tpms: ty.Any) -> None:
        self.tpms = tpms
        self.adapters: dict[str, ty.Any] = {}

    def factory(self, host: str) -> ty.Any:
        adapter = engine_factory.assemble(
            host, self.tpms.tpm(host), self.tpms.policy,
            os.path.join(self.tpms.state_dir(host), host_service.ENGINE_DIR))
        self.adapters[host] = adapter
        return adapter

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
