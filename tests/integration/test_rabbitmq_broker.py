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

"""The private RabbitMQ broker really carries oslo.messaging RPC."""

import threading
import typing as ty

from oslo_config import cfg
import oslo_messaging
import pytest

from tests.support import rabbitmq


class _Echo:
    target = oslo_messaging.Target(namespace='test', version='1.0')

    def echo(self, ctxt: dict[str, ty.Any], value: str) -> str:
        return value[::-1]


@pytest.fixture(scope='module')
def broker() -> ty.Iterator[rabbitmq.RabbitBroker]:
    with rabbitmq.RabbitBroker() as b:
        yield b


def _rpc_roundtrip(url: str, value: str) -> str:
    # Oslo.messaging 18 registers its tracing options on the
    # global CONF only, so a private ConfigOpts cannot be used here.
    conf = cfg.CONF
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    server = oslo_messaging.get_rpc_server(
        transport, oslo_messaging.Target(topic='t', server='s'), [_Echo()],
        executor='threading')
    server.start()
    try:
        client = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic='t', namespace='test',
                                             version='1.0'), timeout=20)
        return ty.cast(str, client.prepare(server='s').call({}, 'echo',
                                                            value=value))
    finally:
        server.stop()
        server.wait()
        transport.cleanup()


def test_rpc_over_private_broker(broker: rabbitmq.RabbitBroker) -> None:
    assert _rpc_roundtrip(broker.transport_url, 'abc') == 'cba'


def test_restart_keeps_port(broker: rabbitmq.RabbitBroker) -> None:
    port = broker.port
    broker.restart()
    assert broker.port == port
    assert _rpc_roundtrip(broker.transport_url, 'xyz') == 'zyx'
    assert threading.active_count() < 50
