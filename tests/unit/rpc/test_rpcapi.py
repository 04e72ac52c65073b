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
    ser = serializer.RpcSerializer()
    data = ser.serialize_entity({}, b'\x00abc')
    assert ser.deserialize_entity({}, data) == b'\x00abc'
    # The control calls' flat values pass as they are.
    for flat in ('host-a', 1, None, True, {'peer': 'b', 'ek': 'ab12'}):
        assert ser.deserialize_entity({}, ser.serialize_entity({}, flat)) \
            == flat
    for bad in ({'vtpm_message': 1}, {'vtpm_message': 'AAAA', 'x': 1},
                {'vtpm_message': '!!'},
                {'vtpm_message': 'A' * (wire.MAX_MESSAGE_SIZE * 2)},
                'x' * (serializer.MAX_TEXT + 1), 1.5, [1, 2],
                {'nested': {'a': 1}}, {1: 'non-text key'},
                {str(i): i for i in range(serializer.MAX_ITEMS + 1)}):
        with pytest.raises(errors.MalformedMessage):
            ser.deserialize_entity({}, bad)
    for bad in (1.5, {'vtpm_message': 'forged'}, b'x' * (
            wire.MAX_MESSAGE_SIZE + 1), object()):
        with pytest.raises(errors.MalformedMessage):
            ser.serialize_entity({}, bad)
    assert ser.serialize_context({'user': 'x'}) == {}
    assert ser.deserialize_context({'user': 'x'}) == {}


def test_client_target_and_version_cap(conf: config_fixture.Config) -> None:
    transport = messaging.get_rpc_transport(CONF, url='fake://')
    api = rpcapi.VtpmMigrationAPI(transport)
    assert api.client.target.topic == CONF.vtpm_migration.rpc_topic
    assert api.client.target.namespace == 'vtpm_migration'
    assert api.client.target.version == '1.0'
    assert api.client.version_cap is None
    conf.config(vtpm_migration='1.0.0', group='upgrade_levels')
    capped = rpcapi.VtpmMigrationAPI(transport)
    assert capped.client.version_cap == '1.0'
    assert capped.client.can_send_version('1.0')
    assert not capped.client.can_send_version(rpcapi.CONTROL_VERSION)
    # A control call above the cap fails before anything is sent.
    with pytest.raises(messaging.RPCVersionCapError):
        capped.send_key('src', 'inst', 'mig', 'dest')
    # The option's old name still works.
    conf.config(vtpm_migration=None, group='upgrade_levels')
    conf.config(rpc_version_cap='1.1.0', group='vtpm_migration')
    assert rpcapi.VtpmMigrationAPI(transport).client.version_cap == '1.1'
    assert 'API version history' in (rpcapi.VtpmMigrationAPI.__doc__ or '')
    transport.cleanup()


class _Controls:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def handle_attest(self, instance_uuid: str,
                      destination: str) -> dict[str, str]:
        self.calls.append(('attest', instance_uuid, destination))
        return {'peer': destination}

    def handle_send_key(self, instance_uuid: str, migration_uuid: str,
                        destination: str) -> dict[str, str]:
        self.calls.append(('send_key', migration_uuid, destination))
        return {}


def test_manager_target() -> None:
    calls: list[bytes] = []
    controls = _Controls()
    endpoint = manager.VtpmMigrationManager(
        lambda b: calls.append(b) or b'reply', controls)
    assert endpoint.target.namespace == rpcapi.NAMESPACE
    assert endpoint.target.version == rpcapi.VERSION == '1.1'
    assert endpoint.exchange({}, b'req') == b'reply'
    assert calls == [b'req']
    assert endpoint.attest_destination({}, 'i', 'd') == {'peer': 'd'}
    endpoint.send_key({}, 'i', 'm', 'd')
    assert controls.calls == [('attest', 'i', 'd'), ('send_key', 'm', 'd')]
    # A destination's abort request is a sealed protocol message, not a
    # control call anybody on the bus could send.
    assert not hasattr(endpoint, 'abort_migration')
    protocol_only = manager.VtpmMigrationManager(lambda b: b)
    with pytest.raises(messaging.NoSuchMethod):
        protocol_only.send_key({}, 'i', 'm', 'd')
