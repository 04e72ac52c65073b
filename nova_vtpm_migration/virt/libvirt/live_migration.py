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

"""The live-migration workflow steps the driver mixin delegates to.

Each function is one Nova hook's plugin part; the mixin calls Nova's own
implementation around it, and each delegates the protocol to this host's
:class:`~nova_vtpm_migration.compute.host.ComputeHost` (see there for
which host runs which step, and the admin guide for the failure handling).
:class:`LibvirtNovaView` is what the host object needs to know from Nova's
records and libvirt (its
:class:`~nova_vtpm_migration.compute.nova_view.NovaView`).
"""

import typing as ty

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging

from nova_vtpm_migration import conf
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.virt import flavor_policy
from nova_vtpm_migration.virt.libvirt import guest_secret
from nova_vtpm_migration.virt.libvirt import migrate_data as md
from nova_vtpm_migration.virt.libvirt import secrets

LOG = logging.getLogger(__name__)
CONF = conf.CONF

# Nova migration states in which a key may still move to the destination.
_MOVING_STATES = frozenset({'accepted', 'preparing', 'queued', 'running'})


def is_protected(instance: ty.Any) -> bool:
    """Return whether the plugin runs this instance's live migrations."""
    return flavor_policy.is_protected(instance.flavor, instance.image_meta)


Host = compute_host.ComputeHost


def _fall_back(instance: ty.Any, exc: Exception) -> bool:
    """Log and return True when upstream behaviour is allowed instead."""
    if not flavor_policy.may_fall_back(instance.flavor,
                                       CONF.vtpm_migration.enforcement):
        return False
    LOG.warning('Falling back to upstream vTPM live migration (the vTPM '
                'secret travels unprotected on the message bus): %s', exc,
                instance=instance)
    return True


def check_memory_protection(instance: ty.Any) -> None:
    """The guest's memory must go only to the attested host too.

    For ``vtpm_migration:attested=required`` instances libvirt's native
    TLS must be on (it checks the destination's certificate for the host
    name the TPM identity is certified for), unless ``[vtpm_migration]
    require_native_tls`` is off.

    :raises nova.exception.MigrationPreCheckError: it is off.
    """
    if (flavor_policy.attestation(instance.flavor) != flavor_policy.REQUIRED
            or not CONF.vtpm_migration.require_native_tls
            or CONF.libvirt.live_migration_with_native_tls):
        return
    reason = ('the instance requires attested live migration, but '
              '[libvirt] live_migration_with_native_tls is off: its memory '
              'would reach the destination unauthenticated and '
              'unencrypted (set [vtpm_migration] require_native_tls = False '
              'only where the migration network is protected otherwise)')
    LOG.error('vTPM live migration pre-check failed: %s', reason,
              instance=instance)
    raise nova_exception.MigrationPreCheckError(reason=reason)


def dest_precheck(vtpm: Host, context: ty.Any, instance: ty.Any) -> None:
    """Destination pre-check: phase 1, run by the source at our request.

    :raises nova.exception.MigrationPreCheckError: attestation failed or
        the source does not run the plugin (and may not fall back); the
        conductor then tries the next host or reports the reason.
    """
    if not is_protected(instance):
        return
    check_memory_protection(instance)
    try:
        summary = vtpm.attest_source(instance.uuid, instance.host)
    except errors.PeerWithoutPlugin as exc:
        if _fall_back(instance, exc):
            return
        raise nova_exception.MigrationPreCheckError(reason=str(exc)) from exc
    except Exception as exc:
        reason = str(errors.AttestationRefused(
            source=instance.host, dest=vtpm.host, reason=exc))
        LOG.error('vTPM live migration pre-check failed: %s', reason,
                  instance=instance)
        raise nova_exception.MigrationPreCheckError(reason=reason) from exc
    LOG.info('Source %s and destination %s attested each other: %s',
             instance.host, vtpm.host, summary, instance=instance)


def source_check(vtpm: Host, instance: ty.Any,
                 migrate_data: ty.Any) -> None:
    """Source pre-check: keep the plaintext secret off the bus.

    :raises nova.exception.MigrationPreCheckError: no destination ran the
        plugin's pre-check for this instance (and it may not fall back).
    """
    if not is_protected(instance) or not migrate_data.has_vtpm:
        return
    # The source's own setting decides how libvirt streams the memory.
    check_memory_protection(instance)
    dest = vtpm.expected_destination(instance.uuid)
    if dest is None:
        exc = errors.NotAttested(source=vtpm.host, instance=instance.uuid)
        if _fall_back(instance, exc):
            guest_secret.fill_for_fallback(vtpm, instance, migrate_data)
            return
        raise nova_exception.MigrationPreCheckError(reason=str(exc))
    md.strip_secret(migrate_data)
    LOG.info('vTPM secret withheld from migrate_data; it will move wrapped '
             'to attested destination %s', dest, instance=instance)


def _find_migration_uuid(context: ty.Any, instance: ty.Any,
                         migrate_data: ty.Any, hostname: str) -> str:
    """Return the UUID of the live migration of *instance* to *hostname*.

    ``migrate_data.migration`` is only set by the source after the
    destination's ``pre_live_migration``; Nova's record is looked up then.
    """
    uuid = md.migration_uuid(migrate_data)
    if uuid is not None:
        return uuid
    migrations = objects.MigrationList.get_in_progress_by_instance(
        context, instance.uuid, migration_type='live-migration')
    for migration in migrations:
        if migration.dest_compute == hostname:
            return str(migration.uuid)
    raise errors.VirtIntegrationError(
        reason=f'no live migration of instance {instance.uuid} to '
               f'{hostname} is in progress')


def dest_pre_live_migration(vtpm: Host, host: ty.Any, context: ty.Any,
                            instance: ty.Any, migrate_data: ty.Any) -> None:
    """Destination ``pre_live_migration``: phase 2, then define the secret.

    Runs after Nova's own preparation; an exception here makes the source
    roll back (``_cleanup_pre_live_migration``) with the instance ACTIVE
    on the source.
    """
    if not md.is_plugin_migration(migrate_data):
        return
    migration_uuid = _find_migration_uuid(context, instance, migrate_data,
                                          vtpm.host)
    try:
        secret = vtpm.receive_key(instance.uuid, migration_uuid,
                                  instance.host)
    except Exception as exc:
        raise nova_exception.MigrationError(reason=str(
            errors.KeyTransferFailed(instance=instance.uuid,
                                     source=instance.host, dest=vtpm.host,
                                     reason=exc))) from exc
    try:
        guest_secret.define_incoming(host, instance,
                                     migrate_data.vtpm_secret_uuid, secret)
    finally:
        del secret


def source_post(vtpm: Host, instance: ty.Any, migrate_data: ty.Any) -> None:
    """Source ``post_live_migration``: commit (the guest runs on the dest).

    Never raises: the guest already runs on the destination, so failing
    here would only put the instance in ERROR; an unacknowledged commit is
    re-sent by the journal's recovery.
    """
    migration_uuid = md.migration_uuid(migrate_data)
    if not md.is_plugin_migration(migrate_data) or migration_uuid is None:
        # An upstream migration (enforcement = warn) took the secret away.
        guest_secret.forget(vtpm, instance)
        return
    try:
        vtpm.commit(instance.uuid, migration_uuid)
    except Exception:
        LOG.exception('Commit of vTPM key move %s failed; it will be '
                      'retried by recovery', migration_uuid,
                      instance=instance)
    else:
        LOG.info('vTPM key move %s committed', migration_uuid,
                 instance=instance)


def source_rollback(vtpm: Host, instance: ty.Any,
                    migrate_data: ty.Any) -> None:
    """Source rollback: abort; the source key is usable again."""
    migration_uuid = md.migration_uuid(migrate_data)
    if not md.is_plugin_migration(migrate_data) or migration_uuid is None:
        return
    vtpm.abort(instance.uuid, migration_uuid)
    LOG.info('vTPM key move %s aborted', migration_uuid, instance=instance)


def dest_rollback(vtpm: Host, instance: ty.Any, migrate_data: ty.Any) -> None:
    """Destination rollback: drop the received key, have the source abort.

    Errors are logged, not raised, so that Nova's own destination cleanup
    (domain, disks, libvirt secret) still runs.
    """
    migration_uuid = md.migration_uuid(migrate_data)
    if not md.is_plugin_migration(migrate_data) or migration_uuid is None:
        return
    try:
        vtpm.abort_incoming(instance.uuid, migration_uuid, instance.host)
    except Exception:
        LOG.exception('Abort of vTPM key move %s at the destination failed',
                      migration_uuid, instance=instance)


#: Nova migration states in which the guest may still be moving.
_UNDECIDED_STATES = frozenset({'running', 'post-migrating'})
#: Nova migration states that are final.
_FAILED_STATES = frozenset({'error', 'failed', 'cancelled'})
#: Nova migration states after the guest was handed over.
_HANDED_OVER_STATES = frozenset({'post-migrating', 'completed'})


class LibvirtNovaView:
    """What the host object needs from Nova's records and libvirt.

    :param host: the driver's ``nova.virt.libvirt.host.Host``.
    :param hostname: this compute service's host name.
    """

    def __init__(self, host: ty.Any, hostname: str) -> None:
        self._host = host
        self._hostname = hostname

    def _moving_away(self, context: ty.Any,
                     instance_uuid: str) -> list[ty.Any]:
        """Nova's live migrations of the instance from this host that are
        not finished (``accepted`` included: the conductor's destination
        pre-check runs before Nova calls a migration in progress)."""
        return list(objects.MigrationList.get_by_filters(context, {
            'instance_uuid': instance_uuid,
            'source_compute': self._hostname,
            'migration_type': 'live-migration',
            'status': sorted(_MOVING_STATES)}))

    def check_attest_request(self, instance_uuid: str,
                             destination: str) -> None:
        """Nova is live-migrating the instance away from this host, to
        *destination* or to a host it has not recorded yet.

        :raises UnexpectedDestination: it is not.
        """
        context = nova_context.get_admin_context()
        for migration in self._moving_away(context, instance_uuid):
            if (migration.source_compute == self._hostname
                    and migration.dest_compute in (None, destination)):
                return
        raise errors.UnexpectedDestination(
            dest=destination, instance=instance_uuid,
            expected='no live migration of it from this host')

    def check_incoming(self, instance_uuid: str, migration_uuid: str,
                       source: str) -> None:
        """Nova's record is an in-progress live migration of the instance
        from exactly *source* (the host the key's sender is certified
        for) to this host.

        :raises UnexpectedDestination: it is not.
        """
        context = nova_context.get_admin_context()
        migration = objects.Migration.get_by_uuid(context, migration_uuid)
        if (migration.instance_uuid != instance_uuid
                or migration.dest_compute != self._hostname
                or migration.source_compute != source
                or migration.migration_type != 'live-migration'
                or migration.status not in _MOVING_STATES):
            raise errors.UnexpectedDestination(
                dest=self._hostname, instance=instance_uuid,
                expected=(f'a key from {migration.source_compute} (migration '
                          f'{migration_uuid}, {migration.status}), not from '
                          f'{source}'))

    def flavor_policy(self, instance_uuid: str) -> str | None:
        """The flavor's ``vtpm_migration:policy``, from Nova's database."""
        instance = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), instance_uuid,
            expected_attrs=['flavor'])
        return flavor_policy.policy_name(instance.flavor)

    def may_abort(self, migration_uuid: str, instance_uuid: str) -> bool:
        """A rollback may abort only while Nova has not handed the guest
        over: it runs here, and the migration is not completing."""
        context = nova_context.get_admin_context()
        try:
            migration = objects.Migration.get_by_uuid(context,
                                                      migration_uuid)
        except nova_exception.NotFound:
            return False
        if migration.status in _HANDED_OVER_STATES:
            return False
        try:
            self._host.get_guest(objects.Instance(uuid=instance_uuid))
        except nova_exception.InstanceNotFound:
            return False
        return True

    def check_outgoing(self, instance_uuid: str, migration_uuid: str,
                       destination: str) -> None:
        """The key only moves for an in-progress live migration of this
        instance, from this host, to exactly the host that asks (which the
        protocol has also attested).

        :raises UnexpectedDestination: Nova's record says otherwise.
        """
        context = nova_context.get_admin_context()
        migration = objects.Migration.get_by_uuid(context, migration_uuid)
        if (migration.instance_uuid != instance_uuid
                or migration.source_compute != self._hostname
                or migration.dest_compute != destination
                or migration.migration_type != 'live-migration'
                or migration.status not in _MOVING_STATES):
            raise errors.UnexpectedDestination(
                dest=destination, instance=instance_uuid,
                expected=(f'{migration.dest_compute} (migration '
                          f'{migration_uuid}, {migration.status})'))

    def read_libvirt_secret(self, instance_uuid: str) -> bytes:
        """The instance's persistent libvirt vTPM secret."""
        return secrets.read_secret(self._host, instance_uuid, self._hostname)

    def outcome(self, migration_uuid: str, instance_uuid: str,
                after_restart: bool) -> str:
        """Decide an in-doubt move of which this host is the source.

        ``commit`` when the guest no longer runs here and Nova recorded the
        hand-over (migration ``completed`` or the instance's host is the
        destination); ``abort`` when the guest runs here and Nova's
        migration ended without a hand-over; otherwise ``unknown``: the key
        stays LOCKED here and PENDING there (never usable twice) until the
        operator decides (``nova-vtpm-migration journal decide``).
        Presuming abort would be unsafe when the guest may already run on
        the destination.

        :param after_restart: this compute service just started, so no
            move it ran is still in flight: a migration Nova has not yet
            moved past ``preparing`` ended without a hand-over. Otherwise
            (the periodic settle of a running service) only a final Nova
            status decides: ``completed`` for commit,
            ``error``/``failed``/``cancelled`` for abort.
        """
        context = nova_context.get_admin_context()
        try:
            self._host.get_guest(objects.Instance(uuid=instance_uuid))
        except nova_exception.InstanceNotFound:
            guest_here = False
        else:
            guest_here = True
        try:
            migration = objects.Migration.get_by_uuid(context,
                                                      migration_uuid)
            instance = objects.Instance.get_by_uuid(context, instance_uuid)
        except nova_exception.NotFound:
            return 'unknown'
        if not after_restart:
            if migration.status == 'completed' and not guest_here:
                return 'commit'
            if migration.status in _FAILED_STATES and guest_here:
                return 'abort'
            return 'unknown'
        handed_over = (migration.status == 'completed'
                       or instance.host == migration.dest_compute)
        if handed_over and not guest_here:
            return 'commit'
        if (guest_here and not handed_over
                and migration.status not in _UNDECIDED_STATES):
            return 'abort'
        return 'unknown'
