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



"""A full disk or an I/O error gives the documented error, with the cause.

A full disk (or an I/O error) surfaces at SQLite's COMMIT, which
``Journal.transaction`` translates: ``migrate_key``/``commit``/``abort``/
``recover`` raise ``JournalError`` (never ``sqlite3.OperationalError``),
and ``SourceRole.recover`` goes on past such a migration. A sealed key
blob written to a full disk raises ``JournalError`` too, not a raw
``OSError``.
"""

import collections.abc
import os
import pathlib
import sqlite3
import subprocess
import tempfile
import typing as ty
import uuid

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import keystore as keystore_mod
from nova_vtpm_migration.protocol import states


class CommitFails:
    """A sqlite3 connection whose COMMIT fails like on a full disk."""

    def __init__(self, real: sqlite3.Connection, message: str) -> None:
        self._real = real
        self.message = message

    def __getattr__(self, name: str) -> ty.Any:
        return getattr(self._real, name)

    def execute(self, sql: str, params: ty.Sequence[ty.Any] = ()
                ) -> sqlite3.Cursor:
        if sql == 'COMMIT':
            raise sqlite3.OperationalError(self.message)
        return self._real.execute(sql, params)


@pytest.fixture
def journal(tmp_path: pathlib.Path
            ) -> collections.abc.Iterator[journal_mod.Journal]:
    j = journal_mod.Journal(str(tmp_path / 'journal.sqlite'))
    yield j
    j.close()


@pytest.mark.parametrize('message', ['database or disk is full',
                                     'disk I/O error'])
def test_commit_error_on_full_disk_is_a_journal_error(
        journal: journal_mod.Journal, message: str) -> None:
    mid = str(uuid.uuid4())
    journal.create_migration(mid, states.Role.SOURCE, 'NEW',
                             str(uuid.uuid4()), 'peer')
    journal._db = CommitFails(journal._db, message)  # type: ignore
    with pytest.raises(errors.JournalError) as exc:
        journal.set_state(mid, states.Role.SOURCE, 'ATTESTED')
    assert message in str(exc.value)
    # Nothing of the failed transaction survives.
    journal._db = journal._db._real  # type: ignore
    row = journal.get(mid, states.Role.SOURCE)
    assert row is not None and row.state == 'NEW'


class FakeTpm:
    def seal(self, secret: bytes) -> bytes:
        return b'sealed-blob' * 100


@pytest.fixture
def full_dir() -> collections.abc.Iterator[str]:
    """A directory on a full 64 KiB tmpfs (skipped where mounting is not
    allowed)."""
    path = tempfile.mkdtemp(prefix='nvm-full-')
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs',
                       path], capture_output=True,
                      check=False).returncode != 0:
        os.rmdir(path)
        pytest.skip('cannot mount a tmpfs here (not root)')
    try:
        fd = os.open(os.path.join(path, 'filler'), os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b'\0' * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield path
    finally:
        subprocess.run(['umount', '-l', path], check=False)
        os.rmdir(path)


def test_blob_write_on_full_disk_is_a_journal_error(
        journal: journal_mod.Journal, full_dir: str) -> None:
    store = keystore_mod.KeyStore(journal, full_dir, FakeTpm())
    inst = str(uuid.uuid4())
    with pytest.raises(errors.KeyStoreError) as exc:
        store.add(inst, b'\x01' * 32)
    assert 'No space left on device' in str(exc.value)
    assert store.state(inst) is None
    assert not [n for n in os.listdir(full_dir) if n.startswith(inst)]
