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

"""This host's check of its own evidence against its own trust policy.

Drives the placement trait (see
:mod:`nova_vtpm_migration.virt.libvirt.traits`): a host advertises itself
as an attested destination only while a fresh quote of its own TPM passes
the policy every peer will hold it to. It is a scheduling hint, never a
substitute for the peer-to-peer attestation of the protocol.
"""

import dataclasses
import os
import typing as ty

from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import verify


class SelfAttestation:
    """Quote this host's PCRs with a fresh nonce and verify the result.

    :param tpm: this host's ``nova_vtpm_migration.tpm.host.HostTpm``.
    :param policy: the ``TrustPolicy`` peers apply to this host.
    :param ak_certificate: this host's AK certificate.
    :param host: the host name peers expect it to certify.
    """

    def __init__(self, tpm: ty.Any, policy: ty.Any, ak_certificate: bytes,
                 host: str) -> None:
        self.tpm = tpm
        self.policy = policy
        self.ak_certificate = ak_certificate
        self.host = host
        self._clock: evidence.ClockInfo | None = None

    def check(self) -> None:
        """Verify identity and a fresh quote (TPM2_Quote) against the policy.

        :raises nova_vtpm_migration.tpm.errors.VerificationError: the
            evidence violates the policy (the error names the rule).
        :raises nova_vtpm_migration.tpm.errors.TpmError: the TPM failed.
        """
        identity = dataclasses.replace(self.tpm.identity(),
                                       ak_certificate=self.ak_certificate)
        verify.verify_identity(identity, self.policy, host=self.host)
        nonce = os.urandom(32)
        quote = self.tpm.quote(nonce)
        self._clock = verify.verify_quote(quote, identity, nonce,
                                          self.policy, self._clock)
