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


"""The vTPM migration service of one compute host.

:class:`~.host.ComputeHost` is built once per nova-compute from
``[vtpm_migration]`` and owns everything the plugin runs on a host: the
protocol engine (:mod:`nova_vtpm_migration.protocol`), the vault of
sealed vTPM secrets (:mod:`.vault`, :mod:`.envelope`), the host's check of
its own evidence (:mod:`.self_attestation`) and the one RPC server
(:mod:`nova_vtpm_migration.rpc`). Nova's hooks
(:mod:`nova_vtpm_migration.virt`) call it directly; it knows nothing
about Nova or libvirt beyond the :class:`~.nova_view.NovaView` they give
it.
"""
