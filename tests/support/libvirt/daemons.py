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

"""One real libvirtd 9.0 per simulated compute host, on one machine.

Each :class:`LibvirtDaemon` runs ``/usr/sbin/libvirtd`` in a private mount
namespace (``unshare --mount --uts --propagation private``) in which its own
directories below a per-run base directory are bind-mounted over
``/etc/libvirt``, ``/run/libvirt``, ``/var/lib/libvirt``,
``/var/cache/libvirt``, ``/var/log/libvirt``, ``/var/log/swtpm`` and
``/var/lib/swtpm-localca``, and over ``/etc/passwd`` and ``/etc/group``
(private copies that have the ``libvirt-qemu`` user libvirt 9.0 resolves
before reading ``qemu.conf``; the machine's files are not changed), and
over ``/etc/hosts`` (the machine's, plus every daemon's name for
loopback). Each daemon also has its own UTS namespace whose host name is
the simulated host's: libvirt sends QEMU's migration stream to the
destination's host name, and with ``migration_tls`` QEMU checks the
destination's certificate against it.
Each daemon has its own ``host_uuid`` (dmidecode gives none here, and
libvirt refuses a migration between two hosts of one UUID) and its own
migration port range; QEMU and swtpm run as root without cgroups,
namespaces or a security driver. Clients connect with :attr:`uri`.

The QEMU capabilities probe (~4 s per QEMU binary) runs once per machine:
the daemons' capability cache is kept below
``~/.cache/nova-vtpm-migration/`` and seeded into every new daemon
(libvirt re-probes when it is stale). libvirt invalidates that cache when
the host's CPUID data differ from the probing daemon's ("host cpuid
changed"), and on this machine they differ between CPU cores: libvirtd is
therefore pinned to one CPU (``taskset``). Its QEMU children are not:
libvirt resets their affinity to every host CPU.

:class:`LibvirtDaemons` is a ``fixtures.Fixture`` (usable from testtools
and pytest) that starts daemons and stops everything they started by PID:
domains are destroyed first, then libvirtd, then any process left in the
daemon's mount namespace (QEMU and swtpm are re-parented to PID 1).
When mount namespaces cannot be created it raises
:class:`LibvirtUnavailable` with the reason; callers turn that into a
skip.
"""

import contextlib
import fcntl
import glob
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import typing as ty
import uuid

import fixtures

from tests.support.libvirt import guest
from tests.support.libvirt import migration_tls
from tests.support.libvirt import statfs_shim

LIBVIRTD = '/usr/sbin/libvirtd'
CAPS_CACHE = os.path.join(guest.CACHE_ROOT, 'libvirt-qemu-capabilities')
#: The host paths each daemon gets its own copy of: name -> mount point.
PRIVATE_DIRS = {
    'etc': '/etc/libvirt',
    'run': '/run/libvirt',
    'lib': '/var/lib/libvirt',
    'cache': '/var/cache/libvirt',
    'log': '/var/log/libvirt',
    'swtpm-log': '/var/log/swtpm',
    'swtpm-localca': '/var/lib/swtpm-localca',
}
QEMU_USER = 'libvirt-qemu'
QEMU_GROUP = 'libvirt-qemu'
#: Migration ports: daemon i of a run gets PORT_BASE + i * PORT_SPAN on.
PORT_BASE = 49200
PORT_SPAN = 32
START_TIMEOUT = 30.0


class LibvirtUnavailable(Exception):
    """Real libvirt daemons cannot run here; the message says why."""


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f'/proc/{pid}/ns/mnt')
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return [a.decode(errors='replace')
                    for a in f.read().split(b'\0') if a]
    except OSError:
        return []


def processes_in_namespace(ns: str) -> list[int]:
    """PIDs of the live processes in mount namespace *ns*.

    Refuses this process's own namespace (that would be every process
    of the machine).
    """
    if ns == _mnt_ns(os.getpid()):
        raise ValueError(f'{ns} is the namespace of this process')
    pids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and int(entry) != os.getpid():
            if _mnt_ns(int(entry)) == ns:
                pids.append(int(entry))
    return pids


def check_prerequisites() -> None:
    """Raise :class:`LibvirtUnavailable` unless daemons can run here."""
    missing = [b for b in (LIBVIRTD, 'unshare', 'taskset', 'hostname',
                           'swtpm', 'gcc', 'qemu-system-x86_64')
               if shutil.which(b) is None]
    if missing:
        raise LibvirtUnavailable(
            f'not installed: {", ".join(missing)} '
            '(tools/ensure-system-packages.sh)')
    try:
        import libvirt  # noqa: F401
    except ImportError as exc:
        raise LibvirtUnavailable(f'libvirt-python: {exc}') from exc
    probe = subprocess.run(
        ['unshare', '--mount', '--uts', '--propagation', 'private', '--',
         'mount', '--bind', '/', '/mnt'],
        capture_output=True, text=True)
    if probe.returncode != 0:
        raise LibvirtUnavailable(
            'cannot create a private mount namespace for libvirtd '
            f'(unshare --mount --uts): {probe.stderr.strip()}')


def unavailable_reason() -> str | None:
    """Why libvirt daemons cannot run here (``None``: they can), from
    :func:`check_prerequisites`."""
    try:
        check_prerequisites()
    except LibvirtUnavailable as exc:
        return str(exc)
    return None


def _passwd_copies(target: str) -> tuple[str, str]:
    """Copies of /etc/passwd and /etc/group that have libvirt's user."""
    with open('/etc/group') as f:
        groups = f.read()
    gids = {line.split(':')[0]: line.split(':')[2]
            for line in groups.splitlines() if line.count(':') >= 3}
    if QEMU_GROUP not in gids:
        gid = next(str(g) for g in range(64055, 65000)
                   if str(g) not in gids.values())
        groups += f'{QEMU_GROUP}:x:{gid}:\n'
        gids[QEMU_GROUP] = gid
    with open('/etc/passwd') as f:
        users = f.read()
    if not any(line.startswith(QEMU_USER + ':')
               for line in users.splitlines()):
        uids = {line.split(':')[2] for line in users.splitlines()
                if line.count(':') >= 3}
        uid = next(str(u) for u in range(64055, 65000)
                   if str(u) not in uids)
        users += (f'{QEMU_USER}:x:{uid}:{gids[QEMU_GROUP]}:Libvirt Qemu:'
                  '/var/lib/libvirt:/usr/sbin/nologin\n')
    paths = (os.path.join(target, 'passwd'), os.path.join(target, 'group'))
    for path, text in zip(paths, (users, groups), strict=True):
        with open(path, 'w') as f:
            f.write(text)
    return paths


class LibvirtDaemon:
    """One libvirtd with private state, for one simulated host.

    :param name: the simulated host's name (its directory's name too).
    :param root: the daemon's own directory.
    :param index: selects the migration port range.
    :param shared_paths: directories the daemon sees as NFS (through the
        statfs shim), e.g. Nova's ``instances_path``.
    :param hosts_file: the daemon's ``/etc/hosts`` (every daemon's name
        resolves to loopback; without it the machine's).
    :param migration_tls: QEMU migrates with the certificates of
        :meth:`tls_dir` (``migrate_tls_x509_cert_dir``) and verifies the
        clients' ones (``migrate_tls_x509_verify``).
    """

    def __init__(self, name: str, root: str, index: int,
                 shared_paths: ty.Sequence[str] = (),
                 hosts_file: str | None = None,
                 migration_tls: bool = False) -> None:
        self.name = name
        self.root = root
        self.index = index
        self.shared_paths = list(shared_paths)
        self.hosts_file = hosts_file
        self.migration_tls = migration_tls
        self.host_uuid = str(uuid.uuid4())
        self.port_min = PORT_BASE + index * PORT_SPAN
        self.port_max = self.port_min + PORT_SPAN - 1
        self.process: subprocess.Popen[bytes] | None = None
        self.namespace: str | None = None
        self._conn: ty.Any = None
        self.startup_seconds: float | None = None

    # -- paths -------------------------------------------------------------

    def path(self, key: str, *more: str) -> str:
        """The host-side path of a private directory (see PRIVATE_DIRS)."""
        return os.path.join(self.root, key, *more)

    @property
    def socket(self) -> str:
        return self.path('run', 'libvirt-sock')

    @property
    def uri(self) -> str:
        return f'qemu+unix:///system?socket={self.socket}'

    @property
    def daemon_log(self) -> str:
        return self.path('log', 'libvirtd.log')

    def tls_dir(self) -> str:
        """The host-side path of the daemon's migration certificates
        (``/etc/libvirt/pki/qemu`` for the daemon)."""
        return self.path('etc', 'pki', 'qemu')

    def swtpm_state_dir(self, domain_uuid: str) -> str:
        """Where libvirt keeps a domain's swtpm state (host-side path)."""
        return self.path('lib', 'swtpm', domain_uuid)

    # -- life cycle ----------------------------------------------------------

    def _write_config(self) -> None:
        for key in PRIVATE_DIRS:
            os.makedirs(self.path(key), exist_ok=True)
        os.makedirs(self.path('log', 'qemu'), exist_ok=True)
        os.makedirs(self.path('swtpm-log', 'libvirt', 'qemu'),
                    exist_ok=True)
        with open(self.path('etc', 'libvirtd.conf'), 'w') as f:
            f.write(f'''unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "{self.host_uuid}"
log_filters = "1:qemu.qemu_migration 1:qemu.qemu_tpm 2:secret"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
''')
        with open(self.path('etc', 'qemu.conf'), 'w') as f:
            f.write(f'''user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
swtpm_user = "root"
swtpm_group = "root"
migration_port_min = {self.port_min}
migration_port_max = {self.port_max}
''')
            if self.migration_tls:
                f.write('migrate_tls_x509_cert_dir = "/etc/libvirt/pki/qemu"\n'
                        'migrate_tls_x509_verify = 1\n')

    def _seed_capabilities(self) -> None:
        target = self.path('cache', 'qemu', 'capabilities')
        os.makedirs(target, exist_ok=True)
        for xml in glob.glob(os.path.join(CAPS_CACHE, '*.xml')):
            shutil.copy2(xml, target)

    def save_capabilities(self) -> None:
        """Keep this daemon's QEMU capabilities for the next daemons."""
        found = glob.glob(self.path('cache', 'qemu', 'capabilities',
                                    '*.xml'))
        if not found:
            return
        os.makedirs(CAPS_CACHE, exist_ok=True)
        with open(os.path.join(CAPS_CACHE, '.lock'), 'w') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for xml in found:
                dest = os.path.join(CAPS_CACHE, os.path.basename(xml))
                tmp = dest + f'.{os.getpid()}.tmp'
                shutil.copy2(xml, tmp)
                os.replace(tmp, dest)

    def start(self) -> None:
        """Start libvirtd and wait until it answers."""
        for mount_point in PRIVATE_DIRS.values():
            os.makedirs(mount_point, exist_ok=True)
        self._write_config()
        self._seed_capabilities()
        passwd, group = _passwd_copies(self.root)
        binds = [(self.path(key), mnt) for key, mnt in PRIVATE_DIRS.items()]
        binds += [(passwd, '/etc/passwd'), (group, '/etc/group')]
        if self.hosts_file is not None:
            binds.append((self.hosts_file, '/etc/hosts'))
        # Its own host name (UTS namespace): libvirt gives it as the
        # destination of QEMU's migration stream, and QEMU checks the
        # destination's TLS certificate against it.
        script = ' && '.join(
            [f'hostname {shlex.quote(self.name)}']
            + [f'mount --bind {shlex.quote(src)} {shlex.quote(dst)}'
               for src, dst in binds])
        env = dict(os.environ)
        if self.shared_paths:
            env['LD_PRELOAD'] = statfs_shim.build()
            env[statfs_shim.ENV_VAR] = ':'.join(self.shared_paths)
        script += (f' && exec {LIBVIRTD} --config /etc/libvirt/libvirtd.conf'
                   f' --pid-file {shlex.quote(self.path("libvirtd.pid"))}')
        stderr = open(self.path('libvirtd.stderr'), 'wb')  # noqa: SIM115
        started = time.monotonic()
        with stderr:
            # LD_PRELOAD also reaches taskset, unshare, sh and mount: only
            # statfs() of the shared paths changes, for them too.
            self.process = subprocess.Popen(
                ['taskset', '-c', str(min(os.sched_getaffinity(0))),
                 'unshare', '--mount', '--uts', '--propagation', 'private',
                 '--', 'sh', '-c', script], env=env, stdin=subprocess.DEVNULL,
                stdout=stderr, stderr=stderr, start_new_session=True)
        self._wait_ready(started)
        self.startup_seconds = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        import libvirt
        assert self.process is not None
        deadline = started + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f'libvirtd {self.name} exited with '
                    f'{self.process.returncode}:\n{self.logs(40)}')
            if os.path.exists(self.socket):
                try:
                    self._conn = libvirt.open(self.uri)
                except libvirt.libvirtError as exc:
                    last = exc
                else:
                    namespace = _mnt_ns(self.process.pid)
                    if namespace == _mnt_ns(os.getpid()):
                        raise RuntimeError(
                            f'libvirtd {self.name} runs in the mount '
                            'namespace of the tests')
                    self.namespace = namespace
                    return
            time.sleep(0.05)
        raise RuntimeError(f'libvirtd {self.name} did not answer within '
                           f'{START_TIMEOUT} s ({last}):\n{self.logs(40)}')

    @property
    def conn(self) -> ty.Any:
        """A libvirt connection to this daemon (opened at start)."""
        if self._conn is None:
            raise RuntimeError(f'libvirtd {self.name} is not running')
        return self._conn

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL libvirtd only, as a crash would: the QEMU and swtpm
        processes it started keep running and its clients lose their
        connections. :meth:`stop` still cleans up what is left."""
        if not self.alive():
            raise RuntimeError(f'libvirtd {self.name} is not running')
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def processes(self) -> dict[int, list[str]]:
        """PID -> command line of every process in the daemon's mount
        namespace (libvirtd, QEMU, swtpm), alive or not."""
        if self.namespace is None:
            return {}
        return {pid: _cmdline(pid)
                for pid in processes_in_namespace(self.namespace)}

    def stop(self) -> None:
        """Destroy the domains, stop libvirtd, kill what it left (by PID)."""
        if self.process is None:
            return
        if self._conn is not None:
            with contextlib.suppress(Exception):
                for dom in self._conn.listAllDomains():
                    with contextlib.suppress(Exception):
                        if dom.isActive():
                            dom.destroy()
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.namespace is not None:
            for _ in range(50):
                left = processes_in_namespace(self.namespace)
                if not left:
                    break
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
        self.process = None

    # -- diagnostics -------------------------------------------------------

    def log_files(self) -> list[str]:
        """Daemon, QEMU, swtpm and console logs of this daemon."""
        files = [self.path('libvirtd.stderr'), self.daemon_log]
        files += sorted(glob.glob(self.path('log', 'qemu', '*.log')))
        files += sorted(glob.glob(self.path('swtpm-log', '**', '*.log'),
                                  recursive=True))
        return [f for f in files if os.path.exists(f)]

    def logs(self, tail: int = 60) -> str:
        """The last *tail* lines of every log file, with headers."""
        parts = []
        for path in self.log_files():
            try:
                with open(path, errors='replace') as f:
                    lines = f.read().splitlines()[-tail:]
            except OSError as exc:
                lines = [f'<{exc}>']
            parts.append(f'==== {self.name}: {path}\n' + '\n'.join(lines))
        return '\n'.join(parts)


class LibvirtDaemons(fixtures.Fixture):
    """Starts named daemons below a unique per-run directory.

    Every daemon has its own host name, and every daemon's name resolves
    to loopback in every daemon's ``/etc/hosts``.

    :param shared_paths: directories every daemon sees as NFS.
    :param migration_tls: QEMU's migration streams between the daemons use
        TLS with certificates of a test CA
        (:class:`~migration_tls.MigrationTlsCA`).
    """

    def __init__(self, shared_paths: ty.Sequence[str] = (),
                 migration_tls: bool = False) -> None:
        super().__init__()
        self.shared_paths = list(shared_paths)
        self.migration_tls = migration_tls

    def _setUp(self) -> None:
        check_prerequisites()
        # Short: libvirt's socket paths must stay below 108 bytes.
        self.base = tempfile.mkdtemp(prefix='nvm-lv-', dir='/tmp')
        self.addCleanup(shutil.rmtree, self.base, True)
        self.daemons: dict[str, LibvirtDaemon] = {}
        self.addCleanup(self.stop_all)
        self.hosts_file = os.path.join(self.base, 'hosts')
        self.tls_ca = (migration_tls.MigrationTlsCA() if self.migration_tls
                       else None)

    def _write_hosts(self, names: ty.Iterable[str]) -> None:
        """The daemons' shared /etc/hosts, rewritten in place (a bind
        mount keeps the file it was made with)."""
        with open('/etc/hosts') as f:
            text = f.read()
        # One line each: libvirt takes the first name of the line as the
        # canonical one (getaddrinfo AI_CANONNAME) and reports it as the
        # host name.
        text += '\n# The libvirt daemons of this test run\n' + ''.join(
            f'127.0.0.1\t{name}\n' for name in names)
        with open(self.hosts_file, 'a+') as f:
            f.seek(0)
            f.truncate()
            f.write(text)

    def add(self, name: str, tls_server_name: str | None = None
            ) -> LibvirtDaemon:
        """Start (and remember) the daemon of host *name*.

        :param tls_server_name: the name its migration server certificate
            is for (default: *name*).
        """
        index = len(self.daemons) + (os.getpid() % 64) * 4
        daemon = LibvirtDaemon(name, os.path.join(self.base, name),
                               index % 256, self.shared_paths,
                               hosts_file=self.hosts_file,
                               migration_tls=self.tls_ca is not None)
        self._write_hosts([*self.daemons, name])
        if self.tls_ca is not None:
            self.tls_ca.write_host_files(daemon.tls_dir(), name,
                                         tls_server_name)
        self.daemons[name] = daemon
        daemon.start()
        return daemon

    def __getitem__(self, name: str) -> LibvirtDaemon:
        return self.daemons[name]

    def uri_template(self) -> str:
        """A ``%s`` template of the daemons' URIs (Nova's
        ``live_migration_uri``)."""
        return ('qemu+unix:///system?socket='
                + os.path.join(self.base, '%s', 'run', 'libvirt-sock'))

    def stop_all(self) -> None:
        first = True
        for daemon in self.daemons.values():
            if first and daemon.alive():
                daemon.save_capabilities()
                first = False
            daemon.stop()

    def logs(self, tail: int = 60) -> str:
        """Every daemon's logs (for a failure report)."""
        return '\n'.join(d.logs(tail) for d in self.daemons.values())
