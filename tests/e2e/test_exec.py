"""Exec requests answered in-process (spec §4): the hash commands, df,
echo, and the refusal of everything else (no shell, no pty, nothing run).

Driven with paramiko's exec_command (the command line goes on the wire
exactly as written) and, where it matters, with OpenSSH's `ssh`."""

import os
import re
import subprocess
import threading

import paramiko
import pytest

from conftest import (HOST, PASSWORD, SSH_OPTS, USER, assert_server_healthy, clean_env,
                      connect_transport, default_client_key, exec_on, hash_bytes, hash_file,
                      make_random_file, openssh_sftp, openssh_ssh, rclone_shell_escape,
                      ssh_exec, wait_until)

# (command as sent, rclone's name for the hash it prints)
HASH_COMMANDS = [
    ("md5sum", "md5"),
    ("sha1sum", "sha1"),
    ("sha256sum", "sha256"),
    ("crc32", "crc32"),
    ("b3sum", "blake3"),
    ("xxh128sum", "xxh128"),
    ("xxhsum -H2", "xxh128"),
    ("rclone md5sum", "md5"),
    ("rclone sha1sum", "sha1"),
] + [(f"rclone hashsum {t}", t) for t in
     ["md5", "sha1", "crc32", "sha256", "sha512", "blake3", "xxh3", "xxh128"]]

CMD_IDS = [c.replace(" ", "_") for c, _ in HASH_COMMANDS]

# Served-root name -> size. Names cover every escaping rule of rclone's
# client: spaces, quotes, shell metacharacters, a backslash, unicode and a
# newline (sent as quote, newline, quote).
FILES = {
    "big.bin": (1 << 20) + 3,
    "empty": 0,
    "one": 1,
    "with space.txt": 1000,
    "it's \"quoted\".txt": 777,
    "ünïcødé 日本 🚀.bin": 4321,
    "new\nline.txt": 100,
    "meta $HOME `id` ;&|*?[a]{b} (c) <d> #e ~f !g \\h.txt": 50,
    "dir/sub file.bin": 65537,
}


def make_files(root):
    for rel, size in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        make_random_file(p, size)


def empty_line(kind):
    return f"{hash_bytes(kind, b'')}  -\n".encode()


def ok(r):
    assert r.rc == 0, r
    assert r.err == b"", r
    return r.out


def failed(r):
    """An error: exit status 1, a message on stderr, nothing on stdout."""
    assert r.rc == 1, r
    assert r.err.strip(), f"no message on stderr: {r}"
    assert r.out == b"", r
    return r.stderr


@pytest.fixture
def transport(ferry):
    t = connect_transport(ferry.port, password=PASSWORD)
    yield t
    t.close()


# --------------------------------------------------------------------------
# hash commands
# --------------------------------------------------------------------------

def test_empty_input_constants():
    """The python reference hashes are the ones rclone hard-codes."""
    assert hash_bytes("md5", b"") == "d41d8cd98f00b204e9800998ecf8427e"
    assert hash_bytes("crc32", b"") == "00000000"
    assert hash_bytes("blake3", b"") == \
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert hash_bytes("xxh3", b"") == "2d06800538d394c2"
    assert hash_bytes("xxh128", b"") == "99aa06d3014798d86001c324468d497f"
    assert hash_bytes("crc32", b"abc\n") == "4788814e"


@pytest.mark.parametrize("cmd,kind", HASH_COMMANDS, ids=CMD_IDS)
def test_hash_of_empty_input(ferry, transport, cmd, kind):
    """No path: the digest of empty input, two spaces, `-` (rclone's
    hash-command detection)."""
    assert ok(exec_on(transport, cmd)) == empty_line(kind)


@pytest.mark.parametrize("cmd,kind", HASH_COMMANDS, ids=CMD_IDS)
def test_hash_of_files(ferry, cmd, kind):
    make_files(ferry.root)
    problems = []
    for rel in FILES:
        want = hash_file(kind, ferry.backing(rel))
        t = connect_transport(ferry.port, password=PASSWORD)   # (see test_many_execs_...)
        for name in (rel, "/" + rel):
            arg = rclone_shell_escape(name)
            r = exec_on(t, f"{cmd} {arg}")
            # The second field is the path unescaped, as rclone prints it.
            expected = f"{want}  {name}\n".encode()
            if r.rc != 0 or r.out != expected or r.err:
                problems.append(f"{cmd} {arg!r}: want {expected!r}, got {r}")
        t.close()
    assert not problems, "\n".join(problems)


def test_hash_of_a_name_that_is_not_utf8(ferry, transport):
    """The path argument is bytes: a name that is not UTF-8 is found and
    printed back byte for byte."""
    name = b"caf\xe9 \xff.bin"
    data = os.urandom(3000)
    with open(os.path.join(os.fsencode(ferry.root), name), "wb") as f:
        f.write(data)
    escaped = name.replace(b" ", b"\\ ")
    r = exec_on(transport, b"md5sum " + escaped)
    assert r.rc == 0, r
    assert r.out == hash_bytes("md5", data).encode() + b"  " + name + b"\n", r


def test_hash_output_via_openssh_ssh(ferry, keys):
    """OpenSSH's ssh (key auth) joins its arguments with spaces: the same
    line format comes back."""
    make_files(ferry.root)
    want = hash_file("md5", ferry.backing("with space.txt"))
    rc, out, err = openssh_ssh(ferry, "md5sum", "with\\ space.txt")
    assert (rc, out) == (0, f"{want}  with space.txt\n"), (rc, out, err)
    rc, out, err = openssh_ssh(ferry, "sha1sum /dir/sub\\ file.bin")
    assert (rc, out) == \
        (0, f"{hash_file('sha1', ferry.backing('dir/sub file.bin'))}  /dir/sub file.bin\n"), \
        (rc, out, err)


def test_leading_spaces_before_the_path_are_trimmed(ferry, transport):
    make_files(ferry.root)
    want = hash_file("md5", ferry.backing("big.bin"))
    assert ok(exec_on(transport, "md5sum    big.bin")) == f"{want}  big.bin\n".encode()
    # Only spaces after the command: no path, so the empty-input digest.
    assert ok(exec_on(transport, "md5sum   ")) == empty_line("md5")


@pytest.mark.parametrize("cmd", ["md5sum", "sha1sum", "sha256sum", "crc32", "b3sum",
                                 "xxh128sum", "xxhsum -H2", "rclone hashsum sha512"])
def test_hash_missing_file_or_directory_fails(ferry, transport, cmd):
    make_files(ferry.root)
    for arg in ["no-such-file", "/no/such/dir/file", "dir", "/dir", "/"]:
        failed(exec_on(transport, f"{cmd} {arg}"))


def test_unknown_and_unavailable_hash_types(ferry, transport):
    make_files(ferry.root)
    failed(exec_on(transport, "rclone hashsum no-such-hash one"))
    r = exec_on(transport, "rclone hashsum whirlpool one")
    if r.rc == 0:
        digest, _, name = r.stdout.rstrip("\n").partition("  ")
        assert name == "one" and re.fullmatch(r"[0-9a-f]{128}", digest), r
        try:
            assert digest == hash_file("whirlpool", ferry.backing("one"))
        except ValueError:
            pass   # this python's OpenSSL has no whirlpool
    else:
        assert "not supported" in failed(r), r


def test_no_checksum_disables_server_side_hashes(ferry_factory):
    srv = ferry_factory("--no-checksum")
    make_random_file(srv.backing("f.bin"), 1000)
    for cmd in ["md5sum f.bin", "sha1sum f.bin"]:
        r = ssh_exec(srv, cmd)
        assert r.rc == 1, r


def test_read_only_still_hashes(ferry_factory):
    srv = ferry_factory("--read-only")
    p = make_random_file(srv.backing("ro.bin"), 300_000)
    t = connect_transport(srv.port, password=PASSWORD)
    try:
        for cmd, kind in [("md5sum", "md5"), ("sha1sum", "sha1"), ("b3sum", "blake3")]:
            assert ok(exec_on(t, f"{cmd} ro.bin")) == \
                f"{hash_file(kind, p)}  ro.bin\n".encode()
    finally:
        t.close()


def cache_hits(srv, name):
    """How often -vv logged a hash of `name` answered from the cache, and
    computed by reading."""
    log = srv.log()
    return (log.count(f"{name}: md5 hash from the hash cache"),
            log.count(f"{name}: computing the md5 hash by reading"))


def test_hash_cache_follows_file_changes(ferry_factory):
    """Hashes are cached per file fingerprint (size, mtime, change marker):
    the second ask is answered from the cache (the log says so), and new
    content with a new mtime (same size) is hashed afresh."""
    ferry = ferry_factory(verbosity="-vv")
    p = make_random_file(ferry.backing("changing.bin"), (4 << 20) + 1)
    first = {k: hash_file(k, p) for k in ("md5", "sha1")}
    for _ in range(2):
        assert ok(ssh_exec(ferry, "md5sum changing.bin")) == \
            f"{first['md5']}  changing.bin\n".encode()
    assert wait_until(lambda: cache_hits(ferry, "changing.bin") == (1, 1)), \
        cache_hits(ferry, "changing.bin")
    assert ok(ssh_exec(ferry, "sha1sum /changing.bin")) == \
        f"{first['sha1']}  /changing.bin\n".encode()
    old_mtime = p.stat().st_mtime
    make_random_file(p, (4 << 20) + 1)
    os.utime(p, (old_mtime + 10, old_mtime + 10))
    second = {k: hash_file(k, p) for k in ("md5", "sha1")}
    assert second != first
    assert ok(ssh_exec(ferry, "md5sum changing.bin")) == \
        f"{second['md5']}  changing.bin\n".encode()
    assert wait_until(lambda: cache_hits(ferry, "changing.bin") == (1, 2)), \
        "changed content must be hashed again"
    assert ok(ssh_exec(ferry, "sha1sum /changing.bin")) == \
        f"{second['sha1']}  /changing.bin\n".encode()
    # A different size is a different file too.
    make_random_file(p, 1234)
    assert ok(ssh_exec(ferry, "md5sum changing.bin")) == \
        f"{hash_file('md5', p)}  changing.bin\n".encode()


def test_parallel_exec_channels_on_one_connection(ferry, transport):
    """rclone runs its checkers' md5sum calls in parallel on one connection."""
    p = make_random_file(ferry.backing("par.bin"), 3 << 20)
    want = f"{hash_file('md5', p)}  par.bin\n".encode()
    results = [None] * 8

    def worker(i):
        try:
            results[i] = exec_on(transport, "md5sum par.bin")
        except Exception as e:   # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    for r in results:
        assert not isinstance(r, Exception), r
        assert r is not None and r.rc == 0 and r.out == want, r


@pytest.mark.slow
def test_hashing_a_big_file_streams(ferry, transport):
    """Hashing does not buffer the file: the server's peak RSS stays far
    below the file size (a sparse 512 MiB file, so this costs no disk)."""
    p = ferry.backing("sparse.bin")
    with open(p, "wb") as f:
        f.truncate(512 << 20)
    r = exec_on(transport, "md5sum sparse.bin", timeout=600)
    assert ok(r) == f"{hash_file('md5', p)}  sparse.bin\n".encode()
    status = open(f"/proc/{ferry.proc.pid}/status").read()
    hwm_kib = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    assert hwm_kib < 256 * 1024, f"ferry peak RSS {hwm_kib} KiB hashing a 512 MiB file"


# --------------------------------------------------------------------------
# df
# --------------------------------------------------------------------------

def check_df(root, text):
    assert text.endswith("\n"), repr(text)
    lines = text.splitlines()
    assert len(lines) == 2, repr(text)
    assert lines[0].lstrip().startswith("Filesystem") and "1K-blocks" in lines[0], lines[0]
    f = lines[1].split()
    # rclone's client (parseUsage) needs >= 6 fields and reads fields 2-4.
    assert len(f) == 6 and f[0] == "/dev/root" and f[5] == "/", lines[1]
    assert re.fullmatch(r"\d+%", f[4]), lines[1]
    total, used, free = (int(x) for x in f[1:4])
    pct = int(f[4][:-1])

    st = os.statvfs(root)
    kib = st.f_frsize / 1024
    want_total = st.f_blocks * kib
    want_free = st.f_bavail * kib
    tol = max(want_total / 100, 64 * 1024)   # other writers change used/free
    assert abs(total - want_total) <= 1, (total, want_total)
    assert total * 1024 == pytest.approx(st.f_blocks * st.f_frsize, abs=1024)
    assert min(abs(free - want_free), abs(free - st.f_bfree * kib)) <= tol, (free, st)
    # Used is blocks-bfree (like rclone's local backend) or total-free.
    assert min(abs(used - (st.f_blocks - st.f_bfree) * kib),
               abs(used - (st.f_blocks - st.f_bavail) * kib)) <= tol, (used, st)
    assert 0 <= pct <= 100 and abs(pct - 100 * used / max(total, 1)) <= 2, (pct, used, total)


def test_df(ferry, transport):
    (ferry.root / "sub dir").mkdir()
    for cmd in ["df", "df -k", "df -k /", "df -k /sub\\ dir", "df -k sub\\ dir"]:
        check_df(ferry.root, ok(exec_on(transport, cmd)).decode())


def test_df_via_openssh_ssh(ferry):
    rc, out, err = openssh_ssh(ferry, "df -k /")
    assert rc == 0, err
    check_df(ferry.root, out)


# --------------------------------------------------------------------------
# echo
# --------------------------------------------------------------------------

def test_echo_legacy_probes(ferry, transport):
    assert ok(exec_on(transport, "echo 'abc' | md5sum")) == \
        b"0bee89b07a248e27c83fc3d5951213c1  -\n"
    assert ok(exec_on(transport, "echo 'abc' | sha1sum")) == \
        b"03cfd743661f07975fa2f1220c5194cbaff48451  -\n"
    assert hash_bytes("md5", b"abc\n") == "0bee89b07a248e27c83fc3d5951213c1"


def test_echo_shell_detection_is_literal(ferry, transport):
    """rclone's shell detection: a unix shell would print `%ComSpec%`;
    Ferry echoes the text back unexpanded, which rclone also reads as unix."""
    assert ok(exec_on(transport, "echo ${ShellId}%ComSpec%")) == b"${ShellId}%ComSpec%\n"
    rc, out, err = openssh_ssh(ferry, "echo ${ShellId}%ComSpec%")
    assert (rc, out) == (0, "${ShellId}%ComSpec%\n"), err


def test_echo_expands_nothing(ferry, transport, tmp_path):
    marker = tmp_path / "echo-pwned"
    r = exec_on(transport, f"echo $(touch {marker}) $HOME")
    assert r.rc == 0, r
    assert b"$HOME" in r.out and b"$(touch" in r.out, r
    assert not marker.exists()


# --------------------------------------------------------------------------
# everything else is refused, and nothing runs
# --------------------------------------------------------------------------

UNKNOWN = ["ls", "ls -la /", "cat /etc/passwd", "sh -c id", "bash", "id", "true",
           "scp -t /", "rsync --server .", "git-upload-pack /", "rclone ls /",
           "/bin/sh -c id", "MD5SUM x"]


@pytest.mark.parametrize("cmd", UNKNOWN)
def test_unknown_command_not_implemented(ferry, transport, cmd):
    err = failed(exec_on(transport, cmd))
    assert "not implemented" in err, err
    assert cmd.split(" ")[0] in err, err


def test_nothing_is_executed(ferry, tmp_path):
    marker = tmp_path / f"pwned-{os.urandom(4).hex()}"
    make_files(ferry.root)
    attempts = [
        f"touch {marker}",
        f"/usr/bin/touch {marker}",
        f"sh -c 'touch {marker}'",
        f"md5sum x; touch {marker}",
        f"md5sum x && touch {marker}",
        f"md5sum x | touch {marker}",
        f"md5sum $(touch {marker})",
        f"md5sum `touch {marker}`",
        f"md5sum one\ntouch {marker}",
        f"sha1sum one; touch {marker}",
        f"df; touch {marker}",
        f"df -k /; touch {marker}",
        f"rclone hashsum md5 $(touch {marker})",
    ]
    for cmd in attempts:
        r = ssh_exec(ferry, cmd)
        if cmd.startswith("df "):
            assert r.rc == 0, r          # df ignores its arguments
        else:
            assert r.rc == 1, (cmd, r)
        assert not marker.exists(), f"{cmd!r} ran something"
    assert not marker.exists()


def assert_shell_refused(transport):
    """A shell request either fails outright (as rclone's server answers it)
    or is answered by an immediate error exit with a message: no shell
    either way."""
    ch = transport.open_session(timeout=20)
    ch.settimeout(30)
    try:
        ch.invoke_shell()
    except paramiko.SSHException:
        return
    try:
        ch.shutdown_write()
        out = ch.makefile("rb").read()
        err = ch.makefile_stderr("rb").read()
        rc = ch.recv_exit_status()
    finally:
        ch.close()
    assert rc not in (0, -1) and err.strip() and out == b"", (rc, out, err)


def test_shell_and_pty_requests_refused(ferry, transport, clients):
    assert_shell_refused(transport)
    ch = transport.open_session(timeout=20)
    with pytest.raises(paramiko.SSHException):
        ch.get_pty()
    ch.close()
    # The connection survives: exec and sftp still work on it.
    assert ok(exec_on(transport, "md5sum")) == empty_line("md5")
    c = paramiko.SFTPClient.from_transport(transport)
    c.get_channel().settimeout(30)
    c.listdir("/")
    c.close()
    assert_server_healthy(ferry, clients)


def test_openssh_shell_and_pty_refused(ferry, clients):
    """`ssh host` with no command asks for a shell: refused, no hang. With
    -tt, OpenSSH itself gives up when the pty is refused."""
    p = subprocess.run(
        ["ssh", *SSH_OPTS, "-T", "-p", str(ferry.port), "-i", str(default_client_key()),
         f"{USER}@{HOST}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env=clean_env())
    assert p.returncode != 0, (p.stdout, p.stderr)
    rc, out, err = openssh_ssh(ferry, "md5sum", extra=["-tt"])
    assert rc != 0 and "PTY allocation request failed" in err, (rc, out, err)
    assert_server_healthy(ferry, clients)


def test_many_execs_on_one_connection(ferry, transport):
    """rclone keeps SSH connections in a pool and runs one exec channel per
    md5sum on them, one after another: closed channels must not count
    against any per-connection channel limit."""
    for i in range(40):
        assert ok(exec_on(transport, "md5sum")) == empty_line("md5"), i
    c = paramiko.SFTPClient.from_transport(transport)
    c.get_channel().settimeout(30)
    c.listdir("/")
    c.close()


def test_session_survives_everything(ferry, transport, clients):
    make_files(ferry.root)
    for cmd in UNKNOWN + ["md5sum no-such", "md5sum dir", "rclone hashsum nope x",
                          "", " ", "\x00\x01\x02", "md5sum \\", "md5sum '", "xxhsum",
                          "df -h", "echo", "rclone", "rclone hashsum"]:
        r = exec_on(transport, cmd)
        assert r.rc in (0, 1), (cmd, r)
    # Many exec channels on one connection, then sftp on the same one.
    for _ in range(50):
        assert ok(exec_on(transport, "sha1sum")) == empty_line("sha1")
    c = paramiko.SFTPClient.from_transport(transport)
    c.get_channel().settimeout(30)
    assert "big.bin" in c.listdir("/")
    c.close()
    assert_server_healthy(ferry, clients)
    rc, out, err = openssh_sftp(ferry, "ls /\n")
    assert rc == 0 and "big.bin" in out, err
