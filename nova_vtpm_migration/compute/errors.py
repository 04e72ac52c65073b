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

"""Exceptions of the Nova integration layer.

The driver mixin turns every one of them into Nova's
``MigrationPreCheckError`` (pre-checks) or ``MigrationError`` (later steps),
so their text is what an operator reads in the instance action events. They
never carry key material.
"""

from nova_vtpm_migration import exception
from nova_vtpm_migration.i18n import _


class VirtIntegrationError(exception.VtpmMigrationException):
    """Base class of the Nova integration errors."""

    msg_fmt = _('vTPM migration error: %(reason)s')


class AttestationRefused(VirtIntegrationError):
    """A host failed the attestation of the other one."""

    msg_fmt = _('Attestation between source host %(source)s and '
                'destination host %(dest)s failed: %(reason)s')


class PeerWithoutPlugin(VirtIntegrationError):
    """The peer host does not answer on the plugin's RPC topic."""

    msg_fmt = _('Host %(peer)s does not run nova-vtpm-migration (no reply '
                'on topic %(topic)s within %(timeout)s s); refusing to '
                'live-migrate a vTPM instance with it '
                '([vtpm_migration] enforcement = refuse)')


class NotAttested(VirtIntegrationError):
    """The source has no attested destination for the instance."""

    msg_fmt = _('No attested destination is recorded on source host '
                '%(source)s for instance %(instance)s: the destination did '
                'not run the nova-vtpm-migration pre-check (is the plugin '
                'driver configured there?)')


class UnexpectedDestination(VirtIntegrationError):
    """A key was requested for a host that is not the attested one."""

    msg_fmt = _('Host %(dest)s asked for the vTPM secret of instance '
                '%(instance)s, but the attested destination is %(expected)s')


class KeyTransferFailed(VirtIntegrationError):
    """Phase 2 (moving the wrapped vTPM secret) failed."""

    msg_fmt = _('Moving the vTPM secret of instance %(instance)s from '
                '%(source)s to %(dest)s failed: %(reason)s')


class SecretUnavailable(VirtIntegrationError):
    """The source cannot read the instance's vTPM secret."""

    msg_fmt = _('The vTPM secret of instance %(instance)s is not available '
                'on host %(host)s: %(reason)s')


class EngineUnavailable(VirtIntegrationError):
    """The protocol engine could not be started on this host."""

    msg_fmt = _('The vTPM migration engine of host %(host)s is not '
                'available: %(reason)s')
