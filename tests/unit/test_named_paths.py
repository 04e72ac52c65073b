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

"""Every name an operator copies from the documentation exists.

DevStack, the docs, the README and ``etc/`` name Python objects (scheduler
filters, the compute driver, entry points) and configuration options. A
renamed class or option must not leave a setting behind that Nova cannot
load: each one is resolved here.
"""

import importlib
import pathlib
import re
import tomllib
import typing as ty

from oslo_config import cfg
import pytest

from nova_vtpm_migration.conf import opts

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [ROOT / 'README.md']
    + [p for p in (ROOT / 'devstack').rglob('*') if p.is_file()]
    + list((ROOT / 'doc' / 'source').rglob('*.rst'))
    + [p for p in (ROOT / 'etc').rglob('*') if p.is_file()])

_DOTTED = re.compile(r'\bnova_vtpm_migration(?:\.[A-Za-z_][A-Za-z0-9_]*)+')
_DRIVER = re.compile(r'compute_driver\s*[=:]?\s*"?([A-Za-z_][\w.]+)"?')
_OPTION = re.compile(r'\[(vtpm_migration|upgrade_levels)\]\s+(?:``)?(\w+)')
_INISET = re.compile(
    r'iniset\s+"?\$NOVA\w*CONF"?\s+(vtpm_migration|upgrade_levels)\s+(\w+)')


def _mentions(pattern: re.Pattern[str]) -> list[tuple[str, ty.Any]]:
    found = []
    for path in SOURCES:
        text = path.read_text(errors='replace')
        for match in pattern.finditer(text):
            value = match.group(0) if not match.groups() else (
                match.groups() if len(match.groups()) > 1 else match.group(1))
            found.append((str(path.relative_to(ROOT)), value))
    return found


def _resolve(dotted: str) -> object:
    """Import the longest module prefix, then get the attributes."""
    parts = dotted.split('.')
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module('.'.join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _unique(items: list[tuple[str, ty.Any]]) -> list[tuple[str, ty.Any]]:
    return sorted(set(items), key=str)


@pytest.mark.parametrize('where, dotted', _unique(_mentions(_DOTTED)),
                         ids=lambda v: str(v))
def test_dotted_path_resolves(where: str, dotted: str) -> None:
    assert _resolve(dotted) is not None, f'{where}: {dotted}'


def test_every_kind_of_name_is_found() -> None:
    """The scan itself works: it finds the filter, the driver shim and
    options where the install guide and DevStack name them."""
    dotted = {d for _w, d in _mentions(_DOTTED)}
    assert ('nova_vtpm_migration.scheduler.filters.'
            'VtpmMigrationAttestedFilter') in dotted
    assert any(d for _w, d in _mentions(_DRIVER)
               if 'vtpm_migration_ext' in d)
    assert len(_mentions(_OPTION)) > 20
    assert _mentions(_INISET)


@pytest.mark.parametrize('where, value', _unique(
    [(w, v) for w, v in _mentions(_DRIVER) if 'vtpm_migration_ext' in v]),
    ids=lambda v: str(v))
def test_compute_driver_loads(where: str, value: str) -> None:
    """Nova loads ``compute_driver`` as ``nova.virt.<value>``."""
    cls = _resolve(f'nova.virt.{value}')
    from nova.virt import driver as nova_driver
    assert isinstance(cls, type) and issubclass(
        cls, nova_driver.ComputeDriver), f'{where}: {value}'


def _all_options() -> dict[str, set[str]]:
    known: dict[str, set[str]] = {}
    for group, options in opts.list_opts():
        name = group.name if isinstance(group, cfg.OptGroup) else group
        for opt in options:
            known.setdefault(name, set()).add(opt.dest)
            for old in opt.deprecated_opts:
                known.setdefault(old.group or name, set()).add(
                    old.name or opt.dest)
    return known


@pytest.mark.parametrize('where, group_option', _unique(
    _mentions(_OPTION) + _mentions(_INISET)), ids=lambda v: str(v))
def test_option_exists(where: str, group_option: tuple[str, str]) -> None:
    group, option = group_option
    if group == 'upgrade_levels' and option != 'vtpm_migration':
        pytest.skip("another service's cap in Nova's own group")
    assert option in _all_options()[group], f'{where}: [{group}] {option}'


def _entry_points() -> list[tuple[str, str]]:
    project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
    points = [(f'scripts.{k}', v) for k, v in project['scripts'].items()]
    for group, entries in project['entry-points'].items():
        points += [(f'{group}.{k}', v) for k, v in entries.items()]
    return points


@pytest.mark.parametrize('name, target', _entry_points(),
                         ids=lambda v: str(v))
def test_entry_point_resolves(name: str, target: str) -> None:
    module, _, attr = target.partition(':')
    obj = importlib.import_module(module)
    if attr:
        obj = getattr(obj, attr)
    assert obj is not None, name
