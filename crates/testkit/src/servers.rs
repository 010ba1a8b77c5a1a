//! Real servers on 127.0.0.1 for tests: a private OpenSSH sshd, Garage
//! (S3) and `rclone serve webdav`, each in a temporary directory of its
//! own, killed when dropped.
//!
//! A missing tool skips the test that needs it with a message, except
//! where every tool must be there: under `CI=true` (CI installs them all),
//! or with `FERRY_REQUIRE_BACKENDS=1`, a missing tool fails the test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test tools (Garage) are installed.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("FERRY_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/ferry-test-tools"),
    }
}

/// Must every tool be there? (CI, or `FERRY_REQUIRE_BACKENDS=1`.)
pub fn tools_required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("FERRY_REQUIRE_BACKENDS").as_deref() == Ok("1")
}

/// `Some(())` if `tool` exists; else a skip message (`None`), or a panic
/// where tools are required.
pub fn need(tool: &Path, what: &str) -> Option<()> {
    if tool.exists() {
        return Some(());
    }
    let msg = format!(
        "{what} is not installed at {} (scripts/install-test-deps.sh installs it)",
        tool.display()
    );
    if tools_required() {
        panic!("{msg}, and CI=true or FERRY_REQUIRE_BACKENDS=1 says every tool must be there");
    }
    eprintln!("skipped: {msg}");
    None
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited with {st}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what} did not listen on port {port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Run `cmd` to completion; its stdout, or a panic with its output.
fn output(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn keygen(path: &Path, kind: &str) {
    output(
        Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(path),
    );
}

/// A private OpenSSH sshd serving SFTP (`internal-sftp`) with a generated
/// host key (and a second one of another kind) and client key.
pub struct Sshd {
    child: Child,
    /// Its directory (config, keys, log).
    pub dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    /// The user to log in as (whoever runs the tests).
    pub user: String,
    /// A directory to serve (a backend's root in most tests).
    pub data: PathBuf,
    /// The client's private key (its `.pub` is authorized).
    pub client_key: PathBuf,
    /// The Ed25519 host key, as a public key line.
    pub host_pub: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    /// Start one, or `None` to skip (see the module docs).
    pub fn start() -> Option<Sshd> {
        need(Path::new(SSHD), "OpenSSH's sshd")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().to_path_buf();
        keygen(&d.join("host_key"), "ed25519");
        keygen(&d.join("host_key_ecdsa"), "ecdsa");
        keygen(&d.join("client_key"), "ed25519");
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("copy");
        let data = d.join("data");
        std::fs::create_dir(&data).expect("data dir");
        let user = output(Command::new("id").arg("-un")).trim().to_string();
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        let port = free_port();
        let cfg = d.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nHostKey {hk2}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nPubkeyAuthentication yes\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin yes\nUsePAM no\nStrictModes no\n\
                 UseDNS no\nPrintMotd no\nPrintLastLog no\nX11Forwarding no\nMaxStartups 100\n\
                 LogLevel VERBOSE\nSubsystem sftp internal-sftp\n",
                hk = d.join("host_key").display(),
                hk2 = d.join("host_key_ecdsa").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .expect("sshd_config");
        let log = d.join("sshd.log");
        let mut child = spawn(
            Command::new(SSHD).arg("-D").arg("-e").arg("-f").arg(&cfg),
            &log,
        );
        wait_port(port, &mut child, "sshd", &log);
        Some(Sshd {
            child,
            client_key: d.join("client_key"),
            dir,
            port,
            user,
            data,
            host_pub,
        })
    }

    /// What sshd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

/// Garage, a real S3 server (single node, sqlite), with one bucket and a
/// key allowed on it.
pub struct Garage {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The key's id.
    pub access_key_id: String,
    /// The key's secret.
    pub secret_access_key: String,
    /// The S3 region Garage is configured with.
    pub region: String,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Garage {
    /// Start one, or `None` to skip (see the module docs).
    pub fn start() -> Option<Garage> {
        let bin = tools_dir().join("garage/bin/garage");
        need(&bin, "Garage (the S3 test server)")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let cfg = d.join("garage.toml");
        let secret: String = (0..64)
            .map(|i| char::from(b"0123456789abcdef"[(i * 7 + s3 as usize) % 16]))
            .collect();
        std::fs::write(
            &cfg,
            format!(
                "metadata_dir = \"{m}\"\ndata_dir = \"{dd}\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n[admin]\n\
                 api_bind_addr = \"127.0.0.1:{admin}\"\n",
                m = d.join("meta").display(),
                dd = d.join("data").display(),
            ),
        )
        .expect("garage.toml");
        let log = d.join("garage.log");
        let mut child = spawn(Command::new(&bin).arg("-c").arg(&cfg).arg("server"), &log);
        wait_port(rpc, &mut child, "garage", &log);
        let garage = |args: &[&str]| -> Option<String> {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&cfg)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while garage(&["status"]).is_none() {
            assert!(Instant::now() < deadline, "garage did not answer `status`");
            std::thread::sleep(Duration::from_millis(200));
        }
        let run = |args: &[&str]| garage(args).unwrap_or_else(|| panic!("garage {args:?} failed"));
        let node = run(&["node", "id", "-q"]);
        let node = node
            .trim()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string();
        run(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        run(&["layout", "apply", "--version", "1"]);
        run(&["bucket", "create", "testkit"]);
        let key = run(&["key", "create", "testkit-key"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no {name} in `garage key create`:\n{key}"))
        };
        let (id, secret) = (field("Key ID:"), field("Secret key:"));
        run(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "testkit",
            "--key",
            "testkit-key",
        ]);
        wait_port(s3, &mut child, "garage's S3 API", &log);
        Some(Garage {
            child,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "testkit".into(),
            access_key_id: id,
            secret_access_key: secret,
            region: "garage".into(),
        })
    }

    /// rclone-style options of an `s3` remote for this server.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("provider", "Other".into()),
            ("endpoint", self.endpoint.clone()),
            ("access_key_id", self.access_key_id.clone()),
            ("secret_access_key", self.secret_access_key.clone()),
            ("region", self.region.clone()),
            ("force_path_style", "true".into()),
        ]
    }
}

/// `rclone serve webdav` on a temporary directory, with a user and
/// password.
pub struct Webdav {
    child: Child,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// The user.
    pub user: String,
    /// The password.
    pub pass: String,
}

impl Drop for Webdav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webdav {
    /// Start one, or `None` to skip (see the module docs).
    pub fn start() -> Option<Webdav> {
        let rclone = Path::new("/usr/bin/rclone");
        need(rclone, "rclone (for rclone serve webdav)")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let served = dir.path().join("served");
        std::fs::create_dir(&served).expect("served dir");
        let port = free_port();
        let log = dir.path().join("webdav.log");
        let mut child = spawn(
            Command::new(rclone)
                .args(["--config", "/dev/null", "serve", "webdav"])
                .arg(&served)
                .args(["--addr", &format!("127.0.0.1:{port}")])
                .args(["--user", "dav", "--pass", "dav-pass"])
                .env_remove("RCLONE_CONFIG"),
            &log,
        );
        wait_port(port, &mut child, "rclone serve webdav", &log);
        Some(Webdav {
            child,
            _dir: dir,
            url: format!("http://127.0.0.1:{port}/"),
            user: "dav".into(),
            pass: "dav-pass".into(),
        })
    }

    /// rclone-style options of a `webdav` remote for this server (the
    /// password already revealed).
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("url", self.url.clone()),
            ("vendor", "other".into()),
            ("user", self.user.clone()),
            ("pass", self.pass.clone()),
        ]
    }
}
