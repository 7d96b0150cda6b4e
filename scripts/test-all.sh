#!/usr/bin/env bash
# The test command of mqtt5: everything CI checks, in the order it checks it.
#
#   scripts/test-all.sh
#
# It works from a fresh clone on a plain Debian machine with the stable Rust toolchain installed
# through rustup. First it checks what the tests need from the machine and installs what is
# missing (Debian packages, a Python virtual environment, rustfmt, clippy, cargo-deny); then it
# runs
#
#   1. cargo fmt --check           (root workspace, then the fuzz workspace)
#   2. cargo clippy -D warnings    (every target and feature of the root workspace)
#   3. cargo test --no-fail-fast   (unit, integration and doc tests of the root workspace)
#   4. cargo doc with warnings denied (broken intra-doc links, bad doc markup)
#   5. cargo deny check            (licenses, bans, sources; advisories where a database is
#                                   available, see below)
#   6. cargo test of the fuzz workspace on stable (the targets compile; the committed corpus
#                                   and every saved crash pass the targets' checks)
#   7. cargo package -p mqtt5-codec (the published crate, its tests included, builds from its
#                                   package alone)
#
# and stops after the first step that fails (steps 3 and 6 still run every test binary, so that
# one run reports all failing tests). Cargo commands run with --locked: Cargo.lock and
# fuzz/Cargo.lock must be up to date and committed.
#
# Environment:
#   MQTT5_ADVISORY_DB  a directory holding a copy of the RustSec advisory database (its
#                      crates/ folder). When set, the advisories check runs against it, offline.
#                      When not set, cargo-deny fetches the database as usual. When neither
#                      works, the script says loudly that advisories were not checked, and goes on.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

step() {
    echo
    echo "==> $*"
}

fail() {
    echo "error: $*" >&2
    exit 1
}

start=$SECONDS

# --- What the tests need from the machine --------------------------------------------------
# Checked once, here, before anything builds: a missing piece is installed from Debian when the
# script can (as root, or with sudo), and is otherwise an error that names the package. Nothing
# is skipped. The tests check the same things again when they start (bins/mqtt5d/tests/it/
# machine.rs), for runs of `cargo test` without this script.
#
#   c++                            g++                libfuzzer-sys builds libFuzzer's C++ sources
#   mosquitto_pub, mosquitto_sub   mosquitto-clients  interoperability peers
#   openssl                        openssl            the TLS tests make their certificates
#   python3 -m venv                python3-venv       the Python clients' virtual environment
#   the IPv6 loopback [::1]        (the kernel)       the IPv6 listener test
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || fail "missing Debian packages: $*; install them (as root: apt-get install $*)"
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

missing_packages() {
    command -v c++ >/dev/null 2>&1 || echo g++
    { command -v mosquitto_pub && command -v mosquitto_sub; } >/dev/null 2>&1 || echo mosquitto-clients
    command -v openssl >/dev/null 2>&1 || echo openssl
    # The venv module and ensurepip, which puts pip into a new environment.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || echo python3-venv
}

step "checking what the tests need from the machine"
mapfile -t missing < <(missing_packages)
if ((${#missing[@]})); then
    step "installing from Debian: ${missing[*]}"
    apt_install "${missing[@]}"
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} == 0)) || fail "still missing after apt-get install: ${missing[*]}"
fi
python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' ||
    fail "the IPv6 loopback [::1] is not available; the IPv6 listener test needs it (enable IPv6 on lo: sysctl net.ipv6.conf.lo.disable_ipv6=0)"

# The Python test clients live in a virtual environment of their own, built from
# scripts/python-requirements.txt, never in the system's interpreter (Debian's is externally
# managed and refuses pip). The tests get its interpreter through MQTT5_PYTHON.
venv=$ROOT/target/test-venv
requirements=scripts/python-requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" || ! "$venv/bin/python3" -c '' >/dev/null 2>&1; then
    step "creating the Python test environment target/test-venv from $requirements"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
export MQTT5_PYTHON=$venv/bin/python3
echo "python: $MQTT5_PYTHON ($("$MQTT5_PYTHON" --version); $("$MQTT5_PYTHON" -m pip freeze --disable-pip-version-check | paste -sd' '))"
echo "mosquitto clients: $(command -v mosquitto_pub), $(command -v mosquitto_sub)"
echo "openssl: $(openssl version)"

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

# Every test binary's summary goes into one log, so that the last line of the run can total
# the tests of every binary: cargo prints one summary per binary.
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT

# --- 1. Formatting -------------------------------------------------------------------------
step "1/7 cargo fmt --all --check"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --all --check

# --- 2. Lints ------------------------------------------------------------------------------
step "2/7 cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

# --- 3. Tests ------------------------------------------------------------------------------
step "3/7 cargo test --workspace --no-fail-fast"
cargo test --locked --workspace --no-fail-fast 2>&1 | tee -a "$test_log"

# --- 4. Documentation ---------------------------------------------------------------------
step "4/7 cargo doc --workspace --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

# --- 5. Dependency policy ------------------------------------------------------------------
# cargo-deny reads an advisory database from <db-path>/<a directory named after its URL>, as a
# git repository. MQTT5_ADVISORY_DB names a plain copy of the database; it is made into such a
# repository under target/advisory-dbs and checked offline with a copy of deny.toml that points
# db-path there. Without the variable, `cargo deny fetch db` updates cargo-deny's own copy.
step "5/7 cargo deny check licenses bans sources advisories"
cargo deny --locked check licenses bans sources
if [[ -n ${MQTT5_ADVISORY_DB:-} ]]; then
    [[ -d $MQTT5_ADVISORY_DB/crates ]] ||
        fail "MQTT5_ADVISORY_DB=$MQTT5_ADVISORY_DB does not hold an advisory database (no crates/ in it)"
    dbs=$ROOT/target/advisory-dbs
    db=$dbs/advisory-db-3157b0e258782691
    [[ -d $db ]] && chmod -R u+w "$db"
    rm -rf "$db"
    mkdir -p "$db"
    cp -r "$MQTT5_ADVISORY_DB"/. "$db"/
    chmod -R u+w "$db"
    git -C "$db" init -q
    git -C "$db" add -A
    git -C "$db" -c user.name=mqtt5 -c user.email=mqtt5@localhost commit -qm "advisory database copy"
    sed "s|^\[advisories\]\$|[advisories]\ndb-path = \"$dbs\"|" deny.toml >"$ROOT/target/deny-offline.toml"
    echo "advisory database: $MQTT5_ADVISORY_DB ($(find "$db/crates" -name '*.md' | wc -l) advisories)"
    cargo deny --offline --locked --config "$ROOT/target/deny-offline.toml" check advisories
elif cargo deny fetch db; then
    cargo deny --offline --locked check advisories
else
    echo
    echo "!!!!! ADVISORIES NOT CHECKED: no advisory database (MQTT5_ADVISORY_DB is not set and cargo deny fetch failed) !!!!!"
    echo
fi

# --- 6. The fuzz workspace -----------------------------------------------------------------
# fuzz/ is a workspace of its own (excluded from the root one). Running the fuzzers needs
# nightly flags (see fuzz/README.md), but building the targets does not: plain stable builds
# libfuzzer-sys (its build script compiles libFuzzer with the C++ compiler). Its tests replay
# fuzz/corpus and fuzz/regressions through the targets' checks.
step "6/7 the fuzz workspace: cargo check --all-targets, then cargo test"
cargo check --locked --manifest-path fuzz/Cargo.toml --all-targets
cargo test --locked --manifest-path fuzz/Cargo.toml --no-fail-fast 2>&1 | tee -a "$test_log"

# --- 7. The published crate ----------------------------------------------------------------
# mqtt5-codec is published on its own: its package must hold everything it builds from, its
# tests included. cargo package builds the library from the package; the tests are then built
# and run from the unpacked package, outside the repository, so that nothing can reach back
# into it. --allow-dirty lets a working copy with uncommitted changes be checked too.
step "7/7 cargo package -p mqtt5-codec, and its tests from the package"
cargo package --locked --allow-dirty -p mqtt5-codec
codec_version=$(sed -nE 's/^version = "(.*)"$/\1/p' Cargo.toml | head -n 1)
unpacked=$(mktemp -d)
trap 'rm -f "$test_log"; rm -rf "$unpacked"' EXIT
tar -xzf "target/package/mqtt5-codec-$codec_version.crate" -C "$unpacked"
CARGO_TARGET_DIR=$ROOT/target/package-tests \
    cargo test --locked --manifest-path "$unpacked/mqtt5-codec-$codec_version/Cargo.toml"

read -r tests_passed tests_failed tests_ignored < <(
    sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$test_log" |
        awk '{p += $1; f += $2; i += $3} END {print p + 0, f + 0, i + 0}'
)
if ((tests_passed == 0)); then
    echo "error: cargo test ran no test" >&2
    exit 1
fi

echo
echo "==> all checks passed in $((SECONDS - start)) s"
echo "tests: $tests_passed passed, $tests_failed failed, $tests_ignored skipped"
