#!/usr/bin/env python3
"""Ferry against `rclone serve sftp` and the store's own floor, on S3.

Both servers serve the same Garage bucket (a real S3 server, single node on
127.0.0.1, data on tmpfs) through a counting proxy (the one of
bench/latency.py, optionally adding latency to every request), in
`--vfs-cache-mode off` and `writes`. A stock OpenSSH `sftp -b` client
drives them; the floor is the same S3 work done directly by rclone's own s3
backend, one request at a time (`--transfers 1 --checkers 1`).

Per round, mode and target (targets interleaved, their order rotated):

- a fresh server: `put-big` (one file), `small-put` (N small files into one
  new directory, `put *`);
- in `writes` mode the uploads are waited for (polled in the bucket);
- the server restarted (cold caches): `get-big`, `small-get` (`get *`),
  `ls` (`ls -l` of that directory), `rename` (100 files);
- `flat`: 100 small files put, stat'ed, renamed and removed one command
  each, into a directory holding `--big-dir` files (10,000) and into one
  holding 100; the per-file times of the two are compared (the target: the
  same within 20%).

Every downloaded byte is checked (sha256) and a failed check gets no time.
The report gives the medians, rclone's time over Ferry's (above 1: Ferry
faster), Ferry's time over the floor, and the store requests each server
made per case (from the proxy: method by method).

    python3 bench/objstore.py                  # 3 rounds (~15 min on 2 cores)
    python3 bench/objstore.py --quick          # 1 round, small sizes (~3 min)
    python3 bench/objstore.py --latency-ms 20 --modes writes --json out.json

docs/benchmarks.md ("Object stores") has the recorded results. Needs
python3, openssh-client, rclone, Garage (scripts/install-test-deps.sh) and a
release build of Ferry.
"""

import argparse
import datetime
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from latency import (  # noqa: E402  (shared with the latency benchmark)
    BUCKET, HOST, SSH_CONFIG, STARTED, Garage, Relay, ensure_ferry, last_lines, must,
    run, spawn, ssh_banner, stop, wait_until,
)
from run import first_line, free_port, machine_info, note, sha256_file  # noqa: E402

MiB = 1 << 20
BENCH_USER = "bench"
SFTP_TARGETS = ("rclone", "ferry")
MODES = ("off", "writes")
CASES = ("put-big", "small-put", "get-big", "small-get", "ls", "rename", "flat")

# (default, --quick)
SIZES = {
    "big_mib": (128, 16, "size of the put-big / get-big file, MiB"),
    "small_count": (200, 50, "number of small files"),
    "small_kib": (16, 16, "size of each small file, KiB"),
    "renames": (100, 30, "renames in the rename case"),
    "flat_count": (100, 30, "files per operation in the flat case"),
    "big_dir": (10000, 1000, "files already in the flat case's large directory"),
}
SMALL_DIR = 100     # files already in the flat case's small directory


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


class Bench:
    def __init__(self, args):
        self.args = args
        self.password = secrets.token_hex(16)
        self.tmp = None
        self.relay = None
        self.garage = None
        self.commands = {}

    # -- set-up ------------------------------------------------------------

    def setup(self):
        a = self.args
        base = a.workdir or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
        self.tmp = tempfile.mkdtemp(prefix="ferry-objstore-", dir=base)
        for d in ("home", "logs", "src", "dl"):
            os.makedirs(os.path.join(self.tmp, d))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RCLONE_", "FERRY_")) and k not in
               ("AWS_CA_BUNDLE", "SSH_AUTH_SOCK", "SSH_ASKPASS", "DISPLAY")}
        empty_conf = os.path.join(self.tmp, "empty.conf")
        open(empty_conf, "w").close()
        home = os.path.join(self.tmp, "home")
        env.update(LC_ALL="C", HOME=home, XDG_CACHE_HOME=os.path.join(home, ".cache"),
                   XDG_CONFIG_HOME=os.path.join(home, ".config"), RCLONE_CONFIG=empty_conf)
        self.env = env
        self.logs = os.path.join(self.tmp, "logs")
        self.hostkey = os.path.join(self.tmp, "host_ed25519")
        self.ckey = os.path.join(self.tmp, "client_ed25519")
        for k in (self.hostkey, self.ckey):
            must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ferry-objstore", "-f", k],
                 env, 30, "ssh-keygen")
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
        self.direct = self.garage.remote(self.garage.s3_port, BUCKET)
        wait_until(lambda: run([a.rclone, *self.rclone_flags(), "lsf", self.direct], env, 60)[0] == 0,
                   self.garage.proc, self.garage.log, "garage S3 API")
        note(f"garage ready in {time.monotonic() - t0:.1f} s")

        # The data: one big file, the small files, the flat case's files.
        src = os.path.join(self.tmp, "src")
        self.big = os.path.join(src, "big.bin")
        with open(self.big, "wb") as f:
            for _ in range(a.big_mib):
                f.write(os.urandom(MiB))
        self.big_sha = sha256_file(self.big)
        self.small_dir = os.path.join(src, "small")
        os.makedirs(self.small_dir)
        self.small = {}
        for i in range(a.small_count):
            b = os.urandom(a.small_kib * 1024)
            name = f"f{i:05d}.bin"
            with open(os.path.join(self.small_dir, name), "wb") as f:
                f.write(b)
            self.small[name] = sha256_bytes(b)
        self.flat_file = os.path.join(src, "flat.bin")
        with open(self.flat_file, "wb") as f:
            f.write(os.urandom(a.small_kib * 1024))

        # The flat case's directories, filled directly: a small one and a
        # large one.
        for where, count in (("small", SMALL_DIR), ("big", a.big_dir)):
            t0 = time.monotonic()
            fill = os.path.join(self.tmp, "fill")
            os.makedirs(fill)
            for i in range(count):
                with open(os.path.join(fill, f"x{i:06d}"), "wb") as f:
                    f.write(b"x")
            must([a.rclone, *self.rclone_flags(), "copy", fill, f"{self.direct}/flat/{where}",
                  "--transfers", "32", "--checkers", "32", "--no-check-dest", "--s3-no-head"],
                 env, 3600, "filling the flat case's directories")
            shutil.rmtree(fill)
            note(f"{count} files in flat/{where} in {time.monotonic() - t0:.1f} s")

        self.relay = Relay()
        self.proxy = self.relay.proxy(self.garage.s3_port, a.latency_ms / 1000)
        self.remote = self.garage.remote(self.proxy.port, BUCKET)

    def rclone_flags(self):
        return ["--low-level-retries", "1", "--retries", "1", "--contimeout", "20s", "--timeout", "60s"]

    # -- servers -----------------------------------------------------------

    def server_argv(self, target, mode, port):
        common = ["--addr", f"{HOST}:{port}", "--user", BENCH_USER, "--pass", self.password,
                  "--authorized-keys", self.authkeys, "--key", self.hostkey,
                  "--vfs-cache-mode", mode,
                  "--cache-dir", os.path.join(self.tmp, f"cache-{target}-{mode}")]
        prog = [self.args.rclone] if target == "rclone" else [self.args.ferry]
        return [*prog, "serve", "sftp", self.remote, *common]

    def shown(self, argv, port):
        text = " ".join(shlex.quote(x) for x in argv)
        for secret, shown in ((self.tmp, "<tmp>"), (self.password, "<random>"),
                              (self.garage.secret, "<secret>"), (self.garage.key_id, "<key>"),
                              (f"{HOST}:{self.proxy.port}", f"{HOST}:<proxy>"),
                              (f"{HOST}:{port}", f"{HOST}:<port>")):
            text = text.replace(secret, shown)
        return text

    def start(self, target, mode, tag):
        port = free_port()
        argv = self.server_argv(target, mode, port)
        self.commands[f"{target}-{mode}"] = self.shown(argv, port)
        log = os.path.join(self.logs, f"server-{tag}.log")
        srv = spawn(argv, log, self.env)
        wait_until(lambda: ssh_banner(port), srv, log, f"{target} serve sftp")
        with open(self.known, "w") as f:
            f.write(f"[{HOST}]:{port} {self.hostkey_line}\n")
        time.sleep(self.args.settle)
        return srv, port

    # -- one timed client run ----------------------------------------------

    def sftp(self, port, lines, tag):
        """Run one `sftp -b` batch; returns (seconds, requests, output) or
        raises RuntimeError."""
        batch = os.path.join(self.tmp, f"batch-{tag}.txt")
        with open(batch, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.relay.reset(self.proxy)
        rc, secs, text = run(["sftp", "-F", self.ssh_cfg, "-P", str(port), "-b", batch,
                              f"{BENCH_USER}@{HOST}"], self.env, self.args.timeout,
                             os.path.join(self.logs, f"sftp-{tag}.log"))
        counts = self.relay.snapshot(self.proxy)
        if rc == "timeout":
            raise RuntimeError(f"sftp timed out after {self.args.timeout:g} s")
        if rc != 0:
            raise RuntimeError(f"sftp exit {rc}: {last_lines(text, 3)}")
        return secs, counts, text

    def floor(self, argv, tag):
        self.relay.reset(self.proxy)
        rc, secs, text = run([self.args.rclone, *self.rclone_flags(), "--transfers", "1",
                              "--checkers", "1", *argv], self.env, self.args.timeout,
                             os.path.join(self.logs, f"floor-{tag}.log"))
        counts = self.relay.snapshot(self.proxy)
        if rc != 0:
            raise RuntimeError(f"rclone exit {rc}: {last_lines(text, 3)}")
        return secs, counts

    def stored_count(self, prefix):
        rc, _, text = run([self.args.rclone, *self.rclone_flags(), "lsf", "-R", "--files-only",
                           f"{self.direct}/{prefix}"], self.env, 120)
        return len(text.split()) if rc == 0 else -1

    def wait_stored(self, prefix, want, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stored_count(prefix) >= want:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{prefix}: {self.stored_count(prefix)} of {want} files in the bucket "
                           f"after {timeout} s")

    # -- the cases ---------------------------------------------------------

    def measure(self, target, mode, rnd, out):
        a = self.args
        tag = f"{target}-{mode}-r{rnd}"
        pre = f"run/{tag}"
        cases = set(a.cases)

        def record(case, fn):
            if case not in cases:
                return
            rec = {"case": case, "target": target, "mode": mode, "round": rnd, "ok": False}
            try:
                rec.update(fn())
                rec["ok"] = True
            except RuntimeError as e:
                rec["error"] = str(e)
            out.append(rec)
            shown = f"{rec['seconds']:.2f} s" if rec.get("seconds") is not None else "-"
            reqs = rec.get("requests", {}).get("requests", "-")
            note(f"[round {rnd}] {mode:<6} {target:<6} {case:<9} {shown:>9}  {reqs} requests  "
                 f"{'ok' if rec['ok'] else 'FAIL: ' + rec['error']}")

        srv, port = self.start(target, mode, f"{tag}-put")
        try:
            def put_big():
                secs, c, _ = self.sftp(port, [f"-mkdir {pre}", f"put {self.big} {pre}/big.bin"],
                                       f"{tag}-put-big")
                return {"seconds": secs, "requests": c}
            record("put-big", put_big)

            def small_put():
                secs, c, _ = self.sftp(port, [f"-mkdir {pre}", f"mkdir {pre}/small", f"cd {pre}/small",
                                              f"lcd {self.small_dir}", "put *"], f"{tag}-small-put")
                return {"seconds": secs, "requests": c, "per_file_ms": secs * 1000 / a.small_count}
            record("small-put", small_put)
            if mode != "off":
                want = (1 if "put-big" in cases else 0) + (a.small_count if "small-put" in cases else 0)
                self.wait_stored(pre, want)
        finally:
            stop(srv)

        srv, port = self.start(target, mode, f"{tag}-get")
        dl = os.path.join(self.tmp, "dl", tag)
        os.makedirs(dl)
        try:
            def get_big():
                dst = os.path.join(dl, "big.bin")
                secs, c, _ = self.sftp(port, [f"get {pre}/big.bin {dst}"], f"{tag}-get-big")
                if sha256_file(dst) != self.big_sha:
                    raise RuntimeError("sha256 of the download differs")
                os.unlink(dst)
                return {"seconds": secs, "requests": c}
            if "put-big" in cases:
                record("get-big", get_big)

            def small_get():
                d = os.path.join(dl, "small")
                os.makedirs(d)
                secs, c, _ = self.sftp(port, [f"lcd {d}", f"cd {pre}/small", "get *"], f"{tag}-small-get")
                bad = [n for n, h in self.small.items()
                       if not os.path.isfile(os.path.join(d, n)) or sha256_file(os.path.join(d, n)) != h]
                if bad:
                    raise RuntimeError(f"{len(bad)} small files missing or different, e.g. {bad[0]}")
                shutil.rmtree(d)
                return {"seconds": secs, "requests": c, "per_file_ms": secs * 1000 / a.small_count}

            def ls():
                secs, c, text = self.sftp(port, [f"ls -l {pre}/small"], f"{tag}-ls")
                n = sum(1 for line in text.splitlines() if ".bin" in line and not line.startswith("sftp>"))
                if n != a.small_count:
                    raise RuntimeError(f"ls -l listed {n} files, expected {a.small_count}")
                return {"seconds": secs, "requests": c}

            def rename():
                names = sorted(self.small)[:a.renames]
                lines = [f"rename {pre}/small/{n} {pre}/small/{n}.moved" for n in names]
                secs, c, _ = self.sftp(port, lines, f"{tag}-rename")
                return {"seconds": secs, "requests": c, "per_file_ms": secs * 1000 / len(names)}
            if "small-put" in cases:
                record("small-get", small_get)
                record("ls", ls)
                record("rename", rename)
        finally:
            stop(srv)
            shutil.rmtree(dl, ignore_errors=True)

        if "flat" in cases:
            srv, port = self.start(target, mode, f"{tag}-flat")
            try:
                def flat():
                    res = {}
                    n = a.flat_count
                    for where in ("small", "big"):
                        d = f"flat/{where}"
                        names = [f"{tag}-{i:04d}" for i in range(n)]
                        ops = {
                            "put": [f"put {self.flat_file} {d}/{x}" for x in names],
                            "stat": [f"ls -l {d}/{x}" for x in names],
                            "rename": [f"rename {d}/{x} {d}/{x}.r" for x in names],
                            "remove": [f"rm {d}/{x}.r" for x in names],
                        }
                        for op, lines in ops.items():
                            secs, c, _ = self.sftp(port, lines,
                                                   f"{tag}-flat-{where}-{op}")
                            res[f"{where}_{op}_ms"] = secs * 1000 / n
                            res[f"{where}_{op}_requests"] = c["requests"] / n
                    res["seconds"] = sum(res[f"big_{op}_ms"] for op in ("put", "stat", "rename", "remove")) \
                        * n / 1000
                    res["worst_growth"] = max(res[f"big_{op}_ms"] / res[f"small_{op}_ms"]
                                              for op in ("put", "stat", "rename", "remove"))
                    return res
                record("flat", flat)
            finally:
                stop(srv)

    def measure_floor(self, rnd, out):
        a = self.args
        pre = f"run/floor-r{rnd}"
        dl = os.path.join(self.tmp, "dl", f"floor-r{rnd}")
        os.makedirs(dl)

        def rec(case, fn):
            if case not in a.cases:
                return
            r = {"case": case, "target": "floor", "mode": "-", "round": rnd, "ok": False}
            try:
                secs, c = fn()
                r.update(ok=True, seconds=secs, requests=c)
                if case.startswith("small"):
                    r["per_file_ms"] = secs * 1000 / a.small_count
            except RuntimeError as e:
                r["error"] = str(e)
            out.append(r)
            note(f"[round {rnd}] floor         {case:<9} {r.get('seconds') or 0:8.2f} s  "
                 f"{r.get('requests', {}).get('requests', '-')} requests")
        rec("put-big", lambda: self.floor(["copyto", self.big, f"{self.remote}/{pre}/big.bin"], "put-big"))
        rec("small-put", lambda: self.floor(["copy", self.small_dir, f"{self.remote}/{pre}/small",
                                             "--no-check-dest", "--s3-no-head"], "small-put"))
        rec("get-big", lambda: self.floor(["copyto", f"{self.remote}/{pre}/big.bin",
                                           os.path.join(dl, "big.bin")], "get-big"))
        rec("small-get", lambda: self.floor(["copy", f"{self.remote}/{pre}/small", os.path.join(dl, "small"),
                                             "--no-check-dest"], "small-get"))
        rec("ls", lambda: self.floor(["lsf", f"{self.remote}/{pre}/small"], "ls"))
        shutil.rmtree(dl, ignore_errors=True)

    def run(self):
        a = self.args
        started = datetime.datetime.now(datetime.timezone.utc)
        load0 = os.getloadavg()[0]
        self.setup()
        runs = []
        t0 = time.monotonic()
        for r in range(1, a.rounds + 1):
            if "floor" in a.targets:
                self.measure_floor(r, runs)
            for mode in a.modes:
                order = [t for t in SFTP_TARGETS if t in a.targets]
                if r % 2 == 0:
                    order.reverse()
                for target in order:
                    self.measure(target, mode, r, runs)
        return self.summarize(runs, started, load0, time.monotonic() - t0)

    # -- report ------------------------------------------------------------

    def summarize(self, runs, started, load0, run_s):
        a = self.args
        med = {}
        for x in runs:
            if x["ok"]:
                med.setdefault((x["case"], x["mode"], x["target"]), []).append(x)
        table = {}
        for (case, mode, target), xs in med.items():
            d = {"median_s": statistics.median(x["seconds"] for x in xs),
                 "median_requests": statistics.median(x["requests"]["requests"] for x in xs)
                 if "requests" in xs[0] else None,
                 "by_method": xs[len(xs) // 2]["requests"].get("by_method") if "requests" in xs[0] else None}
            if case == "flat":
                for k in xs[0]:
                    if k.endswith("_ms") or k.endswith("_requests") or k == "worst_growth":
                        d[k] = statistics.median(x[k] for x in xs)
            table[f"{case}|{mode}|{target}"] = d
        failures = [f"{x['target']} {x['mode']} {x['case']} round {x['round']}: {x['error']}"
                    for x in runs if not x["ok"]]
        return {
            "tool": "ferry bench/objstore.py", "started_utc": started.isoformat(timespec="seconds"),
            "run_seconds": round(run_s, 1), "rounds": a.rounds, "latency_ms": a.latency_ms,
            "sizes": {k: getattr(a, k) for k in SIZES}, "machine": machine_info(),
            "load_avg": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
            "versions": {"openssh": first_line(["ssh", "-V"]), "rclone": first_line([a.rclone, "version"]),
                         "ferry": first_line([a.ferry, "version"]), "garage": first_line([a.garage, "--version"])},
            "servers": self.commands, "runs": runs, "medians": table, "failures": failures,
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


def ratio(num, den):
    return f"{num / den:.2f}x" if num and den else "-"


def markdown(rep):
    m = rep["medians"]
    modes = sorted({k.split("|")[1] for k in m if k.split("|")[1] != "-"}, key=MODES.index)
    out = [f"Garage S3, +{rep['latency_ms']:g} ms per request, {rep['rounds']} round(s), medians; "
           "rclone/ferry above 1 = Ferry faster; ferry/floor = Ferry's time over the direct S3 client's.", ""]
    head = "| case | " + " | ".join(f"{mo}: rclone s | {mo}: ferry s | {mo}: rclone/ferry | {mo}: ferry/floor"
                                     for mo in modes) + " | floor s |"
    out += [head, "|---|" + "---:|" * (4 * len(modes) + 1)]
    for case in CASES:
        if case == "flat":
            continue
        cells = []
        fl = m.get(f"{case}|-|floor", {}).get("median_s")
        for mo in modes:
            r = m.get(f"{case}|{mo}|rclone", {}).get("median_s")
            f = m.get(f"{case}|{mo}|ferry", {}).get("median_s")
            cells += [f"{r:.2f}" if r else "-", f"{f:.2f}" if f else "-", ratio(r, f), ratio(f, fl)]
        if any(c != "-" for c in cells):
            out.append(f"| {case} | " + " | ".join(cells) + f" | {fl:.2f} |" if fl else
                       f"| {case} | " + " | ".join(cells) + " | - |")
    out += ["", "Store requests per case (median run; method counts):", "",
            "| case | mode | rclone | ferry | floor |", "|---|---|---|---|---|"]

    def reqs(k):
        d = m.get(k)
        if not d or not d.get("by_method"):
            return "-"
        return f"{d['median_requests']:g} (" + ", ".join(f"{kk} {v}" for kk, v in d["by_method"].items()) + ")"
    for case in CASES:
        if case == "flat":
            continue
        for mo in modes:
            row = [reqs(f"{case}|{mo}|rclone"), reqs(f"{case}|{mo}|ferry"), reqs(f"{case}|-|floor")]
            if any(c != "-" for c in row):
                out.append(f"| {case} | {mo} | " + " | ".join(row) + " |")
    flat = [(k, d) for k, d in m.items() if k.startswith("flat|")]
    if flat:
        out += ["", f"Per-file cost in a directory of {rep['sizes']['big_dir']} files against one of {SMALL_DIR} "
                "(ms per file, requests per file; growth = large/small, the target is at most 1.2):", "",
                "| mode | target | op | small ms | large ms | growth | small req | large req |",
                "|---|---|---|---:|---:|---:|---:|---:|"]
        for k, d in sorted(flat):
            _, mo, t = k.split("|")
            for op in ("put", "stat", "rename", "remove"):
                e, b = d[f"small_{op}_ms"], d[f"big_{op}_ms"]
                out.append(f"| {mo} | {t} | {op} | {e:.1f} | {b:.1f} | {b / e:.2f} | "
                           f"{d[f'small_{op}_requests']:.1f} | {d[f'big_{op}_requests']:.1f} |")
    if rep["failures"]:
        out += ["", "Failures:", *[f"- {f}" for f in rep["failures"]]]
    return "\n".join(out)


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tools = os.environ.get("FERRY_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "ferry-test-tools")
    ap = argparse.ArgumentParser(description="Ferry against rclone serve sftp and a direct S3 client on Garage.")
    ap.add_argument("--ferry", default=os.path.join(repo, "target", "release", "ferry"))
    ap.add_argument("--rclone", default="rclone")
    ap.add_argument("--garage", default=os.path.join(tools, "garage", "bin", "garage"))
    ap.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small sizes and 1 round")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated --vfs-cache-modes (off,writes)")
    ap.add_argument("--targets", default="rclone,ferry,floor", help="comma-separated subset of rclone,ferry,floor")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each store request (default 0)")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds between a server's start and its run")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one client run may take")
    ap.add_argument("--workdir", help="parent of the temporary directory (default /dev/shm)")
    ap.add_argument("--json", metavar="FILE", help="also write every run and the medians as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    for k, (d, _, h) in SIZES.items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, help=f"{h} (default {d})")
    args = ap.parse_args()
    for k, (d, q, _) in SIZES.items():
        if getattr(args, k) is None:
            setattr(args, k, q if args.quick else d)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.modes = [m for m in args.modes.split(",") if m]
    args.targets = [t for t in args.targets.split(",") if t]
    args.cases = [c for c in args.cases.split(",") if c]
    bad = ([m for m in args.modes if m not in MODES] + [t for t in args.targets if t not in (*SFTP_TARGETS, "floor")]
           + [c for c in args.cases if c not in CASES])
    if bad:
        raise SystemExit(f"unknown: {', '.join(bad)}")
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
        note(f"interrupted ({e})")
        rc = 130
    except RuntimeError as e:
        note(f"error: {e}")
        rc = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        b.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())
