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


"""Client side of the host-to-host vTPM migration RPC API."""

import typing as ty

import oslo_messaging as messaging

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.rpc import serializer

CONF = nvm_conf.CONF

#: RPC namespace of the API (separate from every nova API).
NAMESPACE = 'vtpm_migration'


class VtpmMigrationAPI:
    """Client side of the host-to-host vTPM migration RPC API.

    API version history:

    * 1.0 - Initial version: ``exchange(request)`` carries one protocol
      message (canonical bytes, see
      :mod:`nova_vtpm_migration.protocol.messages`) to a host and returns
      its reply. New protocol messages are versioned inside the protocol
      (its ``v`` field), so they do not need a new RPC version.

    :param transport: an oslo.messaging RPC transport (default: the one
        of ``[DEFAULT] transport_url``).
    """

    #: Release names -> highest RPC version of that release, usable as
    #: ``[vtpm_migration] rpc_version_cap``.
    VERSION_ALIASES = {
        '1.0.0': '1.0',
    }

    def __init__(self, transport: ty.Any = None) -> None:
        if transport is None:
            transport = messaging.get_rpc_transport(CONF)
        target = messaging.Target(topic=CONF.vtpm_migration.rpc_topic,
                                  namespace=NAMESPACE, version='1.0')
        cap = CONF.vtpm_migration.rpc_version_cap
        version_cap = self.VERSION_ALIASES.get(cap, cap) if cap else None
        self.client = messaging.get_rpc_client(
            transport, target, version_cap=version_cap,
            serializer=serializer.MessageSerializer())

    def exchange(self, host: str, request: bytes) -> bytes:
        """Send one protocol message to ``host`` and return the reply.

        :param host: the destination host (RPC server name).
        :param request: the encoded protocol message.
        :raises oslo_messaging.MessagingTimeout: no reply within
            ``[vtpm_migration] rpc_timeout``.
        """
        cctxt = self.client.prepare(server=host, version='1.0',
                                    timeout=CONF.vtpm_migration.rpc_timeout)
        reply: bytes = cctxt.call({}, 'exchange', request=request)
        return reply
