#!/usr/bin/env bash
# Instructions per message: this build of mqtt5d against a baseline build, each run under
# valgrind (cachegrind, Ir only) with `durability = "memory"` while mqtt5-bench drives a load
# scenario. The count is of instructions the broker process executes (event loop and store
# thread), divided by the messages delivered, so it does not depend on the machine's timing:
# it shows a change in the cost per message that a throughput race on a busy machine cannot.
#
#   BASELINE=PATH bench/instructions.sh            fan-in, fan-out and topics, 64 B payloads
#   BASELINE=PATH DURATION=10 bench/instructions.sh
#
# It needs valgrind (apt-get install valgrind). Valgrind slows the broker about fifty times,
# so the counts come from a few hundred thousand messages; start-up costs about 2 million
# instructions, well under 1 % of any run. It prints a Markdown table.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
duration=${DURATION:-8}
baseline=${BASELINE:-}
if [[ -z $baseline || ! -x $baseline ]]; then
    echo "usage: BASELINE=PATH-TO-ANOTHER-mqtt5d bench/instructions.sh" >&2
    exit 2
fi
if ! command -v valgrind >/dev/null; then
    echo "bench/instructions.sh needs valgrind: apt-get install valgrind" >&2
    exit 2
fi

nice -n 19 cargo build --release -p mqtt5d -p mqtt5-bench
bench="$target/release/mqtt5-bench"
work=$(mktemp -d)
broker_pid=
cleanup() {
    if [[ -n $broker_pid ]]; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The limits of the load scenarios' own mqtt5d configuration: nothing throttles the load.
cat >"$work/mqtt5d.toml" <<'EOF'
max_connections = 100000
max_connecting_per_address = 100000
write_buffer_limit = 16777216
[broker]
max_queued_messages = 100000000
max_queued_bytes = 68719476736
max_queued_bytes_total = 68719476736
receive_maximum = 65535
max_inflight = 65535
max_subscriptions_per_client = 100000
EOF

# Runs one scenario against one build; prints instructions per delivered message.
measure() {
    local program=$1 name=$2
    shift 2
    local log="$work/$name.log" out="$work/$name.cg"
    rm -rf "$work/data"
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out" \
        "$program" --config "$work/mqtt5d.toml" --listen 127.0.0.1:0 --data-dir "$work/data" \
        --durability memory --log-level info 2>"$log" &
    broker_pid=$!
    local addr=
    for _ in $(seq 600); do
        addr=$(sed -n 's/.*listening (MQTT over TCP) addr=\([0-9.:]*\).*/\1/p' "$log" | head -n1)
        [[ -n $addr ]] && break
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            echo "the broker $program exited at start:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [[ -z $addr ]]; then
        echo "the broker $program did not start listening within 60 s" >&2
        exit 1
    fi
    local results
    results=$("$bench" "$@" --target "$addr" --payload 64 --duration "$duration" --warmup 0.5 \
        2>"$work/$name.bench.log")
    kill -TERM "$broker_pid"
    wait "$broker_pid" || true
    broker_pid=
    local refs delivered
    refs=$(sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' "$log" | head -n1 | tr -d ,)
    delivered=$(grep '^result ' <<<"$results" | sed -n 's/.* received=\([0-9]*\).*/\1/p' |
        awk '{ s += $1 } END { print s + 0 }')
    if [[ -z $refs || $delivered -eq 0 ]]; then
        echo "no count for $name: $results" >&2
        exit 1
    fi
    echo $((refs / delivered))
}

echo "Instructions per delivered message, 64 B payloads, durability memory," \
    "${duration} s windows under valgrind; run of $(date -u '+%Y-%m-%d %H:%M UTC')" \
    "at commit $(git rev-parse --short HEAD), baseline ${BASELINE_LABEL:-$baseline}."
echo
echo "| scenario | QoS | mqtt5d | baseline | mqtt5d/baseline |"
echo "|---|---|---:|---:|---:|"
for scenario in fan-in fan-out topics; do
    for qos in 0 1 2; do
        [[ $scenario == fan-in || $qos != 2 ]] || continue
        [[ $scenario != topics || $qos == 1 ]] || continue
        new=$(measure "$target/release/mqtt5d" "$scenario-$qos-new" "$scenario" --qos "$qos")
        old=$(measure "$baseline" "$scenario-$qos-old" "$scenario" --qos "$qos")
        ratio=$(awk -v a="$new" -v b="$old" 'BEGIN { printf "%.3f", a / b }')
        echo "| $scenario | $qos | $new | $old | ${ratio}× |"
    done
done
