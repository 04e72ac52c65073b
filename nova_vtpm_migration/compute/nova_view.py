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

"""What a compute host's vTPM migration service needs from Nova.

:class:`NovaView` is the one interface between the host object
(:class:`~nova_vtpm_migration.compute.host.ComputeHost`) and Nova and
libvirt on its host: checks of a peer's request against Nova's migration
records, the flavor's named trust policy, the libvirt secret and the
recovery oracle. The virt layer implements it; the compute layer knows
nothing else of Nova.
"""

import typing as ty


class NovaView(ty.Protocol):
    """What the host object needs from Nova and libvirt on this host.

    Every request of a peer is checked against Nova's own records through
    it, never against what the request says. Implemented by
    :class:`nova_vtpm_migration.virt.libvirt.live_migration.
    LibvirtNovaView`.
    """

    def check_attest_request(self, instance_uuid: str,
                             destination: str) -> None:
        """Raise ``UnexpectedDestination`` unless Nova is live-migrating
        the instance away from this host, to *destination* or to a host
        it has not chosen yet (the pre-check runs before it records it).
        """
        ...

    def check_outgoing(self, instance_uuid: str, migration_uuid: str,
                       destination: str) -> None:
        """Raise ``UnexpectedDestination`` unless Nova's record is an
        in-progress live migration of the instance from this host to
        exactly *destination*."""
        ...

    def check_incoming(self, instance_uuid: str, migration_uuid: str,
                       source: str) -> None:
        """Raise ``UnexpectedDestination`` unless Nova's record is an
        in-progress live migration of the instance from exactly *source*
        to this host."""
        ...

    def flavor_policy(self, instance_uuid: str) -> str | None:
        """The named trust policy of the instance's flavor (from Nova's
        database), or ``None`` for the default policy."""
        ...

    def may_abort(self, migration_uuid: str, instance_uuid: str) -> bool:
        """Whether a move of which this host is the source may still be
        aborted: Nova has not handed the guest over (it runs here and the
        migration is not completing)."""
        ...

    def read_libvirt_secret(self, instance_uuid: str) -> bytes:
        """The instance's vTPM secret as libvirt keeps it (``libvirt``
        storage, or an instance from before the plugin)."""
        ...

    def outcome(self, migration_uuid: str, instance_uuid: str,
                after_restart: bool) -> str:
        """``commit``, ``abort`` or ``unknown`` for an in-doubt move of
        which this host is the source."""
        ...
