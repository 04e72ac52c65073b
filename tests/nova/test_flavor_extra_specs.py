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

"""nova-api validates the plugin's ``vtpm_migration:*`` flavor extra specs.

The validators are loaded by nova-api from the installed
``nova.api.extra_spec_validators`` entry point, as in a deployment.
"""

from nova.tests.functional import integrated_helpers
from nova.tests.functional.api import client

from tests.nova import base


class FlavorExtraSpecsTest(base.ApiPasteMixin,
                           integrated_helpers._IntegratedTestBase):

    ADMIN_API = True
    # Extra spec validation needs microversion 2.86.
    microversion = '2.86'

    def _set(self, specs):
        flavor_id = self._create_flavor()
        return self.api.post_extra_spec(flavor_id, {'extra_specs': specs})

    def _assert_rejected(self, specs, text):
        ex = self.assertRaises(client.OpenStackApiException, self._set,
                               specs)
        self.assertEqual(400, ex.response.status_code)
        self.assertIn(text, str(ex))

    def test_valid_specs_are_accepted(self):
        for specs in ({'vtpm_migration:attested': 'required'},
                      {'vtpm_migration:attested': 'optional'},
                      {'vtpm_migration:policy': 'pci-dss.v2'},
                      {'trait:CUSTOM_VTPM_MIGRATION_ATTESTED': 'required'}):
            self._set(specs)

    def test_bad_attested_value_is_rejected(self):
        self._assert_rejected({'vtpm_migration:attested': 'maybe'},
                              'maybe')

    def test_bad_policy_name_is_rejected(self):
        self._assert_rejected({'vtpm_migration:policy': '../etc/passwd'},
                              'is not of the format')

    def test_unknown_key_in_namespace_is_rejected(self):
        self._assert_rejected({'vtpm_migration:atested': 'required'},
                              'does not appear to be a valid extra spec')
