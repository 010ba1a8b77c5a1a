"""Ferry serving real remote stores: S3 (Garage), WebDAV (rclone serve
webdav) and SFTP (a private OpenSSH sshd), from one rclone-format config.

Each test gets its own prefix/subdirectory of the store and a Ferry serving
exactly that (`s3remote:ferry-test/<prefix>`, `davremote:<prefix>`,
`sshremote:/abs/<prefix>`), and checks what clients see through Ferry
against what rclone sees in the store directly.

Expectations marked `# BACKEND:` depend on the backend code (crates/backends)
and are what we want it to do; the rest is the fixtures and plain SFTP.
`-k fixtures` runs only the checks of the servers themselves (no Ferry).
"""

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from backends import (DAV_REMOTE, S3_REMOTE, SSH_REMOTE, Store, rclone_conf,
                      write_backends_conf)
from conftest import (HOST, SSH_OPTS, USER, ok, assert_server_healthy, clean_env,
                      default_client_key, make_random_file, openssh_sftp, rclone,
                      rclone_remote, sha256_file, tree_listing, wait_until)

BACKENDS = ["s3", "webdav", "sftp"]
SIZES = [0, 1, 32 * 1024 + 1, 5 << 20]
BIG = 40 << 20          # S3: well past the 5 MiB part size, so a multipart upload


# --------------------------------------------------------------------------
# the store under test
# --------------------------------------------------------------------------

@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    name = request.param
    prefix = "t-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.originalname)[:40] + \
        "-" + os.urandom(3).hex()
    conf = tmp_path / "rclone.conf"
    if name == "s3":
        s3 = request.getfixturevalue("s3_server")
        write_backends_conf(conf, s3=s3)
        return Store(name, conf=conf, target=f"{S3_REMOTE}:{s3.bucket}/{prefix}", server=s3,
                     scratch=tmp_path)
    if name == "webdav":
        dav = request.getfixturevalue("webdav_server")
        write_backends_conf(conf, webdav=dav)
        (dav.dir / prefix).mkdir()
        return Store(name, conf=conf, target=f"{DAV_REMOTE}:{prefix}", local=dav.dir / prefix,
                     server=dav, scratch=tmp_path)
    sshd = request.getfixturevalue("sshd_server")
    write_backends_conf(conf, sshd=sshd)
    (sshd.dir / prefix).mkdir()
    return Store(name, conf=conf, target=f"{SSH_REMOTE}:{sshd.dir / prefix}",
                 local=sshd.dir / prefix, scratch=tmp_path,
                 server=sshd)


@pytest.fixture
def srv(store, ferry_factory):
    """Ferry serving the store's prefix."""
    # BACKEND: ferry opens s3/webdav/sftp remotes from the rclone config.
    return ferry_factory("--config", store.conf, target=store.target)


def paramiko_sftp(clients, server):
    return clients.sftp(server, timeout=120)


# --------------------------------------------------------------------------
# the servers themselves, with rclone alone (no Ferry)
# --------------------------------------------------------------------------

def test_fixtures_rclone_alone(store, tmp_path):
    src = make_random_file(tmp_path / "probe.bin", 300_001)
    os.utime(src, (1_600_000_000, 1_600_000_123))
    if store.name == "s3":
        out = store.rclone("lsd", f"{S3_REMOTE}:").stdout
        assert store.server.bucket in out, out
        store.rclone("lsd", f"{S3_REMOTE}:{store.server.bucket}")
    store.put_file(src, "dir/probe.bin")
    assert store.files() == {"dir/probe.bin": 300_001}
    if store.name in ("s3", "sftp"):   # rclone keeps mtimes there (not on webdav vendor=other)
        assert int(store.mtime("dir/probe.bin")) == 1_600_000_123
    back = tmp_path / "back.bin"
    store.rclone("copyto", store.path("dir/probe.bin"), back)
    assert sha256_file(back) == sha256_file(src)
    assert store.read("dir/probe.bin") == src.read_bytes()
    if store.local is not None:
        assert sha256_file(store.local / "dir" / "probe.bin") == sha256_file(src)
    store.rclone("purge", store.path("dir"))
    assert store.files() == {}


def test_fixtures_one_conf_for_all(backends_conf, s3_server, webdav_server, sshd_server,
                                   tmp_path):
    out = rclone_conf(backends_conf, "listremotes").stdout.split()
    assert sorted(out) == sorted([f"{S3_REMOTE}:", f"{DAV_REMOTE}:", f"{SSH_REMOTE}:"]), out
    src = make_random_file(tmp_path / "one.bin", 1234)
    prefix = "conf-" + os.urandom(3).hex()
    for remote in (f"{S3_REMOTE}:{s3_server.bucket}/{prefix}", f"{DAV_REMOTE}:{prefix}",
                   f"{SSH_REMOTE}:{sshd_server.dir / prefix}"):
        rclone_conf(backends_conf, "copyto", src, f"{remote}/one.bin")
        got = json.loads(rclone_conf(backends_conf, "lsjson", remote).stdout)
        assert [(e["Name"], e["Size"]) for e in got] == [("one.bin", 1234)], (remote, got)
        rclone_conf(backends_conf, "purge", remote)


def test_one_conf_serves_all_three_through_ferry(backends_conf, s3_server, webdav_server,
                                                sshd_server, ferry_factory, tmp_path):
    """The same rclone.conf, unchanged: Ferry lists its remotes, shows them
    with secrets redacted, and serves each over SFTP."""
    from conftest import ferry_bin, run
    out = run([ferry_bin(), "--config", backends_conf, "listremotes"],
              env=clean_env()).stdout
    assert sorted(out.split()) == sorted([f"{S3_REMOTE}:", f"{DAV_REMOTE}:", f"{SSH_REMOTE}:"])
    shown = run([ferry_bin(), "--config", backends_conf, "config", "show"],
                env=clean_env()).stdout
    assert s3_server.secret_access_key not in shown and webdav_server.password not in shown
    assert s3_server.access_key_id in shown
    prefix = "all-" + os.urandom(3).hex()
    (webdav_server.dir / prefix).mkdir()
    (sshd_server.dir / prefix).mkdir()
    src = make_random_file(tmp_path / "all.bin", 777_777)
    for target in (f"{S3_REMOTE}:{s3_server.bucket}/{prefix}", f"{DAV_REMOTE}:{prefix}",
                   f"{SSH_REMOTE}:{sshd_server.dir / prefix}"):
        srv = ferry_factory("--config", backends_conf, target=target)
        out = ok(openssh_sftp(srv, f"put {src} all.bin\nls -l\nget all.bin {tmp_path}/back.bin\n"))
        assert "777777" in out, out
        assert sha256_file(tmp_path / "back.bin") == sha256_file(src)
        got = json.loads(rclone_conf(backends_conf, "lsjson", target).stdout)
        assert [(e["Name"], e["Size"]) for e in got] == [("all.bin", 777_777)], (target, got)
        rclone_conf(backends_conf, "purge", target)
        srv.stop()


# --------------------------------------------------------------------------
# OpenSSH sftp and paramiko through Ferry
# --------------------------------------------------------------------------

def test_put_get_byte_exact(store, srv, tmp_path):
    srcs = [make_random_file(tmp_path / f"f{size}.bin", size) for size in SIZES]
    batch = "".join(f"put {s} /{s.name}\n" for s in srcs) + \
        "".join(f"get /{s.name} {tmp_path / ('back-' + s.name)}\n" for s in srcs)
    ok(openssh_sftp(srv, batch, timeout=300))
    for s in srcs:
        assert sha256_file(tmp_path / f"back-{s.name}") == sha256_file(s), s.name
    # BACKEND: the store holds exactly these objects, nothing else (no temp names).
    assert store.files() == {s.name: s.stat().st_size for s in srcs}
    for s in srcs:
        assert store.read(s.name) == s.read_bytes(), s.name


def test_put_get_big(store, srv, tmp_path, random_file):
    src, digest = random_file(BIG)
    back = tmp_path / "back.bin"
    ok(openssh_sftp(srv, f"put {src} /big.bin\nget /big.bin {back}\n", timeout=600))
    assert sha256_file(back) == digest
    # BACKEND: on S3 this was a multipart upload; Garage has the whole object.
    assert store.files() == {"big.bin": BIG}
    if store.local is not None:
        assert sha256_file(store.local / "big.bin") == digest


def test_listing_names_and_sizes(store, srv, tmp_path, clients):
    files = {"a.txt": 10, "b.bin": 70_000, "sub/c.txt": 3, "sub/deeper/d.bin": 0}
    for rel, size in files.items():
        store.put_file(make_random_file(tmp_path / rel.replace("/", "_"), size), rel)
    out = ok(openssh_sftp(srv, "ls -l /\nls -l /sub\n"))
    lines = {os.path.basename(ln.split()[-1]): ln for ln in out.splitlines()
             if ln and not ln.startswith("sftp>")}
    for rel, size in files.items():
        if rel.count("/") <= 1:
            name = os.path.basename(rel)
            assert name in lines, (name, out)
            assert lines[name].startswith("-") and f" {size} " in lines[name], lines[name]
    assert lines["sub"].startswith("d") and lines["deeper"].startswith("d"), out
    c = paramiko_sftp(clients, srv)
    top = {a.filename: a for a in c.listdir_attr("/")}
    assert sorted(top) == ["a.txt", "b.bin", "sub"]
    assert top["a.txt"].st_size == 10 and top["b.bin"].st_size == 70_000
    assert stat.S_ISDIR(top["sub"].st_mode)
    assert sorted(c.listdir("/sub")) == ["c.txt", "deeper"]
    assert c.listdir("/sub/deeper") == ["d.bin"]
    assert c.stat("/sub/c.txt").st_size == 3


def test_mkdir_rmdir(store, srv, tmp_path, clients):
    src = make_random_file(tmp_path / "x.bin", 100)
    out = ok(openssh_sftp(srv, f"mkdir /d\nmkdir /d/e\nmkdir /empty\nls /d\nput {src} /d/x.bin\n"))
    assert "e" in out.split() or "/d/e" in out.split(), out
    # BACKEND: directories made over SFTP list (also on S3, which has none)
    # until removed, from another connection too.
    c = paramiko_sftp(clients, srv)
    assert sorted(c.listdir("/")) == ["d", "empty"]
    assert sorted(c.listdir("/d")) == ["e", "x.bin"]
    assert c.listdir("/empty") == []
    assert stat.S_ISDIR(c.stat("/d/e").st_mode)
    with pytest.raises(OSError):      # mkdir on an existing directory
        c.mkdir("/d")
    with pytest.raises(OSError):      # rmdir of a non-empty directory
        c.rmdir("/d")
    with pytest.raises(OSError):      # rmdir of a file
        c.rmdir("/d/x.bin")
    assert sorted(c.listdir("/d")) == ["e", "x.bin"]
    assert store.files() == {"d/x.bin": 100}
    c.rmdir("/d/e")
    c.remove("/d/x.bin")
    c.rmdir("/d")
    c.rmdir("/empty")
    assert c.listdir("/") == []
    c2 = paramiko_sftp(clients, srv)
    assert c2.listdir("/") == []
    # BACKEND: nothing is left in the store (no directory markers either).
    assert store.entries() == {}


def test_rename_and_replace(store, srv, clients):
    c = paramiko_sftp(clients, srv)
    a, b, x = os.urandom(1000), os.urandom(2000), os.urandom(3000)
    for name, data in (("a.txt", a), ("b.txt", b), ("x.txt", x)):
        with c.open(name, "wb") as f:
            f.write(data)
    c.mkdir("dir")
    c.rename("a.txt", "dir/c.txt")
    assert sorted(c.listdir("/")) == ["b.txt", "dir", "x.txt"]
    with c.open("dir/c.txt", "rb") as f:
        assert f.read() == a
    # SSH_FXP_RENAME over an existing file replaces it (as rclone serve does).
    c.rename("dir/c.txt", "b.txt")
    with c.open("b.txt", "rb") as f:
        assert f.read() == a
    # posix-rename@openssh.com too.
    c.posix_rename("x.txt", "b.txt")
    with c.open("b.txt", "rb") as f:
        assert f.read() == x
    assert sorted(c.listdir("/")) == ["b.txt", "dir"]
    assert c.listdir("dir") == []
    # BACKEND: the store agrees.
    assert store.files() == {"b.txt": 3000}
    assert store.read("b.txt") == x


def test_remove_and_missing(store, srv, clients, tmp_path):
    c = paramiko_sftp(clients, srv)
    with c.open("f.txt", "wb") as f:
        f.write(b"hello")
    assert store.files() == {"f.txt": 5}
    c.remove("f.txt")
    with pytest.raises(FileNotFoundError) as ei:
        c.stat("f.txt")
    assert ei.value.errno == errno.ENOENT, ei.value
    with pytest.raises(FileNotFoundError):
        c.remove("f.txt")
    with pytest.raises(FileNotFoundError):
        c.open("nope/f.txt", "rb")
    assert store.files() == {}
    rc, out, err = openssh_sftp(srv, f"get /f.txt {tmp_path / 'f.txt'}\n")
    assert rc != 0 and "not found" in err, (rc, out, err)


def test_mtime_agrees_both_ways(store, srv, tmp_path, clients):
    if store.name == "webdav":
        pytest.skip("rclone's webdav client (vendor other) keeps no modification times")
    # Written by rclone directly (S3: X-Amz-Meta-Mtime), seen through Ferry.
    src = make_random_file(tmp_path / "from-rclone.bin", 4321)
    os.utime(src, (1_600_000_000, 1_600_000_123.5))
    store.put_file(src, "from-rclone.bin")
    c = paramiko_sftp(clients, srv)
    # BACKEND: Ferry reads rclone's mtime metadata.
    assert int(c.stat("from-rclone.bin").st_mtime) == 1_600_000_123
    # Uploaded through Ferry with `put -p`, seen by rclone directly.
    up = make_random_file(tmp_path / "from-ferry.bin", 1234)
    os.utime(up, (1_500_000_000, 1_500_000_456))
    ok(openssh_sftp(srv, f"put -p {up} /from-ferry.bin\n"))
    # BACKEND: SETSTAT mtime after the upload is stored as rclone's mtime metadata.
    assert int(store.mtime("from-ferry.bin")) == 1_500_000_456
    assert int(c.stat("from-ferry.bin").st_mtime) == 1_500_000_456
    assert store.read("from-ferry.bin") == up.read_bytes()
    if store.local is not None:
        assert int((store.local / "from-ferry.bin").stat().st_mtime) == 1_500_000_456


# --------------------------------------------------------------------------
# rclone's sftp client through Ferry
# --------------------------------------------------------------------------

def test_rclone_client_copy_check_delete(store, srv, tmp_path, clients):
    tree = tmp_path / "tree"
    (tree / "small").mkdir(parents=True)
    for i in range(20):
        make_random_file(tree / "small" / f"f{i:02d}.txt", i * 97)
    make_random_file(tree / "big.bin", 10 << 20)
    want, _ = tree_listing(tree)
    remote = rclone_remote(srv, "up")
    # BACKEND: on s3/webdav rclone's SETSTAT of the mtime after each upload
    # must succeed (stored as metadata on S3, ignored on webdav).
    rclone("copy", tree, remote)
    rclone("check", tree, remote, "--download")
    down = tmp_path / "down"
    rclone("copy", remote, down)
    assert tree_listing(down)[0] == want
    lsl = {}
    for ln in rclone("lsl", remote).stdout.splitlines():
        size, _date, _time, path = ln.strip().split(" ", 3)
        lsl[path] = int(size)
    assert lsl == {rel: size for rel, (size, _) in want.items()}
    assert store.files("up") == lsl
    rclone("delete", rclone_remote(srv, "up/small"))
    assert store.files("up") == {"big.bin": 10 << 20}
    rclone("purge", remote)
    assert store.files() == {}
    assert paramiko_sftp(clients, srv).listdir("/") == []


# --------------------------------------------------------------------------
# what the store cannot do fails cleanly
# --------------------------------------------------------------------------

def test_write_in_place(store, srv, clients):
    c = paramiko_sftp(clients, srv)
    data = os.urandom(100)
    with c.open("f.bin", "wb") as f:
        f.write(data)
    err = None
    try:
        with c.open("f.bin", "r+b") as f:
            f.seek(10)
            f.write(b"XYZ")
    except OSError as e:
        err = e
    print(f"in-place write on {store.name}: {err!r}")
    if store.name == "sftp":
        # BACKEND: the remote SFTP server writes in place.
        assert err is None, err
        want = data[:10] + b"XYZ" + data[13:]
    else:
        # BACKEND: objects are written front to back only: the write (or the
        # open, or the close) fails with a clear status, and the object is
        # untouched.
        assert err is not None, "an in-place write on an object store succeeded silently"
        assert str(err).strip() and "EOF" not in str(err), repr(err)
        want = data
    assert store.read("f.bin") == want
    assert store.files() == {"f.bin": 100}
    c2 = paramiko_sftp(clients, srv)
    with c2.open("f.bin", "rb") as f:
        assert f.read() == want
    assert srv.alive()


def multipart_uploads(store):
    """Unfinished S3 multipart uploads under the store's prefix."""
    bucket = store.server.bucket
    prefix = store.target.split(":", 1)[1][len(bucket) + 1:]
    out = store.rclone("backend", "list-multipart-uploads", f"{S3_REMOTE}:{bucket}").stdout
    ups = json.loads(out or "{}").get(bucket) or []
    return [u for u in ups if u.get("Key", "").startswith(prefix + "/")]


def test_disconnect_mid_upload_keeps_old_object(store, srv, tmp_path, random_file):
    old = tmp_path / "old.bin"
    old.write_bytes(os.urandom(1000))
    store.put_file(old, "victim.bin")
    big, _ = random_file(24 << 20)
    # -l 32000 Kbit/s (4 MB/s): the put takes ~6 s; it is killed after 2.5 s,
    # on S3 once the multipart upload has begun (Ferry starts it with the
    # second 5 MiB part, ~2.5 s in).
    cmd = ["sftp", *SSH_OPTS, "-l", "32000", "-b", "-", "-P", str(srv.port),
           "-i", str(default_client_key()), f"{USER}@{HOST}"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=clean_env(), start_new_session=True)
    try:
        p.stdin.write(f"put {big} /victim.bin\n".encode())
        p.stdin.close()
        time.sleep(2.5)
        if store.name == "s3":
            # The kill must find a multipart upload begun, or the abort
            # checked below proves nothing.
            begun = wait_until(lambda: multipart_uploads(store), timeout=3, interval=0.2)
            assert begun, "no multipart upload had begun before the kill"
        assert p.poll() is None, "the upload finished before it could be interrupted"
    finally:
        # sftp and its ssh child at once: the TCP connection just drops.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)
    # BACKEND: the interrupted upload is discarded: the old object is intact
    # and no partial or temporary object is left (hidden names included).
    wanted = {"victim.bin": 1000}
    got = wait_until(lambda: store.files() == wanted, timeout=20)
    assert got, store.files()
    assert store.read("victim.bin") == old.read_bytes()
    if store.name == "s3":
        # BACKEND: the multipart upload is aborted, not left to linger.
        assert wait_until(lambda: multipart_uploads(store) == [], timeout=20), \
            multipart_uploads(store)
    if store.local is not None:
        assert sorted(os.listdir(store.local)) == ["victim.bin"]
    assert srv.alive()


def test_df(store, srv, clients):
    rc, out, err = openssh_sftp(srv, "df /\n")
    print(f"df on {store.name}: exit {rc}\n{out}\n{err}")
    if rc != 0:
        # BACKEND: a store without space figures says so (e.g. unsupported),
        # without dropping the session.
        assert err.strip() and "Connection closed" not in err, (rc, out, err)
    else:
        assert [ln for ln in out.splitlines() if not ln.startswith("sftp>")], out
    assert_server_healthy(srv, clients)
    assert store.files() == {}


# --------------------------------------------------------------------------
# http: a read-only remote without listings
# --------------------------------------------------------------------------

def test_http_remote_serves_named_files_read_only(ferry_factory, tmp_path, clients):
    from backends import Daemon
    from conftest import free_port
    served = tmp_path / "web"
    (served / "sub").mkdir(parents=True)
    (served / "sub" / "a.txt").write_bytes(b"hello over http\n")
    big = os.urandom(3_000_001)
    (served / "b.bin").write_bytes(big)
    port = free_port()
    web = Daemon("rclone serve http",
                 ["rclone", "--config", "/dev/null", "serve", "http", served,
                  "--addr", f"127.0.0.1:{port}"], tmp_path / "http.log")
    try:
        web.wait_port(port)
        conf = tmp_path / "http.conf"
        conf.write_text(f"[web]\ntype = http\nurl = http://127.0.0.1:{port}/\n")
        srv = ferry_factory("--config", conf, target="web:")
        c = paramiko_sftp(clients, srv)
        with c.open("sub/a.txt", "rb") as f:
            assert f.read() == b"hello over http\n"
        with c.open("b.bin", "rb") as f:
            f.prefetch()
            assert f.read() == big
        assert c.stat("b.bin").st_size == len(big)
        with pytest.raises(FileNotFoundError):
            c.stat("missing.txt")
        # Writes are refused as on a read-only server, listings as
        # unsupported; nothing reaches the HTTP server's directory.
        with pytest.raises(PermissionError):
            c.open("new.txt", "wb")
        with pytest.raises(IOError):
            c.listdir("/")
        assert sorted(os.listdir(served)) == ["b.bin", "sub"]
        assert "read-only" in srv.log() and "cannot list" in srv.log()
    finally:
        web.stop()


# --------------------------------------------------------------------------
# the rest of the foundation's OpenSSH operations, per store
# --------------------------------------------------------------------------

def test_resume_links_chmod_and_names(store, srv, tmp_path):
    """reget, reput, ln -s, chmod and non-ASCII names: what each store can
    do works; what it cannot fails with a status and changes nothing."""
    src = make_random_file(tmp_path / "resume.bin", (3 << 20) + 123)
    data = src.read_bytes()
    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[:(1 << 20) + 5])
    ok(openssh_sftp(srv, f"put {partial} /resume.bin\n"))
    rc, out, err = openssh_sftp(srv, f"reput {src} /resume.bin\n")
    if store.name == "sftp":
        # BACKEND: writes at an offset go through to the remote server.
        assert rc == 0, err
        assert store.read("resume.bin") == data
    else:
        # BACKEND: appending to an object is refused; the object is as it was.
        assert rc != 0 and "unsupported" in (out + err).lower(), (rc, out, err)
        assert store.read("resume.bin") == partial.read_bytes()
        ok(openssh_sftp(srv, f"put {src} /resume.bin\n"))
    local = tmp_path / "local.bin"
    local.write_bytes(data[:777_777])
    ok(openssh_sftp(srv, f"reget /resume.bin {local}\n"))
    assert sha256_file(local) == sha256_file(src)

    # Symbolic links: none of these stores lets clients make one.
    rc, out, err = openssh_sftp(srv, "ln -s /resume.bin /link\n")
    assert rc != 0, (out, err)
    assert "link" not in store.files()

    # chmod: the remote SFTP server keeps modes; object stores keep none and
    # the change is accepted and ignored, as rclone does.
    ok(openssh_sftp(srv, "chmod 600 /resume.bin\nls -l /resume.bin\n"))
    out = ok(openssh_sftp(srv, "ls -l /resume.bin\n"))
    if store.name == "sftp":
        assert "-rw-------" in out, out
        assert stat.S_IMODE(os.stat(store.local / "resume.bin").st_mode) == 0o600

    names = ["with space.txt", "ünïcödé.txt", "日本語", "🚀.bin"]
    for n in names:
        f = tmp_path / "n.bin"
        f.write_bytes(n.encode())
        ok(openssh_sftp(srv, f'put {f} "/{n}"\n'))
    listed = ok(openssh_sftp(srv, "ls -1 /\n"))
    for n in names:
        assert n in listed, (n, listed)
        assert store.read(n) == n.encode()


def test_sftp_backend_ecdsa_client_key_with_a_short_scalar(sshd_server, ferry_factory, tmp_path,
                                                           random_file):
    """The sftp backend logs in to the remote server with key_file: a P-256
    key whose private scalar is under 32 bytes (one in 256 ssh-keygen makes;
    the ssh-key crate refuses them), plain and passphrase-protected (AES-CTR
    and AES-GCM), signs a login the real sshd accepts."""
    from conftest import rclone_obscure
    data = Path(__file__).resolve().parents[2] / "crates/sshkey/tests/data"
    authorized = Path(sshd_server.config).parent / "authorized_keys"
    pub = (data / "ecdsa256_short_scalar.pub").read_text()
    if pub not in authorized.read_text():
        with open(authorized, "a") as f:
            f.write(pub)
    src, _ = random_file(3 << 20)
    for name, phrase in [("ecdsa256_short_scalar", None),
                         ("ecdsa256_short_scalar_encrypted", "ferry-test-passphrase"),
                         ("ecdsa256_short_scalar_gcm", "ferry-test-passphrase")]:
        key = tmp_path / name
        shutil.copy(data / name, key)
        os.chmod(key, 0o600)
        sdir = sshd_server.dir / f"short-key-{os.urandom(3).hex()}"
        sdir.mkdir()
        opts = f"host={sshd_server.host},port={sshd_server.port},user={sshd_server.user}," \
               f"key_file={key}"
        if phrase:
            opts += f",key_file_pass={rclone_obscure(phrase)}"
        srv = ferry_factory(target=f":sftp,{opts}:{sdir}")
        ok(openssh_sftp(srv, f"put {src} /f.bin\n"))
        assert sha256_file(sdir / "f.bin") == sha256_file(src), name
        back = tmp_path / f"{name}.back"
        ok(openssh_sftp(srv, f"get /f.bin {back}\n"))
        assert sha256_file(back) == sha256_file(src), name
        srv.stop()
