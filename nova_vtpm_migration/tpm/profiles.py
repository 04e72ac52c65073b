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

"""Per-command latency profiles of hardware TPMs, with their sources.

swtpm answers in well under a millisecond what a discrete TPM takes tens
to thousands of milliseconds for, so protocol timings measured on swtpm say
little about a real host. A :class:`Profile` gives every TPM command (or
command *class*, see :func:`~nova_vtpm_migration.tpm.meter.command_class`)
a figure in milliseconds and names where the figure comes from.

Two uses, both for benchmarks and tests only (no product option selects a
profile):

* :func:`project` sums the figures over a command histogram recorded by a
  :class:`~nova_vtpm_migration.tpm.meter.TpmMeter`: the time the same
  commands would take on that TPM, without sleeping;
* :class:`~nova_vtpm_migration.tpm.meter.MeteredTcti` can delay every
  command to its figure, for end-to-end runs at hardware speed
  (``TpmContext(tcti, latency_profile='dtpm_slow')``).

Profiles:

``dtpm_slow``
    A slow discrete TPM on SPI, Infineon SLB9670 / ST33TPHF2X class. The
    asymmetric operations are wolfTPM's published benchmark of the SLB9670
    (ST33TP in the comments); the fixed cost of commands without
    cryptography is go-tpm-tools' 3 ms for using a persisted key on a real
    TPM. Everything else is an assumption stated next to its figure.
``ftpm``
    A firmware TPM (Intel PTT, AMD fTPM): ``dtpm_slow`` divided by 7, the
    ratio irlume measured between an STMicro discrete TPM and a firmware TPM
    on the same policy work, with a 0.5 ms floor (a mailbox round trip),
    except RSA key generation (see its comment).

These are planning figures, not a substitute for measuring the host's TPM:
discrete TPMs of one vendor differ by 3x (wolfTPM's table), firmware TPMs
by more.
"""

import collections.abc
import dataclasses

#: Where the figures come from (key -> citation).
SOURCES: dict[str, str] = {
    'wolftpm': 'wolfSSL/wolfTPM README.md, "TPM2 Benchmarks" '
               '(examples/bench): Infineon OPTIGA SLB9670 at 43 MHz SPI '
               '(ST33TP SPI at 33 MHz for comparison); "key generation is '
               'using existing template from hierarchy seed", i.e. '
               'CreatePrimary',
    'go-tpm-tools': 'google/go-tpm-tools PR #28 (2019), real TPM: using a '
                    'persisted SRK/EK 3.1 ms; RSA SRK/EK CreatePrimary '
                    '2.3-3.0 s',
    'irlume': 'archledger/irlume issue #246 and PR #247 (2026): one '
              'policy-branch derivation takes 0.64 s on an STMicro discrete '
              'TPM (STM0176) and 0.09 s on a firmware TPM (MSFT0101): about '
              '7x',
    'assumption': 'assumption of nova_vtpm_migration.tpm.profiles (no '
                  'published per-command figure found); the reasoning is '
                  'in the comment next to the figure',
}


@dataclasses.dataclass(frozen=True)
class Figure:
    """The cost of one command on a profile's TPM.

    :ivar ms: milliseconds per command.
    :ivar source: key of :data:`SOURCES` the figure comes from.
    :ivar note: how the figure was derived from the source.
    """

    ms: float
    source: str
    note: str = ''


@dataclasses.dataclass(frozen=True)
class Profile:
    """Per-command figures of one kind of TPM.

    :ivar name: the name it is selected by.
    :ivar description: what kind of TPM it stands for.
    :ivar figures: command class -> :class:`Figure`; a class is a TPM
        command name (``Quote``) optionally refined by ``/``-separated
        variants (``CreatePrimary/ECC/NIST_P384``).
    :ivar default: the figure of commands not in ``figures``.
    """

    name: str
    description: str
    figures: collections.abc.Mapping[str, Figure]
    default: Figure

    def figure(self, command_class: str) -> Figure:
        """The figure of ``command_class``: the most specific entry that
        is a prefix of it (``CreatePrimary/ECC/NIST_P384`` falls back to
        ``CreatePrimary/ECC``, then ``CreatePrimary``), else the default.
        """
        parts = command_class.split('/')
        while parts:
            found = self.figures.get('/'.join(parts))
            if found is not None:
                return found
            parts.pop()
        return self.default

    def sources(self) -> dict[str, str]:
        """The :data:`SOURCES` entries this profile's figures cite."""
        keys = {f.source for f in self.figures.values()}
        keys.add(self.default.source)
        return {k: SOURCES[k] for k in sorted(keys)}


def _f(ms: float, source: str, note: str = '') -> Figure:
    return Figure(ms, source, note)


_FIXED = 3.0   # go-tpm-tools: a command without cryptography on a dTPM

_DTPM_SLOW: dict[str, Figure] = {
    # Asymmetric key generation (CreatePrimary and Create alike: the
    # same prime search or point multiplication).
    'CreatePrimary/RSA': _f(2196, 'wolftpm', 'SLB9670 RSA-2048 key gen; '
                            'ST33TP 7455; go-tpm-tools 2325-3047'),
    'CreatePrimary/ECC': _f(231, 'wolftpm', 'SLB9670 ECC-256 key gen; '
                            'ST33TP 220'),
    'CreatePrimary/ECC/NIST_P384': _f(
        520, 'assumption', 'P-256 key gen (wolfTPM 231) x 2.25: scalar '
        'multiplication cost grows with the square of the field size'),
    'Create/RSA': _f(2196, 'wolftpm', 'as CreatePrimary/RSA'),
    'Create/ECC': _f(231, 'wolftpm', 'as CreatePrimary/ECC; wrapping the '
                     'private area under the parent is small'),
    'Create/KEYEDHASH': _f(25, 'assumption', 'a sealed data object: no key '
                           'generation, KDF + AES-CFB + HMAC of the private '
                           'area, plus parameter decryption'),
    'Load': _f(20, 'assumption', 'decrypt and integrity-check the private '
               'area under the parent (symmetric only)'),
    'LoadExternal': _f(10, 'assumption', 'public part only'),
    # Private-key operations.
    'Sign': _f(69, 'wolftpm', 'SLB9670 ECDSA-256 sign 68.9; ST33TP 42.3'),
    'Quote': _f(75, 'wolftpm', 'one ECDSA-256 sign by the AK (69) + PCR '
                'composite hash and attestation structure (6, assumption)'),
    'Certify': _f(75, 'wolftpm', 'one ECDSA-256 sign by the AK (69) + '
                  'attestation structure (6, assumption)'),
    'ECDH_ZGen': _f(232, 'wolftpm', 'SLB9670 ECDHE-256 agree; ST33TP 247'),
    'RSA_Decrypt': _f(167, 'wolftpm', 'SLB9670 RSA-2048 OAEP decrypt'),
    'ActivateCredential/RSA': _f(175, 'wolftpm', 'RSA-2048 OAEP decrypt of '
                                 'the seed (167) + KDFa, HMAC and AES of '
                                 'the credential (8, assumption)'),
    'ActivateCredential/ECC': _f(240, 'wolftpm', 'ECDH-256 of the seed '
                                 '(232) + KDFe, HMAC and AES (8, '
                                 'assumption)'),
    # Sessions and policies.
    'StartAuthSession/salted': _f(240, 'wolftpm', 'decrypting the salt '
                                  'with the ECC SRK is one ECDH (232) + '
                                  'session set-up (8, assumption)'),
    'StartAuthSession/unsalted': _f(5, 'assumption', 'nonce from the RNG '
                                    '(wolfTPM SLB9670 RNG 14 KB/s: 32 B '
                                    'in 2.3 ms) + fixed cost'),
    'PolicyPCR': _f(10, 'assumption', 'hash of the selected PCRs '
                    '(wolfTPM SLB9670 SHA-256 137 KB/s) + digest update + '
                    'fixed cost'),
    'PolicySecret': _f(10, 'assumption', 'HMAC check of the hierarchy '
                       'authorisation + digest update + fixed cost'),
    'Unseal': _f(10, 'assumption', 'symmetric only, with response '
                 'encryption'),
    # Commands without cryptography.
    'GetCapability': _f(_FIXED, 'go-tpm-tools', 'fixed cost'),
    'PCR_Read': _f(_FIXED, 'go-tpm-tools', 'fixed cost'),
    'FlushContext': _f(_FIXED, 'go-tpm-tools', 'fixed cost'),
    'ReadPublic': _f(_FIXED, 'go-tpm-tools', 'persisted key: 3.1 ms'),
    'NV_ReadPublic': _f(_FIXED, 'go-tpm-tools', 'fixed cost'),
    'PolicyGetDigest': _f(_FIXED, 'go-tpm-tools', 'fixed cost'),
    'GetRandom': _f(5, 'wolftpm', 'RNG 14 KB/s on the SLB9670 (32 B in '
                    '2.3 ms) + fixed cost'),
    # NV.
    'NV_Read': _f(10, 'assumption', 'one chunk of at most 512 B from NV '
                  'over SPI + fixed cost'),
    'EvictControl': _f(50, 'assumption', 'an NV write (only when the SRK '
                       'or AK is created)'),
}

DTPM_SLOW = Profile(
    name='dtpm_slow',
    description='slow discrete TPM on SPI (Infineon SLB9670 / '
                'ST33TPHF2X class)',
    figures=_DTPM_SLOW,
    default=_f(10, 'assumption', 'an unlisted command costs as much as a '
               'policy command'))

#: The dTPM/fTPM ratio of the irlume measurement.
_FTPM_RATIO = 7.0
_FTPM_FLOOR = 0.5


def _ftpm(figure: Figure) -> Figure:
    ms = max(_FTPM_FLOOR, round(figure.ms / _FTPM_RATIO, 2))
    return Figure(ms, 'irlume', f'dtpm_slow {figure.ms:g} ms '
                  f'({figure.source}) / {_FTPM_RATIO:g}')


_FTPM: dict[str, Figure] = {k: _ftpm(v) for k, v in _DTPM_SLOW.items()}
for _key in ('CreatePrimary/RSA', 'Create/RSA'):
    # RSA key generation is a randomised prime search whose cost
    # varies most between firmware TPMs (irlume's code notes more than 10 s
    # on slow ones); assume only half of the dTPM's time, not 1/7.
    _FTPM[_key] = _f(1100, 'assumption', 'half of dtpm_slow 2196 ms '
                     '(wolftpm): RSA key generation on firmware TPMs varies '
                     'too much to scale')

FTPM = Profile(
    name='ftpm',
    description='firmware TPM (Intel PTT / AMD fTPM class)',
    figures=_FTPM,
    default=_ftpm(DTPM_SLOW.default))

#: The profiles by name.
PROFILES: dict[str, Profile] = {p.name: p for p in (DTPM_SLOW, FTPM)}


def get(name: str) -> Profile:
    """The profile called ``name``.

    :raises ValueError: no such profile (the message lists the names).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f'unknown TPM latency profile {name!r}; known: '
                         f'{", ".join(sorted(PROFILES))}') from None


@dataclasses.dataclass(frozen=True)
class ProjectionRow:
    """One command class of a :class:`Projection`."""

    command_class: str
    count: int
    ms_each: float
    source: str

    @property
    def ms(self) -> float:
        """Milliseconds of all ``count`` commands."""
        return self.count * self.ms_each


@dataclasses.dataclass(frozen=True)
class Projection:
    """What a command histogram would cost on a profile's TPM.

    :ivar profile: the profile's name.
    :ivar rows: one row per command class, most expensive first.
    """

    profile: str
    rows: tuple[ProjectionRow, ...]

    @property
    def ms(self) -> float:
        """Total projected milliseconds (sum of the rows)."""
        return sum(r.ms for r in self.rows)

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly form: total ms and ms per command class."""
        return {'ms': round(self.ms, 3),
                'commands': {r.command_class: {
                    'count': r.count, 'ms_each': r.ms_each,
                    'ms': round(r.ms, 3), 'source': r.source}
                    for r in self.rows}}


def project(profile: Profile | str,
            histogram: collections.abc.Mapping[str, int]) -> Projection:
    """Sum the profile's figures over a command histogram.

    The TPM is assumed busy with one command at a time (a TPM executes
    commands sequentially), so the projection is the TPM time of the
    histogram; the host's own work comes on top.

    :param profile: a :class:`Profile` or its name.
    :param histogram: command class -> count, e.g.
        ``snapshot.class_counts`` of a
        :class:`~nova_vtpm_migration.tpm.meter.MeterSnapshot`.
    :raises ValueError: unknown profile name or a negative count.
    """
    prof = get(profile) if isinstance(profile, str) else profile
    rows = []
    for command_class, count in histogram.items():
        if count < 0:
            raise ValueError(f'negative count for {command_class}')
        if count == 0:
            continue
        fig = prof.figure(command_class)
        rows.append(ProjectionRow(command_class, count, fig.ms, fig.source))
    rows.sort(key=lambda r: (-r.ms, r.command_class))
    return Projection(prof.name, tuple(rows))
