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

"""Exceptions of the host TPM trust layer.

Two families: :class:`TpmError` for failures of the local TPM (absent,
busy, failure mode, lockout, a command or policy session refused) and
:class:`VerificationError` for evidence from a peer that fails a check.
Messages never contain key material or secrets.
"""

from nova_vtpm_migration import exception
from nova_vtpm_migration.i18n import _


class TpmError(exception.VtpmMigrationException):
    """Base class of local TPM failures."""

    msg_fmt = _('TPM error: %(reason)s')


class TpmUnavailable(TpmError):
    """The TPM is absent or cannot be reached."""

    msg_fmt = _('TPM %(tcti)s is unavailable: %(reason)s')


class TpmBusy(TpmError):
    """The TPM lock could not be taken in time, or the TPM asked to retry."""

    msg_fmt = _('TPM %(tcti)s is busy: %(reason)s')


class TpmFailureMode(TpmError):
    """The TPM is in failure mode and needs a reset or a firmware fix."""

    msg_fmt = _('TPM %(tcti)s is in failure mode (%(command)s, '
                'rc=%(rc)#x)')


class TpmLockout(TpmError):
    """The TPM's dictionary-attack protection is in lockout."""

    msg_fmt = _('TPM %(tcti)s is in dictionary-attack lockout '
                '(%(command)s, rc=%(rc)#x)')


class TpmCommandError(TpmError):
    """A TPM command failed for another reason."""

    msg_fmt = _('TPM command %(command)s failed: %(error)s (rc=%(rc)#x)')


class TpmPolicyCheckFailed(TpmError):
    """A policy session was refused, e.g. because the PCRs changed."""

    msg_fmt = _('TPM refused the policy session for %(command)s: '
                '%(error)s (rc=%(rc)#x); the PCR values probably changed '
                'since the key was created')


class TpmStateError(TpmError):
    """The TPM holds an unexpected object or the cached key state is bad."""

    msg_fmt = _('Unexpected TPM state: %(reason)s')


class VerificationError(exception.VtpmMigrationException):
    """Base class of evidence verification failures."""

    msg_fmt = _('Evidence verification failed: %(reason)s')


class EkCertificateError(VerificationError):
    """The EK certificate is invalid, untrusted or does not match the EK."""

    msg_fmt = _('EK certificate rejected: %(reason)s')


class AkCertificateError(VerificationError):
    """The AK certificate does not chain to the attestation CA or does not
    certify this AK (and its EK)."""

    msg_fmt = _('AK certificate rejected: %(reason)s')


class HostBindingError(VerificationError):
    """The TPM identity is certified for another host than the expected
    one."""

    msg_fmt = _('Host %(expected)s was expected, but the TPM identity '
                'presented is certified for %(actual)s')


class CredentialError(VerificationError):
    """The AK is not proven to reside in the same TPM as the EK."""

    msg_fmt = _('Credential activation failed: %(reason)s')


class QuoteError(VerificationError):
    """A quote is malformed or of the wrong type."""

    msg_fmt = _('Quote rejected: %(reason)s')


class SignatureInvalid(VerificationError):
    """A TPM signature does not verify with the expected public key."""

    msg_fmt = _('Invalid signature on %(what)s: %(reason)s')


class QualifyingDataMismatch(VerificationError):
    """The attestation does not carry the expected nonce."""

    msg_fmt = _('Qualifying data of %(what)s does not match the expected '
                'nonce (expected %(expected)s, got %(actual)s)')


class PcrDigestMismatch(VerificationError):
    """The quoted PCR digest does not match the claimed PCR values."""

    msg_fmt = _('Quoted PCR digest %(actual)s does not match the digest '
                '%(expected)s of the claimed PCR values')


class PolicyViolation(VerificationError):
    """Evidence violates one rule of the trust policy."""

    msg_fmt = _('Policy rule %(rule)s violated: expected %(expected)s, '
                'got %(actual)s')

    @property
    def rule(self) -> str:
        """The name of the violated rule."""
        return str(self.kwargs.get('rule'))


class ClockRollback(VerificationError):
    """The TPM clock or reset/restart counters went backwards."""

    msg_fmt = _('TPM clock went backwards: %(field)s %(actual)s < '
                'previously accepted %(expected)s')


class BindingKeyError(VerificationError):
    """A binding key does not have exactly the required properties."""

    msg_fmt = _('Binding key rejected: %(reason)s')


class SigningKeyError(VerificationError):
    """A signing key does not have exactly the required properties."""

    msg_fmt = _('Signing key rejected: %(reason)s')


class CertifyError(VerificationError):
    """A TPM2_Certify attestation is malformed or does not match the key."""

    msg_fmt = _('Key certification rejected: %(reason)s')


class UnwrapError(VerificationError):
    """A wrapped key failed its integrity check after the TPM unwrap."""

    msg_fmt = _('Wrapped key rejected: %(reason)s')
