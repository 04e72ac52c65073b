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

:class:`Testbed` is the data-plane layer over
:class:`tests.support.cluster.SimCluster`, which starts, for each named
host, an swtpm host TPM with an EK certificate from a private
``swtpm_localca`` CA, a ``HostTpm`` on it, and a protocol
``MigrationEngine`` (journal and key store in the host's directory) on a
shared in-process transport (or oslo.messaging); the testbed adds a
data-plane :class:`~.host.SimHost` per host. The trust policy trusts the
CA and the PCR values of fresh hosts (all hosts boot the same
"firmware").

Instances are created with their secret in the owning host's key store;
the vTPM is started with the secret read back from that key store, so on
the secured path the key only ever comes out of the protocol.

Everything is torn down by :meth:`Testbed.close` (and the context manager).
"""

import collections.abc
import os
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
    :param transport_url: engines talk over oslo.messaging on this URL
        (e.g. RabbitMQ) instead of in-process.
    """

    def __init__(self, names: collections.abc.Sequence[str] = ('src', 'dst'),
                 *, distinct_eks: bool = True,
                 session_lifetime: float = 300.0,
                 firmware: str | None = guest_mod.FIRMWARE_NO_TPM,
                 transport_url: str | None = None
                 ) -> None:
        # Imported here so that the rest of the data plane
        # does not depend on the protocol and the simulator.
        from nova_vtpm_migration.protocol import transport as transport_mod
        from tests.support import cluster

        self.sim = cluster.SimCluster(pcrs=HOST_PCRS, label='tb',
                                      clone=not distinct_eks)
        self.dir = str(self.sim.root)
        self.hosts: dict[str, host_mod.SimHost] = {}
        self.engines: dict[str, ty.Any] = {}
        self.transport = transport_mod.LocalTransport()
        self.names = tuple(names)
        try:
            peers: ty.Any = self.transport
            bus = None
            if transport_url is not None:
                bus = self.sim.messaging(transport_url)
                peers = self.sim.rpc_peers(bus)
            self.sim.start(self.names)
            self.policy = self.sim.policy
            for name in self.names:
                eng = self.sim.engine(
                    name, peers, state_dir=self.sim.state_dir(name, 'engine'),
                    session_lifetime=session_lifetime)
                self.transport.register(name, eng.handle)
                if bus is not None:
                    self.sim.serve(name, eng, bus)
                self.engines[name] = eng
                self.hosts[name] = host_mod.SimHost(
                    name, os.path.join(self.dir, name[:8] + '-dp'),
                    host_tpm=eng.tpm, firmware=firmware)
        except BaseException:
            self.close()
            raise

    @property
    def ca(self) -> ty.Any:
        """The private CA of the host TPMs' EK certificates."""
        return self.sim.ca

    @property
    def tpm_contexts(self) -> dict[str, ty.Any]:
        """Host name -> its ``TpmContext`` (command statistics)."""
        return {name: self.sim.tpm(name).ctx for name in self.names}

    def host_tpm(self, name: str) -> ty.Any:
        """The swtpm process standing in for *name*'s hardware TPM."""
        return self.sim.tpm(name).swtpm

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
        for h in self.hosts.values():
            h.cleanup()
        for eng in self.engines.values():  # also engines a test reopened
            try:
                eng.close()
            except Exception:  # noqa: BLE001 - keep cleaning up
                LOG.exception('Closing an engine failed')
        self.sim.close()
