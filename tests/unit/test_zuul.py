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

"""Lint and structurally check the Zuul configuration (.zuul.yaml)."""

import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from nova_vtpm_migration.conf import vtpm_migration

ROOT = pathlib.Path(__file__).resolve().parents[2]
ZUUL = ROOT / '.zuul.yaml'
PROJECT = 'nova-vtpm-migration'

# Jobs defined upstream (zuul-jobs, devstack, tempest, whitebox) that this
# project's jobs may inherit from.
KNOWN_UPSTREAM_JOBS = {
    'base', 'unittests', 'openstack-tox', 'openstack-tox-py311',
    'openstack-tox-functional-py311', 'devstack', 'devstack-multinode',
    'devstack-tempest', 'tempest-multinode-full-py3',
    'whitebox-devstack-multinode', 'whitebox-devstack-multinode-base',
    'nova-whitebox',
}
DEVSTACK_PARENTS = {'devstack', 'devstack-multinode', 'devstack-tempest',
                    'tempest-multinode-full-py3',
                    'whitebox-devstack-multinode',
                    'whitebox-devstack-multinode-base', 'nova-whitebox'}
PIPELINES = ('check', 'gate', 'post', 'periodic', 'experimental')
VTPM_TEST_ID = ('tempest.api.compute.admin.test_live_migration.'
                'LiveMigrationWithVTPMTest.test_live_migration_with_vtpm')


def _load() -> list[dict[str, Any]]:
    data = yaml.safe_load(ZUUL.read_text())
    assert isinstance(data, list), '.zuul.yaml must be a list of items'
    return data


def _jobs() -> dict[str, dict[str, Any]]:
    jobs = {}
    for item in _load():
        if 'job' in item:
            job = item['job']
            assert job['name'] not in jobs, f'duplicate job {job["name"]}'
            jobs[job['name']] = job
    return jobs


def _pipeline_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for item in _load():
        project = item.get('project')
        if project is None:
            continue
        for pipeline in PIPELINES:
            for entry in project.get(pipeline, {}).get('jobs', []):
                if isinstance(entry, str):
                    found.append((pipeline, entry, {}))
                else:
                    (name, overrides), = entry.items()
                    found.append((pipeline, name, overrides or {}))
    return found


def _ancestry(name: str, jobs: dict[str, dict[str, Any]]) -> list[str]:
    chain = [name]
    while chain[-1] in jobs:
        parent = jobs[chain[-1]].get('parent', 'base')
        assert parent not in chain, f'parent cycle: {chain + [parent]}'
        chain.append(parent)
    return chain


def test_yamllint() -> None:
    files = [ZUUL, ROOT / '.yamllint', *sorted((ROOT / 'playbooks').glob(
        '*.yaml'))]
    proc = subprocess.run(
        [sys.executable, '-m', 'yamllint', '--strict', '-c',
         str(ROOT / '.yamllint'), *map(str, files)],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_pipeline_job_is_defined() -> None:
    jobs = _jobs()
    referenced = _pipeline_jobs()
    assert {p for p, _n, _o in referenced} >= {'check', 'gate'}
    for pipeline, name, _overrides in referenced:
        assert name in jobs or name in KNOWN_UPSTREAM_JOBS, (
            f'{pipeline} runs undefined job {name}')


def test_gate_jobs_run_in_check_and_vote() -> None:
    check = {n: o for p, n, o in _pipeline_jobs() if p == 'check'}
    for pipeline, name, overrides in _pipeline_jobs():
        if pipeline == 'gate':
            assert name in check, f'{name} gates but is not in check'
            assert overrides.get('voting', True), f'{name} gates non-voting'


@pytest.mark.parametrize('name', sorted(_jobs()))
def test_job_structure(name: str) -> None:
    jobs = _jobs()
    job = jobs[name]
    assert job.get('description', '').strip(), f'{name} has no description'
    assert name.startswith(PROJECT), f'{name} lacks the project prefix'
    chain = _ancestry(name, jobs)
    assert chain[-1] in KNOWN_UPSTREAM_JOBS, (
        f'{name}: parent {chain[-1]} is neither defined here nor a known '
        'upstream job')
    for key in ('run', 'pre-run', 'post-run'):
        runs = job.get(key, [])
        for playbook in [runs] if isinstance(runs, str) else runs:
            assert (ROOT / playbook).is_file(), f'{name}: no {playbook}'
    if not job.get('abstract') and chain[-1] == 'base':
        # our own Makefile jobs: the target must exist
        target = _inherited(name, jobs, 'vars')['make_target']
        makefile = (ROOT / 'Makefile').read_text()
        assert re.search(rf'^{target}:', makefile, re.M), (
            f'{name}: no make target {target}')


def _inherited(name: str, jobs: dict[str, dict[str, Any]],
               key: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for job in reversed([j for j in _ancestry(name, jobs) if j in jobs]):
        merged.update(jobs[job].get(key, {}))
    return merged


def _devstack_jobs() -> list[str]:
    jobs = _jobs()
    return [n for n in jobs
            if set(_ancestry(n, jobs)) & DEVSTACK_PARENTS]


def test_there_is_a_multinode_devstack_job() -> None:
    jobs = _jobs()
    multinode = [n for n in _devstack_jobs()
                 if 'multinode' in _ancestry(n, jobs)[-1]]
    assert multinode, 'no multinode devstack job'
    referenced = {n for _p, n, _o in _pipeline_jobs()}
    assert set(multinode) <= referenced


@pytest.mark.parametrize('name', _devstack_jobs())
def test_devstack_job(name: str) -> None:
    job = _jobs()[name]
    variables = job['vars']
    groups = [variables] + [g for g in job.get('group-vars', {}).values()
                            if 'devstack_plugins' in g]
    assert len(groups) == 2, 'the subnode must enable the plugins too'
    option_names = {o.name for o in vtpm_migration.ALL_OPTS}
    for group in groups:
        plugins = group['devstack_plugins']
        # this project's plugin, from this project
        assert PROJECT in plugins
        assert ('zuul.project.canonical_name' in plugins[PROJECT]
                or plugins[PROJECT].rstrip('/').endswith(PROJECT))
        assert plugins['barbican'].endswith('openstack/barbican')
        nova_conf = group['devstack_local_conf']['post-config']['$NOVA_CONF']
        libvirt = nova_conf['libvirt']
        assert libvirt['swtpm_enabled'] is True
        assert libvirt['swtpm_user'] and libvirt['swtpm_group']
        assert 'host' in libvirt['supported_tpm_secret_security'].split(',')
        assert nova_conf['key_manager']['backend'] == 'barbican'
        # only real [vtpm_migration] options
        assert set(nova_conf.get('vtpm_migration', {})) <= option_names
        localrc = group['devstack_localrc']
        settings = (ROOT / 'devstack' / 'settings').read_text()
        for var in localrc:
            if var.startswith('VTPM_MIGRATION_'):
                assert re.search(rf'^{var}=', settings, re.M), (
                    f'{var} is not a setting of devstack/settings')
    # nodes without a hardware TPM: swtpm, and a bundle that the pre-run
    # playbook writes (every node's EK CA) on every node
    pre_runs = job.get('pre-run', [])
    pre_runs = [pre_runs] if isinstance(pre_runs, str) else pre_runs
    playbooks = ''.join((ROOT / p).read_text() for p in pre_runs)
    for group in groups:
        localrc = group['devstack_localrc']
        if localrc.get('VTPM_MIGRATION_HOST_TPM') == 'swtpm':
            bundle = pathlib.PurePosixPath(
                localrc['VTPM_MIGRATION_EK_CA_BUNDLE'])
            assert bundle.name in playbooks, (
                f'no pre-run playbook writes {bundle}')
    regex = re.compile(variables['tempest_test_regex'].strip())
    assert regex.search(VTPM_TEST_ID)
    assert variables['tempest_concurrency'] == 1
    assert {'openstack/nova', 'openstack/barbican'} <= set(
        job['required-projects'])


#: The standard OpenStack project templates and the tox environment each
#: of their jobs runs (zuul-jobs/openstack-zuul-jobs).
TEMPLATE_ENVS = {
    'openstack-python3-jobs': {'pep8', 'py3'},
    'release-notes-jobs-python3': {'releasenotes'},
    'publish-openstack-docs-pti': {'docs'},
}


def test_standard_templates_have_their_tox_environments() -> None:
    import configparser

    templates = [t for item in _load() if 'project' in item
                 for t in item['project'].get('templates', [])]
    assert set(templates) == set(TEMPLATE_ENVS)
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / 'tox.ini')
    envs = {s.removeprefix('testenv:') for s in tox.sections()
            if s.startswith('testenv:')} | {'py3'}
    for template in templates:
        assert TEMPLATE_ENVS[template] <= envs, template
    for env in ('functional', 'genconfig', 'bindep'):
        assert env in envs
    # The tox environments run the Makefile's tools.
    text = (ROOT / 'tox.ini').read_text()
    for tool in ('tools/run-tests.sh', 'tools/run-lint.sh',
                 'etc/nova-vtpm-migration-config-generator.conf'):
        assert tool in text and (ROOT / tool).exists(), tool
    assert (ROOT / 'bindep.txt').exists()
