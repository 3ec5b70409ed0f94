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

demo=demo-web
source "$repo/deploy/local/demo-processes.sh"
demo_start worker "$declic" worker --worker-id demo-web-1 --data-dir "$run_dir/data" \
    --web-port "$web_port"
demo_start gateway "$declic" gateway --demo --gateway-port "$port"

# Ready when the gateway's /health answers 200 (it caught up on its topics).
demo_wait_healthy "http://127.0.0.1:${port}/health" gateway.log

cat <<MSG

  Demo shop: http://127.0.0.1:${port}/demo
  (add an item of 100 € or more to your favorites; a message shows within seconds)
  Logs: .run/demo-web/worker.log, .run/demo-web/gateway.log
  Worker metrics: http://127.0.0.1:${web_port}/metrics   Gateway: http://127.0.0.1:${port}/metrics

  Ctrl-C stops everything.
MSG
wait
