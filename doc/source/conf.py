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

"""Sphinx configuration of the nova-vtpm-migration documentation.

Plain Sphinx with the builtin alabaster theme, so the build needs no
network. ``make docs`` builds with warnings as errors.
"""

import os
import sys

# Document the source tree this file belongs to, not an installed copy.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                '..', '..')))

project = 'nova-vtpm-migration'
copyright = '2026, The nova-vtpm-migration Authors'
author = 'The nova-vtpm-migration Authors'

extensions = [
    # the show-options directive for the configuration reference
    'oslo_config.sphinxext',
]

source_suffix = {'.rst': 'restructuredtext'}
root_doc = 'index'
exclude_patterns: list[str] = []
pygments_style = 'sphinx'

html_theme = 'alabaster'
html_theme_options = {
    'description': 'Attested, key-wrapped live migration of vTPM instances '
                   'for OpenStack Nova',
    'fixed_sidebar': True,
}
html_static_path: list[str] = []
