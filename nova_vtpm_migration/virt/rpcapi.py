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

"""Compute-to-compute RPC of the Nova integration (destination pulls).

Nova gives the *source* driver no hook between its live-migration
pre-check (``check_can_live_migrate_source``, where it does not yet know
the destination) and the destination's ``pre_live_migration``. The
destination therefore drives both phases: it asks the source's plugin to
attest it (phase 1, from its own pre-check) and to move the wrapped vTPM
secret to it (phase 2, from ``pre_live_migration``). The source always
runs the protocol itself, as its coordinator; these calls only trigger it
and carry no secret.

The client rides on Nova's own transport (``nova.rpc``), on the topic
``[vtpm_migration] rpc_topic`` + ``.compute``, server = the compute host
name.
"""

import typing as ty

from nova import rpc
import oslo_messaging as messaging

from nova_vtpm_migration import conf
from nova_vtpm_migration.virt import errors

CONF = conf.CONF

NAMESPACE = 'vtpm_migration_compute'
TOPIC_SUFFIX = '.compute'


def topic() -> str:
    """Return the topic of the compute-to-compute plugin RPC."""
    return str(CONF.vtpm_migration.rpc_topic) + TOPIC_SUFFIX


class ComputeAPI:
    """Client side of the plugin's compute-to-compute RPC API.

    API version history:

        1.0 - Initial version: attest_destination, send_key,
              abort_migration.
    """

    VERSION_ALIASES: ty.ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        target = messaging.Target(topic=topic(), namespace=NAMESPACE,
                                  version='1.0')
        self.client = rpc.get_client(target)

    def _call(self, context: ty.Any, host: str, method: str,
              **kwargs: ty.Any) -> ty.Any:
        timeout = CONF.vtpm_migration.rpc_timeout
        cctxt = self.client.prepare(server=host, timeout=timeout)
        try:
            return cctxt.call(context, method, **kwargs)
        except messaging.MessagingTimeout as exc:
            raise errors.PeerWithoutPlugin(
                peer=host, topic=topic(), timeout=timeout) from exc
        except messaging.RemoteError as exc:
            # NOTE(vtpm): exception classes outside nova's
            # allowed_remote_exmods arrive as RemoteError; keep type and text.
            raise errors.VirtIntegrationError(
                reason=f'{exc.exc_type}: {exc.value}') from exc
        except Exception as exc:
            name = type(exc).__name__.removesuffix('_Remote')
            raise errors.VirtIntegrationError(
                reason=f'{name}: {exc}') from exc

    def attest_destination(self, context: ty.Any, source: str,
                           instance_uuid: str, destination: str,
                           policy: str | None) -> dict[str, ty.Any]:
        """Ask *source* to run phase 1 with *destination* (the caller).

        :returns: a public summary of the attested session.
        """
        return ty.cast(dict[str, ty.Any], self._call(
            context, source, 'attest_destination',
            instance_uuid=instance_uuid, destination=destination,
            policy=policy))

    def send_key(self, context: ty.Any, source: str, instance_uuid: str,
                 migration_uuid: str, destination: str) -> dict[str, ty.Any]:
        """Ask *source* to run phase 2 towards *destination* (the caller).

        :returns: a public summary of the destination's receipt.
        """
        return ty.cast(dict[str, ty.Any], self._call(
            context, source, 'send_key', instance_uuid=instance_uuid,
            migration_uuid=migration_uuid, destination=destination))

    def abort_migration(self, context: ty.Any, source: str,
                        instance_uuid: str, migration_uuid: str) -> None:
        """Ask *source* to abort the migration (it coordinates the outcome)."""
        self._call(context, source, 'abort_migration',
                   instance_uuid=instance_uuid, migration_uuid=migration_uuid)


class ComputeEndpoint:
    """Server side of :class:`ComputeAPI`; delegates to the host facade."""

    target = messaging.Target(namespace=NAMESPACE, version='1.0')

    def __init__(self, handler: ty.Any) -> None:
        """:param handler: the host's ``VtpmMigrationService``."""
        self._handler = handler

    def attest_destination(self, context: ty.Any, instance_uuid: str,
                           destination: str,
                           policy: str | None) -> dict[str, ty.Any]:
        return ty.cast(dict[str, ty.Any], self._handler.handle_attest(
            context, instance_uuid, destination, policy))

    def send_key(self, context: ty.Any, instance_uuid: str,
                 migration_uuid: str,
                 destination: str) -> dict[str, ty.Any]:
        return ty.cast(dict[str, ty.Any], self._handler.handle_send_key(
            context, instance_uuid, migration_uuid, destination))

    def abort_migration(self, context: ty.Any, instance_uuid: str,
                        migration_uuid: str) -> None:
        self._handler.handle_abort(context, instance_uuid, migration_uuid)


def get_server(host: str, handler: ty.Any) -> ty.Any:
    """Return (not started) the RPC server of *host* for *handler*."""
    target = messaging.Target(topic=topic(), server=host)
    return rpc.get_server(target, [ComputeEndpoint(handler)])
