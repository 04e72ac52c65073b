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


"""Where a compute host keeps its state, and read-only access to it.

Everything lives under ``[vtpm_migration] state_path``: the protocol's
journal and key store in ``engine/`` (layout:
:func:`nova_vtpm_migration.protocol.engine.open_state`) and the vault's
envelopes in ``engine/vault/``. The operator CLI inspects them here
without a TPM or a message bus.
"""

import os

from oslo_config import cfg

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import errors as tpm_errors

#: Sub-directory of ``state_path`` holding the journal and the key store.
ENGINE_DIR = 'engine'
#: Default file of this host's AK certificate, under ``state_path``.
AK_CERTIFICATE_FILE = 'ak-certificate.pem'


def ak_certificate_path(conf: cfg.ConfigOpts) -> str:
    """Where this host's AK certificate is installed."""
    group = conf.vtpm_migration
    return str(group.ak_certificate_file or os.path.join(
        group.state_path, AK_CERTIFICATE_FILE))


def read_ak_certificate(conf: cfg.ConfigOpts) -> bytes:
    """This host's AK certificate (DER).

    :raises exception.ConfigurationError: not installed or not a
        certificate (the message says how to enroll).
    """
    path = ak_certificate_path(conf)
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise exception.ConfigurationError(
            reason=f'this host has no AK certificate at {path} '
                   f'({exc.strerror}): enroll it with the attestation CA '
                   '(nova-vtpm-migration enroll)') from exc
    try:
        return akcert.load(data)
    except tpm_errors.AkCertificateError as exc:
        raise exception.ConfigurationError(
            reason=f'{path}: {exc}') from exc


def engine_state_dir(conf: cfg.ConfigOpts) -> str:
    """The directory of this host's journal and key store."""
    return os.path.join(conf.vtpm_migration.state_path, ENGINE_DIR)


def open_journal(conf: cfg.ConfigOpts) -> journal_mod.Journal:
    """Open this host's journal only (no TPM needed), for inspection.

    :raises OSError: the journal cannot be opened.
    """
    path = os.path.join(engine_state_dir(conf), engine_mod.JOURNAL_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(2, 'No migration journal', path)
    return journal_mod.Journal(path)
