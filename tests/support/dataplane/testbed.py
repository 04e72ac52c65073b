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


"""A ready-made simulated cluster for the demo, the benchmark and tests.

:class:`Testbed` starts, for each named host, an swtpm host TPM with an EK
certificate from a private ``swtpm_localca`` CA (``sim.swtpm``), a
``HostTpm`` on it, a protocol ``MigrationEngine`` (journal and key store in
the host's directory) on a shared in-process transport, and a data-plane
:class:`~.host.SimHost`. The trust policy trusts the CA and takes the first
host's PCRs as golden (all hosts boot the same "firmware").

Instances are created with their secret in the owning host's key store;
the vTPM is started with the secret read back from that key store, so on
the secured path the key only ever comes out of the protocol.

Everything is torn down by :meth:`Testbed.close` (and the context manager).
"""

import collections.abc
import os
import shutil
import tempfile
import typing as ty
import uuid

from oslo_log import log as logging

from tests.support.dataplane import guest as guest_mod
from tests.support.dataplane import host as host_mod
from tests.support.dataplane import migration
from tests.support.dataplane import provision
from tests.support.dataplane import secured
from tests.support.dataplane import vtpm

LOG = logging.getLogger(__name__)

#: PCRs the host TPMs quote (sha256).
HOST_PCRS = (0, 1, 2, 3, 7)


class Testbed:
    """Simulated hosts with TPMs, protocol engines and data planes.

    :param names: host names (transport addresses).
    :param distinct_eks: manufacture one EK per host (about 1 s each)
        instead of cloning one state.
    :param session_lifetime: seconds an attested session is reused.
    :param firmware: guest firmware (see :mod:`.guest`).
    """

    def __init__(self, names: collections.abc.Sequence[str] = ('src', 'dst'),
                 *, distinct_eks: bool = True,
                 session_lifetime: float = 300.0,
                 firmware: str | None = guest_mod.FIRMWARE_NO_TPM,
                 transport_url: str | None = None
                 ) -> None:
        # Imported here so that the rest of the data plane
        # does not depend on the protocol and the simulator.
        from nova_vtpm_migration.protocol import engine as engine_mod
        from nova_vtpm_migration.protocol import transport as transport_mod
        from nova_vtpm_migration.tpm import context
        from nova_vtpm_migration.tpm import host as tpm_host
        from nova_vtpm_migration.tpm import policy as policy_mod
        from tests.support import swtpm

        self.dir = tempfile.mkdtemp(prefix='nvm-tb-')
        self.ca = swtpm.SwtpmCA('testbed-ca')
        self._host_tpms: list[ty.Any] = []
        self._contexts: list[ty.Any] = []
        self.hosts: dict[str, host_mod.SimHost] = {}
        self.engines: dict[str, ty.Any] = {}
        self.transport = transport_mod.LocalTransport()
        self.names = tuple(names)
        self._rpc: ty.Any = None
        self._servers: list[ty.Any] = []
        try:
            peers: ty.Any = self.transport
            if transport_url is not None:
                peers = self._rpc_transport(transport_url)
            self._host_tpms = swtpm.make_hosts(
                self.ca, len(names), distinct=distinct_eks, prefix='tb')
            tpms = []
            for name, sw in zip(names, self._host_tpms, strict=True):
                ctx = context.TpmContext(sw.tcti, lock_timeout=10)
                self._contexts.append(ctx)
                tpms.append(tpm_host.HostTpm(
                    ctx, os.path.join(self.dir, name, 'tpm'),
                    pcr_selection=HOST_PCRS))
            self.policy = policy_mod.TrustPolicy.from_golden(
                self.ca.bundle_pem(), tpms[0].pcr_values())
            for name, tpm in zip(names, tpms, strict=True):
                eng = engine_mod.MigrationEngine.open(
                    name, tpm, self.policy,
                    os.path.join(self.dir, name, 'engine'), peers,
                    session_lifetime=session_lifetime)
                self.transport.register(name, eng.handle)
                if self._rpc is not None:
                    from nova_vtpm_migration.rpc import server
                    self._servers.append(server.start_server(
                        name, eng.handle, self._rpc))
                self.engines[name] = eng
                self.hosts[name] = host_mod.SimHost(
                    name, os.path.join(self.dir, name[:8] + '-dp'),
                    host_tpm=tpm, firmware=firmware)
        except BaseException:
            self.close()
            raise

    def _rpc_transport(self, url: str) -> ty.Any:
        """Engines talk over oslo.messaging on *url* (e.g. RabbitMQ)."""
        from oslo_config import cfg
        import oslo_messaging as messaging

        from nova_vtpm_migration.rpc import rpcapi
        from nova_vtpm_migration.rpc import transport as rpc_transport

        # Oslo.messaging registers its options on the global
        # CONF only.
        self._rpc = messaging.get_rpc_transport(cfg.CONF, url=url)
        return rpc_transport.RpcTransport(rpcapi.VtpmMigrationAPI(self._rpc))

    @property
    def tpm_contexts(self) -> dict[str, ty.Any]:
        """Host name -> its ``TpmContext`` (command statistics)."""
        return dict(zip(self.names, self._contexts, strict=True))

    def host_tpm(self, name: str) -> ty.Any:
        """The swtpm process standing in for *name*'s hardware TPM."""
        return self._host_tpms[self.names.index(name)]

    def __enter__(self) -> 'Testbed':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def new_instance(self, host: str, *, start: bool = True,
                     provision_vtpm: bool = True
                     ) -> tuple[str, provision.VtpmContents | None]:
        """Create an instance on *host* with its secret in the key store.

        :param host: the host name.
        :param start: start its vTPM and guest.
        :param provision_vtpm: write recognisable vTPM content first.
        :returns: the instance id and what was provisioned.
        """
        inst = str(uuid.uuid4())
        engine = self.engines[host]
        engine.keystore.add(inst, os.urandom(32))
        key = vtpm.VtpmKey(engine.keystore.read(inst))
        contents = None
        if provision_vtpm:
            contents = self.hosts[host].provision_instance(inst, key)
        if start:
            self.hosts[host].start_instance(inst, key)
        return inst, contents

    def migrate(self, instance_uuid: str, src: str, dst: str, *,
                secured_mode: bool = True, fresh_attestation: bool = False,
                **kwargs: ty.Any) -> migration.MigrationResult:
        """Live-migrate an instance between two hosts of the testbed.

        :param instance_uuid: the instance.
        :param src: source host name.
        :param dst: destination host name.
        :param secured_mode: use the protocol (else the plain hand-over,
            which leaves the key stores alone).
        :param fresh_attestation: force phase 1 (secured mode).
        :param kwargs: see :func:`.migration.live_migrate`.
        """
        if not secured_mode:
            # The plain path bypasses the key stores, as
            # upstream Nova does; the source's key store entry is left
            # alone.
            return migration.live_migrate_plain(
                self.hosts[src], self.hosts[dst], instance_uuid, **kwargs)
        return secured.live_migrate_secured(
            self.engines[src], self.engines[dst], self.hosts[src],
            self.hosts[dst], instance_uuid,
            fresh_attestation=fresh_attestation, **kwargs)

    def close(self) -> None:
        """Stop every process and remove every directory."""
        for srv in self._servers:
            srv.stop()
            srv.wait()
        self._servers = []
        if self._rpc is not None:
            self._rpc.cleanup()
            self._rpc = None
        for h in self.hosts.values():
            h.cleanup()
        for eng in self.engines.values():
            try:
                eng.close()
            except Exception:  # noqa: BLE001 - keep cleaning up
                LOG.exception('Closing an engine failed')
        for ctx in self._contexts:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001
                LOG.exception('Closing a TPM context failed')
        for sw in self._host_tpms:
            sw.stop()
        self.ca.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
