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

"""swtpm processes standing in for hosts' hardware TPMs.

:class:`SwtpmCA` is a private ``swtpm_localca`` certificate authority in a
temporary directory (a root CA and an intermediate that signs EK
certificates). :class:`SwtpmHostTpm` is one ``swtpm socket --tpm2`` process
on free 127.0.0.1 ports whose state was manufactured by ``swtpm_setup`` with
EK and platform certificates from such a CA. Nothing is written outside the
temporary directories, and every process is killed and every directory
removed on :meth:`SwtpmHostTpm.stop` / :meth:`SwtpmCA.cleanup`, also when
start-up fails half-way.

This module is for tests, the demo, the benchmark and the data plane; the
product code never imports it.
"""

import atexit
import collections.abc
import concurrent.futures
import ctypes
import datetime
import hashlib
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
import typing as ty
import weakref

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

SWTPM = 'swtpm'
SWTPM_SETUP = 'swtpm_setup'
SWTPM_LOCALCA = '/usr/bin/swtpm_localca'

#: swtpm control channel command ``CMD_INIT`` (re-initialise the TPM).
_CMD_INIT = 2

_PORT_LOCK = threading.Lock()
_PORTS_HANDED_OUT: set[int] = set()
_PR_SET_PDEATHSIG = 1

#: Hosts whose process is running; killed at interpreter exit at the latest.
_LIVE: 'weakref.WeakSet[SwtpmHostTpm]' = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for host in list(_LIVE):
        host.stop()


try:
    _PRCTL: ty.Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when the (main) thread that started
    it dies, so a killed test runner leaves no swtpm behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class SimulationError(RuntimeError):
    """An swtpm simulation process could not be set up or started."""


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """Return a port ``P`` such that ``P`` and ``P + 1`` are free now.

    swtpm's TCP TCTI needs the control channel on the next port. Ports
    handed out earlier by this process are never returned twice.
    """
    with _PORT_LOCK:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(('127.0.0.1', 0))
                port = int(s.getsockname()[1])
            if port >= 65535 or {port, port + 1} & _PORTS_HANDED_OUT:
                continue
            if _port_is_free(port) and _port_is_free(port + 1):
                _PORTS_HANDED_OUT.update((port, port + 1))
                return port
    raise SimulationError('no free pair of TCP ports found')


def _run(argv: list[str], log_path: pathlib.Path) -> None:
    with open(log_path, 'ab') as log:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv, stdout=log, stderr=subprocess.STDOUT, check=False,
            timeout=120)
    if proc.returncode != 0:
        tail = log_path.read_text(errors='replace')[-2000:]
        raise SimulationError(
            f'{argv[0]} failed with exit code {proc.returncode}: {tail}')


class SwtpmCA:
    """A private ``swtpm_localca`` CA in its own temporary directory.

    The root CA (``swtpm-localca-rootca``) and the intermediate
    (``swtpm-localca``) are created by ``swtpm_localca`` the first time a TPM
    state is manufactured with this CA. Two instances share subject names
    but not keys, so a second instance is a convincing untrusted CA.

    :param name: a label used in directory names and logs.
    :param base_dir: parent of the temporary directory (default: system
        temp directory).
    """

    def __init__(self, name: str = 'ca',
                 base_dir: str | os.PathLike[str] | None = None) -> None:
        self.name = name
        self.dir = pathlib.Path(tempfile.mkdtemp(
            prefix=f'nvm-{name}-', dir=base_dir))
        self._lock = threading.Lock()
        self._template: pathlib.Path | None = None
        ca = self.dir
        (ca / 'swtpm_setup.conf').write_text(
            f'create_certs_tool = {SWTPM_LOCALCA}\n'
            f'create_certs_tool_config = {ca}/swtpm-localca.conf\n'
            f'create_certs_tool_options = {ca}/swtpm-localca.options\n'
            'active_pcr_banks = sha256\n')
        (ca / 'swtpm-localca.conf').write_text(
            f'statedir = {ca}\n'
            f'signingkey = {ca}/signkey.pem\n'
            f'issuercert = {ca}/issuercert.pem\n'
            f'certserial = {ca}/certserial\n')
        (ca / 'swtpm-localca.options').write_text(
            '--platform-manufacturer nova-vtpm-migration\n'
            '--platform-version 1.0\n'
            f'--platform-model {name}\n')

    @property
    def setup_config(self) -> pathlib.Path:
        """Path of the private ``swtpm_setup.conf``."""
        return self.dir / 'swtpm_setup.conf'

    def provision(self, state_dir: str | os.PathLike[str]) -> None:
        """Manufacture a fresh TPM 2.0 state (new EK) in ``state_dir``.

        Runs ``swtpm_setup --tpm2 --create-ek-cert --create-platform-cert
        --lock-nvram`` with this CA (about 1 s). The EKs are persisted at
        0x81010001 (RSA-2048) and 0x81010016 (ECC P-384); their certificates
        are in NV at 0x01C00002 and 0x01C00016.

        :param state_dir: directory to create or fill.
        """
        state = pathlib.Path(state_dir)
        state.mkdir(parents=True, exist_ok=True)
        _run([SWTPM_SETUP, '--tpm2', '--tpmstate', str(state),
              '--create-ek-cert', '--create-platform-cert', '--lock-nvram',
              '--config', str(self.setup_config)],
             self.dir / 'swtpm_setup.log')

    def clone_state(self, state_dir: str | os.PathLike[str]) -> None:
        """Copy a state manufactured once by this CA into ``state_dir``.

        Much faster than :meth:`provision`, but every clone has the *same*
        EK (and EK certificate): use it only where host identity does not
        matter.

        :param state_dir: directory to create; must not exist or be empty.
        """
        with self._lock:
            if self._template is None:
                template = self.dir / 'template-state'
                self.provision(template)
                self._template = template
        shutil.copytree(self._template, state_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns('.lock'))

    def _ensure_created(self) -> None:
        if not (self.dir / 'issuercert.pem').exists():
            self.clone_state(self.dir / 'bootstrap-state')

    @property
    def root_pem(self) -> bytes:
        """PEM of the self-signed root CA certificate."""
        self._ensure_created()
        return (self.dir / 'swtpm-localca-rootca-cert.pem').read_bytes()

    @property
    def intermediate_pem(self) -> bytes:
        """PEM of the intermediate CA that signs EK certificates."""
        self._ensure_created()
        return (self.dir / 'issuercert.pem').read_bytes()

    def bundle_pem(self) -> list[str]:
        """The CA bundle (root and intermediate) as a list of PEM strings."""
        return [self.root_pem.decode(), self.intermediate_pem.decode()]

    def crl_pem(self, revoked: collections.abc.Sequence[bytes],
                when: datetime.datetime | None = None) -> str:
        """A CRL of the intermediate (the EK issuer) revoking the DER
        certificates *revoked* at *when* (default: a minute ago)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives import serialization

        self._ensure_created()
        issuer = x509.load_pem_x509_certificate(self.intermediate_pem)
        key = serialization.load_pem_private_key(
            (self.dir / 'signkey.pem').read_bytes(), None)
        now = datetime.datetime.now(datetime.UTC)
        when = when or now - datetime.timedelta(minutes=1)
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(issuer.subject).last_update(now)
                   .next_update(now + datetime.timedelta(days=1)))
        for der in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(x509.load_der_x509_certificate(der)
                               .serial_number)
                .revocation_date(when).build())
        crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        return crl.public_bytes(serialization.Encoding.PEM).decode()

    def cleanup(self) -> None:
        """Remove the CA directory (keys included)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> 'SwtpmCA':
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class SwtpmHostTpm:
    """One ``swtpm socket --tpm2`` process standing in for a host TPM.

    The process listens on 127.0.0.1 (server port ``P``, control ``P+1``)
    and is started with ``--flags not-need-init,startup-clear``, so it is
    usable at once through :attr:`tcti`.

    :param ca: CA whose certificates the EK gets.
    :param name: label used in directory names.
    :param clone: copy a state manufactured once by ``ca`` (fast, but the
        EK is shared with other clones) instead of manufacturing a new one.
    :param start: start the process right away.
    :param base_dir: parent of the host's temporary directory.
    """

    def __init__(self, ca: SwtpmCA, name: str = 'host', *,
                 clone: bool = False, start: bool = True,
                 base_dir: str | os.PathLike[str] | None = None) -> None:
        self.ca = ca
        self.name = name
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f'nvm-{name}-',
                                                 dir=base_dir))
        self.state_dir = self.dir / 'tpmstate'
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            if clone:
                ca.clone_state(self.state_dir)
            else:
                ca.provision(self.state_dir)
            if start:
                self.start()
        except BaseException:
            self.stop()
            raise

    @property
    def tcti(self) -> str:
        """The tpm2-tss TCTI string of this TPM."""
        return f'swtpm:host=127.0.0.1,port={self.port}'

    @property
    def running(self) -> bool:
        """Whether the swtpm process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) the swtpm process on fresh free ports."""
        if self.running:
            return
        last = ''
        for attempt in range(5):
            # A restart keeps its ports (and so its TCTI) when
            # they are still free.
            if not (attempt == 0 and self.port and _port_is_free(self.port)
                    and _port_is_free(self.port + 1)):
                self.port = free_port_pair()
            log_path = self.dir / 'swtpm.log'
            argv = [SWTPM, 'socket', '--tpm2',
                    '--tpmstate', f'dir={self.state_dir}',
                    '--server', f'type=tcp,port={self.port},'
                                'bindaddr=127.0.0.1',
                    '--ctrl', f'type=tcp,port={self.port + 1},'
                              'bindaddr=127.0.0.1',
                    '--flags', 'not-need-init,startup-clear',
                    '--log', f'file={log_path},level=1']
            # PR_SET_PDEATHSIG fires when the *thread* that
            # forked exits, so it is only used from the main thread.
            main = threading.current_thread() is threading.main_thread()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent if main else None)
            _LIVE.add(self)
            if self._wait_ready():
                LOG.debug('swtpm %s listening on %s', self.name, self.tcti)
                return
            last = (log_path.read_text(errors='replace')[-1000:]
                    if log_path.exists() else '')
            self._kill()
        raise SimulationError(f'swtpm {self.name} did not start: {last}')

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(
                        ('127.0.0.1', self.port + 1), timeout=1):
                    return True
            except OSError:
                time.sleep(0.01)
        return False

    def _kill(self) -> None:
        _LIVE.discard(self)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        else:
            proc.wait()

    def stop_process(self) -> None:
        """Stop the swtpm process but keep its state (see :meth:`start`)."""
        self._kill()

    def stop(self) -> None:
        """Kill the swtpm process and remove its directory."""
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def power_cycle(self, orderly: bool = True) -> None:
        """Simulate a host reboot: [Shutdown(CLEAR),] TPM_Init, Startup.

        The TPM's reset counter goes up by one and the PCRs are reset.

        :param orderly: shut the TPM down first, as an OS does on a clean
            reboot; otherwise the TPM clock is reported not "safe".
        """
        import tpm2_pytss
        from tpm2_pytss import constants
        if orderly:
            with tpm2_pytss.ESAPI(self.tcti) as e:
                e.shutdown(constants.TPM2_SU.CLEAR)
        with socket.create_connection(('127.0.0.1', self.port + 1),
                                      timeout=5) as s:
            s.sendall(struct.pack('>II', _CMD_INIT, 0))
            result = s.recv(4)
        if len(result) != 4 or struct.unpack('>I', result)[0] != 0:
            raise SimulationError(f'CMD_INIT failed: {result!r}')
        with tpm2_pytss.ESAPI(self.tcti) as e:
            e.startup(constants.TPM2_SU.CLEAR)

    def extend_pcr(self, index: int, data: bytes) -> None:
        """Extend sha256 PCR ``index`` with ``SHA-256(data)``.

        Tests and the demo use this to put a host "outside policy". The
        caller must not hold a TPM connection to this swtpm at the time.
        """
        import tpm2_pytss
        with tpm2_pytss.ESAPI(self.tcti) as e:
            extend_pcr(e, index, data)

    def __enter__(self) -> 'SwtpmHostTpm':
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f'<SwtpmHostTpm {self.name} {self.tcti}>'


def extend_pcr(esys: ty.Any, index: int, data: bytes) -> None:
    """Extend sha256 PCR ``index`` with ``SHA-256(data)`` through
    ``esys`` (an ``ESAPI`` or a ``TpmContext.esys()`` proxy)."""
    from tpm2_pytss import constants
    from tpm2_pytss import types as tt
    values = tt.TPML_DIGEST_VALUES([tt.TPMT_HA(
        hashAlg=constants.TPM2_ALG.SHA256,
        digest=tt.TPMU_HA(sha256=hashlib.sha256(data).digest()))])
    esys.pcr_extend(getattr(constants.ESYS_TR, f'PCR{index}'), values)


def make_hosts(ca: SwtpmCA, count: int, *, distinct: bool = True,
               prefix: str = 'host') -> list[SwtpmHostTpm]:
    """Start ``count`` swtpm hosts named ``<prefix>0``, ... (see
    :func:`start_hosts`).

    :param distinct: give every host its own EK (about 1 s each); when
        false, hosts are clones of one manufactured state.
    """
    return start_hosts(ca, [f'{prefix}{i}' for i in range(count)],
                       clone=not distinct)


def start_hosts(ca: SwtpmCA, names: collections.abc.Sequence[str], *,
                clone: bool = False,
                base_dir: str | os.PathLike[str] | None = None
                ) -> list[SwtpmHostTpm]:
    """Start one swtpm host per name, two manufactured at a time.

    :param ca: the CA issuing their EK certificates.
    :param names: the hosts' names (labels of their directories).
    :param clone: copy one manufactured state (shared EK) instead of
        manufacturing one per host (about 1 s each).
    :param base_dir: parent of the hosts' temporary directories.
    :returns: the running hosts, in the order of ``names``; on failure
        every started host is stopped.
    """
    hosts: list[SwtpmHostTpm] = []

    def _one(name: str) -> SwtpmHostTpm:
        return SwtpmHostTpm(ca, name, clone=clone, start=False,
                            base_dir=base_dir)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_one, name) for name in names]
        errors: list[BaseException] = []
        for fut in futures:
            try:
                hosts.append(fut.result())
            except BaseException as exc:  # noqa: B036 - re-raised below
                errors.append(exc)
    try:
        if errors:
            raise errors[0]
        for host in hosts:
            host.start()
    except BaseException:
        for host in hosts:
            host.stop()
        raise
    return hosts


class HostGroup:
    """Context manager owning several hosts (stops them all on exit)."""

    def __init__(self, hosts: list[SwtpmHostTpm]) -> None:
        self.hosts = hosts

    def __enter__(self) -> list[SwtpmHostTpm]:
        return self.hosts

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        for host in self.hosts:
            host.stop()
