"""The remote-control API (`--rc`, docs/rc.md), driven by the real
`rclone rc` client and by curl, and the metrics page, scraped with
Python's `prometheus_client` parser before and after known work."""

import json
import os
import re
import signal
import subprocess
import time

import paramiko
import pytest

from conftest import (HOST, PASSWORD, USER, clean_env, free_port, make_random_file, run,
                      usage_error, wait_port, wait_until, ferry_bin)

MiB = 1 << 20
RC_USER, RC_PASS = "admin", "rc-Secret-9"


def rc_server(ferry_factory, *extra, rc_auth=("--rc-user", RC_USER, "--rc-pass", RC_PASS),
              **kw):
    """A Ferry with --rc on a port of its own; returns (server, rc port)."""
    port = free_port()
    srv = ferry_factory("--rc", "--rc-addr", f"{HOST}:{port}", *rc_auth, *extra, **kw)
    assert wait_port(port, srv.proc), srv.log_tail()
    return srv, port


def rclone_rc(port, *args, user=RC_USER, password=RC_PASS, check=True):
    """`rclone rc --url ... CALL key=value ...`; returns the parsed reply."""
    cmd = ["rclone", "--config", "/dev/null", "rc", "--url", f"http://{HOST}:{port}/"]
    if user:
        cmd += ["--user", user, "--pass", password]
    p = run([*cmd, *args], timeout=60, env=clean_env())
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return json.loads(p.stdout) if p.stdout.strip() else {}
    return p


def curl(url, *args, data=None, json_body=None):
    """curl; returns (status, headers text, body text)."""
    cmd = ["curl", "-sS", "-i", "--max-time", "30", *args]
    if json_body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data", json.dumps(json_body)]
    elif data is not None:
        cmd += ["--data", data]
    p = run([*cmd, url], timeout=40)
    assert p.returncode == 0, p.stderr
    head, _, body = p.stdout.replace("\r\n", "\n").partition("\n\n")
    # A 100 Continue comes first with some bodies.
    while head.startswith("HTTP/1.1 100"):
        head, _, body = body.partition("\n\n")
    status = int(head.split()[1])
    return status, head, body


def url(port, path, scheme="http"):
    return f"{scheme}://{HOST}:{port}/{path}"


# --------------------------------------------------------------------------
# rclone rc, the real client
# --------------------------------------------------------------------------

def test_rclone_rc_forget_refresh_stats_and_bwlimit(ferry_factory, clients, tmp_path):
    srv, port = rc_server(ferry_factory, "--dir-cache-time", "1h")
    c = clients.sftp(srv)
    c.mkdir("/d")
    assert c.listdir("/d") == []
    # A file made behind the server's back stays hidden by the dir cache...
    srv.backing("d", "behind.txt").write_text("x")
    assert c.listdir("/d") == []
    # ...until vfs/forget, exactly as rclone's docs tell.
    out = rclone_rc(port, "vfs/forget", "dir=d")
    assert out == {"forgotten": ["d"]}
    assert c.listdir("/d") == ["behind.txt"]
    # vfs/refresh re-reads listings (recursively).
    srv.backing("d", "sub").mkdir()
    srv.backing("d", "sub", "deep.txt").write_text("y")
    out = rclone_rc(port, "vfs/refresh", "dir=d", "recursive=true")
    assert out == {"result": {"d": "OK"}}, out
    assert sorted(c.listdir("/d")) == ["behind.txt", "sub"]
    # Without dir, the whole cache is flushed.
    srv.backing("top.txt").write_text("z")
    assert rclone_rc(port, "vfs/forget") == {"forgotten": []}
    assert "top.txt" in c.listdir("/")

    # core/stats counts what clients moved.
    before = rclone_rc(port, "core/stats")
    src = tmp_path / "up.bin"
    make_random_file(src, 3 * MiB)
    c.put(str(src), "/up.bin")
    c.get("/up.bin", str(tmp_path / "down.bin"))
    after = rclone_rc(port, "core/stats")
    assert after["bytes"] - before["bytes"] == 6 * MiB, (before, after)
    assert after["transfers"] - before["transfers"] == 2
    for k in ("checks", "deletes", "elapsedTime", "errors", "renames", "speed",
              "totalBytes", "totalTransfers", "transferTime", "fatalError", "retryError"):
        assert k in after, k
    # core/stats-reset zeroes them.
    rclone_rc(port, "core/stats-reset")
    assert rclone_rc(port, "core/stats")["bytes"] == 0

    # core/bwlimit sets and reads the limit, in rclone's reply shape.
    out = rclone_rc(port, "core/bwlimit", "rate=1M")
    assert out == {"bytesPerSecond": MiB, "bytesPerSecondTx": MiB,
                   "bytesPerSecondRx": MiB, "rate": "1Mi"}, out
    t0 = time.monotonic()
    c.get("/up.bin", str(tmp_path / "slow.bin"))
    assert time.monotonic() - t0 > 1.5, "a 3 MiB read at 1 MiB/s took under 1.5 s"
    out = rclone_rc(port, "core/bwlimit", "rate=off")
    assert out["bytesPerSecond"] == -1 and out["rate"] == "off", out
    assert rclone_rc(port, "core/bwlimit")["rate"] == "off"
    out = rclone_rc(port, "core/bwlimit", "rate=2M:off")
    assert out["bytesPerSecondTx"] == 2 * MiB and out["bytesPerSecondRx"] == -1, out
    rclone_rc(port, "core/bwlimit", "rate=off")

    # Informational calls.
    assert rclone_rc(port, "core/pid")["pid"] == srv.proc.pid
    assert rclone_rc(port, "core/version")["version"].startswith("v")
    mem = rclone_rc(port, "core/memstats")
    assert mem["Sys"] > 0 and "HeapAlloc" in mem
    names = {c["Path"] for c in rclone_rc(port, "rc/list")["commands"]}
    for want in ("vfs/forget", "vfs/refresh", "vfs/stats", "vfs/queue", "core/stats",
                 "core/bwlimit", "options/get", "options/set", "job/status",
                 "ferry/sessions", "ferry/disconnect", "ferry/reload"):
        assert want in names, want
    assert rclone_rc(port, "rc/noop", "a=1", "b=two") == {"a": "1", "b": "two"}
    assert rclone_rc(port, "vfs/list") == {"vfses": [str(srv.root)]}
    c.listdir("/d")
    st = rclone_rc(port, "vfs/stats")
    assert st["fs"] == str(srv.root) and st["metadataCache"]["dirs"] >= 1, st
    assert rclone_rc(port, "vfs/stats", f"fs={srv.root}")["fs"] == str(srv.root)
    p = rclone_rc(port, "vfs/stats", "fs=nosuch:", check=False)
    assert p.returncode != 0 and "no VFS found" in p.stdout + p.stderr


def test_async_jobs(ferry_factory):
    srv, port = rc_server(ferry_factory)
    out = rclone_rc(port, "--json", json.dumps({"_async": True, "x": 1}), "rc/noop")
    job = out["jobid"]
    assert isinstance(job, int)
    st = wait_until(lambda: (lambda s: s if s["finished"] else None)(
        rclone_rc(port, "job/status", f"jobid={job}")), timeout=10)
    assert st and st["success"] and st["output"] == {"x": 1}, st
    assert st["id"] == job and st["error"] == "" and "startTime" in st and "duration" in st
    listed = rclone_rc(port, "job/list")
    assert job in listed["jobids"] and job in listed["finishedIds"], listed
    p = rclone_rc(port, "job/status", "jobid=999999", check=False)
    assert p.returncode != 0 and "job not found" in p.stdout + p.stderr
    # A failing async call is a finished job with its error.
    out = rclone_rc(port, "--json", json.dumps({"_async": True}), "rc/error")
    st = wait_until(lambda: (lambda s: s if s["finished"] else None)(
        rclone_rc(port, "job/status", f"jobid={out['jobid']}")), timeout=10)
    assert st and not st["success"] and "arbitrary error" in st["error"], st
    # The header form, with curl.
    status, head, body = curl(url(port, "rc/noop"), "-u", f"{RC_USER}:{RC_PASS}",
                              "-H", "Prefer: respond-async", data="y=2")
    job = json.loads(body)["jobid"]
    assert status == 200 and f"x-rclone-jobid: {job}" in head.lower(), head
    st = wait_until(lambda: (lambda s: s if s["finished"] else None)(
        rclone_rc(port, "job/status", f"jobid={job}")), timeout=10)
    assert st and st["output"] == {"y": "2"}, st


# --------------------------------------------------------------------------
# auth and error shapes, with curl
# --------------------------------------------------------------------------

def test_basic_auth_and_error_shapes(ferry_factory):
    srv, port = rc_server(ferry_factory)
    # No credentials, wrong ones: 401 with the realm rclone uses, on every path.
    for args in ([], ["-u", f"{RC_USER}:wrong"], ["-u", f"nobody:{RC_PASS}"]):
        for path in ("rc/noop", "core/stats", "nosuch/call"):
            status, head, _ = curl(url(port, path), *args, "-X", "POST")
            assert status == 401, (args, path, status)
            assert 'www-authenticate: Basic realm="rclone"' in head.lower().replace(
                "basic realm", "Basic realm"), head
    auth = ["-u", f"{RC_USER}:{RC_PASS}"]
    # Parameters from the query, a form body and a JSON body.
    status, head, body = curl(url(port, "rc/noop?a=1&b=2"), *auth, data="b=3&c=4")
    assert status == 200 and "application/json" in head.lower()
    assert json.loads(body) == {"a": "1", "b": "3", "c": "4"}
    assert body.startswith("{\n\t\""), "rclone's tab-indented JSON"
    status, _, body = curl(url(port, "rc/noop?q=1"), *auth, json_body={"n": 5, "l": [1, 2]})
    assert status == 200 and json.loads(body) == {"q": "1", "n": 5, "l": [1, 2]}
    # Unknown call: 404 in rclone's error shape.
    status, _, body = curl(url(port, "no/such"), *auth, data="k=v")
    err = json.loads(body)
    assert status == 404 and err["status"] == 404 and err["path"] == "no/such", body
    assert err["input"] == {"k": "v"} and "couldn't find method" in err["error"], err
    # Bad parameters: 400.
    status, _, body = curl(url(port, "core/bwlimit"), *auth, data="rate=fast")
    err = json.loads(body)
    assert status == 400 and err["status"] == 400 and "bwlimit" in err["error"], body
    status, _, body = curl(url(port, "vfs/refresh"), *auth, data="recursive=maybe")
    assert status == 400, body
    status, _, body = curl(url(port, "job/status"), *auth, data="jobid=notanumber")
    assert status == 400, body
    status, _, body = curl(url(port, "rc/noop"), *auth, "-H", "Content-Type: application/json",
                           data="{not json")
    assert status == 400 and "JSON" in json.loads(body)["error"], body
    # A failing call: 500.
    status, _, body = curl(url(port, "rc/error"), *auth, data="x=1")
    err = json.loads(body)
    assert status == 500 and err["status"] == 500 and err["path"] == "rc/error", body
    # A missing thing: 404 (vfs/forget of nothing known is not an error;
    # a session that does not exist is).
    status, _, body = curl(url(port, "ferry/disconnect"), *auth, data="id=12345")
    assert status == 404 and "no session" in json.loads(body)["error"], body
    # Calls are POST; GET of a call is refused in the same shape.
    status, _, body = curl(url(port, "rc/noop"), *auth)
    assert status in (404, 405) and "error" in json.loads(body), body
    # The server is still fine.
    status, _, _ = curl(url(port, "rc/noop"), *auth, "-X", "POST")
    assert status == 200


def test_without_credentials_changing_calls_need_rc_no_auth(ferry_factory):
    srv, port = rc_server(ferry_factory, rc_auth=())
    # Calls that only read or echo work without auth...
    status, _, body = curl(url(port, "rc/noop"), data="a=1")
    assert status == 200 and json.loads(body) == {"a": "1"}
    status, _, body = curl(url(port, "core/stats"), "-X", "POST")
    assert status == 200
    # ...calls that change things are refused.
    for path in ("core/bwlimit", "vfs/forget", "ferry/sessions", "rc/noopauth",
                 "options/set", "ferry/reload"):
        status, _, body = curl(url(port, path), "-X", "POST")
        err = json.loads(body)
        assert status == 403 and "--rc-no-auth" in err["error"], (path, body)
    srv2, port2 = rc_server(ferry_factory, "--rc-no-auth", rc_auth=())
    status, _, body = curl(url(port2, "vfs/forget"), "-X", "POST")
    assert status == 200, body
    status, _, body = curl(url(port2, "core/bwlimit"), data="rate=5M")
    assert status == 200 and json.loads(body)["bytesPerSecond"] == 5 * MiB


def test_htpasswd_from_apache_tool(ferry_factory, tmp_path):
    ht = tmp_path / "htpasswd"
    p = run(["htpasswd", "-B", "-c", "-b", ht, "alice", "al1ce-pw"], timeout=30)
    assert p.returncode == 0, p.stderr
    p = run(["htpasswd", "-m", "-b", ht, "bob", "b0b-pw"], timeout=30)
    assert p.returncode == 0, p.stderr
    srv, port = rc_server(ferry_factory, "--rc-htpasswd", ht, rc_auth=())
    assert rclone_rc(port, "rc/noopauth", "k=v", user="alice", password="al1ce-pw") == {"k": "v"}
    assert rclone_rc(port, "core/stats", user="bob", password="b0b-pw")["bytes"] == 0
    for u, pw in (("alice", "b0b-pw"), ("carol", "x"), ("bob", "")):
        status, _, _ = curl(url(port, "rc/noop"), "-u", f"{u}:{pw}", "-X", "POST")
        assert status == 401, (u, pw)
    p = rclone_rc(port, "rc/noop", user="alice", password="wrong", check=False)
    assert p.returncode != 0


def test_tls(ferry_factory, tmp_path):
    cert, key = tmp_path / "rc.crt", tmp_path / "rc.key"
    p = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
            timeout=60)
    assert p.returncode == 0, p.stderr
    srv, port = rc_server(ferry_factory, "--rc-cert", cert, "--rc-key", key,
                          "--rc-enable-metrics")
    status, _, body = curl(url(port, "rc/noop", "https"), "--cacert", cert,
                           "-u", f"{RC_USER}:{RC_PASS}", data="a=b")
    assert status == 200 and json.loads(body) == {"a": "b"}
    status, _, body = curl(url(port, "metrics", "https"), "--cacert", cert,
                           "-u", f"{RC_USER}:{RC_PASS}")
    assert status == 200 and "ferry_sessions_active" in body
    # Plain HTTP to the TLS port gets nothing useful, and the server goes on.
    p = run(["curl", "-sS", "--max-time", "10", "-X", "POST", url(port, "rc/noop")], timeout=20)
    assert p.returncode != 0 or '"a"' not in p.stdout
    status, _, _ = curl(url(port, "rc/noop", "https"), "--cacert", cert,
                        "-u", f"{RC_USER}:{RC_PASS}", "-X", "POST")
    assert status == 200


@pytest.mark.parametrize("extra, needle", [
    (["--rc", "--rc-addr", "nowhere"], "--rc-addr"),
    (["--rc", "--rc-user", "u"], "--rc-user and --rc-pass"),
    (["--rc", "--rc-cert", "/nonexistent.crt"], "--rc-cert and --rc-key"),
    (["--rc", "--rc-cert", "/nonexistent.crt", "--rc-key", "/nonexistent.key"], "--rc-cert"),
    (["--rc", "--rc-htpasswd", "/nonexistent"], "--rc-htpasswd"),
    (["--metrics-addr", "127.0.0.1:99999"], "--metrics-addr"),
])
def test_bad_rc_flags_are_usage_errors(tmp_path, extra, needle):
    line = usage_error(tmp_path, extra)
    assert needle in line, line


def test_taken_rc_port_stops_the_start(ferry_factory, tmp_path):
    import socket
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(1)
    taken = s.getsockname()[1]
    try:
        srv = ferry_factory("--rc", "--rc-addr", f"{HOST}:{taken}", wait=False)
        assert srv.proc.wait(20) == 2
        assert f"cannot listen on --rc-addr {HOST}:{taken}" in srv.log()
    finally:
        s.close()


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------

def test_options_get_and_set(ferry_factory):
    srv, port = rc_server(ferry_factory, "--vfs-cache-mode", "writes", "--exclude", "*.tmp",
                          "--bwlimit", "4M")
    o = rclone_rc(port, "options/get")
    assert {"vfs", "filter", "main"} <= set(o), o
    assert o["vfs"]["CacheMode"] == 2 and o["filter"]["ExcludeRule"] == ["*.tmp"]
    assert o["main"]["BwLimit"] == "4Mi"
    assert set(rclone_rc(port, "options/get", "blocks=main")) == {"main"}
    # main.BwLimit applies at once.
    rclone_rc(port, "--json", json.dumps({"main": {"BwLimit": "1M"}}), "options/set")
    assert rclone_rc(port, "core/bwlimit")["bytesPerSecond"] == MiB
    # VFS and filter options change the template for VFSes opened later.
    rclone_rc(port, "--json", json.dumps({"vfs": {"CacheMode": "full", "DirCacheTime": "10s"},
                                          "filter": {"ExcludeRule": ["*.bak"]}}),
              "options/set")
    o = rclone_rc(port, "options/get")
    assert o["vfs"]["CacheMode"] == 3 and o["vfs"]["DirCacheTime"] == 10_000_000_000
    assert o["filter"]["ExcludeRule"] == ["*.bak"]
    # Bad values are refused and change nothing.
    for body in ({"vfs": {"CacheMode": "sometimes"}}, {"vfs": {"NoSuch": 1}},
                 {"filter": {"MinSize": "huge"}}, {"nosuch": {}},
                 {"main": {"BwLimit": "08:00,1M 18:00,off"}},
                 {"main": {"BwLimit": "1M"}, "vfs": {"Umask": "99"}}):
        status, _, out = curl(url(port, "options/set"), "-u", f"{RC_USER}:{RC_PASS}",
                              json_body=body)
        assert status == 400, (body, out)
    o = rclone_rc(port, "options/get")
    assert o["vfs"]["CacheMode"] == 3 and o["main"]["BwLimit"] == "1Mi"


def test_filter_set_applies_to_new_auth_proxy_logins(ferry_factory, tmp_path):
    from test_auth_proxy import Proxy, local_answer, start, transport
    proxy = Proxy(tmp_path / "proxy")
    roots = {}
    for u in ("ann", "ben"):
        roots[u] = tmp_path / f"home-{u}"
        roots[u].mkdir()
        (roots[u] / "a.txt").write_text(u)
        (roots[u] / "b.bak").write_text(u)
        proxy.user(u, local_answer(roots[u]), passwords=["pw"])
    port = free_port()
    srv = start(ferry_factory, proxy.command(), "--rc", "--rc-addr", f"{HOST}:{port}",
                "--rc-user", RC_USER, "--rc-pass", RC_PASS)
    assert wait_port(port, srv.proc)
    t = transport(srv.port, "ann", password="pw")
    assert sorted(paramiko.SFTPClient.from_transport(t).listdir("/")) == ["a.txt", "b.bak"]
    rclone_rc(port, "--json", json.dumps({"filter": {"ExcludeRule": ["*.bak"]}}), "options/set")
    t2 = transport(srv.port, "ben", password="pw")
    assert paramiko.SFTPClient.from_transport(t2).listdir("/") == ["a.txt"]
    # Two VFSes now: fs= picks one, as in rclone.
    names = rclone_rc(port, "vfs/list")["vfses"]
    assert sorted(names) == sorted(str(r) for r in roots.values()), names
    p = rclone_rc(port, "vfs/forget", check=False)
    assert p.returncode != 0 and "more than one VFS" in p.stdout + p.stderr
    assert rclone_rc(port, "vfs/forget", f"fs={roots['ann']}") == {"forgotten": []}
    t.close()
    t2.close()


# --------------------------------------------------------------------------
# the write-back queue
# --------------------------------------------------------------------------

def test_vfs_queue_and_set_expiry(ferry_factory, clients, tmp_path):
    srv, port = rc_server(ferry_factory, "--vfs-cache-mode", "writes", "--vfs-write-back", "1h")
    c = clients.sftp(srv)
    src = tmp_path / "q.bin"
    make_random_file(src, 2 * MiB)
    c.put(str(src), "/q.bin")
    q = wait_until(lambda: rclone_rc(port, "vfs/queue")["queue"], timeout=10)
    assert q and len(q) == 1, q
    item = q[0]
    assert item["name"] == "q.bin" and item["size"] == 2 * MiB and not item["uploading"], item
    assert item["expiry"] > 3000, item
    assert not srv.backing("q.bin").exists(), "uploaded before its write-back delay"
    # Relative: an hour later still.
    rclone_rc(port, "vfs/queue-set-expiry", f"id={item['id']}", "expiry=3600", "relative=true")
    assert rclone_rc(port, "vfs/queue")["queue"][0]["expiry"] > 6000
    # Now: it is uploaded.
    rclone_rc(port, "vfs/queue-set-expiry", f"id={item['id']}", "expiry=0")
    assert wait_until(lambda: srv.backing("q.bin").exists()
                      and srv.backing("q.bin").stat().st_size == 2 * MiB, timeout=20)
    assert wait_until(lambda: rclone_rc(port, "vfs/queue")["queue"] == [], timeout=10)
    p = rclone_rc(port, "vfs/queue-set-expiry", "id=424242", "expiry=0", check=False)
    assert p.returncode != 0
    st = rclone_rc(port, "vfs/stats")
    assert "diskCache" in st and st["diskCache"]["uploadsQueued"] == 0, st


# --------------------------------------------------------------------------
# sessions, disconnect and reload (Ferry's own calls)
# --------------------------------------------------------------------------

def test_sessions_and_disconnect(ferry_factory, clients, tmp_path):
    srv, port = rc_server(ferry_factory)
    c = clients.sftp(srv)
    with c.open("/s.bin", "wb") as f:
        f.write(os.urandom(300_000))
    held = c.open("/s.bin", "rb")
    held.read(1000)
    sessions = rclone_rc(port, "ferry/sessions")["sessions"]
    assert len(sessions) == 1, sessions
    s = sessions[0]
    assert s["user"] == USER and s["remoteAddr"].startswith(f"{HOST}:")
    assert s["method"] == "password" and "paramiko" in s["client"].lower()
    assert s["bytesWritten"] >= 300_000 and s["bytesRead"] >= 1000
    assert s["openFiles"] == 1 and re.match(r"\d{4}-\d\d-\d\dT", s["startTime"]), s
    other = clients.sftp(srv)
    other.listdir("/")
    assert len(rclone_rc(port, "ferry/sessions")["sessions"]) == 2
    assert rclone_rc(port, "ferry/disconnect", f"id={s['id']}") == {"disconnected": s["id"]}
    assert wait_until(lambda: not c.get_channel().get_transport().is_active(), timeout=10)
    with pytest.raises(Exception):
        c.listdir("/")
    # The other session goes on.
    assert other.listdir("/") == ["s.bin"]
    left = rclone_rc(port, "ferry/sessions")["sessions"]
    assert [x["id"] for x in left] != [s["id"]] and len(left) == 1


def test_reload_authorized_keys_and_host_keys(ferry_factory, keys, tmp_path):
    ak = keys.write_authorized("reload_keys", keys.client_pub + "\n")
    host = tmp_path / "host_key"
    assert run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host]).returncode == 0
    srv, port = rc_server(ferry_factory, "--authorized-keys", ak, "--key", host,
                          auth=False, host_key=False)

    def login(which):
        sock = __import__("socket").create_connection((HOST, srv.port), timeout=20)
        t = paramiko.Transport(sock)
        try:
            t.start_client(timeout=20)
            hk = t.get_remote_server_key().get_base64()
            try:
                t.auth_publickey(USER, keys.paramiko_key(which))
                return True, hk
            except paramiko.AuthenticationException:
                return False, hk
        finally:
            t.close()

    ok, hk1 = login("client")
    assert ok
    assert not login("other")[0]
    ak.write_text(keys.other_pub + "\n")
    new_host = tmp_path / "host_key_new"
    assert run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", new_host]).returncode == 0
    os.replace(new_host, host)
    out = rclone_rc(port, "ferry/reload")
    assert out["hostKeys"] == 1 and "1" in out["authorizedKeys"], out
    ok, hk2 = login("other")
    assert ok and hk2 != hk1
    assert not login("client")[0]
    # SIGHUP does the same.
    ak.write_text(keys.client_pub + "\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: login("client")[0], timeout=10)
    # A file that cannot be read keeps what is in use.
    ak.unlink()
    p = rclone_rc(port, "ferry/reload", check=False)
    assert p.returncode != 0 and "cannot read" in p.stdout + p.stderr
    assert login("client")[0]


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------

def scrape(port, path="metrics", auth=None):
    from prometheus_client.parser import text_string_to_metric_families
    args = ["-u", auth] if auth else []
    status, head, body = curl(url(port, path), *args)
    assert status == 200, body
    assert "text" in head.lower()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            out[key] = s.value
    return out


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def total(m, name, **labels):
    """Sum over every label set that has `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= set(ls))


def test_metrics_count_known_work(ferry_factory, clients, tmp_path):
    mport = free_port()
    srv = ferry_factory("--metrics-addr", f"{HOST}:{mport}")
    assert wait_port(mport, srv.proc)
    m0 = scrape(mport)
    for name in ("rclone_bytes_transferred_total", "rclone_files_transferred_total",
                 "rclone_errors_total", "ferry_connections_active", "ferry_sessions_active",
                 "ferry_open_files", "ferry_vfs_active"):
        assert any(n == name for n, _ in m0), name
    src = tmp_path / "m.bin"
    make_random_file(src, 5 * MiB)
    c = clients.sftp(srv)
    m1 = scrape(mport)
    assert val(m1, "ferry_sessions_active") == 1 and val(m1, "ferry_connections_active") == 1
    c.put(str(src), "/m.bin")
    c.get("/m.bin", str(tmp_path / "back.bin"))
    c.mkdir("/dir")
    c.rename("/m.bin", "/dir/m.bin")
    with pytest.raises(IOError):
        c.stat("/missing")
    f = c.open("/dir/m.bin", "rb")
    m2 = scrape(mport)
    assert val(m2, "ferry_open_files") == 1
    assert f.read(10)
    f.close()
    # Logins by method and result: one good, two bad passwords.
    for _ in range(2):
        with pytest.raises(paramiko.AuthenticationException):
            clients.transport(srv, password="wrong")
    m3 = scrape(mport)
    d = lambda name, **l: total(m3, name, **l) - total(m0, name, **l)  # noqa: E731
    assert d("ferry_sftp_bytes_total", direction="write") == 5 * MiB
    assert d("ferry_sftp_bytes_total", direction="read") == 5 * MiB + 10
    assert d("rclone_bytes_transferred_total") == 10 * MiB + 10
    # The put, the get and the file opened and read again.
    assert d("rclone_files_transferred_total") == 3
    assert d("rclone_files_renamed_total") == 1
    assert d("ferry_sftp_requests_total", op="mkdir", status="ok") == 1
    assert d("ferry_sftp_requests_total", op="rename", status="ok") == 1
    assert d("ferry_sftp_requests_total", op="stat", status="no_such_file") >= 1
    assert d("ferry_sftp_requests_total", op="open", status="ok") >= 3
    assert d("ferry_sftp_requests_total", op="write", status="ok") >= 5 * MiB // 32768
    assert d("ferry_logins_total", method="password", result="ok") == 1
    assert d("ferry_logins_total", method="password", result="failed") == 2
    # Backend requests and their latency, from the metrics layer.
    # (A local file is written through an open handle, then renamed into
    # place; the client's rename is one more.)
    assert d("ferry_backend_requests_total", op="open", result="ok") >= 3
    assert d("ferry_backend_requests_total", op="rename", result="ok") >= 1
    assert d("ferry_backend_request_duration_seconds_count", op="rename") == \
        d("ferry_backend_requests_total", op="rename")
    assert d("ferry_backend_requests_total", result="not_found") >= 1
    assert val(m3, "ferry_vfs_active") == 1
    c.get_channel().get_transport().close()
    assert wait_until(lambda: (lambda m: val(m, "ferry_sessions_active") == 0
                               and val(m, "ferry_connections_active") == 0)(scrape(mport)),
                      timeout=10)
    # The metrics server serves nothing else.
    status, _, _ = curl(url(mport, "core/stats"), "-X", "POST")
    assert status == 404


def test_metrics_on_the_rc_address_need_its_auth(ferry_factory):
    srv, port = rc_server(ferry_factory, "--rc-enable-metrics")
    status, _, _ = curl(url(port, "metrics"))
    assert status == 401
    m = scrape(port, auth=f"{RC_USER}:{RC_PASS}")
    assert val(m, "ferry_sessions_active") == 0
    # Without --rc-enable-metrics there is no /metrics.
    srv2, port2 = rc_server(ferry_factory)
    status, _, _ = curl(url(port2, "metrics"), "-u", f"{RC_USER}:{RC_PASS}")
    assert status == 404


def test_metrics_count_auth_proxy_calls(ferry_factory, tmp_path):
    from test_auth_proxy import Proxy, local_answer, start, transport
    proxy = Proxy(tmp_path / "proxy")
    home = tmp_path / "ann-home"
    home.mkdir()
    proxy.user("ann", local_answer(home), passwords=["pw"])
    mport = free_port()
    srv = start(ferry_factory, proxy.command(), "--metrics-addr", f"{HOST}:{mport}")
    assert wait_port(mport, srv.proc)
    m0 = scrape(mport)
    transport(srv.port, "ann", password="pw").close()
    with pytest.raises(paramiko.AuthenticationException):
        transport(srv.port, "ann", password="bad")
    m1 = scrape(mport)
    assert total(m1, "ferry_auth_proxy_calls_total") - total(m0, "ferry_auth_proxy_calls_total") == 2
    assert total(m1, "ferry_auth_proxy_calls_total", result="ok") - \
        total(m0, "ferry_auth_proxy_calls_total", result="ok") == 1
    assert total(m1, "ferry_auth_proxy_duration_seconds_count") >= 2


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------

def test_socket_activation_and_sd_notify(keys, tmp_path):
    import socket
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hi")
    sock_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(20)
    port = free_port()
    log = open(tmp_path / "ferry.log", "wb")
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"{HOST}:{port}",
         "-E", f"NOTIFY_SOCKET={sock_path}",
         str(ferry_bin()), "serve", "sftp", str(root), "--addr", "127.0.0.1:1",
         "--authorized-keys", str(keys.authorized), "--key", str(keys.host),
         "--cache-dir", str(tmp_path / "cache"), "-v"],
        stdout=log, stderr=subprocess.STDOUT, env=clean_env({"HOME": str(tmp_path)}),
        start_new_session=True)
    try:
        # systemd-socket-activate starts the server at the first connection.
        assert wait_port(port, proc)
        from conftest import openssh_sftp
        server = type("S", (), {"port": port})()
        rc, out, err = openssh_sftp(server, "ls\n")
        assert rc == 0 and "hello.txt" in out, (rc, out, err)
        msg = notify.recv(4096).decode()
        assert "READY=1" in msg.split("\n"), msg
        text = (tmp_path / "ferry.log").read_text()
        assert "socket activation" in text, text
        proc.send_signal(signal.SIGTERM)
        msg = notify.recv(4096).decode()
        assert "STOPPING=1" in msg, msg
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
        log.close()


def test_sample_unit_passes_systemd_analyze_verify(tmp_path):
    from conftest import REPO
    doc = (REPO / "docs" / "deploy.md").read_text()
    m = re.search(r"```ini\n# /etc/systemd/system/ferry.service\n(.*?)```", doc, re.S)
    assert m, "docs/deploy.md has the sample ferry.service"
    unit = m.group(1).replace("/usr/local/bin/ferry", str(ferry_bin()))
    m = re.search(r"```ini\n# /etc/systemd/system/ferry.socket\n(.*?)```", doc, re.S)
    assert m, "docs/deploy.md has the sample ferry.socket"
    (tmp_path / "ferry.service").write_text(unit)
    (tmp_path / "ferry.socket").write_text(m.group(1))
    for name in ("ferry.service", "ferry.socket"):
        p = run(["systemd-analyze", "verify", "--man=no", str(tmp_path / name)], timeout=60,
                env=clean_env({"SYSTEMD_LOG_LEVEL": "warning"}))
        assert p.returncode == 0, (name, p.stdout, p.stderr)
        # verify exits 0 on unknown keys and bad values: it only says so.
        problems = [l for l in (p.stdout + p.stderr).splitlines() if "ferry." in l]
        assert not problems, problems
    for want in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=",
                 "User=ferry", "Type=notify"):
        assert want in unit, want


def test_metrics_count_refused_connections(ferry_factory, clients):
    mport = free_port()
    srv = ferry_factory("--metrics-addr", f"{HOST}:{mport}", "--max-connections-per-user", "1")
    assert wait_port(mport, srv.proc)
    first = clients.sftp(srv)
    try:
        clients.sftp(srv).listdir("/")
    except Exception:
        pass
    m = wait_until(lambda: (lambda m: m if total(m, "ferry_connections_refused_total",
                                                  kind="max_connections_per_user") == 1
                             else None)(scrape(mport)), timeout=10)
    assert m, scrape(mport)
    assert first.listdir("/") == []


def test_metrics_count_retries_and_errors_by_kind(ferry_factory, clients, tmp_path):
    mport = free_port()
    # One request in five fails with a temporary error next to the store.
    srv = ferry_factory("--metrics-addr", f"{HOST}:{mport}",
                        "--debug-backend-faults", "20%,seed=5", "--dir-cache-time", "0")
    assert wait_port(mport, srv.proc)
    for i in range(20):
        srv.backing(f"f{i}").write_text("x")
    c = clients.sftp(srv)
    for _ in range(5):
        for i in range(20):
            try:
                c.stat(f"/f{i}")
            except IOError:
                pass
    m = scrape(mport)
    temporary = total(m, "ferry_backend_requests_total", result="temporary")
    retries = val(m, "ferry_backend_retries_total")
    assert temporary > 0 and retries > 0, (temporary, retries)
    # Every retry follows a temporary failure the layer below counted.
    assert retries <= temporary
    assert val(m, "ferry_errors_total", kind="temporary") == temporary
