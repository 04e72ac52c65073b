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


"""Per-instance vTPM secret custody on one host.

A secret exists on a host only as a blob sealed to the host TPM
(``HostTpm.seal``; the blob is encrypted by the TPM and bound to its PCR
policy), in a file named after the instance and a generation number. The
custody state lives in the journal's ``keys`` table, so a key-state change
and the migration-state change it belongs to commit in one transaction:

* ``ACTIVE``: this host may use (and export) the key;
* ``LOCKED``: exported for a migration in flight; no second export;
* ``PENDING``: received from a source, usable only by the local consumer
  of that migration until the source commits;
* ``DESTROYED``: the blob was overwritten and unlinked.
"""

import contextlib
import os
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import fileutils
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import states

LOG = logging.getLogger(__name__)

_K = states.KeyState


class KeyStore:
    """Sealed per-instance secrets of one host.

    :param journal: the host's journal (holds the custody states).
    :param key_dir: directory of the sealed blobs.
    :param tpm: the host's ``HostTpm`` (``seal``/``unseal``).
    """

    def __init__(self, journal: journal_mod.Journal, key_dir: str,
                 tpm: ty.Any) -> None:
        self._journal = journal
        self._dir = key_dir
        self._tpm = tpm
        os.makedirs(key_dir, mode=0o700, exist_ok=True)

    @property
    def key_dir(self) -> str:
        """The directory of the sealed blobs."""
        return self._dir

    def state(self, instance_uuid: str) -> states.KeyState | None:
        """The custody state of an instance's key on this host."""
        row = self._row(instance_uuid)
        return _K(row[0]) if row else None

    def migration_of(self, instance_uuid: str) -> str:
        """The migration id the key's current state belongs to."""
        row = self._row(instance_uuid)
        return str(row[1]) if row else ''

    def _row(self, instance_uuid: str) -> tuple[ty.Any, ...] | None:
        rows = self._journal.execute(
            'SELECT state, migration_id, generation, blob_file FROM keys '
            'WHERE instance_uuid = ?', (instance_uuid,))
        return rows[0] if rows else None

    def _set(self, instance_uuid: str, new: states.KeyState,
             migration_id: str, blob_file: str | None = None) -> None:

        with self._journal.transaction():
            row = self._row(instance_uuid)
            old = _K(row[0]) if row else None
            states.check_key(instance_uuid, old, new)
            if row is None:
                self._journal.execute(
                    'INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?)',
                    (instance_uuid, new.value, migration_id, 1,
                     blob_file or '', time.time()))
            else:
                generation = row[2] + (1 if blob_file else 0)
                self._journal.execute(
                    'UPDATE keys SET state = ?, migration_id = ?, '
                    'generation = ?, blob_file = ?, updated_at = ? '
                    'WHERE instance_uuid = ?',
                    (new.value, migration_id, generation,
                     blob_file if blob_file is not None else row[3],
                     time.time(), instance_uuid))

    def seal(self, instance_uuid: str, secret: bytes,
             bound_like: bytes | None = None) -> bytes:
        """Seal ``secret`` with the host TPM (no custody change; call it
        outside the state lock, then :meth:`install_pending_sealed`).

        :param bound_like: this host's binding key that unwrapped the
            secret: seal under its PCR policy (see ``HostTpm.seal``).
        :raises KeyStoreError: the secret cannot be sealed (size).
        """
        try:
            blob: bytes = (self._tpm.seal(secret) if bound_like is None else
                           self._tpm.seal(secret, bound_like=bound_like))
        except ValueError:
            raise errors.KeyStoreError(
                instance_uuid=instance_uuid,
                reason='the secret cannot be sealed (size)') from None
        return blob

    def _write_blob(self, instance_uuid: str, secret: bytes) -> str:
        return self._write_sealed(instance_uuid,
                                  self.seal(instance_uuid, secret))

    def _write_sealed(self, instance_uuid: str, blob: bytes) -> str:
        row = self._row(instance_uuid)
        generation = (row[2] + 1) if row else 1
        name = f'{instance_uuid}.{generation}.sealed'
        path = os.path.join(self._dir, name)
        try:
            fileutils.write_durably(path, blob)
            fileutils.fsync_dir(self._dir)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise errors.KeyStoreError(
                instance_uuid=instance_uuid,
                reason=f'cannot write the sealed key: {exc.strerror}'
            ) from None
        return name

    def _store(self, instance_uuid: str, secret: bytes,
               new: states.KeyState, migration_id: str) -> None:
        messages.check_uuid(instance_uuid, 'instance_uuid')
        row = self._row(instance_uuid)
        states.check_key(instance_uuid, _K(row[0]) if row else None, new)
        name = self._write_blob(instance_uuid, secret)
        self._set(instance_uuid, new, migration_id, blob_file=name)

    def add(self, instance_uuid: str, secret: bytes) -> None:
        """Provision an instance's secret on this host as ``ACTIVE``."""
        self._store(instance_uuid, secret, _K.ACTIVE, '')

    def install_pending(self, instance_uuid: str, migration_id: str,
                        secret: bytes) -> None:
        """Store a received secret as ``PENDING`` for ``migration_id``."""
        self._store(instance_uuid, secret, _K.PENDING, migration_id)

    def install_pending_sealed(self, instance_uuid: str, migration_id: str,
                               blob: bytes) -> None:
        """Store a received secret, sealed by :meth:`seal`, as
        ``PENDING`` for ``migration_id``."""
        self._store_sealed(instance_uuid, blob, _K.PENDING, migration_id)

    def add_sealed(self, instance_uuid: str, blob: bytes) -> None:
        """Provision a secret sealed by :meth:`seal` as ``ACTIVE``."""
        self._store_sealed(instance_uuid, blob, _K.ACTIVE, '')

    def _store_sealed(self, instance_uuid: str, blob: bytes,
                      new: states.KeyState, migration_id: str) -> None:
        messages.check_uuid(instance_uuid, 'instance_uuid')
        row = self._row(instance_uuid)
        states.check_key(instance_uuid, _K(row[0]) if row else None, new)
        name = self._write_sealed(instance_uuid, blob)
        self._set(instance_uuid, new, migration_id, blob_file=name)

    def lock_for_export(self, instance_uuid: str, migration_id: str) -> None:
        """``ACTIVE -> LOCKED``: the key leaves with ``migration_id``."""
        self._set(instance_uuid, _K.LOCKED, migration_id)

    def unlock(self, instance_uuid: str, migration_id: str) -> None:
        """``LOCKED -> ACTIVE`` after an abort of ``migration_id``."""
        self._require(instance_uuid, _K.LOCKED, migration_id)
        self._set(instance_uuid, _K.ACTIVE, '')

    def activate(self, instance_uuid: str, migration_id: str) -> None:
        """``PENDING -> ACTIVE`` at commit of ``migration_id``."""
        self._require(instance_uuid, _K.PENDING, migration_id)
        self._set(instance_uuid, _K.ACTIVE, '')

    def _require(self, instance_uuid: str, state: states.KeyState,
                 migration_id: str) -> None:
        row = self._row(instance_uuid)
        if row is None or row[0] != state.value or row[1] != migration_id:
            raise errors.KeyStateError(
                instance_uuid=instance_uuid,
                state=row[0] if row else '(none)',
                expected=f'{state.value} for migration {migration_id}')

    def read(self, instance_uuid: str,
             allowed: tuple[states.KeyState, ...] = (_K.ACTIVE,),
             migration_id: str | None = None) -> bytes:
        """Unseal and return an instance's secret (in-process only).

        :param allowed: custody states in which reading is allowed.
        :param migration_id: if given, the key state must belong to it.
        :raises KeyNotFound: no key in an allowed state.
        """
        row = self._row(instance_uuid)
        if (row is None or _K(row[0]) not in allowed
                or (migration_id is not None and row[1] != migration_id)):
            raise errors.KeyNotFound(instance_uuid=instance_uuid)
        with open(os.path.join(self._dir, row[3]), 'rb') as f:
            blob = f.read()
        secret: bytes = self._tpm.unseal(blob)
        return secret

    def destroy(self, instance_uuid: str) -> None:
        """Mark the key ``DESTROYED``, then overwrite and unlink its blob."""
        row = self._row(instance_uuid)
        if row is None or row[0] == _K.DESTROYED.value:
            return
        self._set(instance_uuid, _K.DESTROYED, row[1])
        # Inside an enclosing transaction the blob is wiped by
        # the caller after the commit (a rollback must not lose the key).
        if not self._journal.in_transaction:
            self.wipe_orphans()

    def wipe_orphans(self) -> list[str]:
        """Overwrite and delete every blob file that no live key uses
        (left by a crash between writing a blob and journalling it, or
        between journalling a destroy and wiping).

        :returns: the wiped file names.
        """
        live = {r[0] for r in self._journal.execute(
            'SELECT blob_file FROM keys WHERE state != ?',
            (_K.DESTROYED.value,))}
        wiped = []
        for name in sorted(os.listdir(self._dir)):
            if name.endswith('.sealed') and name not in live:
                wipe(os.path.join(self._dir, name))
                wiped.append(name)
        if wiped:
            fileutils.fsync_dir(self._dir)
            LOG.debug('Wiped %d unused sealed key blobs', len(wiped))
        return wiped

    def instances(self) -> dict[str, states.KeyState]:
        """Custody state of every instance known on this host."""
        return {r[0]: _K(r[1]) for r in self._journal.execute(
            'SELECT instance_uuid, state FROM keys')}


def wipe(path: str) -> None:
    """Overwrite a file with zeros, fsync it and unlink it (if present)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        os.write(fd, b'\0' * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)

