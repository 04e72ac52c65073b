#!/usr/bin/env bash
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

# Run the whole test suite with every runner it needs and print one summary
# line per runner plus a total. Exits non-zero on any failure, and when a
# runner ran no test at all.
#
#   pytest: tests/unit, tests/functional, tests/integration (real swtpm,
#           QEMU, RabbitMQ, spin where they run here), tests/reallibvirt
#           (real libvirt daemons)
#   stestr: tests/nova (subclasses of Nova's own functional test classes,
#           which pytest cannot run; see README "Test runners"), including
#           tests/nova/real_libvirt (computes on real libvirt daemons)
#
# Extra arguments are passed to pytest.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# tox sets VTPM_PYTHON to its environment's interpreter; VTPM_PYTEST_PATHS
# narrows the pytest tiers (tox -e functional leaves out tests/unit).
PY=${VTPM_PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
read -r -a PYTEST_PATHS <<<"${VTPM_PYTEST_PATHS:-tests}"
export TSS2_LOG=${TSS2_LOG:-all+NONE}
export PYTHONDONTWRITEBYTECODE=1
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

failed=0

echo "=== pytest: unit, functional and integration tests"
"$PY" -m pytest "${PYTEST_PATHS[@]}" -p no:cacheprovider --ignore=tests/nova \
    --junitxml="$results/pytest.xml" "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
    echo "pytest: no tests were collected - this is a failure"
    failed=1
elif [[ $rc -ne 0 ]]; then
    failed=1
fi

if compgen -G "tests/nova/test_*.py" >/dev/null; then
    echo "=== stestr: Nova functional tests (in-process Nova services)"
    rm -rf .stestr
    "$BIN/stestr" --test-path tests/nova --top-dir . init >/dev/null
    "$BIN/stestr" --test-path tests/nova --top-dir . run \
        --concurrency "${NOVA_TEST_CONCURRENCY:-1}"
    rc=$?
    "$BIN/stestr" last --subunit 2>/dev/null \
        | "$BIN/subunit-stats" > "$results/stestr.stats" 2>/dev/null
    [[ $rc -ne 0 ]] && failed=1
fi

"$PY" tools/summarize_junit.py "$results"/*.xml "$results"/*.stats \
    || failed=1
exit $failed
