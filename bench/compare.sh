#!/usr/bin/env bash
# The broker comparison: every closed-loop scenario of mqtt5-bench (fan-in, fan-out, topics,
# latency, conns) against mqtt5d, Mosquitto and rumqttd with identical settings, the brokers
# in alternating order, ROUNDS repetitions (default 2), once unpinned and once with the broker
# pinned to CPU 0 and the tool (and its generator processes) to CPU 1. The medians go into
# docs/benchmarks.md between the markers
#   <!-- compare:begin -->  and  <!-- compare:end -->
# (the previous table there is replaced; the rest of the file is kept), with the date,
# `uname -r`, the CPU model and the core count, and a ratio column mqtt5d/peer per peer.
#
#   bench/compare.sh                  the full comparison (about 15-20 minutes)
#   ROUNDS=3 DURATION=5 bench/compare.sh
#   bench/compare.sh --no-write       print the table, leave docs/benchmarks.md alone
#   BASELINE=PATH bench/compare.sh    this build against another mqtt5d executable (the
#                                     build before a change) instead of the peers, in the
#                                     same run: fan-in, fan-out, topics and latency, the table
#                                     between <!-- baseline:begin --> and <!-- baseline:end -->
#                                     (BASELINE_LABEL names the baseline in the table)
#
# It installs nothing. It needs:
#   Mosquitto    apt-get install mosquitto        (/usr/sbin/mosquitto, or MOSQUITTO=PATH)
#   rumqttd      cargo install rumqttd            (on the PATH, or RUMQTTD=PATH)
#   taskset      apt-get install util-linux       (for the pinned half; 2 cores or more)
#
# Every `result ...` line is kept in target/compare/results-DATE.txt. The exit status is 1
# when a run failed its verification (QoS 1/2 loss, a refused connection, a broker that would
# not start); the table is written all the same, failed cells marked ✗.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}
rounds=${ROUNDS:-2}
duration=${DURATION:-3}
warmup=${WARMUP:-0.5}
connections=${CONNECTIONS:-19000}
mosquitto=${MOSQUITTO:-/usr/sbin/mosquitto}
rumqttd=${RUMQTTD:-$(command -v rumqttd || true)}
baseline=${BASELINE:-}
write=1
if [[ ${1:-} == --no-write ]]; then
    write=0
fi

missing=()
if [[ -n $baseline ]]; then
    [[ -x $baseline ]] || missing+=("the baseline mqtt5d ($baseline is not an executable)")
    brokers=mqtt5d,mqtt5d-baseline
    scenarios=(fan-in fan-out topics latency)
    marker=baseline
    heading='mqtt5d against a baseline build (BASELINE=PATH bench/compare.sh)'
else
    brokers=mqtt5d,mosquitto,rumqttd
    scenarios=(fan-in fan-out topics latency conns)
    marker=compare
    heading='Broker comparison (bench/compare.sh)'
fi
if [[ -z $baseline ]]; then
    [[ -x $mosquitto ]] || missing+=("Mosquitto ($mosquitto not found): apt-get install mosquitto")
    [[ -n $rumqttd && -x $rumqttd ]] || missing+=("rumqttd (not on the PATH): cargo install rumqttd")
fi
command -v taskset >/dev/null || missing+=("taskset: apt-get install util-linux")
if ((${#missing[@]} > 0)); then
    echo "bench/compare.sh installs nothing; please install:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
fi
cores=$(nproc)
if ((cores < 2)); then
    echo "bench/compare.sh needs at least 2 cores for the pinned runs ($cores here)" >&2
    exit 2
fi

nice -n 19 cargo build --release -p mqtt5d -p mqtt5-bench

stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$target/compare"
results="$target/compare/results-$stamp.txt"
: >"$results"
bench="$target/release/mqtt5-bench"
common=(--brokers "$brokers" --rounds "$rounds" --mqtt5d "$target/release/mqtt5d")
if [[ -n $baseline ]]; then
    common+=(--mqtt5d-baseline "$baseline")
else
    common+=(--mosquitto "$mosquitto" --rumqttd "$rumqttd")
fi
flow=(--duration "$duration" --warmup "$warmup")
status=0
started=$(date +%s)

for pin in none 0; do
    if [[ $pin == none ]]; then
        run=("$bench")
        pinning=()
    else
        run=(taskset -c 1 "$bench")
        pinning=(--broker-cpus 0)
    fi
    for scenario in "${scenarios[@]}"; do
        args=("$scenario" "${common[@]}" "${pinning[@]}")
        case $scenario in
            latency) args+=(--duration "$((duration + 2))" --warmup "$warmup") ;;
            conns) args+=(--connections "$connections" --connect-timeout 30) ;;
            *) args+=("${flow[@]}") ;;
        esac
        echo "== $scenario, broker pinned: $pin ($(($(date +%s) - started)) s so far)" >&2
        if ! "${run[@]}" "${args[@]}" | tee -a "$results" | grep '^result ' >&2; then
            status=1
        fi
    done
done
if grep -q 'verified=FAILED' "$results"; then
    status=1
fi
if ! grep -q '^result ' "$results"; then
    echo "no run produced a result; docs/benchmarks.md is left alone" >&2
    exit 1
fi

table=$(mktemp)
trap 'rm -f "$table"' EXIT
{
    echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') at commit $(git rev-parse --short HEAD):" \
        "Linux $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'),"\
        "$cores cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
    echo "Medians of $rounds runs per cell, ${duration} s windows (latency $((duration + 2)) s)" \
        "after ${warmup} s of warm-up; $connections connections for conns." \
        "✗: a run of that cell failed its verification. ↓: lower is better." \
        "Ratios are mqtt5d ÷ peer."
    if [[ -n $baseline ]]; then
        echo "mqtt5d-baseline: ${BASELINE_LABEL:-$baseline}."
    fi
    echo
    "$bench" summarize "$results"
} >"$table"
cat "$table"

if ((write)); then
    doc=docs/benchmarks.md
    if ! grep -q "<!-- $marker:begin -->" "$doc"; then
        printf '\n## %s\n\n<!-- %s:begin -->\n<!-- %s:end -->\n' "$heading" "$marker" "$marker" >>"$doc"
    fi
    awk -v table="$table" -v begin="<!-- $marker:begin -->" -v end="<!-- $marker:end -->" '
        $0 == begin { print; while ((getline line < table) > 0) print line; skip = 1; next }
        $0 == end { skip = 0 }
        !skip { print }
    ' "$doc" >"$doc.tmp"
    mv "$doc.tmp" "$doc"
    echo "wrote the table into $doc; every result line is in $results" >&2
fi
exit "$status"
