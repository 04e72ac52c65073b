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

"""Owner and endorsement hierarchy authorisation values (real swtpm).

``tpm2_changeauth`` gives the swtpm's owner and endorsement hierarchies an
authorisation value, as a provisioned host TPM has; the host TPM layer works
with the right files and fails with an error naming the option otherwise.
"""

import os
import pathlib
import shutil
import subprocess

import pytest

from nova_vtpm_migration.tpm import auth
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import PCRS
from tests.functional.swtpm_fixtures import SimHost

OWNER = b'owner: correct horse'
ENDORSEMENT = bytes(range(200, 220))     # binary: given as hex:


def _secret_file(path: pathlib.Path, content: bytes) -> str:
    path.write_bytes(content)
    os.chmod(path, 0o600)
    return str(path)


def _changeauth(sim: SimHost, hierarchy: str, value_file: str) -> None:
    # The new value is read from a file, never put on the command line.
    proc = subprocess.run(
        ['tpm2_changeauth', '-T', sim.swtpm.tcti, '-c', hierarchy,
         f'file:{value_file}'],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, TSS2_LOG='all+NONE'))
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def protected(swtpm_factory: object, tmp_path: pathlib.Path) -> SimHost:
    """A fresh host TPM (no SRK, no AK yet) whose owner and endorsement
    hierarchies have authorisation values."""
    if shutil.which('tpm2_changeauth') is None:
        pytest.skip('tpm2-tools is not installed')
    sim: SimHost = swtpm_factory('auth')  # type: ignore[operator]
    _changeauth(sim, 'owner', _secret_file(tmp_path / 'o.raw', OWNER))
    _changeauth(sim, 'endorsement',
                _secret_file(tmp_path / 'e.raw', ENDORSEMENT))
    return sim


def _host(sim: SimHost, state: pathlib.Path,
          owner: str | None = None,
          endorsement: str | None = None) -> host_mod.HostTpm:
    return host_mod.HostTpm(
        sim.ctx, state, pcr_selection=PCRS,
        owner_auth=auth.HierarchyAuth('owner', owner, 'owner_auth_file'),
        endorsement_auth=auth.HierarchyAuth('endorsement', endorsement,
                                            'endorsement_auth_file'))


def test_host_tpm_works_with_the_right_files(
        protected: SimHost, tmp_path: pathlib.Path) -> None:
    owner = _secret_file(tmp_path / 'owner', OWNER + b'\n')
    endorsement = _secret_file(tmp_path / 'endorsement',
                               b'hex:' + ENDORSEMENT.hex().encode())
    tpm = _host(protected, tmp_path / 'state', owner, endorsement)
    ident = tpm.identity()                     # EK + AK (both hierarchies)
    assert tpm.quote(b'nonce').attest
    binding = tpm.certified_binding_key(b'n')  # SRK: owner hierarchy
    wrapped = verify.wrap(binding.public, b'vtpm secret', b'info')
    assert tpm.unwrap(wrapped, b'info') == b'vtpm secret'
    assert tpm.unseal(tpm.seal(b'sealed')) == b'sealed'
    challenge = verify.make_credential(ident, b'c' * 32)
    assert tpm.activate_credential(challenge) == b'c' * 32   # PolicySecret


def test_missing_files_give_a_clear_error(
        protected: SimHost, tmp_path: pathlib.Path) -> None:
    tpm = _host(protected, tmp_path / 'state')
    with pytest.raises(auth.HierarchyAuthFailed) as exc:
        tpm.identity()
    message = str(exc.value)
    print(message)
    assert 'endorsement hierarchy authorisation for CreatePrimary' in message
    assert '[vtpm_migration] endorsement_auth_file' in message
    endorsement = _secret_file(tmp_path / 'e',
                               b'hex:' + ENDORSEMENT.hex().encode())
    owner_only = _host(protected, tmp_path / 'state2',
                       endorsement=endorsement)
    with pytest.raises(auth.HierarchyAuthFailed,
                       match=r'owner hierarchy .* EvictControl.*'
                             r'owner_auth_file'):
        owner_only.identity()      # EK fine; persisting the AK needs owner
    with pytest.raises(auth.HierarchyAuthFailed,
                       match=r'owner hierarchy .* CreatePrimary'):
        owner_only.seal(b'x')      # creating the SRK needs owner
    # Nothing stays loaded after the refusals (EK, AK, sessions).
    assert context.loaded_handles(protected.ctx) == set()


def test_wrong_value_is_named_without_showing_it(
        protected: SimHost, tmp_path: pathlib.Path) -> None:
    wrong = _secret_file(tmp_path / 'owner', b'not the owner value')
    tpm = _host(protected, tmp_path / 'state', owner=wrong)
    with pytest.raises(auth.HierarchyAuthFailed) as exc:
        tpm.seal(b'x')
    message = str(exc.value)
    print(message)
    assert f'the value in {wrong}' in message
    assert 'not the owner value' not in message
    assert 'rc=0x9a2' in message        # TPM_RC_BAD_AUTH, no DA lockout
    # The right value still works afterwards: no lockout.
    right = _secret_file(tmp_path / 'owner2', OWNER)
    assert _host(protected, tmp_path / 'state', owner=right).seal(b'x')


def test_world_readable_file_is_refused_up_front(
        protected: SimHost, tmp_path: pathlib.Path) -> None:
    path = _secret_file(tmp_path / 'owner', OWNER)
    os.chmod(path, 0o644)
    with pytest.raises(auth.AuthFileError, match='other users') as exc:
        _host(protected, tmp_path / 'state', owner=path)
    assert OWNER.decode() not in str(exc.value)
