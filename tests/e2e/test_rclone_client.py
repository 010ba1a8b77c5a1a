"""The rclone sftp client (an on-the-fly `:sftp,...:` remote) against Ferry.
Hash checks come with the exec-commands issue, so `check` uses --download."""

import json
import os
import shutil

import pytest

from conftest import (make_random_file, rclone, rclone_remote, sha256_file, temp_files,
                      tree_listing)

TREE = {
    "top.txt": 1000,
    "empty.bin": 0,
    "one.bin": 1,
    "dir/a.txt": 32768,
    "dir/b with space.bin": 300_000,
    "dir/sub/deep/c.bin": (3 << 20) + 5,
    "ünïcødé/日本.txt": 4321,
    "ünïcødé/🚀.bin": 65537,
}


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    for rel, size in TREE.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        make_random_file(p, size)
        os.utime(p, (1_600_000_000, 1_600_000_000 + size % 100_000))
    return root


def parse_lsl(out):
    """{path: (size, 'YYYY-MM-DD HH:MM:SS')} from `rclone lsl`."""
    got = {}
    for ln in out.splitlines():
        size, date, time_, path = ln.strip().split(" ", 3)
        got[path] = (int(size), f"{date} {time_.split('.')[0]}")
    return got


def test_copy_up_and_down_byte_exact(ferry, tree, tmp_path):
    rclone("copy", tree, rclone_remote(ferry, "up"))
    want, _ = tree_listing(tree)
    got, _ = tree_listing(ferry.backing("up"))
    assert got == want
    for rel in TREE:   # modification times were set (1 s precision)
        assert int(ferry.backing("up", rel).stat().st_mtime) == \
            int((tree / rel).stat().st_mtime), rel
    down = tmp_path / "down"
    rclone("copy", rclone_remote(ferry, "up"), down)
    assert tree_listing(down)[0] == want
    assert temp_files(ferry.root) == []


def test_lsl_and_lsjson(ferry, tree):
    shutil.copytree(tree, ferry.backing("t"), copy_function=shutil.copy2)
    lsl = parse_lsl(rclone("lsl", rclone_remote(ferry, "t")).stdout)
    assert {p: s for p, (s, _) in lsl.items()} == TREE
    local = parse_lsl(rclone("lsl", tree).stdout)
    assert {p: t for p, (_, t) in lsl.items()} == {p: t for p, (_, t) in local.items()}

    items = json.loads(rclone("lsjson", "-R", rclone_remote(ferry, "t")).stdout)
    files = {i["Path"]: i["Size"] for i in items if not i["IsDir"]}
    dirs = {i["Path"] for i in items if i["IsDir"]}
    assert files == TREE
    assert dirs == {"dir", "dir/sub", "dir/sub/deep", "ünïcødé"}


def test_check_download(ferry, tree):
    remote = rclone_remote(ferry, "c")
    rclone("copy", tree, remote)
    rclone("check", "--download", tree, remote)
    # Same size, one byte changed on the server: check must notice.
    p = ferry.backing("c", "dir", "a.txt")
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF
    p.write_bytes(bytes(data))
    r = rclone("check", "--download", tree, remote, check=False)
    assert r.returncode != 0, r.stderr


def test_sync(ferry, tree, tmp_path):
    remote = rclone_remote(ferry, "s")
    rclone("copy", tree, remote)
    (tree / "top.txt").unlink()
    shutil.rmtree(tree / "ünïcødé")
    make_random_file(tree / "dir" / "new.bin", 12345)
    make_random_file(tree / "dir" / "a.txt", 40000)   # changed size
    rclone("sync", tree, remote)
    assert tree_listing(ferry.backing("s"))[0] == tree_listing(tree)[0]


def test_moveto_and_purge(ferry, tree):
    remote = rclone_remote(ferry, "m")
    rclone("copy", tree, remote)
    digest = sha256_file(tree / "dir" / "a.txt")
    rclone("moveto", rclone_remote(ferry, "m/dir/a.txt"), rclone_remote(ferry, "m/moved/a2.txt"))
    assert not ferry.backing("m", "dir", "a.txt").exists()
    assert sha256_file(ferry.backing("m", "moved", "a2.txt")) == digest
    # moveto onto an existing file replaces it.
    rclone("moveto", rclone_remote(ferry, "m/top.txt"), rclone_remote(ferry, "m/one.bin"))
    assert sha256_file(ferry.backing("m", "one.bin")) == sha256_file(tree / "top.txt")
    assert not ferry.backing("m", "top.txt").exists()
    # A directory move.
    rclone("moveto", rclone_remote(ferry, "m/ünïcødé"), rclone_remote(ferry, "m/renamed-dir"))
    assert ferry.backing("m", "renamed-dir", "🚀.bin").stat().st_size == 65537
    rclone("purge", remote)
    assert not ferry.backing("m").exists()
    assert os.listdir(ferry.root) == []


@pytest.mark.slow
def test_big_chunks_and_high_concurrency(ferry, tmp_path):
    """rclone #6404: corruption with chunks over 32 KiB."""
    src = tmp_path / "src"
    src.mkdir()
    make_random_file(src / "big.bin", (40 << 20) + 3)
    make_random_file(src / "mid.bin", (1 << 20) + 1)
    flags = ["--sftp-concurrency", "64", "--sftp-chunk-size", "255k", "--transfers", "2"]
    rclone("copy", *flags, src, rclone_remote(ferry, "conc"))
    assert tree_listing(ferry.backing("conc"))[0] == tree_listing(src)[0]
    down = tmp_path / "down"
    rclone("copy", *flags, rclone_remote(ferry, "conc"), down)
    assert tree_listing(down)[0] == tree_listing(src)[0]
