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

"""How the plugin uses ``LibvirtLiveMigrateData`` (no new fields).

Upstream ``host`` mode copies the vTPM secret into
``vtpm_secret_value`` (a ``SensitiveStringField``: masked in logs, but
plaintext on the message bus). For a migration the plugin runs, the
source keeps ``vtpm_secret_uuid`` and sets ``vtpm_secret_value`` to
``None``. With both fields set, Nova's own code still sees ``has_vtpm``
(so it forces destination cleanup on rollback and deletes the libvirt
secret on the source after success and on the destination after a
rollback), while ``has_vtpm_secret_data`` is false, so upstream
``pre_live_migration`` does not define a secret from the bus: the plugin
defines it from the unwrapped key instead.
"""

import typing as ty


def strip_secret(migrate_data: ty.Any) -> None:
    """Remove the plaintext secret, keep its libvirt secret UUID.

    :param migrate_data: the ``LibvirtLiveMigrateData`` being returned by
        ``check_can_live_migrate_source``.
    """
    migrate_data.vtpm_secret_value = None


def is_plugin_migration(migrate_data: ty.Any) -> bool:
    """Return whether the source handed this vTPM migration to the plugin.

    :param migrate_data: a ``LibvirtLiveMigrateData`` or ``None``.
    """
    if migrate_data is None or not migrate_data.has_vtpm:
        return False
    return bool(migrate_data.vtpm_secret_uuid) and (
        not migrate_data.vtpm_secret_value)


def migration_uuid(migrate_data: ty.Any) -> str | None:
    """Return the Nova migration UUID carried by *migrate_data*, if set."""
    if migrate_data is None or 'migration' not in migrate_data:
        return None
    migration = migrate_data.migration
    if migration is None or 'uuid' not in migration:
        return None
    return str(migration.uuid)
