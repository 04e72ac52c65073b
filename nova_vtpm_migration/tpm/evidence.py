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

"""Evidence data carriers exchanged between hosts.

These frozen dataclasses hold only *public* TPM artefacts in their TPM wire
encoding (marshalled TPM2B/TPMS/TPMT structures, DER certificates). They are
what the protocol puts on the wire and what the software verifiers in
:mod:`nova_vtpm_migration.tpm.verify` check. Nothing here is secret, and
nothing here talks to a TPM.
"""

import dataclasses
import hashlib


@dataclasses.dataclass(frozen=True)
class HostIdentity:
    """A host's TPM identity: EK certificate, EK public area and AK, and
    the AK certificate that binds them to the host's name.

    :ivar ek_certificate: DER-encoded EK certificate read from TPM NV.
    :ivar ek_public: marshalled ``TPM2B_PUBLIC`` of the EK.
    :ivar ak_public: marshalled ``TPM2B_PUBLIC`` of the attestation key.
    :ivar ak_certificate: DER AK certificate from the operator's
        attestation CA (:mod:`nova_vtpm_migration.tpm.akcert`); empty
        until the host is enrolled.
    """

    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes
    ak_certificate: bytes = b''

    @property
    def ek_fingerprint(self) -> str:
        """Lower-case hex SHA-256 of the DER EK certificate."""
        return hashlib.sha256(self.ek_certificate).hexdigest()


@dataclasses.dataclass(frozen=True)
class CredentialChallenge:
    """A ``TPM2_MakeCredential`` output for an (EK, AK name) pair.

    :ivar credential_blob: marshalled ``TPM2B_ID_OBJECT``.
    :ivar encrypted_secret: marshalled ``TPM2B_ENCRYPTED_SECRET``.
    """

    credential_blob: bytes
    encrypted_secret: bytes


@dataclasses.dataclass(frozen=True)
class ClockInfo:
    """The ``TPMS_CLOCK_INFO`` of an attestation structure."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclasses.dataclass(frozen=True)
class Quote:
    """A ``TPM2_Quote`` result plus the PCR values it claims.

    :ivar attest: marshalled ``TPMS_ATTEST`` (type ``TPM_ST_ATTEST_QUOTE``).
    :ivar signature: marshalled ``TPMT_SIGNATURE`` by the AK.
    :ivar pcr_values: sha256-bank PCR index -> 32-byte value; the verifier
        recomputes the quoted PCR digest from these.
    """

    attest: bytes
    signature: bytes
    pcr_values: tuple[tuple[int, bytes], ...]


@dataclasses.dataclass(frozen=True)
class CertifiedKey:
    """A TPM key's public area and its ``TPM2_Certify`` by the AK.

    :ivar public: marshalled ``TPM2B_PUBLIC`` of the certified key.
    :ivar certify_attest: marshalled ``TPMS_ATTEST`` (``ATTEST_CERTIFY``).
    :ivar certify_signature: marshalled ``TPMT_SIGNATURE`` by the AK.
    """

    public: bytes
    certify_attest: bytes
    certify_signature: bytes


@dataclasses.dataclass(frozen=True)
class WrappedKey:
    """A secret wrapped in software to a TPM-resident ECDH binding key.

    The wrapper picks an ephemeral P-256 key, computes the ECDH shared
    x-coordinate with the binding key, derives a key-encryption key with
    HKDF-SHA256 and encrypts the secret with AES-256-GCM. Only
    ``TPM2_ECDH_ZGen`` on the binding key, which needs a PCR policy session,
    can recover the shared secret.

    :ivar ephemeral_point: uncompressed SEC1 encoding of the ephemeral key.
    :ivar nonce: 12-byte AES-GCM nonce.
    :ivar ciphertext: AES-GCM ciphertext and tag of the secret.
    """

    ephemeral_point: bytes
    nonce: bytes
    ciphertext: bytes
