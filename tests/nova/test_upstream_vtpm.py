"""Nova's own vTPM functional tests, run with the plugin's driver loaded.

Every test of ``nova.tests.functional.libvirt.test_vtpm`` runs here
unchanged, through real nova-api, conductor, scheduler, placement and
libvirt-driver computes (fake libvirt), with
``compute_driver = vtpm_migration_ext.driver.LibvirtDriver``. Nova's
``host``-mode live-migration tests then go through the plugin's attested
path instead of the plaintext secret in ``migrate_data``, and must still
pass: the plugin changes how the secret moves, not what Nova does with it.

``make test`` runs the live-migration tests and a representative subset
(see ``tools/run-tests.sh``); the whole module (98 tests, several
minutes) runs with::

    stestr --test-path tests/nova --top-dir . run tests.nova.test_upstream_vtpm
"""

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
