#!/usr/bin/env python3
"""Ferry's end-to-end benchmark.

Starts three SFTP servers on 127.0.0.1, all serving the same directory on
tmpfs, and drives each with stock clients:

- `openssh`: a private sshd (own config, host key and authorized_keys, free
  port, public-key login as the current user) with
  `Subsystem sftp /usr/lib/openssh/sftp-server -d DIR`;
- `rclone`: `rclone serve sftp DIR` (the system's rclone);
- `ferry`: `target/release/ferry serve sftp DIR` (`--ferry` picks the binary).

Every transferred byte is checked (sha256) and a failed check gets no time.
The targets are interleaved in every round, their order rotated round by
round; the report gives the median per case, Ferry's speed relative to the
other two, and each server's CPU seconds and peak memory.

    python3 bench/run.py                 # 3 rounds, default sizes (~4 min)
    python3 bench/run.py --quick         # 1 round, small sizes (~30 s)
    python3 bench/run.py --json out.json --rounds 5 --big-mib 1024

docs/benchmarks.md ("Running the benchmarks") says what each case does and
how CPU and memory are counted. Needs python3, openssh-server,
openssh-client, rclone and (for stat-rtt) paramiko.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import pwd
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

MiB = 1 << 20
HOST = "127.0.0.1"
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TARGETS = ("openssh", "rclone", "ferry")
BENCH_USER = "bench"

# Sizes: (default, --quick). Each is also a command-line option.
SIZES = {
    "big_mib": (256, 32, "size of the get-big / put-big file, MiB"),
    "small_count": (1000, 100, "number of small files"),
    "small_kib": (4, 4, "size of each small file, KiB"),
    "par_clients": (8, 4, "parallel-get: number of clients at once"),
    "par_mib": (32, 8, "parallel-get: size of each client's file, MiB"),
    "stat_count": (1000, 200, "stat-rtt: sequential stats"),
    "connect_count": (10, 3, "connect: sequential sessions"),
    "rclone_mib": (128, 16, "rclone-copy-big: file size, MiB"),
}

SFTP_SERVER_PATHS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                     "/usr/libexec/sftp-server", "/usr/lib/ssh/sftp-server")


def note(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# /proc: process trees, CPU and memory

HAVE_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def children(pid):
    """Direct children of pid (zombies included until they are reaped)."""
    if HAVE_CHILDREN_FILE:
        kids = []
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return kids
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
        return kids
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    s = f.read()
            except OSError:
                continue
            if int(s[s.rfind(b")") + 2:].split()[1]) == pid:
                kids.append(int(name))
    return kids


def tree(root):
    """root and every descendant still in the process table."""
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo.extend(children(p))
    return out


def cpu_ticks(pid):
    """utime + stime + cutime + cstime: the process's own CPU and that of
    every descendant it has reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return 0
    fields = s[s.rfind(b")") + 2:].split()
    return sum(int(x) for x in fields[11:15])


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def pss_bytes(pid):
    """Proportional set size: shared pages split between the processes that
    map them, so a sum over sshd's forks does not count libcrypto 20 times."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_hwm(pid):
    try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def machine_busy():
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK


def rusage_s(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class Monitor:
    """A server's CPU seconds and peak memory over one measured run, and the
    CPU that everything outside the benchmark used meanwhile."""

    def __init__(self, root, interval=0.2):
        self.root, self.interval = root, interval
        self._stop = threading.Event()

    def start(self):
        pids = tree(self.root)
        self.base = set(pids)
        for p in pids:
            reset_hwm(p)
        self.cpu0 = sum(cpu_ticks(p) for p in pids)
        self.busy0 = machine_busy()
        self.self0 = rusage_s(resource.RUSAGE_SELF)
        self.kids0 = rusage_s(resource.RUSAGE_CHILDREN)
        self.t0 = time.monotonic()
        self.peak_rss = self.peak_pss = 0
        self.hwm = {}
        self.max_procs = 0
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self):
        rss = pss = 0
        pids = tree(self.root)
        for p in pids:
            r = rss_bytes(p)
            ps = pss_bytes(p)
            rss += r
            pss += r if ps is None else ps
            h = status_kib(p, "VmHWM:")
            if h > self.hwm.get(p, 0):
                self.hwm[p] = h
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.max_procs = max(self.max_procs, len(pids))

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._sample()
        # Wait for per-connection processes (sshd's) to exit and be reaped:
        # their CPU then shows in the listener's cutime/cstime.
        deadline = time.monotonic() + 5
        while set(tree(self.root)) - self.base and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = tree(self.root)
        wall = time.monotonic() - self.t0
        server = (sum(cpu_ticks(p) for p in pids) - self.cpu0) / CLK
        client = rusage_s(resource.RUSAGE_CHILDREN) - self.kids0
        me = rusage_s(resource.RUSAGE_SELF) - self.self0
        other = max(0.0, machine_busy() - self.busy0 - server - client - me)
        peak_rss = max([self.peak_rss] + list(self.hwm.values()))
        return {"server_cpu_s": round(server, 3), "client_cpu_s": round(client, 3),
                "peak_rss_mib": round(peak_rss / MiB, 1), "peak_pss_mib": round(self.peak_pss / MiB, 1),
                "server_procs": self.max_procs,
                "other_load": round(other / wall, 2) if wall > 0 else 0.0}


# ---------------------------------------------------------------------------
# processes we start; all are stopped at exit, also on Ctrl-C

RUNNING = set()  # client Popen objects in flight


def kill_tree(pid, grace=3.0):
    """SIGTERM pid and its descendants, SIGKILL what is left after `grace`."""
    pids = tree(pid)
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def alive(pid):
    """In the process table and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return False
    return s[s.rfind(b")") + 2:s.rfind(b")") + 3] != b"Z"


def run_clients(argvs, env, logs, timeout):
    """Start every command at once and wait for all. Returns (wall seconds
    until the last one exited, [exit status or "timeout"])."""
    procs = []
    t0 = time.perf_counter()
    for argv, log in zip(argvs, logs):
        with open(log, "wb") as lf:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)
        RUNNING.add(p)
        procs.append(p)
    deadline = t0 + timeout
    results = []
    for p in procs:
        try:
            results.append(p.wait(timeout=max(0.0, deadline - time.perf_counter())))
        except subprocess.TimeoutExpired:
            results.append("timeout")
            kill_tree(p.pid, grace=1)
            p.wait()
    elapsed = time.perf_counter() - t0
    for p in procs:
        RUNNING.discard(p)
    return elapsed, results


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_banner(port, proc, log, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no SSH banner on {HOST}:{port} after {timeout:.0f} s:\n{tail(log)}")


def tail(path, n=12):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError:
        return ""


def first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


# ---------------------------------------------------------------------------
# data

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def random_file(path, size):
    """Write `size` random bytes; returns (size, sha256)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, 4 * MiB))
            h.update(b)
            f.write(b)
            left -= len(b)
    return size, h.hexdigest()


def check_file(path, want):
    size, digest = want
    if not os.path.isfile(path):
        return f"{os.path.basename(path)} is missing"
    if os.path.getsize(path) != size:
        return f"{os.path.basename(path)}: {os.path.getsize(path)} bytes, expected {size}"
    if sha256_file(path) != digest:
        return f"{os.path.basename(path)}: sha256 differs"
    return None


def check_tree(root, want):
    """root must hold exactly the files of `want` ({name: (size, sha256)})."""
    if not os.path.isdir(root):
        return f"directory {os.path.basename(root)} is missing"
    names = set(os.listdir(root))
    if names != set(want):
        return f"{len(set(want) - names)} files missing, {len(names - set(want))} unexpected"
    for name in sorted(want):
        err = check_file(os.path.join(root, name), want[name])
        if err:
            return err
    return None


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def fs_type(path):
    best, kind = "", "unknown"
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


# ---------------------------------------------------------------------------
# servers

SSHD_CONFIG = """\
# private sshd for bench/run.py; removed with its temporary directory
Port {port}
ListenAddress {host}
HostKey {hostkey}
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {authkeys}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {user}
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PermitTTY no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
MaxStartups 64:30:128
MaxSessions 32
LogLevel ERROR
# commands rclone runs (md5sum) must not source the user's shell rc files
SetEnv HOME={home}
Subsystem sftp {subsystem}
"""

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
  Ciphers {cipher}
  KexAlgorithms {kex}
  LogLevel ERROR
"""


class Server:
    def __init__(self, name):
        self.name = name
        self.port = free_port()
        self.proc = None
        self.argv = None
        self.user = BENCH_USER
        self.remote_root = "/"  # prefix of remote paths for the rclone client

    def start(self, b):
        self.log = os.path.join(b.tmp, "logs", f"server-{self.name}.log")
        env = dict(b.env)
        if self.name == "openssh":
            self.user = pwd.getpwuid(os.getuid()).pw_name
            # sshd sessions start in the user's home directory; rclone's
            # md5sum runs there, so give it absolute paths.
            self.remote_root = b.srv + "/"
            sub = (f"internal-sftp -d {b.srv}" if b.args.openssh_sftp == "internal"
                   else f"{b.sftp_server} -d {b.srv}")
            cfg = os.path.join(b.tmp, "sshd_config")
            with open(cfg, "w") as f:
                f.write(SSHD_CONFIG.format(port=self.port, host=HOST, hostkey=b.hostkey, tmp=b.tmp,
                                           authkeys=b.authkeys, user=self.user, home=b.home,
                                           subsystem=sub))
            if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
                os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
                note("created /run/sshd (sshd's privilege separation directory); left in place")
            chk = subprocess.run([b.args.sshd, "-t", "-f", cfg], capture_output=True, text=True)
            if chk.returncode != 0:
                raise RuntimeError(f"sshd -t rejected the config: {chk.stderr.strip()}")
            self.argv = [b.args.sshd, "-D", "-e", "-f", cfg]
        elif self.name == "rclone":
            self.argv = [b.args.rclone, "serve", "sftp", b.srv, "--addr", f"{HOST}:{self.port}",
                         "--user", BENCH_USER, "--pass", b.password, "--authorized-keys", b.authkeys,
                         "--key", b.hostkey]
        else:
            self.argv = [b.ferry, "serve", "sftp", b.srv, "--addr", f"{HOST}:{self.port}",
                         "--user", BENCH_USER, "--pass", b.password, "--authorized-keys", b.authkeys,
                         "--key", b.hostkey, "--cache-dir", os.path.join(b.tmp, "ferry-cache")]
        with open(self.log, "wb") as lf:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_for_banner(self.port, self.proc, self.log)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {e}") from None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            kill_tree(self.proc.pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def shown_command(self, b):
        return " ".join(shlex.quote(a) for a in self.argv).replace(b.tmp, "<tmp>").replace(
            b.password, "<random>")


# ---------------------------------------------------------------------------
# the benchmark

class Case:
    def __init__(self, name, unit, what, fn):
        self.name, self.unit, self.what, self.fn = name, unit, what, fn


class Bench:
    def __init__(self, args):
        self.args = args
        self.sizes = {k: (getattr(args, k) if getattr(args, k) is not None else (q if args.quick else d))
                      for k, (d, q, _) in SIZES.items()}
        self.tmp = None
        self.mounted = False
        self.fx = {}
        self.password = secrets.token_hex(16)
        self.deadline = time.monotonic() + args.max_minutes * 60

    # -- setup ---------------------------------------------------------------
    def need_bytes(self):
        s = self.sizes
        small = s["small_count"] * (s["small_kib"] * 1024 + 4096)
        big, rc, par = s["big_mib"] * MiB, s["rclone_mib"] * MiB, s["par_clients"] * s["par_mib"] * MiB
        # fixtures (server and client side) plus the largest transient copy
        return 2 * big + par + rc + 2 * small + max(big, par, rc) + 64 * MiB

    def make_tmp(self):
        need = self.need_bytes()
        self.storage_note = ""
        base = self.args.workdir
        if base is None and os.access("/dev/shm", os.W_OK) and fs_type("/dev/shm") == "tmpfs":
            st = os.statvfs("/dev/shm")
            if st.f_bavail * st.f_frsize > need + 512 * MiB:
                base = "/dev/shm"
        self.tmp = tempfile.mkdtemp(prefix="ferry-bench-", dir=base)
        if fs_type(self.tmp) != "tmpfs" and os.geteuid() == 0 and self.args.workdir is None:
            size = need + 256 * MiB
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", self.tmp],
                               capture_output=True, text=True)
            if r.returncode == 0:
                self.mounted = True
                self.storage_note = f"a private tmpfs mounted for the run ({size // MiB} MiB)"
        self.fstype = fs_type(self.tmp)
        if self.fstype != "tmpfs":
            self.storage_note = (f"NOT tmpfs: data on {self.fstype} ({self.tmp}); disk speed is part "
                                 "of every number")
            note("warning: " + self.storage_note)
        elif not self.storage_note:
            self.storage_note = "tmpfs (/dev/shm)" if self.tmp.startswith("/dev/shm/") else "tmpfs"
        self.srv = os.path.join(self.tmp, "srv")
        self.cli = os.path.join(self.tmp, "cli")
        self.dl = os.path.join(self.tmp, "dl")
        self.home = os.path.join(self.tmp, "home")
        for d in (self.srv, os.path.join(self.srv, "up"), self.cli, self.dl, self.home,
                  os.path.join(self.tmp, "logs"), os.path.join(self.tmp, "batch"),
                  os.path.join(self.tmp, "rclone-cache")):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.tmp, 0o755)  # sshd sessions and the servers read it
        self.hostkey = os.path.join(self.tmp, "host_ed25519")
        self.ckey = os.path.join(self.tmp, "client_ed25519")
        for k in (self.hostkey, self.ckey):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-bench", "-f", k],
                           check=True, stdin=subprocess.DEVNULL)
        self.authkeys = os.path.join(self.tmp, "authorized_keys")
        shutil.copyfile(self.ckey + ".pub", self.authkeys)
        with open(self.hostkey + ".pub") as f:
            self.hostkey_type, self.hostkey_b64 = f.read().split()[:2]
        self.known = os.path.join(self.tmp, "known_hosts")
        self.ssh_cfg = os.path.join(self.tmp, "ssh_config")
        with open(self.ssh_cfg, "w") as f:
            f.write(SSH_CONFIG.format(host=HOST, key=self.ckey, known=self.known,
                                      cipher=self.args.cipher, kex=self.args.kex))
        rclone_conf = os.path.join(self.tmp, "rclone.conf")
        open(rclone_conf, "w").close()
        env = {k: v for k, v in os.environ.items()
               if k not in ("SSH_AUTH_SOCK", "SSH_ASKPASS", "DISPLAY") and not k.startswith(("RCLONE_", "FERRY_"))}
        env.update(LC_ALL="C", HOME=self.home, XDG_CACHE_HOME=os.path.join(self.home, ".cache"),
                   RCLONE_CONFIG=rclone_conf, RCLONE_CACHE_DIR=os.path.join(self.tmp, "rclone-cache"))
        self.env = env

    def make_fixtures(self):
        s = self.sizes
        t0 = time.monotonic()
        self.fx["big"] = random_file(os.path.join(self.srv, "get", "big.bin"), s["big_mib"] * MiB)
        self.fx["big-cli"] = random_file(os.path.join(self.cli, "big.bin"), s["big_mib"] * MiB)
        self.fx["par"] = [random_file(os.path.join(self.srv, "par", f"p{i}.bin"), s["par_mib"] * MiB)
                          for i in range(s["par_clients"])]
        self.fx["rc"] = random_file(os.path.join(self.cli, "rc", "rc.bin"), s["rclone_mib"] * MiB)
        small = {}
        for d in (os.path.join(self.srv, "small"), os.path.join(self.cli, "small")):
            os.makedirs(d, exist_ok=True)
        for i in range(s["small_count"]):
            data = os.urandom(s["small_kib"] * 1024)
            name = f"f{i:05d}.bin"
            small[name] = (len(data), hashlib.sha256(data).hexdigest())
            for d in (self.srv, self.cli):
                with open(os.path.join(d, "small", name), "wb") as f:
                    f.write(data)
        self.fx["small"] = small
        self.fx["stat"] = random_file(os.path.join(self.srv, "stat", "one.bin"), 4096)
        if self.fstype != "tmpfs":
            os.sync()
        note(f"fixtures ready in {time.monotonic() - t0:.1f} s")

    def write_known_hosts(self, servers):
        with open(self.known, "w") as f:
            for t in servers:
                f.write(f"[{HOST}]:{t.port} {self.hostkey_type} {self.hostkey_b64}\n")

    # -- clients -------------------------------------------------------------
    def timeout(self):
        return min(self.args.timeout, max(1.0, self.deadline - time.monotonic() + 60))

    def sftp(self, t, tag, batches):
        """Run one `sftp -b` per batch text, all at once."""
        argvs, logs = [], []
        for i, text in enumerate(batches):
            path = os.path.join(self.tmp, "batch", f"{tag}-{i}.txt")
            with open(path, "w") as f:
                f.write(text)
            argvs.append(["sftp", "-F", self.ssh_cfg, "-P", str(t.port), "-b", path, f"{t.user}@{HOST}"])
            logs.append(os.path.join(self.tmp, "logs", f"{tag}-{i}.log"))
        secs, rcs = run_clients(argvs, self.env, logs, self.timeout())
        for rc, log in zip(rcs, logs):
            if rc == "timeout":
                return secs, f"sftp timed out (--timeout {self.args.timeout:g} s)", logs
            if rc != 0:
                return secs, f"sftp exit {rc}: {tail(log, 3)}", logs
        return secs, None, logs

    def rclone_copy(self, t, tag, src):
        dest = f":sftp:{t.remote_root}up/{tag}"
        argv = [self.args.rclone, "copy", src, dest, "-q", "--transfers", "4",
                "--sftp-host", HOST, "--sftp-port", str(t.port), "--sftp-user", t.user,
                "--sftp-key-file", self.ckey, "--sftp-known-hosts-file", self.known]
        log = os.path.join(self.tmp, "logs", f"{tag}.log")
        secs, rcs = run_clients([argv], self.env, [log], self.timeout())
        if rcs[0] == "timeout":
            return secs, f"rclone timed out (--timeout {self.args.timeout:g} s)"
        return secs, (None if rcs[0] == 0 else f"rclone exit {rcs[0]}: {tail(log, 3)}")

    # -- cases: each returns (seconds, amount, error) -------------------------
    def get_big(self, t, tag):
        out = os.path.join(self.dl, tag + ".bin")
        secs, err, _ = self.sftp(t, tag, [f"get get/big.bin {out}\n"])
        err = err or check_file(out, self.fx["big"])
        remove(out)
        return secs, self.fx["big"][0], err

    def put_big(self, t, tag):
        secs, err, _ = self.sftp(t, tag, [f"put {os.path.join(self.cli, 'big.bin')} up/{tag}.bin\n"])
        dst = os.path.join(self.srv, "up", tag + ".bin")
        err = err or check_file(dst, self.fx["big-cli"])
        remove(dst)
        return secs, self.fx["big-cli"][0], err

    def small_put(self, t, tag):
        secs, err, _ = self.sftp(t, tag, [f"put -r {os.path.join(self.cli, 'small')} up/{tag}\n"])
        dst = os.path.join(self.srv, "up", tag)
        err = err or check_tree(dst, self.fx["small"])
        remove(dst)
        return secs, len(self.fx["small"]), err

    def small_get(self, t, tag):
        out = os.path.join(self.dl, tag)
        secs, err, _ = self.sftp(t, tag, [f"get -r small {out}\n"])
        err = err or check_tree(out, self.fx["small"])
        remove(out)
        return secs, len(self.fx["small"]), err

    def parallel_get(self, t, tag):
        n = self.sizes["par_clients"]
        outs = [os.path.join(self.dl, f"{tag}-{i}.bin") for i in range(n)]
        secs, err, _ = self.sftp(t, tag, [f"get par/p{i}.bin {outs[i]}\n" for i in range(n)])
        for i, out in enumerate(outs):
            err = err or check_file(out, self.fx["par"][i])
            remove(out)
        return secs, sum(f[0] for f in self.fx["par"]), err

    def stat_rtt(self, t, tag):
        spec = {"port": t.port, "user": t.user, "key": self.ckey, "hostkey": self.hostkey_b64,
                "path": "stat/one.bin", "size": self.fx["stat"][0], "count": self.sizes["stat_count"]}
        log = os.path.join(self.tmp, "logs", f"{tag}.log")
        argv = [sys.executable, os.path.abspath(__file__), "--stat-client", json.dumps(spec)]
        _, rcs = run_clients([argv], self.env, [log], self.timeout())
        try:
            with open(log) as f:
                res = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            return None, None, f"stat client exit {rcs[0]}: {tail(log, 3)}"
        if "error" in res:
            return None, None, res["error"]
        self.stat_cipher = res.get("cipher")
        err = f"{res['bad']} stats returned the wrong size" if res["bad"] else None
        return res["seconds"], res["count"], err

    def connect(self, t, tag):
        total, err = 0.0, None
        n = self.sizes["connect_count"]
        for i in range(n):
            secs, e, logs = self.sftp(t, f"{tag}-{i}", ["pwd\n"])
            total += secs
            if not e and "Remote working directory" not in tail(logs[0], 5):
                e = "pwd printed no working directory"
            err = err or e
            if err:
                break
        return total, n, err

    def rclone_big(self, t, tag):
        secs, err = self.rclone_copy(t, tag, os.path.join(self.cli, "rc"))
        dst = os.path.join(self.srv, "up", tag)
        err = err or check_tree(dst, {"rc.bin": self.fx["rc"]})
        remove(dst)
        return secs, self.fx["rc"][0], err

    def rclone_small(self, t, tag):
        secs, err = self.rclone_copy(t, tag, os.path.join(self.cli, "small"))
        dst = os.path.join(self.srv, "up", tag)
        err = err or check_tree(dst, self.fx["small"])
        remove(dst)
        return secs, len(self.fx["small"]), err

    def cases(self):
        s = self.sizes
        small = f"{s['small_count']} x {s['small_kib']} KiB"
        return [
            Case("get-big", "MB/s", f"sftp -b: get one {s['big_mib']} MiB file", self.get_big),
            Case("put-big", "MB/s", f"sftp -b: put one {s['big_mib']} MiB file", self.put_big),
            Case("small-put", "files/s", f"sftp -b: put -r of {small} files, one session", self.small_put),
            Case("small-get", "files/s", f"sftp -b: get -r of {small} files, one session", self.small_get),
            Case("parallel-get", "MB/s",
                 f"{s['par_clients']} sftp -b at once, each get of its own {s['par_mib']} MiB file",
                 self.parallel_get),
            Case("stat-rtt", "stat/s", f"paramiko: {s['stat_count']} sequential stats, one session",
                 self.stat_rtt),
            Case("connect", "sessions/s", f"{s['connect_count']} sequential sftp -b sessions doing pwd",
                 self.connect),
            Case("rclone-copy-big", "MB/s",
                 f"rclone copy of one {s['rclone_mib']} MiB file (md5 checked through the server)",
                 self.rclone_big),
            Case("rclone-copy-small", "files/s",
                 f"rclone copy of the {small} files (md5 checked through the server)", self.rclone_small),
        ]

    # -- the loop --------------------------------------------------------------
    def run(self):
        args = self.args
        all_cases = self.cases()
        if args.cases:
            want = [c.strip() for c in args.cases.split(",") if c.strip()]
            unknown = [w for w in want if w not in {c.name for c in all_cases}]
            if unknown:
                raise SystemExit(f"unknown case(s) {', '.join(unknown)}; cases: "
                                 + ", ".join(c.name for c in all_cases))
            cases = [c for c in all_cases if c.name in want]
        else:
            cases = all_cases
        rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
        started = datetime.datetime.now(datetime.timezone.utc)
        load0 = os.getloadavg()[0]
        self.make_tmp()
        note(f"data directory: {self.srv} ({self.storage_note})")
        self.make_fixtures()
        self.servers = [Server(n) for n in self.targets]
        self.write_known_hosts(self.servers)
        for t in self.servers:
            t.start(self)
            note(f"{t.name}: pid {t.proc.pid}, port {t.port}: {t.shown_command(self)}")
        results = {c.name: {t.name: [] for t in self.servers} for c in cases}
        t_run = time.monotonic()
        for r in range(rounds):
            k = r % len(self.servers)
            order = self.servers[k:] + self.servers[:k]
            for c in cases:
                for t in order:
                    rec = self.measure(c, t, f"{c.name}-{t.name}-r{r + 1}")
                    rec["round"] = r + 1
                    results[c.name][t.name].append(rec)
                    shown = f"{rec['seconds']:.3f} s" if rec.get("seconds") is not None else "-"
                    status = "ok" if rec["ok"] else (rec["error"] if rec.get("skipped")
                                                     else f"FAIL: {rec['error']}")
                    note(f"[round {r + 1}/{rounds}] {c.name:<18} {t.name:<8} {shown:>10}  {status}")
        return self.summarize(cases, results, rounds, started, load0, time.monotonic() - t_run)

    def measure(self, c, t, tag):
        if time.monotonic() > self.deadline:
            return {"ok": False, "skipped": True, "seconds": None,
                    "error": f"skipped: past the --max-minutes budget ({self.args.max_minutes})"}
        if not t.alive():
            return {"ok": False, "seconds": None, "error": "server is not running"}
        time.sleep(self.args.settle)
        mon = Monitor(t.proc.pid)
        mon.start()
        try:
            secs, amount, err = c.fn(t, tag)
        except Exception as e:  # one broken case must not hide the others
            secs, amount, err = None, None, f"harness error: {type(e).__name__}: {e}"
        # the measurement ends before any verification, which is done in c.fn
        # after the clients exit (its cost lands in neither CPU figure)
        m = mon.stop()
        if not t.alive():
            err = err or "server died during the case"
        return {"ok": err is None and secs is not None, "seconds": None if secs is None else round(secs, 4),
                "amount": amount, "error": err, **m}

    def summarize(self, cases, results, rounds, started, load0, run_s):
        out = {}
        for c in cases:
            per = {}
            for t in self.servers:
                runs = results[c.name][t.name]
                good = [x for x in runs if x["ok"]]
                d = {"runs": runs, "ok": bool(runs) and len(good) == len(runs)}
                if good:
                    secs = [x["seconds"] for x in good]
                    med = statistics.median(secs)
                    amount = good[0]["amount"]
                    d.update(median_s=med, min_s=min(secs), max_s=max(secs), amount=amount,
                             rate=amount / med if med else None,
                             server_cpu_s=statistics.median(x["server_cpu_s"] for x in good),
                             client_cpu_s=statistics.median(x["client_cpu_s"] for x in good),
                             peak_rss_mib=max(x["peak_rss_mib"] for x in good),
                             peak_pss_mib=max(x["peak_pss_mib"] for x in good),
                             server_procs=max(x["server_procs"] for x in good),
                             other_load=statistics.median(x["other_load"] for x in good))
                per[t.name] = d
            ratios = {}
            f = per.get("ferry", {})
            for other in ("openssh", "rclone"):
                o = per.get(other, {})
                if f.get("ok") and o.get("ok") and f.get("median_s") and o.get("median_s"):
                    # same amount of work: speed ratio = inverse time ratio
                    ratios[f"ferry/{other}"] = round(o["median_s"] / f["median_s"], 3)
            out[c.name] = {"unit": c.unit, "what": c.what, "targets": per, "ratios": ratios}
        geo = {}
        for key in ("ferry/openssh", "ferry/rclone"):
            vals = [out[c]["ratios"][key] for c in out if key in out[c]["ratios"]]
            if vals:
                geo[key] = round(statistics.geometric_mean(vals), 3)
        failures = [f"{c} / {t} / round {x.get('round')}: {x['error']}"
                    for c in out for t, d in out[c]["targets"].items() for x in d["runs"] if not x["ok"]]
        return {
            "tool": "ferry bench/run.py", "started_utc": started.isoformat(timespec="seconds"),
            "run_seconds": round(run_s, 1), "rounds": rounds, "quick": bool(self.args.quick),
            "sizes": self.sizes, "cipher": self.args.cipher, "kex": self.args.kex,
            "stat_rtt_cipher": getattr(self, "stat_cipher", None),
            "storage": self.storage_note, "machine": machine_info(),
            "load_avg": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
            "versions": self.versions(),
            "servers": {t.name: t.shown_command(self) for t in self.servers},
            "cases": out, "geomean": geo, "failures": failures,
        }

    def versions(self):
        v = {"openssh": first_line(["ssh", "-V"]), "rclone": first_line([self.args.rclone, "version"])}
        if "ferry" in self.targets:
            v["ferry"] = first_line([self.ferry, "version"])
        if "openssh" in self.targets:
            v["sftp_server"] = ("internal-sftp" if self.args.openssh_sftp == "internal"
                                else self.sftp_server)
        try:
            import paramiko
            v["paramiko"] = paramiko.__version__
        except ImportError:
            v["paramiko"] = "missing"
        return v


def machine_info():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return {"cpus": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem, 1),
            "kernel": platform.release()}


# ---------------------------------------------------------------------------
# report

def rate_text(unit, amount, secs):
    if not secs:
        return "-"
    r = amount / secs
    if unit == "MB/s":
        return f"{r / 1e6:,.0f} MB/s"
    if unit == "stat/s":
        return f"{r:,.0f} stat/s ({secs / amount * 1e6:,.0f} µs)"
    return f"{r:,.1f} {unit}" if r < 100 else f"{r:,.0f} {unit}"


def markdown(rep):
    names = [n for n in TARGETS if n in rep["servers"]]
    s = rep["sizes"]
    m = rep["machine"]
    v = rep["versions"]
    L = ["## bench/run.py results", ""]
    L.append(f"- started {rep['started_utc']}, {rep['run_seconds']:.0f} s of runs, {rep['rounds']} round(s)"
             f"{' (--quick)' if rep['quick'] else ''}; targets interleaved, order rotated each round")
    L.append(f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, kernel {m['kernel']}; "
             f"load average {rep['load_avg']['start']} at start, {rep['load_avg']['end']} at end")
    L.append(f"- data: {rep['storage']}; sizes: big {s['big_mib']} MiB, small {s['small_count']} x "
             f"{s['small_kib']} KiB, parallel {s['par_clients']} x {s['par_mib']} MiB, stat "
             f"{s['stat_count']}, connect {s['connect_count']}, rclone {s['rclone_mib']} MiB; MB = 10^6 bytes")
    L.append(f"- OpenSSH clients: cipher {rep['cipher']}, kex {rep['kex']}; paramiko negotiated "
             f"{rep['stat_rtt_cipher'] or 'n/a'}; the rclone client picks its own")
    L.append("- versions: " + "; ".join(f"{k} {val}" for k, val in v.items()))
    for n, cmd in rep["servers"].items():
        L.append(f"- `{n}`: `{cmd}`")
    L.append("")
    head = "| case | " + " | ".join(names) + " | ferry/openssh | ferry/rclone |"
    L += [head, "|---|" + "---:|" * (len(names) + 2)]
    for cname, c in rep["cases"].items():
        cells = []
        for n in names:
            d = c["targets"].get(n, {})
            if d.get("median_s"):
                cell = rate_text(c["unit"], d["amount"], d["median_s"])
                cells.append(cell if d["ok"] else cell + " (FAIL in some rounds)")
            else:
                cells.append("FAIL" if d.get("runs") else "-")
        r = c["ratios"]
        L.append(f"| {cname} | " + " | ".join(cells) + f" | {fmt_ratio(r.get('ferry/openssh'))} "
                 f"| {fmt_ratio(r.get('ferry/rclone'))} |")
    g = rep["geomean"]
    L.append("| geometric mean | " + " | ".join("" for _ in names) + f" | {fmt_ratio(g.get('ferry/openssh'))} "
             f"| {fmt_ratio(g.get('ferry/rclone'))} |")
    L.append("")
    L.append("Rates at the median time; ferry/X = X's median time / Ferry's (>1: Ferry is faster).")
    L.append("")
    L.append("| case | target | median s | min–max s | server CPU s | client CPU s | peak RSS MiB "
             "| peak PSS MiB | server procs | other load | ok |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|")
    for cname, c in rep["cases"].items():
        for n in names:
            d = c["targets"].get(n, {})
            bad = [x for x in d.get("runs", []) if not x["ok"]]
            ok = "ok" if d.get("ok") else f"FAIL {len(bad)}/{len(d.get('runs', []))}"
            if not d.get("median_s"):
                L.append(f"| {cname} | {n} | - | - | - | - | - | - | - | - | {ok} |")
                continue
            L.append(f"| {cname} | {n} | {d['median_s']:.3f} | {d['min_s']:.3f}–{d['max_s']:.3f} "
                     f"| {d['server_cpu_s']:.2f} | {d['client_cpu_s']:.2f} | {d['peak_rss_mib']:.0f} "
                     f"| {d['peak_pss_mib']:.0f} | {d['server_procs']} | {d['other_load']:.2f} | {ok} |")
    L.append("")
    per_gib = []
    for cname in ("get-big", "put-big"):
        c = rep["cases"].get(cname)
        if not c:
            continue
        parts = [f"{n} {d['server_cpu_s'] / (d['amount'] / (1 << 30)):.2f}"
                 for n in names for d in [c["targets"].get(n, {})] if d.get("median_s")]
        per_gib.append(f"{cname}: " + ", ".join(parts))
    if per_gib:
        L.append("Server CPU seconds per GiB: " + "; ".join(per_gib) + ".")
        L.append("")
    L.append("Server CPU = utime+stime of the server's process tree, including the per-connection "
             "processes it has reaped (sshd's session processes, sftp-server, the md5sum commands "
             "rclone runs), over the whole client run (connect and login included). Peak RSS = the "
             "largest of the tree's summed RSS (sampled at 5 Hz) and any one process's VmHWM; peak "
             "PSS = the tree's summed proportional set size (shared pages split), the fair figure for "
             "sshd's many processes. Other load = CPU used outside the benchmark during the run, in "
             "cores: above ~0.3 the run was disturbed.")
    if rep["failures"]:
        L += ["", "Failures:"] + [f"- {f}" for f in rep["failures"]]
    return "\n".join(L)


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


# ---------------------------------------------------------------------------
# stat-rtt client: runs as its own process (`run.py --stat-client SPEC`), so
# its CPU counts as the client's

def stat_client(spec):
    spec = json.loads(spec)
    try:
        import paramiko
    except ImportError:
        print(json.dumps({"error": "paramiko is not installed (pip install paramiko)"}))
        return 0
    try:
        key = paramiko.Ed25519Key.from_private_key_file(spec["key"])
        sock = socket.create_connection((HOST, spec["port"]), timeout=30)
        tr = paramiko.Transport(sock)
        tr.start_client(timeout=30)
        if tr.get_remote_server_key().get_base64() != spec["hostkey"]:
            raise RuntimeError("host key mismatch")
        tr.auth_publickey(spec["user"], key)
        sf = paramiko.SFTPClient.from_transport(tr)
        for _ in range(20):  # warm-up, not timed
            sf.stat(spec["path"])
        bad = 0
        t0 = time.perf_counter()
        for _ in range(spec["count"]):
            if sf.stat(spec["path"]).st_size != spec["size"]:
                bad += 1
        secs = time.perf_counter() - t0
        cipher = f"{tr.remote_cipher}+{tr.remote_mac}"
        sf.close()
        tr.close()
        print(json.dumps({"seconds": secs, "count": spec["count"], "bad": bad, "cipher": cipher}))
    except Exception as e:  # reported as the case's failure
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    return 0


# ---------------------------------------------------------------------------

def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--stat-client":
        return stat_client(sys.argv[2])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(
        description="Benchmark Ferry against OpenSSH's sftp-server and rclone serve sftp on 127.0.0.1, "
                    "same tmpfs data, stock clients, every byte checked.",
        epilog="Exit status: 0 ok, 1 a check failed or a run timed out, 2 setup failed, 130 interrupted.")
    ap.add_argument("--ferry", default=os.path.join(repo, "target", "release", "ferry"),
                    help="Ferry binary (default: target/release/ferry of this repository)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma-separated subset of openssh,rclone,ferry (default: all three)")
    ap.add_argument("--cases", help="comma-separated cases (default: all): get-big, put-big, small-put, "
                    "small-get, parallel-get, stat-rtt, connect, rclone-copy-big, rclone-copy-small")
    ap.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes and 1 round: a check that it all works")
    ap.add_argument("--json", metavar="FILE", help="also write every run and the summary as JSON")
    ap.add_argument("--cipher", default="aes128-gcm@openssh.com", help="cipher of the OpenSSH clients")
    ap.add_argument("--kex", default="curve25519-sha256",
                    help="key exchange of the OpenSSH clients (pinned so every server does the same work)")
    ap.add_argument("--openssh-sftp", choices=("server", "internal"), default="server",
                    help="sshd's sftp subsystem: the sftp-server binary (default) or internal-sftp")
    ap.add_argument("--sftp-server", help="path of OpenSSH's sftp-server (default: found in the usual places)")
    ap.add_argument("--sshd", default="/usr/sbin/sshd", help="sshd binary (an absolute path)")
    ap.add_argument("--rclone", default="rclone", help="rclone binary (the server and the client)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds one client run may take (default 300)")
    ap.add_argument("--max-minutes", type=float, default=45,
                    help="after this many minutes the remaining runs are skipped (default 45)")
    ap.add_argument("--settle", type=float, default=0.3, help="pause before each run, seconds (default 0.3)")
    ap.add_argument("--workdir", help="parent directory of the data (default: /dev/shm, else a private "
                    "tmpfs mount when root, else the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    for k, (d, q, what) in SIZES.items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, help=f"{what} (default {d}, --quick {q})")
    args = ap.parse_args()

    b = Bench(args)
    b.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not b.targets or any(t not in TARGETS for t in b.targets) or len(set(b.targets)) != len(b.targets):
        raise SystemExit(f"--targets: a subset of {','.join(TARGETS)}")
    b.targets = [t for t in TARGETS if t in b.targets]
    missing = [tool for tool in ("ssh", "sftp", "ssh-keygen", args.rclone) if not shutil.which(tool)]
    if "openssh" in b.targets and not os.access(args.sshd, os.X_OK):
        missing.append(args.sshd)
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)} (Debian: apt-get install openssh-server "
                         "openssh-client rclone)")
    if "openssh" in b.targets and args.openssh_sftp == "server":
        b.sftp_server = args.sftp_server or next((p for p in SFTP_SERVER_PATHS if os.access(p, os.X_OK)), None)
        if not b.sftp_server:
            raise SystemExit("OpenSSH's sftp-server not found; give --sftp-server PATH")
    if "ferry" in b.targets:
        b.ferry = os.path.abspath(args.ferry)
        if not os.access(b.ferry, os.X_OK):
            raise SystemExit(f"{b.ferry} not found: build it with `cargo build --release -p ferry` "
                             "or give --ferry PATH")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    rc = 0
    b.servers = []
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
        for p in list(RUNNING):
            if p.poll() is None:
                kill_tree(p.pid, grace=1)
        for t in b.servers:
            t.stop()
        if b.tmp:
            if args.keep:
                note(f"kept {b.tmp}")
            else:
                if b.mounted:
                    subprocess.run(["umount", b.tmp], capture_output=True)
                shutil.rmtree(b.tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
