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


"""The commit-protocol state machines: explicit tables, nothing else."""

import itertools

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import states

_S = states.SourceState
_D = states.DestState
_K = states.KeyState


def test_contract_state_names() -> None:
    # The Promela model and the architecture contract use these names.
    assert [s.value for s in _S] == [
        'NEW', 'ATTESTED', 'PREPARED', 'TRANSFERRING', 'TRANSFERRED',
        'COMMITTING', 'COMMITTED', 'ABORTING', 'ABORTED']
    assert [s.value for s in _D] == ['RESERVED', 'INSTALLED', 'COMMITTED',
                                     'ABORTED']
    assert [s.value for s in _K] == ['ACTIVE', 'LOCKED', 'PENDING',
                                     'DESTROYED']


@pytest.mark.parametrize('old,new', itertools.product(list(_S), list(_S)))
def test_source_table(old: states.SourceState,
                      new: states.SourceState) -> None:
    if new in states.SOURCE_TRANSITIONS[old]:
        states.check_source('m', old, new)
    else:
        with pytest.raises(errors.StateError):
            states.check_source('m', old, new)


@pytest.mark.parametrize('old,new', itertools.product(list(_D), list(_D)))
def test_dest_table(old: states.DestState, new: states.DestState) -> None:
    if new in states.DEST_TRANSITIONS[old]:
        states.check_dest('m', old, new)
    else:
        with pytest.raises(errors.StateError):
            states.check_dest('m', old, new)


def test_commit_is_final_and_only_after_transfer() -> None:
    assert not states.SOURCE_TRANSITIONS[_S.COMMITTED]
    assert not states.SOURCE_TRANSITIONS[_S.ABORTED]
    assert _S.ABORTING not in states.SOURCE_TRANSITIONS[_S.COMMITTING]
    before_transfer = (_S.NEW, _S.ATTESTED, _S.PREPARED)
    for old in before_transfer:
        assert _S.COMMITTING not in states.SOURCE_TRANSITIONS[old]
    assert _D.COMMITTED not in states.DEST_TRANSITIONS[_D.RESERVED]
    assert not states.DEST_TRANSITIONS[_D.COMMITTED]
    with pytest.raises(errors.StateError):
        states.check_source('m', None, _S.ATTESTED)
    with pytest.raises(errors.StateError):
        states.check_dest('m', None, _D.INSTALLED)


def test_key_table() -> None:
    states.check_key('i', None, _K.ACTIVE)
    states.check_key('i', _K.ACTIVE, _K.LOCKED)
    for old, new in ((_K.LOCKED, _K.LOCKED), (_K.PENDING, _K.LOCKED),
                     (None, _K.LOCKED), (_K.DESTROYED, _K.LOCKED)):
        with pytest.raises(errors.KeyStateError):
            states.check_key('i', old, new)
