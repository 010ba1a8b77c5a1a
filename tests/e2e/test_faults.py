"""Transfers while the store misbehaves (`--debug-backend-faults`, a test
layer next to the store, under the retries): 5% of the store's requests
are refused, lose their answer after being made, are slow, or break a
ranged stream part way. Over a local directory and over Garage, every
upload, download and rename must either succeed byte-exact or fail with a
clean status; the store must never hold a partial or mixed file under a
client's name; the server must keep serving."""

import re

import paramiko
import pytest

from backends import S3_REMOTE, Store, write_backends_conf
from conftest import PASSWORD, connect_transport, make_random_file

SIZES = [0, 1, 4096, 100_000, 1 << 20, 3 << 20] * 4
TEMP = re.compile(r"(^|/)\.[^/]*\.ferry-[0-9a-f]{16}\.partial$")


def _store(kind, ferry_factory, s3_server, tmp_path, request):
    faults = ["--debug-backend-faults", "5%,seed=11", "-vv"]
    if kind == "local":
        store = Store("local", local=tmp_path / "served", scratch=tmp_path)
        store.local.mkdir()
        return store, ferry_factory(*faults, root=store.local)
    conf = write_backends_conf(tmp_path / "rclone.conf", s3=s3_server)
    prefix = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())
    store = Store("s3", conf=conf, target=f"{S3_REMOTE}:{s3_server.bucket}/{prefix}",
                  server=s3_server, scratch=tmp_path)
    return store, ferry_factory(*faults, "--config", conf, target=store.target)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_transfers_under_injected_faults_succeed_whole_or_fail_cleanly(
        kind, ferry_factory, s3_server, tmp_path, request):
    store, srv = _store(kind, ferry_factory, s3_server, tmp_path, request)
    t = connect_transport(srv.port, password=PASSWORD)
    c = paramiko.SFTPClient.from_transport(t)
    c.get_channel().settimeout(120)
    sources = {}
    uploaded, failed = [], []
    for i, size in enumerate(SIZES):
        src = tmp_path / f"src{i}.bin"
        make_random_file(src, size)
        name = f"f{i}.bin"
        sources[name] = sources[f"r{i}.bin"] = src.read_bytes()
        try:
            # As users call it: confirm=True stats the file after the
            # upload. (paramiko ignores a failed CLOSE, and its pipelined
            # WRITEs' failures too once all are sent: without the check a
            # refused upload looks like a success to its caller.)
            c.put(str(src), name)
            uploaded.append(name)
        except (IOError, paramiko.SSHException) as e:
            failed.append(f"put {name}: {e}")
    down = tmp_path / "down.bin"
    for name in uploaded:
        try:
            c.get(name, str(down))
        except (IOError, paramiko.SSHException) as e:
            failed.append(f"get {name}: {e}")
            continue
        assert down.read_bytes() == sources[name], f"{name} downloaded wrong"
    renamed, unsure = [], []
    for name in uploaded[::2]:
        to = "r" + name[1:]
        try:
            c.rename(name, to)
            renamed.append((name, to))
        except (IOError, paramiko.SSHException) as e:
            failed.append(f"rename {name}: {e}")
            unsure.append((name, to))
    # The server still serves (a listing may meet a fault: a few tries).
    for _ in range(5):
        try:
            listed = set(c.listdir("/"))
            break
        except IOError:
            continue
    else:
        pytest.fail("no listing in five tries")
    t.close()
    assert srv.proc.poll() is None, "the server died"

    files = {rel for rel in store.files() if not TEMP.search(rel)}
    # Nothing under a client's name that is not whole.
    for rel in files:
        assert rel in sources, f"unexpected file {rel}"
        assert store.read(rel) == sources[rel], f"{rel} is not what was uploaded"
    # What succeeded is there.
    moved = {a for a, _ in renamed}
    for name in uploaded:
        if name not in moved and all(name != a for a, _ in unsure):
            assert name in files, f"uploaded {name} is missing"
    for a, b in renamed:
        assert b in files and a not in files, (a, b)
    # A rename whose answer was lost is done or not, never both or neither.
    for a, b in unsure:
        assert (a in files) != (b in files), (a, b)
    assert listed <= files | {rel for rel in store.files()}
    log = srv.log()
    assert "injected fault" in log
    # The faults were felt, and reached clients only as statuses.
    print(f"{kind}: {len(uploaded)}/{len(SIZES)} uploads, "
          f"{log.count('injected fault')} faults, client saw {len(failed)}: {failed[:5]}")
