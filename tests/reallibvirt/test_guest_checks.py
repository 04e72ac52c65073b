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


"""The guest's console-line parser and comparison catch tampering.

No daemons: these run everywhere and prove that the real-libvirt tests'
asserts can fail.
"""

import hashlib
import os
import struct

from tests.support.libvirt import guest

NONCE = 'ab' * 32
EK = 'cd' * 32


def _line(seq=1, nv=NONCE, pcr=None, ek=EK, rc='00000000', boot=None):
    pcr = guest.expected_pcr16(nv) if pcr is None else pcr
    boot = boot or '0000018b,00000000,00000000,00000000,00000000'
    return (f'[ 12.3] VTPMCHECK seq={seq} nv={nv} pcr16={pcr} ek={ek} '
            f'rc={rc},{rc},{rc},{rc} boot={boot}')


def test_parses_a_good_line():
    line = guest.parse_line(_line(seq=7))
    assert line is not None
    assert line.seq == 7 and line.nv == NONCE and line.ek == EK
    assert line.ok and line.pcr_consistent
    assert guest.mismatches(line, line) == []


def test_expected_pcr16_is_one_sha256_extend():
    nonce = os.urandom(32)
    assert guest.expected_pcr16(nonce.hex()) == hashlib.sha256(
        bytes(32) + nonce).hexdigest()


def test_tampered_nonce_is_detected():
    before = guest.parse_line(_line())
    other = 'ef' * 32
    # Another nonce, PCR consistent with it: a different vTPM.
    after = guest.parse_line(_line(seq=2, nv=other))
    assert any('NV nonce changed' in p
               for p in guest.mismatches(before, after))
    # Same PCR, nonce flipped: PCR no longer matches the nonce.
    forged = guest.parse_line(_line(seq=2, nv=other,
                                    pcr=guest.expected_pcr16(NONCE)))
    assert not forged.pcr_consistent
    assert guest.mismatches(before, forged)


def test_other_ek_and_failed_commands_are_detected():
    before = guest.parse_line(_line())
    assert any('EK changed' in p for p in guest.mismatches(
        before, guest.parse_line(_line(ek='00' * 32))))
    failed = guest.parse_line(_line(rc='0000018b'))
    assert not failed.ok
    assert guest.mismatches(before, failed)
    missing = guest.parse_line(
        'VTPMCHECK seq=3 nv=- pcr16=- ek=- rc=nodev,nodev,nodev,- '
        'boot=nodev,nodev,nodev,nodev,nodev')
    assert missing.nv is None and not missing.ok


def test_console_noise_is_ignored():
    text = '\n'.join(['SeaBIOS', _line(seq=1), 'garbage VTPMCHECK seq=x',
                      _line(seq=2)])
    assert [line.seq for line in guest.parse_console(text)] == [1, 2]


def test_commands_are_well_formed():
    commands = guest.tpm_commands()
    for name, data in commands.items():
        if name.endswith('.bin'):
            tag, size, _ = struct.unpack('>HII', data[:10])
            assert tag in (0x8001, 0x8002) and size == len(data), name
    write = (commands['nv_write.head'] + bytes(32)
             + commands['nv_write.tail'])
    assert struct.unpack('>I', write[2:6])[0] == len(write)
    extend = commands['pcr_extend.head'] + bytes(32)
    assert struct.unpack('>I', extend[2:6])[0] == len(extend)
    flush = commands['flush.head'] + bytes(4)
    assert struct.unpack('>I', flush[2:6])[0] == len(flush)


def test_initramfs_is_reproducible(tmp_path):
    busybox = tmp_path / 'busybox'
    busybox.write_bytes(b'\x7fELF fake')
    assert guest.build_initramfs(str(busybox)) == guest.build_initramfs(
        str(busybox))
