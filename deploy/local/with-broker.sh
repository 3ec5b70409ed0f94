#!/usr/bin/env bash
# Run a command with a local Kafka broker, started for it and stopped after it
# (whatever the command's outcome), unless DECLIC_KAFKA_BOOTSTRAP names a broker.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -eq 0 ]]; then
  echo "usage: with-broker.sh COMMAND [ARG...]" >&2
  exit 64
fi
if [[ -n "${DECLIC_KAFKA_BOOTSTRAP:-}" ]]; then
  exec "$@"
fi
port="${DECLIC_KAFKA_PORT:-19092}"
started_here=0
if ! bash "$here/kafka.sh" status >/dev/null 2>&1; then
  bash "$here/kafka.sh" start
  started_here=1
fi
stop_broker() {
  if [[ $started_here -eq 1 ]]; then
    bash "$here/kafka.sh" stop
  fi
}
trap stop_broker EXIT
export DECLIC_KAFKA_BOOTSTRAP="127.0.0.1:${port}"
status=0
"$@" || status=$?
exit $status
