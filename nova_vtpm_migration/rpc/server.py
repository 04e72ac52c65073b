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


"""The one RPC server of a compute host's vTPM migration service."""

import collections.abc
import typing as ty

from oslo_log import log as logging
import oslo_messaging as messaging

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.rpc import manager
from nova_vtpm_migration.rpc import serializer

LOG = logging.getLogger(__name__)
CONF = nvm_conf.CONF


def start_server(host: str,
                 protocol_handler: collections.abc.Callable[[bytes], bytes],
                 transport: ty.Any = None,
                 control_handler: manager.ControlHandler | None = None
                 ) -> ty.Any:
    """Start this host's RPC server of the vTPM migration API.

    :param host: this host's name (the RPC server name peers call).
    :param protocol_handler: the engine's ``handle`` method.
    :param transport: an oslo.messaging RPC transport (default: from
        ``[DEFAULT] transport_url``).
    :param control_handler: serves the control calls (the compute host
        object; ``None`` for a protocol-only server).
    :returns: the started ``oslo_messaging`` RPC server; call ``stop()``
        and ``wait()`` on it.
    """
    if transport is None:
        transport = messaging.get_rpc_transport(CONF)
    target = messaging.Target(topic=CONF.vtpm_migration.rpc_topic,
                              server=host)
    server = messaging.get_rpc_server(
        transport, target,
        [manager.VtpmMigrationManager(protocol_handler, control_handler)],
        executor='threading',
        serializer=serializer.RpcSerializer(),
        access_policy=messaging.DefaultRPCAccessPolicy)
    server.start()
    LOG.info('vTPM migration RPC server of %s listening on topic %s', host,
             CONF.vtpm_migration.rpc_topic)
    return server
