"""Fixtures of the operator CLI tests."""

from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.functional.swtpm_fixtures import untrusted_ca  # noqa: F401
