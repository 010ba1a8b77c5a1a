"""Budgets: what one session may hold of the server's memory and time
(docs/security.md, "Budgets").

Each test here is a bounded abuse of one session, measured on the server
process (its resident memory from /proc) while another client keeps being
served. The numbers are loose bounds a fix meets by a wide margin and the
old code missed by a wide margin (each test says what it measured before).
"""

import os
import socket
import struct
import threading
import time

import pytest

import paramiko

from conftest import (FerryServer, assert_server_healthy, connect_transport, free_port,
                      make_random_file, wait_until)
from sftpraw import (EXTENDED, RawSftp, SftpStatusError, FSTAT, FXF_CREAT, FXF_READ, FXF_TRUNC, FXF_WRITE, READ, string,
                     u32, u64)

MiB = 1 << 20


def rss(pid):
    """Resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Peak:
    """The highest resident memory of `pid` seen while the block runs."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, AssertionError):
                return

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def packet(ptype, rid, payload):
    body = bytes([ptype]) + u32(rid) + payload
    return u32(len(body)) + body


def send_until_stuck(chan, packets, stuck_after=3.0, limit=60.0):
    """Send `packets` (bytes) without reading; stop once the server has
    stopped taking them for `stuck_after` seconds. Returns bytes sent."""
    chan.settimeout(stuck_after)
    data = b"".join(packets)
    sent = 0
    deadline = time.monotonic() + limit
    while sent < len(data) and time.monotonic() < deadline:
        try:
            n = chan.send(data[sent:sent + 65536])
        except socket.timeout:
            break
        if n == 0:
            break
        sent += n
    return sent


def stalled_reads_then(srv, clients, path, behind):
    """A session that opens `path`, sends 64 READs of 255 KiB and then the
    requests `behind(handle, first_id)` returns, and never reads a reply."""
    raw = clients.raw(srv)
    h = raw.open_file(path, FXF_READ)
    packets = [packet(READ, 1000 + i, string(h) + u64(i * 255 * 1024) + u32(255 * 1024))
               for i in range(64)]
    packets += behind(h, 2000)
    sent = send_until_stuck(raw.chan, packets)
    return raw, sent, sum(len(p) for p in packets)


def server_socket(server_port, client_port):
    """The inode of the server's end of the TCP connection from
    `client_port`, while it is established."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (int(local.split(":")[1], 16) == server_port
                    and int(remote.split(":")[1], 16) == client_port and state == "01"):
                return fields[9]
    raise AssertionError(f"no connection from port {client_port}")


def holds_socket(pid, inode):
    """Does the process still hold the socket (a session that never ends
    keeps its connection's descriptor, whatever the kernel did with the
    connection once the client reset or closed it)?"""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                return True
        except OSError:
            pass
    return False


def test_pipelined_requests_behind_stalled_reads_stay_within_the_budget(
        ferry_factory, clients, tmp_path):
    """Finding 3: a client that stops reading and pipelines 20,000 FSTATs
    behind stalled READs drove the server to 1,648 MiB (each request cloned
    a reference to every earlier one, and was charged 1 KiB of a 64 MiB
    budget); three such sessions in a row left 907 MiB resident, and the
    sessions never ended once the clients had gone (their sockets stayed
    open: the reply writer waited for window forever). Now the session's
    queue budget is charged by what a request really holds and each FSTAT
    waits on one predecessor: the server stays within budget, serves others
    meanwhile, and ends the session when the client goes."""
    srv = ferry_factory("-vv")  # the end of each session is logged
    make_random_file(srv.backing("big.bin"), 32 * MiB)
    pid = srv.proc.pid
    assert_server_healthy(srv, clients)
    base = rss(pid)
    peaks = []
    for round_ in range(3):
        with Peak(pid) as peak:
            raw, sent, total = stalled_reads_then(
                srv, clients, "big.bin",
                lambda h, first: [packet(FSTAT, first + i, string(h)) for i in range(20000)])
            # Someone else is served while the flood is held.
            assert_server_healthy(srv, clients)
            transport = raw.chan.get_transport()
            port = transport.sock.getsockname()[1]
            inode = server_socket(srv.port, port)
            assert holds_socket(pid, inode)
            transport.close()
            # The session ends: its connection is closed, memory comes back.
            assert wait_until(lambda: not holds_socket(pid, inode), timeout=20), \
                f"round {round_}: the connection outlived its client"
            # And so does its SFTP session (which once went on waiting to
            # send its replies, holding all it had queued).
            assert wait_until(lambda: session_ended(srv, port), timeout=20), \
                f"round {round_}: the session outlived its client"
            assert wait_until(lambda: rss(pid) < base + 96 * MiB, timeout=20), \
                f"round {round_}: {rss(pid) >> 20} MiB resident after the client left"
        peaks.append(peak.peak)
    grown = max(peaks) - base
    assert grown < 192 * MiB, f"peaks {[p >> 20 for p in peaks]} MiB, base {base >> 20} MiB"
    assert srv.alive()
    assert_server_healthy(srv, clients)


def session_ended(srv, port):
    """Has the server logged the end of the SFTP session from `port`?"""
    peer = f"peer=127.0.0.1:{port}"
    return any(peer in line and "SFTP session ended" in line for line in srv.log().splitlines())


def cpu_seconds(pid):
    """User and system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_copy_data_stops_when_its_client_leaves(ferry_factory, clients):
    """copy-data of a whole 8 GiB file (sparse: reads cost nothing) into a
    new file, and the client drops its connection at once. The copy stopped
    only at its end, writing 8 GiB for nobody; now it stops with the
    session and the upload it fed is discarded."""
    srv = ferry_factory("-vv")
    src = srv.backing("sparse.bin")
    with open(src, "wb") as f:
        f.truncate(8 << 30)
    raw = clients.raw(srv)
    hs = raw.open_file("sparse.bin", FXF_READ)
    hd = raw.open_file("copy.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    # To offset 1: no whole-file copy inside the store, bytes are moved.
    raw.chan.sendall(packet(EXTENDED, 77, string("copy-data") + string(hs) + u64(0) + u64(0)
                            + string(hd) + u64(1)))

    def written():
        return sum(e.stat().st_size for e in os.scandir(srv.backing()) if e.name != "sparse.bin")

    assert wait_until(lambda: written() > 0, timeout=20), "the copy started"
    transport = raw.chan.get_transport()
    port = transport.sock.getsockname()[1]
    transport.close()
    assert wait_until(lambda: session_ended(srv, port), timeout=20), "the session ended"
    assert wait_until(lambda: written() == 0, timeout=10), \
        f"{written() >> 20} MiB left behind by the copy"
    assert not os.path.exists(srv.backing("copy.bin"))
    assert_server_healthy(srv, clients)


def test_an_exec_hash_stops_when_its_client_leaves(ferry_factory, clients):
    """`md5sum` of an 8 GiB file, and the client leaves at once: the server
    went on hashing for nobody (tens of CPU seconds); now it stops."""
    srv = ferry_factory("-vv")
    with open(srv.backing("sparse.bin"), "wb") as f:
        f.truncate(8 << 30)
    pid = srv.proc.pid
    t = clients.transport(srv)
    ch = t.open_session()
    ch.exec_command("md5sum sparse.bin")
    start = cpu_seconds(pid)
    assert wait_until(lambda: cpu_seconds(pid) > start + 0.2, timeout=20), "hashing started"
    t.close()
    assert wait_until(lambda: "the client left before the command finished" in srv.log(),
                      timeout=20)
    # Idle now: well under a CPU second in two seconds.
    before = cpu_seconds(pid)
    time.sleep(2)
    assert cpu_seconds(pid) - before < 0.5, "still hashing"
    assert_server_healthy(srv, clients)


def _with_file_limit(factory, limit, *extra):
    """A server under `prlimit --nofile=limit:limit`, with --no-auth (any
    user name logs in, so tests can be several users)."""
    factory.count += 1
    n = factory.count
    root = factory.tmp / f"root{n}"
    root.mkdir()
    cache = factory.tmp / f"cache{n}"
    port = free_port()
    args = ["prlimit", f"--nofile={limit}:{limit}", "--",
            *factory.command(root, port, cache, auth=False, extra=["--no-auth", *extra])]
    srv = FerryServer(args, root, cache, port, factory.tmp / f"ferry{n}.log", factory.env())
    factory.servers.append(srv)
    return srv.start()


def _open_until_refused(raw, path, most=3000):
    handles = []
    while len(handles) < most:
        try:
            handles.append(raw.open_file(path, FXF_READ))
        except SftpStatusError as e:
            return handles, str(e)
    return handles, None


def test_one_user_cannot_take_every_descriptor(ferry_factory):
    """Finding 7: with the open-file limit at 4,096, one client's 4,082
    handles made every new client hang (accept failed with EMFILE). Now
    clients' open files are the limit less a reserve (four descriptors per
    allowed connection and 256): with a limit of 1,300 and
    --max-connections 50 that is 844, and one user holds at most half.
    A user that opens files until refused gets 422 and a clear FAILURE;
    another user still connects, lists and reads; a third connects while
    the server is full and is told why its OPEN fails; closing frees the
    places."""
    srv = _with_file_limit(ferry_factory, 1300, "--max-connections", "50")
    with open(srv.backing("a.txt"), "wb") as f:
        f.write(b"x" * 1000)
    ta = connect_transport(srv.port, user="alice")
    a = RawSftp.open(ta)
    tb = connect_transport(srv.port, user="bob")
    b = RawSftp.open(tb)
    try:
        mine, why = _open_until_refused(a, "a.txt")
        assert len(mine) == 422 and "Too many open files for this user" in why, (len(mine), why)
        theirs, why = _open_until_refused(b, "a.txt")
        # The server's 844 are all taken now (which is said first).
        assert len(theirs) == 422 and "on this server" in why, (len(theirs), why)
        # Full: a new user still gets in, lists, and is told why it cannot open.
        tc = connect_transport(srv.port, user="carol")
        c = paramiko.SFTPClient.from_transport(tc)
        assert c.listdir("/") == ["a.txt"]
        with pytest.raises(IOError, match="Too many open files on this server"):
            c.open("a.txt").read()
        assert a.read(mine[0], 0, 1000) == b"x" * 1000
        for h in mine:
            a.close_handle(h)
        assert c.open("a.txt").read() == b"x" * 1000
        tc.close()
        assert "half the server's limit of 844" in srv.log()
    finally:
        ta.close()
        tb.close()
