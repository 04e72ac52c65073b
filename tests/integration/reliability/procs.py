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



"""Hosts as separate processes (``tests.support.hostd``) on
real swtpm TPMs, and the invariant checks of the reliability tests.

The TPMs, the state directories and the trust policy come from
:mod:`tests.support.cluster`; this module adds the host processes."""

import base64
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import typing as ty
import uuid

from tests.support import cluster as cluster_mod
from tests.support import faults
from tests.support import sockets

ROOT = pathlib.Path(__file__).resolve().parents[3]
PCRS = (0, 1, 2, 3, 7, 16)
FINAL = {'COMMITTED', 'ABORTED'}


class HostDied(Exception):
    """A host process died while a control command ran."""


#: A running swtpm and the HostTpm state dir that goes with it
#: (``tpm_state``, persistent across host process restarts).
TpmHost = cluster_mod.SimTpm


class ProcCluster:
    """Host processes named after ``tpms`` (``src``, ``dst``, ...).

    :param tpms: host name -> its TPM.
    :param policy_doc: the trust policy document all hosts use.
    """

    def __init__(self, tpms: dict[str, TpmHost],
                 policy_doc: dict[str, ty.Any],
                 session_lifetime: float = 300, timeout: float = 15,
                 base: str | None = None) -> None:
        self.sim = cluster_mod.SimCluster(pcrs=PCRS, label='cell',
                                          policy=policy_doc, base_dir=base)
        for name, tpm in tpms.items():
            self.sim.add(name, tpm)
        self.dir = self.sim.root
        self.sockets = tempfile.mkdtemp(prefix='nvm-s-')  # short path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.config = {
            'socket_dir': self.sockets, 'guest_dir': str(self.dir),
            'policy': self.sim.policy_document(),
            'pcrs': list(self.sim.pcrs), 'session_lifetime': session_lifetime,
            'timeout': timeout,
            'hosts': {name: {'role': name, 'tcti': t.tcti,
                             'tpm_state': t.tpm_state,
                             'state_dir': self.sim.state_dir(name),
                             'ak_certificate':
                                 self.sim.ak_certificate(name).hex()}
                      for name, t in tpms.items()}}
        self.config_path = self.dir / 'config.json'
        self.config_path.write_text(json.dumps(self.config))
        self.undocumented: list[str] = []
        self.mounts: list[str] = []

    def mount_tmpfs(self, name: str, size: str = '32m') -> str | None:
        """Put a host's state dir on a private tmpfs (for a real disk
        full); ``None`` if mounting is not allowed here."""
        path = self.dir / name
        path.mkdir(mode=0o700, exist_ok=True)
        rc = subprocess.run(['mount', '-t', 'tmpfs', '-o',
                             f'size={size},mode=0700', 'tmpfs', str(path)],
                            capture_output=True, check=False).returncode
        if rc != 0:
            return None
        self.mounts.append(str(path))
        return str(path)

    def hand_over(self, instance: str, host: str) -> None:
        """The guest now runs on ``host`` (what the outcome oracle of the
        hosts reads, like the data plane's "where does the guest run")."""
        path = self.dir / f'guest-{instance}'
        path.write_text(host)

    def free_space(self) -> None:
        """The operator frees space on every filled file system."""
        for path in self.mounts:
            try:
                os.unlink(os.path.join(path, faults.FILLER))
            except FileNotFoundError:
                pass

    def start(self, name: str, plan: faults.FaultPlan | None = None,
              wait: bool = True, fill: str | None = None) -> None:
        """Start (or restart) a host process, optionally with a fault
        (and a directory a real disk-full fault fills)."""
        env = dict(os.environ, TSS2_LOG='all+NONE')
        env.pop(faults.ENV, None)
        env.pop(faults.FILL_ENV, None)
        if plan is not None:
            env[faults.ENV] = plan.to_env()
        if fill is not None:
            env[faults.FILL_ENV] = fill
        log = open(self.dir / f'{name}.stderr', 'ab')  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            [sys.executable, '-m', 'tests.support.hostd',
             str(self.config_path), name], env=env, stdout=log,
            stderr=log, cwd=ROOT)
        log.close()
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.procs[name].poll() is not None:
                raise HostDied(f'{name} exited at start with '
                               f'{self.procs[name].returncode}: '
                               + self.stderr(name)[-2000:])
            try:
                self.ctl(name, 'ping', timeout=5)
                return
            except (HostDied, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stderr(self, name: str) -> str:
        path = self.dir / f'{name}.stderr'
        return path.read_text(errors='replace') if path.exists() else ''

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def responsive(self, name: str) -> bool:
        """Whether the host answers; a host that does not is reaped (a
        SIGKILLed process may still be exiting when its peer already saw
        the connection close)."""
        try:
            if self.alive(name) and self.ctl(name, 'ping', timeout=10)['ok']:
                return True
        except (HostDied, OSError):
            pass
        proc = self.procs[name]
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return False

    def ctl(self, name: str, op: str, timeout: float = 120,
            **kwargs: ty.Any) -> dict[str, ty.Any]:
        """Run a control command; raises :class:`HostDied` if the
        process died before answering."""
        path = sockets.socket_path(self.sockets, name, 'ctl')
        try:
            raw = sockets.request(path, json.dumps(dict(kwargs, op=op))
                                  .encode(), timeout)
        except sockets.FrameError as exc:
            raise HostDied(f'{name}: {exc}') from None
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            if not self.alive(name):
                raise HostDied(f'{name}: {exc}') from None
            raise
        result: dict[str, ty.Any] = json.loads(raw)
        if not result.get('ok') and result.get('documented') is False:
            self.undocumented.append(
                f"{name}.{op}: {result['error']}: {result['message']}")
        return result

    def try_ctl(self, name: str, op: str, **kwargs: ty.Any
                ) -> dict[str, ty.Any]:
        """:meth:`ctl`, with a dead host reported as ``{"died": True}``."""
        try:
            return self.ctl(name, op, **kwargs)
        except HostDied:
            self.procs[name].wait(timeout=10)
            return {'ok': False, 'died': True}

    def stop(self) -> None:
        """Stop every host process and remove the cell's files."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                try:
                    self.ctl(name, 'stop', timeout=5)
                except (HostDied, OSError):
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get('NVM_KEEP_CELLS'):
            for name in self.procs:
                (self.dir / f'{name}.log').write_text(self.stderr(name))
            print(f'kept {self.dir}')
        for path in self.mounts:
            if os.environ.get('NVM_KEEP_CELLS'):
                subprocess.run(['cp', '-a', path, path + '.kept'],
                               check=False)
            subprocess.run(['umount', '-l', path], capture_output=True,
                           check=False)
        self.sim.close(keep_root=bool(os.environ.get('NVM_KEEP_CELLS')))


def secret_forms(secret: bytes) -> list[bytes]:
    """Encodings of a secret a leak could take."""
    return [secret, secret.hex().encode(), secret.hex().upper().encode(),
            base64.b64encode(secret).rstrip(b'='),
            base64.urlsafe_b64encode(secret).rstrip(b'=')]


def plaintext_leaks(root: pathlib.Path, secret: bytes) -> list[str]:
    """Files under ``root`` containing the secret in any encoding."""
    forms = secret_forms(secret)
    leaks = []
    for path in root.rglob('*'):
        if path.is_file():
            data = path.read_bytes()
            if any(f in data for f in forms):
                leaks.append(str(path.relative_to(root)))
    return leaks


@dataclasses.dataclass
class Outcome:
    """The checked end state of one migration."""

    outcome: str
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_invariant(cluster: ProcCluster, hosts: ty.Iterable[str],
                    instance: str, secret: bytes,
                    migration_id: str | None = None) -> Outcome:
    """Exactly one host holds a usable (ACTIVE) key, equal to ``secret``;
    no key is left LOCKED or PENDING; the migration is final on every
    host; no TPM object is left loaded; no plaintext secret on disk."""
    problems: list[str] = []
    notes: list[str] = []
    want = hashlib.sha256(secret).hexdigest()
    active = []
    for name in hosts:
        key = cluster.ctl(name, 'keys')['keys'].get(instance)
        if key is None or key['state'] == 'DESTROYED':
            continue
        if key['state'] == 'ACTIVE':
            if key['sha256'] != want:
                problems.append(f'{name}: ACTIVE key unusable or wrong '
                                f'({key["sha256"][:20]})')
            active.append(name)
        else:
            problems.append(f'{name}: key left {key["state"]}')
        loaded = cluster.ctl(name, 'handles')['loaded']
        if loaded:
            problems.append(f'{name}: {len(loaded)} TPM objects loaded')
    if len(active) != 1:
        problems.append(f'{len(active)} hosts hold a usable key: {active}')
    states = {}
    for name in hosts:
        for mid, role, state in cluster.ctl(name, 'migrations')[
                'migrations']:
            if migration_id is None or mid == migration_id:
                states[f'{name}/{role}'] = state
                if state not in FINAL:
                    problems.append(f'{name}: {role} {mid[:8]} left in '
                                    f'{state}')
    leaks = plaintext_leaks(cluster.dir, secret)
    if leaks:
        problems.append(f'plaintext secret in {leaks}')
    outcome = ('committed' if active and active[0] != 'src' else
               'aborted' if active else 'lost')
    notes.append(' '.join(f'{k}={v}' for k, v in sorted(states.items())))
    return Outcome(outcome, problems, notes)


def new_ids() -> tuple[str, str, bytes]:
    """A fresh instance uuid, migration id and 32-byte secret."""
    return str(uuid.uuid4()), str(uuid.uuid4()), os.urandom(32)
