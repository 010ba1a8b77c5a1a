"""SFTP semantics through paramiko and a raw-packet client (sftpraw.py):
exact statuses, every v3 request and the advertised extensions."""

import errno
import hashlib
import os
import random
import re
import select
import socket
import stat
import subprocess
import sys
import textwrap
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import paramiko
import pytest

import sftpraw as R
from conftest import (HOST, PASSWORD, USER, assert_server_healthy, clean_env,
                      is_temp_name, mode_of, temp_files, wait_until)
from sftpraw import SftpStatusError, attrs, string, u32, u64

EXTENSIONS = [
    "posix-rename@openssh.com", "statvfs@openssh.com", "fstatvfs@openssh.com",
    "fsync@openssh.com", "hardlink@openssh.com", "limits@openssh.com",
    "lsetstat@openssh.com", "expand-path@openssh.com", "copy-data", "home-directory",
]
MAX_IO = 261120  # 255 KiB
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.ferry-[0-9a-f]+\.partial$")


def put_bytes(c, path, data, mode="wb"):
    with c.open(path, mode) as f:
        f.write(data)


def get_bytes(c, path):
    with c.open(path, "rb") as f:
        return f.read()


def status_of(fn, *args):
    """The SFTP status code a raw call fails with."""
    with pytest.raises(SftpStatusError) as ei:
        fn(*args)
    return ei.value.code


# --------------------------------------------------------------------------
# handshake and extensions
# --------------------------------------------------------------------------

def test_version_and_extensions(ferry, clients):
    s = clients.raw(ferry)
    assert s.version == 3
    missing = [e for e in EXTENSIONS if e not in s.extensions]
    assert not missing, f"not advertised: {missing}; got {sorted(s.extensions)}"
    lim = s.limits()
    assert lim["max_read"] >= MAX_IO and lim["max_write"] >= MAX_IO, lim
    assert lim["max_packet"] >= lim["max_write"], lim


def test_full_size_reads_and_writes_are_not_capped(ferry, clients):
    s = clients.raw(ferry)
    data = os.urandom(MAX_IO)
    h = s.open_file("/big.bin", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    s.write(h, 0, data)
    s.write(h, MAX_IO, data)
    s.close_handle(h)
    assert ferry.backing("big.bin").read_bytes() == data + data
    h = s.open_file("/big.bin", R.FXF_READ)
    got = s.read(h, 100, MAX_IO)
    assert len(got) == MAX_IO, f"a {MAX_IO}-byte READ returned {len(got)} bytes"
    assert got == (data + data)[100:100 + MAX_IO]
    assert s.read(h, 2 * MAX_IO, 10) is None  # EOF status
    s.close_handle(h)


@pytest.mark.parametrize("size", [0, 1, 32767, 32768, (1 << 20) + 7])
def test_paramiko_put_get_byte_exact(ferry, clients, tmp_path, size):
    c = clients.sftp(ferry)
    src = tmp_path / "src"
    src.write_bytes(os.urandom(size))
    c.put(str(src), "/f.bin")
    c.get("/f.bin", str(tmp_path / "dst"))
    assert ferry.backing("f.bin").read_bytes() == src.read_bytes()
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert c.stat("/f.bin").st_size == size


# --------------------------------------------------------------------------
# OPEN flags and handles
# --------------------------------------------------------------------------

def test_read_write_handle_reads_and_writes(ferry, clients):
    """rclone's bug: READ on a READ|WRITE handle wrote zeros."""
    c = clients.sftp(ferry)
    put_bytes(c, "rw.txt", b"hello world")
    with c.open("rw.txt", "r+b") as f:
        f.seek(6)
        assert f.read(5) == b"world"
        f.seek(11)
        assert f.read(5) == b""
        f.seek(0)
        f.write(b"HELLO")
        f.flush()
        f.seek(0)
        assert f.read(11) == b"HELLO world"
    assert ferry.backing("rw.txt").read_bytes() == b"HELLO world"

    s = clients.raw(ferry)
    h = s.open_file("/rw.txt", R.FXF_READ | R.FXF_WRITE)
    assert s.read(h, 11, 5) is None
    assert s.fstat(h)["size"] == 11
    s.write(h, 6, b"WORLD!")
    assert s.read(h, 0, 100) == b"HELLO WORLD!"
    s.close_handle(h)
    assert ferry.backing("rw.txt").read_bytes() == b"HELLO WORLD!"


def test_write_on_read_handle_and_read_on_write_handle_fail(ferry, clients):
    ferry.backing("f").write_bytes(b"0123456789")
    s = clients.raw(ferry)
    h = s.open_file("/f", R.FXF_READ)
    with pytest.raises(SftpStatusError):
        s.write(h, 0, b"xx")
    s.close_handle(h)
    h = s.open_file("/f", R.FXF_WRITE)
    with pytest.raises(SftpStatusError):
        s.read(h, 0, 4)
    s.close_handle(h)
    assert ferry.backing("f").read_bytes() == b"0123456789"


def _random_reads(s, h, data, n, rng):
    reqs = {}
    for _ in range(n):
        off = rng.randrange(0, len(data) + 10)
        ln = rng.randrange(1, MAX_IO + 1)
        rid = s.send(R.READ, string(h) + u64(off) + u32(ln))
        reqs[rid] = (off, ln)
    for _ in range(n):
        t, rid, r = s.recv_reply()
        off, ln = reqs.pop(rid)
        if off >= len(data):
            assert t == R.STATUS and r.u32() == R.EOF, (off, ln)
            continue
        assert t == R.DATA, f"READ({off},{ln}) answered with packet type {t}"
        got = r.string()
        assert got == data[off:off + ln], f"READ({off},{ln}) returned wrong bytes"
    assert not reqs


def test_random_offset_reads_pipelined(ferry, clients):
    data = os.urandom(4 << 20)
    ferry.backing("rand.bin").write_bytes(data)
    s = clients.raw(ferry)
    rng = random.Random(1234)
    for flags in (R.FXF_READ, R.FXF_READ | R.FXF_WRITE):
        h = s.open_file("/rand.bin", flags)
        _random_reads(s, h, data, 150, rng)
        s.close_handle(h)
    assert ferry.backing("rand.bin").read_bytes() == data


def test_paramiko_random_seeks(ferry, clients):
    data = os.urandom(1 << 20)
    ferry.backing("seek.bin").write_bytes(data)
    c = clients.sftp(ferry)
    rng = random.Random(99)
    with c.open("seek.bin", "rb") as f:
        for _ in range(100):
            off, ln = rng.randrange(0, len(data)), rng.randrange(1, 70000)
            f.seek(off)
            assert f.read(ln) == data[off:off + ln]


def test_pipelined_writes_land_in_order(ferry, clients):
    s = clients.raw(ferry)
    h = s.open_file("/order.bin", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    ids = [s.send(R.WRITE, string(h) + u64(0) + string(bytes([i]) * 1000)) for i in range(64)]
    chunks = [os.urandom(32768) for _ in range(128)]
    ids += [s.send(R.WRITE, string(h) + u64(2000 + i * 32768) + string(chunks[i]))
            for i in range(128)]
    seen = set()
    for _ in ids:
        t, rid, r = s.recv_reply()
        s.check_status(t, r, rid)
        seen.add(rid)
    assert seen == set(ids)
    s.close_handle(h)
    got = ferry.backing("order.bin").read_bytes()
    assert got[:1000] == bytes([63]) * 1000, "overlapping writes applied out of order"
    assert got[1000:2000] == bytes(1000)
    assert got[2000:] == b"".join(chunks)


def test_append_flag(ferry, clients):
    ferry.backing("log.txt").write_bytes(b"abc")
    s = clients.raw(ferry)
    h = s.open_file("/log.txt", R.FXF_WRITE | R.FXF_APPEND)
    s.write(h, 0, b"XYZ")   # APPEND: the offset is ignored
    s.write(h, 1, b"123")
    s.close_handle(h)
    assert ferry.backing("log.txt").read_bytes() == b"abcXYZ123"
    c = clients.sftp(ferry)
    with c.open("log.txt", "ab") as f:
        f.write(b"!")
    with c.open("new-log.txt", "ab") as f:
        f.write(b"first")
    assert ferry.backing("log.txt").read_bytes() == b"abcXYZ123!"
    assert ferry.backing("new-log.txt").read_bytes() == b"first"


def test_pipelined_append_writes_land_in_order(ferry, clients):
    """What `reput` does: many APPEND writes in flight on one handle."""
    ferry.backing("app.bin").write_bytes(b"start")
    s = clients.raw(ferry)
    h = s.open_file("/app.bin", R.FXF_WRITE | R.FXF_CREAT | R.FXF_APPEND)
    chunks = [os.urandom(MAX_IO if i % 2 else 1000) for i in range(24)]
    off = 5
    ids = []
    for ch in chunks:
        ids.append(s.send(R.WRITE, string(h) + u64(off) + string(ch)))
        off += len(ch)
    for _ in ids:
        t, rid, r = s.recv_reply()
        s.check_status(t, r, rid)
    s.close_handle(h)
    got = ferry.backing("app.bin").read_bytes()
    assert len(got) == off
    assert got == b"start" + b"".join(chunks), "APPEND writes landed out of order"


def test_excl_flag(ferry, clients):
    c = clients.sftp(ferry)
    # paramiko's "x" alone sends CREAT|EXCL without WRITE: say "w" too.
    put_bytes(c, "x.txt", b"one", mode="wbx")
    with pytest.raises(OSError) as ei:
        c.open("x.txt", "wbx")
    assert not isinstance(ei.value, FileNotFoundError)
    assert ferry.backing("x.txt").read_bytes() == b"one"
    s = clients.raw(ferry)
    code = status_of(s.open_file, "/x.txt", R.FXF_WRITE | R.FXF_CREAT | R.FXF_EXCL)
    assert code == R.FAILURE
    ferry.backing("adir").mkdir()
    assert status_of(s.open_file, "/adir", R.FXF_WRITE | R.FXF_CREAT | R.FXF_EXCL) \
        == R.FAILURE


def test_open_without_creat_on_missing_file(ferry, clients):
    c = clients.sftp(ferry)
    with pytest.raises(FileNotFoundError):
        c.open("missing.txt", "rb")
    with pytest.raises(FileNotFoundError):
        c.open("missing.txt", "r+b")
    s = clients.raw(ferry)
    assert status_of(s.open_file, "/missing.txt", R.FXF_WRITE) == R.NO_SUCH_FILE
    assert status_of(s.open_file, "/nodir/f.txt", R.FXF_WRITE | R.FXF_CREAT) == R.NO_SUCH_FILE
    assert not ferry.backing("missing.txt").exists()


def test_trunc_and_in_place_writes(ferry, clients):
    ferry.backing("t.txt").write_bytes(b"0123456789")
    s = clients.raw(ferry)
    h = s.open_file("/t.txt", R.FXF_WRITE)                 # in place
    s.write(h, 2, b"ab")
    s.close_handle(h)
    assert ferry.backing("t.txt").read_bytes() == b"01ab456789"
    h = s.open_file("/t.txt", R.FXF_WRITE | R.FXF_CREAT)   # no TRUNC: keep the rest
    s.write(h, 0, b"Z")
    s.close_handle(h)
    assert ferry.backing("t.txt").read_bytes() == b"Z1ab456789"
    h = s.open_file("/t.txt", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    s.write(h, 0, b"new")
    s.close_handle(h)
    assert ferry.backing("t.txt").read_bytes() == b"new"
    h = s.open_file("/t.txt", R.FXF_WRITE | R.FXF_TRUNC)   # TRUNC of existing, no CREAT
    s.close_handle(h)
    assert ferry.backing("t.txt").read_bytes() == b""


def test_open_and_opendir_on_wrong_types(ferry, clients):
    ferry.backing("d").mkdir()
    ferry.backing("f").write_bytes(b"x")
    c = clients.sftp(ferry)
    with pytest.raises(OSError):
        c.listdir("f")
    with pytest.raises(OSError):
        c.open("d", "wb")
    s = clients.raw(ferry)
    with pytest.raises(SftpStatusError):
        h = s.open_file("/d", R.FXF_READ)
        s.read(h, 0, 10)  # if opening a directory is allowed, reading must fail
    assert status_of(s.opendir, "/missing") == R.NO_SUCH_FILE
    assert ferry.backing("d").is_dir()


def test_read_at_eof_and_short_file(ferry, clients):
    ferry.backing("short").write_bytes(b"abc")
    s = clients.raw(ferry)
    h = s.open_file("/short", R.FXF_READ)
    assert s.read(h, 0, 100) == b"abc"
    assert s.read(h, 3, 100) is None
    assert s.read(h, 1 << 40, 1) is None
    s.close_handle(h)
    ferry.backing("empty").write_bytes(b"")
    h = s.open_file("/empty", R.FXF_READ)
    assert s.read(h, 0, 1) is None
    s.close_handle(h)


# --------------------------------------------------------------------------
# directories, removal, rename
# --------------------------------------------------------------------------

def test_mkdir_semantics(ferry, clients):
    c = clients.sftp(ferry)
    c.mkdir("d")
    assert ferry.backing("d").is_dir()
    with pytest.raises(OSError) as ei:
        c.mkdir("d")
    assert not isinstance(ei.value, FileNotFoundError)
    ferry.backing("file").write_bytes(b"x")
    with pytest.raises(OSError):
        c.mkdir("file")
    with pytest.raises(FileNotFoundError):
        c.mkdir("no/such/parent")
    s = clients.raw(ferry)
    assert status_of(s.status_call, R.MKDIR, string("/d") + attrs()) == R.FAILURE


def test_rmdir_and_remove_semantics(ferry, clients):
    ferry.backing("f").write_bytes(b"keep")
    ferry.backing("d").mkdir()
    ferry.backing("full").mkdir()
    ferry.backing("full", "x").write_bytes(b"x")
    c = clients.sftp(ferry)
    with pytest.raises(OSError):
        c.rmdir("f")
    with pytest.raises(OSError):
        c.remove("d")
    with pytest.raises(OSError):
        c.rmdir("full")
    with pytest.raises(FileNotFoundError):
        c.remove("missing")
    with pytest.raises(FileNotFoundError):
        c.rmdir("missing")
    assert ferry.backing("f").read_bytes() == b"keep"
    assert ferry.backing("d").is_dir() and ferry.backing("full", "x").exists()
    c.remove("f")
    c.rmdir("d")
    assert not ferry.backing("f").exists() and not ferry.backing("d").exists()
    s = clients.raw(ferry)
    assert status_of(s.status_call, R.REMOVE, string("/missing")) == R.NO_SUCH_FILE
    assert status_of(s.status_call, R.RMDIR, string("/full/x")) != R.OK


def test_rename_semantics(ferry, clients):
    c = clients.sftp(ferry)
    put_bytes(c, "a", b"A")
    put_bytes(c, "b", b"B")
    # v3 RENAME replaces an existing file atomically, as rclone's server
    # does and its users rely on (issue 2; docs/design/rename.md).
    c.rename("a", "b")
    assert not ferry.backing("a").exists()
    assert ferry.backing("b").read_bytes() == b"A"
    # posix-rename replaces too.
    put_bytes(c, "a", b"A2")
    c.posix_rename("a", "b")
    assert not ferry.backing("a").exists()
    assert ferry.backing("b").read_bytes() == b"A2"
    # Neither lets a file replace a directory or a directory a file.
    c.mkdir("dir")
    put_bytes(c, "f", b"F")
    s = clients.raw(ferry)
    assert status_of(s.status_call, R.RENAME, string("/f") + string("/dir")) == R.FAILURE
    assert status_of(s.status_call, R.RENAME, string("/dir") + string("/f")) == R.FAILURE
    assert ferry.backing("f").read_bytes() == b"F"
    c.remove("f")
    c.rmdir("dir")
    # Plain moves.
    c.rename("b", "c")
    assert ferry.backing("c").read_bytes() == b"A2"
    c.mkdir("d1")
    put_bytes(c, "d1/in", b"in")
    c.rename("d1", "d2")
    assert ferry.backing("d2", "in").read_bytes() == b"in"
    c.mkdir("d3")
    c.rename("c", "d3/c")
    assert ferry.backing("d3", "c").read_bytes() == b"A2"
    with pytest.raises(FileNotFoundError):
        c.rename("missing", "x")
    with pytest.raises(FileNotFoundError):
        c.posix_rename("missing", "x")


# --------------------------------------------------------------------------
# attributes
# --------------------------------------------------------------------------

def test_truncate_via_setstat_and_handle(ferry, clients):
    c = clients.sftp(ferry)
    put_bytes(c, "t", b"0123456789")
    c.truncate("t", 4)
    assert ferry.backing("t").read_bytes() == b"0123"
    c.truncate("t", 8)
    assert ferry.backing("t").read_bytes() == b"0123\0\0\0\0"
    with c.open("t", "r+b") as f:
        f.truncate(2)
    assert ferry.backing("t").read_bytes() == b"01"
    assert c.stat("t").st_size == 2
    with pytest.raises(FileNotFoundError):
        c.truncate("missing", 0)


def test_utime_sets_mtime(ferry, clients):
    c = clients.sftp(ferry)
    put_bytes(c, "m", b"x")
    c.utime("m", (1_000_000_000, 1_234_567_890))
    assert c.stat("m").st_mtime == 1_234_567_890
    assert int(ferry.backing("m").stat().st_mtime) == 1_234_567_890
    # FSETSTAT during an upload survives the close (the temp-file rename).
    with c.open("up", "wb") as f:
        f.write(b"data")
        f.flush()
        f.utime((1_100_000_000, 1_111_111_111))
    assert int(ferry.backing("up").stat().st_mtime) == 1_111_111_111
    assert ferry.backing("up").read_bytes() == b"data"
    c.mkdir("dir")
    c.utime("dir", (1_000_000_000, 1_222_222_222))
    assert int(ferry.backing("dir").stat().st_mtime) == 1_222_222_222


def test_no_modtime_ignores_times(ferry_factory, clients):
    srv = ferry_factory("--no-modtime")
    srv.backing("m").write_bytes(b"x")
    before = srv.backing("m").stat().st_mtime
    c = clients.sftp(srv)
    c.utime("m", (1_000_000_000, 1_234_567_890))
    assert int(srv.backing("m").stat().st_mtime) != 1_234_567_890
    assert srv.backing("m").stat().st_mtime == before


def test_chmod(ferry, clients):
    c = clients.sftp(ferry)
    put_bytes(c, "p", b"x")
    c.chmod("p", 0o640)
    assert mode_of(ferry.backing("p")) == 0o640
    assert stat.S_IMODE(c.stat("p").st_mode) == 0o640
    assert stat.S_ISREG(c.stat("p").st_mode)
    c.mkdir("d")
    assert stat.S_ISDIR(c.stat("d").st_mode)


def test_attrs_carry_uid_gid(ferry, clients):
    ferry.backing("f").write_bytes(b"x")
    c = clients.sftp(ferry)
    st = c.stat("f")
    real = ferry.backing("f").stat()
    assert st.st_uid == real.st_uid and st.st_gid == real.st_gid
    for a in c.listdir_attr("/"):
        assert a.st_uid is not None and a.st_gid is not None
    s = clients.raw(ferry)
    a = s.stat("/f")
    assert a["flags"] & R.A_UIDGID and a["flags"] & R.A_SIZE
    assert a["flags"] & R.A_PERMISSIONS and a["flags"] & R.A_ACMODTIME


def test_uid_gid_and_perm_flags(ferry_factory, clients):
    srv = ferry_factory("--uid", "1234", "--gid", "4321", "--file-perms", "0640",
                        "--dir-perms", "0750", "--umask", "0")
    srv.backing("f").write_bytes(b"x")
    srv.backing("f").chmod(0o666)
    srv.backing("d").mkdir()
    c = clients.sftp(srv)
    st = c.stat("f")
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert stat.S_IMODE(c.stat("d").st_mode) == 0o750


def test_explicit_default_perms_count_as_given(ferry_factory, clients):
    """--dir-perms 0777 given on the command line is shown for every
    directory, as any other value would be (regression: it was taken for
    the default and the stored bits were shown)."""
    srv = ferry_factory("--dir-perms", "0777", "--umask", "0")
    srv.backing("d").mkdir()
    srv.backing("d").chmod(0o700)
    srv.backing("f").write_bytes(b"x")
    srv.backing("f").chmod(0o600)
    c = clients.sftp(srv)
    assert stat.S_IMODE(c.stat("d").st_mode) == 0o777
    assert stat.S_IMODE(c.stat("f").st_mode) == 0o666, "the file default applies too"
    plain = ferry_factory("--umask", "0")
    plain.backing("d").mkdir()
    plain.backing("d").chmod(0o700)
    assert stat.S_IMODE(clients.sftp(plain).stat("d").st_mode) == 0o700


def test_stat_missing_is_enoent(ferry, clients):
    c = clients.sftp(ferry)
    for fn in (c.stat, c.lstat, c.listdir):
        with pytest.raises(FileNotFoundError) as ei:
            fn("nope")
        assert ei.value.errno == errno.ENOENT
    s = clients.raw(ferry)
    assert status_of(s.stat, "/nope") == R.NO_SUCH_FILE
    assert status_of(s.lstat, "/nope") == R.NO_SUCH_FILE


# --------------------------------------------------------------------------
# listings and names
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_listing_5000_entries(ferry, clients):
    names = {f"file-{i:05d}.txt" for i in range(5000)}
    for n in names:
        ferry.backing(n).write_bytes(b"")
    c = clients.sftp(ferry)
    assert set(c.listdir("/")) == names
    s = clients.raw(ferry)
    entries, pages = s.listdir("/")
    got = [e[0] for e in entries if e[0] not in (b".", b"..")]
    assert len(got) == 5000 and set(got) == {n.encode() for n in names}
    assert pages > 1, "5,000 entries in one NAME packet: READDIR does not page"


def test_listing_attrs_and_longname(ferry, clients):
    ferry.backing("sized").write_bytes(b"x" * 1234)
    ferry.backing("dir").mkdir()
    c = clients.sftp(ferry)
    attrs_by_name = {a.filename: a for a in c.listdir_attr("/")}
    assert attrs_by_name["sized"].st_size == 1234
    assert stat.S_ISDIR(attrs_by_name["dir"].st_mode)
    s = clients.raw(ferry)
    entries, _ = s.listdir("/")
    longnames = {e[0]: e[1] for e in entries}
    assert longnames[b"sized"].endswith(b" sized") and b"1234" in longnames[b"sized"]
    assert longnames[b"dir"].startswith(b"d")


UNICODE_NAMES = [
    unicodedata.normalize("NFC", "café.txt"),
    unicodedata.normalize("NFD", "café.txt"),
    "🦀 crab 🚀.bin",
    "日本語のファイル",
    "Ωμέγα ≈ √",
    "שלום",
    "tab\tand newline\nin name",
]


def test_unicode_names(ferry, clients):
    assert UNICODE_NAMES[0] != UNICODE_NAMES[1]
    c = clients.sftp(ferry)
    for n in UNICODE_NAMES:
        put_bytes(c, n, n.encode())
    c.mkdir("目录")
    put_bytes(c, "目录/ü", b"nested")
    listed = c.listdir("/")
    for n in UNICODE_NAMES:
        assert n in listed, f"{n!r} not listed byte-exact"
        assert get_bytes(c, n) == n.encode()
    assert set(os.listdir(ferry.root)) == set(UNICODE_NAMES) | {"目录"}
    assert ferry.backing("目录", "ü").read_bytes() == b"nested"
    c.rename(UNICODE_NAMES[2], "renamed-🦀")
    assert ferry.backing("renamed-🦀").read_bytes() == UNICODE_NAMES[2].encode()


def test_non_utf8_names_from_backing_dir(ferry, clients):
    root = bytes(ferry.root)
    bad = b"bad-\xff\xfe.bin"
    baddir = b"dir-\xc3\x28"
    with open(os.path.join(root, bad), "wb") as f:
        f.write(b"latin-1 junk")
    os.mkdir(os.path.join(root, baddir))
    with open(os.path.join(root, baddir, b"in\xe9"), "wb") as f:
        f.write(b"inner")
    s = clients.raw(ferry)
    names = {e[0] for e in s.listdir(b"/")[0]}
    assert bad in names and baddir in names, names
    assert s.stat(b"/" + bad)["size"] == 12
    h = s.open_file(b"/" + bad, R.FXF_READ)
    assert s.read(h, 0, 100) == b"latin-1 junk"
    s.close_handle(h)
    inner = {e[0] for e in s.listdir(b"/" + baddir)[0]}
    assert b"in\xe9" in inner
    s.status_call(R.RENAME, string(b"/" + bad) + string(b"/renamed-\xfe"))
    assert os.path.exists(os.path.join(root, b"renamed-\xfe"))


def test_leftover_temp_names_are_listed(ferry, clients):
    """Only the temporary files of uploads in progress are hidden (see the
    next tests); one nobody writes (a crash's leftover) is listed, so that
    it can be removed (docs/design/atomic-uploads.md)."""
    ferry.backing(".leftover.bin.ferry-0123456789abcdef.partial").write_bytes(b"junk")
    ferry.backing("real.bin").write_bytes(b"real")
    c = clients.sftp(ferry)
    assert sorted(c.listdir("/")) == [".leftover.bin.ferry-0123456789abcdef.partial",
                                      "real.bin"]
    c.remove(".leftover.bin.ferry-0123456789abcdef.partial")
    assert c.listdir("/") == ["real.bin"]


# --------------------------------------------------------------------------
# atomic uploads
# --------------------------------------------------------------------------

@pytest.mark.parametrize("existing", [True, False], ids=["replace", "new"])
def test_upload_goes_through_hidden_temp_file(ferry, clients, existing):
    ferry.backing("sub").mkdir()
    target = ferry.backing("sub", "doc.txt")
    if existing:
        target.write_bytes(b"OLD")
    c = clients.sftp(ferry)
    other = clients.sftp(ferry)
    f = c.open("sub/doc.txt", "wb")
    f.write(b"NEW" * 10000)
    f.flush()
    temps = [n for n in os.listdir(ferry.backing("sub")) if n != "doc.txt"]
    assert len(temps) == 1, f"expected one temp file, found {temps}"
    m = TEMP_RE.match(temps[0])
    assert m and m.group("name") == "doc.txt", temps[0]
    if existing:
        assert target.read_bytes() == b"OLD", "the old file changed before CLOSE"
        assert get_bytes(other, "sub/doc.txt") == b"OLD"
    assert temps[0] not in other.listdir("sub")
    assert not any(is_temp_name(n) for n in other.listdir("sub"))
    f.close()
    assert target.read_bytes() == b"NEW" * 10000
    assert os.listdir(ferry.backing("sub")) == ["doc.txt"]


def test_created_file_exists_while_open(ferry, clients):
    """POSIX open(O_CREAT) semantics, which sshfs relies on: it pipelines
    OPEN(CREAT|TRUNC) with an LSTAT of the same path and fails the create
    with ENOENT if the LSTAT says NO_SUCH_FILE."""
    s = clients.raw(ferry)
    flags = R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC
    # Pipelined, as sshfs sends them: requests on one path keep their order.
    pairs = []
    for i in range(30):
        path = f"/piped-{i}.txt"
        pairs.append((s.send(R.OPEN, string(path) + u32(flags) + attrs()),
                      s.send(R.LSTAT, string(path))))
    replies = {}
    for _ in range(2 * len(pairs)):
        t, rid, r = s.recv_reply()
        replies[rid] = (t, r)
    handles, bad = [], []
    for i, (oid, sid) in enumerate(pairs):
        t, r = replies[oid]
        if t == R.STATUS:
            bad.append(f"OPEN /piped-{i}.txt: status {r.u32()} {r.string()!r}")
        else:
            handles.append(r.string())
        t, r = replies[sid]
        if t == R.STATUS:
            bad.append(f"LSTAT /piped-{i}.txt right after its OPEN: status {r.u32()}")
        elif r.attrs()["size"] != 0:
            bad.append(f"LSTAT /piped-{i}.txt: size not 0")
    for h in handles:
        s.close_handle(h)
    assert not bad, "\n".join(bad)
    # Sequential: the new file exists as soon as the OPEN is answered.
    h2 = s.open_file("/seq.txt", flags)
    assert s.stat("/seq.txt")["size"] == 0
    s.close_handle(h2)


def test_pipelined_write_close_stat(ferry, clients):
    """WRITE, CLOSE and STAT sent without waiting: the STAT sees the whole
    committed upload."""
    s = clients.raw(ferry)
    bad = []
    for i in range(10):
        path = f"/wcs-{i}.bin"
        data = os.urandom(100_000 + i)
        h = s.open_file(path, R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
        wid = s.send(R.WRITE, string(h) + u64(0) + string(data))
        cid = s.send(R.CLOSE, string(h))
        sid = s.send(R.STAT, string(path))
        replies = {}
        for _ in range(3):
            t, rid, r = s.recv_reply()
            replies[rid] = (t, r)
        for rid in (wid, cid):
            s.check_status(*replies[rid], rid)
        t, r = replies[sid]
        if t != R.ATTRS:
            bad.append(f"{path}: STAT after CLOSE got status {r.u32()}")
        else:
            size = r.attrs().get("size")
            if size != len(data):
                bad.append(f"{path}: STAT after CLOSE saw size {size}, not {len(data)}")
    assert not bad, "\n".join(bad)


def test_created_file_listed_while_open(ferry, clients):
    """A file being uploaded shows under its own name (as in POSIX) to the
    session writing it, never under its temporary name; other sessions see
    it only once it is committed."""
    s = clients.raw(ferry)
    h = s.open_file("/growing.bin", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    s.write(h, 0, b"x" * 1000)
    entries, _pages = s.listdir("/")
    assert [e[0] for e in entries] == [b"growing.bin"]
    assert s.stat("/growing.bin")["size"] == 1000
    other = clients.sftp(ferry)
    assert other.listdir("/") == []
    s.close_handle(h)
    assert other.listdir("/") == ["growing.bin"]


KILLED_CLIENT = textwrap.dedent("""
    import os, socket, sys, time, paramiko
    port, password, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    t = paramiko.Transport(sock)
    t.start_client(timeout=20)
    t.auth_password("bench", password)
    c = paramiko.SFTPClient.from_transport(t)
    f = c.open(name, "wb")
    chunk = os.urandom(32768)
    for _ in range(64):
        f.write(chunk)
    f.flush()
    c.stat("/")
    print("READY", flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("existing", [True, False], ids=["replace", "new"])
def test_client_killed_mid_upload(ferry, clients, tmp_path, existing):
    script = tmp_path / "killed_client.py"
    script.write_text(KILLED_CLIENT)
    target = ferry.backing("victim.bin")
    old = os.urandom(100_000)
    if existing:
        target.write_bytes(old)
    child = subprocess.Popen([sys.executable, str(script), str(ferry.port), PASSWORD,
                              "victim.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=clean_env())
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the uploading child did not get going within 60 s"
        line = child.stdout.readline()
        assert line.strip() == "READY", f"child failed: {line}{child.stderr.read()}"
        assert len(temp_files(ferry.root)) == 1, os.listdir(ferry.root)
        child.kill()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    left = wait_until(lambda: temp_files(ferry.root) == [], timeout=15)
    assert left, f"temp file left behind: {temp_files(ferry.root)}"
    if existing:
        assert target.read_bytes() == old, "a partial upload replaced the file"
    else:
        assert not target.exists(), "a partial upload was committed"
    assert_server_healthy(ferry, clients)


# --------------------------------------------------------------------------
# the root is a jail
# --------------------------------------------------------------------------

@pytest.fixture
def jailed(ferry_factory, tmp_path):
    """A server whose root is deep inside tmp_path, with secrets around it."""
    outside = tmp_path / "outside"
    (outside / "odir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"SECRET")
    (outside / "odir" / "secret2.txt").write_bytes(b"SECRET2")
    root = outside / "a" / "b" / "root"
    root.mkdir(parents=True)
    srv = ferry_factory(root=root)
    srv.outside = outside
    return srv


def outside_snapshot(outside, root):
    snap = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(outside):
        if os.path.commonpath([dirpath, root]) == root:
            continue
        for n in filenames + dirnames:
            p = os.path.join(dirpath, n)
            if p == root:
                continue
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            snap[p] = (st.st_mode, int(st.st_mtime), data)
    return snap


def test_traversal_never_leaves_root(jailed, clients):
    srv = jailed
    before = outside_snapshot(srv.outside, srv.root)
    c = clients.sftp(srv)
    for p in ["/..", "..", "/../..", "/./..", "../../../..", ".", "/", "//"]:
        assert c.normalize(p) == "/", p
    for p in ["/../secret.txt", "../../../secret.txt", "/a/../../secret.txt",
              str(srv.outside / "secret.txt"), "../../../odir/secret2.txt"]:
        with pytest.raises(FileNotFoundError):
            c.stat(p)
        with pytest.raises(FileNotFoundError):
            c.open(p, "rb")
    # Writes with `..` land inside the root, or fail.
    for p in ["../../../escaped.txt", "/../escaped2.txt"]:
        try:
            put_bytes(c, p, b"x")
        except OSError:
            pass
    try:
        c.mkdir("../../../escdir")
    except OSError:
        pass
    assert outside_snapshot(srv.outside, srv.root) == before
    assert set(os.listdir(srv.outside)) == {"odir", "secret.txt", "a"}
    s = clients.raw(srv)
    assert s.realpath(b"/..") == b"/"


def test_symlinks_on_backing_dir_cannot_escape(jailed, clients):
    srv = jailed
    root, outside = srv.root, srv.outside
    os.symlink(outside / "secret.txt", root / "abs_file")
    os.symlink("../../../secret.txt", root / "rel_file")
    os.symlink(outside / "odir", root / "abs_dir")
    os.symlink("../../../odir", root / "rel_dir")
    os.symlink("/nonexistent/nowhere", root / "dangling")
    (root / "inside.txt").write_bytes(b"inside")
    os.symlink("inside.txt", root / "inside_link")
    (root / "sub").mkdir()
    os.symlink("../inside.txt", root / "sub" / "up_link")
    before = outside_snapshot(outside, root)

    c = clients.sftp(srv)
    listed = set(c.listdir("/"))
    assert {"abs_file", "rel_file", "abs_dir", "rel_dir", "inside_link"} <= listed
    # Links inside the root work.
    assert get_bytes(c, "inside_link") == b"inside"
    assert get_bytes(c, "sub/up_link") == b"inside"
    assert stat.S_ISLNK(c.lstat("abs_file").st_mode)

    for p in ["abs_file", "rel_file", "abs_dir/secret2.txt", "rel_dir/secret2.txt"]:
        with pytest.raises(OSError):
            get_bytes(c, p)
        with pytest.raises(OSError):
            c.stat(p)
        with pytest.raises(OSError):
            c.open(p, "r+b")
        with pytest.raises(OSError):
            c.open(p, "ab")
    for d in ["abs_dir", "rel_dir"]:
        with pytest.raises(OSError):
            c.listdir(d)
        with pytest.raises(OSError):
            put_bytes(c, f"{d}/planted.txt", b"x")
        with pytest.raises(OSError):
            c.mkdir(f"{d}/planted_dir")
        with pytest.raises(OSError):
            c.rename(f"{d}/secret2.txt", "stolen.txt")
    with pytest.raises(OSError):
        get_bytes(c, "dangling")
    # Changing attributes through a link must not touch the target.
    for op in (lambda p: c.chmod(p, 0o600), lambda p: c.utime(p, (1, 1)),
               lambda p: c.truncate(p, 0)):
        for p in ["abs_file", "rel_file"]:
            try:
                op(p)
            except OSError:
                pass
    # Overwriting a link may replace the link itself, never the target.
    try:
        put_bytes(c, "rel_file", b"overwritten")
    except OSError:
        pass
    # Links made over SFTP cannot escape either.
    for target in ["../../../odir", str(outside / "odir"), "/../../../odir"]:
        try:
            c.remove("evil")
        except OSError:
            pass
        try:
            c.symlink(target, "evil")
        except OSError:
            continue
        with pytest.raises(OSError):
            get_bytes(c, "evil/secret2.txt")
    s = clients.raw(srv)
    try:
        s.extended_status("hardlink@openssh.com", string("/abs_file") + string("/hl"))
    except SftpStatusError:
        pass
    else:
        with pytest.raises(OSError):
            get_bytes(c, "hl")
    # Removing a link removes the link only.
    c.remove("abs_file")
    assert not os.path.lexists(root / "abs_file")
    assert outside_snapshot(outside, root) == before


def test_sftp_symlink_readlink(ferry, clients):
    ferry.backing("f").write_bytes(b"F")
    ferry.backing("d").mkdir()
    c = clients.sftp(ferry)
    c.symlink("/f", "/d/link")           # paramiko order: target, link
    assert c.readlink("/d/link") == "../f"
    assert os.readlink(ferry.backing("d", "link")) == "../f"
    assert get_bytes(c, "/d/link") == b"F"
    assert stat.S_ISLNK(c.lstat("/d/link").st_mode)
    assert stat.S_ISREG(c.stat("/d/link").st_mode)
    c.symlink("f", "/rel")
    assert c.readlink("/rel") == "f"
    c.symlink("/d", "/dlink")
    assert os.readlink(ferry.backing("dlink")) == "d"
    assert c.listdir("/dlink") == ["link"]
    with pytest.raises(OSError):
        c.readlink("/f")
    with pytest.raises(OSError):
        c.symlink("/f", "/d/link")
    with pytest.raises(FileNotFoundError):
        c.readlink("/missing")
    s = clients.raw(ferry)
    s.symlink(b"/d/link", b"/d/chain")
    assert s.readlink(b"/d/chain") == b"link"


# --------------------------------------------------------------------------
# extensions
# --------------------------------------------------------------------------

def test_hardlink(ferry, clients):
    ferry.backing("f").write_bytes(b"linked")
    s = clients.raw(ferry)
    s.extended_status("hardlink@openssh.com", string("/f") + string("/h"))
    assert ferry.backing("h").stat().st_ino == ferry.backing("f").stat().st_ino
    with pytest.raises(SftpStatusError):
        s.extended_status("hardlink@openssh.com", string("/f") + string("/h"))
    with pytest.raises(SftpStatusError) as ei:
        s.extended_status("hardlink@openssh.com", string("/missing") + string("/h2"))
    assert ei.value.code == R.NO_SUCH_FILE


def test_statvfs_and_fstatvfs(ferry, clients):
    ferry.backing("f").write_bytes(b"x")
    s = clients.raw(ferry)
    v = s.statvfs("/")
    assert v["bsize"] > 0 and v["frsize"] > 0 and v["blocks"] > 0
    assert v["bfree"] <= v["blocks"] and v["bavail"] <= v["blocks"]
    assert v["namemax"] >= 255
    real = os.statvfs(ferry.root)
    total, real_total = v["blocks"] * v["frsize"], real.f_blocks * real.f_frsize
    assert abs(total - real_total) <= real_total // 100, (total, real_total)
    h = s.open_file("/f", R.FXF_READ)
    fv = s.fstatvfs(h)
    assert fv["blocks"] * fv["frsize"] == total
    s.close_handle(h)


def test_fsync(ferry, clients):
    s = clients.raw(ferry)
    h = s.open_file("/synced", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    s.write(h, 0, b"durable")
    s.extended_status("fsync@openssh.com", string(h))
    s.close_handle(h)
    assert ferry.backing("synced").read_bytes() == b"durable"


def test_lsetstat_does_not_follow_links(ferry, clients):
    ferry.backing("f").write_bytes(b"x")
    os.symlink("f", ferry.backing("l"))
    f_mtime = int(ferry.backing("f").stat().st_mtime)
    s = clients.raw(ferry)
    s.extended_status("lsetstat@openssh.com", string("/f") + attrs(times=(1, 1_300_000_000)))
    assert int(ferry.backing("f").stat().st_mtime) == 1_300_000_000
    f_mtime = 1_300_000_000
    s.extended_status("lsetstat@openssh.com", string("/l") + attrs(times=(1, 1_400_000_000)))
    assert int(os.lstat(ferry.backing("l")).st_mtime) == 1_400_000_000
    assert int(ferry.backing("f").stat().st_mtime) == f_mtime


def test_expand_path_home_directory_realpath(ferry, clients):
    ferry.backing("a", "b").mkdir(parents=True)
    s = clients.raw(ferry)
    ep = lambda p: s.name_call(R.EXTENDED, string("expand-path@openssh.com") + string(p))[0][0]
    assert ep("~") == b"/"
    assert ep("~/a/b") == b"/a/b"
    assert ep(".") == b"/"
    assert ep("a/./b/..") == b"/a"
    home = s.name_call(R.EXTENDED, string("home-directory") + string(USER))[0][0]
    assert home == b"/"
    assert s.realpath(".") == b"/"
    assert s.realpath("a/b/../b") == b"/a/b"


def test_copy_data(ferry, clients):
    data = os.urandom((1 << 20) + 11)
    ferry.backing("src").write_bytes(data)
    ferry.backing("dst2").write_bytes(b"A" * 20000)
    s = clients.raw(ferry)
    hs = s.open_file("/src", R.FXF_READ)
    hd = s.open_file("/dst", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    s.extended_status("copy-data", string(hs) + u64(0) + u64(0) + string(hd) + u64(0))
    s.close_handle(hd)
    assert ferry.backing("dst").read_bytes() == data
    hd2 = s.open_file("/dst2", R.FXF_WRITE)
    s.extended_status("copy-data", string(hs) + u64(1000) + u64(5000) + string(hd2) + u64(10))
    s.close_handle(hd2)
    s.close_handle(hs)
    assert ferry.backing("dst2").read_bytes() == b"A" * 10 + data[1000:6000] + b"A" * 14990


def test_unknown_extension_is_unsupported(ferry, clients):
    s = clients.raw(ferry)
    t, r = s.extended("no-such-extension@example.com", b"whatever")
    with pytest.raises(SftpStatusError) as ei:
        s.check_status(t, r)
    assert ei.value.code == R.OP_UNSUPPORTED


# --------------------------------------------------------------------------
# read-only mode
# --------------------------------------------------------------------------

def test_read_only_denies_every_write(ferry_factory, clients, tmp_path):
    root = tmp_path / "ro-root"
    (root / "d").mkdir(parents=True)
    (root / "full").mkdir()
    (root / "full" / "inner").write_bytes(b"inner")
    (root / "f").write_bytes(b"content")
    snapshot = {str(p): (p.stat().st_mode, p.stat().st_mtime,
                         p.read_bytes() if p.is_file() else None)
                for p in root.rglob("*")}
    srv = ferry_factory("--read-only", root=root)
    c = clients.sftp(srv)
    denied = {
        "open new w": lambda: c.open("new", "wb"),
        "open existing w": lambda: c.open("f", "wb"),
        "open a": lambda: c.open("f", "ab"),
        "open r+": lambda: c.open("f", "r+b"),
        "open x": lambda: c.open("new2", "xb"),
        "mkdir": lambda: c.mkdir("nd"),
        "rmdir": lambda: c.rmdir("d"),
        "remove": lambda: c.remove("f"),
        "rename": lambda: c.rename("f", "g"),
        "posix_rename": lambda: c.posix_rename("f", "g"),
        "chmod": lambda: c.chmod("f", 0o600),
        "utime": lambda: c.utime("f", (1, 1)),
        "truncate": lambda: c.truncate("f", 0),
        "symlink": lambda: c.symlink("f", "l"),
    }
    wrong = {}
    for name, op in denied.items():
        try:
            op()
            wrong[name] = "succeeded"
        except PermissionError:
            pass
        except Exception as e:  # noqa: BLE001 - report all of them at once
            wrong[name] = repr(e)
    s = clients.raw(srv)
    raw_ops = {
        "hardlink": lambda: s.extended_status("hardlink@openssh.com",
                                              string("/f") + string("/h")),
        "lsetstat": lambda: s.extended_status("lsetstat@openssh.com",
                                              string("/f") + attrs(times=(1, 1))),
        "setstat size": lambda: s.setstat("/f", attrs(size=0)),
        "open TRUNC only": lambda: s.open_file("/f", R.FXF_WRITE | R.FXF_TRUNC),
    }
    for name, op in raw_ops.items():
        try:
            op()
            wrong[name] = "succeeded"
        except SftpStatusError as e:
            if e.code != R.PERMISSION_DENIED:
                wrong[name] = f"status {e.code}"
    assert not wrong, f"not PERMISSION_DENIED in --read-only: {wrong}"
    # Reads still work.
    assert get_bytes(c, "f") == b"content"
    assert sorted(c.listdir("/")) == ["d", "f", "full"]
    assert get_bytes(c, "full/inner") == b"inner"
    assert s.statvfs("/")["blocks"] > 0
    after = {str(p): (p.stat().st_mode, p.stat().st_mtime,
                      p.read_bytes() if p.is_file() else None)
             for p in root.rglob("*")}
    assert after == snapshot


# --------------------------------------------------------------------------
# many clients
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_twenty_concurrent_clients(ferry, clients):
    def one(i):
        c = clients.sftp(ferry)
        data = os.urandom((1 << 20) + i * 1000)
        name = f"client-{i:02d}.bin"
        put_bytes(c, name, data)
        back = get_bytes(c, name)
        assert back == data, f"client {i}: data differs"
        assert name in c.listdir("/")
        return hashlib.sha256(data).hexdigest()

    with ThreadPoolExecutor(20) as ex:
        digests = list(ex.map(one, range(20)))
    for i, d in enumerate(digests):
        got = hashlib.sha256(ferry.backing(f"client-{i:02d}.bin").read_bytes()).hexdigest()
        assert got == d
    assert temp_files(ferry.root) == []


def test_many_sessions_on_one_connection(ferry, clients):
    t = clients.transport(ferry)
    sessions = [R.RawSftp.open(t) for _ in range(8)]
    for i, s in enumerate(sessions):
        h = s.open_file(f"/s{i}", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
        s.write(h, 0, str(i).encode())
        s.close_handle(h)
    for s in sessions:
        s.close()
    for i in range(8):
        assert ferry.backing(f"s{i}").read_bytes() == str(i).encode()


# --------------------------------------------------------------------------
# abuse: nothing disturbs other sessions
# --------------------------------------------------------------------------

def test_unknown_packet_type_gets_op_unsupported(ferry, clients):
    s = clients.raw(ferry)
    s.send_packet(0x77, u32(42) + b"junk")
    t, rid, r = s.recv_reply()
    assert (t, rid) == (R.STATUS, 42)
    assert r.u32() == R.OP_UNSUPPORTED
    assert s.realpath(".") == b"/"      # the session goes on
    assert_server_healthy(ferry, clients)


def test_request_before_init_ends_session(ferry, clients):
    s = clients.raw(ferry, init=False)
    s.send_packet(R.STAT, u32(1) + string("/"))
    assert s.wait_closed(10), "session still open after a request before INIT"
    assert_server_healthy(ferry, clients)


def test_huge_length_prefix_ends_session(ferry, clients):
    s = clients.raw(ferry)
    s.send_raw(u32(0xFFFFFFF0) + bytes([R.WRITE]) + os.urandom(1000))
    assert s.wait_closed(10), "session still open after a 4 GiB length prefix"
    assert_server_healthy(ferry, clients)


def test_oversized_packet(ferry, clients):
    s = clients.raw(ferry)
    h = s.open_file("/o", R.FXF_WRITE | R.FXF_CREAT | R.FXF_TRUNC)
    payload = u32(99) + string(h) + u64(0) + string(os.urandom(2 << 20))
    try:
        s.send_packet(R.WRITE, payload)
        s.wait_closed(5)
    except (OSError, EOFError):
        pass
    assert_server_healthy(ferry, clients)


def test_truncated_packet_then_eof_ends_session(ferry, clients):
    s = clients.raw(ferry)
    s.send_raw(u32(100) + bytes([R.STAT]) + u32(5) + b"abc")
    s.chan.shutdown_write()
    assert s.wait_closed(10), "session still open after a truncated packet and EOF"
    assert_server_healthy(ferry, clients)


def test_zero_length_packet(ferry, clients):
    s = clients.raw(ferry)
    s.send_raw(u32(0))
    assert s.wait_closed(10), "session still open after a zero-length packet"
    assert_server_healthy(ferry, clients)


def test_malformed_body_of_known_request(ferry, clients):
    s = clients.raw(ferry)
    # OPEN whose path string claims 1000 bytes but the packet ends first.
    s.send_packet(R.OPEN, u32(7) + u32(1000) + b"abc")
    try:
        t, rid, r = s.recv_reply()
    except R.SessionClosed:
        pass
    else:
        assert (t, rid) == (R.STATUS, 7)
        assert r.u32() != R.OK
        assert s.realpath("/") == b"/"
    assert_server_healthy(ferry, clients)


def test_bad_handles_get_status(ferry, clients):
    s = clients.raw(ferry)
    for ptype, body in [(R.READ, string("nope") + u64(0) + u32(10)),
                        (R.WRITE, string("nope") + u64(0) + string("x")),
                        (R.FSTAT, string("nope")),
                        (R.READDIR, string("nope")),
                        (R.CLOSE, string("nope")),
                        (R.CLOSE, string(b"\xff" * 300))]:
        t, r = s.call(ptype, body)
        assert t == R.STATUS, f"packet {ptype} with a bad handle got packet type {t}"
        assert r.u32() not in (R.OK, R.EOF)
    # A closed handle is a bad handle too.
    ferry.backing("f").write_bytes(b"x")
    h = s.open_file("/f", R.FXF_READ)
    s.close_handle(h)
    with pytest.raises(SftpStatusError):
        s.read(h, 0, 1)
    assert_server_healthy(ferry, clients)


def test_second_init(ferry, clients):
    s = clients.raw(ferry)
    s.send_packet(R.INIT, u32(3))
    try:
        s.recv_packet()
    except (R.SessionClosed, TimeoutError):
        pass
    assert_server_healthy(ferry, clients)


def test_garbage_after_ssh_version_exchange(ferry, clients):
    with socket.create_connection((HOST, ferry.port), timeout=10) as sock:
        banner = sock.recv(256)
        assert banner.startswith(b"SSH-2.0-"), banner
        sock.settimeout(15)
        closed = False
        try:
            sock.sendall(b"SSH-2.0-Evil_1.0\r\n" + os.urandom(70000))
            while sock.recv(65536):
                pass
            closed = True
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        except socket.timeout:
            closed = False
    assert closed, "the server kept a connection that sent garbage"
    assert_server_healthy(ferry, clients)


def test_garbage_instead_of_version_and_idle_connections(ferry, clients):
    socks = []
    try:
        for _ in range(8):    # connect and say nothing
            socks.append(socket.create_connection((HOST, ferry.port), timeout=10))
        for _ in range(3):    # not SSH at all
            s = socket.create_connection((HOST, ferry.port), timeout=10)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(5000))
            socks.append(s)
        assert_server_healthy(ferry, clients)
    finally:
        for s in socks:
            s.close()
    assert_server_healthy(ferry, clients)


def test_unsupported_channels_and_subsystems(ferry, clients):
    t = clients.transport(ferry)
    with pytest.raises(paramiko.ChannelException):
        t.open_channel("direct-tcpip", (HOST, ferry.port), (HOST, 40000), timeout=10)
    chan = t.open_session(timeout=10)
    chan.settimeout(10)
    try:
        chan.invoke_subsystem("no-such-subsystem")
    except paramiko.SSHException:
        pass  # refused
    else:  # accepted: it must end at once, with a failure status
        assert chan.recv(100) == b""
        assert chan.recv_exit_status() != 0
    chan.close()
    assert_server_healthy(ferry, clients)
