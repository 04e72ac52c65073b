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


"""Shared machinery of the fuzz tests: the example budget, the input
counter, the "only documented errors escape" oracle, and hypothesis
strategies generating valid values of any wire schema
(:mod:`nova_vtpm_migration.protocol.wire`).

The budget is ``NVM_FUZZ_EXAMPLES`` examples per weight unit (default 60,
a few thousand inputs over the whole CI run); the full campaign
(``python -m nova_vtpm_migration.cmd.campaign --fuzz``) raises it so
that more than 100,000 inputs are generated.
"""

import collections
import collections.abc
import json
import os
import string
import threading
import typing as ty

import hypothesis
from hypothesis import strategies as st

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import wire

#: Examples per weight unit.
BASE = int(os.environ.get('NVM_FUZZ_EXAMPLES', '60'))
#: The run's seed (``NVM_FUZZ_SEED``; ``make campaign`` draws a fresh one
#: and prints it). Without one, every run draws the same inputs (``make
#: test`` stays reproducible); with one, the inputs of that seed, so a
#: finding of a campaign is replayed with the seed it printed.
SEED: int | None = (int(os.environ['NVM_FUZZ_SEED'])
                    if os.environ.get('NVM_FUZZ_SEED') else None)
#: Executed inputs per test (printed at the end of the run).
COUNTS: collections.Counter[str] = collections.Counter()
#: Inputs that hit a known, reported finding (see :data:`KNOWN`).
FINDINGS: collections.Counter[str] = collections.Counter()

#: Undocumented exceptions found by fuzzing, reported upstream and each
#: pinned by a strict ``xfail`` regression test: (exception type, text in
#: the message, description). When a fix lands the regression test
#: XPASSes (strict: fails) and the entry must be removed. Empty: every one
#: found so far is fixed, with regression tests in ``test_verify.py`` and
#: ``test_receipts.py``.
KNOWN: list[tuple[type[BaseException], str, str]] = []


def note_finding(finding: str) -> None:
    """Count one input that hit a known finding detected by a property
    (not by an exception)."""
    with _LOCK:
        FINDINGS[finding] += 1


_LOCK = threading.Lock()


def budget(weight: float = 1.0) -> hypothesis.settings:
    """Hypothesis settings with weight x the base example budget."""
    return hypothesis.settings(
        max_examples=max(10, int(BASE * weight)), deadline=None,
        database=None, derandomize=SEED is None,
        suppress_health_check=list(hypothesis.HealthCheck))


def tick(name: str) -> None:
    """Count one executed input of fuzz target ``name``."""
    with _LOCK:
        COUNTS[name] += 1


def refused_or_ok(name: str, fn: collections.abc.Callable[..., ty.Any],
                  *args: ty.Any, **kwargs: ty.Any) -> tuple[bool, ty.Any]:
    """Run one fuzz input.

    :returns: (True, result) when accepted, (False, exc) when refused with
        a documented error (a ``VtpmMigrationException`` subclass). Any
        other exception propagates and fails the test.
    """
    tick(name)
    try:
        return True, fn(*args, **kwargs)
    except exception.VtpmMigrationException as exc:
        # The error text must render (msg_fmt complete) and stay short.
        text = str(exc)
        assert text and len(text) < 4096, text[:200]
        return False, exc
    except Exception as exc:
        for kind, text, finding in KNOWN:
            if isinstance(exc, kind) and text in str(exc):
                with _LOCK:
                    FINDINGS[finding] += 1
                return False, exc
        raise


# -- valid values of a wire schema ------------------------------------------

_PRINTABLE = st.characters(min_codepoint=32, max_codepoint=0x2ff).filter(
    str.isprintable)
_UUID_FIELDS = frozenset({'migration_id', 'instance_uuid'})


def field_values(field: wire.Field, name: str = '',
                 cap: int = 96) -> st.SearchStrategy[ty.Any]:
    """A strategy of valid Python values of one field."""
    if field.kind == wire.BYTES:
        return st.binary(min_size=field.min,
                         max_size=max(field.min, min(field.max, cap)))
    if field.kind == wire.STR:
        if field.choices is not None:
            return st.sampled_from(sorted(field.choices))
        if name in _UUID_FIELDS:
            return st.uuids().map(str)
        return st.text(_PRINTABLE, min_size=field.min,
                       max_size=max(field.min, min(field.max, 40)))
    if field.kind == wire.INT:
        return st.integers(field.min, field.max)
    if field.kind == wire.LIST:
        assert field.item is not None
        return st.lists(field_values(field.item, name, cap),
                        max_size=min(field.max, 3))
    assert field.schema is not None
    return schema_values(field.schema, cap)


def schema_values(schema: wire.Schema, cap: int = 96
                  ) -> st.SearchStrategy[dict[str, ty.Any]]:
    """A strategy of valid Python structures of ``schema``."""
    return st.fixed_dictionaries({name: field_values(f, name, cap)
                                  for name, f in schema.items()})


# -- mutations ----------------------------------------------------------------

#: JSON values of every type, including ones no schema accepts.
JUNK: st.SearchStrategy[ty.Any] = st.recursive(
    st.one_of(st.none(), st.booleans(),
              st.integers(min_value=-2 ** 70, max_value=2 ** 70),
              st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=20), st.just('A' * 70000),
              st.just('-' * 12), st.just('AA=='), st.just('\u00e9')),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner,
                                            max_size=3)),
    max_leaves=6)


def paths(value: ty.Any, prefix: tuple[ty.Any, ...] = ()
          ) -> list[tuple[ty.Any, ...]]:
    """Every path (tuple of keys/indices) into a JSON value."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(paths(v, prefix + (k,)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(paths(v, prefix + (i,)))
    return out


def _copy(value: ty.Any) -> ty.Any:
    return json.loads(json.dumps(value))


@st.composite
def mutated_json(draw: st.DrawFn, value: ty.Any) -> ty.Any:
    """One structural mutation of a JSON value: delete, add an unknown
    key, replace with a value of another type, oversize, or change an
    integer to a boundary value."""
    value = _copy(value)
    path = draw(st.sampled_from(paths(value)))
    op = draw(st.sampled_from(('delete', 'add', 'replace', 'oversize',
                               'boundary', 'wrap')))
    if not path:
        if op == 'wrap':
            return [value]
        return draw(JUNK)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    current = parent[key]
    if op == 'delete':
        del parent[key]
    elif op == 'add' and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(JUNK)
    elif op == 'oversize' and isinstance(current, str):
        parent[key] = current * draw(st.integers(2, 600))
    elif op == 'oversize' and isinstance(current, list):
        parent[key] = current * draw(st.integers(2, 40)) + [draw(JUNK)]
    elif op == 'boundary' and isinstance(current, int):
        parent[key] = draw(st.sampled_from(
            (-1, 0, 1, 2, 3, 255, 256, 2 ** 31, 2 ** 48 + 1, 2 ** 63,
             2 ** 64, -2 ** 63 - 1)))
    elif op == 'wrap':
        parent[key] = [current] if draw(st.booleans()) else {'x': current}
    else:
        parent[key] = draw(JUNK)
    return value


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """One to four byte-level mutations: flip, insert, delete, truncate,
    duplicate a slice, or splice random bytes; never the input itself."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(('flip', 'insert', 'delete', 'truncate',
                                   'dup', 'splice')))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == 'flip' and buf:
            buf[pos] ^= draw(st.integers(1, 255))
        elif op == 'insert':
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 'delete' and buf:
            del buf[pos:pos + draw(st.integers(1, 16))]
        elif op == 'truncate':
            del buf[pos:]
        elif op == 'dup' and buf:
            end = pos + draw(st.integers(1, 32))
            buf[pos:pos] = buf[pos:end]
        else:
            buf[pos:pos + 4] = draw(st.binary(max_size=4))
    if bytes(buf) == data:
        # a splice may write back the same bytes: always change something
        buf = bytearray(data) + b'\x00' if not data else bytearray(data)
        if data:
            buf[0] ^= 0xff
    return bytes(buf)


def dumps_any(value: ty.Any, canonical: bool = True) -> bytes:
    """Serialise a (possibly invalid) JSON value, canonically or not."""
    if canonical:
        return json.dumps(value, sort_keys=True, separators=(',', ':'),
                          ensure_ascii=True).encode('ascii')
    return json.dumps(value, indent=1).encode('utf-8')


__all__ = ['BASE', 'COUNTS', 'JUNK', 'budget', 'dumps_any', 'field_values',
           'mutated_bytes', 'mutated_json', 'paths', 'refused_or_ok',
           'schema_values', 'string', 'tick']
