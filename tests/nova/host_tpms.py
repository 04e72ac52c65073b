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

"""A real swtpm host TPM for every nova-compute of a functional test.

Each compute host name gets its own ``swtpm socket --tpm2`` process with an
EK certificate from a private ``swtpm_localca`` (all under temporary
directories), its own plugin state directory, and the same trust policy:
the test CA and the all-zero PCR 0 and 7 values every fresh swtpm has.
A restarted compute keeps its TPM and state, as a real host does. The
hosts are built by :class:`tests.support.cluster.SimCluster`.
"""

import os

import fixtures

from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.support import cluster
from tests.support import swtpm

PCRS = (0, 7)


class HostTpms(fixtures.Fixture):
    """Lazily started swtpm TPMs, one per compute host name."""

    def _setUp(self) -> None:
        self.cluster = cluster.SimCluster(pcrs=PCRS, label='nova-test')
        self.addCleanup(self.cluster.close)
        self.root = str(self.cluster.root)

    @property
    def ca(self) -> swtpm.SwtpmCA:
        return self.cluster.ca

    @property
    def policy(self) -> policy_mod.TrustPolicy:
        return self.cluster.policy

    def state_dir(self, hostname: str) -> str:
        path = self.cluster.state_dir(hostname)
        os.makedirs(path, exist_ok=True)
        return path

    def tpm(self, hostname: str) -> host_mod.HostTpm:
        """The host's ``HostTpm`` (its swtpm is started on first use)."""
        return self.cluster.tpm(hostname).tpm

    def extend_pcr(self, hostname: str, index: int, data: bytes) -> None:
        """Change a PCR of the host, as a modified boot chain would."""
        self.cluster.extend_pcr(hostname, index, data)
