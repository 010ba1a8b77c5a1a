"""Remotes and the config file: REMOTE:PATH, on-the-fly remotes, the memory
backend served over SFTP, and the obscure/reveal/listremotes/config show
commands (the parts of the remotes issue that exist so far)."""

import os
import stat

import paramiko
import pytest

from conftest import PASSWORD, clean_env, connect_transport, ferry_bin, run


def sftp_client(port):
    t = connect_transport(port, password=PASSWORD)
    c = paramiko.SFTPClient.from_transport(t)
    c.get_channel().settimeout(30)
    return t, c


def ferry_cmd(*args, env=None, timeout=30):
    return run([ferry_bin(), *args], timeout=timeout, env=clean_env(env))


def test_memory_remote_serves_files(ferry_factory):
    srv = ferry_factory(target=":memory:")
    t, c = sftp_client(srv.port)
    try:
        data = os.urandom(300_001)
        c.mkdir("d")
        with c.open("d/f.bin", "wb") as f:
            f.write(data)
        with c.open("d/f.bin", "rb") as f:
            assert f.read() == data
        assert c.stat("d/f.bin").st_size == len(data)
        assert stat.S_ISDIR(c.stat("d").st_mode)
        # A READ|WRITE handle really reads what it wrote.
        with c.open("d/f.bin", "r+b") as f:
            f.seek(10)
            f.write(b"XYZ")
            f.seek(8)
            assert f.read(6) == data[8:10] + b"XYZ" + data[13:14]
        c.rename("d/f.bin", "d/g.bin")
        assert c.listdir("d") == ["g.bin"]
        with pytest.raises(OSError):
            c.rmdir("d")
        c.remove("d/g.bin")
        c.rmdir("d")
        assert c.listdir("/") == []
        with pytest.raises(FileNotFoundError):
            c.stat("nope")
    finally:
        c.close()
        t.close()
    # Nothing reached the scratch directory: the data lived in memory.
    assert os.listdir(srv.root) == []


def test_named_remotes_from_the_config_file(ferry_factory, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "hello.txt").write_bytes(b"hello")
    conf = tmp_path / "ferry.conf"
    conf.write_text(f"[disk]\ntype = local\n\n[scratch]\ntype = memory\n")
    srv = ferry_factory("--config", conf, target=f"disk:{disk}")
    t, c = sftp_client(srv.port)
    try:
        assert c.listdir("/") == ["hello.txt"]
    finally:
        c.close()
        t.close()
    srv2 = ferry_factory("--config", conf, target="scratch:")
    t, c = sftp_client(srv2.port)
    try:
        assert c.listdir("/") == []
    finally:
        c.close()
        t.close()


def test_config_problems_are_clear_errors(tmp_path):
    conf = tmp_path / "ferry.conf"
    conf.write_text("[bucket]\ntype = dropbox\n\n[broken]\nprovider = x\n")
    cases = [
        ("bucket:b", "not supported yet"),
        ("nope:x", "nope"),
        ("broken:x", "type"),
        (":frob,x='unterminated:y", "quote"),
    ]
    for target, needle in cases:
        p = ferry_cmd("--config", conf, "serve", "sftp", target, "--no-auth",
                      "--addr", "127.0.0.1:0")
        assert p.returncode == 2, (target, p.returncode, p.stderr)
        assert needle in p.stderr, (target, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    enc = tmp_path / "enc.conf"
    enc.write_text("# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\nabcdef\n")
    p = ferry_cmd("--config", enc, "listremotes")
    assert p.returncode == 2 and "encrypted" in p.stderr.lower(), p.stderr


def test_obscure_and_reveal_interoperate_with_rclone():
    # The spec's vector.
    p = ferry_cmd("reveal", "YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ")
    assert p.returncode == 0 and p.stdout == "potato\n", p
    secret = "s3cr3t, with: odd 'chars' \u00e9"
    # Obscured values are base64url and may start with "-": several rounds
    # make that likely, and `ferry reveal` must take them as they are.
    for _ in range(8):
        ours = ferry_cmd("obscure", secret).stdout.strip()
        p = run(["rclone", "--config", "/dev/null", "reveal", "--", ours], env=clean_env())
        assert p.returncode == 0 and p.stdout.strip() == secret, (ours, p)
        theirs = run(["rclone", "--config", "/dev/null", "obscure", "--", secret],
                     env=clean_env()).stdout.strip()
        assert ferry_cmd("reveal", theirs).stdout.strip() == secret, theirs
    p = ferry_cmd("reveal", "not obscured!")
    assert p.returncode == 2 and "is it obscured" in p.stderr, p


def test_listremotes_and_config_show(tmp_path):
    conf = tmp_path / "rclone.conf"
    conf.write_text("[one]\ntype = local\n\n[two]\ntype = sftp\nhost = h\npass = "
                    "YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ\nkey_pem = -----BEGIN KEY-----\n")
    p = ferry_cmd("--config", conf, "listremotes", env={"FERRY_CONFIG_THREE_TYPE": "memory"})
    assert p.returncode == 0, p
    assert p.stdout.split() == ["one:", "two:", "three:"] or \
        sorted(p.stdout.split()) == ["one:", "three:", "two:"], p.stdout
    p = ferry_cmd("--config", conf, "config", "show", "two")
    assert p.returncode == 0, p
    assert "host = h" in p.stdout
    assert "YWFh" not in p.stdout and "ENCRYPTED" in p.stdout, p.stdout
    # The registry's secrets of the type are hidden too (an inline key).
    assert "BEGIN KEY" not in p.stdout, p.stdout
    # The config file is found through FERRY_CONFIG too.
    p = ferry_cmd("listremotes", env={"FERRY_CONFIG": str(conf)})
    assert "two:" in p.stdout.split(), p
