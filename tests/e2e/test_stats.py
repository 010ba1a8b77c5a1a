"""--stats and its companions (docs/logging.md#stats): rclone's stats block
in the log, every interval and at shutdown, with each SFTP transfer and
each write-back upload counted."""

import json
import re
import time

import pytest

from conftest import make_random_file, usage_error, wait_until

MiB = 1 << 20
# TIME, the level padded to six, one space, the message as it is.
PREFIX = re.compile(r"^\S+ (ERROR |NOTICE|INFO  |DEBUG ) (.*)$")


def messages(srv, level=None):
    out = []
    for line in srv.log().splitlines():
        m = PREFIX.match(line)
        if m and (level is None or m.group(1).strip() == level):
            out.append(m.group(2))
    return out


def blocks(srv):
    """Each stats block: the lines from one "Transferred:   \\t" line to the
    next."""
    out = []
    for msg in messages(srv):
        if msg.startswith("Transferred:   \t"):
            out.append([msg])
        elif out and re.match(r"^(Errors|Deleted|Renamed|Transferred|Elapsed time|"
                              r"Transferring):|^ \* ", msg):
            out[-1].append(msg)
    return out


def test_blocks_show_transfers_in_progress_and_done(ferry_factory, clients, tmp_path):
    src = tmp_path / "up.bin"
    make_random_file(src, 3 * MiB)
    # The limit keeps the upload going for a few stats intervals.
    srv = ferry_factory("--stats", "1s", "--bwlimit", "1M", verbosity="-v")
    c = clients.sftp(srv)
    c.put(str(src), "/up.bin")
    c.get("/up.bin", str(tmp_path / "down.bin"))
    c.rename("/up.bin", "/moved.bin")
    c.remove("/moved.bin")
    time.sleep(1.5)
    srv.stop()
    bs = blocks(srv)
    assert len(bs) >= 3, srv.log()
    during = [b for b in bs if "Transferring:" in b]
    assert during, bs
    shown = [l for b in during for l in b if l.startswith(" * ")]
    # An upload's size is not known until it ends; a download's is.
    assert any(re.fullmatch(r" \* +/up\.bin: +0% /off, [\d.]+(Ki|Mi)?/s, -", l) for l in shown), shown
    assert any(re.fullmatch(r" \* +/up\.bin: *\d+% /3Mi, [\d.]+(Ki|Mi)?/s, (\d+s|-)", l)
               for l in shown), shown
    last = bs[-1]
    assert re.match(r"Transferred:   \t +6 MiB / 6 MiB, 100%, ", last[0]), last
    assert "Transferred:            2 / 2, 100%" in last, last
    assert "Deleted:                1 (files), 0 (dirs)" in last, last
    assert "Renamed:                1" in last, last
    assert any(re.fullmatch(r"Elapsed time: +[\dmh.]+s", l) for l in last), last


def test_final_block_at_shutdown_and_none_with_zero(ferry_factory, clients):
    srv = ferry_factory("--stats", "1h", verbosity="-v")
    clients.sftp(srv).listdir("/")
    srv.stop()
    bs = blocks(srv)
    assert len(bs) == 1 and bs[0][0] == "Transferred:   \t" + "0 B".rjust(13) + " / 0 B, -, 0 B/s, ETA -", bs
    off = ferry_factory("--stats", "0", verbosity="-v")
    clients.sftp(off).listdir("/")
    off.stop()
    assert blocks(off) == []


def test_one_line_date_unit_and_level(ferry_factory, clients, tmp_path):
    srv = ferry_factory("--stats", "500ms", "--stats-one-line-date", "--stats-unit", "bits",
                        "--stats-log-level", "NOTICE", verbosity="")
    clients.sftp(srv).listdir("/")
    assert wait_until(lambda: messages(srv, "NOTICE"), timeout=10)
    srv.stop()
    lines = messages(srv, "NOTICE")
    assert lines and all(re.fullmatch(
        r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d - +0 B / 0 B, -, 0 bit/s, ETA -", l) for l in lines), lines
    assert not blocks(srv), "one line only"


def test_write_back_uploads_are_transfers(ferry_factory, clients, tmp_path):
    srv = ferry_factory("--stats", "1h", "--vfs-cache-mode", "writes", "--vfs-write-back", "0s",
                        verbosity="-v")
    c = clients.sftp(srv)
    with c.open("/wb.bin", "wb") as f:
        f.write(b"x" * 100000)
    assert wait_until(lambda: srv.backing("wb.bin").exists(), timeout=20)
    assert wait_until(lambda: "vfs cache: uploaded" in srv.log(), timeout=20)
    srv.stop()
    last = blocks(srv)[-1]
    # The SFTP write and the upload to the remote behind it.
    assert "Transferred:            2 / 2, 100%" in last, last


def test_json_stats(ferry_factory, clients):
    srv = ferry_factory("--stats", "1h", "--use-json-log", verbosity="-v")
    c = clients.sftp(srv)
    with c.open("/a.bin", "wb") as f:
        f.write(b"y" * 5000)
    srv.stop()
    objs = [json.loads(l) for l in srv.log().splitlines() if l.startswith("{")]
    stats = [o for o in objs if o["msg"] == "stats"]
    assert stats and stats[-1]["bytes"] == 5000 and stats[-1]["transfers"] == 1, stats
    assert isinstance(stats[-1]["elapsed_time"], float)


@pytest.mark.parametrize("args", [
    ["--stats", "often"],
    ["--stats-unit", "furlongs"],
    ["--stats-log-level", "LOUD"],
], ids=lambda a: "=".join(a))
def test_bad_stats_flags(tmp_path, args):
    assert args[0] in usage_error(tmp_path, args)
