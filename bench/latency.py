#!/usr/bin/env python3
"""Ferry against `rclone serve sftp` on a high-latency S3 backend.

The requirement it checks: with 20 ms added to every backend request, a
single OpenSSH `sftp get` of a 256 MiB file runs at least 5x faster through
Ferry than through `rclone serve sftp` on the same backend.

What it does, all on 127.0.0.1:

- starts Garage (a real S3 server, single node, data on tmpfs) and uploads
  one random object to it directly with `rclone copyto`;
- puts a delay proxy in front of Garage: an asyncio TCP relay that holds
  every chunk going from a client to Garage for `--latency-ms` before
  passing it on, in order and without serialising (each chunk is stamped on
  arrival and sent when its time comes, so pipelined and concurrent
  requests all pay the delay once, side by side, as over a long link;
  responses pass at once). It counts the HTTP requests and bytes each
  server makes through it;
- for each round, in alternating order, starts `rclone serve sftp` and
  `ferry serve sftp` on the same on-the-fly remote
  (`:s3,provider=Other,endpoint=PROXY,...:BUCKET`), times one OpenSSH
  `sftp -b` batch `get` of the object into tmpfs, checks its sha256 and
  stops the server (every round starts cold).

It prints each run, the medians and the ratio rclone/ferry of the median
times (>= 5 meets the requirement), and each server's requests through the
proxy.

    python3 bench/latency.py                      # 3 rounds, 256 MiB, 20 ms
    python3 bench/latency.py --latency-ms 0       # the same without delay
    python3 bench/latency.py --size 64M --rounds 1 --json out.json

docs/benchmarks.md ("High-latency backend") has the recorded results. Needs
python3, openssh-client, rclone, Garage (scripts/install-test-deps.sh puts it
in $FERRY_TOOLS_DIR/garage/bin/garage, default ~/.cache/ferry-test-tools)
and a release build of Ferry (built here with `cargo build --release -p
ferry` when missing and no other cargo is running).
"""

import argparse
import asyncio
import collections
import datetime
import hashlib
import json
import os
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# Shared with the main benchmark (same directory).
from run import first_line, free_port, machine_info, note, sha256_file, tail  # noqa: E402

MiB = 1 << 20
HOST = "127.0.0.1"
CLK = os.sysconf("SC_CLK_TCK")
TARGETS = ("rclone", "ferry")
BENCH_USER = "bench"
BUCKET = "bench"
OBJECT = "latency/big.bin"
REGION = "garage"
TARGET_RATIO = 5.0

# The relay reads this much at a time. Chunks wait in a queue per
# direction: up to DELAYED_CHUNKS of them while they serve their delay (at
# 20 ms that allows 3 GB/s), else a few, so that a slow reader slows the
# sender as TCP would and an aborted download is not read far ahead.
CHUNK = 256 * 1024
DELAYED_CHUNKS = 256
UNDELAYED_CHUNKS = 4
# A request head longer than this is not HTTP we understand: stop counting.
MAX_HEAD = 64 * 1024


# ---------------------------------------------------------------------------
# processes we start: each in its own process group, all stopped at exit

STARTED = []  # Popen objects of long-running processes (servers, Garage)


def spawn(argv, log, env):
    with open(log, "ab") as lf:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
    STARTED.append(p)
    return p


def stop(p, grace=5.0):
    """SIGTERM the process group of p, SIGKILL it after `grace` seconds."""
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # also whatever the process left behind in its group
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    if p in STARTED:
        STARTED.remove(p)


def run(argv, env, timeout, log=None):
    """Run a command to completion in its own process group. Returns
    (exit status or "timeout", seconds, output)."""
    t0 = time.perf_counter()
    with (open(log, "w+b") if log else tempfile.TemporaryFile()) as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        STARTED.append(p)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        secs = time.perf_counter() - t0
        stop(p, grace=1)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return rc, secs, text


def must(argv, env, timeout, what):
    rc, _, text = run(argv, env, timeout)
    if rc != 0:
        raise RuntimeError(f"{what} failed ({rc}): {' '.join(map(shlex.quote, map(str, argv)))}\n"
                           + last_lines(text))
    return text


def last_lines(text, n=8):
    return "\n".join(text.strip().splitlines()[-n:])


def wait_until(check, proc, log, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with status {proc.returncode}:\n{tail(log)}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s:\n{tail(log)}")


def ssh_banner(port):
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.settimeout(5)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def port_open(port):
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


def cpu_seconds(pid):
    """utime + stime of a running process (and its reaped children)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return 0.0
    fields = s[s.rfind(b")") + 2:].split()
    return sum(int(x) for x in fields[11:15]) / CLK


def self_cpu_seconds(who=resource.RUSAGE_SELF):
    """CPU of this script (the delay proxy, nearly all of it during a run),
    or with RUSAGE_CHILDREN of the commands it has waited for."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def machine_busy():
    """Busy CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK  # user nice system irq softirq


def parse_size(text):
    """`268435456`, `256M`, `256MiB`, `1G`: binary multiples."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M)")
    n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]
    if n <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return n


def size_text(n):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------
# the delay proxy

class Counts:
    """What went through one proxy since the last reset."""

    def __init__(self):
        self.open_now = 0
        self.reset()

    def reset(self):
        """Start counting afresh. Connections already open stay open (and
        their later requests count): clients keep their pools between runs."""
        self.connections = 0
        self.peak_open = self.open_now
        self.requests = collections.Counter()  # by method
        self.ranged_gets = 0
        self.range_bytes = 0      # sum of the closed ranges asked for
        self.ranges = set()       # distinct (first, last) byte ranges asked for
        self.open_ranges = 0      # "bytes=N-" ranges, to the end
        self.unparsed = 0         # connections whose requests we stopped counting
        self.up_bytes = 0         # client -> store
        self.down_bytes = 0       # store -> client

    def summary(self):
        total = sum(self.requests.values())
        return {"requests": total, "by_method": dict(sorted(self.requests.items())),
                "ranged_gets": self.ranged_gets,
                "mean_range_kib": (round(self.range_bytes / (self.ranged_gets - self.open_ranges) / 1024, 1)
                                   if self.ranged_gets > self.open_ranges else None),
                "distinct_ranges": len(self.ranges),
                "open_ended_ranges": self.open_ranges, "connections": self.connections,
                "peak_open_connections": self.peak_open, "up_bytes": self.up_bytes,
                "down_bytes": self.down_bytes, "unparsed_connections": self.unparsed}


class RequestCounter:
    """Follows the HTTP/1.1 requests of one connection (client -> store) to
    count them: the head up to the blank line, then Content-Length bytes of
    body. Anything it cannot follow (chunked bodies) stops the counting for
    that connection and is reported as unparsed."""

    def __init__(self, counts):
        self.counts = counts
        self.head = bytearray()
        self.body_left = 0
        self.lost = False

    def feed(self, data):
        if self.lost:
            return
        view = memoryview(data)
        while len(view):
            if self.body_left:
                take = min(self.body_left, len(view))
                self.body_left -= take
                view = view[take:]
                continue
            self.head += view
            view = view[len(view):]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    self.give_up()
                return
            rest = bytes(self.head[end + 4:])
            if not self.request(bytes(self.head[:end])):
                self.give_up()
                return
            self.head = bytearray()
            view = memoryview(rest)

    def request(self, head):
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return False
        method = parts[0].decode("ascii", "replace")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return False
        try:
            self.body_left = int(headers.get(b"content-length", b"0"))
        except ValueError:
            return False
        c = self.counts
        c.requests[method] += 1
        rng = headers.get(b"range")
        if method == "GET" and rng:
            c.ranged_gets += 1
            m = re.fullmatch(rb"bytes=(\d+)-(\d*)", rng)
            if m and m.group(2):
                c.range_bytes += int(m.group(2)) - int(m.group(1)) + 1
                c.ranges.add((int(m.group(1)), int(m.group(2))))
            else:
                c.open_ranges += 1
        return True

    def give_up(self):
        self.lost = True
        self.counts.unparsed += 1


class DelayProxy:
    """A TCP relay from 127.0.0.1:port to the store that delays every chunk
    from the client by `delay` seconds. Runs on the Relay's event loop."""

    def __init__(self, upstream_port, delay):
        self.upstream_port = upstream_port
        self.delay = delay
        self.counts = Counts()
        self.tasks = set()
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self.handle, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self):
        self.server.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def handle(self, creader, cwriter):
        task = asyncio.current_task()
        self.tasks.add(task)
        swriter = None
        c = self.counts
        try:
            sreader, swriter = await asyncio.open_connection(HOST, self.upstream_port)
            c.connections += 1
            c.open_now += 1
            c.peak_open = max(c.peak_open, c.open_now)
            try:
                counter = RequestCounter(c)
                up = asyncio.ensure_future(self.pump(creader, swriter, self.delay, counter.feed, "up_bytes"))
                down = asyncio.ensure_future(self.pump(sreader, cwriter, 0.0, None, "down_bytes"))
                # When either side is done (closed or failed) the exchange is
                # over: HTTP clients do not half-close and wait for more.
                done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                for t in pending:
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
            finally:
                c.open_now -= 1
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (cwriter, swriter):
                if w is not None:
                    w.close()
            self.tasks.discard(task)

    async def pump(self, reader, writer, delay, on_data, counter):
        """Copy reader to writer, each chunk `delay` after it arrived."""
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue(maxsize=DELAYED_CHUNKS if delay else UNDELAYED_CHUNKS)

        async def receive():
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
                setattr(self.counts, counter, getattr(self.counts, counter) + len(data))
                if on_data is not None:
                    on_data(data)

        async def send():
            while True:
                due, data = await queue.get()
                if not data:
                    return
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        rx = asyncio.ensure_future(receive())
        try:
            await send()
        finally:
            rx.cancel()
            await asyncio.gather(rx, return_exceptions=True)


class Relay:
    """An asyncio event loop on its own thread, hosting the proxies."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="delay-proxy", daemon=True)
        self.thread.start()
        self.proxies = []

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def proxy(self, upstream_port, delay):
        p = DelayProxy(upstream_port, delay)
        self.call(p.start())
        self.proxies.append(p)
        return p

    def reset(self, p):
        async def fresh():
            p.counts.reset()
        self.call(fresh())

    def snapshot(self, p):
        async def read():
            return p.counts.summary()
        return self.call(read())

    def close(self):
        for p in self.proxies:
            try:
                self.call(p.close(), timeout=10)
            except Exception:  # best effort at exit
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


# ---------------------------------------------------------------------------
# Garage

GARAGE_TOML = """\
metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "{host}:{rpc}"
rpc_public_addr = "{host}:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "{host}:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "{host}:{admin}"
admin_token = "{token}"
"""


class Garage:
    def __init__(self, binary, d, env):
        self.bin, self.dir, self.env = binary, d, env
        self.s3_port, self.rpc_port, self.admin_port = free_port(), free_port(), free_port()
        self.cfg = os.path.join(d, "garage.toml")
        self.log = os.path.join(d, "garage.log")
        self.proc = None

    def cli(self, *args):
        return must([self.bin, "-c", self.cfg, *args], self.env, 60, f"garage {args[0]}")

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.cfg, "w") as f:
            f.write(GARAGE_TOML.format(dir=self.dir, host=HOST, rpc=self.rpc_port, s3=self.s3_port,
                                       admin=self.admin_port, region=REGION,
                                       secret=secrets.token_hex(32), token=secrets.token_hex(16)))
        os.chmod(self.cfg, 0o600)
        env = dict(self.env, RUST_LOG="garage=warn")
        self.proc = spawn([self.bin, "-c", self.cfg, "server"], self.log, env)
        wait_until(lambda: port_open(self.rpc_port), self.proc, self.log, "garage")
        wait_until(lambda: run([self.bin, "-c", self.cfg, "status"], self.env, 30)[0] == 0,
                   self.proc, self.log, "garage status")
        node = self.cli("node", "id", "-q").strip().splitlines()[-1].split("@")[0]
        self.cli("layout", "assign", "-z", "dc1", "-c", "1G", node)
        self.cli("layout", "apply", "--version", "1")
        self.cli("bucket", "create", BUCKET)
        out = self.cli("key", "create", "bench-key")
        key_id = re.search(r"Key ID:\s*(\S+)", out)
        secret = re.search(r"Secret key:\s*(\S+)", out)
        if not (key_id and secret):
            raise RuntimeError(f"garage key create printed no key:\n{out}")
        self.key_id, self.secret = key_id.group(1), secret.group(1)
        self.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "bench-key")

    def remote(self, port, path=""):
        """rclone's on-the-fly S3 remote for this store at 127.0.0.1:port
        (Garage itself or a proxy in front of it)."""
        return (f":s3,provider=Other,endpoint='http://{HOST}:{port}',access_key_id={self.key_id},"
                f"secret_access_key={self.secret},region={REGION},force_path_style=true:{path}")


# ---------------------------------------------------------------------------
# the benchmark

SSH_CONFIG = """\
Host *
  HostName {host}
  IdentityFile {key}
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile {known}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  UpdateHostKeys no
  BatchMode yes
  Compression no
  ControlMaster no
  ControlPath none
  ConnectTimeout 20
  LogLevel ERROR
"""


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = None
        self.relay = None
        self.garage = None
        self.password = secrets.token_hex(16)

    def setup(self):
        a = self.args
        need = 2 * a.size + 128 * MiB  # the object in Garage and one download
        base = a.workdir
        if base is None:
            st = os.statvfs("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
            if st is None or st.f_bavail * st.f_frsize < need + 512 * MiB:
                raise RuntimeError(f"/dev/shm is missing or has less than {size_text(need + 512 * MiB)} "
                                   "free; give --workdir")
            base = "/dev/shm"
        self.tmp = tempfile.mkdtemp(prefix="ferry-latency-", dir=base)
        self.home = os.path.join(self.tmp, "home")
        self.dl = os.path.join(self.tmp, "dl")
        self.logs = os.path.join(self.tmp, "logs")
        for d in (self.home, self.dl, self.logs):
            os.makedirs(d)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RCLONE_", "FERRY_")) and k not in
               ("AWS_CA_BUNDLE", "SSH_AUTH_SOCK", "SSH_ASKPASS", "DISPLAY")}
        empty_conf = os.path.join(self.tmp, "empty.conf")
        open(empty_conf, "w").close()
        env.update(LC_ALL="C", HOME=self.home, XDG_CACHE_HOME=os.path.join(self.home, ".cache"),
                   XDG_CONFIG_HOME=os.path.join(self.home, ".config"), RCLONE_CONFIG=empty_conf)
        self.env = env
        self.hostkey = os.path.join(self.tmp, "host_ed25519")
        self.ckey = os.path.join(self.tmp, "client_ed25519")
        for k in (self.hostkey, self.ckey):
            must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-latency", "-f", k], env, 30,
                 "ssh-keygen")
        self.authkeys = os.path.join(self.tmp, "authorized_keys")
        shutil.copyfile(self.ckey + ".pub", self.authkeys)
        with open(self.hostkey + ".pub") as f:
            self.hostkey_line = " ".join(f.read().split()[:2])
        self.known = os.path.join(self.tmp, "known_hosts")
        self.ssh_cfg = os.path.join(self.tmp, "ssh_config")
        with open(self.ssh_cfg, "w") as f:
            f.write(SSH_CONFIG.format(host=HOST, key=self.ckey, known=self.known))

        t0 = time.monotonic()
        self.garage = Garage(a.garage, os.path.join(self.tmp, "garage"), env)
        self.garage.start()
        rclone_flags = ["--low-level-retries", "1", "--retries", "1", "--contimeout", "20s", "--timeout", "60s"]
        wait_until(lambda: run([a.rclone, *rclone_flags, "lsf", self.garage.remote(self.garage.s3_port, BUCKET)],
                               env, 60)[0] == 0, self.garage.proc, self.garage.log, "garage S3 API")
        note(f"garage ready in {time.monotonic() - t0:.1f} s (S3 on port {self.garage.s3_port})")

        t0 = time.monotonic()
        src = os.path.join(self.tmp, "upload.bin")
        h = hashlib.sha256()
        with open(src, "wb") as f:
            left = a.size
            while left:
                b = os.urandom(min(left, 4 * MiB))
                h.update(b)
                f.write(b)
                left -= len(b)
        self.digest = h.hexdigest()
        must([a.rclone, *rclone_flags, "copyto", src, self.garage.remote(self.garage.s3_port, f"{BUCKET}/{OBJECT}")],
             env, a.timeout, "upload to garage")
        os.unlink(src)
        note(f"uploaded {size_text(a.size)} to s3://{BUCKET}/{OBJECT} in {time.monotonic() - t0:.1f} s")

        self.relay = Relay()
        self.proxy = self.relay.proxy(self.garage.s3_port, a.latency_ms / 1000)
        self.remote = self.garage.remote(self.proxy.port, BUCKET)
        note(f"delay proxy on port {self.proxy.port}: +{a.latency_ms:g} ms per client->store chunk")

    def server_argv(self, target, port):
        common = ["--addr", f"{HOST}:{port}", "--user", BENCH_USER, "--pass", self.password,
                  "--authorized-keys", self.authkeys, "--key", self.hostkey]
        if target == "rclone":
            return [self.args.rclone, "serve", "sftp", self.remote, *common]
        return [self.args.ferry, "serve", "sftp", self.remote, *common,
                "--cache-dir", os.path.join(self.tmp, "ferry-cache")]

    def shown(self, argv, port):
        """The command line for the report, without secrets or ports."""
        text = " ".join(shlex.quote(os.path.relpath(x) if x == self.args.ferry else x) for x in argv)
        for secret, shown in ((self.tmp, "<tmp>"), (self.password, "<random>"),
                              (self.garage.secret, "<secret>"), (self.garage.key_id, "<key>"),
                              (f"{HOST}:{self.proxy.port}", f"{HOST}:<proxy>"),
                              (f"{HOST}:{port}", f"{HOST}:<port>")):
            text = text.replace(secret, shown)
        return text

    def measure(self, target, rnd):
        """One cold server, one timed `sftp get`, then the check."""
        tag = f"{target}-r{rnd}"
        port = free_port()
        argv = self.server_argv(target, port)
        self.commands[target] = self.shown(argv, port)
        log = os.path.join(self.logs, f"server-{tag}.log")
        out = os.path.join(self.dl, f"{tag}.bin")
        rec = {"round": rnd, "target": target, "ok": False, "seconds": None, "error": None}
        srv = spawn(argv, log, self.env)
        try:
            wait_until(lambda: ssh_banner(port), srv, log, f"{target} serve sftp")
            with open(self.known, "w") as f:
                f.write(f"[{HOST}]:{port} {self.hostkey_line}\n")
            time.sleep(self.args.settle)  # let start-up requests (a first listing) finish
            self.relay.reset(self.proxy)
            cpu0, proxy0, garage0 = cpu_seconds(srv.pid), self_cpu_seconds(), cpu_seconds(self.garage.proc.pid)
            client0, busy0 = self_cpu_seconds(resource.RUSAGE_CHILDREN), machine_busy()
            batch = os.path.join(self.tmp, f"batch-{tag}.txt")
            with open(batch, "w") as f:
                f.write(f"get {OBJECT} {out}\n")
            rc, secs, text = run(["sftp", "-F", self.ssh_cfg, "-P", str(port), "-b", batch, f"{BENCH_USER}@{HOST}"],
                                 self.env, self.args.timeout, os.path.join(self.logs, f"sftp-{tag}.log"))
            rec["proxy"] = self.relay.snapshot(self.proxy)
            rec["seconds"] = round(secs, 3)
            rec["server_cpu_s"] = round(cpu_seconds(srv.pid) - cpu0, 2)
            rec["proxy_cpu_s"] = round(self_cpu_seconds() - proxy0, 2)
            rec["garage_cpu_s"] = round(cpu_seconds(self.garage.proc.pid) - garage0, 2)
            rec["client_cpu_s"] = round(self_cpu_seconds(resource.RUSAGE_CHILDREN) - client0, 2)
            ours = rec["server_cpu_s"] + rec["proxy_cpu_s"] + rec["garage_cpu_s"] + rec["client_cpu_s"]
            rec["other_load"] = round(max(0.0, machine_busy() - busy0 - ours) / secs, 2)
            if rc == "timeout":
                rec["error"] = f"sftp timed out after {self.args.timeout:g} s"
            elif rc != 0:
                rec["error"] = f"sftp exit {rc}: {last_lines(text, 3)}"
            elif srv.poll() is not None:
                rec["error"] = f"server exited ({srv.returncode}) during the run"
            elif not os.path.isfile(out) or os.path.getsize(out) != self.args.size:
                got = os.path.getsize(out) if os.path.isfile(out) else "no file"
                rec["error"] = f"downloaded {got} bytes, expected {self.args.size}"
            elif sha256_file(out) != self.digest:
                rec["error"] = "sha256 of the download differs"
            else:
                rec["ok"] = True
        except RuntimeError as e:
            rec["error"] = str(e)
        finally:
            stop(srv)
            if os.path.lexists(out):
                os.unlink(out)
        return rec

    def run(self):
        a = self.args
        started = datetime.datetime.now(datetime.timezone.utc)
        load0 = os.getloadavg()[0]
        self.setup()
        self.commands = {}
        runs = []
        t_run = time.monotonic()
        for r in range(a.rounds):
            order = TARGETS if r % 2 == 0 else TARGETS[::-1]
            for target in order:
                rec = self.measure(target, r + 1)
                runs.append(rec)
                shown = f"{rec['seconds']:.2f} s" if rec["seconds"] is not None else "-"
                px = rec.get("proxy") or {}
                status = "ok" if rec["ok"] else f"FAIL: {rec['error']}"
                note(f"[round {r + 1}/{a.rounds}] {target:<7} {shown:>9}  {px.get('requests', '-')} requests "
                     f"({px.get('ranged_gets', '-')} ranged GETs), {px.get('connections', '-')} connections  "
                     f"{status}")
        return self.summarize(runs, started, load0, time.monotonic() - t_run)

    def summarize(self, runs, started, load0, run_s):
        a = self.args
        per = {}
        for t in TARGETS:
            mine = [x for x in runs if x["target"] == t]
            good = [x for x in mine if x["ok"]]
            d = {"ok": bool(mine) and len(good) == len(mine)}
            if good:
                secs = [x["seconds"] for x in good]
                med = statistics.median(secs)
                d.update(median_s=med, min_s=min(secs), max_s=max(secs),
                         mb_per_s=round(a.size / med / 1e6, 1),
                         median_requests=statistics.median(x["proxy"]["requests"] for x in good))
            per[t] = d
        ratio = None
        if per["rclone"].get("median_s") and per["ferry"].get("median_s"):
            ratio = round(per["rclone"]["median_s"] / per["ferry"]["median_s"], 2)
        failures = [f"{x['target']} round {x['round']}: {x['error']}" for x in runs if not x["ok"]]
        return {
            "tool": "ferry bench/latency.py", "started_utc": started.isoformat(timespec="seconds"),
            "run_seconds": round(run_s, 1), "rounds": a.rounds, "size_bytes": a.size,
            "latency_ms": a.latency_ms, "machine": machine_info(),
            "load_avg": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
            "versions": {"openssh": first_line(["ssh", "-V"]), "rclone": first_line([a.rclone, "version"]),
                         "ferry": first_line([a.ferry, "version"]), "garage": first_line([a.garage, "--version"])},
            "servers": self.commands, "runs": runs, "targets": per,
            "ratio_rclone_over_ferry": ratio, "target_ratio": TARGET_RATIO,
            "meets_target": ratio is not None and ratio >= TARGET_RATIO and not failures,
            "failures": failures,
        }

    def cleanup(self):
        for p in list(STARTED):
            stop(p, grace=2)
        if self.relay is not None:
            self.relay.close()
        if self.tmp:
            if self.args.keep:
                note(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# report

def markdown(rep):
    m = rep["machine"]
    L = ["## bench/latency.py results", ""]
    L.append(f"- started {rep['started_utc']}, {rep['run_seconds']:.0f} s of runs, {rep['rounds']} round(s), "
             f"order alternating; one `sftp -b` get of a {size_text(rep['size_bytes'])} object, "
             f"+{rep['latency_ms']:g} ms per request to Garage; MB = 10^6 bytes")
    L.append(f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, kernel {m['kernel']}; "
             f"load average {rep['load_avg']['start']} at start, {rep['load_avg']['end']} at end")
    L.append("- versions: " + "; ".join(f"{k} {v}" for k, v in rep["versions"].items()))
    for t, cmd in rep["servers"].items():
        L.append(f"- `{t}`: `{cmd}`")
    L += ["", "| round | target | seconds | MB/s | requests | by method | ranged GETs (mean KiB) "
          "| distinct ranges | connections (peak open) | MiB up / down | CPU s: server, proxy, Garage, client "
          "| other load | ok |",
          "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|:-:|"]
    for x in rep["runs"]:
        px = x.get("proxy") or {}
        secs = x["seconds"]
        rate = f"{rep['size_bytes'] / secs / 1e6:.1f}" if secs and x["ok"] else "-"
        meth = ", ".join(f"{k} {v}" for k, v in px.get("by_method", {}).items()) or "-"
        rg = (f"{px['ranged_gets']} ({px['mean_range_kib']})" if px.get("mean_range_kib") is not None
              else str(px.get("ranged_gets", "-")))
        if px.get("open_ended_ranges"):
            rg += f", {px['open_ended_ranges']} open-ended"
        conns = f"{px['connections']} ({px['peak_open_connections']})" if px else "-"
        io = f"{px['up_bytes'] / MiB:.1f} / {px['down_bytes'] / MiB:.1f}" if px else "-"
        if px.get("unparsed_connections"):
            meth += f" (+{px['unparsed_connections']} connections not parsed)"
        L.append(f"| {x['round']} | {x['target']} | {secs if secs is not None else '-'} | {rate} "
                 f"| {px.get('requests', '-')} | {meth} | {rg} | {px.get('distinct_ranges', '-')} | {conns} "
                 f"| {io} | {x.get('server_cpu_s', '-')}, {x.get('proxy_cpu_s', '-')}, {x.get('garage_cpu_s', '-')}, "
                 f"{x.get('client_cpu_s', '-')} | {x.get('other_load', '-')} "
                 f"| {'ok' if x['ok'] else 'FAIL'} |")
    L += ["", "| target | median s | min–max s | MB/s at median | median requests |", "|---|---:|---:|---:|---:|"]
    for t, d in rep["targets"].items():
        if d.get("median_s") is None:
            L.append(f"| {t} | FAIL | - | - | - |")
            continue
        L.append(f"| {t} | {d['median_s']:.2f} | {d['min_s']:.2f}–{d['max_s']:.2f} | {d['mb_per_s']:.1f} "
                 f"| {d['median_requests']:g} |")
    L.append("")
    r = rep["ratio_rclone_over_ferry"]
    verdict = ("meets" if rep["meets_target"] else "does NOT meet")
    L.append(f"rclone/ferry (median time ratio, >1: Ferry is faster): "
             f"{'-' if r is None else f'{r:.2f}x'}; {verdict} the {rep['target_ratio']:g}x target.")
    L.append("Requests and bytes are counted at the delay proxy during the timed `sftp` run only "
             "(after the server's start-up); up = to Garage, down = read from Garage (a GET the "
             "server abandons counts what was read before it closed). Distinct ranges < ranged GETs: "
             "the same range was fetched more than once. CPU = utime+stime over the run of the server "
             "process, of this script (nearly all of it the relay), of Garage and of the sftp client "
             "(with its ssh). Other load = CPU the rest of the machine used meanwhile, in cores: above "
             "~0.3 the run was disturbed.")
    if rep["failures"]:
        L += ["", "Failures:"] + [f"- {f}" for f in rep["failures"]]
    return "\n".join(L)


# ---------------------------------------------------------------------------

def ensure_ferry(path, repo):
    if os.access(path, os.X_OK):
        return
    default = os.path.join(repo, "target", "release", "ferry")
    if os.path.abspath(path) != default:
        raise SystemExit(f"{path} not found or not executable")
    busy = subprocess.run(["pgrep", "-x", "cargo"], capture_output=True, text=True)
    if busy.stdout.strip():
        raise SystemExit(f"{path} is missing and another cargo is running (pid {busy.stdout.split()[0]}); "
                         "build it later with `cargo build --release -p ferry` or give --ferry PATH")
    note("building Ferry: cargo build --release -p ferry")
    r = subprocess.run(["cargo", "build", "--release", "-p", "ferry"], cwd=repo, timeout=3600)
    if r.returncode != 0 or not os.access(path, os.X_OK):
        raise SystemExit("cargo build --release -p ferry failed")


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tools = os.environ.get("FERRY_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ferry-test-tools")
    ap = argparse.ArgumentParser(
        description="Time one OpenSSH `sftp get` through Ferry and through `rclone serve sftp`, both serving "
                    "the same Garage bucket through a proxy that adds latency to every request.",
        epilog="Exit status: 0 ok (whatever the ratio; see meets_target in --json), 1 a check failed or a "
               "run timed out, 2 setup failed, 130 interrupted.")
    ap.add_argument("--ferry", default=os.path.join(repo, "target", "release", "ferry"),
                    help="Ferry binary (default: target/release/ferry, built when missing)")
    ap.add_argument("--rclone", default="rclone", help="rclone binary (server and uploader)")
    ap.add_argument("--garage", default=os.path.join(tools, "garage", "bin", "garage"),
                    help="Garage binary (default: $FERRY_TOOLS_DIR/garage/bin/garage)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each timing both servers (default 3)")
    ap.add_argument("--size", type=parse_size, default=256 * MiB,
                    help="object size: bytes or with K, M, G (binary) (default 256M)")
    ap.add_argument("--latency-ms", type=float, default=20.0,
                    help="delay added to each request to the store, ms (default 20)")
    ap.add_argument("--json", metavar="FILE", help="also write every run and the summary as JSON")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one sftp run may take (default 600)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between a server's start and its run (default 1)")
    ap.add_argument("--workdir", help="parent of the temporary directory (default /dev/shm)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    args = ap.parse_args()
    if args.rounds < 1 or args.latency_ms < 0:
        raise SystemExit("--rounds must be >= 1 and --latency-ms >= 0")

    missing = [t for t in ("sftp", "ssh-keygen", args.rclone) if not shutil.which(t)]
    if not os.access(args.garage, os.X_OK):
        missing.append(f"{args.garage} (scripts/install-test-deps.sh installs Garage)")
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)}")
    ensure_ferry(args.ferry, repo)
    args.ferry = os.path.abspath(args.ferry)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    b = Bench(args)
    rc = 0
    try:
        rep = b.run()
        print(markdown(rep), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rep, f, indent=2)
            note(f"wrote {args.json}")
        rc = 1 if rep["failures"] else 0
    except KeyboardInterrupt as e:
        note(f"interrupted ({e}); stopping everything")
        rc = 130
    except RuntimeError as e:
        note(f"error: {e}")
        rc = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        b.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())
