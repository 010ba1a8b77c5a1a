"""Filters (docs/filters.md): rclone's filter flags decide what is served.

The oracle: for one tree of a few hundred names (nested, unicode, dotfiles,
sizes and ages spread out) and a table of filter sets, what Ferry serves
(walked over SFTP with paramiko) is exactly what real `rclone lsf -R` lists
with the same flags on the same directory. Then what the listing does not
show: an excluded name cannot be stat'ed, opened, renamed, linked, hashed
over exec or created, through OpenSSH sftp, paramiko and rclone's client.
"""

import os
import stat
import time
from pathlib import Path

import paramiko
import pytest

from conftest import (exec_on, ok, openssh_sftp, rclone, rclone_remote, rclone_sftp_remote,
                      rclone_hashed, usage_error)

DAY = 86400

DIRS = [
    "docs", "docs/sub", "docs/sub/deeper", "src", "src/lib", "src/cache",
    "a", "a/b", "a/b/c", "a/x", "a/x/c", "cache", "x", "x/cache", "x/cache/y",
    ".hidden", ".hidden/inner", "ünïcode", "日本語", "a b", "deep", "deep/deeper",
    "deep/deeper/deep", "secret", "secret/inner", "keep", "keep/.nobackup-dir",
    "marked", "marked/sub", "empty", "Mixed", "Mixed/CASE",
]
NAMES = [
    "README.md", "readme.txt", "file.txt", "f1le.c", "x.h", "img.JPG", "img.jpg",
    "pic.png", "data1.log", "data.lck", ".dotfile", "a b.txt", "ünï.txt", "日本.txt",
    "notes.MD", "z9.log",
]
SIZES = [0, 1, 100, 1023, 1024, 1025, 5000, 20000, 150000]
AGES = [3600, 2 * DAY, 5 * DAY, 10 * DAY, 40 * DAY, 200 * DAY, 500 * DAY]


def make_tree(root):
    """The tree, and what it holds: {path: size}."""
    root = Path(root)
    now = time.time()
    made = {}
    n = 0
    for d in [""] + DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
        if d == "empty":
            continue
        for name in NAMES:
            p = root / d / name
            size = SIZES[n % len(SIZES)]
            p.write_bytes(os.urandom(size))
            t = now - AGES[(n * 3) % len(AGES)]
            os.utime(p, (t, t))
            made[str(Path(d) / name)] = size
            n += 1
    for marker in ["marked/.nobackup", "keep/.nobackup-dir/.nobackup"]:
        (root / marker).write_bytes(b"")
    (root / "top.txt").write_bytes(b"top")
    return made


def rule_files(tmp):
    tmp = Path(tmp)
    files = {
        "filter-rules": "# comment\n; another\n\n+ /docs/**\n- *.log\n!\n+ *.md\n- /a/**\n",
        "include-list": "*.txt\n/src/**\n",
        "exclude-list": "*.jpg\n  cache/  \n",
        "files-list": "# a comment\n/docs/README.md\n a/b/c/file.txt \nnot/there.txt\nünïcode/ünï.txt\n",
        "files-raw": "docs/sub/x.h\ntop.txt\n",
    }
    for name, body in files.items():
        (tmp / name).write_text(body)
    return {name: str(tmp / name) for name in files}


def filter_sets(f):
    """At least 40 sets, each a list of flags."""
    return [
        [],
        ["--exclude", "*.txt"],
        ["--include", "*.txt"],
        ["--exclude", "/top.txt"],
        ["--include", "/docs/**"],
        ["--exclude", "docs/"],
        ["--exclude", "/docs/"],
        ["--exclude", "**/cache/**"],
        ["--include", "*.{jpg,png}"],
        ["--exclude", "*.[ch]"],
        ["--include", "f?le.*"],
        ["--exclude", ".*"],
        ["--exclude", ".*/"],
        ["--filter", "+ *.md", "--filter", "- *"],
        ["--filter", "- secret/**", "--filter", "+ **"],
        ["--filter-from", f["filter-rules"]],
        ["--include-from", f["include-list"]],
        ["--exclude-from", f["exclude-list"]],
        ["--min-size", "1k"],
        ["--max-size", "1k"],
        ["--min-size", "1k", "--max-size", "10k"],
        ["--max-age", "7d"],
        ["--min-age", "30d"],
        ["--max-age", "1y", "--min-age", "1d"],
        ["--ignore-case", "--include", "*.JPG"],
        ["--ignore-case", "--exclude", "README*"],
        ["--exclude-if-present", ".nobackup"],
        ["--files-from", f["files-list"]],
        ["--files-from-raw", f["files-raw"]],
        ["--include", "{{.*\\.l(og|ck)}}"],
        ["--include", "/a/b/**"],
        ["--exclude", "/a/*/c/**"],
        ["--include", "**/b/*.txt"],
        ["--exclude", "ünï*"],
        ["--include", "*日本*"],
        ["--filter", "+ /docs/", "--filter", "- *"],
        ["--include", "/docs/*.md", "--include", "/src/**"],
        ["--exclude", "*"],
        ["--include", "*"],
        ["--exclude", "a b*"],
        ["--exclude", "*[0-9].log"],
        ["--include", "/*"],
        ["--exclude-if-present", ".nobackup", "--exclude", "*.txt"],
        ["--filter", "- /docs/**", "--filter", "+ **"],
        ["--max-size", "0"],
        ["--include", "**.txt"],
        ["--exclude", "/**/deeper/**"],
        ["--exclude", "Mixed/"],
        ["--ignore-case", "--exclude", "mixed/case/"],
        ["--filter", "- *.md", "--filter", "+ /docs/**", "--filter", "- *"],
    ]


def served_paths(sftp):
    """Every path a client walking the server sees: files as `p`, directories
    as `p/`, as `rclone lsf -R` prints them."""
    out = set()
    todo = [""]
    while todo:
        d = todo.pop()
        for a in sftp.listdir_attr("/" + d if d else "/"):
            p = f"{d}/{a.filename}" if d else a.filename
            if stat.S_ISDIR(a.st_mode):
                out.add(p + "/")
                todo.append(p)
            else:
                out.add(p)
    return out


def rclone_lists(root, flags):
    p = rclone("lsf", "-R", *flags, str(root))
    return set(line for line in p.stdout.split("\n") if line)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("filter-oracle")
    root = base / "tree"
    made = make_tree(root)
    return root, made, rule_files(base)


def test_tree_is_big_enough(tree):
    root, made, _ = tree
    assert len(made) >= 300
    assert len(filter_sets(tree[2])) >= 40


def test_served_paths_equal_rclone_lsf(tree, ferry_factory, clients):
    """The oracle: each filter set, served by Ferry and walked over SFTP,
    against rclone lsf -R with the same flags."""
    root, _, files = tree
    mismatches = []
    distinct = set()
    for flags in filter_sets(files):
        want = rclone_lists(root, flags)
        distinct.add(frozenset(want))
        srv = ferry_factory(*flags, root=root, verbosity="")
        c = clients.sftp(srv)
        got = served_paths(c)
        c.close()
        srv.stop()
        if got != want:
            mismatches.append(
                f"{flags}:\n  only Ferry: {sorted(got - want)[:20]}\n"
                f"  only rclone: {sorted(want - got)[:20]}")
    assert not mismatches, "\n".join(mismatches)
    # The sets select differently: the oracle is not comparing one listing.
    assert len(distinct) >= 40, len(distinct)


def test_unfiltered_serves_everything(tree, ferry_factory, clients):
    root, made, _ = tree
    srv = ferry_factory(root=root)
    got = served_paths(clients.sftp(srv))
    assert {p for p in got if not p.endswith("/")} >= set(made)


@pytest.fixture
def filtered(ferry_factory, tmp_path):
    """A server hiding *.bak, /secret/ and directories marked .nobackup."""
    root = tmp_path / "served"
    (root / "secret").mkdir(parents=True)
    (root / "pub").mkdir()
    (root / "marked").mkdir()
    (root / "pub" / "ok.txt").write_bytes(b"visible")
    (root / "pub" / "hidden.bak").write_bytes(b"hidden bytes")
    (root / "secret" / "s.txt").write_bytes(b"secret bytes")
    (root / "marked" / ".nobackup").write_bytes(b"")
    (root / "marked" / "m.txt").write_bytes(b"marked bytes")
    (root / "hidden.bak").write_bytes(b"top hidden")
    srv = ferry_factory("--filter", "- *.bak", "--filter", "- /secret/",
                        "--exclude-if-present", ".nobackup", root=root)
    return srv


HIDDEN = ["hidden.bak", "pub/hidden.bak", "secret", "secret/s.txt", "marked", "marked/m.txt"]


def test_paramiko_sees_nothing_excluded(filtered, clients):
    c = clients.sftp(filtered)
    assert sorted(c.listdir("/")) == ["pub"]
    assert c.listdir("/pub") == ["ok.txt"]
    for p in HIDDEN:
        for call in (c.stat, c.lstat, lambda p: c.open(p, "rb"), c.remove,
                     lambda p: c.rename(p, "/moved"), c.listdir, lambda p: c.chmod(p, 0o600),
                     lambda p: c.posix_rename(p, "/moved")):
            with pytest.raises(FileNotFoundError):
                call("/" + p)
    # Creating an excluded name: permission denied, nothing on disk.
    for p in ["new.bak", "pub/new.bak", "hidden.bak"]:
        with pytest.raises(PermissionError):
            c.open("/" + p, "wb").write(b"x")
    with pytest.raises(PermissionError):
        c.rename("/pub/ok.txt", "/pub/ok.bak")
    with pytest.raises(PermissionError):
        c.mkdir("/secret")
    with pytest.raises(PermissionError):
        c.symlink("/hidden.bak", "/pub/link")
    with pytest.raises(FileNotFoundError):
        c.open("/secret/new.txt", "wb")
    root = filtered.root
    assert (root / "hidden.bak").read_bytes() == b"top hidden"
    assert not (root / "new.bak").exists() and not (root / "pub" / "ok.bak").exists()
    assert not (root / "pub" / "link").exists()
    # What is served works in full.
    with c.open("/pub/new.txt", "wb") as f:
        f.write(b"new")
    c.rename("/pub/new.txt", "/pub/renamed.txt")
    assert c.open("/pub/renamed.txt").read() == b"new"


def test_openssh_sftp_and_its_errors(filtered, tmp_path):
    local = tmp_path / "up.bak"
    local.write_bytes(b"upload")
    rc, out, err = openssh_sftp(filtered, f"ls -1a /\nls -1 /pub\n")
    assert rc == 0, err
    assert "hidden.bak" not in out and "secret" not in out and "marked" not in out
    assert "ok.txt" in out
    for batch, says in [
        ("get /pub/hidden.bak", 'File "/pub/hidden.bak" not found'),
        ("get /secret/s.txt", 'File "/secret/s.txt" not found'),
        ("ls /secret", '"/secret" not found'),
        (f"put {local} /pub/up.bak", "Permission denied"),
        ("rename /pub/ok.txt /pub/ok.bak", "Permission denied"),
        ("ln -s /pub/ok.txt /pub/l.bak", "Permission denied"),
    ]:
        rc, out, err = openssh_sftp(filtered, batch + "\n", cwd=tmp_path)
        assert rc != 0, batch
        assert says in err, (batch, err)
    assert not (filtered.root / "pub" / "up.bak").exists()


def test_exec_hashes_of_excluded_names_fail(filtered, clients):
    t = clients.transport(filtered)
    for p in ["pub/hidden.bak", "secret/s.txt", "marked/m.txt"]:
        for cmd in ["md5sum", "sha1sum"]:
            r = exec_on(t, f"{cmd} {p}")
            assert r.rc != 0, r
            assert b"bytes" not in r.out
    r = exec_on(t, "md5sum pub/ok.txt")
    assert r.rc == 0 and r.out.endswith(b"  pub/ok.txt\n"), r


def test_rclone_client_sees_and_copies_only_what_is_served(filtered, tmp_path):
    p = rclone("lsf", "-R", rclone_remote(filtered))
    assert set(p.stdout.split()) == {"pub/", "pub/ok.txt"}
    dest = tmp_path / "copy"
    rclone("copy", rclone_remote(filtered), str(dest))
    assert sorted(str(x.relative_to(dest)) for x in dest.rglob("*")) == ["pub", "pub/ok.txt"]
    # rclone's hash over exec: the served file hashes, an excluded one is
    # not there.
    p = rclone_hashed("md5sum", rclone_sftp_remote(filtered, "pub"))
    assert p.stdout.strip().endswith("  ok.txt"), p.stdout
    p = rclone_hashed("md5sum", rclone_sftp_remote(filtered, "secret"), check=False)
    assert "s.txt" not in p.stdout
    # An upload of an excluded name fails and leaves nothing.
    src = tmp_path / "src"
    src.mkdir()
    (src / "u.bak").write_bytes(b"u")
    p = rclone("copy", str(src), rclone_remote(filtered, "pub"), check=False)
    assert p.returncode != 0
    assert not (filtered.root / "pub" / "u.bak").exists()


@pytest.mark.parametrize("args, says", [
    (["--exclude", "a***"], "too many stars"),
    (["--include", "{a"], "mismatched '{' and '}'"),
    (["--filter", "x"], "malformed rule \"x\""),
    (["--filter", "+x"], "malformed rule"),
    (["--filter-from", "/no/such/file"], "/no/such/file"),
    (["--exclude-from", "/no/such/file"], "/no/such/file"),
    (["--files-from", "/no/such/file"], "/no/such/file"),
    (["--min-size", "12q"], "--min-size"),
    (["--max-age", "yesterday"], "--max-age"),
    (["--min-age", "7d", "--max-age", "1d"], "--min-age can't be larger than --max-age"),
    (["--files-from", "/dev/null", "--exclude", "x"], "overrides all other filters"),
])
def test_bad_filter_flags_are_one_line_usage_errors(tmp_path, args, says):
    err = usage_error(tmp_path, args)
    assert says in err, err


def test_malformed_rule_file_names_file_and_line(tmp_path):
    rules = tmp_path / "rules"
    rules.write_text("+ *.ok\n# fine\nbogus line\n")
    err = usage_error(tmp_path, ["--filter-from", str(rules)])
    assert f"{rules}:3: malformed rule \"bogus line\"" in err, err
