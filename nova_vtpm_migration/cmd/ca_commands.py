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

"""``nova-vtpm-migration ca ...`` and the host side of enrollment.

The attestation CA's side runs where its key is (ideally an offline
machine): ``ca init`` once, then per host ``ca challenge`` and ``ca
issue``. The host's side: ``enroll`` (its record), ``enroll --activate``
(the TPM answers the challenge) and ``enroll --install`` (the certificate
goes to ``[vtpm_migration] ak_certificate_file``). ``ca enroll-local``
runs every step on one machine, for a CA that sits with the host
(DevStack, labs). See :mod:`nova_vtpm_migration.tpm.enrollment`.
"""

import argparse
import base64
import json
import os
import pathlib
import socket
import typing as ty

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from oslo_config import cfg

from nova_vtpm_migration import exception
from nova_vtpm_migration import fileutils
from nova_vtpm_migration.cmd import output
from nova_vtpm_migration.compute import layout
from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import config as tpm_config
from nova_vtpm_migration.tpm import enrollment
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod

CA_KEY = 'ca-key.pem'
CA_CERT = 'ca-cert.pem'
PENDING = 'pending'
CHALLENGE_VERSION = 1


def add_parsers(sub: ty.Any) -> None:
    """Add the ``ca`` command and its actions to *sub*."""
    ca = sub.add_parser('ca', help='the attestation CA that certifies '
                                   "hosts' AKs for their host names")
    csub = ca.add_subparsers(dest='ca_command', metavar='ACTION')
    csub.required = True
    i = csub.add_parser('init', help='create the CA key and certificate')
    i.add_argument('--ca-dir', required=True,
                   help='directory of the CA key (kept 0700/0600)')
    i.add_argument('--name', default='nova-vtpm-migration attestation CA',
                   help='the CA certificate subject CN')
    i.add_argument('--days', type=int, default=3650,
                   help='validity of the CA certificate (default 3650)')
    i.set_defaults(handler=ca_init)
    c = csub.add_parser('challenge', help="check a host's EK and make its "
                                          'credential challenge')
    c.add_argument('--ca-dir', required=True)
    c.add_argument('--ek-ca-bundle', required=True,
                   help="PEM file of the TPM vendors' EK CA certificates")
    c.add_argument('record', help='the enrollment record of the host')
    c.add_argument('--output', required=True,
                   help='the challenge file for the host')
    c.set_defaults(handler=ca_challenge)
    s = csub.add_parser('issue', help="check the host's answer and issue "
                                      'its AK certificate')
    s.add_argument('--ca-dir', required=True)
    s.add_argument('record', help='the enrollment record of the host')
    s.add_argument('response', help='the file enroll --activate wrote')
    s.add_argument('--days', type=int, default=3 * 365,
                   help='validity of the AK certificate (default 1095)')
    s.add_argument('--output', required=True,
                   help='the AK certificate (PEM) for the host')
    s.set_defaults(handler=ca_issue)
    e = csub.add_parser('enroll-local', help='every enrollment step on '
                                             'this host, with a local CA')
    e.add_argument('--ca-dir', required=True)
    e.add_argument('--ek-ca-bundle', required=True)
    e.add_argument('--host', default=None,
                   help="this host's Nova host name (default: the host "
                        'name)')
    e.add_argument('--days', type=int, default=3 * 365)
    e.set_defaults(handler=ca_enroll_local)


def _ca_files(ca_dir: str) -> tuple[bytes, bytes]:
    base = pathlib.Path(ca_dir)
    try:
        return (base / CA_KEY).read_bytes(), (base / CA_CERT).read_bytes()
    except OSError as exc:
        raise exception.ConfigurationError(
            reason=f'no attestation CA in {ca_dir} ({exc.strerror}); run '
                   '"nova-vtpm-migration ca init"') from exc


def _write_private(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fileutils.atomic_write(str(path), data)
    os.chmod(path, 0o600)


def ca_init(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Create the CA key (0600) and its self-signed certificate."""
    base = pathlib.Path(args.ca_dir)
    if (base / CA_KEY).exists():
        raise exception.ConfigurationError(
            reason=f'{base / CA_KEY} exists; not overwriting a CA key')
    key, cert = akcert.make_ca(args.name, args.days)
    _write_private(base / CA_KEY, key)
    (base / CA_CERT).write_bytes(cert)
    output.emit({'ca_key': str(base / CA_KEY),
                 'ca_certificate': str(base / CA_CERT),
                 'subject': args.name}, args.format)
    return 0


def _identity(record: dict[str, ty.Any]) -> evidence.HostIdentity:
    cert = x509.load_pem_x509_certificate(record['ek_certificate'].encode())
    return evidence.HostIdentity(
        ek_certificate=cert.public_bytes(serialization.Encoding.DER),
        ek_public=base64.b64decode(record['ek_public']),
        ak_public=base64.b64decode(record['ak_public']))


def _ek_policy(bundle: str, attestation_ca: bytes) -> policy_mod.TrustPolicy:
    try:
        pem = pathlib.Path(bundle).read_text()
    except OSError as exc:
        raise exception.ConfigurationError(
            reason=f'cannot read EK CA bundle {bundle}: {exc.strerror}'
        ) from exc
    # Only the EK part of the policy is used (any PCR values pass here).
    return policy_mod.TrustPolicy.from_dict({
        'version': policy_mod.POLICY_VERSION,
        'attestation_ca_bundle': [attestation_ca.decode()],
        'ek_ca_bundle': [pem], 'pcr_selection': [0],
        'golden_sets': [{'name': 'enrollment', 'pcrs': {'0': '00' * 32}}]},
        source=bundle)


def _pending(ca_dir: str, ak_public: bytes) -> pathlib.Path:
    return (pathlib.Path(ca_dir) / PENDING
            / (objects.public_name(ak_public).hex() + '.secret'))


def _read_json(path: str, what: str) -> dict[str, ty.Any]:
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise exception.ConfigurationError(
            reason=f'cannot read the {what} {path}: {exc}') from exc
    if not isinstance(data, dict):
        raise exception.ConfigurationError(reason=f'{path} is not a {what}')
    return data


ENROLLMENT_VERSION = 1


def read_enrollment(path: str) -> dict[str, ty.Any]:
    """Read and check an enrollment record written by ``enroll``.

    :raises exception.ConfigurationError: unreadable or malformed.
    """
    try:
        record = json.loads(pathlib.Path(path).read_text())
    except OSError as exc:
        raise exception.ConfigurationError(
            reason=f'cannot read enrollment record {path}: '
                   f'{exc.strerror}') from exc
    except ValueError as exc:
        raise exception.ConfigurationError(
            reason=f'enrollment record {path} is not JSON: {exc}') from exc
    if not isinstance(record, dict) or \
            record.get('version') != ENROLLMENT_VERSION or \
            not isinstance(record.get('ek_fingerprint'), str):
        raise exception.ConfigurationError(
            reason=f'{path} is not a version {ENROLLMENT_VERSION} '
                   'enrollment record')
    return record


def ca_challenge(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Check the host's EK and write its credential challenge."""
    _key, ca_cert = _ca_files(args.ca_dir)
    record = read_enrollment(args.record)
    identity = _identity(record)
    challenge, secret = enrollment.challenge(
        identity, _ek_policy(args.ek_ca_bundle, ca_cert))
    _write_private(_pending(args.ca_dir, identity.ak_public), secret)
    document = {
        'version': CHALLENGE_VERSION, 'host': record['host'],
        'ak_name': objects.public_name(identity.ak_public).hex(),
        'credential_blob': base64.b64encode(
            challenge.credential_blob).decode(),
        'encrypted_secret': base64.b64encode(
            challenge.encrypted_secret).decode()}
    pathlib.Path(args.output).write_text(json.dumps(document, indent=2)
                                         + '\n')
    output.emit({'host': record['host'], 'challenge': args.output,
                 'ek_fingerprint': identity.ek_fingerprint}, args.format)
    return 0


def activate(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Host side: answer the challenge with the TPM."""
    document = _read_json(args.activate, 'challenge')
    challenge = evidence.CredentialChallenge(
        credential_blob=base64.b64decode(document['credential_blob']),
        encrypted_secret=base64.b64decode(document['encrypted_secret']))
    host = args.host or document['host']
    tpm = tpm_config.host_tpm(conf, pcr_selection=(0,))
    try:
        proof = enrollment.respond(tpm, challenge, host)
    finally:
        tpm.ctx.close()
    pathlib.Path(args.output).write_text(json.dumps({
        'version': CHALLENGE_VERSION, 'host': host,
        'proof': base64.b64encode(proof).decode()}, indent=2) + '\n')
    output.emit({'host': host, 'response': args.output}, args.format)
    return 0


def ca_issue(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Check the host's answer and issue its AK certificate."""
    key, ca_cert = _ca_files(args.ca_dir)
    record = read_enrollment(args.record)
    identity = _identity(record)
    response = _read_json(args.response, 'response')
    if response.get('host') != record['host']:
        raise exception.ConfigurationError(
            reason='the response names another host than the record')
    pending = _pending(args.ca_dir, identity.ak_public)
    try:
        secret = pending.read_bytes()
    except OSError as exc:
        raise exception.ConfigurationError(
            reason=f'no pending challenge for this AK ({exc.strerror}); run '
                   '"ca challenge" first') from exc
    der = enrollment.certify(key, ca_cert, identity, record['host'], secret,
                             base64.b64decode(response['proof']), args.days)
    pending.unlink()
    pem = x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM)
    pathlib.Path(args.output).write_bytes(pem)
    output.emit({'host': record['host'], 'ak_certificate': args.output},
                args.format)
    return 0


def install(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Host side: check the certificate is this TPM's and install it."""
    host = args.host or socket.gethostname()
    data = pathlib.Path(args.install).read_bytes()
    tpm = tpm_config.host_tpm(conf, pcr_selection=(0,))
    try:
        der = enrollment.check_installable(tpm.identity(), data, host)
    finally:
        tpm.ctx.close()
    path = pathlib.Path(layout.ak_certificate_path(conf))
    pem = x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM)
    path.parent.mkdir(parents=True, exist_ok=True)
    fileutils.atomic_write(str(path), pem)
    output.emit({'host': host, 'installed': str(path)}, args.format)
    return 0


def ca_enroll_local(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Every step on this host: the certificate is installed."""
    key, ca_cert = _ca_files(args.ca_dir)
    host = args.host or socket.gethostname()
    tpm = tpm_config.host_tpm(conf, pcr_selection=(0,))
    try:
        der = enrollment.enroll(tpm, key, ca_cert, host,
                                _ek_policy(args.ek_ca_bundle, ca_cert),
                                args.days)
    finally:
        tpm.ctx.close()
    path = pathlib.Path(layout.ak_certificate_path(conf))
    path.parent.mkdir(parents=True, exist_ok=True)
    fileutils.atomic_write(str(path), x509.load_der_x509_certificate(
        der).public_bytes(serialization.Encoding.PEM))
    output.emit({'host': host, 'installed': str(path)}, args.format)
    return 0
