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

"""Fixtures of the TPM layer tests (real swtpm hosts)."""

import pytest

from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional.swtpm_fixtures import PCRS
from tests.functional.swtpm_fixtures import host_pair  # noqa: F401
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.functional.swtpm_fixtures import swtpm_factory  # noqa: F401
from tests.functional.swtpm_fixtures import untrusted_ca  # noqa: F401
from tests.support import cluster
from tests.support import swtpm


@pytest.fixture(scope='module')
def trust_policy(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
                 ) -> policy_mod.TrustPolicy:
    """A policy trusting ``swtpm_ca`` with the PCR values of fresh hosts
    (those of ``host_pair``) as golden."""
    return cluster.trust_policy(swtpm_ca, PCRS)
