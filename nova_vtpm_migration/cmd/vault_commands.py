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

"""Operator command on the vault of sealed vTPM secrets: ``vault list``.

``vault list`` shows which instances' vTPM secrets this host keeps sealed
(``[vtpm_migration] libvirt_secret_storage = sealed``) and the custody
state of their keys, from the journal alone. ``--verify`` also asks the
host TPM to unseal each key and checks that the envelope decrypts (in
memory; nothing secret is printed), e.g. after a firmware update, before
rebooting guests. It exits with 1 when an envelope does not open.
"""

import argparse
import datetime
import os
import socket
import threading
import typing as ty

from oslo_config import cfg

from nova_vtpm_migration.cmd import output
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.compute import layout
from nova_vtpm_migration.compute import vault as vault_mod
from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import keystore as keystore_mod

COLUMNS = ('instance', 'key_state', 'envelope_bytes', 'sealed_at',
           'verified')


def add_parsers(sub: ty.Any) -> None:
    """Add the ``vault`` command."""
    v = sub.add_parser('vault', help="this host's sealed vTPM secrets")
    vsub = v.add_subparsers(dest='vault_command', metavar='ACTION')
    vsub.required = True
    lst = vsub.add_parser('list', help='list the sealed secrets')
    lst.add_argument('--verify', action='store_true',
                     help='unseal each key with the host TPM and check '
                          'that its envelope decrypts')
    lst.add_argument('--host', default=None,
                     help='this host name (default: the system host name)')
    lst.set_defaults(handler=vault_list)


def _rows(vault: vault_mod.SecretVault,
          keystore: keystore_mod.KeyStore) -> list[dict[str, ty.Any]]:
    rows = []
    for uuid in vault.instances():
        stat = os.stat(vault.path(uuid))
        state = keystore.state(uuid)
        rows.append({
            'instance': uuid,
            'key_state': state.value if state else '(none)',
            'envelope_bytes': stat.st_size,
            'sealed_at': datetime.datetime.fromtimestamp(
                stat.st_mtime, datetime.UTC).isoformat(timespec='seconds'),
            'verified': '-'})
    return rows


def vault_list(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """List (and with ``--verify`` check) the sealed vTPM secrets."""
    host = args.host or socket.gethostname()
    if not args.verify:
        journal = layout.open_journal(conf)
        try:
            keystore = keystore_mod.KeyStore(
                journal, os.path.join(layout.engine_state_dir(conf),
                                      engine_mod.KEY_DIR), tpm=None)
            vault = vault_mod.SecretVault(keystore, threading.RLock(), host)
            rows = _rows(vault, keystore)
        finally:
            journal.close()
        output.emit(rows, args.format, COLUMNS)
        return 0
    built = compute_host.ComputeHost.open(conf, host)
    failed = 0
    try:
        assert built.vault is not None and built.engine is not None
        vault = built.vault
        rows = _rows(vault, built.engine.keystore)
        for row in rows:
            try:
                secret = vault.open(row['instance'])
            except errors.SecretUnavailable as exc:
                row['verified'] = f'FAILED: {exc.kwargs["reason"]}'
                failed += 1
            else:
                del secret
                row['verified'] = 'ok'
    finally:
        built.stop()
    output.emit(rows, args.format, COLUMNS)
    return 1 if failed else 0
