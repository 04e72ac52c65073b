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

"""Reading a vTPM instance's persistent libvirt secret on the source.

Only for secrets kept the upstream ``host`` way (``[vtpm_migration]
libvirt_secret_storage = libvirt``, or not yet taken into the vault): the
value never goes into the plugin's logs, exceptions or RPC messages.
"""

import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration.compute import errors

LOG = logging.getLogger(__name__)

USAGE = 'vtpm'


def read_secret(host: ty.Any, instance_uuid: str, hostname: str) -> bytes:
    """Return the value of the instance's libvirt vTPM secret.

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :param instance_uuid: the instance.
    :param hostname: this host's name (for the error text).
    :raises SecretUnavailable: no such secret, or it is not readable.
    """
    secret = host.find_secret(USAGE, instance_uuid)
    if secret is None:
        raise errors.SecretUnavailable(
            instance=instance_uuid, host=hostname,
            reason='no libvirt secret (hard-reboot the instance to '
                   're-create it)')
    try:
        return bytes(secret.value())
    except Exception as exc:
        raise errors.SecretUnavailable(
            instance=instance_uuid, host=hostname,
            reason=f'libvirt refused to read it ({type(exc).__name__})',
        ) from exc
