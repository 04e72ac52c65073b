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



"""A tiny request/response transport over Unix sockets, for running each
host's migration engine in its own process (fault injection with real
process kills).

Every host listens on ``<directory>/<name>.sock``; a call opens one
connection, sends one length-prefixed frame and reads one frame back. The
same framing carries the JSON control commands of
:mod:`tests.support.hostd`. Simulation only: product code uses
:mod:`nova_vtpm_migration.rpc`.
"""

import collections.abc
import os
import socket
import socketserver
import struct
import threading

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import transport as transport_mod
from nova_vtpm_migration.protocol import wire

#: Largest frame accepted (a maximal message plus room).
MAX_FRAME = wire.MAX_MESSAGE_SIZE + 1024
_HEADER = struct.Struct('>I')

Handler = collections.abc.Callable[[bytes], bytes]


class FrameError(Exception):
    """The peer closed the connection or sent a bad frame."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise FrameError('connection closed')
        chunks.append(chunk)
        size -= len(chunk)
    return b''.join(chunks)


def send_frame(sock: socket.socket, data: bytes) -> None:
    """Send one length-prefixed frame."""
    sock.sendall(_HEADER.pack(len(data)) + data)


def recv_frame(sock: socket.socket) -> bytes:
    """Receive one length-prefixed frame.

    :raises FrameError: closed connection or oversize frame.
    """
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > MAX_FRAME:
        raise FrameError(f'frame of {size} bytes')
    return _recv_exact(sock, size)


def socket_path(directory: str, name: str, kind: str = 'sock') -> str:
    """The socket of host ``name`` (``sock``: protocol, ``ctl``: control).
    """
    return os.path.join(directory, f'{name}.{kind}')


def request(path: str, data: bytes, timeout: float) -> bytes:
    """One request/response exchange with the server at ``path``.

    :raises OSError: cannot connect or timed out.
    :raises FrameError: the server closed the connection without a reply.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        send_frame(sock, data)
        return recv_frame(sock)


class SocketTransport(transport_mod.Transport):
    """Reach peer engines through their Unix sockets in ``directory``.

    :param directory: where every host's socket lives.
    :param timeout: seconds to wait for a reply.
    """

    def __init__(self, directory: str, timeout: float = 30.0) -> None:
        self.directory = directory
        self.timeout = timeout

    def call(self, peer: str, request_bytes: bytes) -> bytes:
        if not peer.isidentifier():
            raise errors.TransportError(peer=peer[:64],
                                        reason='not a host name')
        try:
            return request(socket_path(self.directory, peer),
                           request_bytes, self.timeout)
        except TimeoutError:
            raise errors.TransportError(peer=peer,
                                        reason='timed out') from None
        except (OSError, FrameError) as exc:
            raise errors.TransportError(
                peer=peer, reason=type(exc).__name__) from None


class _Handler(socketserver.BaseRequestHandler):
    server: '_Server'

    def handle(self) -> None:
        try:
            data = recv_frame(self.request)
        except (OSError, FrameError):
            return
        reply = self.server.callback(data)
        try:
            send_frame(self.request, reply)
        except OSError:
            pass


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    callback: Handler


class SocketServer:
    """Serve ``handler(bytes) -> bytes`` on a Unix socket (threads)."""

    def __init__(self, path: str, handler: Handler) -> None:
        if os.path.exists(path):
            os.unlink(path)  # left by a killed process
        self.path = path
        self._server = _Server(path, _Handler)
        self._server.callback = handler
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f'serve-{path}', daemon=True)

    def start(self) -> 'SocketServer':
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
