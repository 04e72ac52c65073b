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


"""libvirt XML and helpers for the self-checking vTPM guest.

The guest boots the kernel and initramfs of
:func:`tests.support.libvirt.guest.ensure_artifacts` directly (no disk),
TCG on q35 with 128 MiB, a ``tpm-crb`` with the swtpm emulator backend
whose state is encrypted with a libvirt secret (usage ``vtpm``), and its
serial console written to a file.
"""

import time
import typing as ty
from xml.sax import saxutils

import libvirt

from tests.support.libvirt import guest

MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
                 | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
MIGRATE_URI = 'tcp://127.0.0.1'


def _q(text: str) -> str:
    return saxutils.quoteattr(text)


def domain_xml(name: str, dom_uuid: str, artifacts: guest.GuestArtifacts,
               secret_uuid: str, console_log: str,
               memory_mib: int = 128) -> str:
    """The domain XML of a self-checking vTPM guest."""
    return f'''<domain type='qemu'>
  <name>{saxutils.escape(name)}</name>
  <uuid>{dom_uuid}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{saxutils.escape(artifacts.kernel)}</kernel>
    <initrd>{saxutils.escape(artifacts.initrd)}</initrd>
    <cmdline>{saxutils.escape(artifacts.cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'>
      <source path={_q(console_log)}/>
      <target port='0'/>
    </serial>
    <tpm model='tpm-crb'>
      <backend type='emulator' version='2.0'>
        <encryption secret='{secret_uuid}'/>
      </backend>
    </tpm>
    <memballoon model='none'/>
  </devices>
</domain>'''


def secret_xml(secret_uuid: str, usage_name: str, ephemeral: bool = False,
               private: bool = False) -> str:
    yes_no = {True: 'yes', False: 'no'}
    return (f"<secret ephemeral='{yes_no[ephemeral]}' "
            f"private='{yes_no[private]}'><uuid>{secret_uuid}</uuid>"
            f"<usage type='vtpm'><name>{saxutils.escape(usage_name)}</name>"
            '</usage></secret>')


def define_secret(conn: ty.Any, secret_uuid: str, value: bytes,
                  usage_name: str, ephemeral: bool = False,
                  private: bool = False) -> ty.Any:
    """Define a vTPM secret on a daemon and set its value."""
    secret = conn.secretDefineXML(secret_xml(secret_uuid, usage_name,
                                             ephemeral, private))
    secret.setValue(value)
    return secret


def read_console(path: str) -> str:
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def wait_for_checks(path: str, count: int = 1, after: int = 0,
                    timeout: float = 60.0) -> list[guest.CheckLine]:
    """Wait until the console log at *path* has *count* check lines with
    a sequence number above *after*; return them (all of them).

    :raises TimeoutError: with the console's tail.
    """
    deadline = time.monotonic() + timeout
    while True:
        lines = guest.parse_console(read_console(path))
        if len([line for line in lines if line.seq > after]) >= count:
            return lines
        if time.monotonic() > deadline:
            tail = '\n'.join(read_console(path).splitlines()[-15:])
            raise TimeoutError(f'no {count} vTPM check line(s) after '
                               f'seq {after} in {path} within {timeout} s; '
                               f'console tail:\n{tail}')
        time.sleep(0.25)
