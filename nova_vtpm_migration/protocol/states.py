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


"""The commit-protocol state machines, as explicit transition tables.

The names are the contract's (doc/source/contributor/architecture.rst)
and are used verbatim by the Promela model of the commit protocol; do not
rename them without changing both.

Source (coordinator)::

    NEW -> ATTESTED -> PREPARED -> TRANSFERRING (key LOCKED)
        -> TRANSFERRED -> COMMITTING -> COMMITTED (key destroyed)
    NEW | ATTESTED | PREPARED | TRANSFERRING | TRANSFERRED
        -> ABORTING -> ABORTED (key ACTIVE again)
    TRANSFERRING -> COMMITTING   (recovery only: the outcome oracle says
                                  the guest runs on the destination)

Destination (participant)::

    RESERVED -> INSTALLED (key PENDING) -> COMMITTED (key ACTIVE)
    RESERVED | INSTALLED -> ABORTED (key destroyed)
    (none) -> ABORTED             (abort of a migration never prepared
                                   here: a tombstone that refuses a late
                                   prepare)

Per-instance key custody on one host::

    (none) | DESTROYED -> ACTIVE   (provisioned on this host)
    (none) | DESTROYED -> PENDING  (received, not yet committed)
    ACTIVE -> LOCKED (exported; no second export) -> ACTIVE | DESTROYED
    PENDING -> ACTIVE | DESTROYED
"""

import enum

from nova_vtpm_migration.protocol import errors


class Role(enum.StrEnum):
    """The role of a host in one migration."""

    SOURCE = 'source'
    DESTINATION = 'destination'


class SourceState(enum.StrEnum):
    """States of a migration on its source host."""

    NEW = 'NEW'
    ATTESTED = 'ATTESTED'
    PREPARED = 'PREPARED'
    TRANSFERRING = 'TRANSFERRING'
    TRANSFERRED = 'TRANSFERRED'
    COMMITTING = 'COMMITTING'
    COMMITTED = 'COMMITTED'
    ABORTING = 'ABORTING'
    ABORTED = 'ABORTED'


class DestState(enum.StrEnum):
    """States of a migration on its destination host."""

    RESERVED = 'RESERVED'
    INSTALLED = 'INSTALLED'
    COMMITTED = 'COMMITTED'
    ABORTED = 'ABORTED'


class KeyState(enum.StrEnum):
    """Custody state of an instance key on one host."""

    ACTIVE = 'ACTIVE'
    LOCKED = 'LOCKED'
    PENDING = 'PENDING'
    DESTROYED = 'DESTROYED'


_S = SourceState
_D = DestState
_K = KeyState

#: Allowed source transitions (old -> set of new).
SOURCE_TRANSITIONS: dict[SourceState, frozenset[SourceState]] = {
    _S.NEW: frozenset({_S.ATTESTED, _S.ABORTING}),
    _S.ATTESTED: frozenset({_S.PREPARED, _S.ABORTING}),
    _S.PREPARED: frozenset({_S.TRANSFERRING, _S.ABORTING}),
    _S.TRANSFERRING: frozenset({_S.TRANSFERRED, _S.COMMITTING,
                                _S.ABORTING}),
    _S.TRANSFERRED: frozenset({_S.COMMITTING, _S.ABORTING}),
    _S.COMMITTING: frozenset({_S.COMMITTED}),
    _S.ABORTING: frozenset({_S.ABORTED}),
    _S.COMMITTED: frozenset(),
    _S.ABORTED: frozenset(),
}
SOURCE_INITIAL = frozenset({_S.NEW})
#: Source states whose outcome is not decided yet (recovery asks the
#: outcome oracle).
SOURCE_IN_DOUBT = frozenset({_S.TRANSFERRING, _S.TRANSFERRED})
#: Source states in which a decision was taken but not acknowledged.
SOURCE_DECIDED = frozenset({_S.COMMITTING, _S.ABORTING})
SOURCE_FINAL = frozenset({_S.COMMITTED, _S.ABORTED})

#: Allowed destination transitions.
DEST_TRANSITIONS: dict[DestState, frozenset[DestState]] = {
    _D.RESERVED: frozenset({_D.INSTALLED, _D.ABORTED}),
    _D.INSTALLED: frozenset({_D.COMMITTED, _D.ABORTED}),
    _D.COMMITTED: frozenset(),
    _D.ABORTED: frozenset(),
}
DEST_INITIAL = frozenset({_D.RESERVED, _D.ABORTED})
DEST_FINAL = frozenset({_D.COMMITTED, _D.ABORTED})

#: Allowed key-custody transitions; ``None`` is "no key on this host".
KEY_TRANSITIONS: dict[KeyState | None, frozenset[KeyState]] = {
    None: frozenset({_K.ACTIVE, _K.PENDING}),
    _K.ACTIVE: frozenset({_K.LOCKED, _K.DESTROYED}),
    _K.LOCKED: frozenset({_K.ACTIVE, _K.DESTROYED}),
    _K.PENDING: frozenset({_K.ACTIVE, _K.DESTROYED}),
    _K.DESTROYED: frozenset({_K.ACTIVE, _K.PENDING}),
}


def check_source(migration_id: str, old: SourceState | None,
                 new: SourceState) -> None:
    """Refuse an illegal source transition.

    :raises StateError: ``old -> new`` is not in the table.
    """
    allowed = SOURCE_INITIAL if old is None else SOURCE_TRANSITIONS[old]
    if new not in allowed:
        raise errors.StateError(role=Role.SOURCE.value,
                                migration_id=migration_id,
                                old=old.value if old else '(none)',
                                new=new.value)


def check_dest(migration_id: str, old: DestState | None,
               new: DestState) -> None:
    """Refuse an illegal destination transition.

    :raises StateError: ``old -> new`` is not in the table.
    """
    allowed = DEST_INITIAL if old is None else DEST_TRANSITIONS[old]
    if new not in allowed:
        raise errors.StateError(role=Role.DESTINATION.value,
                                migration_id=migration_id,
                                old=old.value if old else '(none)',
                                new=new.value)


def check_key(instance_uuid: str, old: KeyState | None,
              new: KeyState) -> None:
    """Refuse an illegal key-custody transition.

    :raises KeyStateError: ``old -> new`` is not in the table.
    """
    if new not in KEY_TRANSITIONS[old]:
        expected = sorted(s.value for s, n in KEY_TRANSITIONS.items()
                          if s is not None and new in n)
        raise errors.KeyStateError(instance_uuid=instance_uuid,
                                   state=old.value if old else '(none)',
                                   expected=' or '.join(expected))
