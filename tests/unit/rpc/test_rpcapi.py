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


"""The RPC client class, endpoint and strict serializer."""

from oslo_config import fixture as config_fixture
import oslo_messaging as messaging
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.rpc import manager
from nova_vtpm_migration.rpc import rpcapi
from nova_vtpm_migration.rpc import serializer

CONF = nvm_conf.CONF


@pytest.fixture
def conf() -> object:
    fix = config_fixture.Config(CONF)
    fix.setUp()
    yield fix
    fix.cleanUp()


def test_serializer_roundtrip_and_strictness() -> None:
    ser = serializer.MessageSerializer()
    data = ser.serialize_entity({}, b'\x00abc')
    assert ser.deserialize_entity({}, data) == b'\x00abc'
    for bad in ('text', 1, None, {'vtpm_message': 1},
                {'vtpm_message': 'AAAA', 'x': 1}, {'vtpm_message': '!!'},
                {'vtpm_message': 'A' * (wire.MAX_MESSAGE_SIZE * 2)}):
        with pytest.raises(errors.MalformedMessage):
            ser.deserialize_entity({}, bad)
    with pytest.raises(errors.MalformedMessage):
        ser.serialize_entity({}, 'not bytes')
    assert ser.serialize_context({'user': 'x'}) == {}


def test_client_target_and_version_cap(conf: config_fixture.Config) -> None:
    transport = messaging.get_rpc_transport(CONF, url='fake://')
    api = rpcapi.VtpmMigrationAPI(transport)
    assert api.client.target.topic == CONF.vtpm_migration.rpc_topic
    assert api.client.target.namespace == 'vtpm_migration'
    assert api.client.target.version == '1.0'
    assert api.client.version_cap is None
    conf.config(rpc_version_cap='1.0.0', group='vtpm_migration')
    capped = rpcapi.VtpmMigrationAPI(transport)
    assert capped.client.version_cap == '1.0'
    assert capped.client.can_send_version('1.0')
    assert not capped.client.can_send_version('1.1')
    assert 'API version history' in (rpcapi.VtpmMigrationAPI.__doc__ or '')
    transport.cleanup()


def test_manager_target() -> None:
    calls = []
    endpoint = manager.VtpmMigrationManager(
        lambda b: calls.append(b) or b'reply')
    assert endpoint.target.namespace == rpcapi.NAMESPACE
    assert endpoint.target.version == '1.0'
    assert endpoint.exchange({}, b'req') == b'reply'
    assert calls == [b'req']
