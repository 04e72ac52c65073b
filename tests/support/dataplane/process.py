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


"""Child-process helpers shared by the vTPM and guest drivers.

Every child runs in its own session (process group) so that killing it
also kills anything it spawned, and so that a crash of the caller's
terminal does not signal it. Output goes to a log file next to the
process's other files; nothing secret is ever on a command line.
"""

import os
import signal
import subprocess
import time
import typing as ty

from oslo_log import log as logging

from tests.support.dataplane import errors

LOG = logging.getLogger(__name__)

#: Longest path a unix socket can have on Linux (``sun_path`` minus NUL).
MAX_UNIX_SOCKET_PATH = 107


def check_socket_path(path: str) -> None:
    """Refuse unix socket paths that Linux would silently truncate.

    :param path: the socket path.
    :raises DataplaneError: the path is too long.
    """
    if len(os.fsencode(path)) > MAX_UNIX_SOCKET_PATH:
        raise errors.DataplaneError(
            reason=f'unix socket path longer than {MAX_UNIX_SOCKET_PATH} '
                   f'bytes: {path}; use a shorter work directory')


def spawn(args: list[str], log_path: str,
          pass_fds: ty.Sequence[int] = ()) -> 'subprocess.Popen[bytes]':
    """Start *args* in a new session with output appended to *log_path*.

    :param args: the command line (must not contain secrets).
    :param log_path: file receiving stdout and stderr.
    :param pass_fds: file descriptors the child inherits.
    :raises ProcessStartError: the binary cannot be executed.
    """
    LOG.debug('Starting %s', ' '.join(args))
    with open(log_path, 'ab') as log:
        try:
            return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                args, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=tuple(pass_fds),
                start_new_session=True, close_fds=True)
        except OSError as e:
            raise errors.ProcessStartError(what=args[0],
                                           reason=str(e)) from e


def kill_group(proc: 'subprocess.Popen[bytes]',
               timeout: float = 5.0) -> None:
    """SIGKILL the process group of *proc* and reap it.

    :param proc: a process started by :func:`spawn`.
    :param timeout: seconds to wait for it to be reaped.
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        LOG.warning('Process %d did not die after SIGKILL', proc.pid)


def terminate(proc: 'subprocess.Popen[bytes]', timeout: float = 5.0) -> int:
    """SIGTERM *proc*, wait, then SIGKILL its group if still alive.

    :param proc: a process started by :func:`spawn`.
    :param timeout: seconds to wait after SIGTERM.
    :returns: the exit status.
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
    # Anything else left in the group goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait()


def wait_for(predicate: ty.Callable[[], bool], what: str, action: str,
             timeout: float, proc: 'subprocess.Popen[bytes] | None' = None,
             log_path: str | None = None, interval: float = 0.01) -> None:
    """Poll *predicate* until true, failing early if *proc* exits.

    :param predicate: the condition.
    :param what: name used in errors (e.g. ``swtpm for vm1``).
    :param action: verb phrase used in errors (e.g. ``listen``).
    :param timeout: seconds.
    :param proc: a process whose death aborts the wait.
    :param log_path: a log whose tail is quoted if *proc* dies.
    :param interval: polling interval in seconds.
    :raises ProcessStartError: *proc* exited.
    :raises ProcessTimeout: the deadline passed.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise errors.ProcessStartError(
                what=what, reason=f'exited with status {proc.returncode}'
                                  f'{log_tail(log_path)}')
        if time.monotonic() >= deadline:
            raise errors.ProcessTimeout(what=what, action=action,
                                        timeout=timeout)
        time.sleep(interval)


def log_tail(log_path: str | None, lines: int = 5) -> str:
    """Return the last lines of a log file for an error message.

    :param log_path: the log (may be ``None`` or missing).
    :param lines: how many lines.
    """
    if not log_path:
        return ''
    try:
        with open(log_path, 'rb') as f:
            tail = f.read().decode('utf-8', 'replace').splitlines()[-lines:]
    except OSError:
        return ''
    return (': ' + ' | '.join(tail)) if tail else ''
