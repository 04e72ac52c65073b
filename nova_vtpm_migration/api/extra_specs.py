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

"""Flavor extra spec validators for the ``vtpm_migration`` namespace.

Registered through the ``nova.api.extra_spec_validators`` entry point, so
nova-api validates ``vtpm_migration:*`` keys on flavor extra spec updates
(with microversion 2.86 or later) and rejects unknown keys in this
namespace. The semantics are in
:mod:`nova_vtpm_migration.virt.flavor_policy`.
"""

from nova.api.validation.extra_specs import base

from nova_vtpm_migration.virt import flavor_policy

EXTRA_SPEC_VALIDATORS = [
    base.ExtraSpecValidator(
        name=flavor_policy.ATTESTED_SPEC,
        description=(
            'Whether live migration and placement of the instance require '
            'attested hosts. "required": only hosts that report the '
            f'{flavor_policy.ATTESTED_TRAIT} trait are scheduled, and a '
            'vTPM live migration never falls back to upstream behaviour. '
            '"optional": placement ignores the trait; a peer without the '
            'plugin is handled as [vtpm_migration] enforcement says. Only '
            'supported by the nova-vtpm-migration libvirt driver.'
        ),
        value={
            'type': str,
            'description': 'Attestation requirement.',
            'enum': list(flavor_policy.ATTESTED_VALUES),
        },
    ),
    base.ExtraSpecValidator(
        name=flavor_policy.POLICY_SPEC,
        description=(
            'Name of the trust policy (from [vtpm_migration] '
            'named_policies) that the peer host of a live migration must '
            'satisfy instead of [vtpm_migration] policy_file. Only '
            'supported by the nova-vtpm-migration libvirt driver.'
        ),
        value={
            'type': str,
            'description': 'A trust policy name.',
            'pattern': flavor_policy.POLICY_NAME_PATTERN,
        },
    ),
]


def register() -> list[base.ExtraSpecValidator]:
    """Return the validators (called by nova-api's validator loader)."""
    return EXTRA_SPEC_VALIDATORS
