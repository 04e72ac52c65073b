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

"""The shipped package's import graph: layers point one way, no cycles.

The layers are the contract of ``doc/source/contributor/architecture.rst``:
Nova glue (``virt``, ``scheduler``, ``api``, ``cmd``) -> ``compute`` ->
``rpc`` -> ``protocol`` -> ``tpm``; the shared modules (``conf``,
``exception``, ``i18n``, ``fileutils``) import none of them.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'nova_vtpm_migration'
SHARED = 0
LAYERS = {
    'conf': SHARED, 'exception': SHARED, 'i18n': SHARED,
    'fileutils': SHARED, '__init__': SHARED,
    'tpm': 1, 'protocol': 2, 'rpc': 3, 'compute': 4,
    'virt': 5, 'scheduler': 5, 'api': 5, 'cmd': 5,
}


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every module of the package *path* imports (also inside functions
    and ``TYPE_CHECKING`` blocks)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            found.add(base)
            found.update(f'{base}.{a.name}' for a in node.names)
    return {name for name in found
            if name.startswith('nova_vtpm_migration')}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
    return {name: {dep for dep in _imports(path) if dep in modules
                   and dep != name}
            for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split('.')
    top = parts[1] if len(parts) > 1 else '__init__'
    return LAYERS[top]


def test_every_package_has_a_layer() -> None:
    for module in _graph():
        _layer(module)   # KeyError names a package the contract misses


@pytest.mark.parametrize('module, deps', sorted(_graph().items()))
def test_no_upward_import(module: str, deps: set[str]) -> None:
    upward = sorted(d for d in deps
                    if _layer(d) > _layer(module) or (
                        _layer(module) == SHARED
                        and module.split('.')[1:2] != d.split('.')[1:2]
                        and _layer(d) != SHARED))
    assert upward == [], f'{module} imports a higher layer: {upward}'


def test_no_import_cycle() -> None:
    graph = _graph()
    # Importing a submodule imports its package first: count that edge.
    for module in list(graph):
        parent = module.rpartition('.')[0]
        if parent in graph:
            graph[module].discard(parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError('import cycle: ' + ' -> '.join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checks_can_fail() -> None:
    """An upward import and a cycle are found (the checks are not
    vacuous)."""
    assert _layer('nova_vtpm_migration.tpm.host') < _layer(
        'nova_vtpm_migration.protocol.engine')
    graph = _graph()
    assert 'nova_vtpm_migration.protocol.engine' in graph[
        'nova_vtpm_migration.compute.host']
