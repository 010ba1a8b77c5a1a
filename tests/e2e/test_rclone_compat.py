"""The rclone sftp client with everything it normally does switched on:
shell detection (`echo`), hash detection and checks over exec (md5sum,
sha1sum), `df` for about, uploads with out-of-order writes.

Unlike test_rclone_client.py, the remote has no shell_type=none and rclone
runs without --sftp-disable-hashcheck, so every upload is verified by an
md5sum exec on the server, with the path escaped the rclone way.

Two rclone (1.60) client quirks shape these tests:
- Its hash-command detection is not thread-safe: a file hashed while the
  probe runs (even with --checkers 1, listing and hashing overlap) gets
  "hash unsupported". rclone saves what it detected in its config file, so
  the first run of a real user pays this once; here most tests name the
  commands (md5sum_command/sha1sum_command) as that saved config does, and
  the detection is tested with a config file: probe once, then use it.
- Its local backend maps a newline in a name to U+240A and its sftp backend
  does not map it back, so an uploaded name with a newline is stored with
  U+240A in its place; names with a real newline reach md5sum only when the
  file was put on the server by other means (shutil.copytree here)."""

import json
import os
import shutil

import pytest

from conftest import (hash_file, make_random_file, rclone_hashed, rclone_help,
                      rclone_sftp_remote, sha256_file, temp_files, tree_listing)

NAMED_HASH_COMMANDS = "md5sum_command=md5sum,sha1sum_command=sha1sum"

TREE = {
    "top.txt": 1000,
    "empty.bin": 0,
    "one.bin": 1,
    "dir/a.txt": 32768,
    "dir/b with space.bin": 300_000,
    "dir/sub/deep/c.bin": (1 << 20) + 3,
    "ünïcødé/日本.txt": 4321,
    "ünïcødé/🚀.bin": 65537,
    "odd/it's \"quoted\".txt": 777,
    "odd/meta $HOME `id` ;&|*?[x] (y) #z \\w.bin": 999,
    "odd/new\nline.txt": 1234,
    "odd/-dash-first.txt": 55,
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    for i, (rel, size) in enumerate(TREE.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        make_random_file(p, size)
        os.utime(p, (1_600_000_000, 1_600_000_000 + 1000 * i + 17))
    return root


def remote(ferry, path="", *, detect=False, key_file=None):
    """The server as an rclone remote. detect=True leaves the hash commands
    to rclone's detection (see the module docstring)."""
    return rclone_sftp_remote(ferry, path, key_file=key_file,
                              extra="" if detect else NAMED_HASH_COMMANDS)


def uploaded(rel):
    """The name rclone 1.60 stores for a local name (newline -> U+240A)."""
    return rel.replace("\n", "\u240a")


def uploaded_listing(local_root):
    files, _ = tree_listing(local_root)
    return {uploaded(k): v for k, v in files.items()}


def assert_same_mtimes(a, b, *, upload=False):
    for rel in TREE:
        other = uploaded(rel) if upload else rel
        assert int((a / rel).stat().st_mtime) == int((b / other).stat().st_mtime), rel


def check_ok(src, dst, *extra):
    """`rclone check` passes and really compared hashes."""
    r = rclone_hashed("check", *extra, src, dst)
    assert "hashes could not be checked" not in r.stderr, r.stderr
    assert f"{len(TREE)} matching files" in r.stderr, r.stderr
    return r


# --------------------------------------------------------------------------

def test_detects_unix_shell_and_md5_sha1(ferry):
    r = rclone_hashed("-vv", "backend", "features", remote(ferry, detect=True))
    features = json.loads(r.stdout)
    assert {"md5", "sha1"} <= set(features["Hashes"]), features["Hashes"]
    assert 'Shell type "unix"' in r.stderr, r.stderr[-4000:]


@pytest.mark.parametrize("auth", ["password", "key"])
def test_copy_up_and_down_byte_exact(ferry, tree, tmp_path, keys, auth):
    rem = remote(ferry, "up", key_file=keys.client if auth == "key" else None)
    r = rclone_hashed("copy", "-v", tree, rem)
    assert "corrupted" not in r.stderr and "hash differ" not in r.stderr, r.stderr
    assert tree_listing(ferry.backing("up"))[0] == uploaded_listing(tree)
    assert_same_mtimes(tree, ferry.backing("up"), upload=True)
    down = tmp_path / "down"
    rclone_hashed("copy", rem, down)
    assert tree_listing(down)[0] == tree_listing(tree)[0]
    assert_same_mtimes(tree, down)
    assert temp_files(ferry.root) == []
    check_ok(tree, rem)


def test_check_catches_same_size_change(ferry, tree):
    rem = remote(ferry, "c")
    rclone_hashed("copy", tree, rem)
    check_ok(tree, rem)
    # One byte changed on the server, same size (the mtime moves on, as it
    # does with any real write): the hash comparison must catch it.
    for rel in ["dir/a.txt", "odd/it's \"quoted\".txt"]:
        p = ferry.backing("c", rel)
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    r = rclone_hashed("check", tree, rem, check=False)
    assert r.returncode != 0, r.stderr
    assert "2 differences found" in r.stderr, r.stderr[-4000:]
    r = rclone_hashed("check", "--one-way", rem, tree, check=False)
    assert r.returncode != 0, r.stderr


@pytest.mark.parametrize("kind", ["md5", "sha1"])
def test_md5sum_sha1sum_match(ferry, tree, kind):
    """Hash every file over exec, a real newline in a name included."""
    shutil.copytree(tree, ferry.backing("h"), copy_function=shutil.copy2)
    out = rclone_hashed(f"{kind}sum", remote(ferry, "h")).stdout
    for rel in TREE:
        line = f"{hash_file(kind, tree / rel)}  {rel}\n"
        assert line in out, f"{line!r} not in:\n{out}"


def config_file(ferry, tmp_path):
    """An rclone config file with the server as remote `ferry:`, for
    rclone to save its shell and hash-command detection in."""
    from conftest import HOST, PASSWORD, USER, rclone_obscure
    cfg = tmp_path / "rclone.conf"
    cfg.write_text(f"[ferry]\ntype = sftp\nhost = {HOST}\nport = {ferry.port}\n"
                   f"user = {USER}\npass = {rclone_obscure(PASSWORD)}\n")
    return cfg


def test_detection_saved_then_used(ferry, tree, tmp_path):
    cfg = config_file(ferry, tmp_path)
    features = json.loads(rclone_hashed("--config", cfg, "backend", "features",
                                        "ferry:").stdout)
    assert {"md5", "sha1"} <= set(features["Hashes"]), features["Hashes"]
    text = cfg.read_text()
    for line in ["shell_type = unix", "md5sum_command = md5sum",
                 "sha1sum_command = sha1sum"]:
        assert line in text, text
    shutil.copytree(tree, ferry.backing("h"), copy_function=shutil.copy2)
    for kind in ["md5", "sha1"]:
        out = rclone_hashed("--config", cfg, f"{kind}sum", "ferry:h").stdout
        for rel in TREE:
            line = f"{hash_file(kind, tree / rel)}  {rel}\n"
            assert line in out, f"{line!r} not in:\n{out}"


def test_sftp_hashes_option(ferry, tree, tmp_path):
    """--sftp-hashes (rclone >= 1.66) asks for more than md5/sha1."""
    rc, text = rclone_help("help", "flags")
    if "--sftp-hashes" not in text:
        pytest.skip("this rclone has no --sftp-hashes (added in v1.66)")
    cfg = config_file(ferry, tmp_path)
    with open(cfg, "a") as f:
        f.write("hashes = md5,sha1,sha256\n")
    features = json.loads(rclone_hashed("--config", cfg, "backend", "features",
                                        "ferry:").stdout)
    assert {"md5", "sha1", "sha256"} <= set(features["Hashes"]), features["Hashes"]
    shutil.copytree(tree, ferry.backing("h"), copy_function=shutil.copy2)
    for kind in ["md5", "sha1", "sha256"]:
        out = rclone_hashed("--config", cfg, "hashsum", kind, "ferry:h").stdout
        for rel in TREE:
            line = f"{hash_file(kind, tree / rel)}  {rel}\n"
            assert line in out, f"{kind}: {line!r} not in:\n{out}"


def test_lsjson_with_hashes(ferry, tree):
    shutil.copytree(tree, ferry.backing("t"), copy_function=shutil.copy2)
    items = json.loads(rclone_hashed("lsjson", "-R", "--hash", remote(ferry, "t")).stdout)
    files = {i["Path"]: i for i in items if not i["IsDir"]}
    assert {p: i["Size"] for p, i in files.items()} == TREE
    for rel, item in files.items():
        hashes = item.get("Hashes") or {}
        assert hashes.get("md5") == hash_file("md5", tree / rel), (rel, item)
        assert hashes.get("sha1") == hash_file("sha1", tree / rel), (rel, item)


def test_about(ferry):
    rem = remote(ferry)
    out = rclone_hashed("about", rem).stdout
    for word in ["Total:", "Used:", "Free:"]:
        assert word in out, out
    usage = json.loads(rclone_hashed("about", "--json", rem).stdout)
    st = os.statvfs(ferry.root)
    total = st.f_blocks * st.f_frsize
    assert usage["total"] == pytest.approx(total, abs=1024), (usage, st)
    tol = max(total / 100, 64 << 20)
    # free: bavail (df, rclone's local backend) or bfree (statvfs@openssh.com
    # as rclone's client reads it).
    assert min(abs(usage["free"] - st.f_bavail * st.f_frsize),
               abs(usage["free"] - st.f_bfree * st.f_frsize)) <= tol, (usage, st)
    assert 0 <= usage["used"] <= total


def test_sync_then_check(ferry, tree):
    rem = remote(ferry, "s")
    rclone_hashed("copy", tree, rem)
    (tree / "top.txt").unlink()
    shutil.rmtree(tree / "ünïcødé")
    make_random_file(tree / "dir" / "new.bin", 12345)
    make_random_file(tree / "dir" / "a.txt", 32768)     # same size, new content
    rclone_hashed("sync", tree, rem)
    assert tree_listing(ferry.backing("s"))[0] == uploaded_listing(tree)
    r = rclone_hashed("check", tree, rem)
    assert "hashes could not be checked" not in r.stderr, r.stderr


def test_moveto_and_purge(ferry, tree):
    rem = remote(ferry, "m")
    rclone_hashed("copy", tree, rem)
    digest = sha256_file(tree / "dir" / "a.txt")
    rclone_hashed("moveto", remote(ferry, "m/dir/a.txt"), remote(ferry, "m/moved/a2.txt"))
    assert not ferry.backing("m", "dir", "a.txt").exists()
    assert sha256_file(ferry.backing("m", "moved", "a2.txt")) == digest
    rclone_hashed("moveto", remote(ferry, "m/top.txt"), remote(ferry, "m/one.bin"))
    assert sha256_file(ferry.backing("m", "one.bin")) == sha256_file(tree / "top.txt")
    assert not ferry.backing("m", "top.txt").exists()
    rclone_hashed("moveto", remote(ferry, "m/odd"), remote(ferry, "m/odd renamed"))
    assert ferry.backing("m", "odd renamed", "it's \"quoted\".txt").stat().st_size == 777
    assert not ferry.backing("m", "odd").exists()
    rclone_hashed("purge", rem)
    assert not ferry.backing("m").exists()
    assert os.listdir(ferry.root) == []


def test_test_info(ferry, tmp_path):
    """`rclone test info`: every ASCII character but NUL and `/` works in a
    name (upload, hash check over exec with the rclone escaping, stat),
    names are stored as given (no unicode normalization), and the longest
    name is the file system's NAME_MAX."""
    rc, text = rclone_help("test", "info", "--help")
    if rc != 0 or "--check-control" not in text:
        pytest.skip("this rclone has no `rclone test info --check-control`")
    out_json = tmp_path / "info.json"
    r = rclone_hashed("test", "info", "--check-normalization", "--check-control",
                      "--check-length", "--write-json", out_json,
                      remote(ferry, "info"), timeout=1200)
    report = json.loads(out_json.read_text())
    assert report["MaxFileLength"] == os.pathconf(ferry.root, "PC_NAME_MAX"), r.stdout
    assert report["CanWriteUnnormalized"] is True
    assert report["CanReadUnnormalized"] is True
    assert report["CanReadRenormalized"] is False
    bad, checked = {}, 0
    for ch, res in report["ControlCharacters"].items():
        if len(ch) != 1 or ord(ch) >= 128 or ch in ("\x00", "/"):
            continue
        checked += 1
        if res.get("WriteError") or res.get("GetError"):
            bad[ch] = res
    assert checked == 126, sorted(report["ControlCharacters"])
    assert not bad, json.dumps(bad, indent=1)[:6000]
    assert temp_files(ferry.root) == []


@pytest.mark.slow
def test_big_chunks_64_in_flight_then_check(ferry, tmp_path):
    """Out-of-order 255 KiB writes, 64 outstanding, then a hash check."""
    src = tmp_path / "src"
    src.mkdir()
    make_random_file(src / "big.bin", 50 << 20)
    flags = ["--sftp-concurrency", "64", "--sftp-chunk-size", "255k"]
    rem = remote(ferry, "conc")
    rclone_hashed("copy", *flags, src, rem, timeout=900)
    assert sha256_file(ferry.backing("conc", "big.bin")) == sha256_file(src / "big.bin")
    r = rclone_hashed("check", src, rem)
    assert "hashes could not be checked" not in r.stderr and "1 matching files" in r.stderr, \
        r.stderr
    down = tmp_path / "down"
    rclone_hashed("copy", *flags, rem, down, timeout=900)
    assert sha256_file(down / "big.bin") == sha256_file(src / "big.bin")
