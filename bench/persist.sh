#!/usr/bin/env bash
# The persist benchmark: durable QoS 1 throughput of mqtt5d (--durability sync) beside
# Mosquitto (persistence on), with 1, 10 and 100 closed-loop publishers (one message in flight
# each) feeding an offline persistent session, which is then drained and checked: every
# acknowledged message must be in it.
#
#   bench/persist.sh                  one run per broker and publisher count
#   bench/persist.sh --rounds 3       three of each (medians in the table)
#   bench/persist.sh --help           every option of `mqtt5-bench persist`
#
# It builds mqtt5d and mqtt5-bench in release at nice 19 (the machine may be shared), then
# measures without nice. mqtt5-bench starts each broker itself for every run (a fresh process
# and data directory, a free port on 127.0.0.1, stopped by its PID afterwards), alternating
# which broker goes first, and prints a `result ...` line per run and Markdown tables at the
# end. The exit status is 1 when a run lost an acknowledged message or failed.
#
# Mosquitto never fsyncs per message: with `persistence true` it acknowledges from memory
# and writes its database every autosave_interval (1800 s) and at exit. mqtt5d in sync mode
# sends each PUBACK after the group commit holding the message is fsynced.
#
# Environment:
#   MQTT5_BENCH_DIR   where the brokers' data directories go (default: the system temporary
#                     directory); it must be on a real disk for fsyncs to mean anything.
#   MOSQUITTO         the Mosquitto executable (default /usr/sbin/mosquitto).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-target}

nice -n 19 cargo build --release -p mqtt5d -p mqtt5-bench

args=(persist --mqtt5d "$target/release/mqtt5d" --mosquitto "${MOSQUITTO:-/usr/sbin/mosquitto}")
if [[ -n ${MQTT5_BENCH_DIR:-} ]]; then
    args+=(--data-dir "$MQTT5_BENCH_DIR")
fi
exec "$target/release/mqtt5-bench" "${args[@]}" "$@"
