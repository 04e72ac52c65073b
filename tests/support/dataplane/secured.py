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


"""The protocol-secured key exchange for :func:`.migration.live_migrate`.

:class:`EngineKeyExchange` binds two hosts' protocol engines
(:class:`nova_vtpm_migration.protocol.engine.MigrationEngine`) to the data
plane's :class:`~.migration.KeyExchange` seam:

- phase 1: ``src_engine.attest_peer(dst)`` (mutual attestation; an
  established session is reused, as in production);
- phase 2: ``src_engine.migrate_key(instance, dst)`` wraps the instance's
  secret to the destination's certified binding key; the destination
  engine unwraps it in its host TPM and keeps it PENDING;
- the destination vTPM gets its key only from
  ``dst_engine.take_pending_key(instance, migration_id)``;
- ``src_engine.commit(migration_id)`` / ``src_engine.abort(...)``.

The engines talk through whatever transport they were built with; the
data plane never sees the secret on the source side.
"""

import typing as ty

from tests.support.dataplane import errors
from tests.support.dataplane import host as host_mod
from tests.support.dataplane import migration


class Engine(ty.Protocol):
    """The subset of ``MigrationEngine`` used here."""

    host: str

    def attest_peer(self, peer: str, fresh: bool = False) -> ty.Any:
        """Phase 1 with *peer*."""

    def migrate_key(self, instance_uuid: str, peer: str) -> ty.Any:
        """Phases 1-2 as source; returns a handle with ``migration_id``."""

    def commit(self, migration_id: str) -> ty.Any:
        """Commit as source."""

    def abort(self, migration_id: str, reason: str = 'requested') -> None:
        """Abort as source."""

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        """Destination: the unwrapped, pending secret."""


class EngineKeyExchange:
    """Phases 1-2 and the outcome through two protocol engines.

    :param src_engine: the source host's engine.
    :param dst_engine: the destination host's engine.
    :param fresh_attestation: force a new phase 1 instead of reusing an
        established session.
    """

    mode = 'secured'

    def __init__(self, src_engine: Engine, dst_engine: Engine,
                 fresh_attestation: bool = False) -> None:
        self.src_engine = src_engine
        self.dst_engine = dst_engine
        self.fresh_attestation = fresh_attestation
        self.migration_id: str | None = None

    @property
    def peer(self) -> str:
        """The destination's transport address."""
        return self.dst_engine.host

    def attest(self) -> None:
        """Phase 1 (mutual attestation)."""
        self.src_engine.attest_peer(self.peer, fresh=self.fresh_attestation)

    def transfer(self, instance_uuid: str) -> None:
        """Phase 2: the secret goes to the destination, wrapped."""
        handle = self.src_engine.migrate_key(instance_uuid, self.peer)
        self.migration_id = str(handle.migration_id)

    def take_pending_key(self, instance_uuid: str) -> bytes:
        """The destination's pending secret (unwrapped by its TPM)."""
        if self.migration_id is None:
            raise errors.DataplaneError(
                reason=f'no key was transferred for {instance_uuid}')
        return self.dst_engine.take_pending_key(instance_uuid,
                                                self.migration_id)

    def commit(self, instance_uuid: str) -> None:
        """The guest runs on the destination: commit the key move."""
        assert self.migration_id is not None
        self.src_engine.commit(self.migration_id)

    def abort(self, instance_uuid: str) -> None:
        """Abort the key move (nothing to do before phase 2 started)."""
        if self.migration_id is not None:
            self.src_engine.abort(self.migration_id,
                                  reason='data plane migration failed')


def live_migrate_secured(src_engine: Engine, dst_engine: Engine,
                         src: host_mod.SimHost, dst: host_mod.SimHost,
                         instance_uuid: str, *,
                         fresh_attestation: bool = False,
                         **kwargs: ty.Any) -> migration.MigrationResult:
    """Protocol-secured live migration of *instance_uuid* (see module doc).

    :param src_engine: the source host's protocol engine (its key store
        holds the instance's secret).
    :param dst_engine: the destination host's protocol engine.
    :param src: the source data-plane host.
    :param dst: the destination data-plane host.
    :param instance_uuid: the instance.
    :param fresh_attestation: run phase 1 even if a session exists.
    :param kwargs: see :func:`.migration.live_migrate`.
    """
    exchange = EngineKeyExchange(src_engine, dst_engine,
                                 fresh_attestation=fresh_attestation)
    return migration.live_migrate(exchange, src, dst, instance_uuid,
                                  **kwargs)
