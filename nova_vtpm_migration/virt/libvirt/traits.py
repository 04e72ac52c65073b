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

"""The attestation trait this host reports to placement."""

import typing as ty

from nova_vtpm_migration.virt import flavor_policy


def update(provider_tree: ty.Any, nodename: str, attested: bool) -> None:
    """Add or remove :data:`flavor_policy.ATTESTED_TRAIT` on the node.

    :param provider_tree: the ``ProviderTree`` of ``update_provider_tree``.
    :param nodename: the compute node resource provider name.
    :param attested: whether this host's own evidence is fresh and valid.
    """
    trait = flavor_policy.ATTESTED_TRAIT
    if attested:
        provider_tree.add_traits(nodename, trait)
    else:
        provider_tree.remove_traits(nodename, trait)
