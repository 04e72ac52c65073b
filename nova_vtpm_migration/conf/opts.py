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

"""The ``oslo.config.opts`` entry point of nova-vtpm-migration.

Used by ``oslo-config-generator`` and the Sphinx ``show-options``
directive. Returns deep copies, as oslo.messaging's ``opts.list_opts``
does, so the generator can never change the live option objects.
"""

import copy
import typing as ty

from oslo_config import cfg

from nova_vtpm_migration.conf import upgrade_levels
from nova_vtpm_migration.conf import vtpm_migration

_MODULES = (vtpm_migration, upgrade_levels)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """Return a list of ``(group, options)`` for every option group."""
    result: list[tuple[cfg.OptGroup, list[cfg.Opt]]] = []
    for module in _MODULES:
        groups: ty.Mapping[cfg.OptGroup, list[cfg.Opt]] = module.list_opts()
        for group, opts in groups.items():
            result.append((group, copy.deepcopy(opts)))
    return result
