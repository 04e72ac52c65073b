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



"""Migrations over a real RabbitMQ broker (started by the test on
loopback) through the oslo.messaging binding, including broker restarts in
the middle of a migration: every migration either completes or aborts,
and after recovery exactly one host holds a usable key."""

import base64
import collections.abc
import os
import threading
import typing as ty

import oslo_messaging
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.rpc import rpcapi
from tests.integration.reliability import inproc
from tests.support import rabbitmq


@pytest.fixture
def rabbit(rabbit_cluster: inproc.RabbitCluster
           ) -> collections.abc.Iterator[inproc.RabbitCluster]:
    """The module's cluster; hooks removed after each test."""
    yield rabbit_cluster
    for node in rabbit_cluster.nodes.values():
        node.hooks.hooks.clear()
        node.engine.destination.__dict__.pop('dispatch', None)


#: Restart points run by ``make test``; the campaign runs all.
WHEN = (['prepare', 'transfer', 'commit'] if os.environ.get('NVM_CAMPAIGN')
        else ['transfer'])


def _settle(rabbit: inproc.RabbitCluster, inst: str,
            secret: bytes) -> str:
    rabbit.recover_all()
    assert not rabbit.in_doubt()
    holder, problems = rabbit.check(inst, secret)
    assert not problems, problems
    assert rabbit.loaded_handles() == {n: 0 for n in rabbit.nodes}
    assert not rabbit.leaks(secret)
    return holder


@pytest.mark.slow
def test_migrate_over_rabbit(rabbit: inproc.RabbitCluster) -> None:
    inst, secret = rabbit.provision('src')
    rabbit.migrate('src', 'dst', inst)
    assert _settle(rabbit, inst, secret) == 'dst'
    # and on to the third host, reusing nothing but the broker
    rabbit.migrate('dst', 'third', inst)
    assert _settle(rabbit, inst, secret) == 'third'


def _restart_once(broker: rabbitmq.RabbitBroker, when: str
                  ) -> collections.abc.Callable[[str, str], None]:
    fired = threading.Event()

    def hook(peer: str, msg_type: str) -> None:
        if msg_type == when and not fired.is_set():
            fired.set()
            broker.restart()
    hook.fired = fired  # type: ignore[attr-defined]
    return hook


@pytest.mark.slow
@pytest.mark.parametrize('when', WHEN)
def test_broker_restart_before(rabbit: inproc.RabbitCluster,
                               broker: rabbitmq.RabbitBroker,
                               when: str) -> None:
    """The broker restarts just before the source sends ``when``: the
    clients reconnect; the migration completes or aborts cleanly."""
    inst, secret = rabbit.provision('src')
    hook = _restart_once(broker, when)
    rabbit.nodes['src'].hooks.hooks.append(hook)
    error = ''
    try:
        rabbit.migrate('src', 'dst', inst)
    except exception.VtpmMigrationException as exc:
        error = f' after {type(exc).__name__} and recovery'
    assert hook.fired.is_set()  # type: ignore[attr-defined]
    holder = _settle(rabbit, inst, secret)
    if not error:
        assert holder == 'dst'
    print(f'broker restart before {when}: key on {holder}{error}')


@pytest.mark.slow
def test_broker_restart_while_destination_works(
        rabbit: inproc.RabbitCluster,
        broker: rabbitmq.RabbitBroker) -> None:
    """The broker restarts while the destination processes the transfer
    (its reply may be lost): the source times out or gets the reply;
    recovery resolves the migration either way."""
    inst, secret = rabbit.provision('src')
    dst_role = rabbit.nodes['dst'].engine.destination
    dispatch = dst_role.dispatch
    fired = threading.Event()

    def restarting_dispatch(sess: ty.Any, msg: ty.Any) -> bytes:
        reply: bytes = dispatch(sess, msg)
        if msg.type == 'transfer' and not fired.is_set():
            fired.set()
            broker.restart()
        return reply
    dst_role.dispatch = restarting_dispatch  # type: ignore[method-assign]
    try:
        rabbit.migrate('src', 'dst', inst)
    except exception.VtpmMigrationException:
        pass  # the reply was lost: recovery decides
    assert fired.is_set()
    _settle(rabbit, inst, secret)


GARBAGE: dict[str, ty.Any] = {
    'text': 'not a protocol message',
    'number': 12345,
    'wrong-dict': {'x': 1},
    'bad-base64': {'vtpm_message': '***'},
    'oversize': {'vtpm_message': 'A' * (8 * 1024 * 1024)},
    'extra-key': {'vtpm_message': '', 'x': 1},
    'random-bytes': {'vtpm_message': 'AAECAwQFBgcICQ=='},
}


@pytest.mark.slow
def test_garbage_at_rpc_endpoint(rabbit: inproc.RabbitCluster) -> None:
    """Requests that bypass the client's serializer (any peer on the bus
    can send them): each is refused by the server's strict serializer or
    the engine, nothing is journalled, and the server keeps working."""
    client = oslo_messaging.get_rpc_client(
        rabbit.transport, oslo_messaging.Target(
            topic=nvm_conf.CONF.vtpm_migration.rpc_topic,
            namespace=rpcapi.NAMESPACE, version='1.0'), timeout=10)
    cctxt = client.prepare(server='dst')
    before = len(rabbit.nodes['dst'].engine.journal.list_migrations())
    for name, junk in GARBAGE.items():
        try:
            reply = cctxt.call({}, 'exchange', request=junk)
        except oslo_messaging.RemoteError as exc:
            assert exc.exc_type in ('WrongFieldType', 'MessageTooLarge'), (
                name, exc.exc_type)
        else:
            # decodable junk reaches the engine: an error message back
            msg = messages.decode(base64.b64decode(reply['vtpm_message']))
            assert msg.type == 'error', name
    assert len(rabbit.nodes['dst'].engine.journal.list_migrations()) \
        == before
    inst, secret = rabbit.provision('src')
    rabbit.migrate('src', 'dst', inst)
    assert _settle(rabbit, inst, secret) == 'dst'
