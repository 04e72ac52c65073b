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

"""The vault keeps vTPM secrets sealed to the host TPM at rest (real swtpm).

Each security claim is an attack that is refused: a tampered, swapped or
restored envelope, a changed boot state (PCR), a key that is moving.
"""

import collections.abc
import hashlib
import os
import pathlib
import stat
import uuid

import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration import fileutils
from nova_vtpm_migration.compute import errors
from nova_vtpm_migration.compute import host as compute_host
from nova_vtpm_migration.protocol import states

SECRET = os.urandom(384).hex().encode()  # Nova's passphrase is this long


@pytest.fixture
def adapter(configured: pathlib.Path
            ) -> collections.abc.Iterator[compute_host.ComputeHost]:
    built = compute_host.ComputeHost.open(nvm_conf.CONF, 'host-a')
    assert built.available
    try:
        yield built
    finally:
        built.stop()


def _all_state_bytes(root: pathlib.Path) -> bytes:
    return b''.join(p.read_bytes() for p in root.rglob('*') if p.is_file())


def test_adopt_then_open_round_trips_and_nothing_is_plaintext(
        adapter: compute_host.ComputeHost,
        configured: pathlib.Path) -> None:
    inst = str(uuid.uuid4())
    assert not adapter.holds_secret(inst)
    adapter.adopt_secret(inst, SECRET)
    assert adapter.holds_secret(inst)
    assert adapter.open_secret(inst) == SECRET
    envelope = pathlib.Path(adapter.vault.directory) / f'{inst}.envelope'
    assert stat.S_IMODE(envelope.stat().st_mode) == 0o600
    on_disk = _all_state_bytes(configured / 'state')
    for needle in (SECRET, SECRET[:32], SECRET[-32:]):
        assert needle not in on_disk
    # The KEK is sealed by the TPM: not on disk either.
    kek = adapter.engine.keystore.read(inst)
    assert kek not in on_disk


def test_tampered_envelope_is_refused(
        adapter: compute_host.ComputeHost) -> None:
    inst = str(uuid.uuid4())
    adapter.adopt_secret(inst, SECRET)
    path = pathlib.Path(adapter.vault.directory) / f'{inst}.envelope'
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(errors.SecretUnavailable, match='does not decrypt'):
        adapter.open_secret(inst)


def test_envelope_of_another_instance_is_refused(
        adapter: compute_host.ComputeHost) -> None:
    """Swapping two instances' envelopes (both under keys of this host)
    does not give one guest the other's secret."""
    victim, attacker = str(uuid.uuid4()), str(uuid.uuid4())
    adapter.adopt_secret(victim, SECRET)
    adapter.adopt_secret(attacker, b'attacker-known')
    vault = pathlib.Path(adapter.vault.directory)
    (vault / f'{attacker}.envelope').write_bytes(
        (vault / f'{victim}.envelope').read_bytes())
    with pytest.raises(errors.SecretUnavailable, match='does not decrypt'):
        adapter.open_secret(attacker)


def test_restored_backup_after_forget_is_refused(
        adapter: compute_host.ComputeHost,
        configured: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
        ) -> None:
    """A copy of the vault and sealed keys taken before the instance was
    deleted does not bring its secret back."""
    inst = str(uuid.uuid4())
    adapter.adopt_secret(inst, SECRET)
    state = configured / 'state'
    backup = {p: p.read_bytes() for p in state.rglob('*')
              if p.is_file() and 'journal' not in p.name}
    adapter.forget_secret(inst)
    assert not adapter.holds_secret(inst)
    assert adapter.engine.keystore.state(inst) is states.KeyState.DESTROYED
    assert not list(pathlib.Path(adapter.vault.directory).iterdir())
    for path, data in backup.items():
        path.write_bytes(data)
    with pytest.raises(errors.SecretUnavailable, match='(?i)destroyed'):
        adapter.open_secret(inst)


def test_changed_boot_state_cannot_unseal(
        adapter: compute_host.ComputeHost) -> None:
    """The key is sealed to the PCRs of the host when it took custody."""
    from tpm2_pytss import constants
    from tpm2_pytss import types as tt

    inst = str(uuid.uuid4())
    adapter.adopt_secret(inst, SECRET)
    tpm = adapter.engine.tpm  # type: ignore[union-attr]
    selected = sorted(tpm.pcr_selection)
    values = tt.TPML_DIGEST_VALUES([tt.TPMT_HA(
        hashAlg=constants.TPM2_ALG.SHA256,
        digest=tt.TPMU_HA(sha256=hashlib.sha256(b'bootkit').digest()))])
    with tpm.ctx.esys() as e:
        e.pcr_extend(getattr(constants.ESYS_TR, f'PCR{selected[-1]}'),
                     values)
    with pytest.raises(errors.SecretUnavailable,
                       match='does not unseal its key'):
        adapter.open_secret(inst)


def test_moving_key_cannot_be_opened_or_adopted_over(
        adapter: compute_host.ComputeHost) -> None:
    inst, migration = str(uuid.uuid4()), str(uuid.uuid4())
    adapter.adopt_secret(inst, SECRET)
    with adapter.engine.state_lock:
        adapter.engine.keystore.lock_for_export(inst, migration)
    assert adapter.holds_secret(inst)
    with pytest.raises(errors.SecretUnavailable, match='(?i)locked'):
        adapter.open_secret(inst)
    with pytest.raises(errors.SecretUnavailable, match='(?i)locked for '
                       f'migration {migration}'):
        adapter.adopt_secret(inst, b'other')
    adapter.forget_secret(inst)  # left to the protocol
    assert adapter.engine.keystore.state(inst) is states.KeyState.LOCKED
    adapter.engine.keystore.unlock(inst, migration)
    assert adapter.open_secret(inst) == SECRET


def test_reconcile_wipes_envelopes_without_a_key(
        adapter: compute_host.ComputeHost) -> None:
    kept, gone = str(uuid.uuid4()), str(uuid.uuid4())
    adapter.adopt_secret(kept, SECRET)
    adapter.adopt_secret(gone, SECRET)
    adapter.engine.keystore.destroy(gone)
    vault = pathlib.Path(adapter.vault.directory)
    (vault / f'{kept}.envelope.tmp').write_bytes(b'half-written')
    assert adapter.vault.reconcile() == [gone]
    assert sorted(p.name for p in vault.iterdir()) == [f'{kept}.envelope']
    assert adapter.open_secret(kept) == SECRET


def test_full_disk_keeps_the_previous_envelope(
        adapter: compute_host.ComputeHost,
        monkeypatch: pytest.MonkeyPatch) -> None:
    inst = str(uuid.uuid4())
    adapter.adopt_secret(inst, SECRET)
    real = fileutils.write_durably

    def full(path: str, data: bytes, mode: int = 0o600) -> None:
        real(path, data[:3], mode)
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(fileutils, 'write_durably', full)
    with pytest.raises(errors.SecretUnavailable,
                       match='No space left on device'):
        adapter.adopt_secret(inst, b'replacement')
    monkeypatch.undo()
    assert adapter.open_secret(inst) == SECRET
    assert not [p for p in pathlib.Path(adapter.vault.directory).iterdir()
                if p.name.endswith('.tmp')]


def test_bad_instance_uuid_is_refused(
        adapter: compute_host.ComputeHost) -> None:
    with pytest.raises(Exception, match='instance_uuid'):
        adapter.adopt_secret('../../etc/passwd', SECRET)
