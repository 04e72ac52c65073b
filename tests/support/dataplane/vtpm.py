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


"""One vTPM: an ``swtpm socket --tpm2`` process on a state directory.

The same secret is both the state-file key (``--key``) and the migration
key (``--migration-key``), as libvirt does with a Nova instance's vTPM
secret: the state files at rest and the state blobs QEMU carries in its
migration stream are AES-256-CBC encrypted with HMAC (encrypt-then-MAC).
A destination that lacks the secret cannot load the blobs
(``CMD_SET_STATEBLOB`` fails), which is what makes the secret the thing
the protocol has to deliver.

Both keys reach swtpm through an anonymous pipe (``fd=N,format=binary``);
the secret is never written to a file, an environment variable or the
command line.

Two modes, verified with swtpm 0.7.1 and QEMU 7.2 on this machine:

``for QEMU`` (default)
    ``--ctrl type=unixio,path=<dir>/ctrl.sock`` only. QEMU connects to the
    control socket, passes the data channel with ``CMD_SET_DATAFD`` and
    sends ``CMD_INIT`` itself. No ``--flags startup-*`` may be given: QEMU's
    ``CMD_INIT`` then fails with 0x9. swtpm exits when QEMU quits
    (``CMD_SHUTDOWN``); 0.7.1 does not save the volatile state then (the
    auto-shutdown arrived in 0.8), so only what the TPM saved itself
    (permanent state, orderly ``TPM2_Shutdown(STATE)`` data) survives.

``standalone``
    Also ``--server type=unixio,path=<dir>/tpm.sock`` with the control
    socket at ``<dir>/tpm.sock.ctrl`` and ``--flags not-need-init`` (plus
    ``startup-clear`` for a fresh TPM), so tpm2-pytss connects with the
    TCTI ``swtpm:path=<dir>/tpm.sock``. Used for provisioning before the
    guest starts and for reading the vTPM back after the guest stopped.

swtpm locks ``<dir>/.lock``: only one process may use a state directory.
"""

import os
import secrets
import shutil
import subprocess

from oslo_log import log as logging

from tests.support.dataplane import errors
from tests.support.dataplane import process
from tests.support.dataplane import swtpm_ctrl

LOG = logging.getLogger(__name__)

SWTPM = 'swtpm'
KEY_SIZES = (16, 32)


class VtpmKey:
    """A vTPM secret (AES key) held in a wipeable buffer.

    The value is never shown by ``repr``/``str``. Python cannot guarantee
    that no copy of the bytes exists elsewhere in memory; :meth:`wipe`
    clears the buffer this object owns.

    :param value: 16 or 32 key bytes.
    :raises InvalidVtpmKey: wrong size.
    """

    def __init__(self, value: bytes | bytearray) -> None:
        if len(value) not in KEY_SIZES:
            raise errors.InvalidVtpmKey(size=len(value))
        self._value = bytearray(value)

    @classmethod
    def generate(cls, size: int = 32) -> 'VtpmKey':
        """Return a fresh random key.

        :param size: 16 or 32 bytes.
        """
        return cls(secrets.token_bytes(size))

    def copy(self) -> 'VtpmKey':
        """Return an independent copy (wiping one leaves the other).

        :raises DataplaneError: the key was wiped.
        """
        if self.wiped:
            raise errors.DataplaneError(reason='vTPM key was destroyed')
        return VtpmKey(self._value)

    @property
    def mode(self) -> str:
        """swtpm's cipher mode name for this key size."""
        return 'aes-256-cbc' if len(self._value) == 32 else 'aes-cbc'

    @property
    def wiped(self) -> bool:
        """Whether :meth:`wipe` was called."""
        return not self._value

    def wipe(self) -> None:
        """Overwrite and drop the key bytes."""
        for i in range(len(self._value)):
            self._value[i] = 0
        self._value = bytearray()

    def open_fd(self) -> int:
        """Return the read end of a pipe holding the key.

        The write end is closed, so the reader sees exactly the key
        followed by EOF. The caller must close the returned descriptor.

        :raises DataplaneError: the key was wiped.
        """
        if self.wiped:
            raise errors.DataplaneError(reason='vTPM key was destroyed')
        r, w = os.pipe()
        try:
            # 32 bytes always fit the pipe buffer, so this
            # cannot block before the reader exists.
            os.write(w, bytes(self._value))
        finally:
            os.close(w)
        return r

    def same_as(self, other: 'VtpmKey') -> bool:
        """Constant-time equality of two keys.

        :param other: the other key.
        """
        return secrets.compare_digest(bytes(self._value),
                                      bytes(other._value))

    def __repr__(self) -> str:
        wiped = ' (wiped)' if self.wiped else ''
        return f'<VtpmKey {len(self._value) * 8} bits{wiped}>'

    __str__ = __repr__


class VtpmProcess:
    """An swtpm process for one instance.

    :param state_dir: the instance's vTPM state directory (created).
    :param key: the instance's vTPM secret.
    :param standalone: add a server socket for tpm2-pytss and let swtpm
        run without ``CMD_INIT``; otherwise wait for QEMU.
    :param startup_clear: standalone only: swtpm sends
        ``TPM2_Startup(CLEAR)`` itself (for a fresh TPM; leave it off to
        resume an orderly saved state with ``TPM2_Startup(STATE)``).
    :param log_level: swtpm log level (its log is in the state dir).
    :param name: label used in logs and errors.
    """

    def __init__(self, state_dir: str, key: VtpmKey, *,
                 standalone: bool = False, startup_clear: bool = False,
                 log_level: int = 1, name: str = 'vtpm') -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.key = key
        self.standalone = standalone
        self.startup_clear = startup_clear
        self.log_level = log_level
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        if standalone:
            self.server_path: str | None = os.path.join(self.state_dir,
                                                        'tpm.sock')
            self.ctrl_path = self.server_path + '.ctrl'
        else:
            self.server_path = None
            self.ctrl_path = os.path.join(self.state_dir, 'ctrl.sock')
        self.pid_path = os.path.join(self.state_dir, 'swtpm.pid')
        self.log_path = os.path.join(self.state_dir, 'swtpm.log')
        for path in (self.ctrl_path, self.server_path):
            if path:
                process.check_socket_path(path)

    @property
    def tcti(self) -> str:
        """The tpm2-tss TCTI configuration (standalone mode only)."""
        if self.server_path is None:
            raise errors.DataplaneError(
                reason=f'{self.name} is driven by QEMU and has no TPM '
                       'server socket')
        return f'swtpm:path={self.server_path}'

    @property
    def pid(self) -> int | None:
        """The process id while started."""
        return self.proc.pid if self.proc is not None else None

    def argv(self, key_fd: int, migration_key_fd: int) -> list[str]:
        """The swtpm command line (carries fd numbers, never keys).

        :param key_fd: descriptor to read the state-file key from.
        :param migration_key_fd: descriptor to read the migration key from.
        """
        mode = self.key.mode
        args = [SWTPM, 'socket', '--tpm2',
                '--tpmstate', f'dir={self.state_dir}',
                '--ctrl', f'type=unixio,path={self.ctrl_path}',
                '--key', f'fd={key_fd},format=binary,mode={mode}',
                '--migration-key',
                f'fd={migration_key_fd},format=binary,mode={mode}',
                '--pid', f'file={self.pid_path}',
                '--log', f'file={self.log_path},level={self.log_level}']
        if self.server_path is not None:
            args += ['--server', f'type=unixio,path={self.server_path}',
                     '--flags', 'not-need-init' + (
                         ',startup-clear' if self.startup_clear else '')]
        return args

    def start(self, timeout: float = 10.0) -> None:
        """Start swtpm and wait until its sockets accept connections.

        :param timeout: seconds.
        :raises ProcessStartError: swtpm exited (e.g. wrong state key,
            state directory locked by another swtpm).
        :raises ProcessTimeout: it did not come up in time.
        """
        if self.proc is not None and self.proc.poll() is None:
            raise errors.DataplaneError(reason=f'{self.name} already running')
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        for path in (self.ctrl_path, self.server_path, self.pid_path):
            if path and os.path.lexists(path):
                os.unlink(path)
        key_fd = self.key.open_fd()
        try:
            mig_fd = self.key.open_fd()
        except Exception:
            os.close(key_fd)
            raise
        try:
            self.proc = process.spawn(self.argv(key_fd, mig_fd),
                                      self.log_path,
                                      pass_fds=(key_fd, mig_fd))
        finally:
            os.close(key_fd)
            os.close(mig_fd)
        sockets = [p for p in (self.ctrl_path, self.server_path) if p]
        try:
            process.wait_for(
                lambda: all(os.path.exists(p) for p in sockets)
                and os.path.exists(self.pid_path),
                what=f'swtpm {self.name}', action='listen',
                timeout=timeout, proc=self.proc, log_path=self.log_path)
        except errors.DataplaneError:
            self.kill()
            raise
        LOG.debug('swtpm %s started (pid %d)', self.name, self.proc.pid)

    def is_running(self) -> bool:
        """Whether the swtpm process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def config_flags(self) -> int:
        """``CMD_GET_CONFIG`` flags (standalone mode only, see module doc).
        """
        return swtpm_ctrl.get_config_flags(self.ctrl_path)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop swtpm cleanly; the state directory stays.

        A standalone vTPM gets ``CMD_SHUTDOWN``; one driven by QEMU is
        normally gone once QEMU quit, else it gets SIGTERM.

        :param timeout: seconds before SIGKILL.
        """
        if self.proc is None:
            return
        if self.proc.poll() is None and self.standalone:
            try:
                swtpm_ctrl.shutdown(self.ctrl_path)
            except errors.SwtpmCtrlError as e:
                LOG.warning('Clean shutdown of swtpm %s failed: %s',
                            self.name, e)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        rc = process.terminate(self.proc, timeout)
        LOG.debug('swtpm %s stopped (status %s)', self.name, rc)

    def wait_exit(self, timeout: float = 10.0) -> int | None:
        """Wait for swtpm to exit by itself (e.g. after QEMU quit).

        :param timeout: seconds.
        :returns: the exit status, ``None`` if still running.
        """
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL swtpm (unclean); the state directory stays."""
        if self.proc is not None:
            process.kill_group(self.proc)

    def destroy(self, wipe_key: bool = True) -> None:
        """Kill swtpm, remove the state directory and wipe the key.

        This is the "vTPM state destroyed" step of a committed migration
        (on the source) or of an aborted one (on the destination).

        :param wipe_key: also wipe :attr:`key` (shared objects: pass
            ``False`` if the caller still needs the key elsewhere).
        """
        self.kill()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if wipe_key:
            self.key.wipe()

    def state_files(self) -> list[str]:
        """Names of the TPM state files present (``tpm2-00.*``)."""
        try:
            return sorted(f for f in os.listdir(self.state_dir)
                          if f.startswith('tpm2-'))
        except FileNotFoundError:
            return []


def cmdline_of(pid: int) -> list[str] | None:
    """Return the argv of a live process, ``None`` if it is gone.

    :param pid: the process id.
    """
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode('utf-8', 'replace') for a in raw.split(b'\0') if a]
