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
A restarted compute keeps its TPM and state, as a real host does.
"""

import os
import shutil
import tempfile

import fixtures

from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.support import swtpm

PCRS = (0, 7)


class HostTpms(fixtures.Fixture):
    """Lazily started swtpm TPMs, one per compute host name."""

    def _setUp(self) -> None:
        self.ca = swtpm.SwtpmCA('nova-test-ca')
        self.addCleanup(self.ca.cleanup)
        self.root = tempfile.mkdtemp(prefix='nvm-nova-')
        self.addCleanup(shutil.rmtree, self.root, True)
        self.sims: dict[str, swtpm.SwtpmHostTpm] = {}
        self.tpms: dict[str, host_mod.HostTpm] = {}
        self._policy: policy_mod.TrustPolicy | None = None

    @property
    def policy(self) -> policy_mod.TrustPolicy:
        if self._policy is None:
            self._policy = policy_mod.TrustPolicy.from_golden(
                self.ca.bundle_pem(), {i: bytes(32) for i in PCRS},
                max_evidence_age=60)
        return self._policy

    def state_dir(self, hostname: str) -> str:
        path = os.path.join(self.root, hostname)
        os.makedirs(path, exist_ok=True)
        return path

    def tpm(self, hostname: str) -> host_mod.HostTpm:
        """The host's ``HostTpm`` (its swtpm is started on first use)."""
        if hostname not in self.tpms:
            sim = swtpm.SwtpmHostTpm(self.ca, hostname)
            self.addCleanup(sim.stop)
            self.sims[hostname] = sim
            ctx = context.TpmContext(sim.tcti, lock_timeout=10)
            self.addCleanup(ctx.close)
            self.tpms[hostname] = host_mod.HostTpm(
                ctx, os.path.join(self.state_dir(hostname), 'tpm'),
                pcr_selection=PCRS)
        return self.tpms[hostname]

    def extend_pcr(self, hostname: str, index: int, data: bytes) -> None:
        """Change a PCR of the host, as a modified boot chain would."""
        self.tpm(hostname).ctx.close()
        self.sims[hostname].extend_pcr(index, data)
