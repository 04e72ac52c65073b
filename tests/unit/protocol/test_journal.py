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


"""The durable journal (SQLite only; no key material, no TPM)."""

import pathlib

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.tpm import evidence

MID = '12345678-1234-4234-8234-123456789abc'
_SRC = states.Role.SOURCE
_DST = states.Role.DESTINATION


def test_durability_settings(tmp_path: pathlib.Path) -> None:
    j = journal_mod.Journal(str(tmp_path / 'j.sqlite'))
    assert j.execute('PRAGMA journal_mode')[0][0] == 'wal'
    assert j.execute('PRAGMA synchronous')[0][0] == 2  # FULL
    j.close()


def test_transitions_follow_the_table(tmp_path: pathlib.Path) -> None:
    j = journal_mod.Journal(str(tmp_path / 'j.sqlite'))
    j.create_migration(MID, _SRC, 'NEW', 'inst', 'peer')
    j.set_state(MID, _SRC, 'ATTESTED', peer_ak_name='00ab')
    with pytest.raises(errors.StateError):
        j.set_state(MID, _SRC, 'COMMITTED')
    with pytest.raises(errors.StateError):
        j.create_migration(MID + 'x', _SRC, 'PREPARED', 'i', 'p')
    with pytest.raises(errors.UnknownMigration):
        j.set_state('nope', _SRC, 'ABORTING')
    row = j.get(MID, _SRC)
    assert row is not None and row.state == 'ATTESTED'
    assert row.peer_ak_name == b'\x00\xab'
    j.create_migration(MID, _DST, 'RESERVED', 'inst', 'peer')
    assert [r.role for r in j.list_migrations()] == [_SRC, _DST]
    assert [r.migration_id for r in j.list_migrations(
        _DST, ['RESERVED'])] == [MID]
    j.close()


def test_seen_ids_and_clocks_survive_restart(tmp_path: pathlib.Path
                                              ) -> None:
    path = str(tmp_path / 'j.sqlite')
    j = journal_mod.Journal(path)
    j.mark_seen(MID)
    clock = evidence.ClockInfo(clock=5, reset_count=1, restart_count=0,
                               safe=True)
    j.set_peer_clock(b'ak', clock)
    j.put_record(MID, 'receipt', b'public')
    j.close()
    j = journal_mod.Journal(path)
    with pytest.raises(errors.MigrationIdReused):
        j.mark_seen(MID)
    assert j.get_peer_clock(b'ak') == clock
    assert j.get_peer_clock(b'other') is None
    assert j.get_record(MID, 'receipt') == b'public'
    j.close()


def test_transaction_rolls_back(tmp_path: pathlib.Path) -> None:
    j = journal_mod.Journal(str(tmp_path / 'j.sqlite'))
    with pytest.raises(RuntimeError):
        with j.transaction():
            j.mark_seen(MID)
            raise RuntimeError()
    assert not j.is_seen(MID)
    j.close()
