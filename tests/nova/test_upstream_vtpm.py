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

"""Nova's own vTPM functional tests, run with the plugin's driver loaded.

Every test of ``nova.tests.functional.libvirt.test_vtpm`` runs here
unchanged, through real nova-api, conductor, scheduler, placement and
libvirt-driver computes (fake libvirt), with
``compute_driver = vtpm_migration_ext.driver.LibvirtDriver``. Nova's
``host``-mode live-migration tests then go through the plugin's attested
path instead of the plaintext secret in ``migrate_data``, and must still
pass: the plugin changes how the secret moves, not what Nova does with it.
The plugin also keeps the secret sealed at rest by default, which a few
tests check the opposite of: :data:`SEALED_CHANGES` lists them and why.

``make test`` runs every live-migration test and a representative subset
of the others (:data:`REPRESENTATIVE`, about 1 minute); the whole module
(98 tests, about 7 minutes on 2 cores) runs with::

    NOVA_VTPM_UPSTREAM_FULL=1 .venv/bin/stestr --test-path tests/nova \
        --top-dir . run tests.nova.test_upstream_vtpm
"""

import os
import unittest
from unittest import mock

from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.libvirt import test_vtpm

from tests.nova import base

_TPM_SUPPORTED = mock.patch.object(
    fakelibvirt.virConnect, '_domain_capability_tpm',
    new=fakelibvirt.virConnect._domain_capability_tpm_supported)


#: Upstream tests that check the persistent, readable libvirt secret of
#: ``host`` mode, which the plugin's default storage (``[vtpm_migration]
#: libvirt_secret_storage = sealed``) removes on purpose. They run with
#: ``libvirt_secret_storage = libvirt``; ``tests.nova.test_sealed_secret``
#: covers the same flows with the secret sealed.
SEALED_CHANGES = {
    'test_create_server_secret_security_host':
        'expects a persistent, non-private libvirt secret after boot; '
        'sealed, libvirt gets an ephemeral private one, undefined once the '
        'guest runs',
    'test_live_migrate_server_secret_security_host':
        'expects a libvirt secret on the source before and on the '
        'destination after the move; sealed, the hosts\' vaults hold it',
    'test_live_migrate_server_secret_security_host_missing':
        'deletes the libvirt secret to make the source pre-check fail; '
        'sealed, the move does not use a libvirt secret and succeeds',
    'test_live_migrate_server_secret_security_host_rollback':
        'expects the libvirt secret back on the source after the rollback; '
        'sealed, the source\'s vault holds it',
}


class _StorageMixin:
    """Run :data:`SEALED_CHANGES` with upstream secret storage."""

    def setUp(self):
        super().setUp()
        if self._testMethodName in SEALED_CHANGES:
            self.flags(libvirt_secret_storage='libvirt',
                       group='vtpm_migration')


@_TPM_SUPPORTED
class VTPMServersWithPluginTest(_StorageMixin, base.PluginDriverMixin,
                                test_vtpm.VTPMServersTest):
    """``VTPMServersTest`` with the plugin driver."""


@_TPM_SUPPORTED
class VTPMServersNonSharedWithPluginTest(_StorageMixin,
                                         base.PluginDriverMixin,
                                         test_vtpm.VTPMServersTestNonShared):
    """``VTPMServersTestNonShared`` with the plugin driver."""


#: Test name prefixes run by default: every live migration test, and one or
#: two of each other kind (create, secret modes, reboot, resize, migrate).
REPRESENTATIVE = (
    'test_live_migrate_',
    'test_create_server',
    'test_tpm_secret_security_user',
    'test_hard_reboot_server_as_admin_3_host',
    'test_resize_server__no_vtpm_to_vtpm_3_host',
    'test_resize_server__vtpm_to_no_vtpm_3_host',
    'test_migrate_server',
    'test_shelve_server',
)
#: In the non-shared-storage variant, only the host-mode live migrations.
REPRESENTATIVE_NON_SHARED = ('test_live_migrate_server_secret_security_host',)


def _selected(test: unittest.TestCase) -> bool:
    name = test.id().rsplit('.', 1)[-1]
    if isinstance(test, VTPMServersNonSharedWithPluginTest):
        return name.startswith(REPRESENTATIVE_NON_SHARED)
    return name.startswith(REPRESENTATIVE)


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    tests: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            tests.extend(_flatten(item))
        else:
            tests.append(item)
    return tests


def load_tests(loader: unittest.TestLoader, standard_tests: unittest.TestSuite,
               pattern: str | None) -> unittest.TestSuite:
    """Run the representative subset unless NOVA_VTPM_UPSTREAM_FULL=1."""
    if os.environ.get('NOVA_VTPM_UPSTREAM_FULL') == '1':
        return standard_tests
    return unittest.TestSuite(
        t for t in _flatten(standard_tests) if _selected(t))
