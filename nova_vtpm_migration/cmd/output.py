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

"""Output helpers of the operator CLI: ``--format table|json``."""

import json
import sys
import typing as ty

Row = ty.Mapping[str, ty.Any]


def _cell(value: ty.Any) -> str:
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if value is None:
        return '-'
    if isinstance(value, (list, tuple)):
        return ', '.join(_cell(v) for v in value)
    return str(value)


def render_table(rows: ty.Sequence[Row], columns: ty.Sequence[str]) -> str:
    """Render *rows* as a plain-text table with the given *columns*."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells])
              for i, c in enumerate(columns)]
    line = '+-' + '-+-'.join('-' * w for w in widths) + '-+'
    out = [line,
           '| ' + ' | '.join(c.ljust(w) for c, w in zip(columns, widths,
                                                       strict=True)) + ' |',
           line]
    for r in cells:
        out.append('| ' + ' | '.join(v.ljust(w) for v, w in zip(
            r, widths, strict=True)) + ' |')
    out.append(line)
    return '\n'.join(out)


def render_fields(record: Row) -> str:
    """Render one record as a two-column Field/Value table."""
    rows = [{'Field': k, 'Value': _cell(v)} for k, v in record.items()]
    return render_table(rows, ('Field', 'Value'))


def emit(data: Row | ty.Sequence[Row], fmt: str,
         columns: ty.Sequence[str] | None = None,
         stream: ty.TextIO | None = None) -> None:
    """Write *data* in the requested format.

    :param data: one record (mapping) or a list of records.
    :param fmt: ``table`` or ``json``.
    :param columns: the columns of a list in table format (default: the
        keys of the first record).
    """
    stream = stream or sys.stdout
    if fmt == 'json':
        stream.write(json.dumps(data, indent=2, sort_keys=True, default=str))
        stream.write('\n')
        return
    if isinstance(data, ty.Mapping):
        stream.write(render_fields(data) + '\n')
        return
    rows = list(data)
    if not rows:
        stream.write('(none)\n')
        return
    cols = list(columns) if columns else list(rows[0].keys())
    stream.write(render_table(rows, cols) + '\n')
