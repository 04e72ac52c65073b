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

"""Fixtures that observe everything Nova sends and logs."""

import base64
import logging
import threading

import fixtures
from oslo_messaging._drivers import impl_fake
from oslo_serialization import jsonutils


class MessageCapture(fixtures.Fixture):
    """Record every RPC request and reply on the fake oslo.messaging bus.

    Nova's functional tests run all services on one in-process fake
    transport (``nova.tests.fixtures.RPCFixture``); wrapping its driver
    sees each message as serialized for the wire: Nova's casts and calls
    with their ``LibvirtLiveMigrateData`` primitives, the replies, and the
    plugin's own compute-to-compute calls.
    """

    def _setUp(self) -> None:
        self.messages: list[str] = []
        self._lock = threading.Lock()
        orig_send = impl_fake.FakeDriver._send
        orig_reply = impl_fake.FakeIncomingMessage.reply

        def send(driver, target, ctxt, message, *args, **kwargs):
            self._record({'target': str(target), 'ctxt': ctxt,
                          'message': message})
            return orig_send(driver, target, ctxt, message, *args, **kwargs)

        def reply(incoming, reply=None, failure=None):
            self._record({'reply': reply, 'failure': repr(failure)})
            return orig_reply(incoming, reply=reply, failure=failure)

        self.useFixture(fixtures.MonkeyPatch(
            'oslo_messaging._drivers.impl_fake.FakeDriver._send', send))
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_messaging._drivers.impl_fake.FakeIncomingMessage.reply',
            reply))

    def _record(self, data: object) -> None:
        text = jsonutils.dumps(data, default=repr)
        with self._lock:
            self.messages.append(text)

    def containing(self, needle: str) -> list[str]:
        with self._lock:
            return [m for m in self.messages if needle in m]

    def methods(self) -> list[str]:
        """Names of the RPC methods sent so far, in order."""
        result = []
        with self._lock:
            for text in self.messages:
                data = jsonutils.loads(text)
                method = (data.get('message') or {}).get('method')
                if method:
                    result.append(method)
        return result


class DebugLogCapture(fixtures.Fixture):
    """Keep every log record, DEBUG included, formatted."""

    def _setUp(self) -> None:
        self.records: list[str] = []
        handler = _ListHandler(self.records)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter(
            '%(levelname)s [%(name)s] %(message)s'))
        self.useFixture(fixtures.LogHandler(handler, nuke_handlers=False))

    @property
    def text(self) -> str:
        return '\n'.join(self.records)


class _ListHandler(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._records.append(self.format(record))
        except Exception:  # noqa: BLE001 - a log bug must not break tests
            self._records.append(repr(record.msg))


def secret_encodings(secret: bytes) -> list[str]:
    """The forms in which a leaked secret could appear in text."""
    forms = {secret.decode('ascii', 'replace'),
             base64.b64encode(secret).decode(),
             secret.hex()}
    return sorted(f for f in forms if len(f) >= 16)
