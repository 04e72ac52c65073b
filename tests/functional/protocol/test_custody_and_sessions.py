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


"""Key custody on a host (sealed to its swtpm), session reuse, concurrent
migrations and the robustness of the transport entry point."""

import concurrent.futures
import os
import pathlib
import threading
import time
import uuid

import hypothesis
from hypothesis import strategies as st
import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import ratelimit
from nova_vtpm_migration.protocol import states
from tests.functional.protocol import conftest

_K = states.KeyState


def test_keystore_custody(cluster: conftest.Cluster) -> None:
    node = cluster.nodes['src']
    ks = node.engine.keystore
    inst, secret = conftest.new_instance(node)
    key_dir = pathlib.Path(node.state_dir, 'keys')
    (blob_file,) = list(key_dir.iterdir())
    blob = blob_file.read_bytes()
    assert secret not in blob
    # The blob only opens in this host's TPM.
    with pytest.raises(Exception):  # noqa: B017 - any TPM refusal
        cluster.nodes['dst'].sim.tpm.unseal(blob)
    ks.lock_for_export(inst, 'm1')
    with pytest.raises(errors.KeyStateError):
        ks.lock_for_export(inst, 'm2')          # no second export
    with pytest.raises(errors.KeyNotFound):
        ks.read(inst)                            # not usable while LOCKED
    with pytest.raises(errors.KeyStateError):
        ks.unlock(inst, 'm2')                    # only by its migration
    ks.unlock(inst, 'm1')
    assert ks.read(inst) == secret
    # Destroy overwrites, then unlinks the blob.
    written: list[bytes] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        written.append(bytes(data))
        return real_write(fd, data)

    os.write = spy  # type: ignore[assignment]
    try:
        ks.destroy(inst)
    finally:
        os.write = real_write  # type: ignore[assignment]
    assert written == [b'\0' * len(blob)]
    assert not blob_file.exists()
    assert ks.state(inst) is _K.DESTROYED
    with pytest.raises(errors.KeyNotFound):
        ks.read(inst)
    # An orphan blob (crash between sealing and journalling) is wiped.
    (key_dir / f'{uuid.uuid4()}.1.sealed').write_bytes(b'x' * 10)
    assert len(ks.wipe_orphans()) == 1
    assert list(key_dir.iterdir()) == []
    with pytest.raises(errors.MalformedMessage):
        ks.add('../../etc/passwd', b'x')
    with pytest.raises(errors.KeyStoreError):
        ks.add(str(uuid.uuid4()), b'x' * 129)


def test_session_reuse_and_lifetime(cluster: conftest.Cluster) -> None:
    src = cluster.nodes['src']

    for _ in range(3):
        inst, _secret = conftest.new_instance(src)
        src.engine.commit(src.engine.migrate_key(inst, 'dst').migration_id)
    assert _hellos(cluster) == 1
    src.engine.channel.session_lifetime = 0
    for _ in range(2):
        inst, _secret = conftest.new_instance(src)
        src.engine.commit(src.engine.migrate_key(inst, 'dst').migration_id)
    assert _hellos(cluster) == 3


def _migrate_all(src: conftest.Node, keys: list[tuple[str, bytes]],
                 workers: int) -> list[str]:
    """Migrate and commit every instance of *keys* to ``dst``
    concurrently; return the migration ids."""
    def one(inst: str) -> str:
        handle = src.engine.migrate_key(inst, 'dst')
        src.engine.commit(handle.migration_id)
        return str(handle.migration_id)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, [inst for inst, _ in keys]))


def _hellos(cluster: conftest.Cluster) -> int:
    return sum(conftest.msg_type(x.request) == 'hello'
               for x in cluster.transport.captured)


def test_concurrent_first_migrations_share_one_handshake(
        cluster: conftest.Cluster) -> None:
    """Eight migrations to a host with no session yet: one phase 1."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    keys = [conftest.new_instance(src) for _ in range(8)]
    mids = _migrate_all(src, keys, workers=8)
    assert len(set(mids)) == 8
    assert _hellos(cluster) == 1
    for inst, secret in keys:
        assert dst.engine.keystore.read(inst) == secret


def test_waiters_get_the_failed_handshake_error(
        cluster: conftest.Cluster) -> None:
    """A refused phase 1 is not repeated by every waiting caller."""
    src = cluster.nodes['src']
    attempts = []

    def slow_and_down(request: bytes) -> bytes:
        attempts.append(request)
        time.sleep(0.5)
        raise errors.TransportError(peer='dst', reason='host is down')

    cluster.transport.register('dst', slow_and_down)
    start = threading.Barrier(6)

    def attest(_: int) -> str:
        start.wait()
        try:
            src.engine.attest_peer('dst')
        except errors.TransportError as exc:
            return type(exc).__name__
        return 'attested'

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(attest, range(6)))
    assert results == ['TransportError'] * 6
    # Without the shared handshake each caller would try: 6 attempts.
    assert 1 <= len(attempts) <= 2
    # A later call (not waiting on that one) tries again.
    cluster.transport.register('dst', cluster.nodes['dst'].engine.handle)
    src.engine.attest_peer('dst')


def test_hello_flood_is_refused_before_the_tpm(
        cluster: conftest.Cluster) -> None:
    """Above ``max_handshake_rate`` a hello gets ``[busy]`` before any
    work; below it a hello costs no TPM command either (the responder's
    epoch was quoted already); attested sessions keep working."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, _secret = conftest.new_instance(src)
    src.engine.attest_peer('dst')
    dst.engine.channel._hellos = ratelimit.TokenBucket(3)
    hello = handshake.Initiator(src.engine.tpm, src.engine.policy,
                                src.engine.journal, src.engine.local,
                                'dst').hello()
    with dst.sim.ctx.meter.window() as window:
        replies = [messages.decode(cluster.transport.deliver('dst', hello))
                   for _ in range(10)]
    codes = [r.body.get('code') for r in replies]
    assert [c for c in codes if c != 'busy'] == [None] * 3
    assert codes.count('busy') == 7
    assert window.result.total == 0, window.result.counts
    # The attested session still moves keys.
    src.engine.commit(src.engine.migrate_key(inst, 'dst').migration_id)
    assert dst.engine.keystore.state(inst) is _K.ACTIVE


def test_concurrent_migrations(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    keys = [conftest.new_instance(src) for _ in range(6)]
    mids = _migrate_all(src, keys, workers=3)
    assert len(set(mids)) == 6
    for inst, secret in keys:
        assert dst.engine.keystore.read(inst) == secret
        assert src.engine.keystore.state(inst) is _K.DESTROYED


@hypothesis.settings(max_examples=300, deadline=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(data=st.binary(max_size=400))
def test_handle_never_raises(cluster: conftest.Cluster, data: bytes) -> None:
    reply = cluster.nodes['dst'].engine.handle(data)
    assert messages.decode(reply).type == 'error'
