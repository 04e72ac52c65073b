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

"""Building the TPM layer from configuration, and the sample policy."""

import json
import os
import pathlib

from oslo_config import cfg
from oslo_config import fixture as config_fixture
import pytest

from nova_vtpm_migration.conf import vtpm_migration
from nova_vtpm_migration.tpm import auth
from nova_vtpm_migration.tpm import config
from nova_vtpm_migration.tpm import policy as policy_mod

ROOT = pathlib.Path(__file__).resolve().parents[3]
SAMPLE = ROOT / 'etc' / 'vtpm-migration-policy.json.sample'


@pytest.fixture
def conf() -> cfg.ConfigOpts:
    c = cfg.ConfigOpts()
    vtpm_migration.register_opts(c)
    return c


def test_sample_policy_matches_schema() -> None:
    import jsonschema
    jsonschema.validate(json.loads(SAMPLE.read_text()), policy_mod.SCHEMA)


def test_from_config(conf: cfg.ConfigOpts, tmp_path: pathlib.Path) -> None:
    from tests.unit.tpm.test_policy import _ca_pem
    from tests.unit.tpm.test_policy import _doc
    path = tmp_path / 'policy.json'
    doc = _doc(_ca_pem())
    del doc['max_evidence_age']
    path.write_text(json.dumps(doc))
    fix = config_fixture.Config(conf)
    fix.setUp()
    fix.config(group='vtpm_migration', policy_file=str(path),
               evidence_max_age=17, state_path=str(tmp_path),
               tcti='swtpm:host=127.0.0.1,port=1')
    pol = config.trust_policy(conf)
    assert pol.max_evidence_age == 17
    tpm = config.host_tpm(conf, pol)
    assert tpm.pcr_selection == (0, 7)
    assert tpm.state_dir == tmp_path / 'tpm'
    assert tpm.ctx.tcti == 'swtpm:host=127.0.0.1,port=1'
    assert tpm.ak_handle == 0x81010010
    fix.cleanUp()



def test_auth_files_and_ek_types_from_config(conf: cfg.ConfigOpts,
                                             tmp_path: pathlib.Path) -> None:
    owner = tmp_path / 'owner'
    owner.write_text('s3cret\n')
    os.chmod(owner, 0o640)
    fix = config_fixture.Config(conf)
    fix.setUp()
    fix.config(group='vtpm_migration', state_path=str(tmp_path),
               owner_auth_file=str(owner),
               ek_types=['EK-HIGH-ECC384', 'EK-RSA2048'])
    tpm = config.host_tpm(conf, pcr_selection=(0, 7))
    assert tpm.ek_types == ('EK-HIGH-ECC384', 'EK-RSA2048')
    assert tpm.owner_auth.path == str(owner)
    assert tpm.owner_auth.value() == b's3cret'
    assert tpm.endorsement_auth.path is None
    os.chmod(owner, 0o644)
    with pytest.raises(auth.AuthFileError, match='owner_auth_file'):
        config.host_tpm(conf, pcr_selection=(0, 7))
    fix.cleanUp()


def test_default_ek_types_prefer_ecc(conf: cfg.ConfigOpts) -> None:
    assert conf.vtpm_migration.ek_types == ['EK-ECC256', 'EK-RSA2048']
    with pytest.raises(ValueError):
        conf.set_override('ek_types', ['EK-DSA'], group='vtpm_migration')
