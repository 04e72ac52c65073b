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

"""The installed distribution gives Nova what it loads by name.

Nova imports compute drivers only as ``nova.virt.<compute_driver>`` and
nova-api finds extra spec validators through entry points, so both must
come from the *installed* package (``make test`` installs it first).
"""

import importlib.metadata

from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt import driver as virt_driver
from nova.virt import fake
from nova.virt.libvirt import driver as nova_libvirt
import testtools

from nova_vtpm_migration.virt.libvirt import driver as plugin_driver
from tests.nova import base


class PackagingTest(testtools.TestCase):

    def test_compute_driver_shim_is_installed(self):
        self.assertTrue(
            base.shim_installed(),
            'nova.virt.vtpm_migration_ext is not installed: run "make '
            'install" (pip install --no-deps .) before the Nova tests')

    def test_compute_driver_line_loads_the_plugin(self):
        if not base.shim_installed():
            self.skipTest('shim not installed (see the test above)')
        from nova import conf as nova_conf
        self.useFixture(base.fixtures.MonkeyPatch(
            'nova.virt.libvirt.driver.libvirt', fakelibvirt))
        conf = nova_conf.CONF
        conf.set_override('compute_driver', base.PLUGIN_DRIVER)
        self.addCleanup(conf.clear_override, 'compute_driver')
        driver = virt_driver.load_compute_driver(fake.FakeVirtAPI())
        self.assertIsInstance(driver, plugin_driver.LibvirtDriver)
        self.assertIsInstance(driver, nova_libvirt.LibvirtDriver)

    def test_only_the_leaf_package_is_installed_in_nova(self):
        dist = importlib.metadata.distribution('nova-vtpm-migration')
        ours = {str(f) for f in dist.files or ()
                if str(f).startswith('nova/')}
        self.assertTrue(ours, 'no nova/virt/vtpm_migration_ext files')
        for path in ours:
            self.assertTrue(path.startswith('nova/virt/vtpm_migration_ext/'),
                            path)

    def test_extra_spec_validators_entry_point(self):
        eps = importlib.metadata.entry_points(
            group='nova.api.extra_spec_validators')
        self.assertIn('nova_vtpm_migration.api.extra_specs',
                      [ep.value for ep in eps])
