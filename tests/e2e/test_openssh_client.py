"""The OpenSSH `sftp` client (batch mode) and `ssh` against Ferry."""

import os
import stat

import pytest

from conftest import make_random_file, ok, openssh_sftp, openssh_ssh, sha256_file, temp_files

SIZES = [0, 1, 32767, 32768, (1 << 20) + 7]


def transfer_roundtrip(ferry, tmp_path, src, digest, extra=(), timeout=300):
    name = os.path.basename(src)
    back = tmp_path / f"back-{name}"
    ok(openssh_sftp(ferry, f"put {src} /{name}\nget /{name} {back}\n",
                    extra=extra, timeout=timeout))
    assert sha256_file(ferry.backing(name)) == digest, "uploaded file differs"
    assert sha256_file(back) == digest, "downloaded file differs"
    assert temp_files(ferry.root) == []


@pytest.mark.parametrize("size", SIZES)
def test_put_get_byte_exact(ferry, tmp_path, size):
    src = make_random_file(tmp_path / f"f{size}.bin", size)
    transfer_roundtrip(ferry, tmp_path, src, sha256_file(src))
    assert ferry.backing(src.name).stat().st_size == size


@pytest.mark.slow
def test_put_get_100mib(ferry, tmp_path, random_file):
    src, digest = random_file(100 << 20)
    transfer_roundtrip(ferry, tmp_path, src, digest)


@pytest.mark.slow
def test_big_requests_no_window_deadlock_256mib(ferry, tmp_path, random_file):
    """255 KiB requests, 64 in flight, both ways: a server that lets the SSH
    window or its channel buffer fill up hangs here."""
    src, digest = random_file(256 << 20)
    transfer_roundtrip(ferry, tmp_path, src, digest, extra=["-B", "261120", "-R", "64"])


@pytest.mark.slow
@pytest.mark.large
def test_big_requests_no_window_deadlock_1gib(ferry, tmp_path, random_file):
    src, digest = random_file(1 << 30)
    transfer_roundtrip(ferry, tmp_path, src, digest, extra=["-B", "261120", "-R", "64"],
                       timeout=1200)


def test_put_fsync(ferry, tmp_path):
    """`put -f` sends fsync@openssh.com after the data."""
    src = make_random_file(tmp_path / "synced.bin", 100_000)
    ok(openssh_sftp(ferry, f"put -f {src} /synced.bin\n"))
    assert sha256_file(ferry.backing("synced.bin")) == sha256_file(src)


def test_recursive_put_get(ferry, tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "empty").mkdir()
    files = {"top.txt": 10, "a/one.bin": 70_000, "a/b/two.bin": 3, "a/b/zero": 0}
    for rel, size in files.items():
        make_random_file(tree / rel, size)
    out = tmp_path / "out"
    out.mkdir()
    ok(openssh_sftp(ferry, f"put -r {tree} /up\nget -r /up {out}/down\n"))
    for rel in files:
        assert sha256_file(ferry.backing("up", rel)) == sha256_file(tree / rel), rel
        assert sha256_file(out / "down" / rel) == sha256_file(tree / rel), rel
    assert ferry.backing("up", "empty").is_dir()


def test_mkdir_rmdir_rm_rename(ferry, tmp_path):
    src = make_random_file(tmp_path / "f.bin", 5000)
    other = make_random_file(tmp_path / "g.bin", 777)
    ok(openssh_sftp(ferry, "\n".join([
        "mkdir /d",
        "mkdir /d/sub",
        f"put {src} /d/f.bin",
        f"put {other} /d/g.bin",
        "rename /d/f.bin /d/renamed.bin",
        "rmdir /d/sub",
        "mkdir /gone",
        "rename /gone /kept",
        "ls -1 /d",
        "",
    ])))
    d = ferry.backing("d")
    assert sorted(os.listdir(d)) == ["g.bin", "renamed.bin"]
    assert sha256_file(d / "renamed.bin") == sha256_file(src)
    assert ferry.backing("kept").is_dir() and not ferry.backing("gone").exists()

    # OpenSSH's rename uses posix-rename@openssh.com, which replaces.
    ok(openssh_sftp(ferry, "rename /d/renamed.bin /d/g.bin\n"))
    assert sorted(os.listdir(d)) == ["g.bin"]
    assert sha256_file(d / "g.bin") == sha256_file(src)

    ok(openssh_sftp(ferry, "rm /d/g.bin\nrmdir /d\n"))
    assert not d.exists()


def test_failing_commands_fail(ferry, tmp_path):
    ferry.backing("dir").mkdir()
    ferry.backing("file").write_bytes(b"x")
    for cmd in ["mkdir /dir", "rmdir /file", "rm /dir", "rm /missing",
                "rmdir /missing", f"get /missing {tmp_path}/m", "rename /missing /x",
                "mkdir /missing/sub", "cd /file"]:
        rc, out, err = openssh_sftp(ferry, cmd + "\n")
        assert rc != 0, f"`{cmd}` succeeded:\n{out}\n{err}"
    assert ferry.backing("dir").is_dir()
    assert ferry.backing("file").read_bytes() == b"x"


def test_ln_symlink_and_hardlink(ferry, tmp_path):
    ferry.backing("target.txt").write_bytes(b"target data\n")
    ferry.backing("d").mkdir()
    out = tmp_path / "via-link"
    ok(openssh_sftp(ferry, "\n".join([
        "ln -s target.txt /sym.txt",
        "ln -s /target.txt /d/abs.txt",
        "ln /target.txt /hard.txt",
        f"get /sym.txt {out}",
        "ls -l /",
        "",
    ])))
    assert os.readlink(ferry.backing("sym.txt")) == "target.txt"
    # An absolute target is stored relative to the link's directory.
    assert os.readlink(ferry.backing("d", "abs.txt")) == "../target.txt"
    assert out.read_bytes() == b"target data\n"
    hard = ferry.backing("hard.txt")
    assert not hard.is_symlink()
    assert hard.stat().st_ino == ferry.backing("target.txt").stat().st_ino


def test_chmod_and_ls_l(ferry, tmp_path):
    src = make_random_file(tmp_path / "m.bin", 1234)
    out = ok(openssh_sftp(ferry, f"put {src} /m.bin\nmkdir /dd\nchmod 600 /m.bin\n"
                                 "ls -l /\n"))
    assert stat.S_IMODE(ferry.backing("m.bin").stat().st_mode) == 0o600
    lines = {ln.split()[-1]: ln for ln in out.splitlines()
             if ln and not ln.startswith("sftp>")}
    assert "m.bin" in lines and "dd" in lines, out
    assert lines["m.bin"].startswith("-rw-------"), lines["m.bin"]
    assert " 1234 " in lines["m.bin"], lines["m.bin"]
    assert lines["dd"].startswith("d"), lines["dd"]


def test_df(ferry):
    out = ok(openssh_sftp(ferry, "df\ndf -i\n"))
    rows = [ln.split() for ln in out.splitlines() if not ln.startswith("sftp>")]
    numeric = [r for r in rows if len(r) >= 4 and all(x.rstrip("%").isdigit() for x in r)]
    assert len(numeric) == 2, out
    size, used, avail = (int(x) for x in numeric[0][:3])
    assert size > 0 and used <= size and avail <= size, numeric[0]


def test_reput_and_reget_resume(ferry, tmp_path):
    src = make_random_file(tmp_path / "resume.bin", (3 << 20) + 123)
    data = src.read_bytes()
    ferry.backing("resume.bin").write_bytes(data[:(1 << 20) + 5])
    ok(openssh_sftp(ferry, f"reput {src} /resume.bin\n"))
    assert sha256_file(ferry.backing("resume.bin")) == sha256_file(src)

    local = tmp_path / "partial.bin"
    local.write_bytes(data[:777_777])
    ok(openssh_sftp(ferry, f"reget /resume.bin {local}\n"))
    assert sha256_file(local) == sha256_file(src)


def test_ls_unicode_names(ferry):
    names = ["plain.txt", "with space.txt", "ünïcödé.txt", "日本語", "🚀.bin"]
    for n in names:
        ferry.backing(n).write_bytes(n.encode())
    out = ok(openssh_sftp(ferry, "ls -1a /\n"))
    listed = {ln.strip() for ln in out.splitlines() if not ln.startswith("sftp>")}
    for n in names:
        assert f"/{n}" in listed or n in listed, (n, out)


def test_unknown_exec_is_refused_and_runs_nothing(ferry, tmp_path):
    # Known commands are answered in process (test_exec.py); others refused.
    rc, out, err = openssh_ssh(ferry, "md5sum")
    assert rc == 0 and out == "d41d8cd98f00b204e9800998ecf8427e  -\n", (rc, out, err)
    rc, out, err = openssh_ssh(ferry, "id")
    assert rc != 0, (rc, out, err)
    assert "not implemented" in err, "no message on stderr for a refused exec"
    marker = tmp_path / "pwned"
    rc, out, err = openssh_ssh(ferry, f"touch {marker}")
    assert rc != 0
    rc, out, err = openssh_ssh(ferry, f"sh -c 'touch {marker}'")
    assert rc != 0
    assert not marker.exists(), "an exec request ran a command"
    # A shell request (no command) is refused as well.
    rc, out, err = openssh_ssh(ferry)
    assert rc != 0
    assert not marker.exists()
    # ...and the server still serves SFTP.
    ok(openssh_sftp(ferry, "ls /\n"))

