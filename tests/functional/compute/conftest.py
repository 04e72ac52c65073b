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

"""Fixtures of the driver-side functional tests (real swtpm)."""

import collections.abc
import pathlib

from nova import rpc as nova_rpc
from oslo_config import cfg
import pytest

from nova_vtpm_migration import conf as nvm_conf
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.support import cluster
from tests.support import swtpm

CONF = nvm_conf.CONF


@pytest.fixture
def configured(swtpm_ca: swtpm.SwtpmCA,  # noqa: F811
               tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
               ) -> collections.abc.Iterator[pathlib.Path]:
    """``[vtpm_migration]`` pointing at a fresh swtpm host TPM, a policy
    that admits it and a state directory under ``tmp_path``."""
    sim = cluster.SimCluster(swtpm_ca, pcrs=(0, 7), label='compute',
                             clone=True)
    policy_file = sim.write_policy(tmp_path / 'policy.json', name='fresh')
    # Enrolled with the attestation CA as host-a, the name the tests use.
    sim.install_ak_certificate('factory', tmp_path / 'state', 'host-a')
    overrides = {'tcti': sim.tpm('factory').tcti,
                 'policy_file': str(policy_file),
                 'state_path': str(tmp_path / 'state')}
    for name, value in overrides.items():
        CONF.set_override(name, value, group='vtpm_migration')
    transport = sim.messaging('fake:/', cfg.ConfigOpts())
    monkeypatch.setattr(nova_rpc, 'TRANSPORT', transport)
    try:
        yield tmp_path
    finally:
        for name in overrides:
            CONF.clear_override(name, group='vtpm_migration')
        sim.close()

