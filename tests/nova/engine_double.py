"""An in-process stand-in for the protocol engine (interim).

NOTE(vtpm): used only until nova_vtpm_migration.protocol is merged. It
implements the facade's Engine interface and mirrors the real engine's
observable state (journal rows with the contract's role/state names, key
custody states) so the tests do not change when the real engine replaces
it. Phase 1 is real: each side verifies the other's EK identity and a
fresh TPM quote of its swtpm with the production verifier.
"""

import dataclasses
import os
import threading
import typing as ty

from nova_vtpm_migration.tpm import verify
from nova_vtpm_migration.virt import self_attestation


@dataclasses.dataclass
class Registry:
    tpms: ty.Any  # tests.nova.host_tpms.HostTpms
    engines: dict[str, 'EngineDouble'] = dataclasses.field(
        default_factory=dict)
    # host -> durable state surviving "restarts" of its engine
    state: dict[str, dict[str, ty.Any]] = dataclasses.field(
        default_factory=dict)
    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)

    def factory(self, host: str) -> 'EngineDouble':
        engine = EngineDouble(host, self)
        self.engines[host] = engine
        return engine

    def rows(self, host: str) -> dict[str, tuple[str, str]]:
        st = self.state.get(host, {})
        return {mid: (row[0], row[3])
                for mid, row in st.get('migrations', {}).items()}

    def key_states(self, host: str) -> dict[str, str]:
        return dict(self.state.get(host, {}).get('keys', {}))

    def record(self, host: str, mid: str) -> bytes | None:
        return self.state.get(host, {}).get('records', {}).get(mid)


class EngineDouble:
    def __init__(self, host: str, registry: Registry) -> None:
        self.host = host
        self.registry = registry
        st = registry.state.setdefault(host, {
            'keys': {}, 'migrations': {}, 'pending': {}, 'records': {}})
        # instance uuid -> 'ACTIVE' | 'LOCKED' | 'PENDING'
        self.keys: dict[str, str] = st['keys']
        # migration id -> [role, instance, peer, state]
        self.migrations: dict[str, list[str]] = st['migrations']
        self.pending: dict[str, bytes] = st['pending']
        self.records: dict[str, bytes] = st['records']
        self.tpm = registry.tpms.tpm(host)
        self.policy = registry.tpms.policy
        self._self = self_attestation.SelfAttestation(self.tpm, self.policy)

    def _peer(self, host: str) -> 'EngineDouble':
        return self.registry.engines[host]

    def start(self) -> None:
        pass

    def self_check(self) -> None:
        self._self.check()

    def attest_peer(self, peer: str, policy: str | None) -> dict[str, ty.Any]:
        other = self._peer(peer)
        for verifier, subject in ((self, other), (other, self)):
            identity = subject.tpm.identity()
            verify.verify_identity(identity, verifier.policy)
            nonce = os.urandom(32)
            verify.verify_quote(subject.tpm.quote(nonce),
                                identity.ak_public, nonce, verifier.policy,
                                None)
        return {'peer': peer, 'policy': policy or 'default'}

    def migrate_key(self, peer: str, migration_id: str, instance_uuid: str,
                    secret: bytes) -> dict[str, ty.Any]:
        with self.registry.lock:
            self.keys.setdefault(instance_uuid, 'ACTIVE')
            self.migrations[migration_id] = ['source', instance_uuid, peer,
                                             'TRANSFERRED']
            self.keys[instance_uuid] = 'LOCKED'
            dest = self._peer(peer)
            dest.migrations[migration_id] = ['destination', instance_uuid,
                                             self.host, 'INSTALLED']
            dest.keys[instance_uuid] = 'PENDING'
            dest.pending[migration_id] = bytes(secret)
        return {'migration': migration_id, 'peer': peer}

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        return self.pending[migration_id]

    def commit(self, migration_id: str) -> None:
        with self.registry.lock:
            row = self.migrations[migration_id]
            row[3] = 'COMMITTED'
            self.keys.pop(row[1], None)
            self.records[migration_id] = b'signed record'
            dest = self._peer(row[2])
            dest.migrations[migration_id][3] = 'COMMITTED'
            dest.keys[row[1]] = 'ACTIVE'
            dest.pending.pop(migration_id, None)

    def abort(self, migration_id: str) -> None:
        with self.registry.lock:
            row = self.migrations.get(migration_id)
            if row is None or row[0] != 'source' or row[3] in (
                    'COMMITTED', 'ABORTED'):
                return
            row[3] = 'ABORTED'
            self.keys[row[1]] = 'ACTIVE'
            dest = self._peer(row[2])
            dest.migrations[migration_id][3] = 'ABORTED'
            dest.keys.pop(row[1], None)
            dest.pending.pop(migration_id, None)

    def recover(self, oracle: ty.Callable[[str, str], bool]) -> None:
        for mid, (role, inst, _peer, state) in list(
                self.migrations.items()):
            if role == 'source' and state == 'TRANSFERRED':
                if oracle(mid, inst):
                    self.commit(mid)
                else:
                    self.abort(mid)

    def close(self) -> None:
        pass
