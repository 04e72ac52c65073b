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



"""One simulated host's migration engine in its own process.

``python -m tests.support.hostd <config.json> <name>`` opens the
host's journal and key store, connects to its (already running) swtpm,
serves the protocol on ``<socket_dir>/<name>.sock`` and JSON control
commands ``{"op": <name>, ...arguments}`` on ``<socket_dir>/<name>.ctl``
(the ``op_*`` methods of :class:`Host`), and injects the fault in
``NVM_FAULT`` (:mod:`.faults`). The fault-injection matrix and
the load tests start, SIGKILL and restart these processes.

Config: ``{"socket_dir", "guest_dir", "policy" (a TrustPolicy document),
"pcrs", "session_lifetime", "timeout", "hosts": {name: {"role", "tcti",
"tpm_state", "state_dir"}}}``. In-doubt migrations are decided by where
the guest runs (:meth:`Host.guest_oracle`). Simulation only.
"""

import hashlib
import json
import logging as py_logging
import os
import signal
import sys
import threading
import typing as ty

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.support import cluster
from tests.support import faults
from tests.support import sockets


class InternalErrors(py_logging.Handler):
    """Remembers the undocumented exceptions the engine's request handler
    turned into ``internal`` error replies (it logs them with
    ``LOG.exception``)."""

    def __init__(self) -> None:
        super().__init__(py_logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: py_logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.seen.append(f'{type(exc).__name__}: {str(exc)[:200]}')


class Host:
    """The engine of one host and its control commands."""

    def __init__(self, config: dict[str, ty.Any], name: str) -> None:
        me = config['hosts'][name]
        self.name = name
        self.config = config
        tpm = cluster.open_host_tpm(me['tcti'], me['tpm_state'],
                                    tuple(config['pcrs']), lock_timeout=30)
        self.ctx = tpm.ctx
        policy = policy_mod.TrustPolicy.from_dict(config['policy'])
        transport = sockets.SocketTransport(config['socket_dir'],
                                            timeout=config['timeout'])
        self.engine = engine_mod.MigrationEngine.open(
            name, tpm, policy, me['state_dir'], transport,
            session_lifetime=config['session_lifetime'],
            outcome_oracle=self.guest_oracle,
            ak_certificate=bytes.fromhex(me['ak_certificate']))
        self.injector = faults.Injector(
            me.get('role', name), faults.FaultPlan.from_env(),
            fill_dir=os.environ.get(faults.FILL_ENV) or None)
        self.injector.install(self.engine)
        self.done = threading.Event()
        self.internal = InternalErrors()
        py_logging.getLogger('nova_vtpm_migration').addHandler(
            self.internal)

    def guest_oracle(self, row: journal_mod.MigrationRow) -> str:
        """The data-plane outcome oracle: commit iff the guest runs on the
        destination. The orchestrator records the hand-over in
        ``<guest_dir>/guest-<instance>`` (absent: the guest never left).
        """
        path = os.path.join(self.config['guest_dir'],
                            f'guest-{row.instance_uuid}')
        try:
            with open(path) as f:
                where = f.read().strip()
        except FileNotFoundError:
            return 'abort'
        return 'commit' if where == row.peer else 'abort'

    # -- control commands ----------------------------------------------

    def op_ping(self) -> dict[str, ty.Any]:
        """Liveness, and whether this process's fault fired."""
        return {'pid': os.getpid(), 'fired': self.injector.fired}

    def op_provision(self, instance: str, secret: str) -> dict[str, ty.Any]:
        self.engine.keystore.add(instance, bytes.fromhex(secret))
        return {}

    def op_migrate(self, instance: str, peer: str,
                   migration_id: str) -> dict[str, ty.Any]:
        handle = self.engine.migrate_key(instance, peer, migration_id)
        return {'migration_id': handle.migration_id}

    def op_commit(self, migration_id: str) -> dict[str, ty.Any]:
        receipt = self.engine.commit(migration_id)
        return {'status': receipt['status']}

    def op_abort(self, migration_id: str) -> dict[str, ty.Any]:
        self.engine.abort(migration_id, 'orchestrator')
        return {}

    def op_recover(self) -> dict[str, ty.Any]:
        return {'states': self.engine.recover()}

    def op_keys(self) -> dict[str, ty.Any]:
        """Custody state of every key and, for usable (ACTIVE) ones, the
        SHA-256 of the secret (never the secret)."""
        out = {}
        for inst, state in self.engine.keystore.instances().items():
            digest = ''
            if state.value == 'ACTIVE':
                try:
                    digest = hashlib.sha256(
                        self.engine.keystore.read(inst)).hexdigest()
                except exception.VtpmMigrationException as exc:
                    digest = f'unreadable: {type(exc).__name__}'
            out[inst] = {'state': state.value, 'sha256': digest}
        return {'keys': out}

    def op_migrations(self) -> dict[str, ty.Any]:
        return {'migrations': [
            [r.migration_id, r.role.value, r.state]
            for r in self.engine.journal.list_migrations()]}

    def op_internal_errors(self) -> dict[str, ty.Any]:
        """Undocumented exceptions behind ``internal`` error replies."""
        return {'errors': list(self.internal.seen)}

    def op_heal(self) -> dict[str, ty.Any]:
        self.injector.heal()
        return {'flushed': self.injector.flush()}

    def op_handles(self) -> dict[str, ty.Any]:
        return {'loaded': sorted(context.loaded_handles(self.ctx))}

    def op_rss(self) -> dict[str, ty.Any]:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return {'rss_kb': int(line.split()[1])}
        return {'rss_kb': 0}

    def op_stop(self) -> dict[str, ty.Any]:
        self.done.set()
        return {}

    def control(self, data: bytes) -> bytes:
        """Run one JSON control command; never raises."""
        try:
            req = json.loads(data)
            op = getattr(self, 'op_' + str(req.pop('op')))
            result = dict(op(**req), ok=True)
        except exception.VtpmMigrationException as exc:
            result = {'ok': False, 'error': type(exc).__name__,
                      'code': getattr(exc, 'code', ''),
                      'message': str(exc)[:500], 'documented': True}
        except Exception as exc:
            py_logging.getLogger(__name__).exception('control failed')
            result = {'ok': False, 'error': type(exc).__name__,
                      'message': str(exc)[:500], 'documented': False}
        return json.dumps(result).encode()


def main(argv: list[str] | None = None) -> int:
    """Run one host until ``stop`` or SIGTERM."""
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        config = json.load(f)
    name = args[1]
    me = config['hosts'][name]
    os.makedirs(me['state_dir'], mode=0o700, exist_ok=True)
    py_logging.basicConfig(
        filename=os.path.join(me['state_dir'], 'host.log'),
        level=py_logging.INFO,
        format='%(asctime)s %(process)d %(levelname)s %(name)s %(message)s')
    host = Host(config, name)
    host.engine.local  # noqa: B018  (collect TPM evidence before serving)
    servers = [
        sockets.SocketServer(sockets.socket_path(config['socket_dir'], name),
                             host.engine.handle).start(),
        sockets.SocketServer(sockets.socket_path(config['socket_dir'], name,
                                                 'ctl'),
                             host.control).start()]
    signal.signal(signal.SIGTERM, lambda *_: host.done.set())
    host.done.wait()
    for server in servers:
        server.stop()
    host.engine.close()
    host.ctx.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
