"""Nova's own vTPM functional tests, run with the plugin's driver loaded.

Every test of ``nova.tests.functional.libvirt.test_vtpm`` runs here
unchanged, through real nova-api, conductor, scheduler, placement and
libvirt-driver computes (fake libvirt), with
``compute_driver = vtpm_migration_ext.driver.LibvirtDriver``. Nova's
``host``-mode live-migration tests then go through the plugin's attested
path instead of the plaintext secret in ``migrate_data``, and must still
pass: the plugin changes how the secret moves, not what Nova does with it.

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


@_TPM_SUPPORTED
class VTPMServersWithPluginTest(base.PluginDriverMixin,
                                test_vtpm.VTPMServersTest):
    """``VTPMServersTest`` with the plugin driver."""


@_TPM_SUPPORTED
class VTPMServersNonSharedWithPluginTest(base.PluginDriverMixin,
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
