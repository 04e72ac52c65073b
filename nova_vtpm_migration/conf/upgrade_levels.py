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

"""The plugin's option in Nova's ``[upgrade_levels]`` group.

Nova caps each of its RPC APIs there during a rolling upgrade
(``compute``, ``conductor``, ``baseapi``...); the plugin's one
compute-to-compute API is capped the same way.
"""

from oslo_config import cfg

upgrade_group = cfg.OptGroup(
    'upgrade_levels',
    title='RPC API version caps',
    help="""
Caps on the RPC API versions a service sends during a rolling upgrade.
""")

upgrade_opts: list[cfg.Opt] = [
    cfg.StrOpt('vtpm_migration',
        deprecated_opts=[cfg.DeprecatedOpt('rpc_version_cap',
                                           group='vtpm_migration')],
        help="""
Highest version of the vTPM migration RPC API this host sends.

Set it during a rolling upgrade to the version (or release alias) that the
oldest compute host understands, then unset it once every host runs the
new code. Calls that need a newer version fail with an error naming the
cap instead of reaching a host that cannot answer them.

Possible values:

* Unset (default): no cap.
* A version such as ``1.1``.
* A release alias listed in
  ``nova_vtpm_migration.rpc.rpcapi.VtpmMigrationAPI.VERSION_ALIASES``.

Related options:

* ``[vtpm_migration] rpc_topic``
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the plugin's option of ``[upgrade_levels]``."""
    conf.register_group(upgrade_group)
    conf.register_opts(upgrade_opts, group=upgrade_group)


def list_opts() -> dict[cfg.OptGroup, list[cfg.Opt]]:
    """Return the options of this module keyed by their group."""
    return {upgrade_group: upgrade_opts}
