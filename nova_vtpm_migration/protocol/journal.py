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


"""The per-host durable migration journal (SQLite).

One database file per host holds:

* ``migrations``: one row per (migration, role) with its state, peer,
  instance, the peer's AK name and public protocol context (nonces,
  manifest hash), and timestamps;
* ``seen_ids``: every migration id this host has ever used or accepted
  (single use, also across restarts);
* ``peer_clocks``: the last TPM clock of each peer AK (quotes must never
  go backwards);
* ``records``: signed manifests and receipts (public, for audits);
* ``keys``: the per-instance key custody state (see :mod:`.keystore`;
  the sealed blobs themselves are files).

The database runs in WAL mode with ``synchronous=FULL``, so every commit
(one per state change) is fsynced before the call returns; the protocol
journals each state change before it sends the message that depends on it.
Nothing here is secret: no key material is ever written to the journal.
"""

import collections.abc
import contextlib
import dataclasses
import json
import os
import sqlite3
import threading
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import fileutils
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.tpm import evidence

LOG = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    migration_id TEXT NOT NULL,
    role TEXT NOT NULL,
    state TEXT NOT NULL,
    instance_uuid TEXT NOT NULL,
    peer TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (migration_id, role)
);
CREATE TABLE IF NOT EXISTS seen_ids (
    migration_id TEXT PRIMARY KEY,
    first_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_clocks (
    ak_name TEXT PRIMARY KEY,
    clock INTEGER NOT NULL,
    reset_count INTEGER NOT NULL,
    restart_count INTEGER NOT NULL,
    safe INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    migration_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (migration_id, kind)
);
CREATE TABLE IF NOT EXISTS keys (
    instance_uuid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    migration_id TEXT NOT NULL DEFAULT '',
    generation INTEGER NOT NULL,
    blob_file TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class MigrationRow:
    """One journalled migration as seen by one role."""

    migration_id: str
    role: states.Role
    state: str
    instance_uuid: str
    peer: str
    context: dict[str, ty.Any]
    created_at: float
    updated_at: float

    @property
    def peer_ak_name(self) -> bytes:
        """The AK name of the peer host (empty before attestation)."""
        return bytes.fromhex(self.context.get('peer_ak_name', ''))


class Journal:
    """The durable journal of one host.

    :param path: the SQLite database file (created if missing).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(path, isolation_level=None,
                                   check_same_thread=False, timeout=30)
        self._db.execute('PRAGMA journal_mode=WAL')
        self._db.execute('PRAGMA synchronous=FULL')
        self._db.execute('PRAGMA secure_delete=ON')
        self._db.executescript(_SCHEMA)
        fileutils.fsync_dir(directory)

    def close(self) -> None:
        """Close the database (pending transactions roll back)."""
        with self._lock:
            self._db.close()

    @property
    def in_transaction(self) -> bool:
        """Whether the calling code runs inside :meth:`transaction`."""
        return self._depth > 0

    @contextlib.contextmanager
    def transaction(self) -> collections.abc.Iterator[None]:
        """One atomic, durable transaction (re-entrant; the outermost
        commits)."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._statement('BEGIN IMMEDIATE')
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._rollback()
                raise
            self._depth -= 1
            if outer:
                try:
                    self._statement('COMMIT')
                except errors.JournalError:
                    # E.g. a full disk: nothing of this
                    # transaction may survive half-applied.
                    self._rollback()
                    raise

    def _statement(self, sql: str) -> None:
        try:
            self._db.execute(sql)
        except sqlite3.Error as exc:
            raise errors.JournalError(reason=f'{sql}: {exc}') from None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute('ROLLBACK')

    def execute(self, sql: str, params: collections.abc.Sequence[ty.Any] = ()
                ) -> list[tuple[ty.Any, ...]]:
        """Run one statement inside a transaction; return all rows."""
        with self.transaction():
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise errors.JournalError(
                    reason=f'{type(exc).__name__}: {exc}') from None

    # -- migrations ---------------------------------------------------------

    def create_migration(self, migration_id: str, role: states.Role,
                         state: str, instance_uuid: str, peer: str,
                         context: dict[str, ty.Any] | None = None) -> None:
        """Journal a new migration in its initial state."""
        self._check(migration_id, role, None, state)
        now = time.time()
        self.execute(
            'INSERT INTO migrations (migration_id, role, state, '
            'instance_uuid, peer, context, created_at, '
            'updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
            (migration_id, role.value, state, instance_uuid, peer,
             json.dumps(context or {}, sort_keys=True),
             now, now))

    def set_state(self, migration_id: str, role: states.Role, new: str,
                  **context: ty.Any) -> MigrationRow:
        """Move a migration to ``new`` after checking the transition table,
        optionally merging public ``context`` values (JSON-serialisable).

        :raises StateError: illegal transition.
        :raises UnknownMigration: no such migration in this role.
        """
        with self.transaction():
            row = self.get(migration_id, role)
            if row is None:
                raise errors.UnknownMigration(migration_id=migration_id)
            self._check(migration_id, role, row.state, new)
            merged = dict(row.context, **context)
            self.execute(
                'UPDATE migrations SET state = ?, context = ?, '
                'updated_at = ? WHERE migration_id = ? AND role = ?',
                (new, json.dumps(merged, sort_keys=True), time.time(),
                 migration_id, role.value))
            LOG.debug('Migration %s (%s): %s -> %s', migration_id,
                      role.value, row.state, new)
            return dataclasses.replace(row, state=new, context=merged)

    def update_context(self, migration_id: str, role: states.Role,
                       **context: ty.Any) -> None:
        """Merge public context values without a state change."""
        with self.transaction():
            row = self.get(migration_id, role)
            if row is None:
                raise errors.UnknownMigration(migration_id=migration_id)
            self.execute(
                'UPDATE migrations SET context = ?, updated_at = ? '
                'WHERE migration_id = ? AND role = ?',
                (json.dumps(dict(row.context, **context), sort_keys=True),
                 time.time(), migration_id, role.value))

    @staticmethod
    def _check(migration_id: str, role: states.Role, old: str | None,
               new: str) -> None:
        if role is states.Role.SOURCE:
            states.check_source(
                migration_id, states.SourceState(old) if old else None,
                states.SourceState(new))
        else:
            states.check_dest(
                migration_id, states.DestState(old) if old else None,
                states.DestState(new))

    def get(self, migration_id: str, role: states.Role
            ) -> MigrationRow | None:
        """Return one migration row, or ``None``."""
        rows = self.execute(
            'SELECT migration_id, role, state, instance_uuid, peer, '
            'context, created_at, updated_at FROM migrations '
            'WHERE migration_id = ? AND role = ?', (migration_id,
                                                    role.value))
        return _row(rows[0]) if rows else None

    def list_migrations(self, role: states.Role | None = None,
                        states_in: collections.abc.Iterable[str] | None = None
                        ) -> list[MigrationRow]:
        """List migrations, optionally filtered by role and states."""
        rows = self.execute(
            'SELECT migration_id, role, state, instance_uuid, peer, '
            'context, created_at, updated_at FROM migrations '
            'ORDER BY created_at')
        wanted = set(states_in) if states_in is not None else None
        return [r for r in map(_row, rows)
                if (role is None or r.role is role)
                and (wanted is None or r.state in wanted)]

    # -- single-use migration ids -------------------------------------------

    def mark_seen(self, migration_id: str) -> None:
        """Record a migration id as used.

        :raises MigrationIdReused: the id was seen before.
        """
        with self.transaction():
            if self.is_seen(migration_id):
                raise errors.MigrationIdReused(migration_id=migration_id)
            self.execute('INSERT INTO seen_ids VALUES (?, ?)',
                         (migration_id, time.time()))

    def is_seen(self, migration_id: str) -> bool:
        """Whether a migration id was ever used here."""
        return bool(self.execute(
            'SELECT 1 FROM seen_ids WHERE migration_id = ?',
            (migration_id,)))

    # -- peer clocks (handshake.ClockStore) ---------------------------------

    def get_peer_clock(self, ak_name: bytes) -> evidence.ClockInfo | None:
        """The last verified TPM clock of a peer AK, or ``None``."""
        rows = self.execute(
            'SELECT clock, reset_count, restart_count, safe FROM '
            'peer_clocks WHERE ak_name = ?', (ak_name.hex(),))
        if not rows:
            return None
        clock, reset, restart, safe = rows[0]
        return evidence.ClockInfo(clock=clock, reset_count=reset,
                                  restart_count=restart, safe=bool(safe))

    def set_peer_clock(self, ak_name: bytes,
                       clock: evidence.ClockInfo) -> None:
        """Persist a peer AK's verified TPM clock."""
        self.execute(
            'INSERT OR REPLACE INTO peer_clocks VALUES (?, ?, ?, ?, ?, ?)',
            (ak_name.hex(), clock.clock, clock.reset_count,
             clock.restart_count, int(clock.safe), time.time()))

    # -- signed records -----------------------------------------------------

    def put_record(self, migration_id: str, kind: str, body: bytes) -> None:
        """Store a public signed record (manifest, receipt, audit record)."""
        self.execute('INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)',
                     (migration_id, kind, body, time.time()))

    def get_record(self, migration_id: str, kind: str) -> bytes | None:
        """Return a stored record, or ``None``."""
        rows = self.execute(
            'SELECT body FROM records WHERE migration_id = ? AND kind = ?',
            (migration_id, kind))
        return bytes(rows[0][0]) if rows else None


def _row(r: tuple[ty.Any, ...]) -> MigrationRow:
    return MigrationRow(migration_id=r[0], role=states.Role(r[1]),
                        state=r[2], instance_uuid=r[3], peer=r[4],
                        context=json.loads(r[5]), created_at=r[6],
                        updated_at=r[7])

