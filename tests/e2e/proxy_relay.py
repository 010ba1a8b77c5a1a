"""A load balancer in miniature, for OpenSSH's ProxyCommand: connect to
HOST:PORT, send a PROXY protocol header saying the client is SRC_IP:SRC_PORT,
then relay standard input and output both ways.

    proxy_relay.py HOST PORT v1|v2 SRC_IP SRC_PORT
"""

import ipaddress
import os
import selectors
import socket
import struct
import sys

SIG = b"\r\n\r\n\0\r\nQUIT\n"


def header(version, src, sport, dst, dport):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if version == "v1":
        proto = "TCP4" if s.version == 4 else "TCP6"
        return f"PROXY {proto} {s} {d} {sport} {dport}\r\n".encode()
    fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack(">HH", sport, dport)
    return SIG + bytes([0x21, fam]) + struct.pack(">H", len(body)) + body


def main():
    host, port, version, src, sport = sys.argv[1:6]
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.settimeout(None)
    dst = "::1" if ":" in src else host
    sock.sendall(header(version, src, int(sport), dst, int(port)))
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    open_in = True
    while True:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    sel.unregister(0)
                    sock.shutdown(socket.SHUT_WR)
                    open_in = False
                else:
                    sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    n = os.write(1, view)
                    view = view[n:]
        if not open_in and not sel.get_map():
            return


if __name__ == "__main__":
    main()
