#!/bin/bash
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

# ek-ca.sh CA_DIR [TPM_STATE_DIR]
#
# The swtpm "host TPM" of a DevStack node without a hardware TPM: a local
# EK CA in CA_DIR (created on first use, reused when it exists) and, given
# TPM_STATE_DIR, an swtpm state there with EK and platform certificates
# signed by that CA. Without TPM_STATE_DIR only the CA is created (the Zuul
# multinode job does that before DevStack runs, so that every node's CA
# certificate can be put in every node's trust bundle).
#
# Used by devstack/plugin.sh and playbooks/vtpm-ek-ca.yaml. Writes nothing
# outside the two directories.
set -euo pipefail

ca=${1:?usage: ek-ca.sh CA_DIR [TPM_STATE_DIR]}
tpm_dir=${2:-}

install -d -m 0700 "$ca"
cat > "$ca/swtpm-localca.conf" <<EOF
statedir = $ca
signingkey = $ca/signkey.pem
issuercert = $ca/issuercert.pem
certserial = $ca/certserial
EOF
cat > "$ca/swtpm-localca.options" <<EOF
--platform-manufacturer DevStack
--platform-version 2.1
--platform-model swtpm
EOF
cat > "$ca/swtpm_setup.conf" <<EOF
create_certs_tool = $(command -v swtpm_localca || echo /usr/bin/swtpm_localca)
create_certs_tool_config = $ca/swtpm-localca.conf
create_certs_tool_options = $ca/swtpm-localca.options
active_pcr_banks = sha256
EOF

scratch=
if [[ -z "$tpm_dir" ]]; then
    [[ -f "$ca/issuercert.pem" ]] && exit 0
    # swtpm_localca creates the CA when it first signs an EK certificate
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    tpm_dir=$scratch
fi
if [[ ! -f "$tpm_dir/tpm2-00.permall" ]]; then
    install -d -m 0700 "$tpm_dir"
    if ! swtpm_setup --tpm2 --tpmstate "$tpm_dir" --create-ek-cert \
            --create-platform-cert --lock-nvram \
            --config "$ca/swtpm_setup.conf" --write-ek-cert-files "$tpm_dir" \
            >"$ca/swtpm_setup.log" 2>&1; then
        echo "ek-ca.sh: swtpm_setup failed, see $ca/swtpm_setup.log" >&2
        exit 1
    fi
fi
