# Sourced by demo-web.sh and demo-console.sh: a worker and one server in the background,
# logs in $run_dir, stopped together on Ctrl-C or exit. Needs $demo (the demo's name),
# $run_dir and $python set by the caller.

demo_pids=()
demo_names=()

demo_stop_all() {
    trap - EXIT INT TERM
    if ((${#demo_pids[@]} > 0)); then
        local names="${demo_names[*]}"
        echo "stopping the ${names// / and the }" >&2
        kill -TERM "${demo_pids[@]}" 2>/dev/null || true
        wait "${demo_pids[@]}" 2>/dev/null || true
    fi
}
trap demo_stop_all EXIT
trap 'exit 0' INT TERM

# demo_start NAME COMMAND...: run COMMAND in the background, its output in $run_dir/NAME.log.
demo_start() {
    local name="$1"
    shift
    "$@" >"$run_dir/$name.log" 2>&1 &
    demo_pids+=($!)
    demo_names+=("$name")
}

# demo_wait_healthy URL LOG: wait until URL answers 200, at most 2 minutes; exit 1 (saying
# which log to read) if it does not or a process started exits.
demo_wait_healthy() {
    local health="$1" log="$2"
    for ((try = 0; ; try++)); do
        for pid in "${demo_pids[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "$demo: a process exited; see .run/$demo/worker.log and $log" >&2
                exit 1
            fi
        done
        if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "$health" 2>/dev/null; then
            return 0
        fi
        if ((try >= 240)); then
            echo "$demo: $health did not answer 200 within 2 minutes; see .run/$demo/$log" >&2
            exit 1
        fi
        sleep 0.5
    done
}
