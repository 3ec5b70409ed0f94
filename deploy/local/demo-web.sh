#!/usr/bin/env bash
# `make demo-web`: the web SDK's demo. On the broker at DECLIC_KAFKA_BOOTSTRAP (with-broker.sh
# starts one), apply the example engagements, run a worker and `declic gateway --demo`, print
# the URL of the demo shop, and keep running until Ctrl-C; then stop both.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
declic="$repo/.venv/bin/declic"
python="$repo/.venv/bin/python"
: "${DECLIC_KAFKA_BOOTSTRAP:?run it with deploy/local/with-broker.sh, or set it}"
run_dir="$repo/.run/demo-web"
mkdir -p "$run_dir"
cd "$repo"

# The demo signs its own tokens (/demo/token): any secret of 32 bytes or more will do.
if [[ -z ${DECLIC_GATEWAY_TOKEN_SECRET:-} ]]; then
    DECLIC_GATEWAY_TOKEN_SECRET="$("$python" -c 'import secrets; print(secrets.token_hex(32))')"
    export DECLIC_GATEWAY_TOKEN_SECRET
fi
port="${DECLIC_GATEWAY_PORT:-6080}"
web_port="${DECLIC_WEB_PORT:-6066}"

"$declic" topics
"$declic" engagements apply deploy/examples/*.yaml

pids=()
stop_all() {
    trap - EXIT INT TERM
    if ((${#pids[@]} > 0)); then
        echo "stopping the gateway and the worker" >&2
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop_all EXIT
trap 'exit 0' INT TERM

"$declic" worker --worker-id demo-web-1 --data-dir "$run_dir/data" --web-port "$web_port" \
    >"$run_dir/worker.log" 2>&1 &
pids+=($!)
"$declic" gateway --demo --gateway-port "$port" >"$run_dir/gateway.log" 2>&1 &
pids+=($!)

# Ready when the gateway's /health answers 200 (it caught up on its topics).
health="http://127.0.0.1:${port}/health"
for ((try = 0; ; try++)); do
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo-web: a process exited; see .run/demo-web/worker.log and gateway.log" >&2
            exit 1
        fi
    done
    if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$health" 2>/dev/null; then
        break
    fi
    if ((try >= 240)); then
        echo "demo-web: $health did not answer 200 within 2 minutes; see .run/demo-web/gateway.log" >&2
        exit 1
    fi
    sleep 0.5
done

cat <<MSG

  Demo shop: http://127.0.0.1:${port}/demo
  (add an item of 100 € or more to your favorites; a message shows within seconds)
  Logs: .run/demo-web/worker.log, .run/demo-web/gateway.log
  Worker metrics: http://127.0.0.1:${web_port}/metrics   Gateway: http://127.0.0.1:${port}/metrics

  Ctrl-C stops everything.
MSG
wait
