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

"""TpmContext: locking, error translation and slot hygiene (real swtpm)."""

import os
import threading
import typing as ty

import pytest
import tpm2_pytss
from tpm2_pytss import constants

from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import SimHost
from tests.support import swtpm


def _raw_loaded(tcti: str) -> tuple[list[int], list[int]]:
    """Loaded transient objects and sessions, seen by a fresh client."""
    with tpm2_pytss.ESAPI(tcti) as e:
        result = []
        for first in (constants.TPM2_HC.TRANSIENT_FIRST,
                      constants.TPM2_HC.LOADED_SESSION_FIRST):
            _, cap = e.get_capability(constants.TPM2_CAP.HANDLES, first, 64)
            result.append([int(h) for h in cap.data.handles])
    return result[0], result[1]


def test_tpm_absent_is_unavailable() -> None:
    port = swtpm.free_port_pair()
    ctx = context.TpmContext(f'swtpm:host=127.0.0.1,port={port}')
    with pytest.raises(errors.TpmUnavailable, match='unavailable'):
        with ctx.esys() as e:
            e.get_random(4)
    with pytest.raises(errors.TpmUnavailable):
        with context.TpmContext('device:/dev/nonexistent-tpm').esys():
            pass


def test_tpm_going_away_and_back(swtpm_factory: object) -> None:
    sim = swtpm_factory('flaky')  # type: ignore
    sim.tpm.quote(b'n')
    sim.swtpm.stop_process()
    with pytest.raises(errors.TpmUnavailable):
        sim.tpm.quote(b'n')
    sim.swtpm.start()
    assert sim.ctx.tcti == sim.swtpm.tcti
    sim.tpm.quote(b'n')


def test_lock_timeout_is_busy(host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with a.ctx.esys():
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        other = context.TpmContext(a.ctx.tcti, lock_timeout=0.2)
        with pytest.raises(errors.TpmBusy, match='lock'):
            with other.esys():
                pass
    finally:
        release.set()
        t.join()


def test_objects_flushed_on_error(host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    with pytest.raises(RuntimeError):
        with a.ctx.esys() as e:
            e.create_primary(None, objects.srk_template(),
                             constants.ESYS_TR.OWNER)
            e.create_primary(None, objects.srk_template(),
                             constants.ESYS_TR.OWNER)
            # Created through the raw context: found by the handle scan.
            e.raw.start_auth_session(
                constants.ESYS_TR.NONE, constants.ESYS_TR.NONE,
                constants.TPM2_SE.HMAC, None, constants.TPM2_ALG.SHA256)
            assert len(context.loaded_handles(a.ctx)) == 3
            raise RuntimeError('boom')
    assert context.loaded_handles(a.ctx) == set()
    assert _raw_loaded(a.ctx.tcti) == ([], [])


def test_error_translation(host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    with pytest.raises(errors.TpmCommandError) as exc:
        with a.ctx.esys() as e:
            e.tr_from_tpmpublic(0x81777777)
    assert exc.value.kwargs['command'] == 'tr_from_tpmpublic'
    assert 'rc=0x' in str(exc.value)


def test_stats_are_recorded(host_pair: tuple[SimHost, SimHost]) -> None:
    """``ctx.stats`` is a view of the TCTI meter keyed by ESAPI names."""
    a, _ = host_pair
    a.tpm.quote(b'warm-up')   # the first Quote of a new AK is retried
    a.ctx.reset_stats()
    a.tpm.quote(b'n')
    stats = a.ctx.stats
    assert stats['quote'].count == 1
    assert stats['quote'].total > 0
    assert stats['quote'].mean == stats['quote'].total
    # No handle scans: a block knows what it loaded from the commands.
    assert 'get_capability' not in stats
    assert stats['pcr_read'].count == 1


@pytest.mark.slow
def test_no_slot_leak_after_many_mixed_operations(
        swtpm_factory: object) -> None:
    """>= 1,000 operations, many failing half-way, leave no TPM slot used.

    swtpm has three transient object slots and no resource manager: a
    single leaked object per operation would break the fourth one.
    """
    sim = swtpm_factory('leak')  # type: ignore
    tpm = sim.tpm
    ident = tpm.identity()
    stale_blob = tpm.seal(b'sealed before the extend')
    stale_wrap = verify.wrap(tpm.certified_binding_key(b'n').public,
                             b'k' * 32, b'i')
    sim.swtpm.extend_pcr(16, b'change')
    signing = tpm.certified_signing_key(b'n').public
    binding = tpm.certified_binding_key(b'n').public
    good_blob = tpm.seal(b'sealed after')
    bad_cred = verify.make_credential(ident, os.urandom(32))
    bad_cred = type(bad_cred)(bad_cred.credential_blob[:-1] + b'\0',
                              bad_cred.encrypted_secret)

    def fail_midway() -> None:
        with sim.ctx.esys() as e:
            e.create_primary(None, objects.srk_template(),
                             constants.ESYS_TR.OWNER)
            e.start_auth_session(
                constants.ESYS_TR.NONE, constants.ESYS_TR.NONE,
                constants.TPM2_SE.POLICY, None, constants.TPM2_ALG.SHA256)
            e.tr_from_tpmpublic(0x81777777)   # fails: no such handle

    policy_failed = errors.TpmPolicyCheckFailed
    ops: list[tuple[ty.Callable[[], object], type[Exception] | None]] = [
        (lambda: tpm.quote(b'n'), None),
        (lambda: tpm.certified_binding_key(b'n'), None),
        (lambda: tpm.sign(b'm'), None),
        (lambda: tpm.unseal(good_blob), None),
        (lambda: tpm.unwrap(verify.wrap(binding, b's', b'i'), b'i'), None),
        (lambda: tpm.unwrap(verify.wrap(binding, b's', b'i'), b'other'),
         errors.UnwrapError),
        (lambda: tpm.unseal(stale_blob), policy_failed),
        # The current key is tried and does not open it, the old one fails
        # its PCR policy.
        (lambda: tpm.unwrap(stale_wrap, b'i'), errors.UnwrapError),
        (lambda: tpm.certified_signing_key(b'n'), None),
        (lambda: tpm.unseal(good_blob[:-8] + b'\0' * 8),
         errors.TpmCommandError),
        (fail_midway, errors.TpmCommandError),
        (lambda: tpm.seal(b'x'), None),
        (lambda: tpm.quote(b'n'), None),
        (lambda: verify.verify_signature(signing, b'm', tpm.sign(b'm')),
         None),
        (lambda: tpm.certified_binding_key(b'n'), None),
        (lambda: tpm.pcr_values(), None),
        (lambda: tpm.unwrap(verify.wrap(binding, b's', b'i'), b'i'), None),
        (lambda: tpm.sign(b'm'), None),
        (lambda: tpm.unseal(good_blob), None),
    ]
    failures = 0
    for i in range(1000):
        fn, expected = ops[i % len(ops)]
        if i % 100 == 50:
            fn, expected = (lambda: tpm.activate_credential(bad_cred),
                            errors.CredentialError)
        if expected is None:
            fn()
        else:
            with pytest.raises(expected):
                fn()
            failures += 1
    assert failures >= 250
    assert context.loaded_handles(sim.ctx) == set()
    # Only the residents stay: one object (the binding key; the signing
    # key is persistent) and two sessions, leaving room for a Load under
    # the SRK and for one more session.
    objects_, sessions = _raw_loaded(sim.swtpm.tcti)
    assert len(objects_) <= 1 and len(sessions) <= 2
    assert set(objects_ + sessions) == sim.ctx.resident_handles()
    sim.ctx.release()
    assert _raw_loaded(sim.swtpm.tcti) == ([], [])


def test_concurrent_threads_share_one_tpm(swtpm_factory: object) -> None:
    """Four threads, each with its own TpmContext on the same TPM."""
    sim = swtpm_factory('threads')  # type: ignore
    binding = sim.tpm.certified_binding_key(b'n').public
    problems: list[BaseException] = []

    def work(k: int) -> None:
        from tests.functional.swtpm_fixtures import attach
        mine = attach(sim.swtpm).tpm
        try:
            for i in range(10):
                nonce = f'{k}-{i}'.encode()
                assert mine.quote(nonce).attest
                assert sim.tpm.unwrap(verify.wrap(binding, nonce, b'i'),
                                      b'i') == nonce
                assert mine.unseal(mine.seal(nonce)) == nonce
        except BaseException as exc:  # noqa: B036 - reported below
            problems.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    sim.ctx.release()
    assert _raw_loaded(sim.swtpm.tcti) == ([], [])


def test_nested_blocks(host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    srk = objects.srk_template()
    with a.ctx.esys() as outer:
        outer.create_primary(None, srk, constants.ESYS_TR.OWNER)
        with a.ctx.esys() as inner:
            inner.create_primary(None, srk, constants.ESYS_TR.OWNER)
            assert len(context.loaded_handles(a.ctx)) == 2
        # The inner block flushed what it created, nothing else.
        assert len(context.loaded_handles(a.ctx)) == 1
    assert context.loaded_handles(a.ctx) == set()


def test_residents_make_room_under_memory_pressure(
        swtpm_factory: object) -> None:
    """The binding key stays loaded between operations, but a block that
    needs every object slot gets them: the resident is evicted (and loaded
    again by the next unwrap)."""
    sim = swtpm_factory('pressure')  # type: ignore
    binding = sim.tpm.certified_binding_key(b'n').public
    assert len(sim.ctx.resident_handles()) >= 1
    srk = objects.srk_template()
    with sim.ctx.esys() as e:
        for _ in range(3):     # libtpms has three transient object slots
            e.create_primary(None, srk, constants.ESYS_TR.OWNER)
    assert context.loaded_handles(sim.ctx) == set()
    assert sim.tpm.unwrap(verify.wrap(binding, b's', b'i'), b'i') == b's'


def test_residents_flushed_by_another_client_are_loaded_again(
        swtpm_factory: object) -> None:
    """Without a resource manager another client may flush everything
    (as this context does at connect): the next operation notices its
    residents are gone, loads them again and succeeds."""
    sim = swtpm_factory('foreign-flush')  # type: ignore
    binding = sim.tpm.certified_binding_key(b'n').public
    sim.tpm.sign(b'm')
    before = sim.ctx.resident_handles()
    assert before
    objects_, sessions = _raw_loaded(sim.swtpm.tcti)
    with tpm2_pytss.ESAPI(sim.swtpm.tcti) as raw:
        for handle in objects_ + sessions:
            raw.flush_context(raw.tr_from_tpmpublic(handle))
    assert _raw_loaded(sim.swtpm.tcti) == ([], [])
    assert sim.tpm.unwrap(verify.wrap(binding, b's', b'i'), b'i') == b's'
    assert sim.tpm.unseal(sim.tpm.seal(b'x')) == b'x'
    assert context.loaded_handles(sim.ctx) == set()


def test_tpm_restart_between_operations_is_transparent(
        swtpm_factory: object) -> None:
    """The TPM daemon restarts while no operation runs: the next one
    reconnects (its first command finds the old connection dead) and
    succeeds."""
    sim = swtpm_factory('restart')  # type: ignore
    sim.tpm.quote(b'n')
    sim.swtpm.stop_process()
    sim.swtpm.start()
    assert sim.tpm.quote(b'n').attest
    assert sim.tpm.sign(b'm')
