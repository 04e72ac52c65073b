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

"""This host's migration service, built from ``[vtpm_migration]`` options.

The one place that puts the layers together for a running host: the trust
policy and host TPM (:mod:`nova_vtpm_migration.tpm.config`), the protocol
engine with its journal and key store under ``<state_path>/engine``, the
oslo.messaging transport to peers, and this host's RPC server. Used by the
Nova driver mixin and by the operator CLI.
"""

import os
import typing as ty

from oslo_config import cfg

from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.tpm import config as tpm_config

#: Sub-directory of ``state_path`` holding the journal and the key store.
ENGINE_DIR = 'engine'
JOURNAL_FILE = engine_mod.JOURNAL_FILE


def engine_state_dir(conf: cfg.ConfigOpts) -> str:
    """The directory of this host's journal and key store."""
    return os.path.join(conf.vtpm_migration.state_path, ENGINE_DIR)


def open_journal(conf: cfg.ConfigOpts) -> journal_mod.Journal:
    """Open this host's journal only (no TPM needed), for inspection.

    :raises OSError: the journal cannot be opened.
    """
    path = os.path.join(engine_state_dir(conf), JOURNAL_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(2, 'No migration journal', path)
    return journal_mod.Journal(path)


def build_engine(conf: cfg.ConfigOpts, host: str,
                 transport: transport_mod.Transport | None = None,
                 outcome_oracle: engine_mod.OutcomeOracle | None = None
                 ) -> engine_mod.MigrationEngine:
    """This host's protocol engine.

    :param conf: the configuration (``[vtpm_migration]``).
    :param host: this host's name (its RPC server name).
    :param transport: how to reach peers (default: the RPC transport on
        ``[DEFAULT] transport_url``).
    :param outcome_oracle: decides in-doubt migrations at recovery
        (default: none, they stay in doubt).
    :raises exception.PolicyFileError: the trust policy is invalid.
    """
    # NOTE(vtpm): imported here so that inspecting the journal does not
    # need oslo.messaging configured.
    from nova_vtpm_migration.rpc import transport as rpc_transport

    policy = tpm_config.trust_policy(conf)
    tpm = tpm_config.host_tpm(conf, policy)
    kwargs: dict[str, ty.Any] = {}
    if outcome_oracle is not None:
        kwargs['outcome_oracle'] = outcome_oracle
    return engine_mod.MigrationEngine.open(
        host, tpm, policy, engine_state_dir(conf),
        transport or rpc_transport.RpcTransport(), **kwargs)
