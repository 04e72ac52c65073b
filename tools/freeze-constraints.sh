#!/usr/bin/env bash
# Print a constraints file from the current virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
head -5 constraints.txt | grep '^#'
.venv/bin/pip freeze --exclude-editable \
    | grep -v -i -E '^(nova-vtpm-migration|pip|setuptools|wheel)=='
