"""The VFS per cache mode: `--vfs-cache-mode off|minimal|writes|full`, each
on a local directory and on S3 (Garage).

What each mode promises (docs/vfs.md, the spec's section 5):

- off: reads stream; writes stream into an upload finished at CLOSE. On a
  local directory writes go straight to the file, so every open mode works;
  on S3 only whole files in order (out-of-order writes inside the window
  are reordered), everything else fails with a clear status and leaves the
  object as it was.
- minimal: as off, but READ|WRITE opens go through the on-disk cache, so
  they work on S3 too; write-only opens behave as in off.
- writes: write-only and read-write opens go through the cache: random
  writes, resume, APPEND, truncate and EXCL work on every backend; the
  upload starts --vfs-write-back after the last close; dirty files survive a
  restart.
- full: reads are cached too (sparse, tracked ranges), invalidated when the
  backend's size/mtime fingerprint changes.

Each test states which modes an expectation holds for: `rw_ok` (READ|WRITE
opens), `wo_ok` (write-only opens at an offset: APPEND, seeks back, resume)
and `path_truncate_ok` below are the whole table. Tests in off mode pass no
VFS flag at all (off is the default). In the other modes `--vfs-write-back
0s` keeps them quick unless a test needs files to stay in the cache.

Each test gets its own local root or S3 prefix and its own `--cache-dir`,
and checks the store directly (the backing directory, or rclone on the
bucket) besides what SFTP clients see. The cache directory is looked at
only as far as `vfs/` (data) and `vfsMeta/` (JSON with "Dirty").

Needing root, and skipped without it: the failed-upload test (`chattr +i`)
and the out-of-space and min-free-space tests (a 4 MiB tmpfs as cache dir).
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from backends import S3_REMOTE, Store, write_backends_conf
from conftest import (assert_server_healthy, clean_env, make_random_file, ok, openssh_sftp, run,
                      wait_until)
from sftpraw import (FAILURE, FXF_CREAT, FXF_TRUNC, FXF_WRITE, OK, OP_UNSUPPORTED, STATUS, WRITE,
                     SftpStatusError,
                     string, u64)
# fuse_works: the module fixture that skips where FUSE mounts cannot work.
from test_sshfs import fuse_works, mount_sshfs, unmount  # noqa: F401

MODES = ["off", "minimal", "writes", "full"]
BACKENDS = ["local", "s3"]
CACHED = ["writes", "full"]     # every open mode goes through the cache
KiB, MiB = 1 << 10, 1 << 20
UPLOAD_TIMEOUT = 20             # write-back 0s: the store has it within this


# --------------------------------------------------------------------------
# what works where
# --------------------------------------------------------------------------

def rw_ok(mode, backend):
    """READ|WRITE opens (r+, w+, a+, sshfs O_RDWR): local in every mode
    (straight to the file in off), S3 once they are cached (minimal and up)."""
    return backend == "local" or mode != "off"


def wo_ok(mode, backend):
    """Write-only opens that do not start a whole new file front to back
    (APPEND, a seek back, OpenSSH reput): local in every mode, S3 only where
    write-only opens are cached (writes, full); minimal is off for them."""
    return backend == "local" or mode in CACHED


def path_truncate_ok(mode, backend):
    """SETSTAT size on a path (no handle) to a size other than 0: local in
    every mode; S3 in writes/full (rclone opens the file write-only to
    truncate it, which minimal does not cache)."""
    return backend == "local" or mode in CACHED


# --------------------------------------------------------------------------
# the store: a local directory or an S3 prefix
# --------------------------------------------------------------------------

def prefix_for(request):
    return "v-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60] + "-" + \
        os.urandom(3).hex()


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def store(backend, request, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if backend == "local":
        root = tmp_path / "served"
        root.mkdir()
        return Store("local", local=root, scratch=scratch)
    s3 = request.getfixturevalue("s3_server")
    conf = write_backends_conf(tmp_path / "rclone.conf", s3=s3)
    return Store("s3", scratch=scratch, conf=conf, server=s3,
                 target=f"{S3_REMOTE}:{s3.bucket}/{prefix_for(request)}")


@pytest.fixture
def vfs(mode, store, ferry_factory):
    """vfs(*extra, write_back="0s", cache_dir=None): start Ferry on the
    store in this test's mode. Off mode passes no VFS flag (the default)."""
    def start(*extra, write_back="0s", cache_dir=None):
        kw, args = store.serve_args()
        if mode != "off":
            args += ["--vfs-cache-mode", mode]
            if write_back is not None:
                args += ["--vfs-write-back", write_back]
        return ferry_factory(*args, *extra, cache_dir=cache_dir, **kw)
    return start


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def sftp(clients, srv):
    return clients.sftp(srv, timeout=60)


def read_all(c, rel):
    with c.open(rel, "rb") as f:
        f.prefetch()
        return f.read()


def settle(store, want, timeout=UPLOAD_TIMEOUT):
    """Wait until the store holds exactly `want` ({rel: bytes}): at once in
    off mode (uploads finish at CLOSE), after the write-back delay in the
    cached modes. Fails with what the store holds instead."""
    def same():
        files = store.files()
        if files != {k: len(v) for k, v in want.items()}:
            return False
        return all(store.read(k) == v for k, v in want.items())
    if not wait_until(same, timeout=timeout, interval=0.3):
        got = {k: (len(v), v[:40]) for k, v in store.snapshot().items()}
        exp = {k: (len(v), v[:40]) for k, v in want.items()}
        pytest.fail(f"the store never held what was written within {timeout} s:\n"
                    f"  want {exp}\n  have {got}", pytrace=False)


def attempt(fn):
    """Run fn(); return the OSError it raised, or None."""
    try:
        fn()
    except OSError as e:
        return e
    return None


def assert_clean_error(err, what):
    assert err is not None, f"{what} succeeded where it must fail"
    assert str(err).strip() and "EOF" not in str(err), \
        f"{what} failed without a clear status: {err!r}"


def pipelined_writes(raw, handle, blocks):
    """Send every (offset, data) WRITE before reading any reply, as real
    clients do; returns {offset: (status code, message)}."""
    ids = {}
    for off, data in blocks:
        ids[raw.send(WRITE, string(handle) + u64(off) + string(data))] = off
    out = {}
    for _ in ids:
        t, rid, r = raw.recv_reply()
        assert t == STATUS, f"WRITE answered with packet type {t}"
        code = r.u32()
        msg = r.string().decode("utf-8", "replace") if r.pos < len(r.data) else ""
        out[ids[rid]] = (code, msg)
    return out


# ---- the cache directory -------------------------------------------------

def cache_entries(cache_dir, sub="vfs"):
    """{path relative to <cache_dir>/<sub>: os.stat} of every file there."""
    base = Path(cache_dir) / sub
    out = {}
    for dirpath, _, names in os.walk(base):
        for n in names:
            p = Path(dirpath) / n
            try:
                out[str(p.relative_to(base))] = p.stat()
            except FileNotFoundError:
                pass
    return out


def held(st):
    """Bytes a cache file really holds (sparse files hold less than their size)."""
    return min(st.st_size, st.st_blocks * 512)


def cache_total(cache_dir):
    return sum(held(st) for st in cache_entries(cache_dir).values())


def cache_path(cache_dir, name):
    """The cache data file for file `name` (a path relative to the served
    root), or None. Only vfs/ is assumed: below it, any path ending in /name."""
    hits = [p for p in cache_entries(cache_dir) if p == name or p.endswith("/" + name)]
    assert len(hits) <= 1, f"several cache files for {name}: {hits}"
    return Path(cache_dir) / "vfs" / hits[0] if hits else None


def cache_held(cache_dir, name):
    p = cache_path(cache_dir, name)
    if p is None:
        return 0
    try:
        return held(p.stat())
    except FileNotFoundError:
        return 0


def cache_has_data(cache_dir, name, data):
    p = cache_path(cache_dir, name)
    try:
        return p is not None and p.read_bytes() == data
    except FileNotFoundError:
        return False


def meta_for(cache_dir, name):
    """The parsed vfsMeta JSON of file `name`, or None."""
    hits = [p for p in cache_entries(cache_dir, "vfsMeta")
            if re.search(r"(^|/)" + re.escape(name) + r"(\.json)?$", p)]
    if not hits:
        return None
    assert len(hits) == 1, f"several metadata files for {name}: {hits}"
    try:
        return json.loads((Path(cache_dir) / "vfsMeta" / hits[0]).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None      # being rewritten


def kill9(srv):
    os.killpg(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(10)
    srv.stop()


def s3_get_count(s3):
    """GetObject requests Garage has answered so far (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{s3.admin_port}/metrics",
                                timeout=10) as r:
        body = r.read().decode()
    m = re.search(r'^api_s3_request_counter\{api_endpoint="GetObject"\} (\d+)', body, re.M)
    return int(m.group(1)) if m else 0


# ==========================================================================
# the suite, for every mode x backend
# ==========================================================================

def test_open_modes(mode, backend, store, vfs, clients):
    """w, wx (EXCL), a (APPEND), a+ and w over an existing file.

    Every mode: create, EXCL, TRUNC; visible to another session at CLOSE.
    APPEND write-only: where wo_ok, else a clear error (S3 off/minimal).
    APPEND read+write: where rw_ok, else a clear error (S3 off)."""
    srv = vfs()
    c = sftp(clients, srv)
    old = os.urandom(50_000)
    with c.open("f.bin", "wb") as f:
        f.write(old)
    other = sftp(clients, srv)
    assert other.stat("f.bin").st_size == len(old)
    assert read_all(other, "f.bin") == old
    settle(store, {"f.bin": old})

    # EXCL: refused over an existing file (every mode), which stays as it is.
    err = attempt(lambda: c.open("f.bin", "wx").close())
    assert_clean_error(err, "EXCL open of an existing file")
    with c.open("new.bin", "wx") as f:
        f.write(b"exclusive")
    assert read_all(other, "new.bin") == b"exclusive"

    # APPEND, write-only; the second write is sent at offset 0 and must
    # still land at the end.
    def append():
        with c.open("f.bin", "ab") as f:
            f.write(b"tail1")
            f.seek(0)
            f.write(b"tail2")
    err = attempt(append)
    if wo_ok(mode, backend):
        assert err is None, f"append ({mode}, {backend}): {err!r}"
        want = old + b"tail1tail2"
    else:
        assert_clean_error(err, f"append on {backend} in mode {mode}")
        want = old
    assert read_all(other, "f.bin") == want

    # APPEND, read+write: read back on the same handle before CLOSE.
    def append_rw():
        with c.open("f.bin", "a+b") as f:
            f.write(b"tail3")
            f.flush()
            f.seek(0)
            got = f.read()
            assert got == want + b"tail3", (len(got), got[-20:])
    err = attempt(append_rw)
    if rw_ok(mode, backend):
        assert err is None, f"a+ ({mode}, {backend}): {err!r}"
        want += b"tail3"
    else:
        assert_clean_error(err, f"a+ on {backend} in mode {mode}")
    assert read_all(other, "f.bin") == want
    settle(store, {"f.bin": want, "new.bin": b"exclusive"})

    # TRUNC over an existing file: every mode.
    new = os.urandom(7_000)
    with c.open("f.bin", "wb") as f:
        f.write(new)
    assert other.stat("f.bin").st_size == len(new)
    assert read_all(other, "f.bin") == new
    settle(store, {"f.bin": new, "new.bin": b"exclusive"})


def test_read_write_random(mode, backend, store, vfs, clients):
    """r+ on a file made outside Ferry: writes in the middle, before the
    start, past the end (a hole reads as zeros), read back on the handle
    before CLOSE, then another session and the store see exactly that.
    Works where rw_ok; S3 off fails clearly and leaves the object alone.
    In the cached modes the untouched parts must be fetched from the store
    before the upload (a sparse cache file is completed)."""
    data = os.urandom(300_000)
    store.put("f.bin", data)
    srv = vfs()
    c = sftp(clients, srv)
    edits = [(100_000, b"A" * 1000), (10, b"B" * 10), (299_990, b"C" * 20),
             (400_000, b"D" * 5)]
    want = bytearray(data)
    for off, d in edits:
        if off > len(want):
            want += bytes(off - len(want))
        want[off:off + len(d)] = d
    want = bytes(want)

    def edit():
        with c.open("f.bin", "r+b") as f:
            assert f.read(16) == data[:16]
            for off, d in edits:
                f.seek(off)
                f.write(d)
            f.flush()
            assert f.stat().st_size == len(want)
            f.seek(0)
            got = f.read()
            assert got == want, "read back on the handle before CLOSE differs"
    err = attempt(edit)
    other = sftp(clients, srv)
    if rw_ok(mode, backend):
        assert err is None, f"r+ ({mode}, {backend}): {err!r}"
        assert other.stat("f.bin").st_size == len(want)
        assert read_all(other, "f.bin") == want
        settle(store, {"f.bin": want})
    else:
        assert_clean_error(err, f"r+ on {backend} in mode {mode}")
        assert read_all(other, "f.bin") == data
        assert store.snapshot() == {"f.bin": data}


def test_write_and_seek_patterns(mode, backend, store, vfs, clients):
    """Write-only uploads (CREAT|TRUNC) with pipelined out-of-order writes,
    a real seek back, a hole; and reads in every order.

    - Out of order inside the window (all blocks there at CLOSE): every mode.
    - A seek back over data already written: where wo_ok; S3 off/minimal
      fail with a clear status and never store a mix.
    - A write past the end leaving a hole: where wo_ok (not specified for
      S3 off/minimal, which take files front to back).
    - Reads: sequential, backwards, random, across and at EOF: every mode."""
    big = os.urandom(MiB + 7)
    store.put("r.bin", big)         # before Ferry lists the root
    srv = vfs()
    raw = clients.raw(srv)
    c = sftp(clients, srv)

    # 16 x 32 KiB in a shuffled order, all in flight at once.
    data = os.urandom(16 * 32 * KiB)
    blocks = [(i * 32 * KiB, data[i * 32 * KiB:(i + 1) * 32 * KiB]) for i in range(16)]
    random.Random(7).shuffle(blocks)
    h = raw.open_file(b"/ooo.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    st = pipelined_writes(raw, h, blocks)
    assert all(code == OK for code, _ in st.values()), st
    raw.close_handle(h)
    assert read_all(c, "ooo.bin") == data

    # A real seek back: 256 KiB written and acknowledged, then offset 1000.
    first = os.urandom(256 * KiB)
    h = raw.open_file(b"/back.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    for off in range(0, len(first), 32 * KiB):
        raw.write(h, off, first[off:off + 32 * KiB])
    back_err = None
    try:
        raw.write(h, 1000, b"PATCH")
    except Exception as e:      # SftpStatusError
        back_err = e
    close_err = None
    try:
        raw.close_handle(h)
    except Exception as e:
        close_err = e
    patched = first[:1000] + b"PATCH" + first[1005:]
    if wo_ok(mode, backend):
        assert back_err is None and close_err is None, (back_err, close_err)
        assert read_all(c, "back.bin") == patched
        want = {"ooo.bin": data, "back.bin": patched}
    else:
        err = back_err or close_err
        assert err is not None, f"a seek back on {backend} in mode {mode} was accepted"
        # Refused with a status, by a session that goes on: not a dropped
        # connection or a timeout.
        assert isinstance(err, SftpStatusError), repr(err)
        assert err.code in (OP_UNSUPPORTED, FAILURE) and err.message.strip(), repr(err)
        assert raw.stat(b"/ooo.bin") is not None, "the session did not survive the refusal"
        want = {"ooo.bin": data}
        # The upload is either dropped or holds exactly what was accepted.
        if "back.bin" in store.files():
            assert store.read("back.bin") == first
            want["back.bin"] = first

    # A hole: write at 100 000 first, then 0..1000; CLOSE; zeros between.
    if wo_ok(mode, backend):
        with c.open("hole.bin", "wb") as f:
            f.seek(100_000)
            f.write(b"E" * 100)
            f.seek(0)
            f.write(b"S" * 1000)
        holed = b"S" * 1000 + bytes(99_000) + b"E" * 100
        assert read_all(c, "hole.bin") == holed
        want["hole.bin"] = holed
    want["r.bin"] = big
    settle(store, want, timeout=UPLOAD_TIMEOUT)

    # Reads of a file made outside Ferry, in every order.
    with c.open("r.bin", "rb") as f:
        assert f.read(100) == big[:100]
        f.seek(MiB - 50)
        assert f.read(100) == big[MiB - 50:MiB + 7]     # across EOF: short
        assert f.read(10) == b""                        # at EOF
        f.seek(500_000)
        assert f.read(4096) == big[500_000:504_096]
        f.seek(10)                                      # backwards
        assert f.read(70_000) == big[10:70_010]
        rng = random.Random(3)
        ranges = [(rng.randrange(0, len(big) - 5000), rng.randrange(1, 5000))
                  for _ in range(20)]
        for (off, n), got in zip(ranges, f.readv(ranges)):
            assert got == big[off:off + n], (off, n)
        f.seek(0)
        f.prefetch()
        assert f.read() == big


def test_truncate(mode, backend, store, vfs, clients):
    """Truncate on an open handle (FSETSTAT size: paramiko SFTPFile.truncate)
    where rw_ok, on a path (SETSTAT size, `chattr size`-like) where
    path_truncate_ok; shrink, then grow with zeros. Elsewhere a clear error
    and the object unchanged. Truncate to 0 on a path works everywhere."""
    a, b = os.urandom(200_000), os.urandom(100_000)
    store.put("a.bin", a)
    store.put("b.bin", b)
    store.put("z.bin", b"not for long")
    srv = vfs()
    c = sftp(clients, srv)
    other = sftp(clients, srv)

    def on_handle():
        with c.open("a.bin", "r+b") as f:
            f.truncate(150_000)
            assert f.stat().st_size == 150_000
            f.truncate(160_000)
            f.seek(0)
            assert f.read() == a[:150_000] + bytes(10_000)
    err = attempt(on_handle)
    if rw_ok(mode, backend):
        assert err is None, f"ftruncate ({mode}, {backend}): {err!r}"
        want_a = a[:150_000] + bytes(10_000)
    else:
        assert_clean_error(err, f"ftruncate on {backend} in mode {mode}")
        want_a = a
    assert other.stat("a.bin").st_size == len(want_a)
    assert read_all(other, "a.bin") == want_a

    def on_path():
        c.truncate("b.bin", 60_000)
        assert c.stat("b.bin").st_size == 60_000
        c.truncate("b.bin", 70_000)
    err = attempt(on_path)
    if path_truncate_ok(mode, backend):
        assert err is None, f"truncate by path ({mode}, {backend}): {err!r}"
        want_b = b[:60_000] + bytes(10_000)
    else:
        assert_clean_error(err, f"truncate by path on {backend} in mode {mode}")
        want_b = b
    assert other.stat("b.bin").st_size == len(want_b)
    assert read_all(other, "b.bin") == want_b

    c.truncate("z.bin", 0)
    assert other.stat("z.bin").st_size == 0
    settle(store, {"a.bin": want_a, "b.bin": want_b, "z.bin": b""})


def test_rename_open_file(mode, backend, store, vfs, clients):
    """Rename a file while it is open for writing, write on, CLOSE.

    - An existing file open r+ (where rw_ok): the content lands at the new
      name, the old name is gone, in the store too.
    - A new file open w: in writes/full the content lands at the new name.
      In off/minimal (an upload that exists only at CLOSE) the rename may
      instead fail cleanly; either way the data is at exactly one name,
      complete, never lost."""
    old = os.urandom(100_000)
    store.put("a.bin", old)
    srv = vfs()
    c = sftp(clients, srv)
    other = sftp(clients, srv)
    want = {}
    if rw_ok(mode, backend):
        with c.open("a.bin", "r+b") as f:
            f.write(b"HEAD")
            f.flush()
            other.rename("a.bin", "b.bin")
            f.seek(50_000)
            f.write(b"MIDDLE")
        want["b.bin"] = b"HEAD" + old[4:50_000] + b"MIDDLE" + old[50_006:]
        assert sorted(other.listdir("/")) == ["b.bin"]
        assert read_all(other, "b.bin") == want["b.bin"]
    else:
        want["a.bin"] = old

    part1, part2 = os.urandom(40_000), os.urandom(30_000)
    rename_err = None
    with c.open("n.bin", "wb") as f:
        f.write(part1)
        f.flush()
        try:
            other.posix_rename("n.bin", "m.bin")
        except OSError as e:
            rename_err = e
        f.write(part2)
    if mode in CACHED:
        assert rename_err is None, f"rename of a file open for writing: {rename_err!r}"
    print(f"rename of an open new file ({mode}, {backend}): {rename_err!r}")
    landed = "n.bin" if rename_err is not None else "m.bin"
    want[landed] = part1 + part2
    assert sorted(other.listdir("/")) == sorted(want), other.listdir("/")
    assert read_all(other, landed) == part1 + part2
    settle(store, want)


def test_concurrent_readers_and_writers(mode, backend, store, vfs, clients):
    """Four sessions read one file while four others each upload a file,
    all at once (every mode). Then two sessions open the same file r+ and
    write different parts: both changes land (where rw_ok)."""
    shared = os.urandom(MiB)
    store.put("shared.bin", shared)
    srv = vfs()
    readers = [sftp(clients, srv) for _ in range(4)]
    writers = [sftp(clients, srv) for _ in range(4)]
    payloads = [os.urandom(256 * KiB + i) for i in range(4)]
    errors = []

    def read(c):
        try:
            for _ in range(2):
                got = read_all(c, "shared.bin")
                if got != shared:
                    errors.append(f"a reader got {len(got)} bytes that differ")
        except Exception as e:
            errors.append(f"reader: {e!r}")

    def write(c, i):
        try:
            with c.open(f"w{i}.bin", "wb") as f:
                for off in range(0, len(payloads[i]), 32 * KiB):
                    f.write(payloads[i][off:off + 32 * KiB])
        except Exception as e:
            errors.append(f"writer {i}: {e!r}")

    threads = [threading.Thread(target=read, args=(c,)) for c in readers] + \
        [threading.Thread(target=write, args=(c, i)) for i, c in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert errors == [], errors
    check = sftp(clients, srv)
    for i, p in enumerate(payloads):
        assert read_all(check, f"w{i}.bin") == p
    want = {"shared.bin": shared, **{f"w{i}.bin": p for i, p in enumerate(payloads)}}

    if rw_ok(mode, backend):
        f1 = readers[0].open("shared.bin", "r+b")
        f2 = readers[1].open("shared.bin", "r+b")
        f1.write(b"1" * 1000)
        f1.flush()
        f2.seek(512 * KiB)
        f2.write(b"2" * 1000)
        f2.flush()
        f1.close()
        f2.close()
        edited = b"1" * 1000 + shared[1000:512 * KiB] + b"2" * 1000 + shared[512 * KiB + 1000:]
        assert read_all(check, "shared.bin") == edited
        want["shared.bin"] = edited
    settle(store, want)


def test_openssh_reput_reget(mode, backend, store, vfs, tmp_path):
    """OpenSSH sftp: reput (an APPEND write-only open at the remote size)
    works where wo_ok, and elsewhere (S3 off/minimal) fails with the object
    unchanged; reget (a read at an offset) works in every mode."""
    srv = vfs()
    src = make_random_file(tmp_path / "resume.bin", MiB + 123)
    data = src.read_bytes()
    partial = tmp_path / "partial.bin"
    partial.write_bytes(data[:300_001])
    ok(openssh_sftp(srv, f"put {partial} /resume.bin\n"))
    rc, out, err = openssh_sftp(srv, f"reput {src} /resume.bin\n")
    if wo_ok(mode, backend):
        assert rc == 0, (rc, out, err)
        want = data
    else:
        assert rc != 0 and "unsupported" in (out + err).lower(), (rc, out, err)
        want = partial.read_bytes()
    back = tmp_path / "back.bin"
    ok(openssh_sftp(srv, f"get /resume.bin {back}\n"))
    assert back.read_bytes() == want
    settle(store, {"resume.bin": want})

    local = tmp_path / "local.bin"
    local.write_bytes(want[:200_000])
    ok(openssh_sftp(srv, f"reget /resume.bin {local}\n"))
    assert local.read_bytes() == want


def test_sshfs_in_place_edit(mode, backend, store, vfs, fuse_works, keys, tmp_path, clients):
    """sshfs: open r+b (O_RDWR, so READ|WRITE over SFTP), write in the
    middle, read back, close; a fresh session and the store see it. Works
    where rw_ok (local every mode, S3 minimal/writes/full); on S3 in off
    mode the edit fails with an error and the object is unchanged."""
    text = b"hello world, hello sftp\n" * 1000
    store.put("edit.txt", text)
    srv = vfs()
    m = mount_sshfs(srv, tmp_path / "mnt", keys=keys)
    try:
        def edit():
            with open(m / "edit.txt", "r+b") as f:
                assert f.read(5) == b"hello"
                f.seek(6 + 24 * 500)
                f.write(b"WORLD")
                f.flush()
                f.seek(24 * 500)
                assert f.read(24) == b"hello WORLD, hello sftp\n"
        err = attempt(edit)
    finally:
        unmount(m.path, m.proc)
    want = text[:24 * 500 + 6] + b"WORLD" + text[24 * 500 + 11:]
    if rw_ok(mode, backend):
        assert err is None, f"in-place edit via sshfs ({mode}, {backend}): {err!r}"
    else:
        assert err is not None, "an in-place edit of an S3 object in off mode succeeded"
        want = text
    assert read_all(sftp(clients, srv), "edit.txt") == want
    settle(store, {"edit.txt": want})


# ==========================================================================
# the cache itself (writes and full)
# ==========================================================================

@pytest.mark.parametrize("mode", CACHED)
def test_write_back_delay_and_visibility(mode, backend, store, vfs, clients):
    """A closed file is visible (stat, listing, content) to every session at
    once, but reaches the store only --vfs-write-back (3s) after CLOSE."""
    srv = vfs(write_back="3s")
    c = sftp(clients, srv)
    data = os.urandom(100_000)
    with c.open("wb.bin", "wb") as f:
        f.write(data)
    closed = time.monotonic()
    other = sftp(clients, srv)
    assert "wb.bin" in other.listdir("/")
    assert other.stat("wb.bin").st_size == len(data)
    assert read_all(other, "wb.bin") == data
    assert "wb.bin" not in store.files(), "uploaded before the write-back delay"
    time.sleep(max(0.0, closed + 1.5 - time.monotonic()))
    assert "wb.bin" not in store.files(), "uploaded before the write-back delay"
    settle(store, {"wb.bin": data}, timeout=3 + UPLOAD_TIMEOUT)
    assert time.monotonic() - closed >= 2.5


@pytest.mark.parametrize("mode", CACHED)
def test_rename_and_remove_before_upload(mode, backend, store, vfs, clients):
    """Files only in the cache (write-back 2s) renamed (into a directory,
    and over another file) or removed before their upload: the store ends
    with exactly the renamed files, nothing under an old name. A stored
    file renamed over one only the cache has replaces it: the cached
    version is never uploaded over it."""
    stored = os.urandom(5_000)
    store.put("stored.bin", stored)
    srv = vfs(write_back="2s")
    c = sftp(clients, srv)
    a, b, x, d = (os.urandom(n) for n in (10_000, 20_000, 30_000, 40_000))
    c.mkdir("sub")
    for name, data in (("a.bin", a), ("b.bin", b), ("x.bin", x), ("d.bin", d),
                       ("y.bin", d)):
        with c.open(name, "wb") as f:
            f.write(data)
    c.rename("stored.bin", "y.bin")         # a stored file over a cached one
    c.rename("a.bin", "sub/a2.bin")
    c.posix_rename("b.bin", "x.bin")        # over another cached file
    c.remove("d.bin")
    other = sftp(clients, srv)
    assert sorted(other.listdir("/")) == ["sub", "x.bin", "y.bin"]
    assert other.listdir("sub") == ["a2.bin"]
    assert read_all(other, "sub/a2.bin") == a
    assert read_all(other, "x.bin") == b
    assert read_all(other, "y.bin") == stored
    want = {"sub/a2.bin": a, "x.bin": b, "y.bin": stored}
    settle(store, want, timeout=2 + UPLOAD_TIMEOUT)
    time.sleep(3)                   # no late upload under an old name
    assert store.snapshot() == want


@pytest.mark.parametrize("mode", CACHED)
def test_restart_uploads_dirty_files(mode, backend, store, vfs, clients, tmp_path):
    """With write-back 1h: a new file and an in-place edit stay dirty in the
    cache (visible to clients, not in the store, marked Dirty in vfsMeta);
    kill -9; restarted with the same --cache-dir and write-back 0s, Ferry
    uploads both byte-exact and marks them clean."""
    cache = tmp_path / "cache-restart"
    old = os.urandom(300_000)
    store.put("old.bin", old)
    srv = vfs(write_back="1h", cache_dir=cache)
    c = sftp(clients, srv)
    new = os.urandom(200_000)
    with c.open("new.bin", "wb") as f:
        f.write(new)
    with c.open("old.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"X" * 100)
    edited = old[:1000] + b"X" * 100 + old[1100:]
    other = sftp(clients, srv)
    assert sorted(other.listdir("/")) == ["new.bin", "old.bin"]
    assert read_all(other, "new.bin") == new
    assert read_all(other, "old.bin") == edited
    time.sleep(1)
    assert store.snapshot() == {"old.bin": old}, "uploaded despite --vfs-write-back 1h"
    assert (cache / "vfs").is_dir() and (cache / "vfsMeta").is_dir(), \
        sorted(os.listdir(cache))
    for name in ("new.bin", "old.bin"):
        meta = meta_for(cache, name)
        assert meta is not None and meta.get("Dirty") is True, (name, meta)
    kill9(srv)
    assert store.snapshot() == {"old.bin": old}

    srv2 = vfs(write_back="0s", cache_dir=cache)
    settle(store, {"old.bin": edited, "new.bin": new})
    assert wait_until(lambda: all((meta_for(cache, n) or {}).get("Dirty") is False
                                  for n in ("new.bin", "old.bin")), timeout=10), \
        [meta_for(cache, n) for n in ("new.bin", "old.bin")]
    c2 = sftp(clients, srv2)
    assert read_all(c2, "new.bin") == new
    assert read_all(c2, "old.bin") == edited


@pytest.mark.parametrize("mode,backend,sig", [
    pytest.param("writes", "s3", signal.SIGTERM, id="writes-s3-SIGTERM"),
    pytest.param("writes", "local", signal.SIGINT, id="writes-local-SIGINT")])
def test_shutdown_with_pending_uploads(mode, backend, sig, store, vfs, clients, tmp_path):
    """SIGTERM/SIGINT with uploads pending (write-back 1h): Ferry exits
    promptly, after uploading them or keeping them for the next start, and
    says so in the log; after a restart the store has the data either way."""
    cache = tmp_path / "cache-shutdown"
    srv = vfs(write_back="1h", cache_dir=cache)
    c = sftp(clients, srv)
    data = os.urandom(150_000)
    with c.open("p.bin", "wb") as f:
        f.write(data)
    assert "p.bin" not in store.files()
    clients.close_all()
    before = len(srv.log())
    srv.proc.send_signal(sig)
    try:
        srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ferry did not exit within 30 s of {sig.name}")
    srv.stop()
    said = srv.log()[before:]           # what it logged after the signal
    assert re.search(r"(?i)\b(pending|changed|dirty)\b.*\b(upload|next start)", said), said
    print(f"after {sig.name}: store has {store.files()}")
    srv2 = vfs(write_back="0s", cache_dir=cache)
    settle(store, {"p.bin": data})
    assert read_all(sftp(clients, srv2), "p.bin") == data


@pytest.mark.parametrize("mode,backend", [("writes", "local")])
def test_failed_upload_is_retried(mode, backend, store, vfs, clients):
    """An upload that fails (the target directory made immutable with
    `chattr +i`, which stops root too) is logged, kept dirty and retried
    with backoff: once the directory is writable again the file lands."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    srv = vfs(write_back="1s")
    c = sftp(clients, srv)
    c.mkdir("d")
    target = store.root / "d"
    assert wait_until(target.is_dir, timeout=10)
    p = run(["chattr", "+i", target], timeout=30)
    if p.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {p.stderr.strip()}")
    data = os.urandom(120_000)
    before = len(srv.log())
    try:
        with c.open("d/f.bin", "wb") as f:
            f.write(data)
        failed = re.compile(r"(?i)(fail|error|retry|warn).*f\.bin|f\.bin.*(fail|error|retry)")
        assert wait_until(lambda: failed.search(srv.log()[before:]), timeout=15), \
            srv.log_tail(40)
        assert not (target / "f.bin").exists()
        assert read_all(sftp(clients, srv), "d/f.bin") == data    # still served
        time.sleep(2)       # let it fail at least once more
    finally:
        run(["chattr", "-i", target], timeout=30)
    settle(store, {"d/f.bin": data}, timeout=60)
    assert srv.alive()


@pytest.mark.parametrize("mode", ["full"])
def test_eviction_full(mode, backend, store, vfs, clients):
    """--vfs-cache-max-size 1M, poll 1s: of four 512 KiB files read through
    Ferry, the cleaner evicts the least recently used closed ones; the one
    still open and two dirty files (write-back 1h) are never evicted, even
    though they alone fill the quota; an evicted file still reads right."""
    files = {f"r{i}.bin": os.urandom(512 * KiB) for i in range(4)}
    for name, data in files.items():
        store.put(name, data)
    srv = vfs("--vfs-cache-max-size", "1M", "--vfs-cache-poll-interval", "1s",
              write_back="1h")
    cache = srv.cache_dir
    c = sftp(clients, srv)
    dirty = {f"w{i}.bin": os.urandom(512 * KiB) for i in range(2)}
    for name, data in dirty.items():
        with c.open(name, "wb") as f:
            f.write(data)
    keep = c.open("r0.bin", "rb")
    assert keep.read() == files["r0.bin"]
    for name in ("r1.bin", "r2.bin", "r3.bin"):
        assert read_all(c, name) == files[name]
        time.sleep(0.1)                 # a clear LRU order
    assert wait_until(lambda: cache_held(cache, "r0.bin") > 0, timeout=5), \
        sorted(cache_entries(cache))

    def closed_clean_held():
        return sum(cache_held(cache, n) for n in ("r1.bin", "r2.bin", "r3.bin"))
    # Open + dirty already make 1.5 MiB > 1M: every closed clean item goes.
    assert wait_until(lambda: closed_clean_held() == 0, timeout=8), \
        {p: held(st) for p, st in cache_entries(cache).items()}
    for name, data in dirty.items():
        assert cache_has_data(cache, name, data), f"dirty {name} was evicted"
        assert (meta_for(cache, name) or {}).get("Dirty") is True, meta_for(cache, name)
    assert cache_held(cache, "r0.bin") > 0, "a file open for reading was evicted"
    keep.seek(100_000)
    assert keep.read(1000) == files["r0.bin"][100_000:101_000]
    keep.close()
    assert read_all(c, "r2.bin") == files["r2.bin"]     # evicted: read again
    assert store.files() == {n: len(d) for n, d in files.items()}  # dirty: not uploaded
    assert_server_healthy(srv, clients)


@pytest.mark.parametrize("mode", ["writes"])
@pytest.mark.parametrize("backend", ["s3"])
def test_eviction_after_upload(mode, backend, store, vfs, clients):
    """writes mode, --vfs-cache-max-size 1M: four 512 KiB uploads are evicted
    once clean (uploaded) until the cache is within 1 MiB; all four are in
    the store and still read right through Ferry."""
    srv = vfs("--vfs-cache-max-size", "1M", "--vfs-cache-poll-interval", "1s")
    c = sftp(clients, srv)
    files = {f"u{i}.bin": os.urandom(512 * KiB) for i in range(4)}
    for name, data in files.items():
        with c.open(name, "wb") as f:
            f.write(data)
    settle(store, files)
    assert wait_until(lambda: cache_total(srv.cache_dir) <= MiB, timeout=8), \
        {p: held(st) for p, st in cache_entries(srv.cache_dir).items()}
    for name, data in files.items():
        assert read_all(c, name) == data


@pytest.mark.parametrize("mode", ["full"])
@pytest.mark.parametrize("backend", ["s3"])
def test_eviction_max_age(mode, backend, store, vfs, clients):
    """--vfs-cache-max-age 2s, poll 1s: a file read and closed leaves the
    cache within a few seconds; one kept open stays."""
    a, b = os.urandom(200_000), os.urandom(200_000)
    store.put("a.bin", a)
    store.put("b.bin", b)
    srv = vfs("--vfs-cache-max-age", "2s", "--vfs-cache-poll-interval", "1s")
    c = sftp(clients, srv)
    assert read_all(c, "a.bin") == a
    keep = c.open("b.bin", "rb")
    assert keep.read() == b
    assert wait_until(lambda: cache_held(srv.cache_dir, "a.bin") > 0, timeout=5)
    assert wait_until(lambda: cache_held(srv.cache_dir, "a.bin") == 0, timeout=10), \
        sorted(cache_entries(srv.cache_dir))
    assert cache_held(srv.cache_dir, "b.bin") > 0, "an open file was evicted by age"
    keep.close()
    assert read_all(c, "a.bin") == a


@pytest.mark.parametrize("mode", ["full"])
def test_full_reads_come_from_the_cache(mode, backend, store, vfs, clients, tmp_path):
    """full: the first download fills the cache with the file; the second
    is served from it (on S3: not one more GetObject, per Garage's metrics)."""
    data = os.urandom(MiB + 99)
    store.put("r.bin", data)
    srv = vfs()
    back1, back2 = tmp_path / "back1.bin", tmp_path / "back2.bin"
    if backend == "s3":
        first = s3_get_count(store.s3)
    ok(openssh_sftp(srv, f"get /r.bin {back1}\n"))
    assert back1.read_bytes() == data
    assert wait_until(lambda: cache_has_data(srv.cache_dir, "r.bin", data), timeout=5), \
        {p: held(st) for p, st in cache_entries(srv.cache_dir).items()}
    if backend == "s3":
        time.sleep(0.5)
        before = s3_get_count(store.s3)
        assert before > first, "Garage's metrics did not count the first download"
    ok(openssh_sftp(srv, f"get /r.bin {back2}\n"))
    assert back2.read_bytes() == data
    if backend == "s3":
        time.sleep(1)
        assert s3_get_count(store.s3) == before, "the second read went to the store"


@pytest.mark.parametrize("mode", ["full"])
def test_full_cache_invalidated_by_outside_change(mode, backend, store, vfs, clients):
    """full, --dir-cache-time 1s: a cached file changed in the store behind
    Ferry's back (new size; then same size, new mtime) reads new after the
    listing expires."""
    a = os.urandom(200_000)
    store.put("v.bin", a, mtime=1_600_000_000)
    srv = vfs("--dir-cache-time", "1s")
    c = sftp(clients, srv)
    assert read_all(c, "v.bin") == a
    assert wait_until(lambda: cache_has_data(srv.cache_dir, "v.bin", a), timeout=5)
    b = os.urandom(150_000)
    store.put("v.bin", b, mtime=1_600_000_100)
    time.sleep(1.5)
    assert c.stat("v.bin").st_size == len(b)
    assert read_all(sftp(clients, srv), "v.bin") == b
    d = os.urandom(150_000)
    store.put("v.bin", d, mtime=1_600_000_200)
    time.sleep(1.5)
    assert read_all(sftp(clients, srv), "v.bin") == d


@pytest.fixture
def small_cache(tmp_path):
    """A 4 MiB tmpfs for --cache-dir (skips where mounting is not allowed).
    Servers using it must be stopped before the test ends (done here too)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    d = tmp_path / "small-cache"
    d.mkdir()
    p = run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", d], timeout=30)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    servers = []
    yield d, servers
    for srv in servers:
        srv.stop()
    if run(["umount", d], timeout=30).returncode != 0:
        run(["umount", "-l", d], timeout=30)


def upload_in_pieces(c, name, data):
    with c.open(name, "wb") as f:
        for off in range(0, len(data), 64 * KiB):
            f.write(data[off:off + 64 * KiB])


@pytest.mark.parametrize("mode", ["writes"])
@pytest.mark.parametrize("backend", ["s3"])
def test_out_of_space_next_to_dirty_files(mode, backend, store, vfs, clients, small_cache):
    """The cache on a 4 MiB tmpfs, 3 MiB of it a dirty file (write-back 1h):
    2 MiB more fails with SSH_FX_FAILURE 'no space left on device'; the
    server, the session and the dirty file are unharmed; after a restart the
    dirty file reaches the store byte-exact."""
    cache, servers = small_cache
    srv = vfs(write_back="1h", cache_dir=cache)
    servers.append(srv)
    c = sftp(clients, srv)
    big = os.urandom(3 * MiB)
    upload_in_pieces(c, "big.bin", big)
    raw = clients.raw(srv)
    h = raw.open_file(b"/more.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    more = os.urandom(2 * MiB)
    err = None
    try:
        for off in range(0, len(more), 32 * KiB):
            raw.write(h, off, more[off:off + 32 * KiB])
    except SftpStatusError as e:
        err = e
    try:
        raw.close_handle(h)
    except SftpStatusError as e:
        err = err or e
    assert err is not None, "2 MiB more fitted next to 3 MiB dirty in a 4 MiB cache"
    assert err.code == FAILURE and "no space left on device" in err.message.lower(), err
    assert srv.alive()
    assert read_all(c, "big.bin") == big
    assert read_all(sftp(clients, srv), "big.bin") == big
    assert "big.bin" not in store.files()
    assert (meta_for(cache, "big.bin") or {}).get("Dirty") is True, meta_for(cache, "big.bin")
    clients.close_all()
    kill9(srv)
    srv2 = vfs(write_back="0s", cache_dir=cache)
    servers.append(srv2)
    assert wait_until(lambda: store.files().get("big.bin") == len(big), timeout=UPLOAD_TIMEOUT), \
        store.files()
    assert store.read("big.bin") == big
    print("store after the restart:", store.files())


@pytest.mark.parametrize("mode", ["full"])
@pytest.mark.parametrize("backend", ["s3"])
def test_out_of_space_evicts_clean_files(mode, backend, store, vfs, clients, small_cache):
    """The cache on a 4 MiB tmpfs holding a clean 1.5 MiB file read earlier
    (closed): a 3 MiB upload runs out of space, which makes Ferry evict the
    clean file; the upload then fits (at once, or when the client retries
    within a few seconds, as rclone's clients do)."""
    cache, servers = small_cache
    clean = os.urandom(1536 * KiB)
    store.put("clean.bin", clean)
    srv = vfs(write_back="1h", cache_dir=cache)
    servers.append(srv)
    c = sftp(clients, srv)
    assert read_all(c, "clean.bin") == clean
    assert wait_until(lambda: cache_held(cache, "clean.bin") > 0, timeout=5)
    big = os.urandom(3 * MiB)
    errors = []
    for _ in range(4):      # ENOSPC kicks the cleaner: a retry soon fits
        err = attempt(lambda: upload_in_pieces(c, "big.bin", big))
        if err is None:
            break
        assert "no space left on device" in str(err).lower(), repr(err)
        errors.append(err)
        time.sleep(1)
    assert err is None, (f"the clean, closed clean.bin was not evicted to make room "
                         f"({len(errors)} tries): {err!r}; cache holds "
                         f"{ {p: held(st) for p, st in cache_entries(cache).items()} }")
    assert read_all(c, "big.bin") == big
    assert read_all(c, "clean.bin") == clean        # from the store again
    assert srv.alive()


@pytest.mark.parametrize("mode", ["full"])
@pytest.mark.parametrize("backend", ["s3"])
def test_eviction_min_free_space(mode, backend, store, vfs, clients, small_cache):
    """--vfs-cache-min-free-space 3M on a 4 MiB tmpfs, poll 1s: after two
    1 MiB files are read, the cleaner evicts (least recently used first)
    until 3 MiB are free again."""
    cache, servers = small_cache
    a, b = os.urandom(MiB), os.urandom(MiB)
    store.put("a.bin", a)
    store.put("b.bin", b)
    srv = vfs("--vfs-cache-min-free-space", "3M", "--vfs-cache-poll-interval", "1s",
              cache_dir=cache)
    servers.append(srv)
    c = sftp(clients, srv)
    with c.open("a.bin", "rb") as f:        # open: cached and not evictable
        assert f.read() == a
        assert wait_until(lambda: cache_held(cache, "a.bin") > 0, timeout=5), \
            sorted(cache_entries(cache))
    time.sleep(0.2)
    assert read_all(c, "b.bin") == b

    def free():
        st = os.statvfs(cache)
        return st.f_bavail * st.f_frsize
    # 3 MiB less the metadata's pages: what is left once a.bin alone has gone.
    assert wait_until(lambda: cache_held(cache, "a.bin") == 0, timeout=8), \
        {p: held(st) for p, st in cache_entries(cache).items()}
    assert wait_until(lambda: free() >= 3 * MiB - 64 * KiB, timeout=8), free()
    assert read_all(c, "a.bin") == a


# ==========================================================================
# flags
# ==========================================================================

def test_vfs_flags(ferry_factory, clients, tmp_path):
    """The VFS flags exist with rclone's names and syntax; bad values are
    refused with one line and status 2; each mode starts and serves."""
    from conftest import ferry_bin
    out = run([ferry_bin(), "serve", "sftp", "--help"], env=clean_env()).stdout
    for flag in ("--vfs-cache-mode", "--vfs-write-back", "--transfers",
                 "--vfs-cache-max-age", "--vfs-cache-max-size",
                 "--vfs-cache-min-free-space", "--vfs-cache-poll-interval",
                 "--vfs-read-ahead"):
        assert flag in out, f"{flag} missing from serve sftp --help"
    for bad in (["--vfs-cache-mode", "sometimes"], ["--vfs-write-back", "soon"],
                ["--vfs-cache-max-size", "12Q"], ["--transfers", "many"]):
        p = run([ferry_bin(), "serve", "sftp", tmp_path, "--no-auth", "--addr",
                 "127.0.0.1:0", "--cache-dir", tmp_path / "c", *bad],
                env=clean_env(), timeout=30)
        assert p.returncode == 2, (bad, p.returncode, p.stdout, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (bad, p.stderr)
    for m in MODES:
        srv = ferry_factory("--vfs-cache-mode", m, "--vfs-write-back", "100ms",
                            "--transfers", "2", "--vfs-cache-max-age", "1h",
                            "--vfs-cache-max-size", "10M", "--vfs-cache-min-free-space", "1M",
                            "--vfs-cache-poll-interval", "1m", "--vfs-read-ahead", "1M")
        assert_server_healthy(srv, clients)
        srv.stop()
