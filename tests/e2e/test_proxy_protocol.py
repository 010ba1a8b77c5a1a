"""--proxy-protocol: connections from a trusted load balancer start with a
PROXY protocol header (version 1 or 2) and are treated as the client's it
names: in the log, the penalties and limits, and the auth proxy's
client_ip. The balancer is played by loopback 127.0.0.1 (a relay for
OpenSSH's ProxyCommand, or a socket that sends the header itself); the
clients it speaks for are documentation addresses (203.0.113.0/24,
2001:db8::/32)."""

import ipaddress
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from conftest import (HOST, PASSWORD, SSH_OPTS, USER, clean_env, default_client_key,
                      make_random_file, sha256_file, usage_error, wait_until)

RELAY = Path(__file__).with_name("proxy_relay.py")
SIG = b"\r\n\r\n\0\r\nQUIT\n"


def v1(src, sport, dst="127.0.0.1", dport=22):
    proto = "TCP4" if ipaddress.ip_address(src).version == 4 else "TCP6"
    if proto == "TCP6" and dst == "127.0.0.1":
        dst = "::1"
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, sport=0, *, local=False, tlv=b""):
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address("127.0.0.1" if s.version == 4 else "::1")
    body = s.packed + d.packed + struct.pack(">HH", sport, 22) + tlv
    return SIG + bytes([0x21, 0x11 if s.version == 4 else 0x21]) + struct.pack(">H", len(body)) + body


def through(port, head, *, source="127.0.0.1", password=PASSWORD, user=USER, split=False):
    """A paramiko Transport whose socket first sent `head` (in two pieces
    with `split`, as a slow network may deliver it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.bind((source, 0))
    sock.connect((HOST, port))
    if split:
        sock.sendall(head[:7])
        time.sleep(0.3)
        sock.sendall(head[7:])
    else:
        sock.sendall(head)
    t = paramiko.Transport(sock)
    t.banner_timeout = t.auth_timeout = 20
    try:
        t.start_client(timeout=20)
        t.auth_password(user, password)
    except Exception:
        t.close()
        raise
    return t


def login_line(srv, src):
    """The login lines of client `src` (`IP:PORT`, `[IPv6]:PORT`, or `IP:`)."""
    if src.startswith("["):
        ip, port = src[1:].split("]:")
    else:
        ip, _, port = src.rpartition(":")
    want = f" ip={ip} port={port} " if port else f" ip={ip} "
    return [l for l in srv.log().splitlines() if " SSH login user=" in l and want in l]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_openssh_through_a_balancer_is_the_client_it_names(ferry_factory, tmp_path, version):
    """OpenSSH's sftp through a relay that speaks PROXY: a 20 MiB upload
    and download byte-exact, and the login logged with the client's
    address and the balancer's."""
    srv = ferry_factory("--proxy-protocol", "127.0.0.1", "-v")
    src = tmp_path / "up.bin"
    make_random_file(src, 20 << 20)
    client = "203.0.113.7" if version == "v1" else "2001:db8::7"
    relay = f"{sys.executable} {RELAY} {HOST} {srv.port} {version} {client} 40022"
    batch = tmp_path / "batch"
    batch.write_text(f"put {src} up.bin\nget up.bin {tmp_path / 'down.bin'}\n")
    r = subprocess.run(["sftp", *SSH_OPTS, "-o", f"ProxyCommand={relay}", "-i",
                        str(default_client_key()), "-b", str(batch), f"{USER}@{HOST}"],
                       capture_output=True, timeout=120, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert sha256_file(tmp_path / "down.bin") == sha256_file(src)
    assert sha256_file(srv.backing("up.bin")) == sha256_file(src)
    shown = f"[{client}]:40022" if ":" in client else f"{client}:40022"
    lines = login_line(srv, shown)
    assert len(lines) == 1 and " via=127.0.0.1:" in lines[0], srv.log()


def test_headers_of_both_versions_and_the_balancers_own_connections(ferry_factory):
    """paramiko behind hand-made headers: v1 sent in pieces, v2 with a TLV,
    v2 LOCAL (the balancer itself: its own address, no "via"). A plain TCP
    check that connects and closes is not worth a log line."""
    srv = ferry_factory("--proxy-protocol", "127.0.0.0/8", "-vv")
    for head, split, shown in [
        (v1("203.0.113.8", 1111), True, "203.0.113.8:1111"),
        (v2("203.0.113.9", 2222, tlv=b"\x05\x00\x03abc"), False, "203.0.113.9:2222"),
        (v2("2001:db8::9", 3333), True, "[2001:db8::9]:3333"),
        (v2(local=True), False, "127.0.0.2:"),
    ]:
        t = through(srv.port, head, source="127.0.0.2", split=split)
        c = paramiko.SFTPClient.from_transport(t)
        assert c.listdir("/") == []
        t.close()
        assert wait_until(lambda: login_line(srv, shown), timeout=10), (shown, srv.log())
    assert "via" not in login_line(srv, "127.0.0.2:")[0]
    s = socket.create_connection((HOST, srv.port))
    s.close()
    assert wait_until(lambda: "closed before sending a PROXY header" in srv.log(), timeout=10)
    assert not [l for l in srv.log().splitlines() if "PROXY" in l and " DEBUG " not in l]


@pytest.mark.parametrize("first, why", [
    (b"SSH-2.0-OpenSSH_9.6\r\n", "not a PROXY protocol header"),
    (b"PROXY TCP4 203.0.113.7 127.0.0.1 1 22\n", "not ended by CRLF"),
    (b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 22\r\n", "is not a port"),
    (SIG + b"\x21\x11\x00\x04abcd", "cut short"),
    (b"PROXY TCP4 203.0.113", "cut short"),
], ids=["ssh-directly", "lf", "port", "v2-short", "closed-mid-way"])
def test_a_balancer_connection_without_a_valid_header_is_closed(ferry_factory, first, why):
    srv = ferry_factory("--proxy-protocol", "127.0.0.1")
    s = socket.create_connection((HOST, srv.port), timeout=10)
    s.sendall(first)
    if why == "cut short" and not first.startswith(SIG):
        s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    s.close()
    # Nothing sent before the header is read: not even the version line.
    assert got == b""
    assert wait_until(lambda: why in srv.log(), timeout=10), srv.log()


def test_penalties_and_limits_follow_the_client_not_the_balancer(ferry_factory):
    """Wrong passwords from one client behind the balancer get that client
    refused (with sshd's one line); another client behind the same
    balancer, and the balancer's own connections, are not. The per-source
    startup cap counts clients, not the balancer: 6 idle connections of
    one client fill its 5, while others still get in."""
    srv = ferry_factory("--proxy-protocol", "127.0.0.1", "--per-source-penalties",
                        "authfail:30s min:10s", "--per-source-max-startups", "5")
    guesser = "203.0.113.66"
    with pytest.raises(paramiko.AuthenticationException):
        through(srv.port, v1(guesser, 5000), password="wrong")
    s = socket.create_connection((HOST, srv.port), timeout=10)
    s.sendall(v1(guesser, 6000))
    assert s.recv(100).startswith(b"Not allowed at this time")
    s.close()
    t = through(srv.port, v1("203.0.113.67", 7000))
    t.close()
    t = through(srv.port, v2(local=True))
    t.close()
    held = []
    try:
        for i in range(5):
            s = socket.create_connection((HOST, srv.port), timeout=10)
            s.sendall(v1("203.0.113.80", 8000 + i))
            assert s.recv(100).startswith(b"SSH-2.0-")
            held.append(s)
        s = socket.create_connection((HOST, srv.port), timeout=10)
        s.sendall(v1("203.0.113.80", 8100))
        assert s.recv(100).startswith(b"Too many")
        s.close()
        t = through(srv.port, v1("203.0.113.81", 8200))
        t.close()
    finally:
        for s in held:
            s.close()
    assert "203.0.113.66" in srv.log() and "source penalised" in srv.log()


def test_other_sources_cannot_claim_an_address(ferry_factory):
    """A header from an address not in the list is not a header: russh
    refuses it as a bad version line, so such a client gets in under no
    address at all."""
    srv = ferry_factory("--proxy-protocol", "127.0.0.5", "-vv")
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        through(srv.port, v1("203.0.113.7", 1), source="127.0.0.2").close()
    assert wait_until(lambda: "invalid SSH version string peer=127.0.0.2:" in srv.log())
    assert "203.0.113.7" not in srv.log()
    # And a direct client from elsewhere is served as before.
    t = through(srv.port, b"", source="127.0.0.2")
    t.close()
    assert wait_until(lambda: login_line(srv, "127.0.0.2:"), timeout=10)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "balancer", "10.0.0.1,,x"])
def test_bad_balancer_lists_exit_2(tmp_path, value):
    assert "--proxy-protocol" in usage_error(tmp_path, ["--proxy-protocol", value])
