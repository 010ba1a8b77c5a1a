"""`ferry serve sftp --stdio DIR`: raw SFTP on stdin/stdout, no SSH, no auth.

Run directly by OpenSSH's `sftp -D`, by a private OpenSSH sshd (as the
`Subsystem sftp` program and as a forced `command=` in authorized_keys),
and by hand: a TTY is refused, garbage ends it with an error, EOF ends it
cleanly."""

import os
import pwd
import select
import shlex
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (HOST, clean_env, ferry_bin, free_port, make_random_file, openssh_sftp,
                      sha256_file, wait_port)

SSHD = "/usr/sbin/sshd"


def stdio_argv(root):
    return [str(ferry_bin()), "serve", "sftp", "--stdio", str(root)]


def stdio_cmdline(root):
    return " ".join(shlex.quote(a) for a in stdio_argv(root))


def stdio_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return clean_env({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
                      "RUST_BACKTRACE": "1"})


def packet(ptype, payload=b""):
    return struct.pack(">IB", len(payload) + 1, ptype) + payload


INIT_V3 = packet(1, struct.pack(">I", 3))


def batch_for(src_a, src_b, down):
    return (f'put {src_a} a.bin\n'
            f'mkdir d\n'
            f'put {src_b} "d/b b.bin"\n'
            f'ls -l\n'
            f'ls -l d\n'
            f'get a.bin {down}/a.bin\n'
            f'get "d/b b.bin" {down}/b.bin\n'
            f'rename a.bin d/renamed.bin\n'
            f'rm d/renamed.bin\n'
            f'mkdir gone\n'
            f'rmdir gone\n')


def check_batch_result(root, out, src_a, src_b, down):
    root = Path(root)
    assert "a.bin" in out and "b b.bin" in out, out
    assert sha256_file(root / "d" / "b b.bin") == sha256_file(src_b)
    assert not (root / "a.bin").exists() and not (root / "d" / "renamed.bin").exists()
    assert not (root / "gone").exists()
    assert sha256_file(down / "a.bin") == sha256_file(src_a)
    assert sha256_file(down / "b.bin") == sha256_file(src_b)
    assert sorted(os.listdir(root)) == ["d"], os.listdir(root)


@pytest.fixture
def payload(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    a = make_random_file(src / "a.bin", (3 << 20) + 5)
    b = make_random_file(src / "b.bin", 1)
    down = tmp_path / "down"
    down.mkdir()
    return a, b, down


# --------------------------------------------------------------------------
# sftp -D: OpenSSH's client runs Ferry directly as its server
# --------------------------------------------------------------------------

def test_sftp_direct(tmp_path, payload):
    root = tmp_path / "served"
    root.mkdir()
    a, b, down = payload
    p = subprocess.run(["sftp", "-b", "-", "-D", stdio_cmdline(root)],
                       input=batch_for(a, b, down), capture_output=True, text=True,
                       timeout=120, env=stdio_env(tmp_path))
    assert p.returncode == 0, f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    check_batch_result(root, p.stdout, a, b, down)


# --------------------------------------------------------------------------
# a private OpenSSH sshd with Ferry as its sftp subsystem
# --------------------------------------------------------------------------

SSHD_CONFIG = """\
Port {port}
ListenAddress {host}
HostKey {hostkey}
PidFile {pid}
AuthorizedKeysFile {authkeys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
LogLevel ERROR
SetEnv HOME={home}
Subsystem sftp {subsystem}
"""


class Sshd:
    def __init__(self, port, proc, log, user):
        self.port, self.proc, self.log, self.user = port, proc, log, user

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def private_sshd(tmp_path, keys):
    """private_sshd(subsystem, authorized_keys=None) -> a running sshd on
    127.0.0.1, run as the current user, logging in with the client key."""
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"{SSHD} not installed (scripts/install-test-deps.sh installs it)")
    started = []

    def start(subsystem, authorized=None):
        n = len(started)
        d = tmp_path / f"sshd{n}"
        d.mkdir()
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        port = free_port()
        cfg = d / "sshd_config"
        cfg.write_text(SSHD_CONFIG.format(
            port=port, host=HOST, hostkey=keys.host, pid=d / "sshd.pid",
            authkeys=authorized or keys.authorized, home=home, subsystem=subsystem))
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # privilege separation dir
        chk = subprocess.run([SSHD, "-t", "-f", cfg], capture_output=True, text=True,
                             timeout=30)
        assert chk.returncode == 0, f"sshd -t rejected the config: {chk.stderr}"
        log = d / "sshd.log"
        with open(log, "wb") as lf:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", cfg], stdin=subprocess.DEVNULL,
                                    stdout=lf, stderr=subprocess.STDOUT,
                                    env=clean_env({"HOME": str(home)}),
                                    start_new_session=True)
        s = Sshd(port, proc, log, pwd.getpwuid(os.getuid()).pw_name)
        started.append(s)
        if not wait_port(port, proc):
            pytest.fail(f"sshd did not start:\n{s.log_text()}", pytrace=False)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.terminate()
            try:
                s.proc.wait(10)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(10)


def run_through_sshd(sshd, batch):
    rc, out, err = openssh_sftp(sshd, batch, user=sshd.user)
    assert rc == 0, f"sftp exited {rc}\nstdout:\n{out}\nstderr:\n{err}\nsshd log:\n" \
                    f"{sshd.log_text()}"
    return out


def test_openssh_subsystem(private_sshd, tmp_path, payload):
    root = tmp_path / "served"
    root.mkdir()
    a, b, down = payload
    sshd = private_sshd(stdio_cmdline(root))
    out = run_through_sshd(sshd, batch_for(a, b, down))
    # The files landed in Ferry's served directory, not in a home directory:
    # Ferry (not OpenSSH's own sftp-server) served the session.
    check_batch_result(root, out, a, b, down)


def test_openssh_forced_command(private_sshd, tmp_path, keys, payload):
    """`command="ferry serve sftp --stdio DIR"` in authorized_keys, with the
    real subsystem pointing nowhere useful."""
    root = tmp_path / "served"
    root.mkdir()
    a, b, down = payload
    cmd = stdio_cmdline(root).replace("\\", "\\\\").replace('"', '\\"')
    ak = keys.write_authorized("ak_forced", f'command="{cmd}",restrict {keys.client_pub}\n')
    sshd = private_sshd("/bin/false", authorized=ak)
    out = run_through_sshd(sshd, batch_for(a, b, down))
    check_batch_result(root, out, a, b, down)


# --------------------------------------------------------------------------
# driven by hand
# --------------------------------------------------------------------------

def test_refuses_a_terminal(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    master, slave = os.openpty()
    try:
        p = subprocess.Popen(stdio_argv(root), stdin=slave, stdout=slave,
                             stderr=subprocess.PIPE, env=stdio_env(tmp_path),
                             start_new_session=True)
        os.close(slave)
        slave = None
        tty_out = b""
        deadline = time.monotonic() + 10
        while p.poll() is None and time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    tty_out += os.read(master, 4096)
                except OSError:
                    break
        if p.poll() is None:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                pytest.fail("ferry --stdio kept running on a terminal")
        try:
            while select.select([master], [], [], 0.1)[0]:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                tty_out += chunk
        except OSError:
            pass
        err = p.stderr.read().decode("utf-8", "replace")
        p.stderr.close()
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    text = err + tty_out.decode("utf-8", "replace")
    assert p.returncode != 0, text
    assert "terminal" in text.lower() or "tty" in text.lower(), text
    assert os.listdir(root) == []


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",          # a 1.2 GB length prefix
    b"\xff\xff\xff\xf0" + bytes(range(256)) * 4,         # 4 GiB length prefix
    packet(17, struct.pack(">I", 1) + struct.pack(">I", 1) + b"/"),   # STAT before INIT
], ids=["http", "huge-length", "before-init"])
def test_garbage_on_stdin_exits_nonzero(tmp_path, garbage):
    root = tmp_path / "served"
    root.mkdir()
    p = subprocess.Popen(stdio_argv(root), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=stdio_env(tmp_path))
    try:
        # Garbage, and stdin left open: the server must give up by itself.
        p.stdin.write(garbage)
        p.stdin.flush()
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        pytest.fail("ferry --stdio still running 10 s after garbage input")
    finally:
        for f in (p.stdin, p.stdout, p.stderr):
            try:
                f.close()
            except OSError:
                pass
    assert rc != 0


def test_eof_on_stdin_exits_zero(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    p = subprocess.run(stdio_argv(root), input=b"", capture_output=True, timeout=10,
                       env=stdio_env(tmp_path))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert p.stdout == b""


def test_init_then_eof_exits_zero(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    p = subprocess.run(stdio_argv(root), input=INIT_V3, capture_output=True, timeout=10,
                       env=stdio_env(tmp_path))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    out = p.stdout
    assert len(out) >= 9, out
    length, ptype, version = struct.unpack(">IBI", out[:9])
    assert ptype == 2 and version == 3 and length == len(out) - 4, out
    # Nothing but the VERSION reply on stdout (logs go to stderr).
