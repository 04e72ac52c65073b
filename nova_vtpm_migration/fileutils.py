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

"""Durable file writes (fsync of data and directory entries).

Used for everything whose loss after a crash would break the protocol's
recovery: TPM key blobs, sealed secrets and the journal's directory.
"""

import os


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make the entries of *directory* (creations, renames) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str | os.PathLike[str], data: bytes,
                  mode: int = 0o600) -> None:
    """Write *data* to *path* (created with *mode*) and fsync it.

    The caller fsyncs the directory once its entries are final.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes,
                 mode: int = 0o600) -> None:
    """Replace *path* with *data* atomically and durably.

    A crash leaves either the old or the new content, never a mix.
    """
    path = os.fspath(path)
    tmp = path + '.tmp'
    write_durably(tmp, data, mode)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
