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

"""Builds this host's protocol engine and adapts it to the facade.

:func:`build` reads ``[vtpm_migration]`` (one compute per process, as in a
deployment); :func:`assemble` takes everything explicitly, so tests can run
several computes in one process, each with its own TPM and state.
"""

import typing as ty

from nova import rpc as nova_rpc
from oslo_log import log as logging

from nova_vtpm_migration import conf
from nova_vtpm_migration import service as host_service
from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import errors as protocol_errors
from nova_vtpm_migration.rpc import rpcapi as protocol_rpcapi
from nova_vtpm_migration.rpc import server as protocol_server
from nova_vtpm_migration.rpc import transport as protocol_transport
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
from nova_vtpm_migration.virt import engine
from nova_vtpm_migration.virt import errors
from nova_vtpm_migration.virt import secret_envelope
from nova_vtpm_migration.virt import secret_vault
from nova_vtpm_migration.virt import self_attestation

LOG = logging.getLogger(__name__)
CONF = conf.CONF


class EngineAdapter:
    """:class:`~nova_vtpm_migration.virt.engine.Engine` on the protocol's
    ``MigrationEngine``, served over Nova's message bus.

    :param engine: this host's ``MigrationEngine`` (its transport must
        reach peers; see :func:`rpc_transport`).
    :param transport: the oslo.messaging transport its RPC server uses
        (Nova's).
    """

    def __init__(self, engine: engine_mod.MigrationEngine,
                 transport: ty.Any) -> None:
        self.engine = engine
        self.host = engine.host
        self.tpm = engine.tpm
        self._transport = transport
        self._oracle: ty.Callable[[str, str], str] | None = None
        engine.outcome_oracle = self._outcome
        self._self = self_attestation.SelfAttestation(engine.tpm,
                                                      engine.policy)
        self.vault = secret_vault.SecretVault(engine.keystore,
                                              engine.state_lock, self.host)
        self._server: ty.Any = None

    def _outcome(self, row: ty.Any) -> str:
        if self._oracle is None:
            return engine_mod.UNKNOWN
        return self._oracle(row.migration_id, row.instance_uuid)

    def start(self) -> None:
        self._server = protocol_server.start_server(
            self.host, self.engine.handle, transport=self._transport)

    def self_check(self) -> None:
        self._self.check()

    def attest_peer(self, peer: str, policy: str | None) -> dict[str, ty.Any]:
        session = self.engine.attest_peer(peer)
        if policy:
            _check_named_policy(policy, session)
        return {'peer': peer,
                'ek': session.peer_identity.ek_fingerprint[:16],
                'policy': policy or 'default'}

    def migrate_key(self, peer: str, migration_id: str, instance_uuid: str,
                    secret: bytes | None) -> dict[str, ty.Any]:
        if secret is None:
            # The vault's envelope moves as it is: no plaintext here.
            blob = self.vault.envelope(instance_uuid)
        else:
            # Read from libvirt (``libvirt`` storage): the same envelope.
            blob = self.vault.seal_envelope(instance_uuid, secret)
        handle = self.engine.migrate_key(
            instance_uuid, peer, migration_id,
            state_blobs={secret_envelope.BLOB: blob})
        return {'migration': handle.migration_id, 'peer': handle.peer}

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        kek = self.engine.take_pending_key(instance_uuid, migration_id)
        blobs = self.engine.take_state_blobs(instance_uuid, migration_id)
        if secret_envelope.BLOB not in blobs:
            raise errors.VirtIntegrationError(
                reason=f'migration {migration_id} carried no vTPM secret')
        envelope = blobs[secret_envelope.BLOB]
        secret = secret_envelope.unwrap(kek, instance_uuid, envelope)
        # Verified: keep it sealed at rest (opens once the key is ACTIVE).
        self.vault.store(instance_uuid, envelope)
        return secret

    def holds_secret(self, instance_uuid: str) -> bool:
        return self.vault.holds(instance_uuid)

    def adopt_secret(self, instance_uuid: str, secret: bytes) -> None:
        self.vault.adopt(instance_uuid, secret)

    def open_secret(self, instance_uuid: str) -> bytes:
        return self.vault.open(instance_uuid)

    def forget_secret(self, instance_uuid: str) -> None:
        self.vault.forget(instance_uuid)

    def sealed_instances(self) -> list[str]:
        return self.vault.held_instances()

    def commit(self, migration_id: str) -> None:
        try:
            self.engine.commit(migration_id)
        finally:
            self.vault.reconcile()

    def abort(self, migration_id: str) -> None:
        try:
            self.engine.abort(migration_id, reason='nova rollback')
        except protocol_errors.UnknownMigration:
            # Not the source of it (the destination's rollback), or never
            # started: nothing to abort here.
            pass
        finally:
            self.vault.reconcile()

    def settle(self, oracle: ty.Callable[[str, str], str]) -> None:
        result = self.engine.settle(
            lambda row: oracle(row.migration_id, row.instance_uuid),
            min_age=CONF.vtpm_migration.rpc_timeout)
        if result:
            LOG.info('Settled vTPM migrations: %s', result)
        self.vault.reconcile()

    def recover(self, oracle: ty.Callable[[str, str], str]) -> None:
        self._oracle = oracle
        result = self.engine.recover()
        if result:
            LOG.info('Recovered vTPM migrations: %s', result)
        self.vault.reconcile()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            server.wait()
        self.engine.close()
        self.tpm.ctx.close()


def _check_named_policy(name: str, session: ty.Any) -> None:
    path = CONF.vtpm_migration.named_policies.get(name)
    if path is None:
        raise errors.VirtIntegrationError(
            reason=f'trust policy {name!r} is not in [vtpm_migration] '
                   f'named_policies')
    named = policy_mod.TrustPolicy.load(
        path, default_max_age=CONF.vtpm_migration.evidence_max_age)
    verify.verify_identity(session.peer_identity, named)
    named.check_pcr_values(dict(session.peer_pcr_values))


def rpc_transport(transport: ty.Any) -> protocol_transport.RpcTransport:
    """The protocol transport over *transport* (an oslo.messaging one)."""
    return protocol_transport.RpcTransport(
        protocol_rpcapi.VtpmMigrationAPI(transport))


def assemble(host: str, tpm: ty.Any, policy: policy_mod.TrustPolicy,
             state_dir: str, transport: ty.Any = None) -> EngineAdapter:
    """Return the engine of *host* from explicit parts (several computes
    in one process, as in the functional tests).

    :param transport: oslo.messaging transport (default: Nova's).
    """
    transport = transport or nova_rpc.TRANSPORT
    return EngineAdapter(
        engine_mod.MigrationEngine.open(host, tpm, policy, state_dir,
                                        rpc_transport(transport)),
        transport)


def build(host: str) -> engine.Engine:
    """Return the protocol engine of *host* from ``[vtpm_migration]``.

    Uses :func:`nova_vtpm_migration.service.build_engine`, so the journal
    is where the operator CLI (``nova-vtpm-migration journal ...``) looks.

    :raises EngineUnavailable: the policy, TPM or state cannot be used.
    """
    transport = nova_rpc.TRANSPORT
    try:
        return EngineAdapter(
            host_service.build_engine(CONF, host,
                                      transport=rpc_transport(transport)),
            transport)
    except Exception as exc:
        raise errors.EngineUnavailable(host=host, reason=str(exc)) from exc
