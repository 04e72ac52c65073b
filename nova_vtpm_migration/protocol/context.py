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

"""What the migration roles may use of their host.

:class:`HostContext` is the narrow, explicit context the source and
destination roles (:mod:`.source`, :mod:`.destination`) run in: this
host's name, TPM, trust policy, journal, key store, the lock serialising
custody changes, and the attested :class:`~.channel.Channel` to peers. The
roles hold no reference to the engine that built them; both share one
context, so a part replaced in it (a test's fault injector wraps the TPM)
is seen by both.
"""

import dataclasses
import threading
import typing as ty

from nova_vtpm_migration.protocol import channel as channel_mod
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import keystore as keystore_mod


@dataclasses.dataclass
class HostContext:
    """One host's protocol state, as the roles see it.

    :ivar host: this host's transport address (sent to destinations so
        they can ask for the outcome during recovery).
    :ivar tpm: this host's ``HostTpm``.
    :ivar policy: the ``TrustPolicy`` every peer must satisfy.
    :ivar journal: this host's durable journal.
    :ivar keystore: this host's key custody.
    :ivar state_lock: serialises custody changes on this host (the vault
        of the compute host shares it).
    :ivar channel: attested sessions and sealed calls to peers.
    """

    host: str
    tpm: ty.Any
    policy: ty.Any
    journal: journal_mod.Journal
    keystore: keystore_mod.KeyStore
    state_lock: threading.RLock
    channel: channel_mod.Channel
