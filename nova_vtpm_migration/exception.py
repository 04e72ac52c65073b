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

"""Exceptions of nova-vtpm-migration.

Every exception carries a ``msg_fmt`` formatted with the keyword arguments
given at raise time, in the style of nova's and os-vif's exceptions.
Subpackages define their own trees below :class:`VtpmMigrationException`
(for example :mod:`nova_vtpm_migration.tpm.errors`) so that a caller can
catch one family at a time.

NOTE: never pass key material, plaintext secrets or unwrapped keys as a
format argument: exception text ends up in logs, API faults and RPC replies.
"""

import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration.i18n import _

LOG = logging.getLogger(__name__)


class VtpmMigrationException(Exception):
    """Base class of every exception raised by this package.

    Subclasses set :attr:`msg_fmt`; keyword arguments given to the
    constructor are interpolated into it. A format error is logged and the
    unformatted template is used, so a bad call site never hides the error.
    """

    msg_fmt: str = _('An unknown vTPM migration error occurred.')

    def __init__(self, message: str | None = None, **kwargs: ty.Any) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                LOG.exception('Exception in string format operation for %s',
                              type(self).__name__)
                message = self.msg_fmt
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class ConfigurationError(VtpmMigrationException):
    """A configuration option or file has an invalid value."""

    msg_fmt = _('Invalid configuration: %(reason)s')


class PolicyFileError(ConfigurationError):
    """The attestation policy file cannot be read or is invalid."""

    msg_fmt = _('Invalid attestation policy file %(path)s: %(reason)s')
