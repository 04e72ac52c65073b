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

"""The per-host facade between Nova's driver and the migration protocol.

One :class:`VtpmMigrationService` runs in each nova-compute. It owns the
host's protocol engine and the compute-to-compute RPC server
(:mod:`nova_vtpm_migration.virt.rpcapi`), and offers the driver mixin a
handful of Nova-shaped operations. It knows nothing about libvirt: the
driver gives it a :data:`SecretReader` (read the vTPM secret of a local
instance) and a :data:`RecoveryOracle` (decide in-doubt migrations).

Roles, for one migration of instance *i* from S to D:

=====================  ====================================  ==============
Nova step              facade call                           host
=====================  ====================================  ==============
dest pre-check         :meth:`attest_source` -> RPC ->       D -> S
                       :meth:`handle_attest` (phase 1)       S
source pre-check       :meth:`expected_destination`          S
dest pre_live_migr.    :meth:`receive_key` -> RPC ->         D -> S
                       :meth:`handle_send_key` (phase 2)     S
source post_live_m.    :meth:`commit`                        S
rollbacks              :meth:`abort`, :meth:`abort_incoming` S, D
init_host              :meth:`start` (recovery)              both
=====================  ====================================  ==============
"""

import threading
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import conf
from nova_vtpm_migration.virt import engine
from nova_vtpm_migration.virt import engine_factory
from nova_vtpm_migration.virt import errors
from nova_vtpm_migration.virt import rpcapi

LOG = logging.getLogger(__name__)
CONF = conf.CONF

#: ``reader(context, instance_uuid, migration_uuid, destination)``: checks
#: that Nova's migration record names *destination*, then returns the local
#: instance's vTPM secret from libvirt, or ``None`` when the host's vault
#: holds it (the engine then moves the sealed envelope); raises a
#: ``VirtIntegrationError``.
SecretReader = ty.Callable[[ty.Any, str, str, str], bytes | None]
#: ``oracle(migration_uuid, instance_uuid) -> 'commit' | 'abort' |
#: 'unknown'``.
RecoveryOracle = ty.Callable[[str, str], str]


Engine = engine.Engine


def default_engine_factory(host: str) -> Engine:
    """Build the real protocol engine of *host* from ``[vtpm_migration]``."""
    return engine_factory.build(host)


class VtpmMigrationService:
    """Per-host facade; see the module docstring for the call map.

    :param host: this compute service's host name (RPC server name).
    :param engine: the host's protocol engine.
    :param secret_reader: reads a local instance's vTPM secret.
    """

    def __init__(self, host: str, engine: Engine,
                 secret_reader: SecretReader) -> None:
        self.host = host
        self.engine = engine
        self._read_secret = secret_reader
        self._api = rpcapi.ComputeAPI()
        self._server: ty.Any = None
        self._lock = threading.Lock()
        # instance uuid -> (attested destination, monotonic time)
        self._expected: dict[str, tuple[str, float]] = {}
        self._fresh_until = 0.0
        self._settle_oracle: RecoveryOracle | None = None
        self._settle_lock = threading.Lock()
        self._settler: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    def start(self, oracle: RecoveryOracle,
              settle_oracle: RecoveryOracle | None = None) -> None:
        """Serve the protocol, recover in-doubt migrations, then serve the
        plugin's compute-to-compute RPC.

        :param oracle: decides in-doubt migrations after this restart.
        :param settle_oracle: decides them while running (see
            :meth:`settle`); with ``[vtpm_migration] settle_interval`` > 0
            a background thread calls :meth:`settle` that often.
        """
        self.engine.start()
        self.engine.recover(oracle)
        self._server = rpcapi.get_server(self.host, self)
        self._server.start()
        self._settle_oracle = settle_oracle
        interval = CONF.vtpm_migration.settle_interval
        if settle_oracle is not None and interval > 0:
            self._settler = threading.Thread(
                target=self._settle_loop, args=(interval,),
                name=f'vtpm-migration-settle-{self.host}', daemon=True)
            self._settler.start()
        LOG.info('vTPM migration service of host %s started', self.host)

    def stop(self) -> None:
        """Stop serving and release the engine."""
        self._stopping.set()
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.join()
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            server.wait()
        self.engine.close()

    def settle(self) -> None:
        """Finish unfinished migrations that can be finished while running
        (decided outcomes not delivered; moves Nova recorded as over)."""
        if self._settle_oracle is None:
            return
        with self._settle_lock:
            self.engine.settle(self._settle_oracle)

    def _settle_loop(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            try:
                self.settle()
            except Exception:  # noqa: BLE001 - next pass retries
                LOG.exception('Settling the vTPM migrations of host %s '
                              'failed; retrying in %s s', self.host,
                              interval)

    # -- self attestation (placement trait) --------------------------------

    def attestation_fresh(self) -> bool:
        """Return whether this host currently passes its own policy.

        The result of a successful check is reused for half of
        ``[vtpm_migration] evidence_max_age``; a failure is never cached.
        """
        now = time.monotonic()
        if now < self._fresh_until:
            return True
        try:
            self.engine.self_check()
        except Exception as exc:  # noqa: BLE001 - any failure means "no"
            LOG.warning('Host %s does not pass its own attestation policy: '
                        '%s', self.host, exc)
            return False
        self._fresh_until = now + CONF.vtpm_migration.evidence_max_age / 2
        return True

    # -- destination side --------------------------------------------------

    def attest_source(self, context: ty.Any, instance_uuid: str,
                      source: str, policy: str | None) -> dict[str, ty.Any]:
        """Destination pre-check: have *source* attest this host (phase 1).

        :raises PeerWithoutPlugin: the source does not answer.
        :raises VirtIntegrationError: attestation failed.
        """
        return self._api.attest_destination(
            context, source, instance_uuid, self.host, policy)

    def receive_key(self, context: ty.Any, instance_uuid: str,
                    migration_uuid: str, source: str) -> bytes:
        """Destination pre_live_migration: pull the secret (phase 2).

        :returns: the unwrapped secret, to be handed to libvirt only.
        """
        self._api.send_key(context, source, instance_uuid, migration_uuid,
                           self.host)
        return self.engine.take_pending_key(instance_uuid, migration_uuid)

    def abort_incoming(self, context: ty.Any, instance_uuid: str,
                       migration_uuid: str, source: str) -> None:
        """Destination rollback: drop what arrived, tell the source.

        The source coordinates the outcome; asking it covers Nova's
        pre_live_migration failure path, in which the source driver's
        ``rollback_live_migration_at_source`` is not called.
        """
        try:
            self._api.abort_migration(context, source, instance_uuid,
                                      migration_uuid)
        finally:
            self.engine.abort(migration_uuid)

    # -- source side -------------------------------------------------------

    def expected_destination(self, instance_uuid: str) -> str | None:
        """Return the destination attested for *instance_uuid*, if fresh."""
        with self._lock:
            entry = self._expected.get(instance_uuid)
        if entry is None:
            return None
        dest, when = entry
        if time.monotonic() - when > CONF.vtpm_migration.session_lifetime:
            return None
        return dest

    def commit(self, instance_uuid: str, migration_uuid: str) -> None:
        """Source post-migration: commit the key move."""
        self.engine.commit(migration_uuid)
        with self._lock:
            self._expected.pop(instance_uuid, None)

    def abort(self, instance_uuid: str, migration_uuid: str) -> None:
        """Source rollback: abort; the source key becomes usable again."""
        self.engine.abort(migration_uuid)
        with self._lock:
            self._expected.pop(instance_uuid, None)

    # -- RPC handlers (run on the source) ----------------------------------

    def handle_attest(self, context: ty.Any, instance_uuid: str,
                      destination: str,
                      policy: str | None) -> dict[str, ty.Any]:
        """Run phase 1 towards *destination*; remember it for the instance."""
        LOG.info('Attesting destination %s for instance %s', destination,
                 instance_uuid)
        summary = self.engine.attest_peer(destination, policy)
        with self._lock:
            self._expected[instance_uuid] = (destination, time.monotonic())
        return summary

    def handle_send_key(self, context: ty.Any, instance_uuid: str,
                        migration_uuid: str,
                        destination: str) -> dict[str, ty.Any]:
        """Run phase 2 towards *destination* if it is the attested one."""
        expected = self.expected_destination(instance_uuid)
        if expected != destination:
            raise errors.UnexpectedDestination(
                dest=destination, instance=instance_uuid,
                expected=expected or 'none')
        secret = self._read_secret(context, instance_uuid, migration_uuid,
                                   destination)
        try:
            return self.engine.migrate_key(
                destination, migration_uuid, instance_uuid, secret)
        finally:
            del secret

    def handle_abort(self, context: ty.Any, instance_uuid: str,
                     migration_uuid: str) -> None:
        """Abort on behalf of the destination's rollback."""
        self.abort(instance_uuid, migration_uuid)

    # -- the vault (vTPM secrets sealed at rest) ---------------------------

    def holds_secret(self, instance_uuid: str) -> bool:
        """Return whether this host's vault holds the instance's secret."""
        return self.engine.holds_secret(instance_uuid)

    def adopt_secret(self, instance_uuid: str, secret: bytes) -> None:
        """Seal an instance's secret in this host's vault."""
        self.engine.adopt_secret(instance_uuid, secret)

    def open_secret(self, instance_uuid: str) -> bytes:
        """Return the vault's secret (for an ephemeral libvirt secret)."""
        return self.engine.open_secret(instance_uuid)

    def forget_secret(self, instance_uuid: str) -> None:
        """Destroy the vault's copy of an instance's secret."""
        self.engine.forget_secret(instance_uuid)

    def sealed_instances(self) -> list[str]:
        """The instances whose secrets this host's vault holds."""
        return self.engine.sealed_instances()


class UnavailableService:
    """Stands in for the facade of a host whose engine did not start.

    The host keeps running its instances, reports no attestation trait and
    refuses every protected live migration with the start-up failure as
    the reason.

    :param host: this compute service's host name.
    :param reason: why the engine is not available (no secrets).
    """

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason

    def _fail(self, *args: ty.Any, **kwargs: ty.Any) -> ty.NoReturn:
        raise errors.EngineUnavailable(host=self.host, reason=self.reason)

    attest_source = receive_key = abort_incoming = _fail
    commit = abort = _fail
    holds_secret = adopt_secret = open_secret = forget_secret = _fail

    def sealed_instances(self) -> list[str]:
        """Nothing can be listed without the engine."""
        return []

    def expected_destination(self, instance_uuid: str) -> None:
        """No destination is ever attested by this host."""
        return None

    def attestation_fresh(self) -> bool:
        """This host never advertises itself as attested."""
        return False

    def stop(self) -> None:
        """Nothing to stop."""
