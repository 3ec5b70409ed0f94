#!/usr/bin/env bash
# `make demo-console`: the campaign console on the examples. On the broker at
# DECLIC_KAFKA_BOOTSTRAP (with-broker.sh starts one), apply the example engagements, run a
# worker and `declic console`, asking for an admin's password first if the console has no
# user yet; keep running until Ctrl-C, then stop both.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
declic="$repo/.venv/bin/declic"
python="$repo/.venv/bin/python"
: "${DECLIC_KAFKA_BOOTSTRAP:?run it with deploy/local/with-broker.sh, or set it}"
run_dir="$repo/.run/demo-console"
mkdir -p "$run_dir"
cd "$repo"

port="${DECLIC_CONSOLE_PORT:-6070}"
web_port="${DECLIC_WEB_PORT:-6066}"
user="${DECLIC_DEMO_USER:-admin}"

if ! "$declic" console users | grep -q '  password$\|  proxy only$'; then
    echo "The console has no user yet: choose a password for '$user' (an admin)."
    "$declic" console add-user "$user" --role admin
fi
"$declic" topics
"$declic" engagements apply deploy/examples/*.yaml

demo=demo-console
source "$repo/deploy/local/demo-processes.sh"
demo_start worker "$declic" worker --worker-id demo-console-1 --data-dir "$run_dir/data" \
    --web-port "$web_port" --stats-interval-seconds 5
demo_start console "$declic" console --console-port "$port"

# Ready when the console's /health answers 200 (it reads the engagement topics).
demo_wait_healthy "http://127.0.0.1:${port}/health" console.log

cat <<MSG

  Campaign console: http://127.0.0.1:${port}/  (log in as one of: $("$declic" console users | cut -d' ' -f1 | paste -sd, -))
  Figures appear as events arrive: .venv/bin/declic publish custom-events FILE (see the README)
  Logs: .run/demo-console/worker.log, .run/demo-console/console.log

  Ctrl-C stops everything.
MSG
wait
