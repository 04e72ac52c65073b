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

"""Micro-benchmark of the host TPM trust layer against a real swtpm.

Usage::

    python -m tools.bench.tpm [--runs 20] [--json] [--latency-profile P]

Starts its own swtpm host TPM (EK certificate from a private
``swtpm_localca`` in a temporary directory), then times every operation of
:mod:`nova_vtpm_migration.tpm` -- TPM-side (quote, certify, ECDH unwrap,
sign, seal, unseal, credential activation) and software verification --
``--runs`` times after one warm-up run, and prints the median, p95, min and
max as a table, or as JSON with ``--json``. For each TPM-side operation it
also prints the TPM commands one call sends (counted at the TCTI) and what
they would take on the hardware profiles of
:mod:`nova_vtpm_migration.tpm.profiles`. swtpm is 100-1000x faster than a
hardware TPM; do not budget migration latency from the measured numbers.
``--latency-profile`` delays every command to that profile instead.
"""

import argparse
import collections.abc
import dataclasses
import json
import os
import sys
import tempfile
import time
import typing as ty

from cryptography.hazmat.primitives import serialization

from nova_vtpm_migration.cmd import output
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import profiles
from nova_vtpm_migration.tpm import verify
from tests.support import attestation
from tests.support import swtpm
from tools.bench import stats

PCRS = (0, 1, 2, 3, 7, 16)


def _time(fn: collections.abc.Callable[[], object],
          runs: int) -> dict[str, float]:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    summary = stats.summarize(samples)
    return {'median_ms': summary.median, 'p95_ms': summary.p95,
            'min_ms': summary.minimum, 'max_ms': summary.maximum,
            'runs': summary.n}


_Op = tuple[str, str, collections.abc.Callable[[], object]]


def _operations(tpm: host_mod.HostTpm,
                pol: policy_mod.TrustPolicy) -> list[_Op]:
    ident = dataclasses.replace(
        tpm.identity(), ak_certificate=attestation.default_ca().enroll(
            tpm, 'bench', [c.public_bytes(serialization.Encoding.PEM).decode()
                           for c in pol.ek_ca_certificates]))
    ak = ident.ak_public
    nonce = os.urandom(32)
    quote = tpm.quote(nonce)
    binding = tpm.certified_binding_key(nonce)
    signing = tpm.certified_signing_key(nonce)
    message = b'receipt ' * 32
    signature = tpm.sign(message)
    secret = os.urandom(32)
    wrapped = verify.wrap(binding.public, secret, b'bench')
    sealed = tpm.seal(secret)
    challenge = verify.make_credential(ident, secret)
    return [
        ('quote', 'tpm', lambda: tpm.quote(nonce)),
        ('verify_quote', 'software', lambda: verify.verify_quote(
            quote, ak, nonce, pol, None)),
        ('certify', 'tpm', lambda: tpm.certified_binding_key(nonce)),
        ('verify_binding_key', 'software', lambda: verify.verify_binding_key(
            binding, ak, nonce, pol, quote.pcr_values)),
        ('wrap', 'software', lambda: verify.wrap(binding.public, secret,
                                                 b'bench')),
        ('unwrap', 'tpm', lambda: tpm.unwrap(wrapped, b'bench')),
        ('sign', 'tpm', lambda: tpm.sign(message)),
        ('verify_signature', 'software', lambda: verify.verify_signature(
            signing.public, message, signature)),
        ('seal', 'tpm', lambda: tpm.seal(secret)),
        ('unseal', 'tpm', lambda: tpm.unseal(sealed)),
        ('verify_identity', 'software', lambda: verify.verify_identity(
            ident, pol)),
        ('make_credential', 'software', lambda: verify.make_credential(
            ident, secret)),
        ('activate_credential', 'tpm', lambda: tpm.activate_credential(
            challenge)),
    ]


def _commands(ctx: context.TpmContext,
              fn: collections.abc.Callable[[], object]) -> dict[str, ty.Any]:
    """The TPM commands of one call of ``fn`` and their projections."""
    with ctx.meter.window() as w:
        fn()
    return {'commands': w.result.counts,
            'projected_ms': {
                name: round(profiles.project(p, w.result.class_counts).ms, 1)
                for name, p in profiles.PROFILES.items()}}


def run(runs: int, latency_profile: str | None = None) -> dict[str, ty.Any]:
    """Start an swtpm host, benchmark every operation, return the results.

    :param runs: timed runs per operation (after one warm-up run).
    :param latency_profile: delay every TPM command to this profile.
    """
    with swtpm.SwtpmCA('bench-ca') as ca, \
            swtpm.SwtpmHostTpm(ca, 'bench') as sim, \
            tempfile.TemporaryDirectory(prefix='nvm-bench-') as state:
        ctx = context.TpmContext(sim.tcti, latency_profile=latency_profile)
        try:
            tpm = host_mod.HostTpm(ctx, state, pcr_selection=PCRS)
            tpm.identity()
            pol = attestation.golden_policy(ca.bundle_pem(),
                                            tpm.pcr_values())
            results: dict[str, dict[str, ty.Any]] = {}
            for name, side, fn in _operations(tpm, pol):
                results[name] = {'side': side, **_time(fn, runs)}
                if side == 'tpm':
                    results[name].update(_commands(ctx, fn))
            leftover = context.loaded_handles(ctx)
            commands = ctx.meter.snapshot().as_dict()
        finally:
            ctx.meter.set_latency_profile(None)
            ctx.close()
    return {'runs': runs, 'tpm': 'swtpm (libtpms) over TCP',
            'latency_profile': latency_profile,
            'pcr_selection': list(PCRS), 'results': results,
            'tpm_commands': commands, 'leaked_handles': len(leftover)}


def format_table(report: dict[str, ty.Any]) -> str:
    """The results of :func:`run` as a text table (milliseconds)."""
    names = list(profiles.PROFILES)
    rows = [{'operation': name, 'side': r['side'],
             'median ms': f'{r["median_ms"]:.3f}',
             'p95 ms': f'{r["p95_ms"]:.3f}',
             'min ms': f'{r["min_ms"]:.3f}',
             'max ms': f'{r["max_ms"]:.3f}',
             'TPM commands': str(sum(r.get('commands', {}).values()) or ''),
             **{f'{p} ms': (f'{r["projected_ms"][p]:.0f}'
                            if 'projected_ms' in r else '') for p in names}}
            for name, r in report['results'].items()]
    delayed = report.get('latency_profile')
    return '\n'.join((
        f'TPM layer micro-benchmark: {report["tpm"]}'
        + (f' delayed to {delayed}' if delayed else '')
        + f', {report["runs"]} runs per operation after one warm-up; '
        'projected ms: the commands of one call on the hardware profiles '
        '(nova_vtpm_migration/tpm/profiles.py)',
        output.render_table(rows, ('operation', 'side', 'median ms',
                                   'p95 ms', 'min ms', 'max ms',
                                   'TPM commands',
                                   *(f'{p} ms' for p in names))),
        f'TPM handles left loaded: {report["leaked_handles"]}'))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog='python -m tools.bench.tpm',
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=20,
                        help='timed runs per operation (default 20)')
    parser.add_argument('--json', action='store_true',
                        help='print JSON instead of a table')
    parser.add_argument('--latency-profile', choices=sorted(
        profiles.PROFILES), help='delay every TPM command to this '
        'hardware profile (slow: seconds per operation)')
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error('--runs must be at least 1')
    os.environ.setdefault('TSS2_LOG', 'all+NONE')
    report = run(args.runs, args.latency_profile)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_table(report))
    return 0 if report['leaked_handles'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
