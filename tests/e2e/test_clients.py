"""The client matrix: every popular SFTP client, each through its own
high-level API or command language the way its users call it, with
password and key logins, on a local directory and on S3 (Garage).

Each cell (client x backend x login) uploads a 0-byte and a big file (20
MiB, 100 MiB for paramiko and OpenSSH), checks both on the store itself,
downloads them back byte-exact, then makes a directory, uploads into it,
lists it with sizes, renames, removes and removes the directory. Clients
with resume (OpenSSH, curl, psftp, lftp, JSch) also resume an upload and
a download: on S3 in the default `--vfs-cache-mode off` a resumed upload
is refused and the object stays as it was; with `writes` it works.

Then what each client's own API adds (paramiko's putfo/getfo/pipelined
writes/prefetch/readv, the hang of issue 12 at its real sizes, lftp's
mirror, PuTTY's pscp over and over) and the legacy algorithms some clients
need (JSch, curl), refused by default with a log line naming the flag.

The drivers are in clients.py; docs/clients.md lists the versions tested.
"""

import hashlib
import os
import random
import re
import shutil
import threading
from pathlib import Path

import paramiko
import pytest

import clients as cl
from backends import S3_REMOTE, Store, write_backends_conf
from conftest import HOST, PASSWORD, USER, connect_transport, run, sha256_file, wait_until
from test_sshfs import fuse_works  # noqa: F401  (the module fixture sshfs needs)
from test_vfs_modes import prefix_for

MiB = 1 << 20


# --------------------------------------------------------------------------
# keys and servers
# --------------------------------------------------------------------------

def _keygen(path, kind, *extra):
    if not path.exists():
        r = run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", path.name, "-f", path],
                timeout=60)
        assert r.returncode == 0, r.stderr
    return path


class MatrixKeys:
    """The client keys each client can read, the host keys every client can
    check (JSch 0.1.55 knows no Ed25519: the server also has ECDSA), and an
    RSA key for the legacy tests."""

    def __init__(self, keys, d: Path):
        self.base = keys
        d.mkdir(parents=True, exist_ok=True)
        self.ecdsa_pem = _keygen(d / "client_ecdsa.pem", "ecdsa", "-b", "256", "-m", "PEM")
        self.rsa_pem = _keygen(d / "client_rsa.pem", "rsa", "-b", "3072", "-m", "PEM")
        self.host_ecdsa = _keygen(d / "host_ecdsa", "ecdsa", "-b", "256")
        self.host_rsa = _keygen(d / "host_rsa", "rsa", "-b", "3072")
        self.ppk = d / "client_ed25519.ppk"
        if shutil.which("puttygen") and not self.ppk.exists():
            r = run(["puttygen", keys.client, "-O", "private", "-o", self.ppk], timeout=60)
            assert r.returncode == 0, r.stderr
        pubs = [keys.client_pub] + [Path(f"{k}.pub").read_text().strip()
                                    for k in (self.ecdsa_pem, self.rsa_pem)]
        self.authorized = keys.write_authorized("matrix_authorized_keys", "\n".join(pubs) + "\n")

    def fingerprints(self, *host_keys):
        out = []
        for k in host_keys:
            r = run(["ssh-keygen", "-lf", f"{k}.pub"], timeout=30)
            assert r.returncode == 0, r.stderr
            out.append(r.stdout.split()[1])
        return out

    def login(self, how):
        return cl.Login(how=how, user=USER, password=PASSWORD, key=self.base.client,
                        key_ppk=self.ppk, key_pem=self.ecdsa_pem)


@pytest.fixture(scope="session")
def mkeys(keys, tmp_path_factory):
    return MatrixKeys(keys, tmp_path_factory.mktemp("matrix-keys"))


@pytest.fixture
def store_for(request, tmp_path):
    """store_for(backend) -> Store: a fresh local root or S3 prefix."""
    def make(backend):
        scratch = tmp_path / f"scratch-{os.urandom(2).hex()}"
        scratch.mkdir()
        if backend == "local":
            root = tmp_path / f"served-{os.urandom(2).hex()}"
            root.mkdir()
            return Store("local", local=root, scratch=scratch)
        s3 = request.getfixturevalue("s3_server")
        conf = write_backends_conf(tmp_path / "rclone.conf", s3=s3)
        return Store("s3", scratch=scratch, conf=conf, server=s3,
                     target=f"{S3_REMOTE}:{s3.bucket}/{prefix_for(request)}-{backend}")
    return make


@pytest.fixture
def serve(ferry_factory, mkeys, store_for):
    """serve(backend, *extra, host_keys=...) -> (server, Target, Store).
    backend: local, s3 (cache mode off, the default) or s3-writes."""
    def start(backend, *extra, host_keys=None):
        store = store_for("s3" if backend.startswith("s3") else "local")
        kw, args = store.serve_args()
        if backend == "s3-writes":
            args += ["--vfs-cache-mode", "writes", "--vfs-write-back", "0s"]
        host_keys = host_keys or [mkeys.base.host, mkeys.host_ecdsa]
        for k in host_keys:
            args += ["--key", k]
        args += ["--user", USER, "--pass", PASSWORD, "--authorized-keys", mkeys.authorized]
        srv = ferry_factory(*args, *extra, auth=False, host_key=False, **kw)
        return srv, cl.Target(port=srv.port, host_fingerprints=mkeys.fingerprints(*host_keys)), \
            store
    return start


def store_bytes(store, rel, want_len=None, timeout=20):
    """The bytes of `rel` on the store (None if it has none), waiting for a
    write-back (the cache modes upload a moment after CLOSE) when
    `want_len` says what to expect."""
    if want_len is None:
        return store.get(rel)
    got = wait_until(lambda: (lambda d: [d] if d is not None and len(d) == want_len else None)(
        store.get(rel)), timeout=timeout, interval=0.3)
    return got[0] if got else store.get(rel)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def need(driver, request):
    if isinstance(driver, cl.Sshfs):
        request.getfixturevalue("fuse_works")
    if isinstance(driver, (cl.Psftp, cl.Pscp)) and shutil.which("puttygen") is None:
        cl._missing("PuTTY (apt putty-tools)")


# --------------------------------------------------------------------------
# the matrix
# --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["password", "key"])
@pytest.mark.parametrize("backend", ["local", "s3"])
@pytest.mark.parametrize("driver", cl.DRIVERS, ids=str)
def test_matrix(driver, backend, how, serve, mkeys, random_file, tmp_path, request):
    need(driver, request)
    srv, target, store = serve(backend)
    login = mkeys.login(how)
    big, big_sha = random_file(driver.big)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    small = tmp_path / "small.txt"
    small.write_bytes(os.urandom(1000))

    driver.run(target, login, [("put", big, "/big file.bin"), ("put", empty, "/empty")],
               tmp_path)
    on_store = store_bytes(store, "big file.bin", driver.big)
    assert on_store is not None and sha(on_store) == big_sha, "the upload is not byte-exact"
    assert store_bytes(store, "empty", 0) == b""

    back, back_empty = tmp_path / "back big.bin", tmp_path / "back-empty"
    ops = [("get", "/big file.bin", back), ("get", "/empty", back_empty), ("ls", "/")]
    if isinstance(driver, cl.Pscp):     # pscp only copies files
        listings = driver.run(target, login, ops, tmp_path)
    else:
        ops += [("mkdir", "/dir one"), ("put", small, "/dir one/a file.txt"),
                ("ls", "/dir one"), ("rename", "/dir one/a file.txt", "/dir one/b.txt"),
                ("ls", "/dir one"), ("rm", "/dir one/b.txt"), ("rmdir", "/dir one"),
                ("rm", "/big file.bin"), ("rm", "/empty"), ("ls", "/")]
        listings = driver.run(target, login, ops, tmp_path)
        assert listings[1:] == [{"a file.txt": 1000}, {"b.txt": 1000}, {}], listings
        assert store.files() == {}, "the store still holds files"
    assert sha256_file(back) == big_sha, "the download is not byte-exact"
    assert back_empty.stat().st_size == 0
    assert listings[0] == {"big file.bin": driver.big, "empty": 0}, listings


RESUMERS = [d for d in cl.DRIVERS if d.resume and not isinstance(d, cl.NodeSsh2)]


@pytest.mark.parametrize("backend", ["local", "s3", "s3-writes"])
@pytest.mark.parametrize("driver", RESUMERS, ids=str)
def test_resume(driver, backend, serve, mkeys, random_file, tmp_path, request):
    """The client's own resume of an interrupted upload and download."""
    need(driver, request)
    srv, target, store = serve(backend)
    login = mkeys.login("password")
    full, full_sha = random_file(20 * MiB + 12345)
    data = full.read_bytes()
    half = tmp_path / "half.bin"
    half.write_bytes(data[: len(data) // 2])

    driver.run(target, login, [("put", half, "/resume.bin")], tmp_path)
    assert store_bytes(store, "resume.bin", len(data) // 2) == data[: len(data) // 2]
    if backend == "s3":
        # An object store cannot append in mode off: refused, object intact.
        with pytest.raises(cl.ClientFailed):
            driver.run(target, login, [("reput", full, "/resume.bin")], tmp_path)
        assert store.get("resume.bin") == data[: len(data) // 2]
        driver.run(target, login, [("put", full, "/resume.bin")], tmp_path)
    else:
        driver.run(target, login, [("reput", full, "/resume.bin")], tmp_path)
    on_store = store_bytes(store, "resume.bin", len(data))
    assert on_store is not None and sha(on_store) == full_sha

    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[: len(data) // 3])
    driver.run(target, login, [("reget", "/resume.bin", partial)], tmp_path)
    assert sha256_file(partial) == full_sha


# --------------------------------------------------------------------------
# what the clients' own APIs add
# --------------------------------------------------------------------------

def paramiko_client(target, mkeys, how="password"):
    login = mkeys.login(how)
    kw = {"password": login.password} if how == "password" else \
        {"pkey": paramiko.Ed25519Key.from_private_key_file(str(login.key))}
    t = connect_transport(target.port, user=USER, **kw)
    s = paramiko.SFTPClient.from_transport(t)
    s.get_channel().settimeout(20)
    return t, s


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_paramiko_file_apis(backend, serve, mkeys, random_file, tmp_path):
    """putfo/getfo, open("wb") with set_pipelined, prefetch() and readv, at
    20 MiB: paramiko waits for each pipelined WRITE in turn and drops any
    other reply it reads meanwhile, so replies out of order hang it."""
    srv, target, store = serve(backend)
    t, s = paramiko_client(target, mkeys)
    src, src_sha = random_file(20 * MiB)
    data = src.read_bytes()
    try:
        with open(src, "rb") as f:
            s.putfo(f, "putfo.bin")
        assert sha(store_bytes(store, "putfo.bin", len(data))) == src_sha

        with s.open("pipelined.bin", "wb") as f:
            f.set_pipelined(True)
            for i in range(0, len(data), 32768):
                f.write(data[i:i + 32768])
        assert sha(store_bytes(store, "pipelined.bin", len(data))) == src_sha

        with open(tmp_path / "getfo.bin", "wb") as f:
            s.getfo("putfo.bin", f)
        assert sha256_file(tmp_path / "getfo.bin") == src_sha

        with s.open("pipelined.bin", "rb") as f:
            f.prefetch()
            assert sha(f.read()) == src_sha

        rng = random.Random(12)
        chunks = sorted({(rng.randrange(0, len(data) - 70000), rng.randrange(1, 70000))
                         for _ in range(200)})
        with s.open("putfo.bin", "rb") as f:
            got = list(f.readv(chunks))
        assert got == [data[o:o + n] for o, n in chunks]
    finally:
        t.close()


def test_paramiko_twenty_concurrent_uploads_of_8mib(serve, mkeys, random_file):
    """Twenty paramiko clients, one thread each, putting 8 MiB at once."""
    srv, target, store = serve("local")
    src, src_sha = random_file(8 * MiB)
    errors = []

    def one(i):
        try:
            t, s = paramiko_client(target, mkeys)
            try:
                s.put(str(src), f"c{i}.bin")
            finally:
                t.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(f"client {i}: {e!r}")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert not any(th.is_alive() for th in threads), "an upload hung"
    for i in range(20):
        assert sha256_file(srv.backing(f"c{i}.bin")) == src_sha


def test_paramiko_interrupted_upload_leaves_the_session_usable(serve, mkeys, random_file):
    """A put stopped by the application half-way (its progress callback
    raises) closes the file with WRITE replies still coming; the session
    goes on: the next requests are answered, the next put works."""
    srv, target, store = serve("local")
    src, src_sha = random_file(20 * MiB)
    t, s = paramiko_client(target, mkeys)

    class Stop(Exception):
        pass

    def stop_half_way(done, total):
        if done > total // 2:
            raise Stop()
    try:
        with pytest.raises(Stop):
            s.put(str(src), "cut.bin", callback=stop_half_way)
        written = srv.backing("cut.bin").read_bytes()
        assert src.read_bytes().startswith(written), "what landed is not what was sent"
        assert s.stat("cut.bin").st_size == len(written)
        s.put(str(src), "whole.bin")
        assert sha256_file(srv.backing("whole.bin")) == src_sha
    finally:
        t.close()


def test_pscp_downloads_again_and_again(serve, mkeys, random_file, tmp_path, request):
    """pscp takes each READ reply for its oldest READ: an early short or
    EOF reply made it fail or hang in a third of runs before replies were
    ordered. A size that is no multiple of its block size, ten times."""
    driver = cl.Pscp()
    need(driver, request)
    srv, target, store = serve("local")
    src, src_sha = random_file(7 * MiB + 4321)
    shutil.copy(src, srv.backing("p.bin"))
    login = mkeys.login("password")
    for i in range(10):
        out = tmp_path / f"p{i}.bin"
        driver.run(target, login, [("get", "/p.bin", out)], tmp_path)
        assert sha256_file(out) == src_sha, f"run {i}"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_lftp_mirror_both_ways(backend, serve, mkeys, tmp_path):
    srv, target, store = serve(backend)
    tree = tmp_path / "tree"
    files = {"a.txt": 10, "sub/b.bin": 300000, "sub/deeper/c d.bin": 1, "empty": 0}
    for rel, size in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(os.urandom(size))
    back = tmp_path / "back"
    cl.Lftp().run(target, mkeys.login("password"),
                  [("mirror-up", tree, "/mirrored"), ("mirror-down", "/mirrored", back)], tmp_path)
    for rel in files:
        assert (back / rel).read_bytes() == (tree / rel).read_bytes(), rel
        assert store_bytes(store, f"mirrored/{rel}", files[rel]) == (tree / rel).read_bytes()


# --------------------------------------------------------------------------
# legacy algorithms: refused by default, with a log line; on with a flag
# --------------------------------------------------------------------------

def wait_log(srv, pattern, timeout=10):
    found = wait_until(lambda: re.search(pattern, srv.log()), timeout=timeout)
    assert found, f"no log line matching {pattern!r}:\n{srv.log_tail(30)}"


def test_jsch_group_exchange_and_legacy_sha1_kex(serve, mkeys, tmp_path):
    """JSch offers no curve25519: ECDH is used by default (the matrix);
    diffie-hellman-group-exchange-sha256 works as it is; the SHA-1
    group14 exchange only with --ssh-kex +diffie-hellman-group14-sha1."""
    login = mkeys.login("password")
    ops = [("ls", "/")]
    srv, target, _ = serve("local")
    cl.Jsch(kex="diffie-hellman-group-exchange-sha256").run(target, login, ops, tmp_path)
    with pytest.raises(cl.ClientFailed):
        cl.Jsch(kex="diffie-hellman-group14-sha1").run(target, login, ops, tmp_path)
    wait_log(srv, r"no common key exchange algorithm.*--ssh-kex \+diffie-hellman-group14-sha1")
    srv2, target2, _ = serve("local", "--ssh-kex", "+diffie-hellman-group14-sha1")
    cl.Jsch(kex="diffie-hellman-group14-sha1").run(target2, login, ops, tmp_path)


def test_jsch_rsa_key_needs_the_legacy_flag(serve, mkeys, tmp_path):
    """JSch 0.1.55 signs with RSA keys only as SHA-1 ssh-rsa."""
    login = mkeys.login("key")
    jsch = cl.Jsch(key=mkeys.rsa_pem)
    srv, target, _ = serve("local")
    with pytest.raises(cl.ClientFailed):
        jsch.run(target, login, [("ls", "/")], tmp_path)
    wait_log(srv, r"signature algorithm ssh-rsa not accepted.*--ssh-pubkey-algorithms \+ssh-rsa")
    srv2, target2, _ = serve("local", "--ssh-pubkey-algorithms", "+ssh-rsa")
    assert jsch.run(target2, login, [("ls", "/")], tmp_path) == [{}]


def curl_home(tmp_path, port, host_rsa):
    """A HOME whose known_hosts has the server's RSA key, as ssh-keyscan
    (RSA first) leaves it: libssh2 then asks only for ssh-rsa."""
    home = tmp_path / f"home-{os.urandom(2).hex()}"
    (home / ".ssh").mkdir(parents=True)
    pub = Path(f"{host_rsa}.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[{HOST}]:{port} {pub[0]} {pub[1]}\n")
    return home


def test_curl_with_an_rsa_host_key_in_known_hosts(serve, mkeys, tmp_path):
    keys = [mkeys.host_rsa, mkeys.base.host]
    for flag, works in [((), False), (("--ssh-host-key-algorithms", "+ssh-rsa"), True)]:
        srv, target, _ = serve("local", *flag, host_keys=keys)
        home = curl_home(tmp_path, srv.port, mkeys.host_rsa)
        p = run(["curl", "-sS", "--connect-timeout", "20", "-u", f"{USER}:{PASSWORD}",
                 f"sftp://{HOST}:{srv.port}/"], timeout=60,
                env={"HOME": str(home), "PATH": os.environ["PATH"]})
        assert (p.returncode == 0) == works, p.stderr
        if not works:
            wait_log(srv, r"no common host key algorithm; client offers ssh-rsa; "
                          r"--ssh-host-key-algorithms \+ssh-rsa")


def test_curl_rsa_user_key_needs_the_legacy_flag(serve, mkeys, tmp_path):
    """libssh2 1.10 signs with RSA keys only as SHA-1 ssh-rsa."""
    for flag, works in [((), False), (("--ssh-pubkey-algorithms", "+ssh-rsa"), True)]:
        srv, target, _ = serve("local", *flag)
        p = run(["curl", "-sS", "--insecure", "--connect-timeout", "20", "-u", f"{USER}:",
                 "--key", mkeys.rsa_pem, "--pubkey", f"{mkeys.rsa_pem}.pub",
                 f"sftp://{HOST}:{srv.port}/"], timeout=60)
        assert (p.returncode == 0) == works, p.stderr
        if not works:
            wait_log(srv, r"signature algorithm ssh-rsa not accepted")
