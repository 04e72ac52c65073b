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

"""Tests of the exception base class."""

from nova_vtpm_migration import exception


class _Example(exception.VtpmMigrationException):
    msg_fmt = 'host %(host)s refused: %(reason)s'


def test_msg_fmt_is_formatted() -> None:
    exc = _Example(host='b', reason='PCR 7 mismatch')
    assert str(exc) == 'host b refused: PCR 7 mismatch'
    assert exc.kwargs == {'host': 'b', 'reason': 'PCR 7 mismatch'}


def test_missing_argument_keeps_template() -> None:
    exc = _Example(host='b')
    assert str(exc) == _Example.msg_fmt


def test_explicit_message_wins() -> None:
    assert str(_Example('plain')) == 'plain'


def test_policy_file_error_is_configuration_error() -> None:
    exc = exception.PolicyFileError(path='/p.json', reason='no version')
    assert isinstance(exc, exception.ConfigurationError)
    assert '/p.json' in str(exc) and 'no version' in str(exc)
