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


"""Build (once, cached) the ``statfs`` LD_PRELOAD shim for libvirtd.

See ``statfs_shim.c``: paths below the directories in the
:data:`ENV_VAR` environment variable of the process look like NFS to
``statfs()``; libvirt then lets a live migration without storage copy
through (``qemuMigrationSrcIsSafe``), as on a real shared
``instances_path``.
"""

import fcntl
import hashlib
import os
import subprocess

from tests.support.libvirt import guest

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'statfs_shim.c')
#: The colon-separated list of directories the shim reports as NFS.
ENV_VAR = 'NVM_SHARED_FS_PATHS'
NFS_SUPER_MAGIC = 0x6969


def build(cache_root: str = guest.CACHE_ROOT) -> str:
    """Compile the shim with gcc on first use; return the .so's path.

    The build is keyed by the hash of the C source, so an edited source
    is rebuilt; concurrent callers wait on a lock file.
    """
    with open(SOURCE, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(cache_root, 'statfs-shim')
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, f'statfs_shim-{digest}.so')
    with open(os.path.join(cache, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(target):
            tmp = target + '.tmp'
            subprocess.run(['gcc', '-shared', '-fPIC', '-O2', '-Wall',
                            '-Werror', '-o', tmp, SOURCE, '-ldl'],
                           check=True, capture_output=True, text=True)
            os.rename(tmp, target)
    return target
