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


"""One QEMU guest with a vTPM, controlled through QMP.

The guest is ``qemu-system-x86_64 -accel tcg -M q35 -m 128 -nographic
-nodefaults`` with ``-chardev socket,path=<vtpm ctrl socket> -tpmdev
emulator -device tpm-tis`` and a QMP socket. TCG is used so it runs on every
machine (``-accel kvm -cpu host`` crashed here with ``failed to set MSR
0x10a``). A destination guest starts with ``-incoming defer`` and listens
with ``migrate-incoming tcp:127.0.0.1:0``: QEMU picks a free port and
reports it in ``query-migrate``, so there is no port race.

QEMU carries the vTPM state inside its migration stream: the ``tpm-emulator``
VMState's ``pre_save`` (source, VM stopped) fetches the permanent, volatile
and savestate blobs from swtpm (encrypted with the migration key), the
destination's ``post_load`` stops its swtpm, sets the blobs and resumes it.
A destination swtpm with another migration key refuses the blobs, the
destination fails to load and the migration fails.

Firmware: the default SeaBIOS initialises the TPM (``TPM2_Startup(CLEAR)``,
PCR 0-7 measurements). ``FIRMWARE_NO_TPM`` (QEMU's qboot) boots without
touching the TPM, so a vTPM state provisioned and saved orderly before the
guest starts is exactly what travels, PCRs included; see
:mod:`.provision`.
"""

import dataclasses
import os
import subprocess
import time
import typing as ty

from oslo_log import log as logging

from tests.support.dataplane import errors
from tests.support.dataplane import process
from tests.support.dataplane import qmp

LOG = logging.getLogger(__name__)

QEMU = 'qemu-system-x86_64'
#: QEMU's minimal firmware; it never sends a TPM command.
FIRMWARE_NO_TPM = '/usr/share/qemu/qboot.rom'

MIGRATION_DONE = ('completed', 'failed', 'cancelled')


@dataclasses.dataclass(frozen=True)
class MigrationStats:
    """What the source QEMU reported for one migration.

    :ivar status: final ``query-migrate`` status.
    :ivar total_time_ms: QEMU's ``total-time``.
    :ivar downtime_ms: QEMU's ``downtime`` (guest stopped on both sides).
    :ivar setup_time_ms: QEMU's ``setup-time``.
    :ivar transferred_bytes: RAM bytes transferred.
    :ivar error: QEMU's ``error-desc`` when failed.
    :ivar wall_time_ms: wall time of :meth:`Guest.migrate` as seen here.
    """

    status: str
    total_time_ms: int | None
    downtime_ms: int | None
    setup_time_ms: int | None
    transferred_bytes: int | None
    error: str | None
    wall_time_ms: float


class Guest:
    """A QEMU process for one instance on one host.

    :param name: label (instance id) used in logs and errors.
    :param run_dir: directory for the QMP socket and QEMU's log.
    :param vtpm_ctrl_path: the control socket of a vTPM started for QEMU.
    :param incoming: start as a migration destination.
    :param firmware: ``-bios`` image; ``None`` for QEMU's default SeaBIOS.
    :param memory_mb: guest RAM.
    :param tpm_device: ``tpm-tis`` or ``tpm-crb``.
    """

    def __init__(self, name: str, run_dir: str, vtpm_ctrl_path: str, *,
                 incoming: bool = False, firmware: str | None = None,
                 memory_mb: int = 128, tpm_device: str = 'tpm-tis') -> None:
        self.name = name
        self.run_dir = os.path.abspath(run_dir)
        self.vtpm_ctrl_path = vtpm_ctrl_path
        self.incoming = incoming
        self.firmware = firmware
        self.memory_mb = memory_mb
        self.tpm_device = tpm_device
        self.qmp_path = os.path.join(self.run_dir, 'qmp.sock')
        self.log_path = os.path.join(self.run_dir, 'qemu.log')
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: qmp.QmpClient | None = None
        process.check_socket_path(self.qmp_path)

    @property
    def pid(self) -> int | None:
        """The QEMU process id while started."""
        return self.proc.pid if self.proc is not None else None

    def argv(self) -> list[str]:
        """The QEMU command line."""
        args = [QEMU, '-name', f'guest={self.name}',
                '-accel', 'tcg', '-M', 'q35', '-m', str(self.memory_mb),
                '-nographic', '-nodefaults',
                '-chardev', f'socket,id=chrtpm,path={self.vtpm_ctrl_path}',
                '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm',
                '-device', f'{self.tpm_device},tpmdev=tpm0',
                '-qmp', f'unix:{self.qmp_path},server=on,wait=off']
        if self.firmware:
            args += ['-bios', self.firmware]
        if self.incoming:
            args += ['-incoming', 'defer']
        return args

    def start(self, timeout: float = 20.0) -> None:
        """Start QEMU and open its QMP session.

        :param timeout: seconds.
        :raises ProcessStartError: QEMU exited (e.g. vTPM not reachable).
        :raises ProcessTimeout: no QMP socket in time.
        """
        if self.firmware and not os.path.exists(self.firmware):
            raise errors.ProcessStartError(
                what=f'QEMU {self.name}',
                reason=f'firmware {self.firmware} not found (Debian '
                       'package qemu-system-data)')
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        if os.path.lexists(self.qmp_path):
            os.unlink(self.qmp_path)
        self.proc = process.spawn(self.argv(), self.log_path)
        try:
            process.wait_for(lambda: os.path.exists(self.qmp_path),
                             what=f'QEMU {self.name}', action='start',
                             timeout=timeout, proc=self.proc,
                             log_path=self.log_path)
            self.qmp = qmp.QmpClient(self.qmp_path, timeout=timeout)
            self.qmp.connect()
        except Exception:
            self.kill()
            raise
        LOG.debug('QEMU %s started (pid %d)', self.name, self.proc.pid)

    def _qmp(self) -> qmp.QmpClient:
        if self.qmp is None or not self.qmp.connected:
            raise errors.QmpConnectionError(path=self.qmp_path,
                                            reason='not connected')
        return self.qmp

    def execute(self, command: str, arguments: dict[str, ty.Any] | None
                = None, timeout: float | None = None) -> ty.Any:
        """Run a QMP command (see :meth:`.qmp.QmpClient.execute`)."""
        return self._qmp().execute(command, arguments, timeout)

    def is_alive(self) -> bool:
        """Whether the QEMU process exists."""
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> str:
        """``query-status`` state (``running``, ``inmigrate``,
        ``postmigrate``, ``paused``...), or ``dead``."""
        if not self.is_alive():
            return 'dead'
        try:
            return str(self.execute('query-status')['status'])
        except errors.QmpConnectionError:
            return 'dead'

    def is_running(self) -> bool:
        """Whether the guest's CPUs run (``query-status`` ``running``)."""
        return self.status() == 'running'

    def listen(self, host: str = '127.0.0.1',
               timeout: float = 10.0) -> str:
        """Destination: listen for the migration stream.

        :param host: address to bind.
        :param timeout: seconds to wait for the listener.
        :returns: the URI to give the source's :meth:`migrate`.
        """
        if not self.incoming:
            raise errors.DataplaneError(
                reason=f'guest {self.name} was not started as a migration '
                       'destination')
        self.execute('migrate-incoming', {'uri': f'tcp:{host}:0'})
        deadline = time.monotonic() + timeout
        while True:
            info = self.execute('query-migrate')
            for addr in info.get('socket-address', []):
                if addr.get('type') == 'inet' and addr.get('port'):
                    return 'tcp:{}:{}'.format(addr['host'], addr['port'])
            if time.monotonic() >= deadline:
                raise errors.ProcessTimeout(
                    what=f'QEMU {self.name}', action='listen',
                    timeout=timeout)
            time.sleep(0.01)

    def set_max_bandwidth(self, bytes_per_second: int) -> int:
        """Limit the migration bandwidth (to make a migration last).

        :param bytes_per_second: the limit.
        :returns: the previous limit.
        """
        old = self.execute('query-migrate-parameters')['max-bandwidth']
        self.execute('migrate-set-parameters',
                     {'max-bandwidth': bytes_per_second})
        return int(old)

    def migrate(self, uri: str, timeout: float = 60.0,
                poll_interval: float = 0.005,
                on_poll: ty.Callable[[dict[str, ty.Any]], None] | None
                = None) -> MigrationStats:
        """Source: live-migrate to *uri* and wait for the outcome.

        :param uri: the destination's URI (from :meth:`listen`).
        :param timeout: seconds until the migration is cancelled.
        :param poll_interval: seconds between ``query-migrate`` polls.
        :param on_poll: called with every ``query-migrate`` answer (tests
            use it to fail the destination mid-way).
        :returns: QEMU's statistics; ``status`` is ``completed``,
            ``failed`` or ``cancelled``.
        :raises MigrationTimeout: not finished in time (it was cancelled).
        """
        start = time.monotonic()
        self.execute('migrate', {'uri': uri})
        deadline = start + timeout
        info: dict[str, ty.Any] = {}
        while True:
            info = self.execute('query-migrate')
            if on_poll is not None:
                on_poll(info)
            if info.get('status') in MIGRATION_DONE:
                break
            if time.monotonic() >= deadline:
                try:
                    self.execute('migrate_cancel')
                except errors.DataplaneError:
                    LOG.warning('Cancelling migration of %s failed',
                                self.name)
                raise errors.MigrationTimeout(
                    instance=self.name, timeout=timeout,
                    status=info.get('status'))
            time.sleep(poll_interval)
        wall = (time.monotonic() - start) * 1000.0
        ram = info.get('ram') or {}
        return MigrationStats(
            status=str(info.get('status')),
            total_time_ms=info.get('total-time'),
            downtime_ms=info.get('downtime'),
            setup_time_ms=info.get('setup-time'),
            transferred_bytes=ram.get('transferred'),
            error=info.get('error-desc'),
            wall_time_ms=wall)

    def wait_status(self, wanted: ty.Collection[str], timeout: float = 10.0,
                    interval: float = 0.005) -> str:
        """Wait until :meth:`status` is in *wanted* (or ``dead``).

        :param wanted: acceptable states.
        :param timeout: seconds.
        :returns: the state reached.
        :raises ProcessTimeout: neither reached in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st in wanted or st == 'dead':
                return st
            if time.monotonic() >= deadline:
                raise errors.ProcessTimeout(
                    what=f'QEMU {self.name}',
                    action='reach state {} (is {})'.format(
                        '/'.join(sorted(wanted)), st), timeout=timeout)
            time.sleep(interval)

    def quit(self, timeout: float = 10.0) -> None:
        """Quit QEMU cleanly (QMP ``quit``), SIGKILL if it hangs.

        QEMU then sends ``CMD_SHUTDOWN`` to its swtpm, which exits.

        :param timeout: seconds.
        """
        if self.is_alive():
            try:
                self.execute('quit')
            except errors.DataplaneError:
                pass
            assert self.proc is not None
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                LOG.warning('QEMU %s did not quit; killing it', self.name)
        self.kill()

    def kill(self) -> None:
        """SIGKILL QEMU's process group and close QMP."""
        if self.qmp is not None:
            self.qmp.close()
        if self.proc is not None:
            process.kill_group(self.proc)

    def log_tail(self) -> str:
        """The end of QEMU's log, for error messages."""
        return process.log_tail(self.log_path)
