"""The compute driver builds its engine from nova.conf as the CLI does."""

import collections.abc
import json
import pathlib

from nova import rpc as nova_rpc
from oslo_config import cfg
import oslo_messaging as messaging
import pytest

from nova_vtpm_migration import conf as nvm_conf
from nova_vtpm_migration import service as host_service
from nova_vtpm_migration.sim import swtpm
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.virt import engine_factory
from nova_vtpm_migration.virt import errors

CONF = nvm_conf.CONF


@pytest.fixture
def configured(swtpm_ca: swtpm.SwtpmCA, tmp_path: pathlib.Path,
               monkeypatch: pytest.MonkeyPatch
               ) -> collections.abc.Iterator[pathlib.Path]:
    sim = swtpm.SwtpmHostTpm(swtpm_ca, 'factory', clone=True)
    doc = policy_mod.TrustPolicy.document(
        swtpm_ca.bundle_pem(), [('fresh', {0: bytes(32), 7: bytes(32)})])
    policy_file = tmp_path / 'policy.json'
    policy_file.write_text(json.dumps(doc))
    overrides = {'tcti': sim.tcti, 'policy_file': str(policy_file),
                 'state_path': str(tmp_path / 'state')}
    for name, value in overrides.items():
        CONF.set_override(name, value, group='vtpm_migration')
    transport = messaging.get_rpc_transport(cfg.ConfigOpts(), url='fake:/')
    monkeypatch.setattr(nova_rpc, 'TRANSPORT', transport)
    try:
        yield tmp_path
    finally:
        for name in overrides:
            CONF.clear_override(name, group='vtpm_migration')
        transport.cleanup()
        sim.stop()


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
