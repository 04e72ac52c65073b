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

"""The plugin's libvirt driver: Nova's driver plus the vTPM mixin.

Load it with ``compute_driver = vtpm_migration_ext.driver.LibvirtDriver``
(the shim in ``nova/virt/vtpm_migration_ext``).
"""

from nova.virt.libvirt import driver as nova_driver

from nova_vtpm_migration.virt.libvirt import mixin


class LibvirtDriver(mixin.VtpmMigrationDriverMixin,
                    nova_driver.LibvirtDriver):
    """Nova's ``LibvirtDriver`` with attested vTPM live migration."""
