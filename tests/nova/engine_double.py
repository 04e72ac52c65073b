"""An in-process stand-in for the protocol engine (interim).

NOTE(vtpm): used only until nova_vtpm_migration.protocol is merged; it
implements the facade's Engine interface with per-host dictionaries so the
Nova-side workflow (pull RPC, secret handling, commit/abort, recovery) can
be exercised now. It keeps a journal per host like the real engine does.
"""

import dataclasses
import hashlib
import os
import threading
import typing as ty

from nova_vtpm_migration.tpm import verify
from nova_vtpm_migration.virt import self_attestation


class Refused(Exception):
    pass


@dataclasses.dataclass
class Registry:
    tpms: ty.Any  # tests.nova.host_tpms.HostTpms
    engines: dict[str, 'EngineDouble'] = dataclasses.field(
        default_factory=dict)
    # host -> persistent state surviving "restarts" of its engine
    state: dict[str, dict[str, ty.Any]] = dataclasses.field(
        default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def factory(self, host: str) -> 'EngineDouble':
        engine = EngineDouble(host, self)
        self.engines[host] = engine
        return engine


class EngineDouble:
    def __init__(self, host: str, registry: Registry) -> None:
        self.host = host
        self.registry = registry
        st = registry.state.setdefault(host, {
            'journal': [], 'keys': {}, 'migrations': {}, 'pending': {}})
        self.journal: list[tuple[str, str, str]] = st['journal']
        # instance uuid -> 'ACTIVE' | 'LOCKED' | 'PENDING'
        self.keys: dict[str, str] = st['keys']
        # migration id -> (role, instance, peer, state)
        self.migrations: dict[str, list[str]] = st['migrations']
        self.pending: dict[str, bytes] = st['pending']
        self.closed = False
        self.tpm = registry.tpms.tpm(host)
        self.policy = registry.tpms.policy
        self._self = self_attestation.SelfAttestation(self.tpm, self.policy)

    def _peer(self, host: str) -> 'EngineDouble':
        return self.registry.engines[host]

    def self_check(self) -> None:
        self._self.check()

    def attest_peer(self, peer: str, policy: str | None) -> dict[str, ty.Any]:
        # Both hosts verify each other's identity and a fresh quote with
        # the real verifier (the protocol adds the channel and the keys).
        other = self._peer(peer)
        for verifier, subject in ((self, other), (other, self)):
            identity = subject.tpm.identity()
            verify.verify_identity(identity, verifier.policy)
            nonce = os.urandom(32)
            verify.verify_quote(subject.tpm.quote(nonce),
                                identity.ak_public, nonce, verifier.policy,
                                None)
        self.journal.append(('attested', peer, ''))
        self._peer(peer).journal.append(('attested-by', self.host, ''))
        return {'peer': peer, 'policy': policy or 'default'}

    def migrate_key(self, peer: str, migration_id: str, instance_uuid: str,
                    secret: bytes) -> dict[str, ty.Any]:
        self.migrations[migration_id] = ['source', instance_uuid, peer,
                                         'TRANSFERRED']
        self.keys[instance_uuid] = 'LOCKED'
        dest = self._peer(peer)
        dest.migrations[migration_id] = ['dest', instance_uuid, self.host,
                                         'INSTALLED']
        dest.keys[instance_uuid] = 'PENDING'
        dest.pending[migration_id] = bytes(secret)
        digest = hashlib.sha256(secret).hexdigest()[:8]
        self.journal.append(('transferred', migration_id, peer))
        dest.journal.append(('installed', migration_id, self.host))
        return {'receipt': migration_id, 'digest': digest}

    def start(self) -> None:
        pass

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        return self.pending[migration_id]

    def commit(self, migration_id: str) -> None:
        role, inst, peer, state = self.migrations[migration_id]
        self.migrations[migration_id][3] = 'COMMITTED'
        self.keys.pop(inst, None)
        self.journal.append(('committed', migration_id, peer))
        dest = self._peer(peer)
        dest.migrations[migration_id][3] = 'COMMITTED'
        dest.keys[inst] = 'ACTIVE'
        dest.pending.pop(migration_id, None)
        dest.journal.append(('committed', migration_id, self.host))

    def abort(self, migration_id: str) -> None:
        entry = self.migrations.get(migration_id)
        if entry is None or entry[3] in ('COMMITTED', 'ABORTED'):
            return
        role, inst, peer, state = entry
        entry[3] = 'ABORTED'
        self.journal.append(('aborted', migration_id, peer))
        if role == 'source':
            self.keys[inst] = 'ACTIVE'
            self._peer(peer).abort(migration_id)
        else:
            self.keys.pop(inst, None)
            self.pending.pop(migration_id, None)

    def recover(self, oracle: ty.Callable[[str, str], bool]) -> None:
        for mig, (role, inst, _peer, state) in list(self.migrations.items()):
            if role == 'source' and state == 'TRANSFERRED':
                if oracle(mig, inst):
                    self.commit(mig)
                else:
                    self.abort(mig)
                self.journal.append(('recovered', mig, state))

    def close(self) -> None:
        self.closed = True
