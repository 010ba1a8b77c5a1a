#!/usr/bin/env python3
"""How closely `--bwlimit` holds: Ferry (and rclone, for comparison) with
the same limit, driven by OpenSSH `sftp`.

For each server and case, a fresh server (its token bucket starts empty, as
rclone's) moves RATE x SECONDS bytes; the achieved rate over the whole
transfer is compared with the limit:

- `upload`: one `sftp put` (TX);
- `download`: one `sftp get` (RX);
- `upload-8`, `download-8`: eight clients at once, each an eighth of the
  bytes (the limit is the sum of all sessions).

    python3 bench/bwlimit.py                    # 1 MiB/s over 10 s
    python3 bench/bwlimit.py --rate-kib 2048 --seconds 5 --targets ferry

Every server binds 127.0.0.1. Results go in docs/benchmarks.md.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
SSH_OPTS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


class Server:
    def __init__(self, target, binary, root, work, key, rate):
        self.port = free_port()
        common = [str(root), "--addr", f"{HOST}:{self.port}",
                  "--authorized-keys", f"{key}.pub", "--bwlimit", rate]
        if target == "ferry":
            cmd = [binary, "serve", "sftp", *common, "--cache-dir", str(work / "cache")]
        else:
            cmd = ["rclone", "serve", "sftp", *common, "--config", "/dev/null",
                   "--cache-dir", str(work / "rcache")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.stop()
            sys.exit(f"{target} did not start: {' '.join(cmd)}")
        # The readiness probe may have been the bucket's first customer:
        # nothing moved, but give the server a moment to settle.
        time.sleep(0.3)

    def sftp(self, key, batch):
        p = subprocess.run(["sftp", *SSH_OPTS, "-i", str(key), "-P", str(self.port), "-b", "-",
                            f"bench@{HOST}"], input=batch, text=True, capture_output=True,
                           timeout=600)
        if p.returncode != 0:
            raise RuntimeError(p.stderr)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_case(target, binary, case, rate_bytes, rate_flag, seconds, work, key):
    root = work / f"root-{target}-{case}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    local = work / f"local-{target}-{case}"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir()
    clients = 8 if case.endswith("-8") else 1
    total = rate_bytes * seconds
    each = total // clients
    upload = case.startswith("upload")
    for i in range(clients):
        data = os.urandom(each)
        (local if upload else root).joinpath(f"f{i}.bin").write_bytes(data)
    srv = Server(target, binary, root, work, key, rate_flag)
    try:
        errors = []

        def one(i):
            try:
                cmd = (f"put {local}/f{i}.bin f{i}.bin\n" if upload
                       else f"get f{i}.bin {local}/f{i}.bin\n")
                srv.sftp(key, cmd)
            except Exception as e:  # reported below
                errors.append(e)

        t0 = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
    finally:
        srv.stop()
    if errors:
        raise errors[0]
    for i in range(clients):
        a, b = local / f"f{i}.bin", root / f"f{i}.bin"
        if a.read_bytes() != b.read_bytes():
            raise RuntimeError(f"{target} {case}: file {i} differs")
    return clients * each / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate-kib", type=int, default=1024, help="the limit, KiB/s")
    ap.add_argument("--seconds", type=int, default=10, help="how long each case should take")
    ap.add_argument("--targets", default="ferry,rclone")
    ap.add_argument("--ferry", default="target/release/ferry")
    ap.add_argument("--cases", default="upload,download,upload-8,download-8")
    args = ap.parse_args()
    rate = args.rate_kib * 1024
    with tempfile.TemporaryDirectory(prefix="ferry-bwlimit-") as tmp:
        work = __import__("pathlib").Path(tmp)
        key = work / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        print(f"--bwlimit {args.rate_kib}k, {args.seconds} s of data per case; "
              f"achieved rate / limit (1.00 = exact)")
        print(f"{'case':<12}" + "".join(f"{t:>10}" for t in args.targets.split(",")))
        for case in args.cases.split(","):
            row = f"{case:<12}"
            for target in args.targets.split(","):
                got = run_case(target, args.ferry, case, rate, f"{args.rate_kib}k",
                               args.seconds, work, key)
                row += f"{got / rate:>10.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
