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


"""The protocol transport on the vTPM migration RPC API."""

import oslo_messaging as messaging

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.rpc import rpcapi

CONF = nvm_conf.CONF


class RpcTransport(transport_mod.Transport):
    """:class:`~nova_vtpm_migration.protocol.transport.Transport` over
    the vTPM migration RPC API (peers are RPC server names, i.e. hosts).
    """

    def __init__(self, api: rpcapi.VtpmMigrationAPI | None = None) -> None:
        self.api = api or rpcapi.VtpmMigrationAPI()

    def call(self, peer: str, request: bytes) -> bytes:
        """Call the peer host over RPC; failures become ``TransportError``."""
        try:
            return self.api.exchange(peer, request)
        except messaging.MessagingTimeout:
            raise errors.TransportError(
                peer=peer, reason=f'no reply within '
                                  f'{CONF.vtpm_migration.rpc_timeout}s'
            ) from None
        except messaging.MessagingException as exc:
            raise errors.TransportError(peer=peer,
                                        reason=type(exc).__name__) from None
