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

"""The one builder of simulated hosts, shared by every test tier.

A :class:`SimCluster` owns what all tiers have in common:

* the simulated host TPMs: ``swtpm`` processes whose EK certificates come
  from a private ``swtpm_localca`` CA (:mod:`tests.support.swtpm`),
  started lazily per host name (:meth:`SimCluster.tpm`) or several at a
  time (:meth:`SimCluster.start`), each with the ``TpmContext`` and the
  ``HostTpm`` a host uses on it (:class:`SimTpm`);
* one temporary root with a state directory per host;
* the trust policy admitting them, as document and object: the CA bundle,
  the test attestation CA (:mod:`tests.support.attestation`) and the PCR
  values of a fresh swtpm for the cluster's PCR selection;
* each host's AK certificate, issued by that attestation CA for the host's
  name after the real enrollment (credential challenge answered by its
  swtpm), as an operator's CA would (:meth:`SimCluster.ak_certificate`);
* protocol engines (``MigrationEngine.open``) and compute hosts
  (``ComputeHost.from_parts``) of a host on a transport the caller
  chooses, and RPC servers on an oslo.messaging transport;
* PCR extension (a host booting something outside the policy);
* :meth:`SimCluster.close`, which releases everything the cluster
  started: RPC servers, engines, TPM contexts, messaging transports,
  swtpm processes (by PID), its own CA and the root.

Layout under the root (a host's ``<state_path>`` in the product's terms)::

    <root>/<name>/tpm/       the HostTpm's state (AK, key blobs)
    <root>/<name>/...        engine state: state_dir(name) or, for a
                             compute host, state_dir(name, 'engine')
    <root>/nvm-<name>-*/     the swtpm's own directory (TPM state, log)

TPMs may outlive a cluster: a session-wide cluster starts them, and
shorter-lived clusters :meth:`SimCluster.add` them by name (and stop only
what they started themselves). The test tiers are thin layers over this
module: ``tests.functional.swtpm_fixtures`` (pytest fixtures),
``tests.functional.protocol.conftest`` (engines on a ``LocalTransport``,
crash and restart), ``tests.nova.host_tpms`` / ``tests.nova.engines``
(Nova's computes), ``tests.integration.reliability`` (RabbitMQ; hosts in
their own processes, :mod:`tests.support.hostd`) and
:mod:`tests.support.dataplane.testbed` (demo and benchmark).
"""

import collections.abc
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import threading
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.support import attestation
from tests.support import swtpm

if ty.TYPE_CHECKING:
    from nova_vtpm_migration.compute import host as compute_host
    from nova_vtpm_migration.protocol import transport as transport_mod

LOG = logging.getLogger(__name__)

#: Seconds a host waits for its TPM's lock unless a tier says otherwise.
LOCK_TIMEOUT = 10.0
#: Sub-directory of a host's state directory holding its HostTpm state
#: (as ``<state_path>/tpm`` of a configured host).
TPM_DIR = 'tpm'

Pcrs = collections.abc.Sequence[int]
PolicyDocument = dict[str, ty.Any]


def fresh_pcr_values(pcrs: Pcrs) -> dict[int, bytes]:
    """The sha256 PCR values of a freshly started swtpm: nothing is
    measured, so PCRs 0-16 and 23 are all zeros and the locality-4 D-RTM
    PCRs 17-22 all ones."""
    return {i: b'\xff' * 32 if 17 <= i <= 22 else bytes(32) for i in pcrs}


def policy_document(ca: swtpm.SwtpmCA, pcrs: Pcrs, *, name: str = 'golden'
                    ) -> PolicyDocument:
    """The trust policy document admitting fresh hosts of ``ca``: its CA
    bundle, the test attestation CA and one golden set (``name``) of
    :func:`fresh_pcr_values`."""
    return policy_mod.TrustPolicy.document(
        ca.bundle_pem(), [(name, fresh_pcr_values(pcrs))],
        attestation_ca_pems=[attestation.default_ca().pem])


def trust_policy(ca: swtpm.SwtpmCA, pcrs: Pcrs) -> policy_mod.TrustPolicy:
    """The :class:`TrustPolicy` of :func:`policy_document`."""
    return policy_mod.TrustPolicy.from_dict(policy_document(ca, pcrs))


def open_host_tpm(tcti: str, state_dir: str | os.PathLike[str], pcrs: Pcrs,
                  *, lock_timeout: float = LOCK_TIMEOUT, **kwargs: ty.Any
                  ) -> host_mod.HostTpm:
    """A new ``TpmContext`` on ``tcti`` and a ``HostTpm`` on it (its
    ``ctx``) keeping its state in ``state_dir``.

    :param kwargs: further ``HostTpm`` options (``binding_key_lifetime``,
        ...).
    """
    ctx = context.TpmContext(tcti, lock_timeout=lock_timeout)
    return host_mod.HostTpm(ctx, state_dir, pcr_selection=pcrs, **kwargs)


@dataclasses.dataclass
class SimTpm:
    """A simulated host TPM: a running swtpm, and the ``TpmContext`` and
    ``HostTpm`` a host uses on it."""

    swtpm: swtpm.SwtpmHostTpm
    ctx: context.TpmContext
    tpm: host_mod.HostTpm

    @property
    def tcti(self) -> str:
        """The TPM's TCTI string."""
        return self.swtpm.tcti

    @property
    def tpm_state(self) -> str:
        """The HostTpm's state directory; it belongs to the TPM (a host
        process restarted on the same TPM reuses it)."""
        return str(self.tpm.state_dir)

    def extend_pcr(self, index: int, data: bytes) -> None:
        """Extend sha256 PCR ``index`` with ``SHA-256(data)`` through this
        host's context (under its TPM lock), as a changed boot chain or a
        runtime compromise would."""
        with self.ctx.esys() as e:
            swtpm.extend_pcr(e, index, data)

    def stop(self) -> None:
        """Close the context and stop the swtpm (its files are removed)."""
        self.ctx.close()
        self.swtpm.stop()


def attach(sw: swtpm.SwtpmHostTpm, pcrs: Pcrs, *,
           state_dir: str | os.PathLike[str] | None = None,
           lock_timeout: float = LOCK_TIMEOUT, **kwargs: ty.Any) -> SimTpm:
    """A new context and ``HostTpm`` on a running swtpm.

    :param state_dir: the HostTpm's state directory (default: a new one
        inside the swtpm's directory).
    :param kwargs: further ``HostTpm`` options.
    """
    if state_dir is None:
        state_dir = tempfile.mkdtemp(prefix='state-', dir=sw.dir)
    tpm = open_host_tpm(sw.tcti, state_dir, pcrs, lock_timeout=lock_timeout,
                        **kwargs)
    return SimTpm(sw, tpm.ctx, tpm)


class SimCluster:
    """Simulated hosts under one temporary root (see the module text).

    :param ca: the CA issuing the EK certificates of the TPMs this cluster
        starts and trusted by its policy; ``None``: a private CA named
        ``<label>-ca``, created on first use and removed by :meth:`close`.
    :param pcrs: the hosts' PCR selection (``HostTpm`` and policy).
    :param label: prefix of the root's name (``nvm-<label>-``).
    :param clone: default of :meth:`tpm` and :meth:`start`: copy one
        manufactured TPM state (shared EK, fast) instead of manufacturing
        one per host (distinct EKs, about 1 s each).
    :param lock_timeout: TPM lock timeout of the contexts it opens.
    :param policy: the trust policy of the engines and compute hosts, as
        object or document; default: :func:`policy_document` of ``ca``.
    :param base_dir: parent of the root (default: the system's).
    """

    def __init__(self, ca: swtpm.SwtpmCA | None = None, *,
                 pcrs: Pcrs = (0, 7), label: str = 'cluster',
                 clone: bool = False, lock_timeout: float = LOCK_TIMEOUT,
                 policy: policy_mod.TrustPolicy | PolicyDocument | None
                 = None,
                 base_dir: str | os.PathLike[str] | None = None) -> None:
        self.label = label
        self.pcrs = tuple(pcrs)
        self.clone = clone
        self.lock_timeout = lock_timeout
        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f'nvm-{label}-',
                                                  dir=base_dir))
        self._ca = ca
        self._own_ca: swtpm.SwtpmCA | None = None
        self._document: PolicyDocument | None = None
        self._policy: policy_mod.TrustPolicy | None = None
        if isinstance(policy, policy_mod.TrustPolicy):
            self._policy = policy
        elif policy is not None:
            self._document = policy
        self._lock = threading.RLock()
        self._certificates: dict[tuple[str, str], bytes] = {}
        self._tpms: dict[str, SimTpm] = {}
        self._owned: list[SimTpm] = []
        self._contexts: list[context.TpmContext] = []
        self._engines: list[engine_mod.MigrationEngine] = []
        self._servers: list[ty.Any] = []
        self._transports: list[ty.Any] = []

    def __enter__(self) -> 'SimCluster':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- CA, state directories, TPMs ------------------------------------------

    @property
    def ca(self) -> swtpm.SwtpmCA:
        """The CA of the TPMs this cluster starts."""
        with self._lock:
            if self._ca is None:
                self._ca = self._own_ca = swtpm.SwtpmCA(f'{self.label}-ca')
            return self._ca

    def state_dir(self, name: str, *parts: str) -> str:
        """``<root>/<name>[/<parts>...]`` (not created here)."""
        return str(self.root.joinpath(name, *parts))

    def tpm(self, name: str, *, ca: swtpm.SwtpmCA | None = None,
            clone: bool | None = None, **kwargs: ty.Any) -> SimTpm:
        """Host ``name``'s TPM, started on first use.

        :param ca: the CA of its EK certificate (default: :attr:`ca`).
        :param clone: see the class; default: the cluster's.
        :param kwargs: further ``HostTpm`` options.
        :raises ValueError: options given for a host already started.
        """
        with self._lock:
            sim = self._tpms.get(name)
            if sim is not None:
                if ca is not None or clone is not None or kwargs:
                    raise ValueError(f'the TPM of {name} is started already')
                return sim
            sw = swtpm.SwtpmHostTpm(
                ca or self.ca, name,
                clone=self.clone if clone is None else clone,
                base_dir=self.root)
            return self._attach(name, sw, **kwargs)

    def start(self, names: collections.abc.Sequence[str], *,
              ca: swtpm.SwtpmCA | None = None,
              clone: bool | None = None) -> list[SimTpm]:
        """The TPMs of several hosts; those not started yet are
        manufactured two at a time (see :meth:`tpm`)."""
        with self._lock:
            new = [n for n in dict.fromkeys(names) if n not in self._tpms]
            started = swtpm.start_hosts(
                ca or self.ca, new,
                clone=self.clone if clone is None else clone,
                base_dir=self.root)
            try:
                for name, sw in zip(new, started, strict=True):
                    self._attach(name, sw)
            except BaseException:
                for name, sw in zip(new, started, strict=True):
                    if name not in self._tpms:
                        sw.stop()
                raise
            return [self._tpms[n] for n in names]

    def _attach(self, name: str, sw: swtpm.SwtpmHostTpm,
                **kwargs: ty.Any) -> SimTpm:
        try:
            sim = attach(sw, self.pcrs,
                         state_dir=self.state_dir(name, TPM_DIR),
                         lock_timeout=self.lock_timeout, **kwargs)
        except BaseException:
            sw.stop()
            raise
        self._tpms[name] = sim
        self._owned.append(sim)
        return sim

    def add(self, name: str, sim: SimTpm, *, reopen: bool = False
            ) -> SimTpm:
        """Make a TPM started elsewhere (by a longer-lived cluster) host
        ``name`` of this one; its owner stops it.

        :param reopen: give this cluster its own context (with its lock
            timeout and PCR selection) and ``HostTpm`` on the same TPM and
            HostTpm state, instead of sharing ``sim``'s.
        """
        with self._lock:
            if reopen:
                sim = attach(sim.swtpm, self.pcrs, state_dir=sim.tpm_state,
                             lock_timeout=self.lock_timeout)
                self._contexts.append(sim.ctx)
            self._tpms[name] = sim
            return sim

    def extend_pcr(self, name: str, index: int, data: bytes) -> None:
        """Put host ``name`` outside the policy (see
        :meth:`SimTpm.extend_pcr`)."""
        self.tpm(name).extend_pcr(index, data)

    def ak_certificate(self, name: str, host: str | None = None) -> bytes:
        """The DER AK certificate of host ``name``'s TPM, certified by the
        test attestation CA for ``host`` (default: ``name``) after the
        enrollment's credential challenge, which its swtpm answers."""
        host = host or name
        with self._lock:
            key = (name, host)
            if key not in self._certificates:
                sim = self.tpm(name)
                self._certificates[key] = attestation.default_ca().enroll(
                    sim.tpm, host, sim.swtpm.ca.bundle_pem())
            return self._certificates[key]

    def install_ak_certificate(self, name: str,
                               state_path: str | os.PathLike[str],
                               host: str | None = None) -> pathlib.Path:
        """Install host ``name``'s AK certificate (for ``host``, default
        ``name``) where a host configured with ``[vtpm_migration]
        state_path = state_path`` looks for it, as ``enroll --install``
        does."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        from nova_vtpm_migration.compute import layout

        path = pathlib.Path(state_path) / layout.AK_CERTIFICATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(x509.load_der_x509_certificate(
            self.ak_certificate(name, host)).public_bytes(
                serialization.Encoding.PEM))
        return path

    # -- trust policy ---------------------------------------------------------

    def policy_document(self, *, name: str = 'golden') -> PolicyDocument:
        """The trust policy document (the one given, or one admitting
        fresh hosts of :attr:`ca` whose golden set is called ``name``)."""
        if self._document is not None:
            return self._document
        return policy_document(self.ca, self.pcrs, name=name)

    @property
    def policy(self) -> policy_mod.TrustPolicy:
        """The trust policy of the engines and compute hosts."""
        with self._lock:
            if self._policy is None:
                self._policy = policy_mod.TrustPolicy.from_dict(
                    self.policy_document())
            return self._policy

    def write_policy(self, path: str | os.PathLike[str] | None = None, *,
                     name: str = 'golden') -> pathlib.Path:
        """Write :meth:`policy_document` as a policy file (default:
        ``<root>/policy.json``) and return its path."""
        target = pathlib.Path(path or self.root / 'policy.json')
        target.write_text(json.dumps(self.policy_document(name=name)))
        return target

    # -- engines, compute hosts, RPC ------------------------------------------

    def engine(self, name: str, transport: 'transport_mod.Transport', *,
               tpm: ty.Any = None,
               policy: policy_mod.TrustPolicy | None = None,
               state_dir: str | None = None, **kwargs: ty.Any
               ) -> engine_mod.MigrationEngine:
        """Open host ``name``'s protocol engine on ``transport``
        (``MigrationEngine.open``; closed by :meth:`close`).

        :param tpm: the host's TPM object (default: its ``HostTpm``; a
            test may pass a compromised one).
        :param policy: default: :attr:`policy`.
        :param state_dir: journal and key store (default:
            :meth:`state_dir` of ``name``).
        :param kwargs: engine options (``session_lifetime``,
            ``outcome_oracle``, ``ak_certificate`` (default: the host's,
            :meth:`ak_certificate`), ...).
        """
        if 'ak_certificate' not in kwargs:
            kwargs['ak_certificate'] = self.ak_certificate(name)
        eng = engine_mod.MigrationEngine.open(
            name, tpm if tpm is not None else self.tpm(name).tpm,
            policy or self.policy,
            state_dir or self.state_dir(name), transport, **kwargs)
        self._engines.append(eng)
        return eng

    def compute_host(self, conf: ty.Any, name: str, transport: ty.Any = None,
                     *, cls: 'type[compute_host.ComputeHost] | None' = None
                     ) -> 'compute_host.ComputeHost':
        """Host ``name``'s ``ComputeHost`` (``from_parts``): its HostTpm,
        :attr:`policy` and ``<root>/<name>/engine``, as a compute host
        configured with ``state_path = <root>/<name>`` keeps them. Its
        driver owns it (``ComputeHost.stop``).

        :param cls: ``ComputeHost`` or a subclass.
        """
        from nova_vtpm_migration.compute import host as compute_host
        from nova_vtpm_migration.compute import layout
        cls = cls or compute_host.ComputeHost
        return cls.from_parts(conf, name, self.tpm(name).tpm, self.policy,
                              self.state_dir(name, layout.ENGINE_DIR),
                              self.ak_certificate(name), transport)

    def messaging(self, url: str, conf: ty.Any = None) -> ty.Any:
        """An oslo.messaging RPC transport on ``url`` (cleaned up by
        :meth:`close`).

        :param conf: its ``ConfigOpts`` (default: the global ``CONF``,
            where oslo.messaging registers its options).
        """
        from oslo_config import cfg
        import oslo_messaging

        bus = oslo_messaging.get_rpc_transport(
            cfg.CONF if conf is None else conf, url=url)
        self._transports.append(bus)
        return bus

    @staticmethod
    def rpc_peers(bus: ty.Any) -> 'transport_mod.Transport':
        """The protocol transport to peers over the RPC transport
        ``bus``."""
        from nova_vtpm_migration.rpc import rpcapi
        from nova_vtpm_migration.rpc import transport as rpc_transport
        return rpc_transport.RpcTransport(rpcapi.VtpmMigrationAPI(bus))

    def serve(self, name: str, engine: engine_mod.MigrationEngine,
              bus: ty.Any) -> ty.Any:
        """Serve ``engine`` as host ``name`` on ``bus``; :meth:`close`
        stops the server and closes the engine."""
        from nova_vtpm_migration.rpc import server as rpc_server
        srv = rpc_server.start_server(name, engine.handle, bus)
        self._servers.append(srv)
        if engine not in self._engines:
            self._engines.append(engine)
        return srv

    # -- cleanup --------------------------------------------------------------

    def close(self, *, keep_root: bool = False) -> None:
        """Release everything this cluster started: stop its RPC servers,
        close its engines, contexts and messaging transports, stop its
        swtpm processes, remove its CA and (unless ``keep_root``) its
        root. TPMs it was only given (:meth:`add`) keep running."""
        with self._lock:
            servers, self._servers = self._servers, []
            engines, self._engines = self._engines, []
            contexts, self._contexts = self._contexts, []
            transports, self._transports = self._transports, []
            owned, self._owned = self._owned, []
            own_ca, self._own_ca = self._own_ca, None
            self._tpms.clear()
        steps: list[tuple[str, collections.abc.Callable[[], object]]] = []
        for srv in servers:
            steps += [('stop an RPC server', srv.stop),
                      ('wait for an RPC server', srv.wait)]
        steps += [('close an engine', eng.close) for eng in engines]
        steps += [('close a TPM context', ctx.close) for ctx in contexts]
        steps += [('clean up a messaging transport', bus.cleanup)
                  for bus in transports]
        steps += [(f'stop the TPM of {sim.swtpm.name}', sim.stop)
                  for sim in owned]
        if own_ca is not None:
            steps.append(('remove the CA', own_ca.cleanup))
        for what, step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - keep cleaning up
                LOG.exception('Could not %s', what)
        if not keep_root:
            shutil.rmtree(self.root, ignore_errors=True)
