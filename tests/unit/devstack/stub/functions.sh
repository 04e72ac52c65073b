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
# A stand-in for the DevStack functions devstack/plugin.sh uses, for
# tests/unit/devstack/test_plugin.py. Every call is appended to $STUB_LOG.
# The ini functions keep DevStack's semantics (inc/ini-config): iniset
# replaces every value of the option, iniset_multiline writes one line per
# value, iniget prints the first value, iniget_multiline every value.

STUB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

function _stub_log {
    printf '%s\n' "$*" >>"$STUB_LOG"
}

function _ini {
    python3 -S -E "$STUB_DIR/stub_ini.py" "$@"
}

function iniset {
    [[ "$1" == -sudo ]] && shift
    _stub_log "iniset $*"
    _ini set "$@"
}

function iniset_multiline {
    [[ "$1" == -sudo ]] && shift
    _stub_log "iniset_multiline $*"
    _ini set "$@"
}

function iniadd {
    [[ "$1" == -sudo ]] && shift
    _stub_log "iniadd $*"
    _ini add "$@"
}

function iniget {
    _ini get "$@"
}

function iniget_multiline {
    _ini getall "$@"
}

function define_plugin {
    _stub_log "define_plugin $*"
}

# As in DevStack, a service disabled in local.conf (disable_service, which
# records it in DISABLED_SERVICES) cannot be enabled again by a plugin.
function enable_service {
    _stub_log "enable_service $*"
    local svc
    for svc in "$@"; do
        [[ ",${DISABLED_SERVICES:-}," == *",$svc,"* ]] && continue
        [[ ",$ENABLED_SERVICES," == *",$svc,"* ]] \
            || ENABLED_SERVICES=${ENABLED_SERVICES:+$ENABLED_SERVICES,}$svc
    done
}

function disable_service {
    _stub_log "disable_service $*"
    local svc
    for svc in "$@"; do
        DISABLED_SERVICES=${DISABLED_SERVICES:+$DISABLED_SERVICES,}$svc
        ENABLED_SERVICES=$(tr ',' '\n' <<<"$ENABLED_SERVICES" \
            | grep -vxF "$svc" | paste -sd, -)
    done
}

function is_service_enabled {
    local svc
    for svc in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$svc,"* ]] && return 0
    done
    return 1
}

function install_package {
    _stub_log "install_package $*"
}

function pip_install {
    _stub_log "pip_install $*"
}

function setup_develop {
    _stub_log "setup_develop $*"
}

function echo_summary {
    echo "summary: $*"
}

function die {
    local line=$1
    shift
    echo "die[$line]: $*" >&2
    exit 1
}

# The test's sudo runs the command as the current user.
function sudo {
    "$@"
}

# run_process name command: really start the command (in the background,
# its own session) so the test can talk to it; stop_process stops it.
function run_process {
    local name=$1 command=$2
    _stub_log "run_process $name $command"
    setsid bash -c "exec $command" >"$STUB_RUN/$name.log" 2>&1 &
    echo $! >"$STUB_RUN/$name.pid"
}

function stop_process {
    local name=$1
    _stub_log "stop_process $name"
    if [[ -f "$STUB_RUN/$name.pid" ]]; then
        kill "$(cat "$STUB_RUN/$name.pid")" 2>/dev/null || true
        rm -f "$STUB_RUN/$name.pid"
    fi
}
