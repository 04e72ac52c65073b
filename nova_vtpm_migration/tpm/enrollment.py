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

"""Enrollment of a host with the attestation CA, step by step.

The steps run on two machines: the host (which has the TPM) and the
attestation CA (whose key should stay offline)::

    host: record = identity()                       (enroll)
    CA:   check the EK against the EK CAs; secret; challenge =
          MakeCredential(EK, AK name, secret)        (ca challenge)
    host: proof = MAC(ActivateCredential(challenge), host, AK)
                                                     (enroll --activate)
    CA:   check proof; certificate = issue(AK, EK, host)
                                                     (ca issue)
    host: install the certificate                    (enroll --install)

:func:`enroll` runs them all in one process, for a CA that sits with the
host (DevStack, tests).
"""

import datetime

from cryptography import x509

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify


def challenge(identity: evidence.HostIdentity,
              ek_policy: policy_mod.TrustPolicy,
              now: datetime.datetime | None = None
              ) -> tuple[evidence.CredentialChallenge, bytes]:
    """CA side: check a host's EK and make its credential challenge.

    :param ek_policy: a policy whose EK CAs (and allow-list, CRLs) the
        host's EK must satisfy.
    :returns: the challenge for the host and the secret to keep until
        :func:`certify` (never sent in the clear).
    :raises errors.VerificationError: the EK or the AK is refused.
    """
    verify.verify_ek_identity(identity, ek_policy, now=now)
    secret = akcert.new_challenge_secret()
    return verify.make_credential(identity, secret), secret


def respond(tpm: object, challenge_: evidence.CredentialChallenge,
            host: str) -> bytes:
    """Host side: activate the credential in the TPM and prove it.

    :param tpm: the host's ``HostTpm``.
    :raises errors.CredentialError: the challenge is not for this TPM's
        EK and AK.
    """
    secret: bytes = tpm.activate_credential(challenge_)  # type: ignore
    identity: evidence.HostIdentity = tpm.identity()  # type: ignore
    return akcert.activation_proof(secret, host, identity.ak_public)


def certify(ca_key_pem: bytes, ca_cert_pem: bytes,
            identity: evidence.HostIdentity, host: str, secret: bytes,
            proof: bytes, days: int = 3 * 365) -> bytes:
    """CA side: check the host's proof and issue its AK certificate.

    :returns: the DER AK certificate.
    :raises errors.CredentialError: wrong proof.
    """
    akcert.check_activation(secret, host, identity.ak_public, proof)
    return akcert.issue(ca_key_pem, ca_cert_pem, identity, host, days)


def check_installable(identity: evidence.HostIdentity, certificate: bytes,
                      host: str) -> bytes:
    """Host side: the certificate is this TPM's AK's, for this host (its
    chain is checked against the trust policy when peers verify it).

    :returns: the DER certificate.
    :raises errors.AkCertificateError: it is another AK's or host's.
    """
    der = akcert.load(certificate)
    certified = akcert.certified_host(der)
    if certified.lower() != host.lower():
        raise errors.HostBindingError(expected=host, actual=certified)
    akcert.check_binding(identity, x509.load_der_x509_certificate(der))
    return der


def enroll(tpm: object, ca_key_pem: bytes, ca_cert_pem: bytes, host: str,
           ek_policy: policy_mod.TrustPolicy, days: int = 3 * 365) -> bytes:
    """All steps in one process (a CA next to the host).

    :returns: the DER AK certificate of *host*.
    """
    identity: evidence.HostIdentity = tpm.identity()  # type: ignore
    challenge_, secret = challenge(identity, ek_policy)
    proof = respond(tpm, challenge_, host)
    return certify(ca_key_pem, ca_cert_pem, identity, host, secret, proof,
                   days)
