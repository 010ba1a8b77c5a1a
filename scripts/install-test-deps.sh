#!/usr/bin/env bash
# Install what Ferry's end-to-end tests (tests/e2e) need. Idempotent and
# non-interactive: it installs only what is missing and says what it installs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -E"
    else
        echo "install-test-deps: not root and no sudo; cannot install system packages" >&2
    fi
fi

# command -> Debian package
declare -A PKG_FOR=(
    [ssh]=openssh-client
    [sftp]=openssh-client
    [ssh-keygen]=openssh-client
    [sshd]=openssh-server
    [rclone]=rclone
    [sshfs]=sshfs
    [fusermount3]=fuse3
    [curl]=curl
    [psftp]=putty-tools
    [pscp]=putty-tools
    [puttygen]=putty-tools
    [lftp]=lftp
    [java]=default-jre-headless
    [javac]=default-jdk-headless
    [go]=golang-go
    [node]=nodejs
    [npm]=npm
    [fail2ban-regex]=fail2ban
    [systemd-socket-activate]=systemd
    [systemd-analyze]=systemd
    [openssl]=openssl
    [htpasswd]=apache2-utils
)
# Client libraries the client matrix (tests/e2e/test_clients.py) drives.
declare -A LIB_PKG=(
    [/usr/share/java/jsch.jar]=libjsch-java
    [/usr/share/gocode/src/github.com/pkg/sftp]=golang-github-pkg-sftp-dev
    [/usr/share/gocode/src/golang.org/x/crypto/ssh]=golang-golang-x-crypto-dev
)

missing=()
for cmd in "${!PKG_FOR[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
        pkg="${PKG_FOR[$cmd]}"
        case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
    fi
done
for path in "${!LIB_PKG[@]}"; do
    [ -e "$path" ] || missing+=("${LIB_PKG[$path]}")
done
if ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(python3-pip)
fi
# The benchmark harness (../shared/bench/sftp-bench) runs /usr/bin/python3,
# which needs Debian's paramiko for its stat-rtt case.
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import paramiko' >/dev/null 2>&1; then
    missing+=(python3-paramiko)
fi

apt_run() {
    # Retry while another apt/dpkg holds the lock.
    local tries=0
    until $SUDO "$@"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            echo "install-test-deps: '$*' kept failing" >&2
            return 1
        fi
        echo "install-test-deps: apt busy or failed, retrying in 10 s ($tries/30)" >&2
        sleep 10
    done
}

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-test-deps: installing ${missing[*]}"
    apt_run apt-get update -q
    apt_run apt-get install -y -q openssh-client openssh-server rclone sshfs fuse3 python3-pip \
        python3-paramiko "${missing[@]}"
else
    echo "install-test-deps: system packages already present"
fi

pip_missing=()
python3 -c 'import paramiko' >/dev/null 2>&1 || pip_missing+=(paramiko)
python3 -c 'import pytest' >/dev/null 2>&1 || pip_missing+=(pytest)
python3 -c 'import blake3' >/dev/null 2>&1 || pip_missing+=(blake3)
python3 -c 'import xxhash' >/dev/null 2>&1 || pip_missing+=(xxhash)
python3 -c 'import asyncssh' >/dev/null 2>&1 || pip_missing+=(asyncssh)
python3 -c 'import prometheus_client' >/dev/null 2>&1 || pip_missing+=(prometheus_client)
if [ "${#pip_missing[@]}" -gt 0 ]; then
    echo "install-test-deps: pip installing ${pip_missing[*]}"
    if ! python3 -m pip install -q "${pip_missing[@]}" 2>/dev/null; then
        # Debian's externally-managed Python refuses plain pip installs.
        python3 -m pip install -q --break-system-packages "${pip_missing[@]}"
    fi
else
    echo "install-test-deps: python packages already present"
fi
# Node's ssh2 client library, into the tools directory (never the repo).
FERRY_TOOLS_DIR="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-test-tools}"
if [ -d "$FERRY_TOOLS_DIR/node/node_modules/ssh2" ]; then
    echo "install-test-deps: node ssh2 already present"
else
    echo "install-test-deps: npm installing ssh2 into $FERRY_TOOLS_DIR/node"
    mkdir -p "$FERRY_TOOLS_DIR/node"
    npm install --silent --no-audit --no-fund --prefix "$FERRY_TOOLS_DIR/node" ssh2@1
fi

# Garage, a real S3-compatible server for the backend tests
# (tests/e2e/backends.py finds it at $FERRY_TOOLS_DIR/garage/bin/garage).
# A test tool only, never linked into Ferry. Built once (about 8 minutes on
# 2 cores) and reused.
FERRY_TOOLS_DIR="${FERRY_TOOLS_DIR:-$HOME/.cache/ferry-test-tools}"
export FERRY_TOOLS_DIR
GARAGE_VERSION="2.5.0"
if [ -x "$FERRY_TOOLS_DIR/garage/bin/garage" ]; then
    echo "install-test-deps: garage already present"
else
    if ! command -v cargo >/dev/null 2>&1; then
        echo "install-test-deps: cargo is needed to build garage (the S3 test server)" >&2
        exit 1
    fi
    echo "install-test-deps: building garage $GARAGE_VERSION into $FERRY_TOOLS_DIR/garage (takes minutes)"
    mkdir -p "$FERRY_TOOLS_DIR"
    cargo install garage --version "$GARAGE_VERSION" --locked --quiet \
        --root "$FERRY_TOOLS_DIR/garage"
fi
echo "install-test-deps: done"
