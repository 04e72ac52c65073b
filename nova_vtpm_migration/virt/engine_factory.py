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

"""Builds this host's protocol engine from ``[vtpm_migration]`` options.

Kept apart from :mod:`nova_vtpm_migration.virt.service` so that the facade
stays independent of how the engine, the host TPM and the peer transport
are constructed.
"""

from nova_vtpm_migration.virt import engine
from nova_vtpm_migration.virt import errors


def build(host: str) -> engine.Engine:
    """Return the protocol engine of *host*.

    :raises EngineUnavailable: the engine cannot be built.
    """
    # NOTE(vtpm): wired to nova_vtpm_migration.protocol.engine once the
    # protocol layer is merged.
    raise errors.EngineUnavailable(
        host=host, reason='the protocol engine is not installed')
