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


"""The QMP client against a scripted QMP server on a unix socket."""

import json
import os
import socket
import tempfile
import threading

import pytest

from tests.support.dataplane import errors
from tests.support.dataplane import qmp


class FakeQmp:
    """Answers each request with the next scripted reply list."""

    def __init__(self, replies, greeting=True):
        self.dir = tempfile.mkdtemp(prefix='nvm-qmp-')
        self.path = os.path.join(self.dir, 'qmp.sock')
        self.replies = list(replies)
        self.greeting = greeting
        self.requests = []
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.srv.accept()
        f = conn.makefile('rwb')
        if self.greeting:
            f.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        else:
            f.write(b'{"hello": 1}\r\n')
        f.flush()
        for line in f:
            req = json.loads(line)
            self.requests.append(req)
            if not self.replies:
                break
            for msg in self.replies.pop(0):
                if msg == 'HANG':
                    continue
                if 'id' in msg:
                    msg = dict(msg, id=req['id'])
                f.write(json.dumps(msg).encode() + b'\r\n')
            f.flush()
        conn.close()

    def close(self):
        self.srv.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


OK = {'return': {}, 'id': None}


def test_negotiates_and_executes_and_keeps_events():
    event = {'event': 'STOP', 'timestamp': {}}
    fake = FakeQmp([[OK],
                    [event, {'return': {'status': 'running'}, 'id': None}]])
    try:
        with qmp.QmpClient(fake.path, timeout=5) as c:
            assert c.execute('query-status') == {'status': 'running'}
            assert c.drain_events() == [event]
            assert c.drain_events() == []
        assert fake.requests[0]['execute'] == 'qmp_capabilities'
        assert fake.requests[1]['execute'] == 'query-status'
    finally:
        fake.close()


def test_error_reply_raises_qmp_error():
    fake = FakeQmp([[OK], [{'error': {'class': 'GenericError',
                                      'desc': 'no'}, 'id': None}]])
    try:
        with qmp.QmpClient(fake.path, timeout=5) as c:
            with pytest.raises(errors.QmpError) as exc:
                c.execute('migrate', {'uri': 'tcp:x'})
        assert 'migrate' in str(exc.value) and 'GenericError' in str(exc.value)
        assert fake.requests[1]['arguments'] == {'uri': 'tcp:x'}
    finally:
        fake.close()


def test_timeout_raises_connection_error():
    fake = FakeQmp([[OK], ['HANG']])
    try:
        with qmp.QmpClient(fake.path, timeout=5) as c:
            with pytest.raises(errors.QmpConnectionError, match='timed out'):
                c.execute('query-status', timeout=0.2)
    finally:
        fake.close()


def test_no_greeting_is_refused():
    fake = FakeQmp([], greeting=False)
    try:
        with pytest.raises(errors.QmpConnectionError, match='greeting'):
            qmp.QmpClient(fake.path, timeout=5).connect()
    finally:
        fake.close()


def test_missing_socket_times_out():
    with pytest.raises(errors.QmpConnectionError, match='cannot connect'):
        qmp.QmpClient('/nonexistent/qmp.sock').connect(timeout=0.1)
