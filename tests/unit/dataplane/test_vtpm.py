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


"""vTPM keys, the swtpm command line and content comparison (no TPM)."""

import os

import pytest

from tests.support.dataplane import errors
from tests.support.dataplane import provision
from tests.support.dataplane import vtpm


@pytest.mark.parametrize('size', [0, 15, 24, 33])
def test_key_size_is_checked(size):
    with pytest.raises(errors.InvalidVtpmKey):
        vtpm.VtpmKey(b'k' * size)


def test_key_never_shown_and_wipe():
    key = vtpm.VtpmKey(b'\xab' * 32)
    assert 'ab' not in repr(key) and 'ab' not in str(key)
    assert key.mode == 'aes-256-cbc'
    assert vtpm.VtpmKey(b'k' * 16).mode == 'aes-cbc'
    fd = key.open_fd()
    try:
        assert os.read(fd, 64) == b'\xab' * 32
        assert os.read(fd, 64) == b''
    finally:
        os.close(fd)
    key.wipe()
    assert key.wiped and 'wiped' in repr(key)
    with pytest.raises(errors.DataplaneError):
        key.open_fd()


def test_copy_is_independent():
    key = vtpm.VtpmKey(b'a' * 32)
    other = key.copy()
    key.wipe()
    assert not other.wiped and other.same_as(vtpm.VtpmKey(b'a' * 32))
    with pytest.raises(errors.DataplaneError):
        key.copy()


def test_same_as():
    assert vtpm.VtpmKey(b'a' * 32).same_as(vtpm.VtpmKey(b'a' * 32))
    assert not vtpm.VtpmKey(b'a' * 32).same_as(vtpm.VtpmKey(b'b' * 32))


def test_argv_modes():
    key = vtpm.VtpmKey(b'\x01' * 32)
    qemu = vtpm.VtpmProcess('/tmp/x', key)
    argv = qemu.argv(7, 8)
    assert '--flags' not in argv and '--server' not in argv
    assert 'fd=7,format=binary,mode=aes-256-cbc' in argv
    assert 'fd=8,format=binary,mode=aes-256-cbc' in argv
    assert qemu.ctrl_path == '/tmp/x/ctrl.sock'
    with pytest.raises(errors.DataplaneError):
        _ = qemu.tcti
    alone = vtpm.VtpmProcess('/tmp/x', key, standalone=True,
                             startup_clear=True)
    argv = alone.argv(7, 8)
    assert argv[argv.index('--flags') + 1] == 'not-need-init,startup-clear'
    assert alone.tcti == 'swtpm:path=/tmp/x/tpm.sock'
    assert alone.ctrl_path == '/tmp/x/tpm.sock.ctrl'


def test_long_socket_path_refused():
    with pytest.raises(errors.DataplaneError, match='shorter'):
        vtpm.VtpmProcess('/tmp/' + 'd' * 120, vtpm.VtpmKey.generate())


def _contents(**kw):
    base = dict(nv_index=1, nv_data=b'n' * 64, key_handle=2,
                key_name=b'name', key_public=b'pub',
                pcrs={8: b'a' * 32, 14: b'b' * 32}, resumed=True)
    base.update(kw)
    return provision.VtpmContents(**base)


def test_compare_reports_each_difference():
    ref = _contents()
    assert provision.compare(ref, _contents()) == []
    diff = provision.compare(ref, _contents(
        nv_data=b'x' * 64, key_name=b'other', key_public=b'p2',
        pcrs={8: b'a' * 32, 14: b'c' * 32}, resumed=False))
    assert len(diff) == 5
    assert any('PCR 14' in d for d in diff)
    assert not any('PCR 8' in d for d in diff)
    # Test data is never printed.
    assert 'nnnn' not in repr(ref)
