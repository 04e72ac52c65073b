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

"""A scheduler filter that keeps protected instances on attested hosts.

Nova 34 has no conductor plugin API; this filter (with the placement trait
each plugin compute reports, see
:mod:`nova_vtpm_migration.virt.libvirt.traits`) is the conductor-side gate:
the conductor's destination selection (``select_destinations`` for a live
migration without a host, and for a requested host without ``force``)
never returns a host whose own attestation is stale or failing. The
peer-to-peer attestation in the live-migration pre-checks still decides.

Enable it in ``nova.conf`` of nova-scheduler::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = nova_vtpm_migration.scheduler.filters.\
VtpmMigrationAttestedFilter
    enabled_filters = ...,VtpmMigrationAttestedFilter

(one line, without the backslash).
"""

import typing as ty

from nova import context as nova_context
from nova.scheduler import filters
from nova.scheduler.client import report
from oslo_log import log as logging

from nova_vtpm_migration.virt import flavor_policy

LOG = logging.getLogger(__name__)


class VtpmMigrationAttestedFilter(filters.BaseHostFilter):
    """Pass only attested hosts for instances that need one.

    An instance needs one when :func:`flavor_policy.needs_attested_host`
    says so (vTPM with ``hw:tpm_secret_security=host`` unless the flavor
    has ``vtpm_migration:attested=optional``, or any flavor with
    ``vtpm_migration:attested=required``). A host passes when its compute
    node resource provider has :data:`flavor_policy.ATTESTED_TRAIT`. If
    placement cannot be asked, the host fails (closed).
    """

    # Rebuilds stay on their host; nothing to decide.
    RUN_ON_REBUILD = False

    def host_passes(self, host_state: ty.Any, spec_obj: ty.Any) -> bool:
        if not flavor_policy.needs_attested_host(spec_obj.flavor,
                                                 spec_obj.image):
            return True
        try:
            traits = report.report_client_singleton().get_provider_traits(
                nova_context.get_admin_context(), host_state.uuid).traits
        except Exception as exc:
            LOG.warning('Cannot read the traits of host %s (%s); not '
                        'scheduling an attested-only instance there',
                        host_state.host, exc)
            return False
        if flavor_policy.ATTESTED_TRAIT in traits:
            return True
        LOG.info('Host %s does not report %s: its attestation evidence is '
                 'missing, stale or failing its trust policy', host_state.host,
                 flavor_policy.ATTESTED_TRAIT)
        return False
