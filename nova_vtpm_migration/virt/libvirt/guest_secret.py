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

"""The libvirt vTPM secret of protected instances, sealed at rest.

With ``[vtpm_migration] libvirt_secret_storage = sealed`` (the default) a
protected instance (vTPM with ``hw:tpm_secret_security=host``) has no
persistent libvirt secret. Its secret is kept in the host's vault
(:mod:`nova_vtpm_migration.compute.vault`) and libvirt gets an
ephemeral, private secret only while it starts the guest's swtpm:

==============================  ============================================
Nova step                       plugin part
==============================  ============================================
guest start (spawn, hard        :func:`get_or_create`: open the vault (or
reboot, power on, resume after  take the secret into it), define an
host boot, resize finish)       ephemeral private secret; Nova's
                                ``_create_guest`` undefines it once the
                                guest runs
source pre-check                :func:`add_to_migrate_data`: only the
                                secret's UUID goes into ``migrate_data``
dest ``pre_live_migration``     :func:`define_incoming`: ephemeral private
                                secret from the unwrapped key
dest post-migration             :func:`release_after_incoming`: undefine it
instance deleted / left         :func:`forget`: destroy the vault's copy
compute start                   :func:`sweep`: forget the copies of
                                instances deleted while it was down
==============================  ============================================

These hook into two private methods of Nova's libvirt driver
(``_get_or_create_secret_for_vtpm`` and
``_add_vtpm_secret_to_live_migrate_data``): Nova has no public extension
point there. ``tests/unit/virt/libvirt/test_mixin.py`` pins their
signatures.
"""

import typing as ty

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova import vtpm as nova_vtpm
from oslo_log import log as logging

from nova_vtpm_migration import conf
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.virt import flavor_policy

LOG = logging.getLogger(__name__)
CONF = conf.CONF

USAGE = 'vtpm'
#: What :func:`get_or_create` returns as the secret security: anything
#: but ``host`` makes Nova's ``_create_guest`` undefine the libvirt secret
#: right after the guest started.
SEALED = 'sealed'

Upstream = ty.Callable[..., ty.Any]
Host = compute_host.ComputeHost


def uses_vault(instance: ty.Any) -> bool:
    """Return whether the instance's secret is kept sealed on this host."""
    return (CONF.vtpm_migration.libvirt_secret_storage == SEALED
            and flavor_policy.is_protected(instance.flavor,
                                           instance.image_meta))


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _take_over(vtpm: Host, host: ty.Any, context: ty.Any,
               instance: ty.Any) -> tuple[str, bytes]:
    """Seal a secret that the vault does not hold yet.

    It comes from a persistent libvirt secret left by upstream ``host``
    mode, else from the key manager (as Nova would get it).
    """
    legacy = host.find_secret(USAGE, instance.uuid)
    secret: bytes | None = None
    if legacy is not None:
        try:
            secret = bytes(legacy.value())
            secret_uuid = str(legacy.UUIDString())
        except Exception:  # noqa: BLE001 - private or empty: ask Nova's KM
            secret = None
    if secret is None:
        secret_uuid, passphrase = nova_vtpm.get_or_create_secret(context,
                                                                 instance)
        secret = _as_bytes(passphrase)
    vtpm.adopt_secret(instance.uuid, secret)
    if legacy is not None:
        # Sealed durably first: the caller's _define() now replaces the
        # plaintext copy.
        LOG.info('Moved the persistent libvirt vTPM secret into the vault',
                 instance=instance)
    return secret_uuid, secret


def _define(host: ty.Any, instance: ty.Any, secret_uuid: str,
            secret: bytes, sealed: bool) -> ty.Any:
    """(Re)define the instance's libvirt vTPM secret and return it.

    Ephemeral and private when *sealed*, persistent and readable (upstream
    ``host`` semantics) otherwise. A secret already defined for the
    instance is undefined first: no persistent copy may survive next to a
    sealed one, and libvirt does not change the flags of a defined secret.
    """
    host.delete_secret(USAGE, instance.uuid)
    return host.create_secret(USAGE, instance.uuid, password=secret,
                              uuid=secret_uuid, ephemeral=sealed,
                              private=sealed)


def get_or_create(vtpm: Host, host: ty.Any, context: ty.Any,
                  instance: ty.Any, upstream: Upstream) -> tuple[ty.Any,
                                                                 str | None]:
    """``_get_or_create_secret_for_vtpm`` for a guest about to start.

    :param upstream: Nova's implementation (used unless the instance's
        secret is kept sealed).
    :returns: the ephemeral private libvirt secret and :data:`SEALED`.
    :raises SecretUnavailable: the vault cannot open the secret (for
        example its key is not ``ACTIVE`` here).
    :raises EngineUnavailable: this host's service is down.
    """
    if not uses_vault(instance):
        if (flavor_policy.is_protected(instance.flavor, instance.image_meta)
                and _holds(vtpm, instance.uuid)):
            return _release_from_vault(vtpm, host, instance)
        return ty.cast(tuple[ty.Any, str | None], upstream(context, instance))
    if vtpm.holds_secret(instance.uuid):
        secret = vtpm.open_secret(instance.uuid)
        secret_uuid = instance.system_metadata['vtpm_secret_uuid']
    else:
        secret_uuid, secret = _take_over(vtpm, host, context, instance)
    try:
        libvirt_secret = _define(host, instance, secret_uuid, secret,
                                 sealed=True)
    finally:
        del secret
    return libvirt_secret, SEALED


def _release_from_vault(vtpm: Host, host: ty.Any,
                        instance: ty.Any) -> tuple[ty.Any, str]:
    """``libvirt`` storage after ``sealed``: give the vault's secret back
    to libvirt as upstream ``host`` mode keeps it, then forget it."""
    secret = vtpm.open_secret(instance.uuid)
    try:
        libvirt_secret = _define(
            host, instance, instance.system_metadata['vtpm_secret_uuid'],
            secret, sealed=False)
    finally:
        del secret
    vtpm.forget_secret(instance.uuid)
    LOG.warning('Moved the vTPM secret from the vault into a persistent '
                'libvirt secret ([vtpm_migration] libvirt_secret_storage '
                '= libvirt)', instance=instance)
    return libvirt_secret, 'host'


def add_to_migrate_data(vtpm: Host, instance: ty.Any,
                        migrate_data: ty.Any, upstream: Upstream) -> None:
    """``_add_vtpm_secret_to_live_migrate_data`` on the source.

    When the vault holds the secret only its UUID goes into
    ``migrate_data`` (the value is ``None``, so Nova's destination defines
    nothing from the bus); the secret is not even decrypted here.
    """
    if uses_vault(instance) and _holds(vtpm, instance.uuid):
        migrate_data.vtpm_secret_uuid = (
            instance.system_metadata['vtpm_secret_uuid'])
        migrate_data.vtpm_secret_value = None
        return
    upstream(instance, migrate_data)


def _holds(vtpm: Host, instance_uuid: str) -> bool:
    try:
        return bool(vtpm.holds_secret(instance_uuid))
    except errors.VirtIntegrationError:
        return False


def fill_for_fallback(vtpm: Host, instance: ty.Any,
                      migrate_data: ty.Any) -> None:
    """Put the plaintext secret into ``migrate_data`` for an upstream
    (unprotected) migration that ``[vtpm_migration] enforcement = warn``
    allowed, when only the vault has it."""
    if migrate_data.vtpm_secret_value:
        return
    if _holds(vtpm, instance.uuid):
        migrate_data.vtpm_secret_value_bytes = vtpm.open_secret(
            instance.uuid)


def define_incoming(host: ty.Any, instance: ty.Any, secret_uuid: str,
                    secret: bytes) -> None:
    """Define the incoming guest's libvirt secret on the destination.

    Ephemeral and private when the secret is kept sealed (the vault
    already holds its envelope); upstream ``host`` semantics otherwise.
    """
    sealed = uses_vault(instance)
    _define(host, instance, secret_uuid, secret, sealed)
    LOG.info('Defined the %s vTPM libvirt secret from the unwrapped key',
             'ephemeral private' if sealed else 'persistent',
             instance=instance)


def release_after_incoming(vtpm: Host, host: ty.Any,
                           instance: ty.Any) -> None:
    """Destination, after the guest arrived: undefine its libvirt secret.

    A secret that arrived outside the protocol (an upstream migration that
    ``enforcement = warn`` allowed) is taken into the vault first.
    """
    if not uses_vault(instance):
        return
    try:
        if not _holds(vtpm, instance.uuid):
            legacy = host.find_secret(USAGE, instance.uuid)
            if legacy is None:
                return
            vtpm.adopt_secret(instance.uuid, bytes(legacy.value()))
        host.delete_secret(USAGE, instance.uuid)
    except Exception:
        LOG.exception('Could not release the libvirt vTPM secret after the '
                      'incoming live migration; it stays defined until the '
                      'next guest start', instance=instance)


def forget(vtpm: Host, instance: ty.Any) -> None:
    """Destroy this host's sealed copy (the instance is gone from here).

    Keys that are moving are left to the protocol. Never raises: the
    instance's own cleanup must go on.
    """
    if not _holds(vtpm, instance.uuid):
        return
    try:
        vtpm.forget_secret(instance.uuid)
    except Exception:
        LOG.exception('Could not destroy the sealed vTPM secret',
                      instance=instance)
    else:
        LOG.info('Destroyed the sealed vTPM secret on this host',
                 instance=instance)


def sweep(vtpm: Host, hostname: str) -> list[str]:
    """Compute start: forget the sealed copies of deleted instances.

    An instance deleted while its compute service was down (Nova's API
    deletes it locally) leaves its sealed secret behind. Only instances
    Nova recorded as deleted are forgotten; a copy of an instance that
    Nova places on another host is reported, not destroyed (Nova's
    record may lag behind a migration). Never raises.

    :returns: the instances whose copies were destroyed.
    """
    forgotten = []
    try:
        # elevated() copies; the service's admin context may be shared
        # (and cell-targeted).
        context = nova_context.get_admin_context().elevated(
            read_deleted='yes')
        for uuid in vtpm.sealed_instances():
            try:
                instance = objects.Instance.get_by_uuid(context, uuid,
                                                        expected_attrs=[])
            except nova_exception.InstanceNotFound:
                LOG.warning('The vault of host %s holds the vTPM secret of '
                            'instance %s, which Nova does not know',
                            hostname, uuid)
                continue
            if instance.deleted:
                vtpm.forget_secret(uuid)
                forgotten.append(uuid)
            elif instance.host != hostname:
                LOG.warning('The vault of host %s holds the vTPM secret of '
                            'instance %s, which Nova places on %s; check '
                            'with "nova-vtpm-migration journal status"',
                            hostname, uuid, instance.host)
    except Exception:
        LOG.exception('Could not check the vault of host %s against Nova',
                      hostname)
    if forgotten:
        LOG.info('Destroyed the sealed vTPM secrets of instances deleted '
                 'while host %s was down: %s', hostname, forgotten)
    return forgotten
