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

"""Where the wall time of phases 1+2 goes, beyond the TPM.

The TPM's share is exact: the meter times every command at the TCTI
(``protocol['phase1+2']['tpm_ms']``). The rest -- the host's own work --
is split by running a few extra phase 1+2 under :mod:`cProfile` and
attributing each function's own time (``tottime``) to a category by where
it lives (a builtin function counts for the code that called it):
storage (SQLite journal, ``fsync``, key and state files),
software cryptography (``cryptography``: X.509 chains, ECDSA, HKDF,
AES-GCM), tpm2-pytss (type marshalling and the ESAPI library, including
its session HMACs and parameter encryption), the plugin's TPM meter, the
protocol code and everything else. The profiler inflates Python-heavy
categories, so the categories are scaled to the host time measured
without it: their shares are what the profiler saw.
"""

import cProfile
import os
import pstats
import typing as ty
import uuid

CATEGORIES = ('storage', 'crypto', 'tpm2_pytss', 'meter', 'protocol',
              'other')
_TPM_IO = ('receive', 'transmit')


def _category(filename: str, name: str) -> str | None:
    """The category of a profiler entry; ``None`` for the TPM's I/O
    (counted exactly by the meter instead)."""
    where = f'{filename}:{name}'
    if filename.endswith('tpm2_pytss/TCTI.py') and name in _TPM_IO:
        return None
    if ('sqlite3' in where or 'fsync' in where or 'fileutils' in filename
            or 'posix.' in name or '_io.' in name
            or 'journal.py' in filename or 'keystore.py' in filename):
        return 'storage'
    if 'cryptography' in where:
        return 'crypto'
    if 'tpm2_pytss' in where:
        return 'tpm2_pytss'
    if filename.endswith('nova_vtpm_migration/tpm/meter.py'):
        return 'meter'
    if 'nova_vtpm_migration' in filename:
        return 'protocol'
    return 'other'


def _calls(st: pstats.Stats, needle: str) -> int:
    entries: ty.Any = st.stats  # type: ignore[attr-defined]
    return sum(int(v[1]) for (f, _l, n), v in entries.items()
               if needle in f'{f}:{n}')


def profile_phase12(src: ty.Any, dst: ty.Any, peer: str, runs: int,
                    wall_ms: float, tpm_ms: float) -> dict[str, ty.Any]:
    """Run *runs* fresh phase 1 + phase 2 under the profiler.

    :param src: the source engine (its key store gets a key per run).
    :param dst: the destination engine.
    :param peer: the destination's name.
    :param wall_ms: phase 1+2's median without the profiler.
    :param tpm_ms: the TPM's part of it (the meter's median); the host
        time split into categories is ``wall_ms - tpm_ms``.
    :returns: the ``breakdown`` entry of ``protocol['phase1+2']``.
    """
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    prof = cProfile.Profile()
    for _ in range(runs):
        inst = str(uuid.uuid4())
        src.keystore.add(inst, os.urandom(32))
        prof.enable()
        src.attest_peer(peer, fresh=True)
        handle = src.migrate_key(inst, peer)
        prof.disable()
        src.commit(handle.migration_id)
        dst.keystore.destroy(inst)
    st = pstats.Stats(prof)
    entries: ty.Any = st.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _ct, callers) \
            in entries.items():
        cat = _category(filename, name)
        if cat is None:
            continue
        if cat != 'other' or filename != '~':
            seconds[cat] += tottime
            continue
        # A builtin (isinstance, json, cffi, hashlib, ...) counts for
        # the category of the code that called it.
        for (c_file, _c_line, c_name), caller in callers.items():
            seconds[_category(c_file, c_name) or 'other'] += caller[2]
    profiled = sum(seconds.values()) or 1.0
    host_ms = max(0.0, wall_ms - tpm_ms)
    return {
        'runs': runs,
        'wall_ms': round(wall_ms, 1),
        'tpm_ms': round(tpm_ms, 1),
        'host_ms': round(host_ms, 1),
        'host_ms_by_category': {c: round(host_ms * s / profiled, 1)
                                for c, s in seconds.items()},
        'fsyncs': _calls(st, 'fsync') / runs,
        'sqlite_statements': _calls(st, "'execute' of 'sqlite3") / runs,
    }
