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

# Install the Debian packages nova-vtpm-migration needs, only if missing.
# Idempotent and quick (one dpkg-query) when everything is present.
set -euo pipefail

# tpm2-abrmd, libtss2-tcti-tabrmd0 and dbus: a resource manager in front of
# swtpm (tests/functional/tpm/test_resource_manager.py); socat: a byte-stream
# transport for the cmd: TCTI (tests/functional/tpm/test_meter.py).
PACKAGES=(
    swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config
    qemu-system-x86 qemu-utils rabbitmq-server spin shellcheck
    python3-venv python3-dev gcc sqlite3
    tpm2-abrmd libtss2-tcti-tabrmd0 dbus socat
    # Real libvirt daemons for tests/reallibvirt and tests/nova/real_libvirt
    # (libvirt-dev and pkg-config also build libvirt-python); no
    # libvirt-daemon-system: the tests run their own daemons.
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev
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
