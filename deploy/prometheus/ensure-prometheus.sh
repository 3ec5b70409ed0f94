#!/usr/bin/env bash
# Make `prometheus` and `promtool` available, and print where they are.
#
# Debian's `prometheus` package ships both. When either is missing and this
# runs as root on Debian/Ubuntu, the package is installed with apt-get, with
# service starts forbidden during the install (policy-rc.d answering 101) and
# the package's own service stopped and disabled afterwards, so that no
# system-wide Prometheus is left running. Without root, it fails with the
# command to run.
#
# Output (stdout): two lines, `prometheus=PATH` and `promtool=PATH`.
# Environment: PROMETHEUS_BIN, PROMTOOL_BIN name binaries to use instead.
set -euo pipefail

PROG=${0##*/}
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_bin() {
    # $1: explicit path from the environment (may be empty), $2: command name
    if [[ -n $1 ]]; then
        [[ -x $1 ]] || die "$2 named by the environment is not executable: $1"
        printf '%s\n' "$1"
        return 0
    fi
    command -v "$2" 2>/dev/null || true
}

PROMETHEUS=$(find_bin "${PROMETHEUS_BIN:-}" prometheus)
PROMTOOL=$(find_bin "${PROMTOOL_BIN:-}" promtool)

# Stop and disable the package's own service, wherever an init system can.
quiet_service() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1 && [[ -x /etc/init.d/prometheus ]]; then
        service prometheus stop >/dev/null 2>&1 || true
    fi
    # Without a running systemd, still drop the unit's boot-time enablement.
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [[ -x /etc/init.d/prometheus ]]; then
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
}

install_package() {
    command -v apt-get >/dev/null 2>&1 \
        || die "prometheus/promtool not found and apt-get is unavailable; install Prometheus 2.x"
    local policy=/usr/sbin/policy-rc.d own_policy=0
    # Forbid every service start while the package installs (invoke-rc.d and
    # deb-systemd-invoke both ask policy-rc.d); keep a policy already in place.
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# Written by %s for the duration of one install.\nexit 101\n' \
            "$PROG" >"$policy"
        chmod 0755 "$policy"
        own_policy=1
        # shellcheck disable=SC2064  # expand now: remove exactly what was written
        trap "rm -f '$policy'" EXIT
    fi
    log "installing Debian's prometheus package (prometheus and promtool)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends prometheus >&2
    quiet_service
    if [[ $own_policy == 1 ]]; then
        rm -f "$policy"
    fi
    trap - EXIT
}

if [[ -z $PROMETHEUS || -z $PROMTOOL ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        die "prometheus and promtool are not installed; run as root:
    apt-get update && apt-get install -y --no-install-recommends prometheus
or set PROMETHEUS_BIN and PROMTOOL_BIN to Prometheus 2.x binaries"
    fi
    install_package
    PROMETHEUS=$(find_bin "${PROMETHEUS_BIN:-}" prometheus)
    PROMTOOL=$(find_bin "${PROMTOOL_BIN:-}" promtool)
    [[ -n $PROMETHEUS && -n $PROMTOOL ]] \
        || die "the prometheus package installed, yet prometheus or promtool is not on PATH"
fi

printf 'prometheus=%s\n' "$PROMETHEUS"
printf 'promtool=%s\n' "$PROMTOOL"
