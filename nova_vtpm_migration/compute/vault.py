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

"""Nova vTPM secrets of this host's instances, sealed at rest.

Upstream ``host`` mode keeps an instance's vTPM secret as a persistent,
readable libvirt secret. The vault keeps it instead as an envelope
(:mod:`~nova_vtpm_migration.compute.envelope`: AES-256-GCM under the
instance's key-encryption key, bound to the instance UUID) in
``<state_path>/engine/vault/<instance>.envelope``. The key-encryption key
is the instance's key in the protocol's key store, sealed to the host TPM
and its PCR policy, with the key store's custody states: the envelope opens
only while that key is ``ACTIVE`` on this host. A live migration moves the
key through the protocol and the envelope, unchanged, as a state blob, so
the source never decrypts the secret to migrate it.

An envelope without a live key is useless and is wiped by
:meth:`SecretVault.reconcile`, which the engine adapter runs after every
commit, abort and recovery.
"""

import contextlib
import os
import threading
import typing as ty

from cryptography import exceptions as crypto_exceptions
from oslo_log import log as logging

from nova_vtpm_migration import fileutils
from nova_vtpm_migration.compute import envelope as secret_envelope
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.protocol import errors as protocol_errors
from nova_vtpm_migration.protocol import keystore as keystore_mod
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.tpm import errors as tpm_errors

LOG = logging.getLogger(__name__)

_K = states.KeyState
_SUFFIX = '.envelope'
#: Key states in which the vault still holds an instance's secret.
_HELD = (_K.ACTIVE, _K.LOCKED, _K.PENDING)


class SecretVault:
    """Sealed vTPM secrets of one host.

    :param keystore: the host's protocol key store (holds the sealed
        key-encryption keys and their custody states).
    :param state_lock: the engine's lock serialising custody changes.
    :param host: this host's name (for error texts).
    :param vault_dir: directory of the envelopes (default: ``vault`` next to
        the key store's directory).
    """

    def __init__(self, keystore: keystore_mod.KeyStore,
                 state_lock: ty.ContextManager[ty.Any] | threading.RLock,
                 host: str, vault_dir: str | None = None) -> None:
        self._keys = keystore
        self._lock = state_lock
        self._host = host
        self.directory = vault_dir or os.path.join(
            os.path.dirname(os.path.abspath(keystore.key_dir)), 'vault')
        os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def path(self, instance_uuid: str) -> str:
        """The envelope file of an instance (checked to be a UUID)."""
        messages.check_uuid(instance_uuid, 'instance_uuid')
        return os.path.join(self.directory, instance_uuid + _SUFFIX)

    def _fail(self, instance_uuid: str, reason: str) -> ty.NoReturn:
        raise errors.SecretUnavailable(instance=instance_uuid,
                                       host=self._host, reason=reason)

    def holds(self, instance_uuid: str) -> bool:
        """Return whether the vault has the instance's secret.

        True while an envelope exists and the instance's key is on this
        host (``ACTIVE``, or ``LOCKED``/``PENDING`` during a migration).
        """
        return (os.path.exists(self.path(instance_uuid))
                and self._keys.state(instance_uuid) in _HELD)

    def adopt(self, instance_uuid: str, secret: bytes) -> None:
        """Take custody of a secret Nova created or had in libvirt.

        Creates the instance's key (sealed to the TPM) unless it already
        has an ``ACTIVE`` one, then writes the envelope durably.

        :raises SecretUnavailable: the key is moving (``LOCKED`` or
            ``PENDING``) or the envelope cannot be written.
        """
        path = self.path(instance_uuid)
        envelope = self.seal_envelope(instance_uuid, secret)
        with self._lock:
            self._write(instance_uuid, path, envelope)
        LOG.info('vTPM secret of instance %s sealed in the vault of host %s',
                 instance_uuid, self._host)

    def seal_envelope(self, instance_uuid: str, secret: bytes) -> bytes:
        """Return *secret* encrypted under the instance's key.

        Creates the key (sealed to the TPM) when the instance has none
        here; an existing ``ACTIVE`` key is unsealed.

        :raises SecretUnavailable: the key is moving (``LOCKED`` or
            ``PENDING``).
        """
        # The TPM seals or unseals outside the state lock; the lock
        # covers the custody check and change only.
        kek: bytes | None = None
        if self._state_or_fail(instance_uuid) in (None, _K.DESTROYED):
            # A new key is used as generated: no unseal of what was
            # just sealed.
            new = secret_envelope.new_kek()
            sealed = self._keys.seal(instance_uuid, new)
            with self._lock:
                if self._state_or_fail(instance_uuid) in (None,
                                                          _K.DESTROYED):
                    self._keys.add_sealed(instance_uuid, sealed)
                    kek = new
        if kek is None:
            kek = self._keys.read(instance_uuid)
        return secret_envelope.wrap(kek, instance_uuid, secret)

    def _state_or_fail(self, instance_uuid: str) -> states.KeyState | None:
        """The key's custody state unless it is moving.

        :raises SecretUnavailable: ``LOCKED`` or ``PENDING``.
        """
        with self._lock:
            state = self._keys.state(instance_uuid)
            if state not in (None, _K.DESTROYED, _K.ACTIVE):
                moving = self._keys.migration_of(instance_uuid)
                self._fail(instance_uuid, f'its key is {state.value} for '
                           f'migration {moving}')
            return state

    def store(self, instance_uuid: str, envelope: bytes) -> None:
        """Keep an envelope received with a migration (already encrypted
        under the instance's key, which the protocol installed)."""
        with self._lock:
            self._write(instance_uuid, self.path(instance_uuid), envelope)

    def _write(self, instance_uuid: str, path: str, data: bytes) -> None:
        try:
            fileutils.atomic_write(path, data)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path + '.tmp')
            self._fail(instance_uuid,
                       f'cannot write its envelope: {exc.strerror}')

    def envelope(self, instance_uuid: str) -> bytes:
        """Return the instance's envelope as it is (to migrate it).

        :raises SecretUnavailable: the vault does not hold it.
        """
        if not self.holds(instance_uuid):
            self._fail(instance_uuid, 'the vault does not hold it')
        with open(self.path(instance_uuid), 'rb') as f:
            return f.read()

    def open(self, instance_uuid: str) -> bytes:
        """Unseal the key and decrypt the instance's secret (in memory).

        Only while the key is ``ACTIVE`` here: not while it is leaving
        (``LOCKED``) or not yet committed to this host (``PENDING``).

        :raises SecretUnavailable: no envelope, no active key, or the
            envelope does not decrypt under the key.
        """
        path = self.path(instance_uuid)
        # Unsealed outside the state lock (read() checks ACTIVE).
        try:
            kek = self._keys.read(instance_uuid)
        except protocol_errors.KeyNotFound:
            state = self._keys.state(instance_uuid)
            self._fail(instance_uuid, 'its key is ' + (
                state.value if state else 'not on this host'))
        except tpm_errors.TpmError as exc:
            # e.g. the PCRs changed since sealing: the host no longer
            # boots what it booted when it took custody.
            self._fail(instance_uuid, f'the host TPM does not unseal '
                       f'its key: {exc}')
        with self._lock:
            try:
                with open(path, 'rb') as f:
                    envelope = f.read()
            except FileNotFoundError:
                self._fail(instance_uuid, 'its key is here but its envelope '
                                          'is missing')
        try:
            return secret_envelope.unwrap(kek, instance_uuid, envelope)
        except crypto_exceptions.InvalidTag:
            self._fail(instance_uuid, 'its envelope does not decrypt under '
                                      'its key (tampered or replaced)')

    def forget(self, instance_uuid: str) -> None:
        """Destroy the instance's key and wipe its envelope (the instance
        was deleted or left this host outside the protocol).

        A key that is moving (``LOCKED``/``PENDING``) is left to the
        protocol.
        """
        with self._lock:
            if self._keys.state(instance_uuid) == _K.ACTIVE:
                self._keys.destroy(instance_uuid)
        self.reconcile()

    def reconcile(self) -> list[str]:
        """Wipe every envelope whose instance has no key here any more.

        :returns: the instance UUIDs whose envelopes were wiped.
        """
        wiped = []
        with self._lock:
            # One query for all keys: this runs after every commit/abort.
            keys = self._keys.instances()
            for name in sorted(os.listdir(self.directory)):
                path = os.path.join(self.directory, name)
                if name.endswith('.tmp'):
                    keystore_mod.wipe(path)
                    continue
                uuid = name[:-len(_SUFFIX)]
                if name.endswith(_SUFFIX) and keys.get(uuid) not in _HELD:
                    keystore_mod.wipe(path)
                    wiped.append(uuid)
            if wiped:
                fileutils.fsync_dir(self.directory)
        if wiped:
            LOG.info('Wiped the vTPM secret envelopes of instances that are '
                     'no longer on host %s: %s', self._host, wiped)
        return wiped

    def instances(self) -> list[str]:
        """The instances whose envelopes are in the vault."""
        return sorted(name[:-len(_SUFFIX)]
                      for name in os.listdir(self.directory)
                      if name.endswith(_SUFFIX))

    def held_instances(self) -> list[str]:
        """The instances whose secrets the vault holds (see :meth:`holds`).
        """
        keys = self._keys.instances()
        return [uuid for uuid in self.instances()
                if keys.get(uuid) in _HELD]
