"""--bwlimit and --bwlimit-file (docs/bwlimit.md): a short, tolerant check
that the limits apply, each way and per file, and that SIGUSR2 toggles
them. How closely a limit holds is measured by bench/bwlimit.py, not here:
these only check that a limited transfer is not faster than its limit
allows (its bucket starts empty) and that an unlimited one is not held.
"""

import os
import signal
import threading
import time

import pytest

from conftest import make_random_file, usage_error, wait_until

MiB = 1 << 20


def timed(fn, *args):
    t0 = time.monotonic()
    fn(*args)
    return time.monotonic() - t0


def test_one_rate_limits_both_ways(ferry_factory, clients, tmp_path):
    src = tmp_path / "src.bin"
    make_random_file(src, 2 * MiB)
    srv = ferry_factory("--bwlimit", "1M")
    c = clients.sftp(srv)
    up = timed(c.put, str(src), "/a.bin")
    assert up >= 1.6, f"2 MiB up at 1 MiB/s took {up:.2f} s"
    srv2 = ferry_factory("--bwlimit", "1M", root=srv.root)
    c2 = clients.sftp(srv2)
    down = timed(c2.get, "/a.bin", str(tmp_path / "down.bin"))
    assert down >= 1.6, f"2 MiB down at 1 MiB/s took {down:.2f} s"
    assert (tmp_path / "down.bin").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("flag, limited", [("1M:off", "up"), ("off:1M", "down")])
def test_tx_is_upload_and_rx_download(ferry_factory, clients, tmp_path, flag, limited):
    src = tmp_path / "src.bin"
    make_random_file(src, 2 * MiB)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "d.bin").write_bytes(src.read_bytes())
    srv = ferry_factory("--bwlimit", flag, root=tmp_path / "root")
    c = clients.sftp(srv)
    up = timed(c.put, str(src), "/u.bin")
    down = timed(c.get, "/d.bin", str(tmp_path / "down.bin"))
    slow, fast = (up, down) if limited == "up" else (down, up)
    assert slow >= 1.6, (flag, up, down)
    assert fast < 1.2, (flag, up, down)


def test_per_file_limit_applies_to_each_file(ferry_factory, clients, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for n in ("a", "b"):
        make_random_file(root / f"{n}.bin", MiB)
    srv = ferry_factory("--bwlimit-file", "512k", root=root)
    took = {}

    def get(n):
        c = clients.sftp(srv)
        took[n] = timed(c.get, f"/{n}.bin", str(tmp_path / f"{n}.down"))

    t0 = time.monotonic()
    threads = [threading.Thread(target=get, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    both = time.monotonic() - t0
    assert min(took.values()) >= 1.6, took
    # Each file has its own 512 KiB/s: two at once take about as long as one.
    assert both < 2 * min(took.values()) * 0.9 + 0.5, (both, took)


def test_sigusr2_toggles_the_limit(ferry_factory, clients, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make_random_file(root / "big.bin", 4 * MiB)
    srv = ferry_factory("--bwlimit", "256k", root=root)
    c = clients.sftp(srv)
    done = {}

    def get():
        done["t"] = timed(c.get, "/big.bin", str(tmp_path / "big.down"))

    t = threading.Thread(target=get)
    t.start()
    time.sleep(1)
    os.kill(srv.proc.pid, signal.SIGUSR2)
    t.join(60)
    assert "t" in done and done["t"] < 8, done  # 16 s at 256 KiB/s
    assert wait_until(lambda: "SIGUSR2: bandwidth limit toggled off" in srv.log())
    os.kill(srv.proc.pid, signal.SIGUSR2)
    assert wait_until(lambda: "SIGUSR2: bandwidth limit on again (256Ki)" in srv.log())


def test_no_limit_by_default_and_timetables_start(ferry_factory, clients, tmp_path):
    src = tmp_path / "src.bin"
    make_random_file(src, 4 * MiB)
    srv = ferry_factory()
    assert timed(clients.sftp(srv).put, str(src), "/x.bin") < 2
    # A timetable whose every slot is off limits nothing.
    srv = ferry_factory("--bwlimit", "00:00,off 12:00,off")
    assert timed(clients.sftp(srv).put, str(src), "/y.bin") < 2
    srv = ferry_factory("--bwlimit", "Mon-00:00,1M Tue-00:00,1M Wed-00:00,1M Thu-00:00,1M "
                        "Fri-00:00,1M Sat-00:00,1M Sun-00:00,1M")
    assert timed(clients.sftp(srv).put, str(src), "/z.bin") >= 3


@pytest.mark.parametrize("args", [
    ["--bwlimit", "fast"],
    ["--bwlimit", "25:00,1M"],
    ["--bwlimit", "08:00,1M Funday-09:00,2M"],
    ["--bwlimit-file", "1Q"],
], ids=lambda a: "=".join(a))
def test_bad_rates_are_usage_errors(tmp_path, args):
    assert args[0] in usage_error(tmp_path, args)
