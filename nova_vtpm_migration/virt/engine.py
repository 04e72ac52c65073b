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


"""What the Nova integration needs from a host's protocol engine.

:class:`Engine` is the narrow interface the facade
(:mod:`nova_vtpm_migration.virt.service`) is written against;
:mod:`nova_vtpm_migration.virt.engine_factory` adapts the protocol layer's
``MigrationEngine`` to it.
"""

import typing as ty


class Engine(ty.Protocol):
    """What the facade needs from the host's protocol engine."""

    def start(self) -> None:
        """Start serving protocol requests from peers."""

    def self_check(self) -> None:
        """Raise unless this host's own evidence passes its own policy."""

    def attest_peer(self, peer: str, policy: str | None) -> dict[str, ty.Any]:
        """Run phase 1 with *peer* as the source; return a summary."""

    def migrate_key(self, peer: str, migration_id: str, instance_uuid: str,
                    secret: bytes | None) -> dict[str, ty.Any]:
        """Run phase 2 towards *peer* as the source; return the receipt.

        :param secret: the secret read from libvirt, or ``None`` to move
            the vault's envelope.
        """

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        """Destination: unwrap the received, still pending secret and keep
        its envelope in the vault."""

    def holds_secret(self, instance_uuid: str) -> bool:
        """Return whether the vault holds the instance's secret."""

    def adopt_secret(self, instance_uuid: str, secret: bytes) -> None:
        """Seal a secret Nova created (or had in libvirt) in the vault."""

    def open_secret(self, instance_uuid: str) -> bytes:
        """Return the vault's secret of an instance whose key is ACTIVE."""

    def forget_secret(self, instance_uuid: str) -> None:
        """Destroy the vault's copy (the instance left or was deleted)."""

    def sealed_instances(self) -> list[str]:
        """The instances whose secrets the vault holds."""

    def commit(self, migration_id: str) -> None:
        """Source: commit (destroy the local copy, activate the peer's)."""

    def abort(self, migration_id: str) -> None:
        """Abort; idempotent, also for unknown migrations."""

    def settle(self, oracle: ty.Callable[[str, str], str]) -> None:
        """Finish what a running host safely can (periodically).

        :param oracle: like :meth:`recover`'s, but answering ``commit`` or
            ``abort`` only once the hand-over is known to be over.
        """

    def recover(self, oracle: ty.Callable[[str, str], str]) -> None:
        """Resolve in-doubt migrations after a restart.

        :param oracle: ``oracle(migration_id, instance_uuid)`` returns
            ``commit``, ``abort`` or ``unknown`` (leave it in doubt).
        """

    def close(self) -> None:
        """Release the TPM and other resources."""
