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

"""Which instances the plugin protects, and the flavor extra specs."""

from nova import objects
import pytest

from nova_vtpm_migration.api import extra_specs
from nova_vtpm_migration.virt import flavor_policy as fp

objects.register_all()


def _flavor(**specs: str) -> objects.Flavor:
    return objects.Flavor(extra_specs=dict(specs))


IMAGE = objects.ImageMeta.from_dict({'properties': {}})
VTPM = {'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb'}


@pytest.mark.parametrize('specs, protected', [
    ({}, False),
    (VTPM, False),  # default secret security is 'user': not migratable
    ({**VTPM, 'hw:tpm_secret_security': 'user'}, False),
    ({**VTPM, 'hw:tpm_secret_security': 'deployment'}, False),
    ({**VTPM, 'hw:tpm_secret_security': 'host'}, True),
])
def test_is_protected(specs: dict[str, str], protected: bool) -> None:
    assert fp.is_protected(_flavor(**specs), IMAGE) is protected


HOST = {**VTPM, 'hw:tpm_secret_security': 'host'}


@pytest.mark.parametrize('specs, needed', [
    ({}, False),
    (HOST, True),
    ({**HOST, fp.ATTESTED_SPEC: 'optional'}, False),
    ({fp.ATTESTED_SPEC: 'required'}, True),
    ({**VTPM, fp.ATTESTED_SPEC: 'required'}, True),
])
def test_needs_attested_host(specs: dict[str, str], needed: bool) -> None:
    assert fp.needs_attested_host(_flavor(**specs), IMAGE) is needed


@pytest.mark.parametrize('spec, enforcement, allowed', [
    (None, 'refuse', False),
    (None, 'warn', True),
    ('optional', 'warn', True),
    ('optional', 'refuse', False),
    ('required', 'warn', False),
])
def test_may_fall_back(spec: str | None, enforcement: str,
                       allowed: bool) -> None:
    specs = {} if spec is None else {fp.ATTESTED_SPEC: spec}
    assert fp.may_fall_back(_flavor(**specs), enforcement) is allowed


def test_policy_name() -> None:
    assert fp.policy_name(_flavor()) is None
    assert fp.policy_name(_flavor(**{fp.POLICY_SPEC: 'gold'})) == 'gold'


def test_validators_cover_the_namespace() -> None:
    names = {v.name for v in extra_specs.register()}
    assert names == {fp.ATTESTED_SPEC, fp.POLICY_SPEC}
    attested, policy = extra_specs.register()
    attested.validate(fp.ATTESTED_SPEC, 'required')
    with pytest.raises(Exception, match='maybe'):
        attested.validate(fp.ATTESTED_SPEC, 'maybe')
    policy.validate(fp.POLICY_SPEC, 'pci-dss.v2')
    with pytest.raises(Exception, match='format'):
        policy.validate(fp.POLICY_SPEC, '../x')
