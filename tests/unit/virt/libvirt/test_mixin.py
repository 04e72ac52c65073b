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

"""The mixin overrides only Nova methods that exist, with their signature.

Nova's ``LibvirtDriver`` is not a stable API. If Nova renames or changes a
hook the mixin overrides, the override would silently stop being called
(or be called with the wrong arguments): these tests fail loudly instead.
"""

import inspect

from nova.virt.libvirt import driver as nova_driver
import pytest

from nova_vtpm_migration.virt.libvirt import driver
from nova_vtpm_migration.virt.libvirt import mixin

NOVA = nova_driver.LibvirtDriver
MIXIN = mixin.VtpmMigrationDriverMixin

# What the mixin is meant to override; a change here is a design change.
EXPECTED_OVERRIDES = {
    'init_host',
    'cleanup_host',
    'update_provider_tree',
    'check_can_live_migrate_destination',
    'check_can_live_migrate_source',
    'pre_live_migration',
    'post_live_migration',
    'rollback_live_migration_at_source',
    'rollback_live_migration_at_destination',
    'post_live_migration_at_destination',
    'cleanup',
    'confirm_migration',
    # Private: Nova has no public hook for the vTPM secret (guest_secret).
    '_get_or_create_secret_for_vtpm',
    '_add_vtpm_secret_to_live_migrate_data',
}


def _overrides() -> list[str]:
    return sorted(name for name, value in vars(MIXIN).items()
                  if inspect.isfunction(value) and not name.startswith('__'))


def _shape(func: object) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults (annotations ignored)."""
    sig = inspect.signature(func)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_overrides_are_the_expected_ones() -> None:
    assert set(_overrides()) == EXPECTED_OVERRIDES


@pytest.mark.parametrize('name', _overrides())
def test_override_exists_in_nova(name: str) -> None:
    assert hasattr(NOVA, name), (
        f'nova.virt.libvirt.driver.LibvirtDriver.{name} no longer exists: '
        f'the mixin override would never be called')


@pytest.mark.parametrize('name', _overrides())
def test_override_signature_matches_nova(name: str) -> None:
    ours = _shape(getattr(MIXIN, name))
    nova = _shape(getattr(NOVA, name))
    assert ours == nova, (
        f'LibvirtDriver.{name} changed its signature in Nova: '
        f'nova {nova} != mixin {ours}')


def test_driver_resolves_to_the_mixin_first() -> None:
    mro = driver.LibvirtDriver.__mro__
    assert mro[1] is MIXIN and mro[2] is NOVA
    for name in EXPECTED_OVERRIDES:
        assert getattr(driver.LibvirtDriver, name) is getattr(MIXIN, name)
