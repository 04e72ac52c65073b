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

"""Tests of the CLI output helpers and the demo reporter."""

import io
import json

import pytest

from nova_vtpm_migration.cmd import output
from tools import reporting


def test_table_aligns_columns() -> None:
    rows = [{'a': 'x', 'b': True}, {'a': 'long', 'b': None}]
    text = output.render_table(rows, ('a', 'b'))
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert '| long | -   |' in text and '| x    | yes |' in text


def test_emit_json_roundtrips() -> None:
    buf = io.StringIO()
    output.emit([{'k': 1}], 'json', stream=buf)
    assert json.loads(buf.getvalue()) == [{'k': 1}]


def test_emit_empty_list() -> None:
    buf = io.StringIO()
    output.emit([], 'table', stream=buf)
    assert buf.getvalue() == '(none)\n'


def test_reporter_fails_on_failed_check() -> None:
    buf = io.StringIO()
    rep = reporting.Reporter(buf)
    with rep.step('one', phase='p1'):
        pass
    rep.check('good', True)
    assert rep.ok
    rep.check('bad', False, 'reason')
    assert not rep.ok
    rep.summary()
    assert '1 CHECK(S) FAILED' in buf.getvalue()
    assert '[FAIL] bad (reason)' in buf.getvalue()


def test_reporter_without_checks_is_not_ok() -> None:
    assert not reporting.Reporter(io.StringIO()).ok


def test_step_reports_failure() -> None:
    buf = io.StringIO()
    rep = reporting.Reporter(buf)
    with pytest.raises(RuntimeError), rep.step('explodes'):
        raise RuntimeError('boom')
    assert 'failed after' in buf.getvalue() and 'boom' in buf.getvalue()
