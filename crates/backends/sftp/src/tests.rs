//! What the conformance suite (`ferry-testkit`) does not cover: host keys,
//! credentials, reconnects, roots, servers without the extensions, hashes by
//! remote command. Against a real, private OpenSSH sshd on 127.0.0.1
//! (`ferry_testkit::servers::Sshd`; a missing sshd skips, or fails under
//! CI=true).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use ferry_backend::FileType;
use ferry_backend::OpenOptions;
use ferry_proto::mode;

use ferry_testkit::servers::Sshd;

trait SshdExt {
    fn config(&self) -> SftpConfig;
    async fn backend(&self) -> SftpBackend;
}

impl SshdExt for Sshd {
    fn config(&self) -> SftpConfig {
        let mut cfg = SftpConfig::new("127.0.0.1", self.user.clone());
        cfg.port = self.port;
        cfg.key_file = Some(self.client_key.clone());
        cfg.root = self.data.as_os_str().as_encoded_bytes().to_vec();
        cfg
    }

    async fn backend(&self) -> SftpBackend {
        match SftpBackend::connect(self.config()).await {
            Ok(b) => b,
            Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", self.log()),
        }
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(st.success(), "ssh-keygen failed");
}

fn sshd() -> Option<Sshd> {
    Sshd::start()
}

macro_rules! sshd_or_skip {
    () => {
        match sshd() {
            Some(s) => s,
            None => return,
        }
    };
}

fn p(s: &str) -> RelPath {
    RelPath::new(s.as_bytes().to_vec()).unwrap()
}

fn rw() -> OpenOptions {
    OpenOptions {
        read: true,
        write: true,
        create: true,
        ..Default::default()
    }
}

fn ro() -> OpenOptions {
    OpenOptions {
        read: true,
        ..Default::default()
    }
}

async fn put(be: &SftpBackend, path: &str, data: &[u8]) {
    let h = be
        .open_file(
            &p(path),
            OpenOptions {
                truncate: true,
                ..rw()
            },
        )
        .await
        .unwrap();
    h.write_at(0, Bytes::copy_from_slice(data)).await.unwrap();
}

async fn get(be: &SftpBackend, path: &str) -> Vec<u8> {
    let h = be.open_file(&p(path), ro()).await.unwrap();
    let size = h.stat().await.unwrap().size as usize;
    h.read_at(0, size + 10, Vec::new()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_attrs_usage_copy() {
    let s = sshd_or_skip!();
    let be = s.backend().await;
    put(&be, "target", b"content").await;

    // Clients cannot make links (the server would follow one pointing out
    // of the root); links already on the server keep their target as
    // given.
    let e = be.symlink(b"target", &p("rel")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    std::os::unix::fs::symlink("target", s.data.join("rel")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", s.data.join("abs")).unwrap();
    assert_eq!(be.read_link(&p("rel")).await.unwrap(), b"target");
    assert_eq!(be.read_link(&p("abs")).await.unwrap(), b"/nowhere/at/all");
    assert_eq!(
        std::fs::read_link(s.data.join("rel")).unwrap(),
        Path::new("target")
    );
    assert_eq!(
        be.lstat(&p("rel")).await.unwrap().file_type,
        FileType::Symlink
    );
    assert_eq!(be.stat(&p("rel")).await.unwrap().size, 7);

    // Hard links.
    assert!(be.capabilities().hard_links);
    be.hard_link(&p("target"), &p("hard")).await.unwrap();
    assert_eq!(
        std::fs::metadata(s.data.join("hard")).unwrap().ino(),
        std::fs::metadata(s.data.join("target")).unwrap().ino()
    );
    let e = be.hard_link(&p("target"), &p("hard")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");

    // Times and permissions by path and by handle.
    let t = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    be.set_attrs(
        &p("target"),
        &SetAttrs {
            permissions: Some(0o640),
            times: Some((t, t + Duration::from_secs(5))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let m = be.stat(&p("target")).await.unwrap();
    assert_eq!(m.permissions, Some(0o640));
    assert_eq!(m.mtime, Some(t + Duration::from_secs(5)));
    assert_eq!(m.atime, Some(t));
    let local = std::fs::metadata(s.data.join("target")).unwrap();
    assert_eq!(local.permissions().mode() & 0o7777, 0o640);
    assert_eq!(local.mtime(), 1_000_000_005);

    let h = be.open_file(&p("target"), rw()).await.unwrap();
    h.set_attrs(&SetAttrs {
        size: Some(3),
        permissions: Some(0o604),
        times: Some((t, t)),
        ..Default::default()
    })
    .await
    .unwrap();
    let m = h.stat().await.unwrap();
    assert_eq!((m.size, m.permissions, m.mtime), (3, Some(0o604), Some(t)));
    drop(h);
    // Owner (to what it already is: works as any user).
    let (uid, gid) = be.stat(&p("target")).await.unwrap().owner.unwrap();
    be.set_attrs(
        &p("target"),
        &SetAttrs {
            owner: Some((uid, gid)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Not following the link: the target is untouched.
    be.set_attrs_nofollow(
        &p("target"),
        &SetAttrs {
            permissions: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        be.stat(&p("target")).await.unwrap().permissions,
        Some(0o600)
    );

    // Usage.
    assert!(be.capabilities().usage);
    let u = be.usage().await.unwrap();
    assert!(u.total.unwrap() > 0 && u.free.unwrap() <= u.total.unwrap());
    assert!(u.used.unwrap() <= u.total.unwrap());

    // Server-side copy, where the server has it.
    if be.capabilities().server_side_copy {
        put(&be, "src", b"copy me").await;
        be.copy(&p("src"), &p("dst")).await.unwrap();
        assert_eq!(get(&be, "dst").await, b"copy me");
        be.copy(&p("src"), &p("src")).await.unwrap();
        assert_eq!(get(&be, "src").await, b"copy me");
    } else {
        let e = be.copy(&p("target"), &p("dst")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_by_remote_command() {
    use md5::Digest as _;
    let s = sshd_or_skip!();
    let be = s.backend().await;
    assert_eq!(be.native_hashes(), &[HashKind::Md5, HashKind::Sha1]);
    let data = (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>();
    // A name a shell would mangle without quoting.
    let name = "it's a $(file) `x` \"q\"";
    put(&be, name, &data).await;
    let md5 = be.stored_hash(&p(name), HashKind::Md5).await.unwrap();
    assert_eq!(md5.as_deref(), Some(hex(&md5::Md5::digest(&data)).as_str()));
    let sha1 = be.stored_hash(&p(name), HashKind::Sha1).await.unwrap();
    assert_eq!(
        sha1.as_deref(),
        Some(hex(&<sha1::Sha1 as sha1::Digest>::digest(&data)).as_str())
    );
    // A file the command cannot read: no hash, no error.
    assert_eq!(
        be.stored_hash(&p("missing"), HashKind::Md5).await.unwrap(),
        None
    );
    assert_eq!(
        be.stored_hash(&p(name), HashKind::Sha256).await.unwrap(),
        None
    );

    let mut cfg = s.config();
    cfg.disable_hashcheck = true;
    let be = SftpBackend::connect(cfg).await.unwrap();
    assert!(be.native_hashes().is_empty());
    assert_eq!(be.stored_hash(&p(name), HashKind::Md5).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_checked_when_configured() {
    let s = sshd_or_skip!();
    let d = s.dir.path();
    let hp = format!("[127.0.0.1]:{}", s.port);
    let mut parts = s.host_pub.split_whitespace();
    let (kt, kb) = (parts.next().unwrap(), parts.next().unwrap());

    // The right key: accepted.
    let good = d.join("known_good");
    std::fs::write(&good, format!("# ok\n{hp} {kt} {kb}\n")).unwrap();
    let mut cfg = s.config();
    cfg.known_hosts_file = Some(good);
    SftpBackend::connect(cfg).await.unwrap();

    // Hashed by ssh-keygen -H: accepted.
    let hashed = d.join("known_hashed");
    std::fs::write(&hashed, format!("{hp} {kt} {kb}\n")).unwrap();
    let st = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let mut cfg = s.config();
    cfg.known_hosts_file = Some(hashed);
    SftpBackend::connect(cfg).await.unwrap();

    // A different key recorded for this host: refused, clearly.
    keygen(&d.join("other_key"));
    let other = std::fs::read_to_string(d.join("other_key.pub")).unwrap();
    let mut o = other.split_whitespace();
    let bad = d.join("known_bad");
    let mut f = std::fs::File::create(&bad).unwrap();
    writeln!(f, "{hp} {} {}", o.next().unwrap(), o.next().unwrap()).unwrap();
    drop(f);
    let mut cfg = s.config();
    cfg.known_hosts_file = Some(bad);
    let e = SftpBackend::connect(cfg).await.err().unwrap();
    let msg = format!("{e}");
    assert!(msg.contains("host key mismatch"), "{msg}");
    assert!(!e.is_temporary());

    // Only the host's ECDSA key recorded: Ferry asks for that kind of key
    // (as OpenSSH does) instead of refusing the Ed25519 one as a mismatch.
    let ecdsa = std::fs::read_to_string(d.join("host_key_ecdsa.pub")).unwrap();
    let mut e = ecdsa.split_whitespace();
    let only_ecdsa = d.join("known_ecdsa");
    std::fs::write(
        &only_ecdsa,
        format!("{hp} {} {}\n", e.next().unwrap(), e.next().unwrap()),
    )
    .unwrap();
    let mut cfg = s.config();
    cfg.known_hosts_file = Some(only_ecdsa);
    SftpBackend::connect(cfg).await.unwrap();

    // The host not recorded at all: refused.
    let unknown = d.join("known_unknown");
    std::fs::write(&unknown, format!("otherhost {kt} {kb}\n")).unwrap();
    let mut cfg = s.config();
    cfg.known_hosts_file = Some(unknown);
    let e = SftpBackend::connect(cfg).await.err().unwrap();
    assert!(format!("{e}").contains("is not in"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused() {
    let s = sshd_or_skip!();
    let mut cfg = s.config();
    cfg.key_file = None;
    cfg.password = Some("certainly not the password".into());
    let e = SftpBackend::connect(cfg).await.err().unwrap();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(msg.contains("password"), "{msg}");

    // A key the server does not know, then a wrong password.
    let d = s.dir.path();
    keygen(&d.join("stranger"));
    let mut cfg = s.config();
    cfg.key_file = Some(d.join("stranger"));
    cfg.password = Some("nope".into());
    let e = SftpBackend::connect(cfg).await.err().unwrap();
    assert!(e.to_string().contains("publickey, password"), "{e}");

    // An encrypted key without its passphrase: a config error.
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "sekrit", "-f"])
        .arg(d.join("locked"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::copy(d.join("locked.pub"), d.join("authorized_keys")).unwrap();
    let mut cfg = s.config();
    cfg.key_file = Some(d.join("locked"));
    let e = SftpBackend::connect(cfg.clone()).await.err().unwrap();
    assert!(e.to_string().contains("key_file_pass"), "{e}");
    cfg.key_file_pass = Some("sekrit".into());
    SftpBackend::connect(cfg.clone()).await.unwrap();
    // The same key inline as key_pem, one line with \n as rclone keeps it.
    let pem = std::fs::read_to_string(d.join("locked")).unwrap();
    cfg.key_file = None;
    cfg.key_pem = Some(pem.trim_end().replace('\n', "\\n"));
    SftpBackend::connect(cfg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_connection_drops() {
    let s = sshd_or_skip!();
    let be = s.backend().await;
    put(&be, "f", b"before").await;
    let h = be.open_file(&p("f"), ro()).await.unwrap();
    // Cut the connection under the backend.
    let old = be.conn(Operation::Stat).await.unwrap();
    old.sftp.close("test");
    drop(old);
    let e = h.read_at(0, 10, Vec::new()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    assert!(e.is_temporary());
    // The next operation connects again.
    assert_eq!(be.stat(&p("f")).await.unwrap().size, 6);
    assert_eq!(get(&be, "f").await, b"before");
    drop(h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_root_and_several_connections() {
    let s = sshd_or_skip!();
    // The login directory itself.
    let mut cfg = s.config();
    cfg.root = Vec::new();
    let be = SftpBackend::connect(cfg).await.unwrap();
    assert!(be.stat(&RelPath::root()).await.unwrap().is_dir());
    assert!(be.root.starts_with(b"/"), "{:?}", be.root.escape_ascii());

    let mut cfg = s.config();
    cfg.connections = 3;
    cfg.concurrency = 4;
    let be = SftpBackend::connect(cfg).await.unwrap();
    let be = &be;
    let jobs = (0..12).map(|i| async move {
        let name = format!("f{i}");
        put(be, &name, name.as_bytes()).await;
        assert_eq!(get(be, &name).await, name.as_bytes());
    });
    futures::future::join_all(jobs).await;
    assert_eq!(be.list(&RelPath::root()).await.unwrap().len(), 12);
}

#[test]
fn quoting_and_hash_parsing() {
    assert_eq!(shell_quote(b"a b"), b"'a b'");
    assert_eq!(shell_quote(b"it's"), b"'it'\\''s'");
    assert_eq!(shell_quote(b"\xff"), b"'\xff'");
    let h = "d41d8cd98f00b204e9800998ecf8427e";
    assert_eq!(
        parse_hash(format!("{h}  /x\n").as_bytes(), HashKind::Md5).as_deref(),
        Some(h)
    );
    assert_eq!(
        parse_hash(
            format!("\\{}  /a\\\\b\n", h.to_uppercase()).as_bytes(),
            HashKind::Md5
        )
        .as_deref(),
        Some(h)
    );
    assert_eq!(
        parse_hash(b"md5sum: x: No such file\n", HashKind::Md5),
        None
    );
    assert_eq!(parse_hash(h.as_bytes(), HashKind::Sha1), None);
}

#[test]
fn attribute_conversion() {
    let a = FileAttributes {
        size: Some(5),
        uid_gid: Some((1, 2)),
        permissions: Some(mode::S_IFLNK | 0o777),
        atime_mtime: Some((10, 20)),
        extended: Vec::new(),
    };
    let m = to_meta(&a);
    assert_eq!(m.file_type, FileType::Symlink);
    assert_eq!(m.permissions, Some(0o777));
    assert_eq!(m.mtime, Some(UNIX_EPOCH + Duration::from_secs(20)));
    let s = SetAttrs {
        size: None,
        permissions: Some(0o100_644),
        times: Some((UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(7))),
        owner: None,
    };
    assert_eq!(to_attrs(&s, true).atime_mtime, Some((0, 7)));
    assert_eq!(to_attrs(&s, true).permissions, Some(0o644));
    assert_eq!(to_attrs(&s, false).atime_mtime, None);
}

/// The paths taken when the server lacks the OpenSSH extensions: the
/// extensions are hidden from a fresh backend (only its first connection
/// exists, so it can be changed in place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_extensions() {
    let s = sshd_or_skip!();
    let mut cfg = s.config();
    cfg.concurrency = 3;
    let mut be = SftpBackend::connect(cfg).await.unwrap();
    {
        let mut slot = be.slots[0].lock().await;
        let conn = Arc::get_mut(slot.as_mut().unwrap()).expect("only the backend holds it");
        conn.sftp.ext = Extensions::default();
        conn.sftp.max_read = 32 * 1024;
        conn.sftp.max_write = 32 * 1024;
    }
    be.ext = Extensions::default();
    let caps = be.capabilities();
    assert!(!caps.atomic_rename && !caps.hard_links && !caps.usage && !caps.server_side_copy);
    assert!(caps.rename_noreplace);

    put(&be, "a", b"A").await;
    put(&be, "b", b"B").await;
    let e = be.rename(&p("a"), &p("b"), false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    be.rename(&p("a"), &p("b"), true).await.unwrap();
    assert_eq!(get(&be, "b").await, b"A");
    be.create_dir(&p("d1"), None).await.unwrap();
    be.create_dir(&p("d2"), None).await.unwrap();
    be.rename(&p("d1"), &p("d2"), true).await.unwrap();
    let e = be.rename(&p("b"), &p("d2"), true).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IsADirectory, "{e}");

    std::os::unix::fs::symlink("b", s.data.join("link")).unwrap();
    let e = be
        .set_attrs_nofollow(
            &p("link"),
            &SetAttrs {
                permissions: Some(0o600),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    be.set_attrs_nofollow(
        &p("b"),
        &SetAttrs {
            permissions: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for e in [
        be.copy(&p("b"), &p("c")).await.unwrap_err(),
        be.hard_link(&p("b"), &p("c")).await.unwrap_err(),
        be.usage().await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }

    // 32 KiB pieces, three in flight at a time.
    let data = Bytes::from(
        (0..1_000_000u32)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<_>>(),
    );
    let h = be.open_file(&p("big"), rw()).await.unwrap();
    h.write_at(0, data.clone()).await.unwrap();
    h.sync().await.unwrap();
    assert!(h.read_at(0, 2_000_000, Vec::new()).await.unwrap() == data[..]);
    assert!(h.read_at(999_990, 100, Vec::new()).await.unwrap() == data[999_990..]);
}
