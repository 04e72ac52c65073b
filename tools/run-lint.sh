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

# Static checks: ruff (with the bandit S rules), mypy --strict on the
# package, reno lint, shellcheck on every shell script.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${VTPM_PYTHON:+$(dirname "$VTPM_PYTHON")}
V=${V:-.venv/bin}
echo "=== ruff"
mapfile -t ruff_paths < <(ls -d nova_vtpm_migration nova tests tools \
    2>/dev/null)
"$V/ruff" check "${ruff_paths[@]}"
echo "=== mypy"
"$V/mypy"
echo "=== reno lint"
out=$("$V/reno" lint 2>&1) || { echo "$out"; exit 1; }
echo "=== shellcheck"
mapfile -t scripts < <(git ls-files '*.sh' .ci/run devstack/plugin.sh \
    devstack/settings 2>/dev/null | sort -u)
if [[ ${#scripts[@]} -gt 0 ]]; then
    shellcheck -x "${scripts[@]}"
fi
echo "lint: clean"
