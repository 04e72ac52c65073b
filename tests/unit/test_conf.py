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

"""Tests of the configuration options and the generated sample."""

import pathlib
import tempfile

from oslo_config import cfg
from oslo_config import generator
import pytest

from nova_vtpm_migration.conf import opts
from nova_vtpm_migration.conf import vtpm_migration

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATOR_CONF = ROOT / 'etc' / 'nova-vtpm-migration-config-generator.conf'
SAMPLE = ROOT / 'etc' / 'nova-vtpm-migration.conf.sample'


def test_sample_config_is_current() -> None:
    """The committed sample equals what oslo-config-generator writes now."""
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / 'sample.conf'
        generator.main(['--config-file', str(GENERATOR_CONF),
                        '--output-file', str(out)])
        generated = out.read_text()
    assert SAMPLE.read_text() == generated, (
        'etc/nova-vtpm-migration.conf.sample is stale: run '
        '"make sample-config" and commit the result')


def test_entry_point_lists_group() -> None:
    groups = {group.name: [o.name for o in options]
              for group, options in opts.list_opts()}
    assert 'vtpm_migration' in groups
    assert 'tcti' in groups['vtpm_migration']


def test_list_opts_returns_copies() -> None:
    groups = dict(opts.list_opts())
    assert set(g.name for g in groups) == {'vtpm_migration', 'upgrade_levels'}
    copied = groups[vtpm_migration.vtpm_migration_group]
    originals = vtpm_migration.list_opts()[vtpm_migration.vtpm_migration_group]
    assert [o.name for o in copied] == [o.name for o in originals]
    assert all(c is not o for c, o in zip(copied, originals, strict=True))


@pytest.mark.parametrize('opt', vtpm_migration.ALL_OPTS,
                         ids=lambda o: o.name)
def test_help_text_is_complete(opt: cfg.Opt) -> None:
    """Every option documents its values, as nova's options do."""
    text = opt.help.strip()
    assert text[0].isupper()
    assert 'Possible values' in text or opt.choices is not None


def test_register_opts_defaults() -> None:
    conf = cfg.ConfigOpts()
    # A group *name*, not the module's OptGroup object: an
    # OptGroup keeps its options' overrides, so sharing it would share them.
    conf.register_opts(vtpm_migration.ALL_OPTS, group='vtpm_migration')
    conf([], project='nova', default_config_files=[])
    assert conf.vtpm_migration.tcti == 'device:/dev/tpmrm0'
    assert conf.vtpm_migration.enforcement == 'refuse'
    with pytest.raises(ValueError):
        conf.set_override('enforcement', 'allow', group='vtpm_migration')
