#!/usr/bin/env python3
"""Memory of many idle sessions: the performance issue's target is 1,000
authenticated SFTP sessions, idle, under 512 MiB for the whole server.

Starts a release Ferry on 127.0.0.1 serving a tmpfs directory with password
login, opens N sessions with paramiko (SSH connection, password login, the
sftp subsystem, one STAT each so the session is really up), then, with all
of them open and idle, reads the server's RSS and PSS from /proc, checks that
the first and the last session still answer, that a new one can still log
in, closes everything and stops the server. Bounded: N sessions (default
1,000), each with a 30 s timeout, the whole run under `--timeout` seconds.

    python3 bench/idle_sessions.py                 # 1,000 sessions
    python3 bench/idle_sessions.py --sessions 200 --json out.json
"""

import argparse
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mem_of(pid):
    """(RSS MiB, PSS MiB) of one process."""
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, pss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--ferry", default=str(REPO / "target" / "release" / "ferry"))
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--json")
    args = ap.parse_args()
    signal.alarm(args.timeout)
    # Every session is a socket here too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.sessions + 100)), hard))

    tmp = Path(tempfile.mkdtemp(prefix="ferry-idle-", dir="/dev/shm"))
    (tmp / "root").mkdir()
    (tmp / "root" / "f").write_bytes(b"x")
    host_key = tmp / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                   check=True, timeout=30)
    password = secrets.token_hex(12)
    port = free_port()
    cmd = [args.ferry, "serve", "sftp", str(tmp / "root"), "--addr", f"127.0.0.1:{port}",
           "--user", "bench", "--pass", password, "--key", str(host_key),
           "--cache-dir", str(tmp / "cache")]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "w"))
    sessions = []
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or srv.poll() is not None:
                    sys.exit("ferry did not start: " + (tmp / "log").read_text())
                time.sleep(0.1)
        base_rss, base_pss = mem_of(srv.pid)
        t0 = time.time()
        for i in range(args.sessions):
            t = paramiko.Transport(socket.create_connection(("127.0.0.1", port), timeout=30))
            t.connect(username="bench", password=password)
            c = paramiko.SFTPClient.from_transport(t)
            c.stat("f")
            sessions.append((t, c))
        opened = time.time() - t0
        time.sleep(2)       # let the server settle
        rss, pss = mem_of(srv.pid)
        # Still answering: the first and the last session, and a new one.
        sessions[0][1].stat("f")
        sessions[-1][1].stat("f")
        t = paramiko.Transport(socket.create_connection(("127.0.0.1", port), timeout=30))
        t.connect(username="bench", password=password)
        paramiko.SFTPClient.from_transport(t).stat("f")
        t.close()
        result = {
            "sessions": args.sessions,
            "open_seconds": round(opened, 1),
            "rss_mib_start": round(base_rss, 1),
            "rss_mib": round(rss, 1),
            "pss_mib": round(pss, 1),
            "kib_per_session": round((rss - base_rss) * 1024 / max(1, args.sessions), 1),
            "target_mib": 512,
            "ok": rss < 512,
        }
    finally:
        for t, _ in sessions:
            t.close()
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(20)
        except subprocess.TimeoutExpired:
            srv.kill()
        subprocess.run(["rm", "-rf", str(tmp)], timeout=60)
    print(f"{result['sessions']} idle sessions (opened in {result['open_seconds']} s): "
          f"server RSS {result['rss_mib']} MiB (PSS {result['pss_mib']} MiB; "
          f"{result['rss_mib_start']} MiB before), {result['kib_per_session']} KiB per session; "
          f"target < 512 MiB: {'met' if result['ok'] else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
