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

"""Attested, key-wrapped live migration of vTPM instances for OpenStack Nova.

The package is layered so that dependencies point one way only::

    virt/, scheduler/, api/, cmd/ (Nova glue, operator CLI)
      -> compute/ -> rpc/ -> protocol/ -> tpm/

``conf``
    The ``[vtpm_migration]`` options and the ``[upgrade_levels]
    vtpm_migration`` cap (``oslo.config.opts`` entry point).
``tpm``
    The host TPM through tpm2-pytss: identity, quotes, certified keys,
    sealing; pure-software verifiers and the trust policy.
``protocol``
    The three-phase migration protocol: wire format, phase-1 handshake
    and channel, the source and destination roles, journal, key custody,
    receipts and records; transport-agnostic, reads no configuration.
``rpc``
    The one compute-to-compute RPC API (oslo.messaging): protocol messages
    and the control calls, one server per compute.
``compute``
    The host object (one per nova-compute): engine, vault of sealed vTPM
    secrets, self attestation, RPC server, recovery and settling.
``virt``
    Nova's libvirt driver mixin (delegates only) and the flavor policy;
    ``nova/virt/vtpm_migration_ext`` is the shim Nova loads.
``scheduler``, ``api``
    The placement filter and the flavor extra-spec validators.
``cmd``
    The ``nova-vtpm-migration`` operator command.
``exception``, ``i18n``, ``fileutils``
    Shared by every layer.

Importing the package has no side effects: options are registered by
:mod:`nova_vtpm_migration.conf`, and nothing touches a TPM at import time.
The test harness (``tests/support``), the demo and the benchmarks
(``tools/``) do not ship.
"""
