from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
