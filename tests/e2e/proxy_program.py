#!/usr/bin/env python3
"""An auth proxy for the tests, speaking rclone's contract.

    proxy_program.py CONFIG.json

CONFIG is read at every call (tests change it between logins):

    {"calls": "/path/calls.jsonl",      # one line per call
     "running": "/path/running-dir",    # a file per running call; max in running/max
     "delay": 0.0,                      # seconds each call takes
     "users": {"alice": {"pass": ["pw", ...], "keys": ["AAAAC3...", ...],
                         "answer": {...},
                         "behaviour": "ok"}}}

`behaviour` makes a broken proxy for that user: crash (an exception, exit
1), abort (killed by SIGABRT), badjson, nonstring, noroot, unknowntype,
hang, huge (a megabyte of output), stderr (a megabyte on stderr, then the
answer).
"""

import fcntl
import json
import os
import sys
import time


def locked_append(path, line):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + "\n")


def enter(running):
    """Count this call as running; keep the highest count seen."""
    os.makedirs(running, exist_ok=True)
    mine = os.path.join(running, f"call-{os.getpid()}")
    open(mine, "w").close()
    with open(os.path.join(running, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = len([n for n in os.listdir(running) if n.startswith("call-")])
        max_path = os.path.join(running, "max")
        try:
            seen = int(open(max_path).read() or 0)
        except (FileNotFoundError, ValueError):
            seen = 0
        if now > seen:
            with open(max_path, "w") as f:
                f.write(str(now))
    return mine


def main():
    cfg = json.load(open(sys.argv[1]))
    req = json.load(sys.stdin)
    kind = "pass" if "pass" in req else "public_key" if "public_key" in req else "none"
    locked_append(cfg["calls"], json.dumps({"user": req.get("user"), "kind": kind,
                                            "client_ip": req.get("client_ip"),
                                            "keys": sorted(req)}))
    mine = enter(cfg["running"]) if cfg.get("running") else None
    try:
        time.sleep(cfg.get("delay", 0))
        return answer(cfg, req, kind)
    finally:
        if mine:
            os.unlink(mine)


def answer(cfg, req, kind):
    user = cfg["users"].get(req.get("user", ""))
    if user is None:
        print(f"unknown user {req.get('user')!r}", file=sys.stderr)
        return 1
    if kind == "pass" and req["pass"] not in user.get("pass", []):
        print("wrong password", file=sys.stderr)
        return 1
    if kind == "public_key" and req["public_key"] not in user.get("keys", []):
        print("key not allowed", file=sys.stderr)
        return 1
    if kind == "none":
        return 1
    b = user.get("behaviour", "ok")
    ans = dict(user["answer"])
    if b == "crash":
        raise RuntimeError("the proxy fell over")
    if b == "abort":
        os.abort()
    if b == "hang":
        time.sleep(3600)
    if b == "huge":
        sys.stdout.write("x" * (1 << 20))
        return 0
    if b == "stderr":
        sys.stderr.write("e" * (1 << 20))
    if b == "badjson":
        print('{"type": "local", "_root": ')
        return 0
    if b == "nonstring":
        ans["port"] = 22
    if b == "noroot":
        ans.pop("_root", None)
    if b == "unknowntype":
        ans["type"] = "ftp"
    json.dump(ans, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
