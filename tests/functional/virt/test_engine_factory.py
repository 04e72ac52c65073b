"""The compute driver builds its engine from nova.conf as the CLI does."""

import pathlib

import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration import service as host_service
from nova_vtpm_migration.virt import engine_factory
from nova_vtpm_migration.virt import errors

CONF = nvm_conf.CONF


def test_build_from_config(configured: pathlib.Path) -> None:
    adapter = engine_factory.build('host-a')
    try:
        adapter.start()
        adapter.self_check()
        adapter.recover(lambda mid, inst: 'unknown')
        # The journal is where `nova-vtpm-migration journal ...` looks.
        journal = host_service.open_journal(CONF)
        journal.close()
    finally:
        adapter.close()


def test_bad_policy_makes_the_engine_unavailable(
        configured: pathlib.Path) -> None:
    (configured / 'policy.json').write_text('{"version": 99}')
    with pytest.raises(errors.EngineUnavailable, match='host-a'):
        engine_factory.build('host-a')
