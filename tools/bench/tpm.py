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

    python -m tools.bench.tpm [--runs 20] [--json]

Starts its own swtpm host TPM (EK certificate from a private
``swtpm_localca`` in a temporary directory), then times every operation of
:mod:`nova_vtpm_migration.tpm` -- TPM-side (quote, certify, ECDH unwrap,
sign, seal, unseal, credential activation) and software verification --
``--runs`` times after one warm-up run, and prints the median, p95, min and
max as a table, or as JSON with ``--json``. swtpm is 100-1000x faster than
a hardware TPM; do not budget migration latency from these numbers.
"""

import argparse
import collections.abc
import json
import os
import sys
import tempfile
import time
import typing as ty

from nova_vtpm_migration.cmd import output
from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
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
    ident = tpm.identity()
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


def run(runs: int) -> dict[str, ty.Any]:
    """Start an swtpm host, benchmark every operation, return the results.

    :param runs: timed runs per operation (after one warm-up run).
    """
    with swtpm.SwtpmCA('bench-ca') as ca, \
            swtpm.SwtpmHostTpm(ca, 'bench') as sim, \
            tempfile.TemporaryDirectory(prefix='nvm-bench-') as state:
        ctx = context.TpmContext(sim.tcti)
        try:
            tpm = host_mod.HostTpm(ctx, state, pcr_selection=PCRS)
            tpm.identity()
            pol = policy_mod.TrustPolicy.from_golden(ca.bundle_pem(),
                                                     tpm.pcr_values())
            results: dict[str, dict[str, ty.Any]] = {}
            for name, side, fn in _operations(tpm, pol):
                results[name] = {'side': side, **_time(fn, runs)}
            leftover = context.loaded_handles(ctx)
            commands = {name: {'count': s.count,
                               'mean_ms': s.mean * 1000}
                        for name, s in sorted(ctx.stats.items())}
        finally:
            ctx.close()
    return {'runs': runs, 'tpm': 'swtpm (libtpms) over TCP',
            'pcr_selection': list(PCRS), 'results': results,
            'tpm_commands': commands, 'leaked_handles': len(leftover)}


def format_table(report: dict[str, ty.Any]) -> str:
    """The results of :func:`run` as a text table (milliseconds)."""
    rows = [{'operation': name, 'side': r['side'],
             'median ms': f'{r["median_ms"]:.3f}',
             'p95 ms': f'{r["p95_ms"]:.3f}',
             'min ms': f'{r["min_ms"]:.3f}',
             'max ms': f'{r["max_ms"]:.3f}'}
            for name, r in report['results'].items()]
    return '\n'.join((
        f'TPM layer micro-benchmark: {report["tpm"]}, {report["runs"]} '
        'runs per operation after one warm-up',
        output.render_table(rows, ('operation', 'side', 'median ms',
                                   'p95 ms', 'min ms', 'max ms')),
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
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error('--runs must be at least 1')
    os.environ.setdefault('TSS2_LOG', 'all+NONE')
    report = run(args.runs)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_table(report))
    return 0 if report['leaked_handles'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
