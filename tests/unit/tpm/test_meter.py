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

"""Command buffer parsing and meter bookkeeping (no TPM)."""

import struct

import pytest
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration.tpm import meter
from nova_vtpm_migration.tpm import objects

_CC = constants.TPM2_CC
#: A password session in a command's authorisation area.
_PW = struct.pack('>IHBH', 0x40000009, 0, 0, 0)


def _command(code: int, handles: list[int], params: bytes,
             sessions: bool = True) -> bytes:
    body = b''.join(struct.pack('>I', h) for h in handles)
    if sessions:
        body += struct.pack('>I', len(_PW)) + _PW
    tag = 0x8002 if sessions else 0x8001
    return struct.pack('>HII', tag, 10 + len(body) + len(params),
                       code) + body + params


def _create(code: int, public: types.TPM2B_PUBLIC,
            secret: bytes = b'') -> bytes:
    sensitive = types.TPM2B_SENSITIVE_CREATE(
        sensitive=types.TPMS_SENSITIVE_CREATE(data=secret))
    return _command(code, [0x81000001], sensitive.marshal()
                    + public.marshal() + b'\0\0' + b'\0\0\0\0')


def test_header_and_names() -> None:
    buf = _command(int(_CC.Quote), [0x81010010, 0x40000007], b'')
    header = meter.parse_header(buf)
    assert (header.tag, header.size, header.code) == (0x8002, len(buf),
                                                      int(_CC.Quote))
    assert header.name == 'Quote'
    assert meter.command_name(int(_CC.PCR_Read)) == 'PCR_Read'
    assert meter.command_name(0x20000001) == '0x20000001'
    with pytest.raises(ValueError, match='header'):
        meter.parse_header(b'\x80\x01\0\0')


@pytest.mark.parametrize('public, expected', [
    (objects.srk_template(), 'CreatePrimary/ECC/NIST_P256'),
    (types.TPM2B_PUBLIC.parse('rsa2048'), 'CreatePrimary/RSA/2048'),
    (types.TPM2B_PUBLIC.parse('ecc384'), 'CreatePrimary/ECC/NIST_P384'),
    (objects.seal_template(b'\0' * 32), 'CreatePrimary/KEYEDHASH'),
])
def test_create_classes(public: types.TPM2B_PUBLIC, expected: str) -> None:
    assert meter.command_class(
        _create(int(_CC.CreatePrimary), public)) == expected


def test_create_class_survives_encrypted_sensitive_area() -> None:
    # Parameter encryption scrambles inSensitive's bytes, not its size.
    buf = bytearray(_create(int(_CC.Create), objects.binding_template(
        b'\1' * 32), secret=b'k' * 16))
    start = 10 + 4 + 4 + len(_PW) + 2
    buf[start:start + 20] = b'\xff' * 20
    assert meter.command_class(bytes(buf)) == 'Create/ECC/NIST_P256'


def test_session_and_credential_classes() -> None:
    def session(salt: bytes) -> bytes:
        params = (struct.pack('>H', 32) + b'n' * 32
                  + struct.pack('>H', len(salt)) + salt
                  + b'\x01' + struct.pack('>HH', 0x10, 0x0B))
        return _command(int(_CC.StartAuthSession),
                        [0x40000007, 0x40000007], params, sessions=False)

    assert meter.command_class(session(b'')) == 'StartAuthSession/unsalted'
    assert meter.command_class(session(b's' * 68)) == \
        'StartAuthSession/salted'

    def activate(secret_size: int) -> bytes:
        params = (struct.pack('>H', 50) + b'c' * 50
                  + struct.pack('>H', secret_size) + b's' * secret_size)
        return _command(int(_CC.ActivateCredential),
                        [0x81010010, 0x81010001], params)

    assert meter.command_class(activate(256)) == 'ActivateCredential/RSA'
    assert meter.command_class(activate(100)) == 'ActivateCredential/ECC'


def test_truncated_buffers_keep_the_plain_name() -> None:
    full = _create(int(_CC.Create), objects.srk_template())
    assert meter.command_class(full[:30]) == 'Create'
    assert meter.command_class(full[:10]) == 'Create'


def test_esapi_names() -> None:
    assert [meter.esapi_name(n) for n in (
        'PCR_Read', 'CreatePrimary', 'ECDH_ZGen', 'NV_ReadPublic',
        'StartAuthSession', 'Quote')] == [
        'pcr_read', 'create_primary', 'ecdh_zgen', 'nv_read_public',
        'start_auth_session', 'quote']


def test_snapshots_windows_and_sums() -> None:
    m = meter.TpmMeter()
    m.record('Quote', 0.002)
    with m.window() as w:
        with pytest.raises(RuntimeError, match='still open'):
            _ = w.result
        m.record('CreatePrimary/ECC/NIST_P256', 0.004)
        m.record('CreatePrimary/RSA/2048', 0.030, failed=True)
        m.record('Quote', 0.001)
    assert w.result.counts == {'CreatePrimary': 2, 'Quote': 1}
    assert w.result.class_counts == {'CreatePrimary/ECC/NIST_P256': 1,
                                     'CreatePrimary/RSA/2048': 1,
                                     'Quote': 1}
    assert w.result.failed == 1
    assert w.result.seconds['CreatePrimary'] == pytest.approx(0.034)
    assert m.snapshot().counts == {'CreatePrimary': 2, 'Quote': 2}
    both = w.result + m.snapshot()
    assert both.counts == {'CreatePrimary': 4, 'Quote': 3}
    assert (both - w.result).counts == m.snapshot().counts
    data = w.result.as_dict()
    assert data['total'] == 3 and data['failed'] == 1
    assert data['commands']['Quote'] == {'count': 1, 'ms': 1.0}
    m.reset()
    assert m.snapshot().total == 0


def test_measure_several_meters() -> None:
    src, dst = meter.TpmMeter(), meter.TpmMeter()
    src.record('Quote', 0.001)
    with meter.measure({'source': src, 'destination': dst}) as m:
        src.record('Sign', 0.001)
        dst.record('Quote', 0.001)
        dst.record('ECDH_ZGen', 0.001)
    assert m['source'].counts == {'Sign': 1}
    assert m['destination'].counts == {'ECDH_ZGen': 1, 'Quote': 1}
    assert m.total.counts == {'ECDH_ZGen': 1, 'Quote': 1, 'Sign': 1}


def test_unknown_latency_profile_is_refused() -> None:
    with pytest.raises(ValueError, match='dtpm_slow'):
        meter.TpmMeter().set_latency_profile('nope')
