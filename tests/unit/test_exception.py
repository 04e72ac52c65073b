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
