"""The log (docs/logging.md): rclone's levels, the access log at -v
(logins, logouts, transfers, changes), JSON lines, failed logins at NOTICE
read by a real fail2ban, and no way for a client to forge a line or to get
a secret written.
"""

import json
import re
import subprocess

import paramiko
import pytest

from conftest import (PASSWORD, USER, clean_env, connect_transport, make_random_file, ok,
                      openssh_sftp, run, usage_error)

FILTER = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "fail2ban" / "ferry.conf"

LINE = re.compile(r"^(\S+) (ERROR|NOTICE|INFO|DEBUG|TRACE) +(.*)$")
FIELD = re.compile(r' ([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_text(line):
    """(level, message, {field: value}) of one text line."""
    m = LINE.match(line)
    assert m, repr(line)
    level, rest = m.group(2), m.group(3)
    first = FIELD.search(" " + rest)
    msg = rest if first is None else rest[:first.start()].rstrip()
    fields = {}
    for k, v in FIELD.findall(" " + rest[len(msg):]):
        if v.startswith('"'):
            v = re.sub(r'\\(["\\])', r"\1", v[1:-1])
        fields[k] = v
    return level, msg, fields


def log_lines(srv):
    """The log's lines, less the one line a server not logging at INFO
    prints when it is ready (`ferry: serving ...`)."""
    return [line for line in srv.log().splitlines() if not line.startswith("ferry: serving ")]


def events(srv, msg=None):
    out = []
    for line in log_lines(srv):
        level, m, f = parse_text(line)
        if msg is None or m == msg:
            out.append((level, m, f))
    return out


def test_access_log_of_an_openssh_session(ferry_factory, tmp_path):
    srv = ferry_factory("-v")
    src = tmp_path / "up.bin"
    make_random_file(src, 3 << 20)
    batch = (f"mkdir d\nput {src} d/f\nget d/f {tmp_path / 'down.bin'}\nchmod 600 d/f\n"
             f"rename d/f d/g\nln -s d/g l\nrm l\nrm d/g\nrmdir d\n")
    ok(openssh_sftp(srv, batch))
    assert srv.stop() is not None
    logins = events(srv, "SSH login")
    assert len(logins) == 1
    level, _, f = logins[0]
    assert level == "INFO" and f["user"] == USER and f["ip"] == "127.0.0.1"
    assert f["method"] == "publickey" and f["client"].startswith("SSH-2.0-OpenSSH")
    transfers = [f for _, _, f in events(srv, "transfer")]
    assert [t["path"] for t in transfers] == ["/d/f", "/d/f"], transfers
    up, down = transfers
    assert up["flags"] == "WRITE,CREATE,TRUNCATE" and up["bytes_written"] == str(3 << 20)
    assert up["bytes_read"] == "0" and up["status"] == "ok" and up["user"] == USER
    assert down["flags"] == "READ" and down["bytes_read"] == str(3 << 20)
    float(up["seconds"])
    changes = [(m, f.get("path"), f.get("to"), f.get("change"), f["status"])
               for _, m, f in events(srv)
               if m in ("mkdir", "rmdir", "remove", "rename", "posix-rename", "setstat",
                        "symlink")]
    assert changes == [
        ("mkdir", "/d", None, None, "ok"),
        ("setstat", "/d/f", None, "mode=0600", "ok"),
        ("posix-rename", "/d/f", "/d/g", None, "ok"),
        ("symlink", "/l", "d/g", None, "ok"),
        ("remove", "/l", None, None, "ok"),
        ("remove", "/d/g", None, None, "ok"),
        ("rmdir", "/d", None, None, "ok"),
    ], changes
    (_, _, out), = events(srv, "SSH logout")
    assert out["user"] == USER and out["ip"] == "127.0.0.1"
    assert out["bytes_written"] == str(3 << 20) and out["bytes_read"] == str(3 << 20)
    assert float(out["seconds"]) >= 0


def test_failed_changes_carry_their_status(ferry_factory, clients):
    srv = ferry_factory("-v")
    c = clients.sftp(srv)
    with pytest.raises(IOError):
        c.rmdir("/no-such-dir")
    with pytest.raises(IOError):
        c.rename("/missing", "/x")
    c.close()
    changes = [(m, f["status"]) for _, m, f in events(srv) if m in ("rmdir", "rename")]
    assert changes and all(s != "ok" for _, s in changes), changes


def test_json_log_lines(ferry_factory, clients):
    srv = ferry_factory("-v", "--use-json-log")
    c = clients.sftp(srv)
    with c.open("/a.txt", "wb") as f:
        f.write(b"x" * 1000)
    c.mkdir("/dir")
    c.rename("/a.txt", "/dir/b.txt")
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(srv.port, user="mallory", password="wrong")
    c.close()
    c.get_channel().get_transport().close()
    # One still connected when the server stops: its logout is logged too.
    clients.sftp(srv).listdir("/")
    srv.stop()
    lines = [json.loads(line) for line in log_lines(srv)]
    for obj in lines:
        assert {"time", "level", "msg"} <= set(obj), obj
        assert obj["level"] in ("error", "notice", "info", "debug"), obj
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", obj["time"]), obj
    by = {}
    for obj in lines:
        by.setdefault(obj["msg"], []).append(obj)
    (t,) = by["transfer"]
    assert t["path"] == "/a.txt" and t["bytes_written"] == 1000 and t["bytes_read"] == 0
    assert t["flags"] == "WRITE,CREATE,TRUNCATE" and t["status"] == "ok"
    assert isinstance(t["seconds"], float) and t["user"] == USER
    assert by["mkdir"][0]["path"] == "/dir"
    assert by["rename"][0]["to"] == "/dir/b.txt"
    (fail,) = by["SSH login failed"]
    assert fail["level"] == "notice" and fail["user"] == "mallory"
    assert fail["ip"] == "127.0.0.1" and isinstance(fail["port"], int)
    assert sorted(o["bytes_written"] for o in by["SSH logout"]) == [0, 1000], by["SSH logout"]


FORGERS = ["bob", "eve\n2026-01-01T00:00:00.000000Z NOTICE SSH login failed ip=6.6.6.6 port=1",
           'x ip=6.6.6.6 port=1', "\x1b[2Jcarol"]


def fail_logins(srv):
    for user in FORGERS:
        with pytest.raises(paramiko.AuthenticationException):
            connect_transport(srv.port, user=user, password="wrong-password")


@pytest.mark.parametrize("json_log", [False, True])
def test_failed_logins_are_notices_fail2ban_reads(ferry_factory, json_log):
    """Without -v only NOTICE and above: each failed login, with the client
    address first. A real fail2ban-regex with docs/fail2ban/ferry.conf
    finds exactly one failure per attempt, all from 127.0.0.1, whatever the
    user names say."""
    srv = ferry_factory(*(["--use-json-log"] if json_log else []), verbosity="")
    fail_logins(srv)
    srv.stop()
    lines = log_lines(srv)
    assert len(lines) == len(FORGERS), srv.log()
    for line in lines:
        assert "\x1b" not in line and not line.startswith("2026-01-01"), repr(line)
        if json_log:
            obj = json.loads(line)
            assert obj["level"] == "notice" and obj["msg"] == "SSH login failed"
        else:
            level, msg, f = parse_text(line)
            assert (level, msg, f["ip"]) == ("NOTICE", "SSH login failed", "127.0.0.1")
    p = run(["fail2ban-regex", "-o", "ip", srv.log_path, FILTER], timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["127.0.0.1"] * len(FORGERS), p.stdout


def test_fail2ban_filter_ignores_successful_logins(ferry_factory, clients):
    srv = ferry_factory("-v")
    clients.sftp(srv).listdir("/")
    clients.close_all()
    srv.stop()
    p = run(["fail2ban-regex", "-o", "ip", srv.log_path, FILTER], timeout=60)
    assert p.returncode == 0 and p.stdout.split() == [], (p.stdout, p.stderr)


def test_no_password_or_secret_is_logged(ferry_factory, clients):
    srv = ferry_factory("-vv")
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(srv.port, password="Wrong-Secret-42")
    c = clients.sftp(srv)
    c.listdir("/")
    clients.close_all()
    srv.stop()
    log = srv.log()
    assert "SSH login" in log
    assert "Wrong-Secret-42" not in log and PASSWORD not in log


def test_names_cannot_forge_lines_in_the_access_log(ferry_factory, clients):
    srv = ferry_factory("-v")
    c = clients.sftp(srv)
    evil = "/a\n2026-01-01T00:00:00.000000Z INFO   transfer path=etc-shadow\u2028\r\x07"
    with c.open(evil, "wb") as f:
        f.write(b"data")
    c.rename(evil, "/b\nFORGED")
    c.close()
    srv.stop()
    for line in log_lines(srv):
        parse_text(line)
        assert not line.startswith(("2026-01-01", "FORGED")), repr(line)
        assert "\x07" not in line and "\r" not in line and "\u2028" not in line, repr(line)
    (_, _, t), = events(srv, "transfer")
    assert t["path"].startswith("/a\\n2026-01-01"), t


def test_log_level_flag(ferry_factory, tmp_path, clients):
    quiet = ferry_factory("--log-level", "ERROR", verbosity="")
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(quiet.port, user="x", password="wrong")
    clients.sftp(quiet).listdir("/")
    quiet.stop()
    assert log_lines(quiet) == [], quiet.log()
    info = ferry_factory("--log-level", "info", verbosity="")
    clients.sftp(info).listdir("/")
    clients.close_all()
    info.stop()
    assert events(info, "SSH login") and not [e for e in events(info) if e[0] == "DEBUG"]
    debug = ferry_factory("--log-level", "DEBUG", verbosity="")
    clients.sftp(debug).listdir("/")
    clients.close_all()
    debug.stop()
    assert [e for e in events(debug) if e[0] == "DEBUG"]
    assert "--log-level" in usage_error(tmp_path, ["--log-level", "LOUD"])
    assert "can't set -v and --log-level" in usage_error(tmp_path, ["-v", "--log-level", "INFO"])
