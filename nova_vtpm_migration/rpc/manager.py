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


"""Server side of the vTPM migration RPC API."""

import collections.abc
import typing as ty

import oslo_messaging as messaging

from nova_vtpm_migration.rpc import rpcapi


class ControlHandler(ty.Protocol):
    """What serves the control calls (the compute host object)."""

    def handle_attest(self, instance_uuid: str,
                      destination: str) -> dict[str, ty.Any]:
        """Run phase 1 with *destination* for the instance."""
        ...

    def handle_send_key(self, instance_uuid: str, migration_uuid: str,
                        destination: str) -> dict[str, ty.Any]:
        """Run phase 2 towards *destination*."""
        ...


class VtpmMigrationManager:
    """The RPC endpoint: protocol messages go to the engine, control calls
    to the compute host object.

    :param protocol_handler: the engine's transport entry point
        (:meth:`~nova_vtpm_migration.protocol.engine.MigrationEngine.handle`),
        which never raises and always returns reply bytes.
    :param control_handler: serves the control calls (``None``: this
        server only carries protocol messages, as in protocol tests).
    """

    target = messaging.Target(namespace=rpcapi.NAMESPACE,
                              version=rpcapi.VERSION)

    def __init__(self, protocol_handler: collections.abc.Callable[
                     [bytes], bytes],
                 control_handler: ControlHandler | None = None) -> None:
        self._handler = protocol_handler
        self._control = control_handler

    def _controls(self) -> ControlHandler:
        if self._control is None:
            raise messaging.NoSuchMethod('control calls')
        return self._control

    def exchange(self, ctxt: object, request: bytes) -> bytes:
        """Process one protocol message (RPC method, version 1.0)."""
        return self._handler(request)

    def attest_destination(self, ctxt: object, instance_uuid: str,
                           destination: str) -> dict[str, ty.Any]:
        """Run phase 1 with the calling destination (version 1.1)."""
        return self._controls().handle_attest(instance_uuid, destination)

    def send_key(self, ctxt: object, instance_uuid: str,
                 migration_uuid: str,
                 destination: str) -> dict[str, ty.Any]:
        """Run phase 2 towards the calling destination (version 1.1)."""
        return self._controls().handle_send_key(instance_uuid,
                                                migration_uuid, destination)
