"""Nova functional-test harness with the plugin's driver loaded.

Mix :class:`PluginDriverMixin` in front of a Nova functional test class
(``nova.tests.functional.libvirt.base.ServersTestBase`` or a subclass): the
computes then load ``compute_driver =
vtpm_migration_ext.driver.LibvirtDriver`` through the installed shim, as a
real deployment does, and each gets its own protocol engine.
"""

import os
import sys

import fixtures

# Registers the [vtpm_migration] options on Nova's CONF.
from nova_vtpm_migration import conf as vtpm_conf  # noqa: F401
from tests.nova import engine_double

PLUGIN_DRIVER = 'vtpm_migration_ext.driver.LibvirtDriver'
ENGINE_FACTORY = 'nova_vtpm_migration.virt.service.default_engine_factory'


class PluginDriverMixin:
    """Load the plugin's driver in every compute of a Nova test."""

    def setUp(self):
        self.engines = engine_double.Registry()
        self.useFixture(fixtures.MonkeyPatch(ENGINE_FACTORY,
                                             self.engines.factory))
        super().setUp()
        self.flags(rpc_timeout=10, group='vtpm_migration')

    def _setup_compute_service(self):
        # ServersTestBase starts computes in the tests themselves.
        self.flags(compute_driver=PLUGIN_DRIVER)

    def _setup_services(self):
        # NOTE(vtpm): Nova's test config defaults [wsgi] api_paste_config to
        # <site-packages>/etc/nova/api-paste.ini, but the wheel installs it
        # below sys.prefix.
        paste = os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini')
        if os.path.exists(paste):
            self.flags(api_paste_config=paste, group='wsgi')
        super()._setup_services()
