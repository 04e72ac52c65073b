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


"""TPM object names of public areas, and a guard around the verifier.

``checked`` turns anything but a documented error that the TPM layer's
parsers raise on hostile input (``ValueError`` from tpm2-pytss, ...)
into :class:`~.errors.InvalidEvidence`, so no input from a peer can end
the protocol with an undocumented exception.
"""

import collections.abc
import contextlib

from cryptography import exceptions as crypto_exceptions
from cryptography import x509
import tpm2_pytss

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import errors


@contextlib.contextmanager
def checked(what: str) -> collections.abc.Iterator[None]:
    """Map undocumented parser failures to ``InvalidEvidence``.

    :param what: the evidence being checked (for the message).
    """
    try:
        yield
    except exception.VtpmMigrationException:
        raise
    except (tpm2_pytss.TSS2_Exception, ValueError, TypeError, KeyError,
            IndexError, OverflowError, AttributeError, x509.InvalidVersion,
            crypto_exceptions.UnsupportedAlgorithm) as exc:
        raise errors.InvalidEvidence(what=what,
                                     reason=type(exc).__name__) from None


def object_name(public: bytes, field: str = 'public') -> bytes:
    """Return the TPM name of a marshalled ``TPM2B_PUBLIC``.

    :param public: the marshalled public area.
    :param field: field name used in the error.
    :raises FieldOutOfRange: not exactly one valid ``TPM2B_PUBLIC``.
    """
    try:
        pub, used = tpm2_pytss.TPM2B_PUBLIC.unmarshal(public)
        if used != len(public):
            raise errors.FieldOutOfRange(field=field,
                                         reason='trailing bytes')
        # An unknown name algorithm fails here (tpm2-pytss raises
        # ValueError), not at unmarshalling.
        return bytes(pub.get_name())
    except (tpm2_pytss.TSS2_Exception, ValueError, TypeError):
        raise errors.FieldOutOfRange(field=field,
                                     reason='not a TPM2B_PUBLIC with a '
                                            'known name algorithm') from None
