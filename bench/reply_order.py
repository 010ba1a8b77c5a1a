#!/usr/bin/env python3
"""What ordering every reply of a session would cost: the wait of a STAT
sent behind a file's READs, by a client that reads its channel at a given
speed (a link of that bandwidth), for each Ferry binary given.

One session (paramiko transport, raw SFTP packets) opens a 64 MiB file,
sends 64 READs of 255 KiB without waiting (as OpenSSH's and sshfs's
read-ahead do), then a STAT of another file, and drains its channel at
--mbps. Reported: the time from sending the STAT to its reply, and to the
last READ's reply. A server that answers every reply in request order
holds the STAT until the 16 MiB before it have crossed the link; one that
orders only each handle's replies answers it at once.

    cargo build --release -p ferry
    python3 bench/reply_order.py --ferry target/release/ferry [--ferry OTHER] [--mbps 80]

Everything binds 127.0.0.1 and stops by itself.
"""

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import paramiko

HOST = "127.0.0.1"
READ, OPEN, STAT, INIT = 5, 3, 17, 1
READ_LEN = 255 * 1024


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def string(b):
    return struct.pack(">I", len(b)) + b


def packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


class Reader:
    """Reads whole packets from a channel, at most `rate` bytes a second."""

    def __init__(self, ch, rate):
        self.ch, self.rate, self.buf = ch, rate, b""
        self.start = time.monotonic()
        self.got = 0

    def packet(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return p[0], struct.unpack(">I", p[1:5])[0], p
            if self.rate:
                # Keep to the link's speed: sleep until the bytes read so far
                # would have arrived.
                due = self.start + self.got / self.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            chunk = self.ch.recv(32768)
            if not chunk:
                raise EOFError("channel closed")
            self.got += len(chunk)
            self.buf += chunk


def one_run(port, rate):
    t = paramiko.Transport((HOST, port))
    t.connect(username="bench", password="bench")
    ch = t.open_session()
    ch.invoke_subsystem("sftp")
    ch.settimeout(60)
    r = Reader(ch, 0)
    ch.sendall(packet(INIT, struct.pack(">I", 3)))
    r.packet()
    ch.sendall(packet(OPEN, struct.pack(">I", 1) + string(b"/big.bin") + struct.pack(">II", 1, 0)))
    _, _, p = r.packet()
    handle = p[9:9 + struct.unpack(">I", p[5:9])[0]]
    reqs = b"".join(packet(READ, struct.pack(">I", 100 + i) + string(handle) +
                           struct.pack(">QI", i * READ_LEN, READ_LEN)) for i in range(64))
    ch.sendall(reqs)
    sent = time.monotonic()
    ch.sendall(packet(STAT, struct.pack(">I", 999) + string(b"/small.txt")))
    r = Reader(ch, rate)
    stat_at = last_at = None
    for _ in range(65):
        _, rid, _ = r.packet()
        now = time.monotonic() - sent
        if rid == 999:
            stat_at = now
        last_at = now
    t.close()
    return stat_at, last_at


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ferry", action="append", required=True, help="a ferry binary (repeatable)")
    ap.add_argument("--mbps", type=float, default=80, help="the client's link, Mbit/s (default 80)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rate = args.mbps * 1e6 / 8
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        root = os.path.join(d, "root")
        os.mkdir(root)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(os.urandom(64 << 20))
        with open(os.path.join(root, "small.txt"), "wb") as f:
            f.write(b"x")
        print(f"client link {args.mbps:g} Mbit/s; 64 READs of 255 KiB, then a STAT; "
              f"medians of {args.rounds}")
        for binary in args.ferry:
            port = free_port()
            srv = subprocess.Popen([binary, "serve", "sftp", root, "--addr", f"{HOST}:{port}",
                                    "--user", "bench", "--pass", "bench",
                                    "--cache-dir", os.path.join(d, f"cache{port}")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(100):
                    try:
                        socket.create_connection((HOST, port), 0.2).close()
                        break
                    except OSError:
                        time.sleep(0.05)
                runs = [one_run(port, rate) for _ in range(args.rounds)]
            finally:
                srv.terminate()
                srv.wait(10)
            stat = statistics.median(s for s, _ in runs)
            last = statistics.median(x for _, x in runs)
            print(f"{binary}: STAT answered after {stat * 1000:.0f} ms, "
                  f"last READ after {last * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
