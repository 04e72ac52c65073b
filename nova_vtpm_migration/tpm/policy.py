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

"""The attestation (trust) policy and PCR policy digests.

A :class:`TrustPolicy` is loaded from a versioned JSON document::

    {
      "version": 2,
      "attestation_ca_bundle": ["-----BEGIN CERTIFICATE-----..."],
      "ek_ca_bundle": ["-----BEGIN CERTIFICATE-----...", "..."],
      "crls": ["-----BEGIN X509 CRL-----..."],
      "ek_fingerprints": ["<sha256 hex of a DER EK certificate>"],
      "pcr_bank": "sha256",
      "pcr_selection": [0, 1, 2, 3, 7],
      "golden_sets": [
        {"name": "firmware-1.2", "pcrs": {"0": "<hex>", "7": ["<hex>"]}}
      ],
      "min_firmware_version": 4296310784,
      "max_evidence_age": 60
    }

``attestation_ca_bundle`` holds the operator's attestation CA(s), which
issue the AK certificates binding each compute's host name to its TPM
(:mod:`~nova_vtpm_migration.tpm.akcert`). ``ek_ca_bundle`` holds the TPM
vendors' EK CAs, including the intermediates (EK certificates come without
their chain). Each bundle is either a list of PEM certificates or the path
of a PEM file (relative paths are relative to the policy file); so is
the optional ``crls`` (revocation lists of any of these CAs).
``ek_fingerprints`` is optional (no allow-list); ``min_firmware_version``
is optional (the TPM firmware version every quote must reach). A version 1
document (no attestation CA) is refused with the command that upgrades it
(``nova-vtpm-migration policy upgrade``). Every golden set names the
allowed value(s) of every selected PCR; a host is in policy when its PCR
values match at least one set. Each violated rule raises its own
:class:`~nova_vtpm_migration.tpm.errors.PolicyViolation`.
"""

import collections.abc
import dataclasses
import hashlib
import json
import os
import pathlib
import typing as ty

from cryptography import x509
import jsonschema

from nova_vtpm_migration import exception
from nova_vtpm_migration.tpm import errors

POLICY_VERSION = 2
#: The previous document version, which :func:`upgrade` converts.
LEGACY_VERSION = 1
PCR_BANK = 'sha256'
#: ``TPM2_ALG_SHA256``.
TPM2_ALG_SHA256 = 0x000B
#: ``TPM2_CC_PolicyPCR``.
TPM2_CC_POLICY_PCR = 0x0000017F
_MAX_PCR = 23
_HEX64 = '^[0-9a-fA-F]{64}$'
_PCR_KEY = '^([0-9]|1[0-9]|2[0-3])$'
_PEMS = {'oneOf': [
    {'type': 'string', 'minLength': 1},
    {'type': 'array', 'minItems': 1,
     'items': {'type': 'string', 'minLength': 1}},
]}

SCHEMA: dict[str, ty.Any] = {
    'type': 'object',
    'additionalProperties': False,
    'required': ['version', 'attestation_ca_bundle', 'ek_ca_bundle',
                 'pcr_selection', 'golden_sets'],
    'properties': {
        'version': {'const': POLICY_VERSION},
        'attestation_ca_bundle': _PEMS,
        'ek_ca_bundle': _PEMS,
        'crls': _PEMS,
        'min_firmware_version': {'type': 'integer', 'minimum': 0,
                                 'maximum': 2 ** 64 - 1},
        'ek_fingerprints': {'type': 'array', 'minItems': 1,
                            'items': {'type': 'string', 'pattern': _HEX64}},
        'pcr_bank': {'const': PCR_BANK},
        'pcr_selection': {
            'type': 'array', 'minItems': 1, 'uniqueItems': True,
            'items': {'type': 'integer', 'minimum': 0,
                      'maximum': _MAX_PCR}},
        'golden_sets': {
            'type': 'array', 'minItems': 1,
            'items': {
                'type': 'object', 'additionalProperties': False,
                'required': ['name', 'pcrs'],
                'properties': {
                    'name': {'type': 'string', 'minLength': 1},
                    'pcrs': {
                        'type': 'object',
                        'propertyNames': {'pattern': _PCR_KEY},
                        'additionalProperties': {'oneOf': [
                            {'type': 'string', 'pattern': _HEX64},
                            {'type': 'array', 'minItems': 1,
                             'items': {'type': 'string',
                                       'pattern': _HEX64}},
                        ]},
                    },
                },
            },
        },
        'max_evidence_age': {'type': 'integer', 'minimum': 1},
    },
}


def pcr_selection_bytes(selection: collections.abc.Iterable[int]) -> bytes:
    """Marshalled ``TPML_PCR_SELECTION`` of sha256 PCRs ``selection``.

    :param selection: PCR indices (0-23).
    """
    bitmap = bytearray(3)
    for index in selection:
        if not 0 <= index <= _MAX_PCR:
            raise ValueError(f'PCR index {index} out of range')
        bitmap[index // 8] |= 1 << (index % 8)
    return ((1).to_bytes(4, 'big') + TPM2_ALG_SHA256.to_bytes(2, 'big')
            + bytes([3]) + bytes(bitmap))


def pcr_composite_digest(
        values: collections.abc.Mapping[int, bytes]) -> bytes:
    """SHA-256 over the PCR values in ascending index order (the digest a
    quote and ``TPM2_PolicyPCR`` use).

    :param values: PCR index -> 32-byte value.
    """
    return hashlib.sha256(
        b''.join(values[i] for i in sorted(values))).digest()


def pcr_policy_digest(values: collections.abc.Mapping[int, bytes]) -> bytes:
    """The ``authPolicy`` of an object whose policy is ``TPM2_PolicyPCR``
    over the sha256 PCRs ``values`` (computed in software).

    :param values: PCR index -> 32-byte value; the keys are the selection.
    """
    return hashlib.sha256(
        bytes(32) + TPM2_CC_POLICY_PCR.to_bytes(4, 'big')
        + pcr_selection_bytes(values) + pcr_composite_digest(values)
    ).digest()


@dataclasses.dataclass(frozen=True)
class GoldenSet:
    """One allowed combination of PCR values.

    :ivar name: a label, e.g. a firmware version.
    :ivar pcrs: PCR index -> allowed 32-byte values.
    """

    name: str
    pcrs: collections.abc.Mapping[int, frozenset[bytes]]

    def mismatches(self, values: collections.abc.Mapping[int, bytes]
                   ) -> list[int]:
        """PCR indices whose value is not allowed by this set."""
        return [i for i in sorted(self.pcrs)
                if values.get(i) not in self.pcrs[i]]


@dataclasses.dataclass(frozen=True)
class TrustPolicy:
    """Reference values a peer host's TPM evidence must meet.

    :ivar ek_ca_certificates: trusted EK CA certificates (roots and
        intermediates).
    :ivar attestation_ca_certificates: the attestation CA(s) whose AK
        certificates bind host names to TPMs.
    :ivar crls: revocation lists of any of these CAs.
    :ivar min_firmware_version: lowest accepted TPM firmware version
        (``TPMS_ATTEST.firmwareVersion``), or ``None``.
    :ivar ek_fingerprints: allowed EK certificate SHA-256 fingerprints, or
        ``None`` for no allow-list.
    :ivar pcr_selection: quoted sha256 PCR indices, ascending.
    :ivar golden_sets: allowed PCR value sets.
    :ivar max_evidence_age: maximum evidence age in seconds.
    """

    ek_ca_certificates: tuple[x509.Certificate, ...]
    ek_fingerprints: frozenset[str] | None
    pcr_selection: tuple[int, ...]
    golden_sets: tuple[GoldenSet, ...]
    max_evidence_age: int = 60
    pcr_bank: str = PCR_BANK
    version: int = POLICY_VERSION
    attestation_ca_certificates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    min_firmware_version: int | None = None

    @classmethod
    def from_dict(cls, data: ty.Any, *, source: str = '<policy>',
                  base_dir: str | os.PathLike[str] | None = None,
                  default_max_age: int = 60) -> 'TrustPolicy':
        """Validate and build a policy from its JSON document.

        :param data: the decoded JSON document.
        :param source: name of the document for error messages.
        :param base_dir: directory against which a relative
            ``ek_ca_bundle`` path is resolved.
        :param default_max_age: used when ``max_evidence_age`` is absent.
        :raises exception.PolicyFileError: the document is invalid.
        """
        def bad(reason: str) -> exception.PolicyFileError:
            return exception.PolicyFileError(path=source, reason=reason)

        if isinstance(data, dict) and data.get('version') == LEGACY_VERSION:
            raise bad('a version 1 policy has no attestation CA, so it '
                      'cannot bind host names to TPMs; convert it with '
                      '"nova-vtpm-migration policy upgrade '
                      f'{source} --attestation-ca <PEM> --output <file>" '
                      'and enroll every host with that CA')
        try:
            jsonschema.validate(data, SCHEMA)
        except jsonschema.ValidationError as exc:
            where = '/'.join(str(p) for p in exc.absolute_path) or '(root)'
            raise bad(f'{where}: {exc.message}') from exc
        selection = tuple(sorted(data['pcr_selection']))

        def pems(key: str) -> bytes:
            bundle = data[key]
            if not isinstance(bundle, str):
                return '\n'.join(bundle).encode()
            path = pathlib.Path(bundle)
            if not path.is_absolute() and base_dir is not None:
                path = pathlib.Path(base_dir) / path
            try:
                return path.read_bytes()
            except OSError as exc:
                raise bad(f'cannot read {key} {path}: '
                          f'{exc.strerror}') from exc

        def certificates(key: str) -> tuple[x509.Certificate, ...]:
            try:
                return tuple(x509.load_pem_x509_certificates(pems(key)))
            except ValueError as exc:
                raise bad(f'{key}: not PEM certificates ({exc})') from exc

        cas = certificates('ek_ca_bundle')
        attestation_cas = certificates('attestation_ca_bundle')
        crls: list[x509.CertificateRevocationList] = []
        if 'crls' in data:
            text = pems('crls').decode(errors='replace')
            blocks = [b for b in text.split('-----END X509 CRL-----')
                      if 'BEGIN X509 CRL' in b]
            try:
                crls = [x509.load_pem_x509_crl(
                    (b.strip() + '\n-----END X509 CRL-----\n').encode())
                    for b in blocks]
            except ValueError as exc:
                raise bad(f'crls: not PEM CRLs ({exc})') from exc
            if not crls:
                raise bad('crls: no PEM CRL')
        sets = []
        for raw in data['golden_sets']:
            pcrs = {int(k): frozenset(bytes.fromhex(v) for v in (
                [vals] if isinstance(vals, str) else vals))
                for k, vals in raw['pcrs'].items()}
            if set(pcrs) != set(selection):
                raise bad(f'golden set {raw["name"]!r} covers PCRs '
                          f'{sorted(pcrs)}, the selection is '
                          f'{list(selection)}')
            sets.append(GoldenSet(name=raw['name'], pcrs=pcrs))
        fps = data.get('ek_fingerprints')
        return cls(
            ek_ca_certificates=cas,
            ek_fingerprints=(frozenset(f.lower() for f in fps)
                             if fps is not None else None),
            pcr_selection=selection,
            golden_sets=tuple(sets),
            max_evidence_age=data.get('max_evidence_age', default_max_age),
            attestation_ca_certificates=attestation_cas,
            crls=tuple(crls),
            min_firmware_version=data.get('min_firmware_version'))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             default_max_age: int = 60) -> 'TrustPolicy':
        """Load and validate a policy file.

        :param path: the JSON policy file.
        :param default_max_age: used when ``max_evidence_age`` is absent.
        :raises exception.PolicyFileError: unreadable or invalid.
        """
        path = pathlib.Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise exception.PolicyFileError(
                path=str(path), reason=exc.strerror) from exc
        except ValueError as exc:
            raise exception.PolicyFileError(
                path=str(path), reason=f'not JSON: {exc}') from exc
        return cls.from_dict(data, source=str(path), base_dir=path.parent,
                             default_max_age=default_max_age)

    @classmethod
    def from_golden(cls, ca_pems: collections.abc.Sequence[str],
                    pcr_values: collections.abc.Mapping[int, bytes], *,
                    attestation_ca_pems: collections.abc.Sequence[str],
                    ek_fingerprints: collections.abc.Iterable[str] | None
                    = None, name: str = 'golden',
                    max_evidence_age: int = 60) -> 'TrustPolicy':
        """Build a policy from a golden host's PCR values.

        :param ca_pems: trusted EK CA certificates (PEM).
        :param pcr_values: the golden host's PCR index -> value.
        :param attestation_ca_pems: the attestation CA(s) (PEM).
        :param ek_fingerprints: optional EK allow-list.
        :param name: name of the single golden set.
        :param max_evidence_age: maximum evidence age in seconds.
        """
        return cls.from_dict(cls.document(
            ca_pems, [(name, pcr_values)],
            attestation_ca_pems=attestation_ca_pems,
            ek_fingerprints=ek_fingerprints,
            max_evidence_age=max_evidence_age))

    @staticmethod
    def document(ca_pems: collections.abc.Sequence[str],
                 golden: collections.abc.Sequence[
                     tuple[str, collections.abc.Mapping[int, bytes]]], *,
                 attestation_ca_pems: collections.abc.Sequence[str],
                 ek_fingerprints: collections.abc.Iterable[str] | None
                 = None, max_evidence_age: int = 60,
                 crl_pems: collections.abc.Sequence[str] = (),
                 min_firmware_version: int | None = None
                 ) -> dict[str, ty.Any]:
        """The JSON document of a policy (see :meth:`from_dict`).

        :param ca_pems: trusted EK CA certificates (PEM).
        :param golden: (name, PCR index -> value) of every golden set.
        :param attestation_ca_pems: the attestation CA(s) (PEM).
        :param ek_fingerprints: optional EK allow-list.
        :param max_evidence_age: maximum evidence age in seconds.
        :param crl_pems: optional revocation lists (PEM).
        :param min_firmware_version: optional lowest TPM firmware version.
        """
        doc: dict[str, ty.Any] = {
            'version': POLICY_VERSION,
            'attestation_ca_bundle': list(attestation_ca_pems),
            'ek_ca_bundle': list(ca_pems),
            'pcr_bank': PCR_BANK,
            'pcr_selection': sorted(golden[0][1]),
            'golden_sets': [
                {'name': n, 'pcrs': {str(i): v.hex()
                                     for i, v in sorted(vals.items())}}
                for n, vals in golden],
            'max_evidence_age': max_evidence_age,
        }
        if ek_fingerprints is not None:
            doc['ek_fingerprints'] = sorted(ek_fingerprints)
        if crl_pems:
            doc['crls'] = list(crl_pems)
        if min_firmware_version is not None:
            doc['min_firmware_version'] = min_firmware_version
        return doc

    def check_firmware_version(self, version: int) -> None:
        """Refuse a TPM whose firmware is older than the policy allows.

        :raises errors.PolicyViolation: rule ``min_firmware_version``.
        """
        if (self.min_firmware_version is not None
                and version < self.min_firmware_version):
            raise errors.PolicyViolation(
                rule='min_firmware_version',
                expected=f'>= {self.min_firmware_version:#x}',
                actual=f'{version:#x}')

    def ek_fingerprint_violations(self, fingerprint: str
                                  ) -> list[errors.PolicyViolation]:
        """Violations of the EK allow-list by ``fingerprint``."""
        if self.ek_fingerprints is None or \
                fingerprint.lower() in self.ek_fingerprints:
            return []
        return [errors.PolicyViolation(
            rule='ek_fingerprints',
            expected=f'one of {len(self.ek_fingerprints)} allowed EKs',
            actual=fingerprint)]

    def pcr_violations(self, values: collections.abc.Mapping[int, bytes]
                       ) -> list[errors.PolicyViolation]:
        """Violations of the PCR rules by the PCR values ``values``.

        Empty when the selection matches and one golden set matches;
        otherwise one violation per mismatching PCR of the closest set.
        """
        if tuple(sorted(values)) != self.pcr_selection:
            return [errors.PolicyViolation(
                rule='pcr_selection', expected=list(self.pcr_selection),
                actual=sorted(values))]
        best = min(self.golden_sets, key=lambda g: len(g.mismatches(values)))
        return [errors.PolicyViolation(
            rule=f'pcr[{i}]',
            expected='one of ' + ', '.join(sorted(
                v.hex() for g in self.golden_sets for v in g.pcrs[i])),
            actual=values[i].hex()) for i in best.mismatches(values)]

    def check_pcr_values(self, values: collections.abc.Mapping[int, bytes]
                         ) -> None:
        """Raise the first PCR rule violation of ``values``, if any.

        :raises errors.PolicyViolation: rule ``pcr_selection`` or
            ``pcr[<index>]``.
        """
        violations = self.pcr_violations(values)
        if violations:
            raise violations[0]

    def check_ek_fingerprint(self, fingerprint: str) -> None:
        """Raise when the EK allow-list does not contain ``fingerprint``.

        :raises errors.PolicyViolation: rule ``ek_fingerprints``.
        """
        violations = self.ek_fingerprint_violations(fingerprint)
        if violations:
            raise violations[0]

    def check_evidence_age(self, age: float) -> None:
        """Raise when evidence of ``age`` seconds is too old (or from the
        future by more than a second).

        :raises errors.PolicyViolation: rule ``max_evidence_age``.
        """
        if not -1.0 <= age <= self.max_evidence_age:
            raise errors.PolicyViolation(
                rule='max_evidence_age',
                expected=f'0..{self.max_evidence_age}s', actual=f'{age:.1f}s')


def upgrade(document: ty.Any,
            attestation_ca_pems: collections.abc.Sequence[str]
            ) -> dict[str, ty.Any]:
    """Convert a version 1 policy document to the current version.

    Everything is kept; the attestation CA(s) that certify the hosts' AKs
    are added (the one thing version 1 lacks).

    :raises exception.PolicyFileError: not a version 1 document.
    """
    if not isinstance(document, dict) or \
            document.get('version') != LEGACY_VERSION:
        raise exception.PolicyFileError(
            path='<policy>', reason=f'not a version {LEGACY_VERSION} '
                                    'policy document')
    if not attestation_ca_pems:
        raise exception.PolicyFileError(
            path='<policy>', reason='no attestation CA certificate')
    upgraded = dict(document, version=POLICY_VERSION,
                    attestation_ca_bundle=list(attestation_ca_pems))
    TrustPolicy.from_dict(upgraded)   # valid as the new version
    return upgraded
