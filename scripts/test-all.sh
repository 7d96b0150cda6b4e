#!/usr/bin/env bash
# The test command of mqtt5: everything CI checks, in the order it checks it.
#
#   scripts/test-all.sh
#
# It works from a fresh clone on a Debian machine with the stable Rust toolchain installed
# through rustup: it installs what it needs first (rustfmt, clippy, cargo-deny), then runs
#
#   1. cargo fmt --check           (root workspace, then the fuzz workspace)
#   2. cargo clippy -D warnings    (every target of the root workspace)
#   3. cargo test --no-fail-fast   (unit, integration and doc tests; replays fuzz/corpus and
#                                   fuzz/regressions through the fuzz oracles)
#   4. cargo doc with warnings denied (broken intra-doc links, bad doc markup)
#   5. cargo deny check licenses bans sources
#   6. cargo check of the fuzz workspace on stable
#
# and stops after the first step that fails (step 3 still runs every test binary, so that one
# run reports all failing tests). Cargo commands run with --locked: Cargo.lock and
# fuzz/Cargo.lock must be up to date and committed.
#
# Environment:
#   MQTT5_ADVISORIES=1   also run `cargo deny --offline check advisories` against an offline
#                        snapshot of the RustSec database (see step 4).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

step() {
    echo
    echo "==> $*"
}

start=$SECONDS

# --- System packages ---------------------------------------------------------------------
# Debian packages the tests need go here, installed only when missing: a C++ compiler for
# libFuzzer, and the interoperability peers the mqtt5d tests talk to (mosquitto_pub and
# mosquitto_sub from Debian; the Python paho-mqtt client from PyPI).
apt_install() {
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    if [[ -z ${APT_UPDATED:-} ]]; then
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}
# libfuzzer-sys compiles libFuzzer's C++ sources in its build script, even for `cargo check`.
if ! command -v c++ >/dev/null 2>&1; then
    step "installing a C++ compiler (g++) for libfuzzer-sys"
    apt_install g++
fi
if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then
    step "installing mosquitto and mosquitto-clients (interoperability peers)"
    apt_install mosquitto mosquitto-clients
fi
if ! command -v openssl >/dev/null 2>&1; then
    step "installing openssl (the TLS tests make their certificates with it)"
    apt_install openssl
fi
if ! python3 -c 'import paho.mqtt, sys; sys.exit(paho.mqtt.__version__ != "2.1.0")' 2>/dev/null; then
    step "installing paho-mqtt 2.1.0 for python3 (interoperability peer)"
    python3 -m pip install --quiet --disable-pip-version-check "paho-mqtt==2.1.0"
fi

# --- Rust tools --------------------------------------------------------------------------
step "checking the Rust toolchain and tools"
if command -v rustup >/dev/null 2>&1; then
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
# deny.toml is written for cargo-deny 0.20; install that version when none (or an older one)
# is present. The binary goes to $CARGO_HOME/bin and is reused by later runs.
deny_version=$(cargo deny --version 2>/dev/null | awk '{print $2}' || true)
if [[ -z $deny_version ]] || ! printf '0.20.0\n%s\n' "$deny_version" | sort -V -C; then
    step "installing cargo-deny 0.20.2 (found: ${deny_version:-none}); this takes a few minutes"
    cargo install --locked cargo-deny --version 0.20.2
fi
rustc --version
cargo --version
cargo fmt --version
cargo clippy --version
cargo deny --version

# --- 1. Formatting -------------------------------------------------------------------------
step "1/6 cargo fmt --all --check"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --all --check

# --- 2. Lints ------------------------------------------------------------------------------
step "2/6 cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

# --- 3. Tests ------------------------------------------------------------------------------
step "3/6 cargo test --workspace --no-fail-fast"
# The output is kept so that the last line of the run can total the tests of every binary:
# cargo prints one summary per test binary, and the last is often an empty doc-test one.
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$test_log"
read -r tests_passed tests_failed tests_ignored < <(
    sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$test_log" |
        awk '{p += $1; f += $2; i += $3} END {print p + 0, f + 0, i + 0}'
)
if ((tests_passed == 0)); then
    echo "error: cargo test ran no test" >&2
    exit 1
fi

# --- 4. Documentation ---------------------------------------------------------------------
step "4/6 cargo doc --workspace --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

# --- 5. Dependency policy ------------------------------------------------------------------
# `advisories` is left out on purpose: it downloads the RustSec advisory database, and CI has
# no network access to it, so the check would fail on every run for a reason that has nothing
# to do with the change under test. An offline snapshot can be checked instead, on request:
# with MQTT5_ADVISORIES=1, ../shared/tools/advisory-db.sh (the shared/ folder beside the
# repository, as on the project's machines and in CI) copies the snapshot ../shared/advisory-db
# to $CARGO_HOME/advisory-dbs, where cargo-deny looks, and `cargo deny --offline check
# advisories` runs against it. Without that folder, put a database there yourself first.
step "5/6 cargo deny check licenses bans sources"
cargo deny --locked check licenses bans sources
if [[ ${MQTT5_ADVISORIES:-0} == 1 ]]; then
    step "5/6 (optional) cargo deny --offline check advisories"
    db_script="$ROOT/../shared/tools/advisory-db.sh"
    if [[ -f $db_script ]]; then
        bash "$db_script"
    else
        echo "no $db_script: using the advisory database already in \$CARGO_HOME/advisory-dbs"
    fi
    cargo deny --offline --locked check advisories
fi

# --- 6. The fuzz workspace -----------------------------------------------------------------
# fuzz/ is a workspace of its own (excluded from the root one). Running the fuzzers needs
# nightly flags (see fuzz/README.md), but checking that the targets compile does not: plain
# stable builds libfuzzer-sys (its build script compiles libFuzzer with the C++ compiler).
step "6/6 cargo check --manifest-path fuzz/Cargo.toml --all-targets"
cargo check --locked --manifest-path fuzz/Cargo.toml --all-targets

echo
echo "==> all checks passed in $((SECONDS - start)) s"
echo "tests: $tests_passed passed, $tests_failed failed, $tests_ignored skipped"
