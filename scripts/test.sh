#!/usr/bin/env bash
# Ferry's whole test suite, from a fresh clone: installs what the tests need,
# checks formatting and lints, runs the unit and in-process tests, builds the
# binary and drives it with real clients (OpenSSH sftp, paramiko, rclone,
# sshfs where FUSE works).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build"
cargo build --workspace --locked

step "unit and in-process tests"
# The conformance suite (crates/testkit) runs every backend against real
# servers (a private sshd, Garage, rclone serve webdav): a missing one fails
# the run instead of skipping.
FERRY_REQUIRE_BACKENDS=1 FERRY_TOOLS_DIR="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-test-tools}" \
    cargo test --workspace --locked

step "fuzz targets"
# Type-check always; run each target briefly where a nightly toolchain is
# installed (cargo-fuzz needs one; FERRY_FUZZ_SECONDS=0 skips the runs).
(cd fuzz && cargo check --quiet)
fuzz_seconds="${FERRY_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" -gt 0 ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
    for target in decode_request decode_response check_frame proxy_header; do
        (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 2>&1 | tail -n 3)
    done
else
    echo "fuzz runs skipped (no nightly toolchain, or FERRY_FUZZ_SECONDS=0); type-check only"
fi

step "end-to-end tests with real clients"
# The backend tests' servers (Garage, sshd, rclone serve webdav) must be there:
# a missing one fails the run instead of skipping.
FERRY_BIN="$PWD/target/debug/ferry" FERRY_E2E_REQUIRE_BACKENDS=1 \
    FERRY_TOOLS_DIR="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-test-tools}" \
    python3 -m pytest tests/e2e -q
