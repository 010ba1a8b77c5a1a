"""Real storage servers on 127.0.0.1 for the backend end-to-end tests.

Session-scoped pytest fixtures (re-exported by conftest.py):

- `s3_server`: Garage, a real S3-compatible store (single node, sqlite),
  bucket `ferry-test` with a key allowed on it. Binary:
  `$FERRY_TOOLS_DIR/garage/bin/garage` (default FERRY_TOOLS_DIR:
  ~/.cache/ferry-test-tools; scripts/install-test-deps.sh installs it).
- `webdav_server`: `rclone serve webdav` on a temp directory, with a user
  and password.
- `sshd_server`: a private OpenSSH sshd with its own host key, accepting one
  fresh client key for the current user, `internal-sftp`.
- `backends_conf`: one rclone.conf with remotes `s3remote`, `davremote`
  and `sshremote` for the three (see `write_backends_conf`).

A missing server binary skips the tests that need it, or fails them when
FERRY_E2E_REQUIRE_BACKENDS=1 (scripts/test.sh sets it). Every server logs to
a file in its temp directory; a server that does not come up fails with the
tail of that log.

`rclone_conf(conf, *args)` runs rclone with a config file (and without
AWS_CA_BUNDLE, which breaks Debian's rclone 1.60 S3 backend).
"""

import getpass
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

import conftest as _c   # conftest imports this module at its end: use _c.X at call time

REQUIRE_ENV = "FERRY_E2E_REQUIRE_BACKENDS"
GARAGE_BUCKET = "ferry-test"
GARAGE_REGION = "garage"
START_TIMEOUT = 60


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def tools_dir():
    return Path(os.environ.get("FERRY_TOOLS_DIR")
                or Path.home() / ".cache" / "ferry-test-tools")


def garage_bin():
    return tools_dir() / "garage" / "bin" / "garage"


def missing_tool(what):
    """Skip (or, with FERRY_E2E_REQUIRE_BACKENDS=1, fail) for a missing tool."""
    msg = f"{what} (run scripts/install-test-deps.sh)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {msg}", pytrace=False)
    pytest.skip(msg)


def _executable(path):
    return Path(path).is_file() and os.access(path, os.X_OK)


def _log_tail(path, n=80):
    try:
        lines = Path(path).read_bytes().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return f"(log {path}, last {min(n, len(lines))} of {len(lines)} lines)\n" + \
        "\n".join(lines[-n:])


def _free_ports(n):
    ports = set()
    while len(ports) < n:
        ports.add(_c.free_port())
    return sorted(ports)


class Daemon:
    """A server process: output to a log file, SIGTERM then SIGKILL at stop."""

    def __init__(self, name, args, log_path, env=None, cwd=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=env or _c.clean_env(), cwd=cwd,
            start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=80):
        return _log_tail(self.log_path, n)

    def fail(self, why):
        """Stop the server and fail the fixture with the log tail."""
        self.stop()
        pytest.fail(f"{self.name} {why}:\n$ {' '.join(self.args)}\n{self.log_tail()}",
                    pytrace=False)

    def wait_port(self, port, timeout=START_TIMEOUT):
        if not _c.wait_port(port, self.proc, timeout=timeout):
            rc = self.proc.poll()
            self.fail(f"exited with status {rc}" if rc is not None
                      else f"did not listen on port {port} within {timeout} s")

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


RCLONE_FLAGS = ["--low-level-retries", "1", "--retries", "1", "--contimeout", "20s",
                "--timeout", "60s"]


def rclone_conf(conf, *args, timeout=300, check=True, env=None):
    """Run rclone with config file `conf` (clean env: no AWS_CA_BUNDLE, no
    RCLONE_*). Returns the CompletedProcess; asserts success if `check`."""
    cmd = ["rclone", "--config", str(conf), *RCLONE_FLAGS, *map(str, args)]
    p = _c.run(cmd, timeout=timeout, env=_c.clean_env(env))
    if check:
        assert p.returncode == 0, (
            f"$ {' '.join(cmd)}\nexit {p.returncode}\n"
            f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


# --------------------------------------------------------------------------
# Garage (S3)
# --------------------------------------------------------------------------

@dataclass
class S3Server:
    endpoint: str               # http://127.0.0.1:PORT
    access_key_id: str
    secret_access_key: str
    region: str
    bucket: str
    port: int
    rpc_port: int
    admin_port: int
    admin_token: str
    config: Path                # garage.toml
    dir: Path
    daemon: Daemon = field(repr=False)

    def garage(self, *args, timeout=60, check=True):
        """Run the garage CLI against this node."""
        return _garage(self.config, *args, timeout=timeout, check=check, daemon=self.daemon)

    def rclone_remote(self, path=""):
        """An on-the-fly `:s3,...:` remote (no config file needed)."""
        return (f":s3,provider=Other,endpoint='{self.endpoint}',"
                f"access_key_id={self.access_key_id},"
                f"secret_access_key={self.secret_access_key},"
                f"region={self.region},force_path_style=true:{path}")

    def log_tail(self, n=80):
        return self.daemon.log_tail(n)


def _garage(config, *args, timeout=60, check=True, daemon=None):
    cmd = [garage_bin(), "-c", config, *args]
    p = _c.run(cmd, timeout=timeout, env=_c.clean_env())
    if check and p.returncode != 0:
        msg = (f"$ {' '.join(map(str, cmd))}\nexit {p.returncode}\n"
               f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
        if daemon is not None:
            daemon.fail(f"setup failed:\n{msg}")
        pytest.fail(msg, pytrace=False)
    return p


def start_garage(d: Path) -> S3Server:
    if not _executable(garage_bin()):
        missing_tool(f"Garage is not installed at {garage_bin()}")
    d.mkdir(parents=True, exist_ok=True)
    s3_port, rpc_port, admin_port = _free_ports(3)
    admin_token = secrets.token_hex(16)
    cfg = d / "garage.toml"
    cfg.write_text(f"""\
metadata_dir = "{d / 'meta'}"
data_dir = "{d / 'data'}"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "{GARAGE_REGION}"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
admin_token = "{admin_token}"
""")
    os.chmod(cfg, 0o600)
    daemon = Daemon("garage", [garage_bin(), "-c", cfg, "server"], d / "garage.log",
                    env=_c.clean_env({"RUST_LOG": "garage=info"}))
    try:
        daemon.wait_port(rpc_port)
        # The CLI answers once the node is up.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            p = _garage(cfg, "status", check=False, timeout=30)
            if p.returncode == 0:
                break
            if not daemon.alive() or time.monotonic() > deadline:
                daemon.fail(f"did not answer `garage status`: {p.stderr[-2000:]}")
            time.sleep(0.3)
        node = _garage(cfg, "node", "id", "-q", daemon=daemon).stdout.strip().split("@")[0]
        assert re.fullmatch(r"[0-9a-f]{64}", node), node
        _garage(cfg, "layout", "assign", "-z", "dc1", "-c", "1G", node, daemon=daemon)
        _garage(cfg, "layout", "apply", "--version", "1", daemon=daemon)
        _garage(cfg, "bucket", "create", GARAGE_BUCKET, daemon=daemon)
        out = _garage(cfg, "key", "create", "ferry-test-key", daemon=daemon).stdout
        key_id = re.search(r"Key ID:\s*(\S+)", out)
        secret = re.search(r"Secret key:\s*(\S+)", out)
        if not (key_id and secret):
            daemon.fail(f"`garage key create` printed no key:\n{out}")
        _garage(cfg, "bucket", "allow", "--read", "--write", "--owner", GARAGE_BUCKET,
                "--key", "ferry-test-key", daemon=daemon)
        srv = S3Server(endpoint=f"http://127.0.0.1:{s3_port}", access_key_id=key_id.group(1),
                       secret_access_key=secret.group(1), region=GARAGE_REGION,
                       bucket=GARAGE_BUCKET, port=s3_port, rpc_port=rpc_port,
                       admin_port=admin_port, admin_token=admin_token, config=cfg, dir=d,
                       daemon=daemon)
        # Ready when an S3 client can list the bucket.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            p = _c.run(["rclone", "--config", "/dev/null", *RCLONE_FLAGS, "lsf",
                        srv.rclone_remote(GARAGE_BUCKET)], timeout=60, env=_c.clean_env())
            if p.returncode == 0:
                return srv
            if not daemon.alive() or time.monotonic() > deadline:
                daemon.fail(f"S3 API not ready: rclone lsf said:\n{p.stderr[-2000:]}")
            time.sleep(0.5)
    except BaseException:
        daemon.stop()
        raise


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """Garage on 127.0.0.1: .endpoint, .access_key_id, .secret_access_key,
    .region ("garage"), .bucket ("ferry-test")."""
    srv = start_garage(tmp_path_factory.mktemp("garage"))
    yield srv
    srv.daemon.stop()


# --------------------------------------------------------------------------
# rclone serve webdav
# --------------------------------------------------------------------------

@dataclass
class WebdavServer:
    url: str                    # http://127.0.0.1:PORT
    user: str
    password: str
    dir: Path                   # the directory it serves
    port: int
    daemon: Daemon = field(repr=False)

    def log_tail(self, n=80):
        return self.daemon.log_tail(n)


def start_webdav(d: Path) -> WebdavServer:
    if shutil.which("rclone") is None:
        missing_tool("rclone is not installed")
    served = d / "served"
    served.mkdir(parents=True, exist_ok=True)
    port = _c.free_port()
    user, password = "davuser", "dav-" + secrets.token_hex(8)
    # --dir-cache-time 0s: files put into `served` directly are seen at once.
    daemon = Daemon("rclone serve webdav",
                    ["rclone", "--config", "/dev/null", "serve", "webdav", served,
                     "--addr", f"127.0.0.1:{port}", "--user", user, "--pass", password,
                     "--dir-cache-time", "0s", "-v"],
                    d / "webdav.log")
    daemon.wait_port(port)
    return WebdavServer(url=f"http://127.0.0.1:{port}", user=user, password=password,
                        dir=served, port=port, daemon=daemon)


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory):
    """`rclone serve webdav` on 127.0.0.1: .url, .user, .password, .dir."""
    srv = start_webdav(tmp_path_factory.mktemp("webdav"))
    yield srv
    srv.daemon.stop()


# --------------------------------------------------------------------------
# OpenSSH sshd
# --------------------------------------------------------------------------

SSHD = "/usr/sbin/sshd"


@dataclass
class SshdServer:
    host: str
    port: int
    user: str
    key_file: Path              # private client key (ed25519, no passphrase)
    dir: Path                   # a directory to serve (absolute)
    config: Path
    daemon: Daemon = field(repr=False)

    def log_tail(self, n=80):
        return self.daemon.log_tail(n)


def _keygen(path):
    p = _c.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", path],
               timeout=30)
    assert p.returncode == 0, p.stderr
    return path


def start_sshd(d: Path) -> SshdServer:
    if not _executable(SSHD):
        missing_tool(f"{SSHD} is missing (Debian package openssh-server)")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    served = d / "served"
    served.mkdir()
    host_key = _keygen(d / "ssh_host_ed25519_key")
    client_key = _keygen(d / "client_ed25519")
    authorized = d / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    os.chmod(authorized, 0o600)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    port = _c.free_port()
    cfg = d / "sshd_config"
    cfg.write_text(f"""\
ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
StrictModes no
Subsystem sftp internal-sftp
MaxStartups 64:30:128
MaxSessions 64
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
""")
    p = _c.run([SSHD, "-t", "-f", cfg], timeout=30)
    if p.returncode != 0:
        pytest.fail(f"sshd rejects its config {cfg}:\n{p.stderr}", pytrace=False)
    daemon = Daemon("sshd", [SSHD, "-D", "-e", "-f", cfg], d / "sshd.log")
    daemon.wait_port(port)
    srv = SshdServer(host=_c.HOST, port=port, user=getpass.getuser(), key_file=client_key,
                     dir=served, config=cfg, daemon=daemon)
    # Logged in and sftp works?
    p = _c.run(["sftp", *_c.SSH_OPTS, "-b", "-", "-P", port, "-i", client_key,
                f"{srv.user}@{_c.HOST}"], input=f"ls {served}\n", timeout=60,
               env=_c.clean_env())
    if p.returncode != 0:
        daemon.fail(f"refused an sftp login:\n{p.stderr[-2000:]}")
    return srv


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory):
    """A private sshd on 127.0.0.1: .host, .port, .user, .key_file, .dir."""
    srv = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield srv
    srv.daemon.stop()


# --------------------------------------------------------------------------
# the rclone.conf for rclone and ferry
# --------------------------------------------------------------------------

S3_REMOTE, DAV_REMOTE, SSH_REMOTE = "s3remote", "davremote", "sshremote"


def backends_conf_text(s3=None, webdav=None, sshd=None):
    parts = []
    if s3 is not None:
        parts.append(f"""\
[{S3_REMOTE}]
type = s3
provider = Other
endpoint = {s3.endpoint}
access_key_id = {s3.access_key_id}
secret_access_key = {s3.secret_access_key}
region = {s3.region}
force_path_style = true
""")
    if webdav is not None:
        parts.append(f"""\
[{DAV_REMOTE}]
type = webdav
url = {webdav.url}
vendor = other
user = {webdav.user}
pass = {_c.rclone_obscure(webdav.password)}
""")
    if sshd is not None:
        parts.append(f"""\
[{SSH_REMOTE}]
type = sftp
host = {sshd.host}
port = {sshd.port}
user = {sshd.user}
key_file = {sshd.key_file}
""")
    return "\n".join(parts)


def write_backends_conf(path, s3=None, webdav=None, sshd=None):
    """Write one rclone-format config with the remotes s3remote (bucket is
    s3.bucket: use `s3remote:ferry-test/...`), davremote and sshremote
    (paths absolute: `sshremote:/abs/dir`), for the servers given (None
    leaves a remote out). Returns the path."""
    path = Path(path)
    path.write_text(backends_conf_text(s3, webdav, sshd))
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="session")
def backends_conf(tmp_path_factory, s3_server, webdav_server, sshd_server):
    """One rclone.conf with s3remote, davremote and sshremote."""
    return write_backends_conf(tmp_path_factory.mktemp("conf") / "rclone.conf",
                               s3_server, webdav_server, sshd_server)


# --------------------------------------------------------------------------
# the store a test serves: a local directory, or a prefix of a remote
# --------------------------------------------------------------------------

class Store:
    """What Ferry serves in a test, read and written directly (never
    through Ferry): a local directory (`kind` "local"), or a prefix of a
    remote (`target`, e.g. `s3remote:ferry-test/<prefix>`, reached by
    rclone with `conf`). `local` is the backing directory where there is
    one (local, and the WebDAV and SFTP servers' directories); `server` the
    server fixture (`s3` for S3); `scratch` a directory for temporary files."""

    def __init__(self, kind, *, conf=None, target=None, local=None, server=None, scratch=None):
        self.kind = self.name = kind
        self.conf = conf
        self.target = target
        self.local = Path(local) if local is not None else None
        self.root = self.local if kind == "local" else None
        self.server = server
        self.s3 = server if kind == "s3" else None
        self.scratch = Path(scratch) if scratch is not None else None

    def serve_args(self):
        """(keyword arguments, extra flags) for the ferry_factory."""
        if self.target is None:
            return {"root": self.local}, []
        return {"target": self.target}, ["--config", self.conf]

    def path(self, rel=""):
        return f"{self.target}/{rel}" if rel else self.target

    def rclone(self, *args, **kw):
        return rclone_conf(self.conf, *args, **kw)

    def entries(self, rel=""):
        """{path: lsjson entry} of everything under `rel`, recursively."""
        out = self.rclone("lsjson", "-R", self.path(rel), timeout=120).stdout
        return {e["Path"]: e for e in json.loads(out)}

    def files(self, rel=""):
        """{relative path: size} of every file under `rel`, hidden ones
        included."""
        if self.target is None:
            out = {}
            base = self.local / rel if rel else self.local
            for dirpath, _, names in os.walk(base):
                for n in names:
                    p = Path(dirpath) / n
                    try:
                        out[str(p.relative_to(base))] = p.stat().st_size
                    except FileNotFoundError:
                        pass    # a temporary file renamed away meanwhile
            return out
        return {p: e["Size"] for p, e in self.entries(rel).items() if not e["IsDir"]}

    def read(self, rel):
        if self.target is None:
            return (self.local / rel).read_bytes()
        cmd = ["rclone", "--config", str(self.conf), *RCLONE_FLAGS, "cat", self.path(rel)]
        p = subprocess.run(cmd, capture_output=True, timeout=120, env=_c.clean_env())
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        return p.stdout

    def get(self, rel):
        """The bytes of `rel`, or None if the store has no such file."""
        if rel not in self.files():
            return None
        return self.read(rel)

    def snapshot(self):
        """{relative path: bytes} of the whole store (small files only)."""
        return {rel: self.read(rel) for rel in self.files()}

    def put(self, rel, data, mtime=None):
        """Write `data` at `rel` behind Ferry's back."""
        if self.target is None:
            p = self.local / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".put-{os.urandom(3).hex()}")
            tmp.write_bytes(data)
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            os.replace(tmp, p)
            return
        src = (self.scratch or Path(self.conf).parent) / f"put-{os.urandom(4).hex()}.bin"
        src.write_bytes(data)
        if mtime is not None:
            os.utime(src, (mtime, mtime))
        self.put_file(src, rel)
        src.unlink()

    def put_file(self, local_file, rel):
        """Upload a local file with rclone directly (with rclone's mtime
        metadata)."""
        self.rclone("copyto", local_file, self.path(rel))

    def mtime(self, rel):
        """The modification time rclone sees in the store, as epoch seconds."""
        e = self.entries()[rel]
        return parse_rfc3339(e["ModTime"])


def parse_rfc3339(s):
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", s)
    assert m, s
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + float("0" + (m.group(2) or ""))


# --------------------------------------------------------------------------
# counting Garage's requests, and failing some on purpose
# --------------------------------------------------------------------------

def s3_request_counts(s3):
    """{S3 API endpoint: requests Garage has answered so far} (its
    /metrics), e.g. counts["GetObject"]."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{s3.admin_port}/metrics",
                                timeout=10) as r:
        body = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^api_s3_request_counter\{api_endpoint="(\w+)"\} (\d+)', body, re.M)}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of `upstream_port` that answers
    the next `n` requests after `arm(n)` with `503 Slow Down` (as S3 does
    when overloaded: a temporary failure) and passes everything else
    through. `failed` counts the refusals. Stops with `close()`."""

    def __init__(self, upstream_port):
        import socket
        import threading
        self.upstream = upstream_port
        self.armed = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def arm(self, n):
        with self.lock:
            self.armed = n

    def close(self):
        self.sock.close()

    def _serve(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        import socket
        import threading
        conn.settimeout(60)
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            with self.lock:
                fail = self.armed > 0
                if fail:
                    self.armed -= 1
                    self.failed += 1
            if fail:
                end = head.index(b"\r\n\r\n") + 4
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head[:end])
                left = int(m.group(1)) - (len(head) - end) if m else 0
                while left > 0:
                    chunk = conn.recv(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
                body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>"
                        b"<Message>Please reduce your request rate.</Message></Error>")
                conn.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                             b"Content-Length: " + str(len(body)).encode() +
                             b"\r\nConnection: close\r\n\r\n" + body)
                return
            # One request per connection, so that every request passes here
            # (a kept-alive connection would carry the next ones unseen).
            end = head.index(b"\r\n\r\n")
            head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", head[:end + 2]) + \
                b"Connection: close\r\n" + head[end + 2:]
            up = socket.create_connection(("127.0.0.1", self.upstream), timeout=60)
            up.sendall(head)

            def pipe(a, b):
                try:
                    while True:
                        data = a.recv(1 << 16)
                        if not data:
                            break
                        b.sendall(data)
                except OSError:
                    pass
                finally:
                    for s in (a, b):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
            t = threading.Thread(target=pipe, args=(up, conn), daemon=True)
            t.start()
            pipe(conn, up)
            t.join(60)
            up.close()
        except OSError:
            pass
        finally:
            conn.close()
