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

"""Operator commands on the migration protocol: attest, journal, receipts.

``attest HOST`` runs phase 1 (dual attestation) with a peer over RPC and
prints the verdict; ``journal status|recover|decide`` inspect and resolve
this host's migrations; ``receipts list|show|export|verify`` audit the
signed records of committed migrations (``verify`` works offline, from a
record file and the trust policy alone).
"""

import argparse
import collections.abc
import contextlib
import datetime
import pathlib
import socket
import typing as ty

from cryptography import x509
from oslo_config import cfg

from nova_vtpm_migration import exception
from nova_vtpm_migration.cmd import output
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.compute import layout
from nova_vtpm_migration.protocol import errors as protocol_errors
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import config as tpm_config
from nova_vtpm_migration.tpm import errors as tpm_errors

IN_DOUBT = frozenset({states.SourceState.TRANSFERRING.value,
                      states.SourceState.TRANSFERRED.value,
                      states.DestState.INSTALLED.value})


def add_parsers(sub: ty.Any) -> None:
    """Add the ``attest``, ``journal`` and ``receipts`` commands."""
    p = sub.add_parser('attest', help='attest a peer host over RPC (phase '
                                      '1) and print the verdict')
    p.add_argument('peer', help='the peer host name')
    p.add_argument('--host', default=None,
                   help='this host name (default: the system host name)')
    p.set_defaults(handler=attest)

    j = sub.add_parser('journal', help="this host's migration journal")
    jsub = j.add_subparsers(dest='journal_command', metavar='ACTION')
    jsub.required = True
    s = jsub.add_parser('status', help='list migrations (default: only '
                                       'unfinished ones)')
    s.add_argument('--all', action='store_true', help='list every one')
    s.set_defaults(handler=journal_status)
    r = jsub.add_parser('recover', help='resolve unfinished migrations now')
    r.add_argument('--host', default=None, help='this host name')
    r.set_defaults(handler=journal_recover)
    d = jsub.add_parser('decide', help='resolve an in-doubt migration')
    d.add_argument('migration_id')
    d.add_argument('outcome', choices=('commit', 'abort'))
    d.add_argument('--host', default=None, help='this host name')
    d.set_defaults(handler=journal_decide)

    rc = sub.add_parser('receipts', help='signed migration records')
    rsub = rc.add_subparsers(dest='receipts_command', metavar='ACTION')
    rsub.required = True
    rsub.add_parser('list', help='records in the journal').set_defaults(
        handler=receipts_list)
    sh = rsub.add_parser('show', help='show one record')
    sh.add_argument('migration_id')
    sh.set_defaults(handler=receipts_show)
    ex = rsub.add_parser('export', help='write one record to a file')
    ex.add_argument('migration_id')
    ex.add_argument('--output', required=True)
    ex.set_defaults(handler=receipts_export)
    v = rsub.add_parser('verify', help='verify a record offline against '
                                       'the trust policy')
    v.add_argument('--at', default='record', metavar='TIME',
                   help="judge the certificates at this time: 'record' "
                        "(default: when the record was made), 'now', or "
                        'an ISO 8601 time')
    v.add_argument('record', help='a record file, or a migration id of '
                                  'this host')
    v.set_defaults(handler=receipts_verify)


def _time(ts: float | int) -> str:
    return datetime.datetime.fromtimestamp(
        ts, datetime.UTC).isoformat(timespec='seconds')


@contextlib.contextmanager
def _engine(conf: cfg.ConfigOpts, args: argparse.Namespace
            ) -> collections.abc.Iterator[ty.Any]:
    """This host's protocol engine, as nova-compute builds it (no RPC
    server: the CLI only calls peers)."""
    host = compute_host.ComputeHost.open(
        conf, args.host or socket.gethostname())
    try:
        yield host.engine
    finally:
        host.stop()


def attest(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Run a fresh phase 1 with a peer and print its verdict."""
    with _engine(conf, args) as eng:
        sess = eng.attest_peer(args.peer, fresh=True)
    cert = x509.load_der_x509_certificate(sess.peer_identity.ek_certificate)
    output.emit({
        'peer': args.peer,
        'verdict': 'trusted',
        'ek_fingerprint': sess.peer_identity.ek_fingerprint,
        'ek_issuer': cert.issuer.rfc4514_string(),
        'ak_name': sess.peer_ak_name.hex(),
        'pcrs': {str(i): v.hex() for i, v in sess.peer_pcr_values},
        'protocol_version': sess.version,
        'suite': sess.suite,
    }, args.format)
    return 0


def _rows(conf: cfg.ConfigOpts, everything: bool) -> list[dict[str, ty.Any]]:
    journal = layout.open_journal(conf)
    try:
        rows = journal.list_migrations()
    finally:
        journal.close()
    final = {s.value for s in states.SOURCE_FINAL} | {
        states.DestState.COMMITTED.value, states.DestState.ABORTED.value}
    return [{'migration_id': r.migration_id, 'role': r.role.value,
             'state': r.state, 'in_doubt': r.state in IN_DOUBT,
             'instance': r.instance_uuid, 'peer': r.peer,
             'updated': _time(r.updated_at)}
            for r in rows if everything or r.state not in final]


def journal_status(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """List this host's (unfinished) migrations."""
    output.emit(_rows(conf, args.all), args.format,
                ('migration_id', 'role', 'state', 'in_doubt', 'instance',
                 'peer', 'updated'))
    return 0


def journal_recover(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Run recovery now; exit 1 if something stays unresolved."""
    with _engine(conf, args) as eng:
        result = eng.recover()
    rows = [{'migration_id': m, 'state': s, 'in_doubt': s in IN_DOUBT}
            for m, s in sorted(result.items())]
    output.emit(rows, args.format, ('migration_id', 'state', 'in_doubt'))
    return 1 if any(r['in_doubt'] for r in rows) else 0


def journal_decide(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Commit or abort an in-doubt migration of this (source) host."""
    with _engine(conf, args) as eng:
        state = eng.decide(args.migration_id, args.outcome)
    output.emit({'migration_id': args.migration_id, 'state': state},
                args.format)
    return 0


def _record_bytes(conf: cfg.ConfigOpts, migration_id: str) -> bytes:
    journal = layout.open_journal(conf)
    try:
        data = journal.get_record(migration_id, 'record')
    finally:
        journal.close()
    if data is None:
        raise ValueError(f'no record of migration {migration_id} in the '
                         'journal')
    return data


def _summary(record: ty.Mapping[str, ty.Any]) -> dict[str, ty.Any]:
    manifest, receipt = record['manifest'], record['receipt']
    return {
        'migration_id': manifest['migration_id'],
        'instance': manifest['instance_uuid'],
        'source_host': manifest['source_host'],
        'dest_host': manifest['dest_host'],
        'source_ak_name': manifest['source_ak_name'].hex(),
        'dest_ak_name': manifest['dest_ak_name'].hex(),
        'binding_key_name': manifest['binding_key_name'].hex(),
        'ciphertext_hash': manifest['ciphertext_hash'].hex(),
        'signed_at': _time(manifest['created_at']),
        'receipt_status': receipt['status'],
        'receipt_at': _time(receipt['created_at']),
        'source_ek': names.object_name(
            record['source']['identity']['ak_public']).hex()[:16] + '...',
    }


def receipts_list(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """List committed migrations that have a signed record."""
    journal = layout.open_journal(conf)
    try:
        rows = [{'migration_id': r.migration_id, 'role': r.role.value,
                 'instance': r.instance_uuid, 'peer': r.peer,
                 'updated': _time(r.updated_at)}
                for r in journal.list_migrations()
                if journal.get_record(r.migration_id, 'record')]
    finally:
        journal.close()
    output.emit(rows, args.format, ('migration_id', 'role', 'instance',
                                    'peer', 'updated'))
    return 0


def receipts_show(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Show a record's fields (without verifying it)."""
    data = _record_bytes(conf, args.migration_id)
    output.emit(_summary(wire.decode(data, receipts.RECORD)),
                args.format)
    return 0


def receipts_export(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Write a record to a file, for an auditor."""
    data = _record_bytes(conf, args.migration_id)
    pathlib.Path(args.output).write_bytes(data)
    output.emit({'migration_id': args.migration_id, 'record': args.output,
                 'bytes': len(data)}, args.format)
    return 0


def _judgement_time(text: str) -> datetime.datetime | None:
    if text == 'record':
        return None
    if text == 'now':
        return datetime.datetime.now(datetime.UTC)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise exception.ConfigurationError(
            reason=f"--at: not 'record', 'now' or an ISO 8601 time: "
                   f'{text!r}') from exc
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def receipts_verify(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Verify a record offline with the trust policy alone."""
    path = pathlib.Path(args.record)
    data = (path.read_bytes() if path.exists()
            else _record_bytes(conf, args.record))
    policy = tpm_config.trust_policy(conf)
    at = _judgement_time(args.at)
    try:
        record = receipts.verify_record(data, policy, at=at)
    except (protocol_errors.ProtocolError,
            tpm_errors.VerificationError) as exc:
        output.emit({'record': args.record, 'verdict': 'INVALID',
                     'reason': str(exc)}, args.format)
        return 1
    output.emit(dict(_summary(record), verdict='valid'), args.format)
    return 0
