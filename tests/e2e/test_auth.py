"""SSH layer: authentication, host keys, algorithms, the command line."""

import os
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from conftest import (HOST, PASSWORD, USER, clean_env, connect_transport, default_client_key,
                      ferry_bin, openssh_sftp, openssh_ssh, run, usage_error, wait_until)


def sftp_works(transport):
    c = paramiko.SFTPClient.from_transport(transport)
    c.get_channel().settimeout(30)
    try:
        c.listdir("/")
    finally:
        c.close()
    return True


def startup_failure(srv, timeout=20):
    """Wait for a server that must refuse to start; return (rc, log)."""
    try:
        rc = srv.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ferry kept running; it should have refused to start:\n{srv.log_tail()}")
    return rc, srv.log()


# --------------------------------------------------------------------------
# password and keys
# --------------------------------------------------------------------------

def test_password_ok_and_wrong(ferry):
    t = connect_transport(ferry.port, password=PASSWORD)
    assert t.is_authenticated() and sftp_works(t)
    t.close()
    for user, pw in [(USER, "wrong"), (USER, ""), ("someone-else", PASSWORD),
                     (USER, PASSWORD + "x"), (USER, PASSWORD[:-1])]:
        with pytest.raises(paramiko.AuthenticationException):
            connect_transport(ferry.port, user=user, password=pw)
    t = connect_transport(ferry.port, password=PASSWORD)   # still serving
    assert sftp_works(t)
    t.close()


def test_key_ok_and_unknown_key(ferry, keys):
    t = connect_transport(ferry.port, pkey=keys.paramiko_key("client"))
    assert t.is_authenticated() and sftp_works(t)
    t.close()
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(ferry.port, pkey=keys.paramiko_key("other"))
    rc, out, err = openssh_sftp(ferry, "ls /\n", key=keys.other)
    assert rc != 0
    t = connect_transport(ferry.port, pkey=keys.paramiko_key("client"))
    t.close()


@pytest.mark.parametrize("command", [
    "internal-sftp",
    "internal-sftp -l INFO -f AUTH",
    "/usr/lib/openssh/sftp-server -e",
    "/usr/local/bin/ferry serve sftp --stdio /srv/files",
])
def test_forced_sftp_commands_keep_the_key_working(ferry_factory, keys, tmp_path, command):
    """command="internal-sftp" and friends make a key SFTP-only with
    OpenSSH; Ferry serves only SFTP, so the key gets SFTP."""
    ak = keys.write_authorized("forced", f'restrict,command="{command}" {keys.client_pub}\n')
    srv = ferry_factory("--authorized-keys", ak, auth=False)
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(70000))
    rc, out, err = openssh_sftp(srv, f"put {src} /up.bin\nls -l /\n")
    assert rc == 0, err
    assert srv.backing("up.bin").read_bytes() == src.read_bytes()
    if "--stdio" in command:
        assert "the command's own arguments (/srv/files) are not applied" in srv.log()


def test_forced_read_only_sftp_refuses_changes(ferry_factory, keys, tmp_path):
    ak = keys.write_authorized("forced_ro", f'command="internal-sftp -R" {keys.client_pub}\n')
    srv = ferry_factory("--authorized-keys", ak, "--user", USER, "--pass", PASSWORD, auth=False)
    srv.backing("there.txt").write_bytes(b"hello")
    got = tmp_path / "got.txt"
    rc, out, err = openssh_sftp(srv, f"get /there.txt {got}\n")
    assert rc == 0 and got.read_bytes() == b"hello", err
    src = tmp_path / "up.bin"
    src.write_bytes(b"x")
    for change in (f"put {src} /up.bin", "mkdir /d", "rm /there.txt", "rename /there.txt /t"):
        rc, out, err = openssh_sftp(srv, change + "\n")
        assert rc != 0 and "denied" in err.lower(), (change, err)
    assert sorted(os.listdir(srv.root)) == ["there.txt"]
    # The password login of the same server is not read-only.
    t = connect_transport(srv.port, password=PASSWORD)
    c = paramiko.SFTPClient.from_transport(t)
    with c.open("/by-password.txt", "wb") as f:
        f.write(b"ok")
    t.close()
    assert srv.backing("by-password.txt").read_bytes() == b"ok"


@pytest.mark.parametrize("command", ["ls", "internal-sftp -d /upload", "/bin/sh -c sftp-server"])
def test_other_forced_commands_refuse_the_key(ferry_factory, keys, command):
    ak = keys.write_authorized("forced_bad", f'command="{command}" {keys.client_pub}\n'
                                             f'{keys.other_pub}\n')
    srv = ferry_factory("--authorized-keys", ak, "--user", USER, "--pass", PASSWORD, auth=False)
    rc, out, err = openssh_sftp(srv, "ls /\n")
    assert rc != 0
    assert "key refused" in srv.log(), srv.log_tail(10)


def test_none_auth_refused_by_default(ferry):
    with pytest.raises(paramiko.SSHException):
        connect_transport(ferry.port)   # `none` auth


def test_no_auth(ferry_factory):
    srv = ferry_factory("--no-auth", auth=False)
    t = connect_transport(srv.port, user="anybody")
    assert t.is_authenticated() and sftp_works(t)
    t.close()


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_other_client_key_types(ferry_factory, keys, tmp_path, kind):
    key = tmp_path / f"id_{kind}"
    args = ["-b", "3072"] if kind == "rsa" else ["-b", "256"]
    r = run(["ssh-keygen", "-q", "-t", kind, *args, "-N", "", "-f", key], timeout=60)
    assert r.returncode == 0, r.stderr
    auth = keys.write_authorized(f"ak_{kind}", key.with_suffix(".pub").read_text())
    srv = ferry_factory("--authorized-keys", auth, auth=False)
    rc, out, err = openssh_sftp(srv, "mkdir /made\n", key=key)
    assert rc == 0, err
    assert srv.backing("made").is_dir()


def test_authorized_keys_from_option(ferry_factory, keys):
    deny = keys.write_authorized("ak_from_other", f'from="127.0.0.2" {keys.client_pub}\n')
    srv = ferry_factory("--authorized-keys", deny, auth=False)
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(srv.port, pkey=keys.paramiko_key())
    # The same key from the allowed address works.
    t = connect_transport(srv.port, pkey=keys.paramiko_key(), source_addr="127.0.0.2")
    assert sftp_works(t)
    t.close()

    allow = keys.write_authorized("ak_from_self",
                                  f'from="127.0.0.1" {keys.client_pub}\n')
    srv2 = ferry_factory("--authorized-keys", allow, auth=False)
    t = connect_transport(srv2.port, pkey=keys.paramiko_key())
    assert sftp_works(t)
    t.close()


def test_authorized_keys_line_with_two_from_options_is_skipped(ferry_factory, keys):
    """Finding 12: of two `from=` the last was taken, so a line meant for
    127.0.0.2 let 127.0.0.1 in. OpenSSH refuses such a line; so does Ferry,
    saying which line and why."""
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIInZ9ZIxKjZ6L7/gz1hhhsQkEY5iqYaYjKCifsAkj28E other"
    ak = keys.write_authorized(
        "ak_two_from", f'from="127.0.0.2",from="127.0.0.1" {keys.client_pub}\n{other}\n')
    srv = ferry_factory("--authorized-keys", ak, auth=False)
    for source in ("127.0.0.1", "127.0.0.2"):
        with pytest.raises(paramiko.AuthenticationException):
            connect_transport(srv.port, pkey=keys.paramiko_key(), source_addr=source)
    assert "from given twice; line skipped" in srv.log()


def test_seventh_attempt_on_one_connection_is_refused(ferry, tmp_path):
    """Six password tries per connection, then the server hangs up.

    Driven with OpenSSH's client: paramiko re-sends the ssh-userauth service
    request before every attempt, which russh does not answer a second time.
    An askpass program types six wrong passwords, then the right one."""
    counter = tmp_path / "count"
    counter.write_text("0")
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {counter}); n=$((n + 1)); echo $n > {counter}\n"
        f"if [ $n -ge 7 ]; then echo '{PASSWORD}'; else echo wrong-$n; fi\n")
    askpass.chmod(0o755)
    env = clean_env({"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
                     "DISPLAY": ":0"})
    cmd = ["ssh", "-p", str(ferry.port), "-o", "BatchMode=no",
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
           "-o", "NumberOfPasswordPrompts=10", "-s", f"{USER}@{HOST}", "sftp"]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=120, env=env)
    tries = int(counter.read_text())
    assert p.returncode != 0, f"logged in after {tries} tries: {p.stdout}"
    assert tries == 7, f"askpass asked {tries} times; stderr: {p.stderr}"
    assert "Too many authentication" in p.stderr or "Connection closed" in p.stderr, p.stderr
    # Six tries, each answered: the server kept offering password.
    t = connect_transport(ferry.port, password=PASSWORD)
    assert sftp_works(t)
    t.close()


def test_password_from_environment(ferry_factory):
    srv = ferry_factory(auth=False, env={"FERRY_USER": "envuser", "FERRY_PASS": "env-secret"})
    t = connect_transport(srv.port, user="envuser", password="env-secret")
    assert sftp_works(t)
    t.close()
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(srv.port, user="envuser", password="wrong")


# --------------------------------------------------------------------------
# refusing to start
# --------------------------------------------------------------------------

def test_missing_explicit_authorized_keys_is_fatal(ferry_factory, tmp_path):
    missing = tmp_path / "no-such-authorized_keys"
    srv = ferry_factory("--authorized-keys", missing, auth=False, wait=False)
    rc, log = startup_failure(srv)
    assert rc != 0
    assert str(missing) in log, log


def test_explicit_authorized_keys_without_keys_is_fatal(ferry_factory, keys):
    empty = keys.write_authorized("ak_empty", "# nothing here\n\n")
    srv = ferry_factory("--authorized-keys", empty, auth=False, wait=False)
    rc, log = startup_failure(srv)
    assert rc != 0
    assert str(empty) in log, log


def test_no_auth_configured_refuses_to_start(ferry_factory):
    srv = ferry_factory(auth=False, wait=False)
    rc, log = startup_failure(srv)
    assert rc != 0
    for opt in ["--user", "--pass", "--authorized-keys", "--no-auth", "--auth-proxy"]:
        assert opt in log, f"{opt} not named in: {log}"


def test_unreadable_host_key_is_fatal(ferry_factory, tmp_path, keys):
    bad = tmp_path / "bad_key"
    bad.write_text("this is not a key\n")
    srv = ferry_factory("--key", bad, host_key=False, wait=False)
    rc, log = startup_failure(srv)
    assert rc != 0 and str(bad) in log, log
    enc = tmp_path / "enc_key"
    r = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", enc], timeout=30)
    assert r.returncode == 0
    srv = ferry_factory("--key", enc, host_key=False, wait=False)
    rc, log = startup_failure(srv)
    assert rc != 0 and str(enc) in log, log


@pytest.mark.parametrize("args", [
    ["--no-such-flag"],
    ["--addr", "127.0.0.1:notaport"],
    ["--dir-perms", "99z"],
    ["--file-perms", "888"],
    ["--umask", "xyz"],
    ["--uid", "minus-one"],
    ["--gid", "-5"],
], ids=lambda a: a[0])
def test_bad_flags_exit_2_with_one_line(tmp_path, args):
    usage_error(tmp_path, args)


def test_missing_path_argument_exits_2(tmp_path):
    p = run([ferry_bin(), "serve", "sftp", "--no-auth"], timeout=20,
            env=clean_env({"HOME": str(tmp_path)}))
    assert p.returncode == 2, (p.returncode, p.stderr)


# --------------------------------------------------------------------------
# host keys and algorithms
# --------------------------------------------------------------------------

def server_key(port, key_type):
    """The host key the server presents when only `key_type` is allowed."""
    sock = socket.create_connection((HOST, port), timeout=20)
    t = paramiko.Transport(sock)
    t.get_security_options().key_types = [key_type]
    try:
        t.start_client(timeout=20)
        return t.get_remote_server_key()
    finally:
        t.close()


def test_host_keys_generated_once(ferry_factory, tmp_path):
    cache = tmp_path / "keycache"
    srv = ferry_factory(host_key=False, cache_dir=cache)
    kdir = cache / "serve-sftp"
    assert kdir.is_dir()
    assert stat.S_IMODE(kdir.stat().st_mode) == 0o700
    private = sorted(p for p in kdir.iterdir() if not p.name.endswith(".pub"))
    assert len(private) >= 3, os.listdir(kdir)
    pubs = {}
    for p in private:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        pub = p.with_name(p.name + ".pub")
        assert pub.exists(), f"no {pub.name}"
        kind, blob = pub.read_text().split()[:2]
        pubs[kind] = blob
    assert {"ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"} <= set(pubs), pubs
    rsa_pub = next(p for p in kdir.glob("*.pub") if p.read_text().startswith("ssh-rsa"))
    bits = run(["ssh-keygen", "-l", "-f", rsa_pub], timeout=20).stdout.split()[0]
    assert int(bits) >= 3072, bits

    offered = {}
    for algo in ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256", "rsa-sha2-512"]:
        key = server_key(srv.port, algo)
        offered[algo] = key.get_base64()
    assert offered["ssh-ed25519"] == pubs["ssh-ed25519"]
    assert offered["ecdsa-sha2-nistp256"] == pubs["ecdsa-sha2-nistp256"]
    assert offered["rsa-sha2-256"] == offered["rsa-sha2-512"] == pubs["ssh-rsa"]
    # (SHA-1 `ssh-rsa` is checked in test_modern_algorithms_only.)

    contents = {p.name: p.read_bytes() for p in kdir.iterdir()}
    srv.stop()
    srv2 = ferry_factory(host_key=False, cache_dir=cache)
    assert {p.name: p.read_bytes() for p in kdir.iterdir()} == contents
    for algo in ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256"]:
        assert server_key(srv2.port, algo).get_base64() == offered[algo]


def test_two_instances_generating_host_keys_at_once(ferry_factory, tmp_path):
    """Two servers started together on one empty cache directory: both
    start (one of the two exited with "cannot create host key" in 9 of 10
    tries before; each round here failed) and present the same keys."""
    from conftest import wait_port
    for i in range(3):
        cache = tmp_path / f"race{i}"
        a = ferry_factory(host_key=False, cache_dir=cache, wait=False)
        b = ferry_factory(host_key=False, cache_dir=cache, wait=False)
        for srv in (a, b):
            assert wait_port(srv.port, srv.proc), srv.log_tail()
        for algo in ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-256"]:
            assert server_key(a.port, algo).get_base64() == server_key(b.port, algo).get_base64()
        kdir = cache / "serve-sftp"
        assert sorted(p.name for p in kdir.iterdir()) == [
            "id_ecdsa", "id_ecdsa.pub", "id_ed25519", "id_ed25519.pub", "id_rsa", "id_rsa.pub"]
        a.stop()
        b.stop()


def test_given_host_key_is_used(ferry, keys):
    pub = keys.host.with_suffix(".pub").read_text().split()[1]
    assert server_key(ferry.port, "ssh-ed25519").get_base64() == pub
    assert not (ferry.cache_dir / "serve-sftp").exists() or \
        not any((ferry.cache_dir / "serve-sftp").iterdir())


SHORT_ECDSA = Path(__file__).resolve().parents[2] / "crates/sshkey/tests/data"


def test_ecdsa_host_key_with_a_short_scalar(ferry_factory, tmp_path):
    """About one P-256 key in 256 from ssh-keygen has a private scalar under
    32 bytes (an mpint drops leading zeros); the ssh-key crate refuses those
    and Ferry failed to start with "length invalid". This is such a key: it
    loads, and both clients verify the host's signature made with it."""
    key = tmp_path / "host_ecdsa"
    shutil.copy(SHORT_ECDSA / "ecdsa256_short_scalar", key)
    os.chmod(key, 0o600)
    kind, blob = (SHORT_ECDSA / "ecdsa256_short_scalar.pub").read_text().split()[:2]
    srv = ferry_factory("--key", key, host_key=False)
    # paramiko checks the signature over the exchange hash.
    assert server_key(srv.port, "ecdsa-sha2-nistp256").get_base64() == blob
    # OpenSSH with only that key known, checked strictly.
    known = tmp_path / "known_hosts"
    known.write_text(f"[{HOST}]:{srv.port} {kind} {blob}\n")
    cmd = ["sftp", "-F", "/dev/null", "-o", "StrictHostKeyChecking=yes",
           "-o", f"UserKnownHostsFile={known}", "-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256",
           "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20",
           "-b", "-", "-P", str(srv.port), "-i", str(default_client_key()), f"{USER}@{HOST}"]
    p = run(cmd, input="ls /\n", timeout=60, env=clean_env())
    assert p.returncode == 0, p.stderr


def test_modern_algorithms_only(ferry_factory):
    srv = ferry_factory(host_key=False)
    rc, out, err = openssh_ssh(srv, "true", extra=["-vv"])
    m = re.search(r"peer server KEXINIT proposal(.*?)(?:debug1: kex: algorithm|\Z)", err, re.S)
    assert m, err[-3000:]
    prop = m.group(1)

    def field(name):
        fm = re.search(rf"debug2: {name}: (\S*)", prop)
        assert fm, f"{name} not in proposal:\n{prop}"
        return fm.group(1).split(",")

    kex = field("KEX algorithms")
    assert any(k.startswith("curve25519-sha256") or k.startswith("mlkem") for k in kex), kex
    assert "kex-strict-s-v00@openssh.com" in kex, "no strict-kex (Terrapin mitigation)"
    assert not [k for k in kex if k.endswith("-sha1")], kex
    hostkeys = field("host key algorithms")
    assert "ssh-rsa" not in hostkeys and "ssh-dss" not in hostkeys, hostkeys
    ciphers = field("ciphers ctos")
    assert "aes128-gcm@openssh.com" in ciphers, ciphers
    assert "chacha20-poly1305@openssh.com" in ciphers, ciphers
    assert not [c for c in ciphers if "cbc" in c or "3des" in c or "arcfour" in c], ciphers
    macs = field("MACs ctos")
    assert not [m for m in macs if "md5" in m or "sha1" in m], macs


# What a stock OpenSSH 9 server offers (less sntrup761 and UMAC, which
# russh does not have): each must work with OpenSSH's client forced to it.
OPENSSH_DEFAULTS = {
    "KexAlgorithms": ["mlkem768x25519-sha256", "curve25519-sha256",
                      "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
                      "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
                      "diffie-hellman-group-exchange-sha256", "diffie-hellman-group16-sha512",
                      "diffie-hellman-group18-sha512", "diffie-hellman-group14-sha256"],
    "Ciphers": ["chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
                "aes128-gcm@openssh.com", "aes256-gcm@openssh.com"],
    "MACs": ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
             "hmac-sha2-256", "hmac-sha2-512"],
    "HostKeyAlgorithms": ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512",
                          "rsa-sha2-256"],
}

# Legacy algorithms: off by default, each on with the flag named.
LEGACY = [
    ("--ssh-kex", "KexAlgorithms", "diffie-hellman-group14-sha1"),
    ("--ssh-kex", "KexAlgorithms", "diffie-hellman-group-exchange-sha1"),
    ("--ssh-kex", "KexAlgorithms", "diffie-hellman-group1-sha1"),
    ("--ssh-ciphers", "Ciphers", "aes128-cbc"),
    ("--ssh-ciphers", "Ciphers", "aes256-cbc"),
    ("--ssh-macs", "MACs", "hmac-sha1"),
    ("--ssh-macs", "MACs", "hmac-sha1-etm@openssh.com"),
    ("--ssh-host-key-algorithms", "HostKeyAlgorithms", "ssh-rsa"),
]


def forced(option, name):
    """ssh options that make the client use only `name` for `option`."""
    extra = ["-o", f"{option}={name}"]
    if option == "MACs":
        extra += ["-o", "Ciphers=aes128-ctr"]     # AEAD ciphers use no MAC
    return extra


def client_knows(option):
    """What this OpenSSH client supports for `option` (`ssh -Q`): 9.2 has
    no ML-KEM yet."""
    q = {"KexAlgorithms": "kex", "Ciphers": "cipher", "MACs": "mac",
         "HostKeyAlgorithms": "key-sig", "PubkeyAcceptedAlgorithms": "key-sig"}[option]
    return set(run(["ssh", "-Q", q], timeout=20).stdout.split())


def test_every_openssh_default_algorithm_works(ferry_factory):
    srv = ferry_factory(host_key=False)     # generated Ed25519, ECDSA and RSA keys
    failed = []
    for option, names in OPENSSH_DEFAULTS.items():
        known = client_knows(option)
        for name in names:
            if name not in known:
                continue
            rc, out, err = openssh_ssh(srv, "echo", "ok", extra=forced(option, name))
            if (rc, out) != (0, "ok\n"):
                failed.append(f"{option}={name}: rc {rc} {err.strip()[-300:]}")
    assert not failed, "\n".join(failed)


def test_legacy_algorithms_are_off_by_default_and_on_with_their_flag(ferry_factory):
    default = ferry_factory(host_key=False)
    for flag, option, name in LEGACY:
        rc, out, err = openssh_ssh(default, "echo", "ok", extra=forced(option, name))
        assert rc != 0, f"{option}={name} accepted by default"
        what = {"KexAlgorithms": "key exchange", "Ciphers": "cipher", "MACs": "MAC",
                "HostKeyAlgorithms": "host key"}[option]
        line = re.escape(f"no common {what} algorithm; client offers {name}; "
                         f"{flag} +{name} would allow it")
        assert wait_until(lambda: re.search(line, default.log()), timeout=10), \
            f"no log line for {name}:\n{default.log_tail(20)}"
    flags = [a for flag, _, name in LEGACY for a in (flag, f"+{name}")]
    legacy = ferry_factory(*flags, host_key=False, cache_dir=default.cache_dir)
    failed = []
    for flag, option, name in LEGACY:
        rc, out, err = openssh_ssh(legacy, "echo", "ok", extra=forced(option, name))
        if (rc, out) != (0, "ok\n"):
            failed.append(f"{flag} +{name}: rc {rc} {err.strip()[-300:]}")
    assert not failed, "\n".join(failed)


def test_rsa_keys_log_in_with_sha2_signatures(ferry_factory, keys, tmp_path):
    """RSA keys sign with rsa-sha2-* by default. (SHA-1 ssh-rsa signatures,
    refused unless --ssh-pubkey-algorithms +ssh-rsa, are tested with the
    clients that make them, JSch and curl, in test_clients.py: OpenSSH's
    client never offers them to a server whose server-sig-algs lacks them.)"""
    rsa = tmp_path / "id_rsa"
    r = run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", rsa], timeout=60)
    assert r.returncode == 0, r.stderr
    ak = keys.write_authorized("rsa_authorized", (tmp_path / "id_rsa.pub").read_text())
    srv = ferry_factory("--authorized-keys", ak, auth=False)
    for alg in ("rsa-sha2-256", "rsa-sha2-512"):
        extra = ["-o", f"PubkeyAcceptedAlgorithms={alg}"]
        assert openssh_ssh(srv, "echo", "ok", key=rsa, extra=extra)[:2] == (0, "ok\n"), alg


@pytest.mark.parametrize("args", [
    ["--ssh-kex", "+sntrup761x25519-sha512@openssh.com"],
    ["--ssh-ciphers", "3des-cbc"],
    ["--ssh-macs", "-hmac-sha2-*"],
    ["--ssh-host-key-algorithms", ""],
    ["--ssh-pubkey-algorithms", "ssh-ed25519,,ssh-rsa"],
], ids=["unknown-kex", "unsupported-cipher", "leaves-none", "empty", "empty-name"])
def test_bad_algorithm_flags(ferry_factory, tmp_path, args):
    p = run([ferry_bin(), "serve", "sftp", tmp_path, "--no-auth", *args], timeout=30,
            env=clean_env({"HOME": str(tmp_path)}))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--ssh-" in p.stderr, p.stderr


# --------------------------------------------------------------------------
# logging and lifecycle
# --------------------------------------------------------------------------

def test_log_file_records_logins_and_failures(ferry_factory, tmp_path):
    log = tmp_path / "ferry-file.log"
    srv = ferry_factory("--log-file", log)
    t = connect_transport(srv.port, password=PASSWORD)
    sftp_works(t)
    t.close()
    with pytest.raises(paramiko.AuthenticationException):
        connect_transport(srv.port, user="intruder", password="guess")
    srv.stop()
    text = log.read_text()
    login = [ln for ln in text.splitlines() if USER in ln and "127.0.0.1" in ln]
    assert login and any("password" in ln for ln in login), text
    assert any("intruder" in ln for ln in text.splitlines()), \
        f"failed login not logged at -v:\n{text}"


def test_vv_logs_every_sftp_operation(ferry_factory, clients):
    srv = ferry_factory(verbosity="-vv")
    c = clients.sftp(srv)
    with pytest.raises(FileNotFoundError):
        c.stat("/missing-vv-probe")
    c.mkdir("/made-vv-probe")
    c.close()
    srv.stop()
    lines = srv.log().splitlines()
    assert any("missing-vv-probe" in ln for ln in lines), srv.log_tail()
    assert any("made-vv-probe" in ln for ln in lines), srv.log_tail()


def test_v_logs_changes_but_not_every_operation(ferry_factory, clients):
    """-v is the access log (docs/logging.md): a MKDIR is a line, the STATs
    and listings around it are not (those are -vv)."""
    srv = ferry_factory(verbosity="-v")
    c = clients.sftp(srv)
    c.mkdir("/quiet-probe")
    c.stat("/quiet-probe")
    c.listdir("/quiet-probe")
    c.close()
    srv.stop()
    lines = [l for l in srv.log().splitlines() if "quiet-probe" in l]
    assert len(lines) == 1 and " mkdir " in lines[0] and "path=/quiet-probe" in lines[0], \
        srv.log_tail()


def test_sigterm_stops_server_promptly(ferry, clients):
    c = clients.sftp(ferry)
    c.listdir("/")
    rc = ferry.stop(timeout=10)
    assert rc is not None, "ferry ignored SIGTERM for 10 s"
    assert not ferry.alive()
