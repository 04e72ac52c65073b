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


"""Client side of the vTPM migration RPC API."""

import typing as ty

import oslo_messaging as messaging

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.rpc import serializer

CONF = nvm_conf.CONF

NAMESPACE = 'vtpm_migration'
#: The newest API version this code sends and serves.
VERSION = '1.1'
#: The version that added the control calls.
CONTROL_VERSION = '1.1'


class VtpmMigrationAPI:
    """Client side of the vTPM migration RPC API.

    API version history:

    * 1.0 - Initial version: ``exchange(request)`` carries one protocol
      message (canonical bytes, see
      :mod:`nova_vtpm_migration.protocol.messages`) to a host and returns
      its reply. New protocol messages are versioned inside the protocol
      (its ``v`` field), so they do not need a new RPC version.
    * 1.1 - ``attest_destination`` and ``send_key``: the control calls a
      migration's destination makes to its source. They were a separate
      API before (namespace ``vtpm_migration_compute`` on topic
      ``<rpc_topic>.compute``, with a caller-chosen trust policy and an
      unauthenticated ``abort_migration``, sent with Nova's request
      context). Both are harmless by construction: the source checks
      Nova's record and the flavor itself, with its own context, and
      moves a key only to the TPM certified for Nova's destination. A
      destination's abort request is a sealed protocol message
      (``rollback``) now.

    :param transport: an oslo.messaging RPC transport (default: the one
        of ``[DEFAULT] transport_url``).
    """

    #: Release -> highest RPC version that release sends and serves,
    #: usable as ``[upgrade_levels] vtpm_migration``.
    VERSION_ALIASES: ty.ClassVar[dict[str, str]] = {
        '1.0.0': '1.0',
        '1.1.0': '1.1',
    }

    def __init__(self, transport: ty.Any = None) -> None:
        if transport is None:
            transport = messaging.get_rpc_transport(CONF)
        target = messaging.Target(topic=CONF.vtpm_migration.rpc_topic,
                                  namespace=NAMESPACE, version='1.0')
        cap = CONF.upgrade_levels.vtpm_migration
        version_cap = self.VERSION_ALIASES.get(cap, cap) if cap else None
        self.client = messaging.get_rpc_client(
            transport, target, version_cap=version_cap,
            serializer=serializer.RpcSerializer())

    def _call(self, host: str, version: str, method: str,
              **kwargs: ty.Any) -> ty.Any:
        cctxt = self.client.prepare(server=host, version=version,
                                    timeout=CONF.vtpm_migration.rpc_timeout)
        return cctxt.call({}, method, **kwargs)

    def exchange(self, host: str, request: bytes) -> bytes:
        """Send one protocol message to ``host`` and return the reply.

        :param host: the destination host (RPC server name).
        :param request: the encoded protocol message.
        :raises oslo_messaging.MessagingTimeout: no reply within
            ``[vtpm_migration] rpc_timeout``.
        """
        reply: bytes = self._call(host, '1.0', 'exchange', request=request)
        return reply

    def attest_destination(self, source: str, instance_uuid: str,
                           destination: str) -> dict[str, ty.Any]:
        """Ask *source* to run phase 1 with *destination* (the caller).

        :returns: a public summary of the attested session.
        :raises oslo_messaging.RPCVersionCapError: capped below 1.1.
        """
        return ty.cast(dict[str, ty.Any], self._call(
            source, CONTROL_VERSION, 'attest_destination',
            instance_uuid=instance_uuid, destination=destination))

    def send_key(self, source: str, instance_uuid: str, migration_uuid: str,
                 destination: str) -> dict[str, ty.Any]:
        """Ask *source* to run phase 2 towards *destination* (the caller).

        :returns: a public summary of the transfer.
        :raises oslo_messaging.RPCVersionCapError: capped below 1.1.
        """
        return ty.cast(dict[str, ty.Any], self._call(
            source, CONTROL_VERSION, 'send_key',
            instance_uuid=instance_uuid, migration_uuid=migration_uuid,
            destination=destination))
