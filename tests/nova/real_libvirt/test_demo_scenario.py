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

"""``make demo`` as a test, so the suite catches its regressions.

Runs :class:`tests.nova.real_libvirt.demo_scenario.RealLibvirtDemo` with
its report kept in memory; the test fails if any of the demo's checks
fails (their names are in the failure message, the report and the
daemons' logs in its details). It is also this tier's test of an attested
live migration, of the refusal of an untrusted destination, of a hard
reboot that reopens the sealed secret and of the destination's libvirtd
dying during the QEMU migration.
"""

from tests.nova.real_libvirt import demo_scenario


class RealLibvirtDemoTest(demo_scenario.RealLibvirtDemo):
    """The whole ``make demo`` scenario; every check must pass."""
