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


"""A simulated compute host: its vTPMs and guests, and optionally a TPM.

A :class:`SimHost` owns a work directory (short, because unix socket paths
are limited to 107 bytes) with, per instance::

    <work_dir>/vtpm/<instance>/   vTPM state (swtpm files, log, sockets)
    <work_dir>/run/<instance>/    QEMU's QMP socket and log

The host TPM (an :class:`tests.support.swtpm.SwtpmHostTpm` or
anything else) is only carried for callers such as the protocol engines;
the data plane itself never talks to it.

Everything a host started is killed by :meth:`SimHost.cleanup` (also used
by the context manager), so tests cannot leak processes.
"""

import os
import shutil
import tempfile
import typing as ty

from oslo_log import log as logging

from tests.support.dataplane import errors
from tests.support.dataplane import guest as guest_mod
from tests.support.dataplane import provision
from tests.support.dataplane import vtpm

LOG = logging.getLogger(__name__)


class Instance:
    """One instance's data plane on one host.

    :ivar uuid: the instance id.
    :ivar key: the vTPM secret this host uses for the instance.
    :ivar vtpm: its swtpm, when started.
    :ivar guest: its QEMU, when started.
    """

    def __init__(self, uuid: str, key: vtpm.VtpmKey, state_dir: str,
                 run_dir: str) -> None:
        self.uuid = uuid
        self.key = key
        self.state_dir = state_dir
        self.run_dir = run_dir
        self.vtpm: vtpm.VtpmProcess | None = None
        self.guest: guest_mod.Guest | None = None

    def kill(self) -> None:
        """SIGKILL the guest and the vTPM; files stay."""
        if self.guest is not None:
            self.guest.kill()
        if self.vtpm is not None:
            self.vtpm.kill()


class SimHost:
    """Processes of one simulated host.

    :param name: host name (used in logs and default directory names).
    :param work_dir: directory for all per-instance files; a fresh
        temporary directory (removed by :meth:`cleanup`) if ``None``.
    :param host_tpm: the host's TPM, for callers (optional).
    :param firmware: guest firmware, see :mod:`.guest`; the default leaves
        the vTPM alone so provisioned PCRs survive (see :mod:`.provision`).
    :param return_path: enable QEMU's migration return path on the guests
        (see :meth:`_start`).
    """

    def __init__(self, name: str, work_dir: str | None = None,
                 host_tpm: ty.Any = None,
                 firmware: str | None = guest_mod.FIRMWARE_NO_TPM,
                 return_path: bool = True) -> None:
        self.name = name
        self._owns_work_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix=f'nvm-{name}-')
        os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        self.host_tpm = host_tpm
        self.firmware = firmware
        self.return_path = return_path
        self.instances: dict[str, Instance] = {}

    def __enter__(self) -> 'SimHost':
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f'<SimHost {self.name} {self.work_dir}>'

    # -- paths -----------------------------------------------------------

    def state_dir(self, uuid: str) -> str:
        """The vTPM state directory of an instance on this host."""
        return os.path.join(self.work_dir, 'vtpm', uuid)

    def run_dir(self, uuid: str) -> str:
        """The QEMU runtime directory of an instance on this host."""
        return os.path.join(self.work_dir, 'run', uuid)

    def instance(self, uuid: str) -> Instance:
        """Return the instance, raising if unknown.

        :raises InstanceNotFound: no such instance on this host.
        """
        try:
            return self.instances[uuid]
        except KeyError:
            raise errors.InstanceNotFound(host=self.name,
                                          instance=uuid) from None

    def _new(self, uuid: str, key: vtpm.VtpmKey) -> Instance:
        if uuid in self.instances:
            raise errors.DataplaneError(
                reason=f'instance {uuid} already on host {self.name}')
        inst = Instance(uuid, key, self.state_dir(uuid), self.run_dir(uuid))
        self.instances[uuid] = inst
        return inst

    # -- lifecycle -------------------------------------------------------

    def provision_instance(
            self, uuid: str, key: vtpm.VtpmKey,
            pcrs: tuple[int, ...] = provision.PCRS
    ) -> provision.VtpmContents:
        """Create an instance's vTPM state with recognisable content.

        :param uuid: the instance id.
        :param key: its vTPM secret.
        :param pcrs: PCRs to extend.
        :returns: what was provisioned.
        """
        inst = self._new(uuid, key)
        try:
            return provision.provision_state(inst.state_dir, key, pcrs)
        except Exception:
            self.destroy_instance(uuid, wipe_key=False)
            raise

    def start_instance(self, uuid: str,
                       key: vtpm.VtpmKey | None = None) -> Instance:
        """Start an instance's vTPM (QEMU mode) and its guest.

        :param uuid: the instance id (provisioned before, or new).
        :param key: its vTPM secret (required for a new instance).
        """
        inst = self.instances.get(uuid)
        if inst is None:
            if key is None:
                raise errors.InstanceNotFound(host=self.name, instance=uuid)
            inst = self._new(uuid, key)
        self._start(inst, incoming=False)
        return inst

    def prepare_incoming(self, uuid: str, key: vtpm.VtpmKey) -> str:
        """Destination: start the vTPM with *key* and a listening guest.

        :param uuid: the instance id.
        :param key: the vTPM secret (as delivered to this host).
        :returns: the migration URI for the source.
        """
        inst = self._new(uuid, key)
        self._start(inst, incoming=True)
        assert inst.guest is not None
        return inst.guest.listen()

    def _start(self, inst: Instance, incoming: bool) -> None:
        try:
            inst.vtpm = vtpm.VtpmProcess(inst.state_dir, inst.key,
                                         name=f'{self.name}/{inst.uuid}')
            inst.vtpm.start()
            inst.guest = guest_mod.Guest(
                inst.uuid, inst.run_dir, inst.vtpm.ctrl_path,
                incoming=incoming, firmware=self.firmware)
            inst.guest.start()
            # With the return path the source learns that the
            # destination failed to load (e.g. it refused the vTPM state),
            # reports the migration failed and resumes the guest itself;
            # its "downtime" then includes the destination's load of the
            # device state (the swtpm state import). Without it QEMU
            # reports success and only the source side of the downtime,
            # and the caller must notice the failed destination and resume
            # the source (as libvirt's Confirm phase does).
            inst.guest.execute('migrate-set-capabilities', {
                'capabilities': [{'capability': 'return-path',
                                  'state': self.return_path}]})
        except Exception:
            inst.kill()
            raise

    def stop_instance(self, uuid: str, timeout: float = 10.0) -> None:
        """Quit the guest; its vTPM exits too. The state stays on disk.

        :param uuid: the instance id.
        :param timeout: seconds.
        """
        inst = self.instance(uuid)
        if inst.guest is not None:
            inst.guest.quit(timeout)
        if inst.vtpm is not None:
            if inst.vtpm.wait_exit(timeout) is None:
                inst.vtpm.stop(timeout)

    def read_back(self, uuid: str) -> provision.VtpmContents:
        """Stop the instance and read its vTPM through tpm2-pytss.

        :param uuid: the instance id.
        """
        self.stop_instance(uuid)
        inst = self.instance(uuid)
        return provision.read_back_state(inst.state_dir, inst.key)

    def destroy_instance(self, uuid: str, wipe_key: bool = True) -> None:
        """Kill the instance's processes and remove its state and key.

        :param uuid: the instance id.
        :param wipe_key: wipe the key object as well.
        """
        inst = self.instances.pop(uuid, None)
        if inst is None:
            return
        if inst.guest is not None and inst.guest.is_alive():
            inst.guest.quit(timeout=5.0)
        inst.kill()
        shutil.rmtree(inst.state_dir, ignore_errors=True)
        shutil.rmtree(inst.run_dir, ignore_errors=True)
        if wipe_key:
            inst.key.wipe()
        LOG.debug('Instance %s destroyed on %s', uuid, self.name)

    def has_vtpm_state(self, uuid: str) -> bool:
        """Whether a vTPM state directory exists for *uuid* here."""
        return os.path.exists(self.state_dir(uuid))

    def pids(self) -> list[int]:
        """Process ids of every live guest and vTPM of this host."""
        out = []
        for inst in self.instances.values():
            for p in (inst.guest, inst.vtpm):
                if p is not None and p.proc is not None \
                        and p.proc.poll() is None:
                    out.append(p.proc.pid)
        return out

    def cleanup(self) -> None:
        """Kill everything and remove the work directory if owned."""
        for inst in list(self.instances.values()):
            try:
                inst.kill()
            except Exception:  # noqa: BLE001 - keep cleaning up
                LOG.exception('Cleaning up %s on %s', inst.uuid, self.name)
        self.instances.clear()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
