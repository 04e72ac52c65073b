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


"""The few swtpm control-channel commands the data plane needs.

The control channel (``--ctrl type=unixio,path=...``) takes a 4-byte
big-endian command code followed by its payload and answers with a 4-byte
big-endian TPM result code followed by the command's output (swtpm's
``tpm_ioctl.h``). swtpm serves one control client at a time: while QEMU
drives a vTPM, QEMU owns the channel, so these helpers are only for a
standalone vTPM (provisioning and read-back).
"""

import socket
import struct

from tests.support.dataplane import errors

CMD_INIT = 2
CMD_SHUTDOWN = 3
CMD_STORE_VOLATILE = 10
CMD_GET_CONFIG = 15

#: ``CMD_GET_CONFIG`` flag: the state files are encrypted (``--key``).
CONFIG_FLAG_FILE_KEY = 0x1
#: ``CMD_GET_CONFIG`` flag: state blobs are encrypted (``--migration-key``).
CONFIG_FLAG_MIGRATION_KEY = 0x2

_NAMES = {CMD_INIT: 'INIT', CMD_SHUTDOWN: 'SHUTDOWN',
          CMD_STORE_VOLATILE: 'STORE_VOLATILE', CMD_GET_CONFIG: 'GET_CONFIG'}


def command(path: str, cmd: int, payload: bytes = b'',
            out_size: int = 0, timeout: float = 10.0) -> bytes:
    """Send one control command and return its output after the result.

    :param path: the control socket.
    :param cmd: the command code (``CMD_*``).
    :param payload: the command's input.
    :param out_size: bytes of output expected after the 4-byte result.
    :param timeout: socket timeout in seconds.
    :raises SwtpmCtrlError: connection failure or non-zero TPM result.
    """
    name = _NAMES.get(cmd, str(cmd))
    want = 4 + out_size
    data = b''
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(struct.pack('>I', cmd) + payload)
            while len(data) < want:
                chunk = sock.recv(want - len(data))
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        raise errors.SwtpmCtrlError(command=name, path=path,
                                    reason=str(e)) from e
    if len(data) < 4:
        raise errors.SwtpmCtrlError(command=name, path=path,
                                    reason='short answer')
    (result,) = struct.unpack('>I', data[:4])
    if result != 0:
        raise errors.SwtpmCtrlError(command=name, path=path,
                                    reason=f'TPM result 0x{result:x}')
    return data[4:]


def shutdown(path: str) -> None:
    """Make swtpm terminate (``CMD_SHUTDOWN``).

    :param path: the control socket.
    """
    command(path, CMD_SHUTDOWN)


def get_config_flags(path: str) -> int:
    """Return swtpm's configuration flags (``CONFIG_FLAG_*``).

    :param path: the control socket.
    """
    out = command(path, CMD_GET_CONFIG, out_size=4)
    (flags,) = struct.unpack('>I', out[:4])
    return int(flags)
