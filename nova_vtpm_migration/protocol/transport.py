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


"""Request/response transports of the protocol.

The protocol only needs ``call(peer, request) -> reply`` with opaque
bytes; :mod:`nova_vtpm_migration.rpc` implements it on oslo.messaging.
:class:`LocalTransport` connects engines in one process and lets a test
play the Dolev-Yao attacker: an :class:`Adversary` sees every request and
reply and may modify, drop, replay, reorder or inject messages.
"""

import abc
import collections.abc
import dataclasses
import threading

from nova_vtpm_migration.protocol import errors

Handler = collections.abc.Callable[[bytes], bytes]


class Transport(abc.ABC):
    """A request/response channel between migration engines."""

    @abc.abstractmethod
    def call(self, peer: str, request: bytes) -> bytes:
        """Send ``request`` to ``peer`` and return its reply.

        :raises TransportError: the peer cannot be reached or timed out.
        """


@dataclasses.dataclass(frozen=True)
class Exchange:
    """One captured request and its reply (``None`` if none came)."""

    peer: str
    request: bytes
    reply: bytes | None


class Adversary:
    """Hooks of an active network attacker; the default passes all.

    Subclasses override :meth:`on_request` and :meth:`on_reply`; raising
    :class:`~nova_vtpm_migration.protocol.errors.TransportError` drops the
    message.
    """

    def route(self, peer: str, request: bytes) -> str:
        """Return the host the request is really delivered to."""
        return peer

    def on_request(self, peer: str, request: bytes) -> bytes:
        """Return the request to deliver (possibly modified)."""
        return request

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        """Return the reply to hand back (possibly modified)."""
        return reply


class LocalTransport(Transport):
    """In-process transport between engines registered by name."""

    def __init__(self) -> None:
        self._endpoints: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.adversary: Adversary = Adversary()
        #: Every exchange, as delivered (after the adversary's changes).
        self.captured: list[Exchange] = []

    def register(self, name: str, handler: Handler) -> None:
        """Attach the ``handle`` entry point of an engine under ``name``."""
        with self._lock:
            self._endpoints[name] = handler

    def unregister(self, name: str) -> None:
        """Detach an endpoint (the host is down)."""
        with self._lock:
            self._endpoints.pop(name, None)

    def deliver(self, peer: str, request: bytes) -> bytes:
        """Deliver bytes to ``peer`` directly, bypassing the adversary
        (what an attacker injecting traffic does)."""
        with self._lock:
            handler = self._endpoints.get(peer)
        if handler is None:
            raise errors.TransportError(peer=peer, reason='host is down')
        return handler(request)

    def call(self, peer: str, request: bytes) -> bytes:
        """Deliver through the adversary hooks and capture the exchange."""
        request = self.adversary.on_request(peer, request)
        peer = self.adversary.route(peer, request)
        try:
            reply = self.deliver(peer, request)
        except errors.TransportError:
            self.captured.append(Exchange(peer, request, None))
            raise
        self.captured.append(Exchange(peer, request, reply))
        return self.adversary.on_reply(peer, request, reply)
