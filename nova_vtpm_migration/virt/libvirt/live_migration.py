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
implementation around it. See :mod:`nova_vtpm_migration.virt.service` for
which host runs which step, and the admin guide for the failure handling.
"""

import typing as ty

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from oslo_log import log as logging

from nova_vtpm_migration import conf
from nova_vtpm_migration.virt import errors
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


def _hostname(service: ty.Any) -> str:
    return str(getattr(service, 'host', None) or CONF.host)


def _need(service: ty.Any) -> ty.Any:
    """Return *service*, or raise when this host's engine did not start."""
    if service is None:
        raise errors.EngineUnavailable(
            host=CONF.host, reason='it failed to start; see the '
                                   'nova-compute log of init_host')
    return service


def _fall_back(instance: ty.Any, exc: Exception) -> bool:
    """Log and return True when upstream behaviour is allowed instead."""
    if not flavor_policy.may_fall_back(instance.flavor,
                                       CONF.vtpm_migration.enforcement):
        return False
    LOG.warning('Falling back to upstream vTPM live migration (the vTPM '
                'secret travels unprotected on the message bus): %s', exc,
                instance=instance)
    return True


def dest_precheck(service: ty.Any, context: ty.Any, instance: ty.Any) -> None:
    """Destination pre-check: phase 1, run by the source at our request.

    :raises nova.exception.MigrationPreCheckError: attestation failed or
        the source does not run the plugin (and may not fall back); the
        conductor then tries the next host or reports the reason.
    """
    if not is_protected(instance):
        return
    policy = flavor_policy.policy_name(instance.flavor)
    try:
        service = _need(service)
        summary = service.attest_source(context, instance.uuid,
                                        instance.host, policy)
    except errors.PeerWithoutPlugin as exc:
        if _fall_back(instance, exc):
            return
        raise nova_exception.MigrationPreCheckError(reason=str(exc)) from exc
    except Exception as exc:
        reason = str(errors.AttestationRefused(
            source=instance.host, dest=_hostname(service), reason=exc))
        LOG.error('vTPM live migration pre-check failed: %s', reason,
                  instance=instance)
        raise nova_exception.MigrationPreCheckError(reason=reason) from exc
    LOG.info('Source %s and destination %s attested each other: %s',
             instance.host, service.host, summary, instance=instance)


def source_check(service: ty.Any, instance: ty.Any,
                 migrate_data: ty.Any) -> None:
    """Source pre-check: keep the plaintext secret off the bus.

    :raises nova.exception.MigrationPreCheckError: no destination ran the
        plugin's pre-check for this instance (and it may not fall back).
    """
    if not is_protected(instance) or not migrate_data.has_vtpm:
        return
    dest = None if service is None else service.expected_destination(
        instance.uuid)
    if dest is None:
        exc = errors.NotAttested(source=_hostname(service),
                                 instance=instance.uuid)
        if _fall_back(instance, exc):
            guest_secret.fill_for_fallback(service, instance, migrate_data)
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


def dest_pre_live_migration(service: ty.Any, host: ty.Any, context: ty.Any,
                            instance: ty.Any, migrate_data: ty.Any) -> None:
    """Destination ``pre_live_migration``: phase 2, then define the secret.

    Runs after Nova's own preparation; an exception here makes the source
    roll back (``_cleanup_pre_live_migration``) with the instance ACTIVE
    on the source.
    """
    if not md.is_plugin_migration(migrate_data):
        return
    migration_uuid = _find_migration_uuid(context, instance, migrate_data,
                                          _hostname(service))
    try:
        secret = _need(service).receive_key(
            context, instance.uuid, migration_uuid, instance.host)
    except Exception as exc:
        raise nova_exception.MigrationError(reason=str(
            errors.KeyTransferFailed(instance=instance.uuid,
                                     source=instance.host,
                                     dest=_hostname(service),
                                     reason=exc))) from exc
    try:
        guest_secret.define_incoming(host, instance,
                                     migrate_data.vtpm_secret_uuid, secret)
    finally:
        del secret


def source_post(service: ty.Any, instance: ty.Any,
                migrate_data: ty.Any) -> None:
    """Source ``post_live_migration``: commit (the guest runs on the dest).

    Never raises: the guest already runs on the destination, so failing
    here would only put the instance in ERROR; an unacknowledged commit is
    re-sent by the journal's recovery.
    """
    migration_uuid = md.migration_uuid(migrate_data)
    if not md.is_plugin_migration(migrate_data) or migration_uuid is None:
        # An upstream migration (enforcement = warn) took the secret away.
        guest_secret.forget(service, instance)
        return
    try:
        _need(service).commit(instance.uuid, migration_uuid)
    except Exception:
        LOG.exception('Commit of vTPM key move %s failed; it will be '
                      'retried by recovery', migration_uuid,
                      instance=instance)
    else:
        LOG.info('vTPM key move %s committed', migration_uuid,
                 instance=instance)


def source_rollback(service: ty.Any, instance: ty.Any,
                    migrate_data: ty.Any) -> None:
    """Source rollback: abort; the source key is usable again."""
    migration_uuid = md.migration_uuid(migrate_data)
    if not md.is_plugin_migration(migrate_data) or migration_uuid is None:
        return
    _need(service).abort(instance.uuid, migration_uuid)
    LOG.info('vTPM key move %s aborted', migration_uuid, instance=instance)


def dest_rollback(service: ty.Any, context: ty.Any, instance: ty.Any,
                  migrate_data: ty.Any) -> None:
    """Destination rollback: drop the received key, have the source abort.

    Errors are logged, not raised, so that Nova's own destination cleanup
    (domain, disks, libvirt secret) still runs.
    """
    migration_uuid = md.migration_uuid(migrate_data)
    if not md.is_plugin_migration(migrate_data) or migration_uuid is None:
        return
    try:
        _need(service).abort_incoming(context, instance.uuid, migration_uuid,
                               instance.host)
    except Exception:
        LOG.exception('Abort of vTPM key move %s at the destination failed',
                      migration_uuid, instance=instance)


def make_secret_reader(host: ty.Any, hostname: str,
                       vault_holds: ty.Callable[[str], bool]) -> ty.Callable[
        [ty.Any, str, str, str], bytes | None]:
    """Return the facade's secret reader for this source host.

    Before reading, it checks Nova's migration record: the key only moves
    for an in-progress live migration of this instance, from this host, to
    exactly the host that asks (which the protocol has also attested).
    It returns ``None`` when *vault_holds* the secret: the engine then
    moves the sealed envelope and nothing is decrypted here.
    """
    def reader(context: ty.Any, instance_uuid: str, migration_uuid: str,
               destination: str) -> bytes | None:
        migration = objects.Migration.get_by_uuid(context, migration_uuid)
        if (migration.instance_uuid != instance_uuid
                or migration.source_compute != hostname
                or migration.dest_compute != destination
                or migration.migration_type != 'live-migration'
                or migration.status not in _MOVING_STATES):
            raise errors.UnexpectedDestination(
                dest=destination, instance=instance_uuid,
                expected=(f'{migration.dest_compute} (migration '
                          f'{migration_uuid}, {migration.status})'))
        if vault_holds(instance_uuid):
            return None
        return secrets.read_secret(host, instance_uuid, hostname)
    return reader


#: Nova migration states in which the guest may still be moving.
_UNDECIDED_STATES = frozenset({'running', 'post-migrating'})
#: Nova migration states that are final.
_FAILED_STATES = frozenset({'error', 'failed', 'cancelled'})


def make_oracle(host: ty.Any, after_restart: bool = True
                ) -> ty.Callable[[str, str], str]:
    """Return the oracle that decides an in-doubt move of this source.

    ``commit`` when the guest no longer runs here and Nova recorded the
    hand-over (migration ``completed`` or the instance's host is the
    destination); ``abort`` when the guest runs here and Nova's migration
    ended without a hand-over; otherwise ``unknown``: the key stays LOCKED
    here and PENDING there (never usable twice) until the operator decides
    (``nova-vtpm-migration journal decide``). Presuming abort would be
    unsafe when the guest may already run on the destination.

    :param after_restart: this compute service just started, so no move it
        ran is still in flight: a migration Nova has not yet moved past
        ``preparing`` ended without a hand-over. Otherwise (the periodic
        settle of a running service) only a final Nova status decides:
        ``completed`` for commit, ``error``/``failed``/``cancelled`` for
        abort.
    """
    def oracle(migration_uuid: str, instance_uuid: str) -> str:
        context = nova_context.get_admin_context()
        try:
            host.get_guest(objects.Instance(uuid=instance_uuid))
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
    return oracle
