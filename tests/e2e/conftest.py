"""Fixtures for Ferry's end-to-end tests: the real `ferry` binary driven by
the real OpenSSH `sftp`/`ssh` clients, paramiko, rclone and sshfs.

Everything binds and connects to 127.0.0.1 only, and every subprocess has a
timeout. The binary is `$FERRY_BIN`, else `target/debug/ferry` of the repo.
"""

import hashlib
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from sftpraw import RawSftp

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "debug" / "ferry"
HOST = "127.0.0.1"
USER = "bench"
PASSWORD = "ferry-e2e-Pa55"
READY_TIMEOUT = 20
PER_TEST_TIMEOUT = int(os.environ.get("FERRY_E2E_TEST_TIMEOUT", "600"))
VERBOSITY = os.environ.get("FERRY_E2E_VERBOSITY", "-v")


# --------------------------------------------------------------------------
# pytest plumbing: per-test timeout, server logs on failure
# --------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A last-resort per-test timeout (no pytest-timeout plugin needed)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded {PER_TEST_TIMEOUT} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(PER_TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in getattr(item, "_ferry_servers", []):
            rep.sections.append((f"ferry log (port {srv.port})", srv.log_tail()))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FERRY_E2E_LARGE") != "1":
        skip = pytest.mark.skip(reason="1 GiB transfers run only with FERRY_E2E_LARGE=1")
        for item in items:
            if "large" in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def ferry_bin():
    path = Path(os.environ.get("FERRY_BIN", DEFAULT_BIN))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"ferry binary not found at {path}: build it with `cargo build` "
            "(or set FERRY_BIN to the binary to test)",
            pytrace=False,
        )
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def sha256_file(path):
    return hash_file("sha256", path)


def make_random_file(path, size):
    """Write `size` random bytes to `path` (os.urandom: incompressible)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


def clean_env(extra=None):
    """The environment for subprocesses: no FERRY_*/RCLONE_* leaking in from
    the caller, no AWS_CA_BUNDLE (rclone warns about it)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FERRY_", "RCLONE_")) and k != "AWS_CA_BUNDLE"}
    env["LC_ALL"] = "C.UTF-8"
    # The suite logs in with wrong passwords on purpose from 127.0.0.1 all
    # the time; penalties would lock the next test out. test_hardening.py
    # tests them from other loopback addresses, where they apply.
    env["FERRY_PER_SOURCE_PENALTY_EXEMPT_LIST"] = "127.0.0.1"
    if extra:
        env.update(extra)
    return env


def run(cmd, timeout=60, **kw):
    """subprocess.run with captured text output and a timeout."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], timeout=timeout, **kw)


def usage_error(tmp_path, args):
    """Start `serve sftp` on a scratch directory with `args`, which must be
    refused as a usage error: exit status 2 and one line. Returns it."""
    served = Path(tmp_path) / "served"
    served.mkdir(exist_ok=True)
    p = run([ferry_bin(), "serve", "sftp", served, "--no-auth",
             "--cache-dir", Path(tmp_path) / "cache", *args], timeout=20,
            env=clean_env({"HOME": str(tmp_path)}))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{p.stderr}"
    return p.stderr


def ok(res):
    """The stdout of a successful (rc, stdout, stderr) run of a client."""
    rc, out, err = res
    assert rc == 0, f"exited {rc}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    return out


def wait_until(pred, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_port(port, proc, timeout=READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------

class Keys:
    """Host key, client keys and authorized_keys, made with ssh-keygen."""

    def __init__(self, d: Path):
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        self.host = self._gen("host_ed25519")
        self.client = self._gen("client_ed25519")
        self.other = self._gen("other_ed25519")  # never authorized
        self.client_pub = (self.client.with_suffix(".pub")).read_text().strip()
        self.other_pub = (self.other.with_suffix(".pub")).read_text().strip()
        self.authorized = d / "authorized_keys"
        self.authorized.write_text(self.client_pub + "\n")
        os.chmod(self.authorized, 0o600)

    def _gen(self, name):
        path = self.dir / name
        if not path.exists():
            r = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path],
                    timeout=30)
            assert r.returncode == 0, r.stderr
        return path

    def write_authorized(self, name, text):
        p = self.dir / name
        p.write_text(text)
        os.chmod(p, 0o600)
        return p

    def paramiko_key(self, which="client"):
        return paramiko.Ed25519Key.from_private_key_file(str(getattr(self, which)))


_KEYS = {}


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    k = Keys(tmp_path_factory.mktemp("keys"))
    _KEYS["keys"] = k
    return k


def default_client_key():
    return _KEYS["keys"].client


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------

class FerryServer:
    """One running `ferry serve sftp`."""

    def __init__(self, args, root, cache_dir, port, log_path, env):
        self.args = args
        self.root = Path(root)
        self.cache_dir = Path(cache_dir)
        self.port = port
        self.log_path = Path(log_path)
        self.env = env
        self.proc = None
        self.returncode = None

    def start(self, wait=True):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(a) for a in self.args], stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )
        if wait:
            if not wait_port(self.port, self.proc):
                rc = self.proc.poll()
                self.stop()
                what = f"exited with status {rc}" if rc is not None else \
                    f"did not accept connections within {READY_TIMEOUT} s"
                pytest.fail(f"ferry {what}:\n$ {' '.join(map(str, self.args))}\n"
                            f"{self.log_tail()}", pytrace=False)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL if it does not exit in `timeout` s.
        Returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.returncode = None
                self._log.close()
                return None
        self.returncode = self.proc.returncode
        self._log.close()
        return self.returncode

    def log(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=200):
        lines = self.log().splitlines()
        head = f"(log {self.log_path}, {len(lines)} lines; last {min(n, len(lines))})\n"
        return head + "\n".join(lines[-n:])

    def backing(self, *parts):
        """A path in the served directory, on the local file system."""
        return self.root.joinpath(*parts)


class FerryFactory:
    """Start servers: `ferry_server(extra_args..., auth=..., ...)`."""

    def __init__(self, request, tmp_path, keys):
        self.request = request
        self.tmp = tmp_path
        self.keys = keys
        self.servers = []
        self.count = 0
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        request.node._ferry_servers = self.servers

    def command(self, root, port, cache_dir, *, auth=True, host_key=True, extra=(),
                verbosity=None):
        args = [ferry_bin(), "serve", "sftp", root, "--addr", f"{HOST}:{port}"]
        if cache_dir is not None:
            args += ["--cache-dir", cache_dir]
        if host_key:
            args += ["--key", self.keys.host]
        if auth:
            args += ["--user", USER, "--pass", PASSWORD,
                     "--authorized-keys", self.keys.authorized]
        verbosity = VERBOSITY if verbosity is None else verbosity
        if verbosity:
            args.append(verbosity)
        return args + [str(e) for e in extra]

    def env(self, extra=None):
        # A private HOME: the default ~/.ssh/authorized_keys and cache dir of
        # whoever runs the tests must never leak into a test.
        return clean_env({"HOME": str(self.home),
                          "XDG_CACHE_HOME": str(self.home / ".cache"),
                          "RUST_BACKTRACE": "1", **(extra or {})})

    def __call__(self, *extra, root=None, cache_dir=None, auth=True, host_key=True,
                 env=None, wait=True, port=None, verbosity=None, target=None):
        """`target` replaces the served path argument (a remote such as
        `:memory:`); `root` is then only a scratch directory."""
        self.count += 1
        n = self.count
        root = Path(root) if root is not None else self.tmp / f"root{n}"
        root.mkdir(parents=True, exist_ok=True)
        cache_dir = Path(cache_dir) if cache_dir is not None else self.tmp / f"cache{n}"
        port = port or free_port()
        args = self.command(target if target is not None else root, port, cache_dir,
                            auth=auth, host_key=host_key, extra=extra, verbosity=verbosity)
        srv = FerryServer(args, root, cache_dir, port, self.tmp / f"ferry{n}.log",
                          self.env(env))
        self.servers.append(srv)
        return srv.start(wait=wait)

    def finish(self):
        problems = []
        for srv in self.servers:
            srv.stop()
            log = srv.log()
            if "panicked" in log:
                problems.append(f"ferry on port {srv.port} panicked:\n{srv.log_tail()}")
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def ferry_factory(request, tmp_path, keys):
    """Factory: `srv = ferry_factory("--read-only")` starts a server with the
    default auth (user bench/PASSWORD and the client key) plus the args."""
    f = FerryFactory(request, tmp_path, keys)
    yield f
    f.finish()


@pytest.fixture
def ferry(ferry_factory):
    """A default server on a fresh empty root."""
    return ferry_factory()


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------

SSH_OPTS = ["-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=20"]


def openssh_sftp(server, batch, *, key=None, user=USER, extra=(), timeout=120, cwd=None):
    """Run `sftp -b -` with `batch` on stdin. Returns (rc, stdout, stderr)."""
    key = key or default_client_key()
    cmd = ["sftp", *SSH_OPTS, "-b", "-", "-P", str(server.port), "-i", str(key),
           *extra, f"{user}@{HOST}"]
    p = run(cmd, input=batch, timeout=timeout, cwd=cwd, env=clean_env())
    return p.returncode, p.stdout, p.stderr


def openssh_ssh(server, *command, key=None, user=USER, timeout=60, extra=()):
    """Run `ssh host command...`. Returns (rc, stdout, stderr)."""
    key = key or default_client_key()
    cmd = ["ssh", *SSH_OPTS, "-p", str(server.port), "-i", str(key), *extra,
           f"{user}@{HOST}", *command]
    p = run(cmd, timeout=timeout, stdin=subprocess.DEVNULL, env=clean_env())
    return p.returncode, p.stdout, p.stderr


def connect_transport(port, *, user=USER, password=None, pkey=None, timeout=20,
                      source_addr=None):
    """An authenticated paramiko Transport (password and/or key)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source_addr:
        sock.bind((source_addr, 0))
    sock.connect((HOST, port))
    t = paramiko.Transport(sock)
    t.banner_timeout = timeout
    t.auth_timeout = timeout
    try:
        t.start_client(timeout=timeout)
        if pkey is not None:
            t.auth_publickey(user, pkey)
        elif password is not None:
            t.auth_password(user, password)
        else:
            t.auth_none(user)
    except Exception:
        t.close()
        raise
    return t


class Clients:
    """Opens paramiko SFTP clients and closes them at teardown."""

    def __init__(self, keys):
        self.keys = keys
        self.open = []

    def transport(self, server, **kw):
        if "password" not in kw and "pkey" not in kw:
            kw["password"] = PASSWORD
        t = connect_transport(server.port, **kw)
        self.open.append(t)
        return t

    def sftp(self, server, *, key=False, timeout=60, **kw):
        """A paramiko SFTPClient (password auth unless key=True)."""
        if key:
            kw["pkey"] = self.keys.paramiko_key()
        t = self.transport(server, **kw)
        c = paramiko.SFTPClient.from_transport(t)
        c.get_channel().settimeout(timeout)
        self.open.append(c)
        return c

    def raw(self, server, init=True, **kw):
        """A raw-packet SFTP session (see sftpraw.py)."""
        t = self.transport(server, **kw)
        s = RawSftp.open(t, init=init)
        self.open.append(s)
        return s

    def close_all(self):
        for c in reversed(self.open):
            try:
                c.close()
            except Exception:
                pass
        self.open.clear()


@pytest.fixture
def clients(keys):
    c = Clients(keys)
    yield c
    c.close_all()


def assert_server_healthy(server, clients):
    """A fresh, normal client can log in, write, list and read back."""
    assert server.alive(), f"ferry exited with status {server.proc.poll()}"
    c = clients.sftp(server)
    name = f"health-{os.urandom(4).hex()}.txt"
    data = os.urandom(1000)
    with c.open(name, "wb") as f:
        f.write(data)
    assert name in c.listdir("/")
    with c.open(name, "rb") as f:
        assert f.read() == data
    c.remove(name)
    c.close()


# --------------------------------------------------------------------------
# rclone
# --------------------------------------------------------------------------

_OBSCURED = {}


def rclone_obscure(password):
    if password not in _OBSCURED:
        p = run(["rclone", "--config", "/dev/null", "obscure", password],
                timeout=30, env=clean_env())
        assert p.returncode == 0, p.stderr
        _OBSCURED[password] = p.stdout.strip()
    return _OBSCURED[password]


def rclone_remote(server, path="", user=USER, password=PASSWORD):
    """An on-the-fly `:sftp,...:` remote for `server`."""
    opts = (f"host={HOST},port={server.port},user={user},"
            f"pass={rclone_obscure(password)},shell_type=none")
    return f":sftp,{opts}:{path}"


def rclone(*args, timeout=300, check=True, hashcheck=False):
    """Run rclone with no config file. Returns the CompletedProcess. The sftp
    backend's hash checks are off unless `hashcheck`."""
    cmd = ["rclone", "--config", "/dev/null",
           *([] if hashcheck else ["--sftp-disable-hashcheck"]),
           "--low-level-retries", "1", "--retries", "1", "--contimeout", "20s",
           "--timeout", "60s", *args]
    p = run(cmd, timeout=timeout, env=clean_env())
    if check:
        assert p.returncode == 0, (
            f"$ {' '.join(map(str, cmd))}\nexit {p.returncode}\n"
            f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


# --------------------------------------------------------------------------
# shared data
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def random_file(data_dir):
    """random_file(size) -> (path, sha256) of a cached random file."""
    cache = {}

    def get(size):
        if size not in cache:
            p = make_random_file(data_dir / f"random-{size}.bin", size)
            cache[size] = (p, sha256_file(p))
        return cache[size]

    return get


def tree_listing(root):
    """{relative path: (size, sha256)} of every file under `root`, and the
    set of directories."""
    files, dirs = {}, set()
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            dirs.add(str((Path(dirpath) / d).relative_to(root)))
        for f in filenames:
            p = Path(dirpath) / f
            files[str(p.relative_to(root))] = (p.stat().st_size, sha256_file(p))
    return files, dirs


def is_temp_name(name):
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    return name.startswith(".") and ".ferry-" in name and name.endswith(".partial")


def temp_files(root):
    out = []
    for dirpath, _, filenames in os.walk(root):
        out += [os.path.join(dirpath, f) for f in filenames if is_temp_name(f)]
    return out


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# --------------------------------------------------------------------------
# exec commands (md5sum, df, echo, ...) and hashes
# --------------------------------------------------------------------------

class ExecResult:
    """What one exec request produced: exit status and raw output bytes."""

    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    @property
    def stdout(self):
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self):
        return self.err.decode("utf-8", "replace")

    def __repr__(self):
        return f"ExecResult(rc={self.rc}, out={self.out[:2000]!r}, err={self.err[:2000]!r})"


def exec_on(transport, command, *, stdin=b"", timeout=60):
    """Run one exec request on an open paramiko Transport.

    `command` goes on the wire byte for byte (str is sent as UTF-8). Raises
    paramiko.SSHException if the server refuses the request."""
    ch = transport.open_session(timeout=20)
    try:
        ch.settimeout(timeout)
        ch.exec_command(command)
        if stdin:
            ch.sendall(stdin)
        ch.shutdown_write()
        out = ch.makefile("rb").read()
        err = ch.makefile_stderr("rb").read()
        rc = ch.recv_exit_status()
        return ExecResult(rc, out, err)
    finally:
        ch.close()


def ssh_exec(server, command, *, timeout=60, key=False, **kw):
    """Log in (password, or the client key with key=True), run one exec
    request, log out. Returns an ExecResult."""
    if key:
        kw["pkey"] = _KEYS["keys"].paramiko_key()
    elif "pkey" not in kw:
        kw.setdefault("password", PASSWORD)
    t = connect_transport(server.port, **kw)
    try:
        return exec_on(t, command, timeout=timeout)
    finally:
        t.close()


_RCLONE_UNSAFE = None


def rclone_shell_escape(path):
    """Escape a path the way rclone's sftp backend does before appending it
    to `md5sum ` (backend/sftp quoteOrEscapeShellPath, unix shell): a
    backslash before every character outside [A-Za-z0-9_.,:/@\\u0080-...\\n-],
    then each newline becomes the three characters quote, newline, quote."""
    import re
    global _RCLONE_UNSAFE
    if _RCLONE_UNSAFE is None:
        _RCLONE_UNSAFE = re.compile("[^A-Za-z0-9_.,:/@\u0080-\U0010FFFF\n-]")
    safe = _RCLONE_UNSAFE.sub(lambda m: "\\" + m.group(0), path)
    return safe.replace("\n", "'\n'")


def _need(module, pip_name):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"python package {pip_name} is missing: run scripts/install-test-deps.sh",
                    pytrace=False)


def _hasher(kind):
    """A hashlib-like object (update/hexdigest) for a hash name as rclone
    spells it."""
    import zlib
    if kind in ("md5", "sha1", "sha256", "sha512"):
        return hashlib.new(kind)
    if kind == "crc32":
        class Crc32:
            def __init__(self):
                self.v = 0

            def update(self, data):
                self.v = zlib.crc32(data, self.v)

            def hexdigest(self):
                return format(self.v & 0xFFFFFFFF, "08x")
        return Crc32()
    if kind == "blake3":
        return _need("blake3", "blake3").blake3()
    if kind == "xxh3":
        return _need("xxhash", "xxhash").xxh3_64()
    if kind == "xxh128":
        return _need("xxhash", "xxhash").xxh3_128()
    if kind == "whirlpool":
        return hashlib.new("whirlpool")   # ValueError where OpenSSL lacks it
    raise ValueError(f"unknown hash kind {kind}")


def hash_bytes(kind, data):
    """Lower-hex digest of `data` (md5, sha1, sha256, sha512, crc32, blake3,
    xxh3, xxh128)."""
    h = _hasher(kind)
    h.update(data)
    return h.hexdigest()


def hash_file(kind, path):
    """Lower-hex digest of a local file, read in 1 MiB pieces."""
    h = _hasher(kind)
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# rclone with shell detection and hashes on
# --------------------------------------------------------------------------

def rclone_sftp_remote(server, path="", *, user=USER, password=PASSWORD, key_file=None,
                       extra=""):
    """An on-the-fly `:sftp,...:` remote for `server` WITHOUT shell_type=none,
    so rclone detects the shell with `echo` and the hash commands with
    md5sum/sha1sum over exec. With key_file, the key replaces the password."""
    opts = f"host={HOST},port={server.port},user={user}"
    if key_file is not None:
        opts += f",key_file={key_file}"
    else:
        opts += f",pass={rclone_obscure(password)}"
    if extra:
        opts += "," + extra
    return f":sftp,{opts}:{path}"


def rclone_hashed(*args, timeout=300, check=True):
    """Like rclone(), but with the sftp backend's hash checks left on."""
    return rclone(*args, timeout=timeout, check=check, hashcheck=True)


_RCLONE_HELP = {}


def rclone_help(*topic):
    """The text of `rclone help flags` / `rclone <cmd> --help` (cached), to
    find out what this rclone version offers."""
    key = tuple(topic)
    if key not in _RCLONE_HELP:
        p = run(["rclone", "--config", "/dev/null", *topic], timeout=60, env=clean_env())
        _RCLONE_HELP[key] = (p.returncode, p.stdout + p.stderr)
    return _RCLONE_HELP[key]


# Real storage servers for the backend tests (Garage, rclone serve webdav,
# sshd): defined in backends.py, imported here so every test can use them.
from backends import (backends_conf, s3_server, sshd_server,  # noqa: E402,F401
                      webdav_server)
