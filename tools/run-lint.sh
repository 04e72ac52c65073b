#!/usr/bin/env bash
# Static checks: ruff (with the bandit S rules), mypy --strict on the
# package, reno lint, shellcheck on every shell script.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin
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
