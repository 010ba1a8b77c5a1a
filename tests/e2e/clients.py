"""Drivers for the client matrix (test_clients.py): each popular SFTP client
run the way its users run it, through its own high-level API or command
language, behind one small interface.

A driver runs a list of operations in one session (one login), as a user
of that client would type or script them:

    ("put", LOCAL, REMOTE)    ("get", REMOTE, LOCAL)
    ("reput", LOCAL, REMOTE)  ("reget", REMOTE, LOCAL)   # resume, where the client has it
    ("mkdir", DIR)  ("ls", DIR)  ("rename", OLD, NEW)  ("rm", FILE)  ("rmdir", DIR)

Remote paths are absolute ("/a b/c.bin"). `run` returns the listings, one
{name: size} per "ls", in order, and raises ClientFailed (with the client's
own output) when the client reports a failure. Every run has a timeout, so a
hang fails in seconds instead of blocking the suite.

How each client installs and runs here: ../shared/notes/clients.md and
docs/clients.md.
"""

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

import conftest as _c

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "clients"
RUN_TIMEOUT = 60        # one client session (100 MiB each way takes seconds): a hang fails here


class ClientFailed(Exception):
    """The client said an operation failed (its output is the message)."""


@dataclass
class Login:
    """How a driver logs in: `how` is "password" or "key"."""
    how: str
    user: str
    password: str
    key: Path           # OpenSSH-format Ed25519 private key
    key_ppk: Path       # the same key for PuTTY
    key_pem: Path       # ECDSA P-256 in PEM (JSch 0.1.55 reads no OpenSSH-format keys)


@dataclass
class Target:
    """The server a driver talks to."""
    port: int
    host_fingerprints: list    # "SHA256:..." of the server's host keys (PuTTY)


def _run(cmd, *, what, input=None, env=None, timeout=RUN_TIMEOUT, cwd=None):
    p = subprocess.run([str(c) for c in cmd], input=input, capture_output=True, text=True,
                       timeout=timeout, env=env or _c.clean_env(), cwd=cwd)
    if p.returncode != 0:
        raise ClientFailed(f"{what} exited {p.returncode}\n$ {' '.join(map(str, cmd))}\n"
                           f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p.stdout


def _longname_listing(lines):
    """{name: size} from `ls -l` lines (the server's longnames); `.` and
    `..` left out."""
    out = {}
    for line in lines:
        f = line.split(None, 8)
        if len(f) == 9 and re.fullmatch(r"[-dlcbps][-rwxsStT]{9}\S*", f[0]):
            if f[8] not in (".", ".."):
                out[f[8]] = int(f[4])
    return out


def _quote(path):
    """A double-quoted word for sftp/psftp/lftp command lines."""
    assert '"' not in path and "\n" not in path, path
    return f'"{path}"'


# --------------------------------------------------------------------------
# the drivers
# --------------------------------------------------------------------------

class Driver:
    name = "?"
    resume = False      # has reput/reget
    big = 20 << 20      # size of the big file in the matrix

    def run(self, target: Target, login: Login, ops, tmp: Path):
        raise NotImplementedError

    def __repr__(self):
        return self.name


class ScriptDriver(Driver):
    """A client library driven by a small program of ours
    (tests/e2e/clients/): one line per operation, tabs between fields."""

    def command(self, target, login):
        raise NotImplementedError

    def env(self):
        return _c.clean_env()

    def run(self, target, login, ops, tmp):
        script = "".join("\t".join(map(str, op)) + "\n" for op in ops)
        out = _run(self.command(target, login), what=self.name, input=script, env=self.env())
        listings, cur = [], None
        for line in out.splitlines():
            f = line.split("\t")
            if f[0] == "ls":
                cur = {} if cur is None else cur
                if f[1] not in (".", ".."):
                    cur[f[1]] = int(f[2])
            elif f[0] == "end":
                listings.append(cur or {})
                cur = None
        return listings


def _tools():
    return Path(os.environ.get("FERRY_TOOLS_DIR") or Path.home() / ".cache" / "ferry-test-tools")


def _built(name, source, build):
    """A build product cached under FERRY_TOOLS_DIR/clients, keyed by the
    source's hash (rebuilt when the source changes)."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = _tools() / "clients" / f"{name}-{digest}"
    if not out.exists():
        work = out.with_name(out.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        build(work)
        work.rename(out)
    return out


class GoSftp(ScriptDriver):
    """Go's github.com/pkg/sftp (inside rclone's sftp backend), with
    concurrent reads and writes as rclone uses it."""
    name = "go-pkg-sftp"

    def binary(self):
        if shutil.which("go") is None or not Path("/usr/share/gocode/src/github.com/pkg/sftp").is_dir():
            _missing("Go and pkg/sftp (apt golang-go golang-github-pkg-sftp-dev)")
        src = SOURCES / "gosftp.go"

        def build(work):
            shutil.copy(src, work / "gosftp.go")
            _run(["go", "build", "-o", work / "gosftp", "gosftp.go"], what="go build", cwd=work,
                 env=_c.clean_env({"GOPATH": "/usr/share/gocode", "GO111MODULE": "off",
                                   "GOCACHE": str(_tools() / "go-cache")}), timeout=600)
        return _built("gosftp", src, build) / "gosftp"

    def command(self, target, login):
        secret = login.password if login.how == "password" else login.key
        return [self.binary(), _c.HOST, target.port, login.user, login.how, secret]


class Jsch(ScriptDriver):
    """JSch 0.1.55 (Debian's libjsch-java): ChannelSftp put/get, RESUME."""
    name = "jsch"
    resume = True
    JAR = Path("/usr/share/java/jsch.jar")

    def __init__(self, kex=None, key=None):
        self.kex = kex
        self.key = key      # another key file (an RSA PEM key)

    def classes(self):
        if shutil.which("javac") is None or not self.JAR.exists():
            _missing("Java and JSch (apt libjsch-java)")
        src = SOURCES / "JschClient.java"

        def build(work):
            _run(["javac", "-cp", self.JAR, "-d", work, src], what="javac", timeout=300)
        return _built("jsch", src, build)

    def env(self):
        return _c.clean_env({"JSCH_KEX": self.kex} if self.kex else None)

    def command(self, target, login):
        secret = login.password if login.how == "password" else (self.key or login.key_pem)
        return ["java", "-cp", f"{self.JAR}:{self.classes()}", "JschClient", _c.HOST,
                target.port, login.user, login.how, secret]


class NodeSsh2(ScriptDriver):
    """Node's ssh2: fastPut/fastGet (many out-of-order requests in flight);
    with streams=True, createWriteStream/createReadStream instead."""
    resume = True

    def __init__(self, streams=False):
        self.streams = streams
        self.name = "node-ssh2-streams" if streams else "node-ssh2"

    def env(self):
        modules = _tools() / "node" / "node_modules"
        if shutil.which("node") is None or not (modules / "ssh2").is_dir():
            _missing(f"node and the ssh2 package (npm install --prefix {_tools() / 'node'} ssh2)")
        return _c.clean_env({"NODE_PATH": str(modules)})

    def run(self, target, login, ops, tmp):
        if self.streams:
            ops = [(("putstream",) + op[1:]) if op[0] == "put" else
                   (("getstream",) + op[1:]) if op[0] == "get" else op for op in ops]
        return super().run(target, login, ops, tmp)

    def command(self, target, login):
        secret = login.password if login.how == "password" else login.key
        return ["node", SOURCES / "ssh2_client.js", _c.HOST, target.port, login.user,
                login.how, secret]


def _askpass(tmp, password):
    """An SSH_ASKPASS program that prints `password`."""
    p = tmp / f"askpass-{os.urandom(3).hex()}.sh"
    p.write_text(f"#!/bin/sh\nprintf '%s\\n' '{password}'\n")
    p.chmod(0o700)
    return p


SSH_BASE = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=20"]


def _ssh_auth(login):
    """OpenSSH client options that log in with `login` (a password comes
    from a prompt: SSH_ASKPASS, or lftp answering it)."""
    if login.how == "key":
        return ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(login.key)]
    return ["-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive"]


class OpenSshSftp(Driver):
    """OpenSSH's sftp in batch mode (-b)."""
    name = "openssh-sftp"
    resume = True
    big = 100 << 20

    def run(self, target, login, ops, tmp):
        lines = []
        for op in ops:
            kind, *args = op
            cmd = {"ls": "ls -l", "put": "put", "get": "get", "reput": "reput",
                   "reget": "reget", "mkdir": "mkdir", "rename": "rename", "rm": "rm",
                   "rmdir": "rmdir"}[kind]
            lines.append(" ".join([cmd, *map(_quote, map(str, args))]))
        opts, env = SSH_BASE + _ssh_auth(login), _c.clean_env()
        if login.how == "password":
            # BatchMode=no before sftp's own -b (ssh keeps an option's first
            # value), so the password comes from SSH_ASKPASS.
            opts += ["-o", "BatchMode=no"]
            env = _c.clean_env({"SSH_ASKPASS": str(_askpass(tmp, login.password)),
                                "SSH_ASKPASS_REQUIRE": "force"})
        batch = tmp / f"sftp-{os.urandom(3).hex()}.txt"
        batch.write_text("\n".join(lines) + "\n")
        out = _run(["sftp", *opts, "-b", batch, "-P", target.port, f"{login.user}@{_c.HOST}"],
                   what="sftp", env=env)
        return _split_listings(out.splitlines(), lambda l: l.startswith("sftp> ls "),
                               lambda l: l.startswith("sftp> "))


def _split_listings(lines, starts, ends):
    """The listings of a client's output: `starts(line)` opens one, a line
    for which `ends(line)` holds closes it."""
    listings, cur = [], None
    for line in lines:
        if cur is not None and (ends(line) or starts(line)):
            listings.append(_longname_listing(cur))
            cur = None
        if starts(line):
            cur = []
        elif cur is not None:
            cur.append(line)
    if cur is not None:
        listings.append(_longname_listing(cur))
    return listings


class Curl(Driver):
    """curl with libssh2: -T uploads, -o downloads, -Q quote commands, -C -
    resumes; one curl run per operation, as scripts use it."""
    name = "curl"
    resume = True

    def run(self, target, login, ops, tmp):
        base = f"sftp://{_c.HOST}:{target.port}"
        auth = ["-u", f"{login.user}:{login.password}"] if login.how == "password" else \
            ["-u", f"{login.user}:", "--key", login.key, "--pubkey", f"{login.key}.pub"]
        common = ["curl", "-sS", "--insecure", "--connect-timeout", "20", *auth]

        def url(path, slash=False):
            return base + urllib.parse.quote(path) + ("/" if slash else "")
        listings = []
        for kind, *args in ops:
            if kind in ("put", "reput"):
                resume = ["-C", "-"] if kind == "reput" else []
                _run([*common, *resume, "-T", args[0], url(args[1])], what=f"curl {kind}")
            elif kind in ("get", "reget"):
                resume = ["-C", "-"] if kind == "reget" else []
                _run([*common, *resume, "-o", args[1], url(args[0])], what=f"curl {kind}")
            elif kind == "ls":
                out = _run([*common, url(args[0], slash=True)], what="curl ls")
                listings.append(_longname_listing(out.splitlines()))
            else:
                quoted = " ".join(_quote(str(a)) for a in args)
                _run([*common, "-o", "/dev/null", "-Q", f"{kind} {quoted}", base + "/"],
                     what=f"curl -Q {kind}")
        return listings


class Psftp(Driver):
    """PuTTY's psftp (the SSH core of WinSCP and FileZilla), with -b."""
    name = "putty-psftp"
    resume = True

    def run(self, target, login, ops, tmp):
        if shutil.which("psftp") is None:
            _missing("PuTTY's psftp (apt putty-tools)")
        lines = []
        for kind, *args in ops:
            cmd = {"ls": "ls", "rename": "mv"}.get(kind, kind)
            lines.append(" ".join([cmd, *map(_quote, map(str, args))]))
        batch = tmp / f"psftp-{os.urandom(3).hex()}.txt"
        batch.write_text("\n".join(lines) + "\n")
        out = _run(["psftp", "-batch", "-P", target.port, *_putty_auth(target, login),
                    "-b", batch, f"{login.user}@{_c.HOST}"], what="psftp", input="")
        return _split_listings(out.splitlines(), lambda l: l.startswith("Listing directory "),
                               lambda l: not re.match(r"[-dlcbps][-rwxsStT]{9}", l))


def _putty_auth(target, login):
    keys = [a for fp in target.host_fingerprints for a in ("-hostkey", fp)]
    if login.how == "password":
        return keys + ["-pw", login.password]
    return keys + ["-i", login.key_ppk]


class Pscp(Driver):
    """PuTTY's pscp: whole-file copies in either direction (SFTP protocol)."""
    name = "putty-pscp"

    def run(self, target, login, ops, tmp):
        if shutil.which("pscp") is None:
            _missing("PuTTY's pscp (apt putty-tools)")
        base = ["pscp", "-batch", "-sftp", "-q", "-P", target.port, *_putty_auth(target, login)]
        remote = lambda p: f"{login.user}@{_c.HOST}:{p}"  # noqa: E731
        listings = []
        for kind, *args in ops:
            if kind == "put":
                _run([*base, args[0], remote(args[1])], what="pscp upload", input="")
            elif kind == "get":
                _run([*base, remote(args[0]), args[1]], what="pscp download", input="")
            elif kind == "ls":
                out = _run([*base, "-ls", remote(args[0] + "/")], what="pscp -ls", input="")
                listings.append(_longname_listing(out.splitlines()))
            else:
                raise ValueError(f"pscp has no {kind}")
        return listings


class Lftp(Driver):
    """lftp over OpenSSH (its sftp:connect-program), with cmd:fail-exit so a
    failing command fails the run."""
    name = "lftp"
    resume = True

    def run(self, target, login, ops, tmp):
        if shutil.which("lftp") is None:
            _missing("lftp (apt lftp)")
        # lftp answers the password prompt of its ssh itself.
        connect = "ssh -a -x " + " ".join(SSH_BASE + _ssh_auth(login))
        secret = login.password if login.how == "password" else ""
        cmds = ["set cmd:fail-exit yes", "set sftp:auto-confirm yes", "set cache:enable no",
                "set net:max-retries 1",
                "set net:timeout 20", f"set sftp:connect-program {_lftp_word(connect)}",
                f"open -u {_lftp_word(login.user + ',' + secret)} sftp://{_c.HOST}:{target.port}"]
        for kind, *args in ops:
            q = [_lftp_word(str(a)) for a in args]
            cmds.append({
                "put": lambda: f"put {q[0]} -o {q[1]}",
                "reput": lambda: f"put -c {q[0]} -o {q[1]}",
                "get": lambda: f"get {q[0]} -o {q[1]}",
                "reget": lambda: f"get -c {q[0]} -o {q[1]}",
                "ls": lambda: f"echo @ls-start; cls -l {_lftp_word(args[0] + '/')}; echo @ls-end",
                "mkdir": lambda: f"mkdir {q[0]}",
                "rename": lambda: f"mv {q[0]} {q[1]}",
                "rm": lambda: f"rm {q[0]}",
                "rmdir": lambda: f"rmdir {q[0]}",
                "mirror-up": lambda: f"mirror -R {q[0]} {q[1]}",
                "mirror-down": lambda: f"mirror {q[0]} {q[1]}",
            }[kind]())
        out = _run(["lftp", "-c", "; ".join(cmds)], what="lftp")
        listings = _split_listings(out.splitlines(), lambda l: l == "@ls-start",
                                   lambda l: l == "@ls-end")
        # cls -l DIR/ prints DIR/NAME: keep the name.
        return [{k.rsplit("/", 1)[-1]: v for k, v in ls.items()} for ls in listings]


def _lftp_word(s):
    assert "'" not in s, s
    return f"'{s}'"


class Paramiko(Driver):
    """paramiko's high-level SFTPClient.put/get (pipelined writes with more
    than 100 requests in flight, prefetched reads)."""
    name = "paramiko"
    big = 100 << 20

    def run(self, target, login, ops, tmp):
        kw = {"password": login.password} if login.how == "password" else \
            {"pkey": paramiko.Ed25519Key.from_private_key_file(str(login.key))}
        t = _c.connect_transport(target.port, user=login.user, **kw)
        listings = []
        try:
            s = paramiko.SFTPClient.from_transport(t)
            s.get_channel().settimeout(20)
            for kind, *args in ops:
                if kind == "put":
                    s.put(str(args[0]), args[1])
                elif kind == "get":
                    s.get(args[0], str(args[1]))
                elif kind == "ls":
                    listings.append({a.filename: a.st_size for a in s.listdir_attr(args[0])})
                elif kind == "mkdir":
                    s.mkdir(args[0])
                elif kind == "rename":
                    s.rename(args[0], args[1])
                elif kind == "rm":
                    s.remove(args[0])
                elif kind == "rmdir":
                    s.rmdir(args[0])
                else:
                    raise ValueError(kind)
        except (OSError, paramiko.SSHException) as e:
            raise ClientFailed(f"paramiko {kind} {args}: {e!r}") from e
        finally:
            t.close()
        return listings


class AsyncSsh(Driver):
    """AsyncSSH's SFTP client: put/get with the default block size, or with
    255 KiB blocks and 128 requests in flight."""

    def __init__(self, block_size=None, max_requests=None):
        self.kw = {}
        self.name = "asyncssh"
        if block_size:
            self.kw = {"block_size": block_size, "max_requests": max_requests}
            self.name = f"asyncssh-{block_size >> 10}k-x{max_requests}"

    def run(self, target, login, ops, tmp):
        try:
            import asyncssh
        except ImportError:
            _missing("asyncssh (pip install asyncssh)")

        async def go():
            kw = {"password": login.password} if login.how == "password" else \
                {"client_keys": [str(login.key)]}
            listings = []
            async with asyncssh.connect(_c.HOST, target.port, username=login.user,
                                        known_hosts=None, connect_timeout=20,
                                        agent_path=None, **kw) as conn:
                async with conn.start_sftp_client() as s:
                    for kind, *args in ops:
                        try:
                            if kind == "put":
                                await s.put(str(args[0]), args[1], **self.kw)
                            elif kind == "get":
                                await s.get(args[0], str(args[1]), **self.kw)
                            elif kind == "ls":
                                names = await s.readdir(args[0])
                                listings.append({n.filename: n.attrs.size for n in names
                                                 if n.filename not in (".", "..")})
                            elif kind == "mkdir":
                                await s.mkdir(args[0])
                            elif kind == "rename":
                                await s.rename(args[0], args[1])
                            elif kind == "rm":
                                await s.remove(args[0])
                            elif kind == "rmdir":
                                await s.rmdir(args[0])
                            else:
                                raise ValueError(kind)
                        except (OSError, asyncssh.Error) as e:
                            raise ClientFailed(f"asyncssh {kind} {args}: {e!r}") from e
            return listings
        return asyncio.run(asyncio.wait_for(go(), RUN_TIMEOUT))


class Rclone(Driver):
    """rclone's sftp backend (copyto, lsjson, moveto, deletefile, mkdir,
    rmdir), hash checks on."""
    name = "rclone"

    def run(self, target, login, ops, tmp):
        class Srv:
            port = target.port
        if login.how == "password":
            remote = _c.rclone_sftp_remote(Srv, user=login.user, password=login.password)
        else:
            remote = _c.rclone_sftp_remote(Srv, user=login.user, key_file=login.key)
        listings = []
        for kind, *args in ops:
            r = lambda p: remote + p  # noqa: E731
            cmd = {
                "put": lambda: ["copyto", args[0], r(args[1])],
                "get": lambda: ["copyto", r(args[0]), args[1]],
                "ls": lambda: ["lsjson", r(args[0])],
                "mkdir": lambda: ["mkdir", r(args[0])],
                "rename": lambda: ["moveto", r(args[0]), r(args[1])],
                "rm": lambda: ["deletefile", r(args[0])],
                "rmdir": lambda: ["rmdir", r(args[0])],
            }[kind]()
            p = _c.rclone_hashed(*cmd, check=False)
            if p.returncode != 0:
                raise ClientFailed(f"rclone {' '.join(map(str, cmd))}: {p.stderr[-3000:]}")
            if kind == "ls":
                import json
                listings.append({e["Name"]: e["Size"] for e in json.loads(p.stdout)})
        return listings


class Sshfs(Driver):
    """sshfs: the served tree mounted with FUSE, used with cp, ls, mv, rm."""
    name = "sshfs"

    def run(self, target, login, ops, tmp):
        from test_sshfs import mount_sshfs, unmount

        class Srv:
            port = target.port

        class Keys:
            client = login.key
        assert login.user == _c.USER, "mount_sshfs logs in as the default user"
        mnt = tmp / f"mnt-{os.urandom(3).hex()}"
        if login.how == "password":
            mount = mount_sshfs(Srv, mnt, password=login.password)
        else:
            mount = mount_sshfs(Srv, mnt, keys=Keys)
        listings = []
        try:
            for kind, *args in ops:
                m = lambda p: mnt / p.lstrip("/")  # noqa: E731
                try:
                    if kind == "put":
                        shutil.copyfile(args[0], m(args[1]))
                    elif kind == "get":
                        shutil.copyfile(m(args[0]), args[1])
                    elif kind == "ls":
                        listings.append({e.name: e.stat().st_size for e in os.scandir(m(args[0]))})
                    elif kind == "mkdir":
                        os.mkdir(m(args[0]))
                    elif kind == "rename":
                        os.rename(m(args[0]), m(args[1]))
                    elif kind == "rm":
                        os.remove(m(args[0]))
                    elif kind == "rmdir":
                        os.rmdir(m(args[0]))
                    else:
                        raise ValueError(kind)
                except OSError as e:
                    raise ClientFailed(f"sshfs {kind} {args}: {e!r}") from e
        finally:
            unmount(mnt, mount.proc)
        return listings


def _missing(what):
    msg = f"{what} is not installed (run scripts/install-test-deps.sh)"
    if os.environ.get("CI") == "true" or os.environ.get("FERRY_E2E_REQUIRE_BACKENDS") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


# Every client of the matrix, by name.
DRIVERS = [
    OpenSshSftp(), Paramiko(), Curl(), Psftp(), Pscp(), Lftp(), AsyncSsh(),
    AsyncSsh(block_size=255 << 10, max_requests=128), NodeSsh2(), NodeSsh2(streams=True),
    Jsch(), GoSftp(), Rclone(), Sshfs(),
]

