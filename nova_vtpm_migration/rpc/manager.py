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


"""Server side of the host-to-host vTPM migration RPC API."""

import collections.abc

import oslo_messaging as messaging

from nova_vtpm_migration.rpc import rpcapi


class VtpmMigrationManager:
    """RPC endpoint that hands every protocol message to the engine.

    :param handler: the engine's transport entry point
        (:meth:`~nova_vtpm_migration.protocol.engine.MigrationEngine.handle`),
        which never raises and always returns reply bytes.
    """

    target = messaging.Target(namespace=rpcapi.NAMESPACE, version='1.0')

    def __init__(self, handler: collections.abc.Callable[[bytes], bytes]
                 ) -> None:
        self._handler = handler

    def exchange(self, ctxt: object, request: bytes) -> bytes:
        """Process one protocol message (RPC method, version 1.0)."""
        return self._handler(request)
