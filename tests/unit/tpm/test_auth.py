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

"""Hierarchy authorisation files: format and permission checks (no TPM)."""

import os
import pathlib

import pytest

from nova_vtpm_migration import exception
from nova_vtpm_migration.tpm import auth

SECRET = b'Own3r-S3cret'


def _file(tmp_path: pathlib.Path, content: bytes,
          mode: int = 0o600) -> str:
    path = tmp_path / 'auth'
    path.write_bytes(content)
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize('content, value', [
    (SECRET, SECRET),
    (SECRET + b'\n', SECRET),
    (SECRET + b'\r\n', SECRET),
    (SECRET + b'\n\n', SECRET + b'\n'),     # only one newline is removed
    (b'hex:00ff10\n', b'\x00\xff\x10'),
    (b'', b''),
])
def test_values(tmp_path: pathlib.Path, content: bytes,
                value: bytes) -> None:
    assert auth.HierarchyAuth('owner', _file(tmp_path, content),
                              'owner_auth_file').value() == value


def test_no_file_is_the_empty_value() -> None:
    assert auth.HierarchyAuth('endorsement').value() == b''


@pytest.mark.parametrize('mode', [0o604, 0o602, 0o644, 0o666])
def test_files_others_can_access_are_refused(tmp_path: pathlib.Path,
                                             mode: int) -> None:
    ha = auth.HierarchyAuth('owner', _file(tmp_path, SECRET, mode),
                            'owner_auth_file')
    with pytest.raises(auth.AuthFileError,
                       match=r'owner_auth_file.*other users') as exc:
        ha.check()
    assert isinstance(exc.value, exception.ConfigurationError)
    assert SECRET.decode() not in str(exc.value)


def test_group_readable_is_accepted(tmp_path: pathlib.Path) -> None:
    auth.HierarchyAuth('owner', _file(tmp_path, SECRET, 0o640)).check()


@pytest.mark.parametrize('content, reason', [
    (b'hex:xyz', 'hex digits'),
    (b'hex:abc', 'hex digits'),
    (b'x' * 65, 'longer than 64 bytes'),
    (b'x' * 500, 'too large'),
])
def test_malformed_values_are_refused_without_showing_them(
        tmp_path: pathlib.Path, content: bytes, reason: str) -> None:
    ha = auth.HierarchyAuth('endorsement', _file(tmp_path, content),
                            'endorsement_auth_file')
    with pytest.raises(auth.AuthFileError, match=reason) as exc:
        ha.value()
    assert content.decode()[4:] not in str(exc.value)


def test_missing_file_and_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(auth.AuthFileError, match='No such file'):
        auth.HierarchyAuth('owner', str(tmp_path / 'absent')).check()
    os.chmod(tmp_path, 0o700)
    with pytest.raises(auth.AuthFileError, match='regular file'):
        auth.HierarchyAuth('owner', str(tmp_path)).check()


def test_unknown_hierarchy() -> None:
    with pytest.raises(ValueError, match='platform'):
        auth.HierarchyAuth('platform')
