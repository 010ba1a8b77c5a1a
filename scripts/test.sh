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
cargo test --workspace --locked

step "fuzz targets type-check"
(cd fuzz && cargo check --quiet)

step "end-to-end tests with real clients"
FERRY_BIN="$PWD/target/debug/ferry" python3 -m pytest tests/e2e -q
