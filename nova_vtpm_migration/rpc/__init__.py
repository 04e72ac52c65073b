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


"""The plugin's compute-to-compute RPC API (oslo.messaging).

Each compute host runs one RPC server (:mod:`.server`) on
``[vtpm_migration] rpc_topic`` with its host name as server, namespace
``vtpm_migration``. One API (:mod:`.rpcapi`, versioned in the
``nova/baserpc.py`` style and capped by ``[upgrade_levels]
vtpm_migration``) carries:

* ``exchange``: one opaque, canonically encoded protocol message and its
  reply; the protocol's
  :class:`~nova_vtpm_migration.protocol.transport.Transport` is built on
  it (:mod:`.transport`);
* the control calls a destination makes to the source of a migration
  (``attest_destination``, ``send_key``), which
  trigger protocol runs the source coordinates and checks itself.

No request context travels (:mod:`.serializer`); the protocol
authenticates its peers itself.
"""
