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

"""Operator commands that use this host's TPM: enroll, policy.

``enroll`` shows and records this host's TPM identity; ``policy generate``
writes a trust policy from a golden host; ``policy check`` validates a
policy file.
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
from nova_vtpm_migration.cmd import ca_commands
from nova_vtpm_migration.cmd import output
from nova_vtpm_migration.tpm import config as tpm_config
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify

ENROLLMENT_VERSION = ca_commands.ENROLLMENT_VERSION
read_enrollment = ca_commands.read_enrollment
DEFAULT_PCRS = (0, 1, 2, 3, 4, 5, 6, 7)


def _pcr_list(text: str) -> tuple[int, ...]:
    try:
        pcrs = tuple(sorted({int(p) for p in text.split(',') if p.strip()}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f'not a comma-separated list of PCR indices: {text!r}') from exc
    if not pcrs or any(not 0 <= p <= 23 for p in pcrs):
        raise argparse.ArgumentTypeError(
            f'PCR indices must be between 0 and 23: {text!r}')
    return pcrs


def add_parsers(sub: ty.Any) -> None:
    """Add the ``enroll`` and ``policy`` commands to *sub*."""
    p = sub.add_parser('enroll', help="show and record this host's TPM "
                                      'identity (EK certificate, AK); '
                                      "answer the attestation CA's "
                                      'challenge; install the AK '
                                      'certificate')
    p.add_argument('--host', default=None,
                   help="this host's Nova host name, [DEFAULT] host "
                        '(default: the host name)')
    p.add_argument('--output', default=None,
                   help='write the enrollment record (or, with --activate, '
                        'the response) to this file')
    step = p.add_mutually_exclusive_group()
    step.add_argument('--activate', metavar='CHALLENGE', default=None,
                      help='answer the challenge file of "ca challenge" '
                           'with the TPM (needs --output)')
    step.add_argument('--install', metavar='CERTIFICATE', default=None,
                      help='check the AK certificate of "ca issue" and '
                           'install it as [vtpm_migration] '
                           'ak_certificate_file')
    p.set_defaults(handler=enroll)
    ca_commands.add_parsers(sub)

    policy = sub.add_parser('policy', help='trust policy files')
    psub = policy.add_subparsers(dest='policy_command', metavar='ACTION')
    psub.required = True
    g = psub.add_parser('generate', help="write a policy from this (golden) "
                                         "host's PCR values")
    g.add_argument('--ca-bundle', required=True,
                   help='PEM file of the trusted EK CA certificates')
    g.add_argument('--attestation-ca', required=True,
                   help='PEM file of the attestation CA certificate(s) '
                        "that certify hosts' AKs")
    g.add_argument('--pcrs', type=_pcr_list, default=DEFAULT_PCRS,
                   help='comma-separated sha256 PCR indices (default 0-7)')
    g.add_argument('--name', default=None,
                   help='name of the golden set (default: the host name)')
    g.add_argument('--enrollment', action='append', default=[],
                   help='enrollment record of a host whose EK is allowed '
                        '(repeatable; without it any EK from the CAs is '
                        'allowed)')
    g.add_argument('--max-evidence-age', type=int, default=60,
                   help='maximum evidence age in seconds (default 60)')
    g.add_argument('--output', required=True, help='policy file to write')
    g.set_defaults(handler=policy_generate)
    c = psub.add_parser('check', help='validate a policy file')
    c.add_argument('path', help='the policy file')
    c.set_defaults(handler=policy_check)
    u = psub.add_parser('upgrade', help='convert a version 1 policy (add '
                                        'the attestation CA)')
    u.add_argument('path', help='the version 1 policy file')
    u.add_argument('--attestation-ca', required=True,
                   help='PEM file of the attestation CA certificate(s)')
    u.add_argument('--output', required=True, help='policy file to write')
    u.set_defaults(handler=policy_upgrade)


def _host_tpm(conf: cfg.ConfigOpts,
              pcrs: ty.Sequence[int] = DEFAULT_PCRS) -> host_mod.HostTpm:
    return tpm_config.host_tpm(conf, pcr_selection=pcrs)


def _write_json(path: str, document: ty.Any) -> None:
    target = pathlib.Path(path)
    tmp = target.with_name(target.name + '.tmp')
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + '\n')
    os.replace(tmp, target)


def enroll(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Show this host's TPM identity and optionally write its record (or
    run the ``--activate``/``--install`` step)."""
    if args.activate:
        if not args.output:
            raise exception.ConfigurationError(
                reason='--activate needs --output (the response file)')
        return ca_commands.activate(conf, args)
    if args.install:
        return ca_commands.install(conf, args)
    tpm = _host_tpm(conf)
    try:
        ident = tpm.identity()
    finally:
        tpm.ctx.close()
    cert = x509.load_der_x509_certificate(ident.ek_certificate)
    record = {
        'version': ENROLLMENT_VERSION,
        'host': args.host or socket.gethostname(),
        'ek_fingerprint': ident.ek_fingerprint,
        'ek_subject': cert.subject.rfc4514_string(),
        'ek_issuer': cert.issuer.rfc4514_string(),
        'ek_not_after': cert.not_valid_after_utc.isoformat(),
        'ak_name': objects.public_name(ident.ak_public).hex(),
        'ek_certificate': cert.public_bytes(
            serialization.Encoding.PEM).decode(),
        'ek_public': base64.b64encode(ident.ek_public).decode(),
        'ak_public': base64.b64encode(ident.ak_public).decode(),
    }
    if args.output:
        _write_json(args.output, record)
    shown = {k: v for k, v in record.items()
             if k not in ('ek_certificate', 'ek_public', 'ak_public')}
    if args.output:
        shown['record'] = args.output
    output.emit(shown, args.format)
    return 0


def _pems(path: str) -> list[str]:
    try:
        pem = pathlib.Path(path).read_text()
    except OSError as exc:
        raise exception.ConfigurationError(
            reason=f'cannot read CA bundle {path}: {exc.strerror}') from exc
    try:
        cas = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise exception.ConfigurationError(
            reason=f'{path} holds no PEM certificates') from exc
    return [c.public_bytes(serialization.Encoding.PEM).decode()
            for c in cas]


def policy_generate(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Write a trust policy from this host's current PCR values."""
    ca_pems = _pems(args.ca_bundle)
    attestation_pems = _pems(args.attestation_ca)
    fingerprints = None
    if args.enrollment:
        fingerprints = [read_enrollment(p)['ek_fingerprint']
                        for p in args.enrollment]
    tpm = _host_tpm(conf, args.pcrs)
    try:
        values = tpm.pcr_values()
        ident = tpm.identity()
    finally:
        tpm.ctx.close()
    name = args.name or socket.gethostname()
    document = policy_mod.TrustPolicy.document(
        ca_pems, [(name, values)], attestation_ca_pems=attestation_pems,
        ek_fingerprints=fingerprints,
        max_evidence_age=args.max_evidence_age)
    # The golden host's TPM itself must pass the policy it writes.
    verify.verify_ek_identity(ident, policy_mod.TrustPolicy.from_dict(
        document, source=args.output))
    _write_json(args.output, document)
    output.emit({'policy': args.output, 'golden_set': name,
                 'pcr_selection': list(args.pcrs),
                 'ek_ca_certificates': len(ca_pems),
                 'ek_allow_list': (len(fingerprints)
                                   if fingerprints is not None else None)},
                args.format)
    return 0


def policy_upgrade(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Convert a version 1 policy: everything kept, attestation CA added."""
    try:
        old = json.loads(pathlib.Path(args.path).read_text())
    except OSError as exc:
        raise exception.PolicyFileError(path=args.path,
                                        reason=exc.strerror) from exc
    except ValueError as exc:
        raise exception.PolicyFileError(path=args.path,
                                        reason=f'not JSON: {exc}') from exc
    document = policy_mod.upgrade(old, _pems(args.attestation_ca))
    _write_json(args.output, document)
    output.emit({'policy': args.output, 'from_version': old.get('version'),
                 'version': document['version'],
                 'attestation_ca_certificates': len(
                     document['attestation_ca_bundle'])}, args.format)
    return 0


def policy_check(conf: cfg.ConfigOpts, args: argparse.Namespace) -> int:
    """Validate a policy file and summarise it."""
    pol = policy_mod.TrustPolicy.load(args.path)
    output.emit({
        'policy': args.path,
        'valid': True,
        'version': pol.version,
        'pcr_bank': pol.pcr_bank,
        'pcr_selection': list(pol.pcr_selection),
        'golden_sets': [g.name for g in pol.golden_sets],
        'ek_ca_certificates': [c.subject.rfc4514_string()
                               for c in pol.ek_ca_certificates],
        'attestation_ca_certificates': [
            c.subject.rfc4514_string()
            for c in pol.attestation_ca_certificates],
        'crls': len(pol.crls),
        'min_firmware_version': pol.min_firmware_version,
        'ek_allow_list': (len(pol.ek_fingerprints)
                          if pol.ek_fingerprints is not None else None),
        'max_evidence_age': pol.max_evidence_age,
    }, args.format)
    return 0
