#!/usr/bin/env bash
# Install the Debian packages nova-vtpm-migration needs, only if missing.
# Idempotent and quick (one dpkg-query) when everything is present.
set -euo pipefail

PACKAGES=(
    swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config
    qemu-system-x86 qemu-utils rabbitmq-server spin shellcheck
    python3-venv python3-dev gcc sqlite3
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    SUDO=(sudo)
fi
echo "Installing Debian packages: ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
# policy-rc.d style: never start rabbitmq-server from the package scripts;
# the tests start and stop their own broker on loopback.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
