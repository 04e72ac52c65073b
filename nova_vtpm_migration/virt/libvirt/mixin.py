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

"""``VtpmMigrationDriverMixin``: the plugin's hooks in Nova's libvirt driver.

The mixin overrides Nova's live-migration hooks, ``init_host``,
``cleanup_host``, ``update_provider_tree``, ``cleanup`` and
``confirm_migration``, and two private methods around the vTPM secret
(Nova has no public hook there). Each override calls Nova's
implementation and delegates the plugin's part to
:mod:`~nova_vtpm_migration.virt.libvirt.live_migration` or
:mod:`~nova_vtpm_migration.virt.libvirt.guest_secret`; the per-host state
lives in the host object,
:class:`~nova_vtpm_migration.compute.host.ComputeHost`.
``tests/unit/virt/libvirt/test_mixin.py`` fails when one of these Nova
methods disappears or changes its signature.
"""

import typing as ty

from nova import rpc as nova_rpc
from oslo_log import log as logging

from nova_vtpm_migration import conf
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.virt.libvirt import guest_secret
from nova_vtpm_migration.virt.libvirt import live_migration as lm
from nova_vtpm_migration.virt.libvirt import traits

LOG = logging.getLogger(__name__)
CONF = conf.CONF


def build_host(host: str) -> compute_host.ComputeHost:
    """This compute's host object from ``[vtpm_migration]``, on Nova's
    message bus; an unavailable one (with the reason) when it cannot be
    built."""
    try:
        return compute_host.ComputeHost.open(CONF, host, nova_rpc.TRANSPORT)
    except Exception as exc:
        LOG.exception('The vTPM migration service of host %s could not be '
                      'built; vTPM live migrations with this host will be '
                      'refused', host)
        return compute_host.ComputeHost.unavailable(
            CONF, host, f'{type(exc).__name__}: {exc}')


class VtpmMigrationDriverMixin:
    """Mix in before ``nova.virt.libvirt.driver.LibvirtDriver``."""

    # Provided by nova.virt.libvirt.driver.LibvirtDriver.
    _host: ty.Any
    _vtpm_host: compute_host.ComputeHost | None = None

    @property
    def _vtpm(self) -> compute_host.ComputeHost:
        """This compute's host object (unavailable until ``init_host``)."""
        if self._vtpm_host is None:
            return compute_host.ComputeHost.unavailable(
                CONF, CONF.host, 'nova-compute has not started it yet')
        return self._vtpm_host

    def init_host(self, host: str) -> None:
        super().init_host(host)  # type: ignore[misc]
        # A host whose service cannot start keeps running its instances;
        # it reports no attestation trait and refuses to take part in
        # protected live migrations (the error names the cause).
        vtpm = build_host(host)
        vtpm.start(lm.LibvirtNovaView(self._host, host))
        self._vtpm_host = vtpm
        guest_secret.sweep(vtpm, host)

    def cleanup_host(self, host: str) -> None:
        vtpm, self._vtpm_host = self._vtpm_host, None
        if vtpm is not None:
            vtpm.stop()
        super().cleanup_host(host)  # type: ignore[misc]

    def update_provider_tree(self, provider_tree: ty.Any, nodename: str,
                             allocations: ty.Any = None) -> None:
        super().update_provider_tree(  # type: ignore[misc]
            provider_tree, nodename, allocations=allocations)
        traits.update(provider_tree, nodename,
                      self._vtpm.attestation_fresh())

    # -- the vTPM secret at rest (guest_secret) ------------------------------

    def _get_or_create_secret_for_vtpm(
            self, context: ty.Any, instance: ty.Any) -> tuple[ty.Any,
                                                              str | None]:
        return guest_secret.get_or_create(
            self._vtpm, self._host, context, instance,
            super()._get_or_create_secret_for_vtpm)  # type: ignore[misc]

    def _add_vtpm_secret_to_live_migrate_data(
            self, instance: ty.Any, dest_check_data: ty.Any) -> None:
        guest_secret.add_to_migrate_data(
            self._vtpm, instance, dest_check_data,
            super()._add_vtpm_secret_to_live_migrate_data)  # type: ignore

    def cleanup(self, context: ty.Any, instance: ty.Any, network_info: ty.Any,
                block_device_info: ty.Any = None, destroy_disks: bool = True,
                migrate_data: ty.Any = None, destroy_vifs: bool = True,
                destroy_secrets: bool = True) -> None:
        super().cleanup(  # type: ignore[misc]
            context, instance, network_info, block_device_info,
            destroy_disks, migrate_data, destroy_vifs, destroy_secrets)
        if destroy_disks and destroy_secrets:
            guest_secret.forget(self._vtpm, instance)

    def confirm_migration(self, context: ty.Any, migration: ty.Any,
                          instance: ty.Any, network_info: ty.Any) -> None:
        super().confirm_migration(  # type: ignore[misc]
            context, migration, instance, network_info)
        if migration.source_compute != migration.dest_compute:
            guest_secret.forget(self._vtpm, instance)

    def post_live_migration_at_destination(
            self, context: ty.Any, instance: ty.Any, network_info: ty.Any,
            block_migration: bool = False,
            block_device_info: ty.Any = None) -> None:
        super().post_live_migration_at_destination(  # type: ignore[misc]
            context, instance, network_info, block_migration,
            block_device_info)
        guest_secret.release_after_incoming(self._vtpm, self._host, instance)

    # -- live migration (live_migration) -----------------------------------

    def check_can_live_migrate_destination(
            self, context: ty.Any, instance: ty.Any, src_compute_info: ty.Any,
            dst_compute_info: ty.Any, block_migration: bool = False,
            disk_over_commit: bool = False) -> ty.Any:
        # Attest first: Nova creates a shared-storage test file below that
        # only cleanup_live_migration_destination_check removes.
        lm.dest_precheck(self._vtpm, context, instance)
        return super().check_can_live_migrate_destination(  # type: ignore
            context, instance, src_compute_info, dst_compute_info,
            block_migration, disk_over_commit)

    def check_can_live_migrate_source(
            self, context: ty.Any, instance: ty.Any, dest_check_data: ty.Any,
            block_device_info: ty.Any = None) -> ty.Any:
        migrate_data = super().check_can_live_migrate_source(  # type: ignore
            context, instance, dest_check_data, block_device_info)
        lm.source_check(self._vtpm, instance, migrate_data)
        return migrate_data

    def pre_live_migration(self, context: ty.Any, instance: ty.Any,
                           block_device_info: ty.Any, network_info: ty.Any,
                           disk_info: ty.Any, migrate_data: ty.Any) -> ty.Any:
        migrate_data = super().pre_live_migration(  # type: ignore[misc]
            context, instance, block_device_info, network_info, disk_info,
            migrate_data)
        lm.dest_pre_live_migration(self._vtpm, self._host, context,
                                   instance, migrate_data)
        return migrate_data

    def post_live_migration(self, context: ty.Any, instance: ty.Any,
                            block_device_info: ty.Any,
                            migrate_data: ty.Any = None) -> None:
        lm.source_post(self._vtpm, instance, migrate_data)
        super().post_live_migration(  # type: ignore[misc]
            context, instance, block_device_info, migrate_data)

    def rollback_live_migration_at_source(self, context: ty.Any,
                                          instance: ty.Any,
                                          migrate_data: ty.Any) -> None:
        super().rollback_live_migration_at_source(  # type: ignore[misc]
            context, instance, migrate_data)
        lm.source_rollback(self._vtpm, instance, migrate_data)

    def rollback_live_migration_at_destination(
            self, context: ty.Any, instance: ty.Any, network_info: ty.Any,
            block_device_info: ty.Any, destroy_disks: bool = True,
            migrate_data: ty.Any = None) -> None:
        lm.dest_rollback(self._vtpm, instance, migrate_data)
        super().rollback_live_migration_at_destination(  # type: ignore
            context, instance, network_info, block_device_info,
            destroy_disks, migrate_data)
