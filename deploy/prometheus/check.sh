#!/usr/bin/env bash
# Check the Prometheus kit with promtool: the configuration, the rule files, and
# the rules' unit tests (deploy/prometheus/tests/*.yml).
#
# promtool comes from ensure-prometheus.sh (which installs Debian's prometheus
# package when missing and running as root), or from $PROMTOOL_BIN.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
PROG=${0##*/}

PROMTOOL=$(bash "$SCRIPT_DIR/ensure-prometheus.sh" | sed -n 's/^promtool=//p')
[[ -n $PROMTOOL ]] || { printf '%s: error: no promtool\n' "$PROG" >&2; exit 1; }

cd "$SCRIPT_DIR"
shopt -s nullglob
rules=(rules/*.yml)
tests=(tests/*.yml)
((${#rules[@]})) || { printf '%s: error: no rule file in %s/rules\n' "$PROG" "$SCRIPT_DIR" >&2; exit 1; }
((${#tests[@]})) || { printf '%s: error: no test file in %s/tests\n' "$PROG" "$SCRIPT_DIR" >&2; exit 1; }

"$PROMTOOL" check config prometheus.yml
"$PROMTOOL" check rules "${rules[@]}"
"$PROMTOOL" test rules "${tests[@]}"
printf '%s: configuration, %d rule files and %d rule test files OK\n' \
    "$PROG" "${#rules[@]}" "${#tests[@]}" >&2
