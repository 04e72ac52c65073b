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

"""A test attestation CA that enrolls simulated hosts, as an operator's
would (credential challenge answered by the host's swtpm).

One CA key per process is enough: :data:`CA` certifies every simulated
host's AK for the host name it is given.
"""

import collections.abc
import functools
import typing as ty

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import enrollment
from nova_vtpm_migration.tpm import policy as policy_mod


class AttestationCA:
    """An attestation CA (key in memory) for tests.

    :param name: its certificate's CN.
    """

    def __init__(self, name: str = 'test attestation CA') -> None:
        self.key_pem, self.cert_pem = akcert.make_ca(name)

    @property
    def pem(self) -> str:
        """The CA certificate (PEM), for trust policies."""
        return self.cert_pem.decode()

    def enroll(self, tpm: ty.Any, host: str,
               ek_ca_pems: collections.abc.Sequence[str],
               days: int = 365) -> bytes:
        """Run the enrollment with *tpm* (a ``HostTpm``) and return the
        DER AK certificate of *host*."""
        ek_policy = policy_mod.TrustPolicy.from_golden(
            ek_ca_pems, {0: bytes(32)}, attestation_ca_pems=[self.pem])
        return enrollment.enroll(tpm, self.key_pem, self.cert_pem, host,
                                 ek_policy, days)


@functools.cache
def default_ca() -> AttestationCA:
    """The attestation CA every test of this process shares."""
    return AttestationCA()


def golden_policy(ca_pems: collections.abc.Sequence[str],
                  pcr_values: collections.abc.Mapping[int, bytes],
                  **kwargs: ty.Any) -> policy_mod.TrustPolicy:
    """``TrustPolicy.from_golden`` trusting :func:`default_ca` as the
    attestation CA."""
    return policy_mod.TrustPolicy.from_golden(
        ca_pems, pcr_values, attestation_ca_pems=[default_ca().pem],
        **kwargs)


def policy_document(ca_pems: collections.abc.Sequence[str],
                    golden: collections.abc.Sequence[
                        tuple[str, collections.abc.Mapping[int, bytes]]],
                    **kwargs: ty.Any) -> dict[str, ty.Any]:
    """``TrustPolicy.document`` trusting :func:`default_ca` as the
    attestation CA."""
    return policy_mod.TrustPolicy.document(
        ca_pems, golden, attestation_ca_pems=[default_ca().pem], **kwargs)
