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


"""Exceptions of the data plane (swtpm and QEMU processes).

No exception text carries key material: keys are only ever referred to by
the instance they belong to.
"""

from nova_vtpm_migration import exception
from nova_vtpm_migration.i18n import _


class DataplaneError(exception.VtpmMigrationException):
    """Base class of every data-plane error."""

    msg_fmt = _('vTPM data plane error: %(reason)s')


class ProcessStartError(DataplaneError):
    """A swtpm or QEMU process did not start or died while starting."""

    msg_fmt = _('%(what)s did not start: %(reason)s')


class ProcessTimeout(DataplaneError):
    """A process did not reach the expected state in time."""

    msg_fmt = _('%(what)s did not %(action)s within %(timeout).1f s')


class QmpError(DataplaneError):
    """QEMU answered a QMP command with an error."""

    msg_fmt = _('QMP command %(command)s failed: %(error_class)s: '
                '%(desc)s')


class QmpConnectionError(DataplaneError):
    """The QMP socket could not be used (closed, garbage, timeout)."""

    msg_fmt = _('QMP connection %(path)s: %(reason)s')


class SwtpmCtrlError(DataplaneError):
    """A swtpm control-channel command failed."""

    msg_fmt = _('swtpm control command %(command)s on %(path)s failed: '
                '%(reason)s')


class InvalidVtpmKey(DataplaneError):
    """A vTPM state key has an unsupported size."""

    msg_fmt = _('vTPM key must be 16 or 32 bytes, got %(size)d bytes')


class MigrationFailed(DataplaneError):
    """The QEMU live migration did not complete on both sides."""

    msg_fmt = _('Live migration of instance %(instance)s failed: '
                '%(reason)s')


class MigrationTimeout(MigrationFailed):
    """The QEMU live migration did not finish in time."""

    msg_fmt = _('Live migration of instance %(instance)s did not finish '
                'within %(timeout).1f s (last status %(status)s)')


class InstanceNotFound(DataplaneError):
    """A simulated host has no such instance."""

    msg_fmt = _('Host %(host)s has no instance %(instance)s')


class ProvisioningError(DataplaneError):
    """Provisioning or reading back a vTPM through tpm2-pytss failed."""

    msg_fmt = _('vTPM content of %(state_dir)s: %(reason)s')
