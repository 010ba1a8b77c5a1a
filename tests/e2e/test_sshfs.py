"""sshfs (FUSE) mounted on Ferry: in-place edits through the kernel.

Skipped, with the reason, where FUSE mounts do not work (no /dev/fuse, no
sshfs, or a container without the right to mount). Whether FUSE works is
probed first against OpenSSH's own sftp-server, so a failure to mount Ferry
is a real failure, not a skip."""

import os
import shutil
import stat
import subprocess

import pytest

from conftest import (HOST, PASSWORD, USER, clean_env, make_random_file, sha256_file,
                      temp_files, wait_until)

SFTP_SERVER_CANDIDATES = ["/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                          "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server"]


def eventually_bytes(path, expected, timeout=15):
    """sshfs sends CLOSE when the kernel releases the file, a moment after
    the application's close() returns; Ferry commits an upload (renames it
    into place) on that CLOSE. So the backing file is checked until it
    settles; reads through the mount see the data at once."""
    def ok():
        try:
            return path.read_bytes() == expected
        except FileNotFoundError:
            return False
    assert wait_until(ok, timeout=timeout), f"{path} never held the expected bytes"


def unmount(mnt, proc):
    if os.path.ismount(mnt):
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30)
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, timeout=30)
    if proc is not None:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def fuse_works(tmp_path_factory):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse in this environment")
    for tool in ("sshfs", "fusermount3"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/install-test-deps.sh installs it)")
    server = next((p for p in SFTP_SERVER_CANDIDATES if os.access(p, os.X_OK)), None)
    if server is None:
        return  # cannot probe; a mount failure below will then be a failure
    d = tmp_path_factory.mktemp("fuseprobe")
    (d / "src").mkdir()
    (d / "mnt").mkdir()
    (d / "src" / "probe").write_bytes(b"ok")
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    srv = subprocess.Popen([server], stdin=r1, stdout=w2, stderr=subprocess.DEVNULL)
    fs = subprocess.Popen(["sshfs", "-f", "-o", "passive", f"{HOST}:{d / 'src'}", str(d / "mnt")],
                          stdin=r2, stdout=w1, stderr=subprocess.PIPE)
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    try:
        mounted = wait_until(lambda: os.path.ismount(d / "mnt") or fs.poll() is not None,
                             timeout=15)
        if not os.path.ismount(d / "mnt"):
            err = fs.stderr.read().decode(errors="replace") if fs.poll() is not None else ""
            pytest.skip(f"FUSE mounts do not work here: {err.strip() or mounted}")
        ok = (d / "mnt" / "probe").read_bytes() == b"ok"
    finally:
        unmount(d / "mnt", fs)
        srv.kill()
        srv.wait(10)
    if not ok:
        pytest.skip("FUSE probe mount did not read back its file")


class Mount:
    def __init__(self, server, mnt, proc):
        self.server, self.path, self.proc = server, mnt, proc

    def __truediv__(self, rel):
        return self.path / rel


def mount_sshfs(server, mnt, keys=None, password=None):
    mnt.mkdir(parents=True, exist_ok=True)
    opts = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null",
            "direct_io", "dir_cache=no", "ServerAliveInterval=5"]
    if password is not None:
        opts += ["password_stdin", "PubkeyAuthentication=no",
                 "PreferredAuthentications=password"]
    else:
        opts += [f"IdentityFile={keys.client}", "IdentitiesOnly=yes", "BatchMode=yes"]
    cmd = ["sshfs", "-f", "-F", "/dev/null", "-p", str(server.port), "-o", ",".join(opts),
           f"{USER}@{HOST}:/", str(mnt)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    if password is not None:
        proc.stdin.write((password + "\n").encode())
    proc.stdin.close()
    wait_until(lambda: os.path.ismount(mnt) or proc.poll() is not None, timeout=20)
    if not os.path.ismount(mnt):
        proc.kill()
        out = proc.communicate(timeout=10)[1].decode(errors="replace")
        pytest.fail(f"sshfs could not mount ferry: {out}")
    return Mount(server, mnt, proc)


@pytest.fixture
def mounted(fuse_works, ferry, keys, tmp_path):
    m = mount_sshfs(ferry, tmp_path / "mnt", keys=keys)
    yield m
    unmount(m.path, m.proc)


def test_write_read_append_truncate(mounted):
    srv = mounted.server
    data = os.urandom((1 << 20) + 3)
    (mounted / "new.bin").write_bytes(data)
    eventually_bytes(srv.backing("new.bin"), data)
    srv.backing("from-server.bin").write_bytes(b"server side" * 1000)
    assert (mounted / "from-server.bin").read_bytes() == b"server side" * 1000
    with open(mounted / "new.bin", "ab") as f:
        f.write(b"tail")
    eventually_bytes(srv.backing("new.bin"), data + b"tail")
    os.truncate(mounted / "new.bin", 10)
    eventually_bytes(srv.backing("new.bin"), data[:10])
    with open(mounted / "new.bin", "r+b") as f:
        f.truncate(4)
    eventually_bytes(srv.backing("new.bin"), data[:4])
    os.truncate(mounted / "new.bin", 8)
    eventually_bytes(srv.backing("new.bin"), data[:4] + b"\0" * 4)


def test_read_write_in_place(mounted):
    """rclone corrupted files opened O_RDWR (READ wrote zeros)."""
    srv = mounted.server
    srv.backing("edit.txt").write_bytes(b"hello world, hello sftp")
    with open(mounted / "edit.txt", "r+b") as f:
        assert f.read(5) == b"hello"
        f.seek(6)
        f.write(b"WORLD")
        f.flush()
        f.seek(0)
        assert f.read() == b"hello WORLD, hello sftp"
    eventually_bytes(srv.backing("edit.txt"), b"hello WORLD, hello sftp")
    fd = os.open(mounted / "edit.txt", os.O_RDWR)
    try:
        assert os.pread(fd, 5, 13) == b"hello"
        os.pwrite(fd, b"SFTP", 19)
        assert os.pread(fd, 100, 0) == b"hello WORLD, hello SFTP"
    finally:
        os.close(fd)
    eventually_bytes(srv.backing("edit.txt"), b"hello WORLD, hello SFTP")


def test_rename_mkdir_unlink_symlink_chmod_utime(mounted):
    srv = mounted.server
    (mounted / "a").write_bytes(b"A")
    (mounted / "b").write_bytes(b"B")
    os.rename(mounted / "a", mounted / "b")          # replaces (posix-rename)
    eventually_bytes(srv.backing("b"), b"A")
    assert not srv.backing("a").exists()
    os.mkdir(mounted / "d")
    os.rename(mounted / "b", mounted / "d" / "b")
    eventually_bytes(srv.backing("d", "b"), b"A")
    assert sorted(os.listdir(mounted.path)) == ["d"]
    os.symlink("d/b", mounted / "link")
    assert os.readlink(srv.backing("link")) == "d/b"
    assert (mounted / "link").read_bytes() == b"A"
    os.chmod(mounted / "d" / "b", 0o600)
    assert stat.S_IMODE(srv.backing("d", "b").stat().st_mode) == 0o600
    os.utime(mounted / "d" / "b", (1_500_000_000, 1_500_000_000))
    assert int(srv.backing("d", "b").stat().st_mtime) == 1_500_000_000
    with pytest.raises(OSError):
        os.rmdir(mounted / "d")
    os.unlink(mounted / "link")
    os.unlink(mounted / "d" / "b")
    os.rmdir(mounted / "d")
    assert os.listdir(srv.root) == []


def test_df(mounted):
    st = os.statvfs(mounted.path)
    real = os.statvfs(mounted.server.root)
    assert st.f_blocks > 0
    total, real_total = st.f_blocks * st.f_frsize, real.f_blocks * real.f_frsize
    assert abs(total - real_total) <= real_total // 100, (total, real_total)


@pytest.mark.slow
def test_big_copy_through_mount(mounted, tmp_path):
    src = make_random_file(tmp_path / "big.bin", 24 << 20)
    shutil.copyfile(src, mounted / "big.bin")
    eventually_bytes(mounted.server.backing("big.bin"), src.read_bytes(), timeout=30)
    shutil.copyfile(mounted / "big.bin", tmp_path / "back.bin")
    assert sha256_file(tmp_path / "back.bin") == sha256_file(src)
    assert temp_files(mounted.server.root) == []


def test_password_mount(fuse_works, ferry, tmp_path):
    m = mount_sshfs(ferry, tmp_path / "pmnt", password=PASSWORD)
    try:
        (m / "via-password.txt").write_bytes(b"pw")
        eventually_bytes(ferry.backing("via-password.txt"), b"pw")
    finally:
        unmount(m.path, m.proc)
