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

"""TPM-encrypted key blobs of a host, kept under its state directory.

A blob is a key's public area and its private area encrypted by the TPM
under the SRK (TPM2B_PRIVATE); no plaintext key material is ever written.
:class:`BindingKeys` keeps the current binding key and its predecessor
(a key wrapped to just before a rotation can still be unwrapped).
"""

import dataclasses
import json
import pathlib
import threading
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import fileutils

LOG = logging.getLogger(__name__)

#: A binding key is replaced ahead, in the background, once it is older
#: than this fraction of its lifetime.
ROTATE_AHEAD = 0.75


@dataclasses.dataclass(frozen=True)
class KeyBlob:
    """A key's public area and TPM-encrypted private area.

    :ivar created: when it was created (seconds since the epoch).
    :ivar pcr_digest: the PCR composite digest its policy is bound to
        (binding keys).
    """

    public: bytes
    private: bytes
    created: float = 0.0
    pcr_digest: bytes = b''

    def to_json(self) -> dict[str, ty.Any]:
        """JSON form (hex)."""
        return {'public': self.public.hex(), 'private': self.private.hex(),
                'created': self.created, 'pcr_digest': self.pcr_digest.hex()}

    @classmethod
    def from_json(cls, data: dict[str, ty.Any]) -> 'KeyBlob':
        """Parse :meth:`to_json`'s form."""
        return cls(bytes.fromhex(data['public']),
                   bytes.fromhex(data['private']), float(data['created']),
                   bytes.fromhex(data['pcr_digest']))

    def age(self) -> float:
        """Seconds since creation (negative if the clock went back)."""
        return time.time() - self.created


class BindingKeys:
    """The binding key blobs of a host: the current one first.

    :param path: the JSON file.
    :param lifetime: seconds after which the current key is replaced.
    """

    def __init__(self, path: pathlib.Path, lifetime: float) -> None:
        self.path = path
        self.lifetime = lifetime
        self.lock = threading.Lock()
        self._cache: tuple[tuple[int, int], list[KeyBlob]] | None = None

    def blobs(self) -> list[KeyBlob]:
        """The current key and its predecessor (newest first); the file
        is read again only when it changed."""
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns)
            if self._cache is not None and self._cache[0] == stamp:
                return list(self._cache[1])
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            LOG.warning('Ignoring corrupt binding key cache %s: %s',
                        self.path, exc)
            return []
        blobs = [KeyBlob.from_json(d) for d in data.get('keys', [])]
        self._cache = (stamp, blobs)
        return list(blobs)

    def usable(self, pcr_digest: bytes) -> KeyBlob | None:
        """The current key if it is bound to ``pcr_digest`` and not older
        than its lifetime, else ``None``."""
        blobs = self.blobs()
        if blobs and blobs[0].pcr_digest == pcr_digest and \
                0 <= blobs[0].age() < self.lifetime:
            return blobs[0]
        return None

    def due(self) -> bool:
        """Whether the current key should be replaced ahead of time."""
        blobs = self.blobs()
        return not blobs or not 0 <= blobs[0].age() < \
            self.lifetime * ROTATE_AHEAD

    def add(self, blob: KeyBlob) -> None:
        """Make ``blob`` the current key, keeping the previous one."""
        keep = [blob] + self.blobs()[:1]
        fileutils.atomic_write(self.path, json.dumps(
            {'keys': [b.to_json() for b in keep]}).encode())
        LOG.info('Created a new binding key (PCR digest %s)',
                 blob.pcr_digest.hex())
