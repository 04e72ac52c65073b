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

"""A private RabbitMQ broker on loopback, for tests, the demo and benchmarks.

Debian's ``rabbitmq-server`` package does not start the service (and the
tests must not depend on a system broker), so :class:`RabbitBroker` runs its
own node: its own node name, data and log directories and Erlang cookie in
a temporary directory, AMQP and distribution ports on 127.0.0.1 only.

The node is started through ``/usr/lib/rabbitmq/bin``; the
``/usr/sbin`` wrappers ``su`` to the ``rabbitmq`` user and ``cd`` into
``/var/lib/rabbitmq``, which is not what a private node wants.
"""

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import types

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

RABBIT_BIN = pathlib.Path('/usr/lib/rabbitmq/bin')


class BrokerError(RuntimeError):
    """The private broker could not be started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(('127.0.0.1', port)) == 0


class RabbitBroker:
    """A RabbitMQ node of its own, listening on ``127.0.0.1``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    :meth:`restart` stops and starts the same node (same data directory and
    port), which the reliability tests use to cut connections mid-flight.

    :param start_timeout: seconds to wait for the AMQP port.
    """

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.start_timeout = start_timeout
        self.port = free_port()
        self.dist_port = free_port()
        self._dir = pathlib.Path(tempfile.mkdtemp(prefix='vtpm-rabbit-'))
        self.node = f'vtpm{self.port}@localhost'
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def transport_url(self) -> str:
        """The oslo.messaging transport URL of this broker."""
        return f'rabbit://guest:guest@127.0.0.1:{self.port}/'

    def _env(self) -> dict[str, str]:
        home = self._dir / 'home'
        home.mkdir(exist_ok=True)
        plugins = self._dir / 'enabled_plugins'
        if not plugins.exists():
            plugins.write_text('[].\n')
        env = dict(os.environ)
        env.update({
            'HOME': str(home),
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(self.dist_port),
            'RABBITMQ_MNESIA_BASE': str(self._dir / 'mnesia'),
            'RABBITMQ_LOG_BASE': str(self._dir / 'log'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': str(plugins),
            'RABBITMQ_CONFIG_FILE': str(self._dir / 'rabbitmq'),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
                '-kernel inet_dist_use_interface {127,0,0,1}',
            'ERL_EPMD_ADDRESS': '127.0.0.1',
        })
        return env

    def start(self) -> 'RabbitBroker':
        """Start the node and wait until it accepts AMQP connections.

        :raises BrokerError: if the node exits or does not listen in time.
        """
        if self._proc is not None:
            return self
        server = RABBIT_BIN / 'rabbitmq-server'
        if not server.exists():
            raise BrokerError(f'{server} not found: install rabbitmq-server')
        log = open(self._dir / 'server.out', 'ab')  # noqa: SIM115
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [str(server)], env=self._env(), stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                out = (self._dir / 'server.out').read_text(errors='replace')
                self._proc = None
                raise BrokerError(f'rabbitmq-server exited: {out[-2000:]}')
            if _port_open(self.port):
                LOG.debug('RabbitMQ node %s listening on %d', self.node,
                          self.port)
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f'rabbitmq-server not listening on {self.port} '
                          f'after {self.start_timeout} s')

    def stop(self) -> None:
        """Stop the node (SIGTERM, then SIGKILL of its process group)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # beam.smp may outlive the shell wrapper: wait for the port to close.
        deadline = time.monotonic() + 20
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self) -> None:
        """Stop and start the same node again."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the node and remove its directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> 'RabbitBroker':
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.cleanup()
