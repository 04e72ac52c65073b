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

"""What a real libvirt daemon holds, asked of the daemon itself.

Everything here goes through a test's own connection to the daemon (what
``virsh secret-list``, ``virsh secret-dumpxml`` and ``virsh
secret-get-value`` do), the daemon's own directories, and ``/proc`` of the
processes in its mount namespace (libvirtd, QEMU, swtpm) - never through
Nova's or the plugin's objects.

Key material is never returned or put into an exception text: leak checks
return which *form* of a key was found (its index in :func:`key_forms`)
or a file name, never the bytes.
"""

import base64
import dataclasses
import os
import typing as ty
from xml.etree import ElementTree  # noqa: S405 - the test's own daemon

import libvirt

from tests.support.libvirt import daemons as daemons_mod


@dataclasses.dataclass(frozen=True)
class SecretInfo:
    """One row of ``virsh secret-list`` plus the secret's flags."""

    uuid: str
    usage_type: str
    usage_id: str
    ephemeral: bool
    private: bool


def _info(secret: ty.Any) -> SecretInfo:
    root = ElementTree.fromstring(secret.XMLDesc())  # noqa: S314
    usage = root.find('usage')
    return SecretInfo(
        uuid=secret.UUIDString(),
        usage_type='' if usage is None else usage.get('type', ''),
        usage_id=secret.usageID(),
        ephemeral=root.get('ephemeral') == 'yes',
        private=root.get('private') == 'yes')


def secret_list(conn: ty.Any) -> dict[str, SecretInfo]:
    """Every secret the daemon has defined (``virsh secret-list``)."""
    return {s.UUIDString(): _info(s) for s in conn.listAllSecrets()}


def secret_info(conn: ty.Any, secret_uuid: str) -> SecretInfo:
    """One secret (``virsh secret-dumpxml``).

    :raises libvirt.libvirtError: the daemon has no such secret.
    """
    return _info(conn.secretLookupByUUIDString(secret_uuid))


def value_refusal(conn: ty.Any, secret_uuid: str) -> str | None:
    """Ask the daemon for a secret's value (``virsh secret-get-value``).

    :returns: libvirt's refusal text when it refuses because the secret is
        private; ``None`` when it gives the value back (which is dropped
        unseen).
    :raises libvirt.libvirtError: any other error (no such secret, ...).
    """
    secret = conn.secretLookupByUUIDString(secret_uuid)
    try:
        secret.value()
    except libvirt.libvirtError as exc:
        if (exc.get_error_code() == libvirt.VIR_ERR_INVALID_SECRET
                and 'secret is private' in str(exc)):
            return str(exc)
        raise
    return None


def vtpm_secret_value(conn: ty.Any, instance_uuid: str) -> bytes | None:
    """The value of the instance's readable vTPM secret (usage ``vtpm``,
    named after the instance as Nova names it); ``None`` when the daemon
    has none or refuses to give it."""
    try:
        secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VTPM,
                                          instance_uuid)
        return bytes(secret.value())
    except libvirt.libvirtError:
        return None


def persistent_secret_files(daemon: daemons_mod.LibvirtDaemon) -> list[str]:
    """Files of persistent secrets in the daemon's ``/etc/libvirt``."""
    path = daemon.path('etc', 'secrets')
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


# -- processes -------------------------------------------------------------

def read_proc(pid: int, what: str) -> bytes:
    """``/proc/<pid>/<what>`` (empty once the process is gone)."""
    try:
        with open(f'/proc/{pid}/{what}', 'rb') as f:
            return f.read()
    except OSError:
        return b''


def program_pids(daemon: daemons_mod.LibvirtDaemon,
                 program: str) -> list[int]:
    """PIDs of the processes of *program* (base name, e.g. ``swtpm``) in
    the daemon's mount namespace."""
    if daemon.namespace is None:
        return []
    return [pid for pid in daemons_mod.processes_in_namespace(
        daemon.namespace)
        if os.path.basename(read_proc(pid, 'cmdline').split(b'\0')[0])
        == program.encode()]


def namespace_programs(daemon: daemons_mod.LibvirtDaemon) -> list[str]:
    """Base names of the programs running in the daemon's mount
    namespace (libvirtd, qemu-system-x86_64, swtpm)."""
    return sorted(os.path.basename(argv[0]) for argv in
                  daemon.processes().values() if argv)


# -- key material ------------------------------------------------------------

def key_forms(secret: bytes) -> list[bytes]:
    """The forms in which a key could leak into bytes: itself, hex,
    base64, and its first 24 bytes."""
    return [secret, secret.hex().encode(), base64.b64encode(secret),
            secret[:24]]


def leaks(secret: bytes, data: bytes) -> list[int]:
    """Which forms of *secret* (indexes into :func:`key_forms`) occur in
    *data*: a failure report shows the indexes, never the key."""
    return [i for i, form in enumerate(key_forms(secret)) if form in data]


def process_leaks(daemon: daemons_mod.LibvirtDaemon,
                  secret: bytes) -> dict[str, list[int]]:
    """Program name -> leaked key forms, over the command line and the
    environment of every process in the daemon's namespace."""
    found: dict[str, list[int]] = {}
    if daemon.namespace is None:
        return found
    for pid in daemons_mod.processes_in_namespace(daemon.namespace):
        cmdline = read_proc(pid, 'cmdline')
        hits = leaks(secret, cmdline + b'\0' + read_proc(pid, 'environ'))
        if hits:
            name = os.path.basename(cmdline.split(b'\0')[0]).decode(
                errors='replace')
            found[f'{name}[{pid}]'] = hits
    return found


def file_leaks(daemon: daemons_mod.LibvirtDaemon,
               secret: bytes) -> dict[str, list[int]]:
    """Path (relative to the daemon's directory) -> leaked key forms, over
    every regular file of the daemon: its configuration, persistent
    secrets, domain and swtpm state, caches and logs."""
    found: dict[str, list[int]] = {}
    for top, _dirs, files in os.walk(daemon.root):
        for name in files:
            path = os.path.join(top, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            try:
                with open(path, 'rb') as f:
                    data = f.read()
            except OSError:
                continue
            hits = leaks(secret, data)
            if hits:
                found[os.path.relpath(path, daemon.root)] = hits
    return found
