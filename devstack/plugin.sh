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

# shellcheck shell=bash
#
# plugin.sh - DevStack plugin of nova-vtpm-migration: attested, key-wrapped
# live migration of vTPM instances for Nova.
#
# Sourced by stack.sh / unstack.sh / clean.sh as
#     plugin.sh stack install|post-config|extra|test-config
#     plugin.sh unstack
#     plugin.sh clean
# with the variables of devstack/settings and DevStack's functions
# (iniset, iniget, iniget_multiline, iniset_multiline, is_service_enabled,
# install_package, setup_develop, run_process, stop_process, die,
# echo_summary) in scope.
#
# Functions, in the order the phases call them:
#
#   install_nova_vtpm_migration    stack install: packages, the Python package
#   configure_nova_vtpm_migration  stack post-config: nova.conf
#   start_nova_vtpm_migration      stack post-config: host TPM (swtpm mode)
#   enroll_nova_vtpm_migration     stack post-config: enroll, trust policy
#                                  (this host is the golden host)
#   check_nova_vtpm_migration      stack extra: validate the policy
#   configure_tempest_for_nova_vtpm_migration   stack test-config
#   stop_nova_vtpm_migration       unstack
#   cleanup_nova_vtpm_migration    clean
#
# The enrollment and the policy are made in post-config, before DevStack
# starts nova-compute, so the driver finds them when it starts.

# Save trace setting
_XTRACE_VTPM_MIGRATION=$(set +o | grep xtrace)
set +o xtrace

VTPM_MIGRATION_SWTPM_SERVICE=vtpm-host-swtpm
_VTPM_MIGRATION_PLUGIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Functions
# ---------

# _vtpm_migration_host_tpm_mode: print "device" or "swtpm"
function _vtpm_migration_host_tpm_mode {
    case "$VTPM_MIGRATION_HOST_TPM" in
        device|swtpm)
            echo "$VTPM_MIGRATION_HOST_TPM"
            ;;
        *)
            if [[ -c /dev/tpmrm0 ]]; then
                echo device
            else
                echo swtpm
            fi
            ;;
    esac
}

# _vtpm_migration_check_settings: refuse invalid settings early (die in a
# command substitution would only end the subshell)
function _vtpm_migration_check_settings {
    case "$VTPM_MIGRATION_HOST_TPM" in
        auto|device|swtpm) ;;
        *)
            die $LINENO "VTPM_MIGRATION_HOST_TPM must be auto, device or" \
                "swtpm, not '$VTPM_MIGRATION_HOST_TPM'"
            ;;
    esac
    case "$VTPM_MIGRATION_ENFORCEMENT" in
        refuse|warn) ;;
        *)
            die $LINENO "VTPM_MIGRATION_ENFORCEMENT must be refuse or warn," \
                "not '$VTPM_MIGRATION_ENFORCEMENT'"
            ;;
    esac
}

# _vtpm_migration_tcti: the TCTI string of the host TPM
function _vtpm_migration_tcti {
    if [[ "$(_vtpm_migration_host_tpm_mode)" == swtpm ]]; then
        echo "swtpm:host=127.0.0.1,port=$VTPM_MIGRATION_SWTPM_PORT"
    else
        echo "$VTPM_MIGRATION_TCTI"
    fi
}

# _vtpm_migration_swtpm_account user|group: the account swtpm runs as
function _vtpm_migration_swtpm_account {
    local kind=$1
    local value
    if [[ "$kind" == user ]]; then
        value=$VTPM_MIGRATION_SWTPM_USER
    else
        value=$VTPM_MIGRATION_SWTPM_GROUP
    fi
    if [[ -z "$value" ]]; then
        if getent passwd swtpm >/dev/null; then
            value=swtpm
        else
            value=tss
        fi
    fi
    echo "$value"
}

# _vtpm_migration_add_to_list file section option item: append item to a
# comma-separated list option unless it is there already
function _vtpm_migration_add_to_list {
    local file=$1 section=$2 option=$3 item=$4
    local current
    current=$(iniget "$file" "$section" "$option")
    if [[ -z "$current" ]]; then
        iniset "$file" "$section" "$option" "$item"
    elif [[ ",$current," != *",$item,"* ]]; then
        iniset "$file" "$section" "$option" "$current,$item"
    fi
}

# install_nova_vtpm_migration: Debian packages and the Python package
function install_nova_vtpm_migration {
    # shellcheck disable=SC2086  # a list of package names
    install_package $VTPM_MIGRATION_PACKAGES
    setup_develop "$VTPM_MIGRATION_DIR"
}

# configure_nova_vtpm_migration: nova.conf on compute and scheduler nodes
function configure_nova_vtpm_migration {
    if is_service_enabled n-cpu; then
        iniset "$NOVA_CONF" DEFAULT compute_driver "$VTPM_MIGRATION_DRIVER"

        iniset "$NOVA_CONF" libvirt swtpm_enabled True
        iniset "$NOVA_CONF" libvirt swtpm_user \
            "$(_vtpm_migration_swtpm_account user)"
        iniset "$NOVA_CONF" libvirt swtpm_group \
            "$(_vtpm_migration_swtpm_account group)"
        iniset "$NOVA_CONF" libvirt supported_tpm_secret_security \
            "$VTPM_MIGRATION_SECRET_SECURITY"

        iniset "$NOVA_CONF" vtpm_migration tcti "$(_vtpm_migration_tcti)"
        iniset "$NOVA_CONF" vtpm_migration policy_file \
            "$VTPM_MIGRATION_POLICY_FILE"
        iniset "$NOVA_CONF" vtpm_migration state_path \
            "$VTPM_MIGRATION_STATE_PATH"
        iniset "$NOVA_CONF" vtpm_migration rpc_topic \
            "$VTPM_MIGRATION_RPC_TOPIC"
        iniset "$NOVA_CONF" vtpm_migration enforcement \
            "$VTPM_MIGRATION_ENFORCEMENT"

        sudo install -d -o "$STACK_USER" -m 0700 \
            "$VTPM_MIGRATION_STATE_PATH" "$VTPM_MIGRATION_ENROLLMENT_DIR"
    fi

    if is_service_enabled n-sch; then
        # available_filters is multi-valued: keep what is there (Nova's
        # default is all_filters) and add ours once.
        local filters
        filters=$(iniget_multiline "$NOVA_CONF" filter_scheduler \
            available_filters)
        if [[ -z "$filters" ]]; then
            filters=nova.scheduler.filters.all_filters
        fi
        if ! grep -qxF "$VTPM_MIGRATION_FILTER" <<<"$filters"; then
            # shellcheck disable=SC2086  # one value per word
            iniset_multiline "$NOVA_CONF" filter_scheduler \
                available_filters $filters "$VTPM_MIGRATION_FILTER"
        fi
        # enabled_filters is a list; without a value Nova's default applies,
        # which we must keep.
        if [[ -z "$(iniget "$NOVA_CONF" filter_scheduler enabled_filters)" ]]
        then
            iniset "$NOVA_CONF" filter_scheduler enabled_filters \
                "$VTPM_MIGRATION_NOVA_DEFAULT_FILTERS"
        fi
        # enabled_filters names classes, available_filters loads them by
        # dotted path.
        _vtpm_migration_add_to_list "$NOVA_CONF" filter_scheduler \
            enabled_filters "${VTPM_MIGRATION_FILTER##*.}"
    fi
}

# _vtpm_migration_provision_host_swtpm: an swtpm state with EK certificates
# signed by the local CA in VTPM_MIGRATION_EK_CA_DIR (created on first use,
# reused when it exists)
function _vtpm_migration_provision_host_swtpm {
    "$_VTPM_MIGRATION_PLUGIN_DIR/tools/ek-ca.sh" "$VTPM_MIGRATION_EK_CA_DIR" \
        "$VTPM_MIGRATION_STATE_PATH/host-tpm" \
        || die $LINENO "cannot provision the swtpm host TPM"
    # the root and the intermediate that signs the EK certificates
    cat "$VTPM_MIGRATION_EK_CA_DIR/swtpm-localca-rootca-cert.pem" \
        "$VTPM_MIGRATION_EK_CA_DIR/issuercert.pem" \
        >"$VTPM_MIGRATION_STATE_PATH/ek-ca-bundle.pem" \
        || die $LINENO "no swtpm local CA in $VTPM_MIGRATION_EK_CA_DIR"
}

# start_nova_vtpm_migration: the host TPM stand-in (swtpm mode only)
function start_nova_vtpm_migration {
    is_service_enabled n-cpu || return 0
    [[ "$(_vtpm_migration_host_tpm_mode)" == swtpm ]] || return 0

    _vtpm_migration_provision_host_swtpm
    local port=$VTPM_MIGRATION_SWTPM_PORT
    run_process "$VTPM_MIGRATION_SWTPM_SERVICE" \
        "$(command -v swtpm || echo /usr/bin/swtpm) socket --tpm2 \
--tpmstate dir=$VTPM_MIGRATION_STATE_PATH/host-tpm \
--server type=tcp,port=$port,bindaddr=127.0.0.1 \
--ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
--flags not-need-init,startup-clear"
}

# _vtpm_migration_ek_ca_bundle: the PEM file of the trusted EK CAs (empty
# when none is configured)
function _vtpm_migration_ek_ca_bundle {
    if [[ -n "$VTPM_MIGRATION_EK_CA_BUNDLE" ]]; then
        echo "$VTPM_MIGRATION_EK_CA_BUNDLE"
    elif [[ "$(_vtpm_migration_host_tpm_mode)" == swtpm ]]; then
        echo "$VTPM_MIGRATION_STATE_PATH/ek-ca-bundle.pem"
    fi
}

# _vtpm_migration_nova_host: Nova's host name of this compute ([DEFAULT]
# host, else the host name Nova uses by default)
function _vtpm_migration_nova_host {
    local host
    host=$(iniget "$NOVA_CONF" DEFAULT host)
    echo "${host:-$(hostname)}"
}

# enroll_nova_vtpm_migration: this host's enrollment record, its AK
# certificate from the attestation CA, then the trust policy with this host
# as the golden host
function enroll_nova_vtpm_migration {
    is_service_enabled n-cpu || return 0
    local host record bundle nova_host attestation
    host=$(hostname -s)
    nova_host=$(_vtpm_migration_nova_host)
    record=$VTPM_MIGRATION_ENROLLMENT_DIR/$host.json
    bundle=$(_vtpm_migration_ek_ca_bundle)
    [[ -n "$bundle" ]] || die $LINENO "VTPM_MIGRATION_EK_CA_BUNDLE must" \
        "name the PEM file of the CAs that issued the hosts' EK certificates"
    [[ -r "$bundle" ]] || die $LINENO "cannot read EK CA bundle $bundle"

    echo_summary "Enrolling this host's TPM for vTPM live migration"
    "$VTPM_MIGRATION_CLI" --config-file "$NOVA_CONF" --format json \
        enroll --host "$nova_host" --output "$record" \
        || die $LINENO "nova-vtpm-migration enroll failed"

    # The attestation CA (created once) certifies this host's AK for its
    # Nova host name; the certificate goes to <state_path>.
    if [[ ! -e "$VTPM_MIGRATION_ATTESTATION_CA_DIR/ca-key.pem" ]]; then
        "$VTPM_MIGRATION_CLI" --config-file "$NOVA_CONF" --format json \
            ca init --ca-dir "$VTPM_MIGRATION_ATTESTATION_CA_DIR" \
            || die $LINENO "nova-vtpm-migration ca init failed"
    fi
    "$VTPM_MIGRATION_CLI" --config-file "$NOVA_CONF" --format json \
        ca enroll-local --ca-dir "$VTPM_MIGRATION_ATTESTATION_CA_DIR" \
        --ek-ca-bundle "$bundle" --host "$nova_host" \
        || die $LINENO "nova-vtpm-migration ca enroll-local failed"
    attestation=${VTPM_MIGRATION_ATTESTATION_CA_BUNDLE:-$VTPM_MIGRATION_ATTESTATION_CA_DIR/ca-cert.pem}

    # With the allow-list, only the TPMs whose records are in the
    # enrollment directory are trusted; without it, any TPM whose EK
    # certificate chains to the bundle.
    local -a allow=()
    if [[ "${VTPM_MIGRATION_EK_ALLOW_LIST,,}" == true ]]; then
        local r
        for r in "$VTPM_MIGRATION_ENROLLMENT_DIR"/*.json; do
            allow+=(--enrollment "$r")
        done
    fi

    echo_summary "Generating the vTPM migration trust policy"
    "$VTPM_MIGRATION_CLI" --config-file "$NOVA_CONF" --format json \
        policy generate --ca-bundle "$bundle" \
        --attestation-ca "$attestation" --name "$host" \
        "${allow[@]}" --output "$VTPM_MIGRATION_POLICY_FILE" \
        || die $LINENO "nova-vtpm-migration policy generate failed"
}

# check_nova_vtpm_migration: the policy nova-compute uses must be valid
function check_nova_vtpm_migration {
    is_service_enabled n-cpu || return 0
    [[ -s "$VTPM_MIGRATION_POLICY_FILE" ]] \
        || die $LINENO "no trust policy at $VTPM_MIGRATION_POLICY_FILE"
    "$VTPM_MIGRATION_CLI" --config-file "$NOVA_CONF" --format json \
        policy check "$VTPM_MIGRATION_POLICY_FILE" \
        || die $LINENO "trust policy $VTPM_MIGRATION_POLICY_FILE is invalid"
}

# configure_tempest_for_nova_vtpm_migration: vTPM tests of tempest and
# whitebox-tempest-plugin
function configure_tempest_for_nova_vtpm_migration {
    is_service_enabled tempest || return 0
    iniset "$TEMPEST_CONFIG" compute-feature-enabled vtpm_device_supported True
    iniset "$TEMPEST_CONFIG" compute-feature-enabled vtpm_live_migration True
    iniset "$TEMPEST_CONFIG" compute-feature-enabled \
        vtpm_live_migration_supported True
}

# stop_nova_vtpm_migration: stop the host TPM stand-in
function stop_nova_vtpm_migration {
    if [[ "$(_vtpm_migration_host_tpm_mode)" == swtpm ]]; then
        stop_process "$VTPM_MIGRATION_SWTPM_SERVICE"
    fi
}

# cleanup_nova_vtpm_migration: remove what the plugin created
function cleanup_nova_vtpm_migration {
    sudo rm -rf "$VTPM_MIGRATION_STATE_PATH" "$VTPM_MIGRATION_EK_CA_DIR" \
        "$VTPM_MIGRATION_ATTESTATION_CA_DIR"
    sudo rm -f "$VTPM_MIGRATION_POLICY_FILE"
}

# Dispatcher
# ----------

if is_service_enabled vtpm-migration; then
    _vtpm_migration_check_settings

    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing nova-vtpm-migration"
        install_nova_vtpm_migration

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-vtpm-migration"
        configure_nova_vtpm_migration
        start_nova_vtpm_migration
        enroll_nova_vtpm_migration

    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Checking the nova-vtpm-migration trust policy"
        check_nova_vtpm_migration

    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        configure_tempest_for_nova_vtpm_migration
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_nova_vtpm_migration
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_nova_vtpm_migration
    fi
fi

# Restore xtrace
$_XTRACE_VTPM_MIGRATION
