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


"""A small synchronous QMP client over a unix socket.

QMP is line-delimited JSON: on connect QEMU sends a greeting, the client
negotiates with ``qmp_capabilities``, then sends ``{"execute": ...,
"id": ...}`` requests; replies carry ``return`` or ``error`` and the same
``id``; asynchronous ``event`` messages may arrive at any time and are kept
in :attr:`QmpClient.events` until drained.

Only the standard library is used; every read has a deadline so a hung
QEMU turns into :class:`~.errors.QmpConnectionError`, not a hung caller.
"""

import json
import select
import socket
import time
import typing as ty

from oslo_log import log as logging

from tests.support.dataplane import errors

LOG = logging.getLogger(__name__)

JsonDict = dict[str, ty.Any]


class QmpClient:
    """One QMP session.

    :param path: path of QEMU's ``-qmp unix:PATH,server=on,wait=off``
        socket.
    :param timeout: default deadline in seconds for connecting and for
        each command.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.events: list[JsonDict] = []
        self.greeting: JsonDict = {}
        self._sock: socket.socket | None = None
        self._buf = b''
        self._next_id = 0

    def __enter__(self) -> 'QmpClient':
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, timeout: float | None = None) -> None:
        """Connect (retrying until the socket appears) and negotiate.

        :param timeout: deadline in seconds; default :attr:`timeout`.
        :raises QmpConnectionError: no usable QMP server in time.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        last: Exception | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                break
            except OSError as e:
                sock.close()
                last = e
                if time.monotonic() >= deadline:
                    raise errors.QmpConnectionError(
                        path=self.path,
                        reason=f'cannot connect: {last}') from e
                time.sleep(0.02)
        self._sock = sock
        self._buf = b''
        greeting = self._read_message(deadline)
        if 'QMP' not in greeting:
            self.close()
            raise errors.QmpConnectionError(
                path=self.path, reason='no QMP greeting')
        self.greeting = greeting
        self.execute('qmp_capabilities')

    def close(self) -> None:
        """Close the socket; safe to call more than once."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    @property
    def connected(self) -> bool:
        """Whether a socket is open (QEMU may still have gone away)."""
        return self._sock is not None

    def execute(self, command: str, arguments: JsonDict | None = None,
                timeout: float | None = None) -> ty.Any:
        """Run one QMP command and return its ``return`` value.

        Events that arrive meanwhile are appended to :attr:`events`.

        :param command: QMP command name.
        :param arguments: its arguments, if any.
        :param timeout: deadline in seconds; default :attr:`timeout`.
        :raises QmpError: QEMU answered with an error.
        :raises QmpConnectionError: the connection broke or timed out.
        """
        if self._sock is None:
            raise errors.QmpConnectionError(path=self.path,
                                            reason='not connected')
        self._next_id += 1
        req_id = f'nvm-{self._next_id}'
        req: JsonDict = {'execute': command, 'id': req_id}
        if arguments:
            req['arguments'] = arguments
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            self._sock.sendall(json.dumps(req).encode() + b'\r\n')
        except OSError as e:
            self.close()
            raise errors.QmpConnectionError(
                path=self.path, reason=f'send failed: {e}') from e
        while True:
            msg = self._read_message(deadline)
            if 'event' in msg:
                self.events.append(msg)
                continue
            if msg.get('id') != req_id:
                LOG.debug('Ignoring unexpected QMP message %s', msg)
                continue
            if 'error' in msg:
                err = msg['error']
                raise errors.QmpError(command=command,
                                      error_class=err.get('class', '?'),
                                      desc=err.get('desc', ''))
            return msg.get('return')

    def drain_events(self, wait: float = 0.0) -> list[JsonDict]:
        """Return and forget every event received so far.

        :param wait: also read events arriving within this many seconds.
        """
        if self._sock is not None:
            deadline = time.monotonic() + wait
            while True:
                try:
                    msg = self._read_message(deadline, eof_ok=True)
                except errors.QmpConnectionError:
                    break
                if not msg:
                    break
                if 'event' in msg:
                    self.events.append(msg)
        events, self.events = self.events, []
        return events

    def _read_message(self, deadline: float,
                      eof_ok: bool = False) -> JsonDict:
        while b'\n' not in self._buf:
            assert self._sock is not None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.QmpConnectionError(path=self.path,
                                                reason='timed out')
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = self._sock.recv(65536)
            except OSError as e:
                self.close()
                raise errors.QmpConnectionError(
                    path=self.path, reason=f'receive failed: {e}') from e
            if not chunk:
                self.close()
                if eof_ok:
                    return {}
                raise errors.QmpConnectionError(
                    path=self.path, reason='QEMU closed the connection')
            self._buf += chunk
        line, self._buf = self._buf.split(b'\n', 1)
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise errors.QmpConnectionError(
                path=self.path, reason='invalid JSON from QEMU') from e
        if not isinstance(msg, dict):
            raise errors.QmpConnectionError(
                path=self.path, reason='unexpected JSON from QEMU')
        return msg

