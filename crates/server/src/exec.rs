//! Exec commands: the few commands the rclone sftp client runs over an SSH
//! exec channel (hashes, `df`, `echo`), answered in process. Nothing here
//! ever starts a program or a shell.
//!
//! The command line is split at the first space into the command and its
//! arguments (leading spaces trimmed from both). Arguments are unescaped
//! the way the rclone client escapes paths: a newline arrives as
//! quote-newline-quote (`'<LF>'`) and becomes a bare newline, then `\X`
//! becomes `X`. Output formats follow the tools rclone expects (`md5sum`'s
//! `<hex>  <name>`, with the name unescaped as rclone prints it; `df`'s
//! columns).

use ferry_vfs::backend::{HashKind, RelPath};
use ferry_vfs::hash::hash_bytes;
use ferry_vfs::{Vfs, VfsError};

/// A parsed exec command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Hash a file, or report the hash of empty input when `arg` is `None`.
    Hash {
        /// Which hash.
        kind: HashKind,
        /// The path argument as sent (still escaped; any bytes), if any.
        arg: Option<Vec<u8>>,
    },
    /// A hash type no command can compute (`rclone hashsum foo`).
    UnknownHash(String),
    /// Space used and free.
    Df,
    /// `echo TEXT`, printed back without any expansion.
    Echo(Vec<u8>),
    /// `echo 'TEXT' | HASHCMD`: the hash of `TEXT\n`.
    EchoHash {
        /// Which hash.
        kind: HashKind,
        /// The text echoed.
        text: String,
    },
    /// Anything else.
    NotImplemented(String),
}

/// What running a command produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status.
    pub status: u32,
}

fn hash_command(cmd: &str, args: &[u8]) -> Option<(HashKind, Vec<u8>)> {
    let kind = match cmd {
        "md5sum" => HashKind::Md5,
        "sha1sum" => HashKind::Sha1,
        "sha256sum" => HashKind::Sha256,
        "crc32" => HashKind::Crc32,
        "b3sum" => HashKind::Blake3,
        "xxh128sum" => HashKind::Xxh128,
        "xxhsum" => {
            let rest = args.strip_prefix(b"-H2")?;
            if !(rest.is_empty() || rest.starts_with(b" ")) {
                return None;
            }
            return Some((HashKind::Xxh128, trim_start(rest).to_vec()));
        }
        _ => return None,
    };
    Some((kind, args.to_vec()))
}

fn opt(arg: &[u8]) -> Option<Vec<u8>> {
    (!arg.is_empty()).then(|| arg.to_vec())
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b' ').count();
    &b[n..]
}

/// Split at the first space: the word before it, and the rest with its
/// leading spaces trimmed.
fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], trim_start(&b[i + 1..])),
        None => (b, b""),
    }
}

/// Parse a command line. Only the path argument may be any bytes (a file
/// name that is not UTF-8); the command words are ASCII.
pub fn parse(line: &[u8]) -> Command {
    let (cmd, args) = split_word(trim_start(line));
    let Ok(cmd) = std::str::from_utf8(cmd) else {
        return Command::NotImplemented(String::from_utf8_lossy(cmd).into_owned());
    };
    if let Some((kind, arg)) = hash_command(cmd, args) {
        return Command::Hash {
            kind,
            arg: opt(&arg),
        };
    }
    match cmd {
        "df" => Command::Df,
        "echo" => {
            let text = String::from_utf8_lossy(args);
            if let Some((text, pipe)) = text.split_once(" | ") {
                let (pcmd, pargs) = split_word(pipe.trim().as_bytes());
                let pcmd = std::str::from_utf8(pcmd).unwrap_or("");
                if let Some((kind, rest)) = hash_command(pcmd, pargs) {
                    if rest.is_empty() {
                        return Command::EchoHash {
                            kind,
                            text: unquote(text.trim()),
                        };
                    }
                }
            }
            Command::Echo(args.to_vec())
        }
        "rclone" => {
            let (sub, rest) = split_word(args);
            match sub {
                b"md5sum" => Command::Hash {
                    kind: HashKind::Md5,
                    arg: opt(rest),
                },
                b"sha1sum" => Command::Hash {
                    kind: HashKind::Sha1,
                    arg: opt(rest),
                },
                b"hashsum" => {
                    let (name, path) = split_word(rest);
                    let name = String::from_utf8_lossy(name);
                    match HashKind::from_name(&name) {
                        Some(kind) => Command::Hash {
                            kind,
                            arg: opt(path),
                        },
                        None => Command::UnknownHash(name.into_owned()),
                    }
                }
                _ => Command::NotImplemented(cmd.to_string()),
            }
        }
        _ => Command::NotImplemented(cmd.to_string()),
    }
}

/// Undo one level of shell-style single or double quotes (for `echo`).
fn unquote(s: &str) -> String {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// Undo the rclone client's path escaping: quote-newline-quote is a
/// newline, then `\X` is `X` (byte by byte: names need not be UTF-8).
pub fn unescape(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len());
    let mut i = 0;
    while i < arg.len() {
        match &arg[i..] {
            [b'\'', b'\n', b'\'', ..] => {
                out.push(b'\n');
                i += 3;
            }
            [b'\\', next, ..] => {
                out.push(*next);
                i += 2;
            }
            [b'\\'] => i += 1,
            [c, ..] => {
                out.push(*c);
                i += 1;
            }
            [] => unreachable!("i < len"),
        }
    }
    out
}

/// Run a command against `vfs`.
pub async fn run(vfs: &Vfs, cmd: &Command) -> Outcome {
    match cmd {
        Command::Hash { kind, arg: None } => {
            if vfs.options().no_checksum {
                return fail(format!("{} hash not supported", kind.name()));
            }
            match hash_bytes(*kind, b"") {
                Some(h) => ok(format!("{h}  -\n")),
                None => fail(format!("{} hash not supported", kind.name())),
            }
        }
        Command::Hash {
            kind,
            arg: Some(arg),
        } => hash_file(vfs, *kind, arg).await,
        Command::UnknownHash(name) => fail(format!("{name} hash not supported")),
        Command::Df => df(vfs).await,
        Command::Echo(text) => Outcome {
            stdout: [text.as_slice(), b"\n"].concat(),
            ..Default::default()
        },
        Command::EchoHash { kind, text } => match hash_bytes(*kind, format!("{text}\n").as_bytes())
        {
            Some(h) => ok(format!("{h}  -\n")),
            None => fail(format!("{} hash not supported", kind.name())),
        },
        Command::NotImplemented(name) => fail(format!("{name:?} not implemented")),
    }
}

fn ok(stdout: String) -> Outcome {
    Outcome {
        stdout: stdout.into_bytes(),
        ..Default::default()
    }
}

fn fail(msg: String) -> Outcome {
    Outcome {
        stderr: format!("{msg}\n").into_bytes(),
        status: 1,
        ..Default::default()
    }
}

async fn hash_file(vfs: &Vfs, kind: HashKind, arg: &[u8]) -> Outcome {
    let raw = unescape(arg);
    let name = String::from_utf8_lossy(&raw);
    let Ok(path) = RelPath::resolve(&RelPath::root(), &raw) else {
        return fail(format!("{name}: invalid path"));
    };
    match vfs.hash(&path, kind).await {
        // The path as it reads unescaped, byte for byte, as rclone prints
        // it: scripts that read the second field get the real name.
        Ok(hex) => Outcome {
            stdout: [format!("{hex}  ").as_bytes(), &raw, b"\n"].concat(),
            ..Default::default()
        },
        Err(VfsError::Unsupported(_)) => fail(format!("{} hash not supported", kind.name())),
        Err(VfsError::NotFound) => fail(format!("{name}: no such file or directory")),
        Err(VfsError::IsADirectory) => fail(format!("{name}: is a directory")),
        Err(e) => fail(format!("{name}: {e}")),
    }
}

async fn df(vfs: &Vfs) -> Outcome {
    let usage = match vfs.statfs().await {
        Ok(u) => u,
        Err(VfsError::Unsupported(_)) => return fail("df not supported".into()),
        Err(e) => return fail(format!("df: {e}")),
    };
    let kib = |v: Option<u64>| v.map(|b| (b / 1024) as i64).unwrap_or(-1);
    let total = kib(usage.total);
    let free = kib(usage.free);
    let used = match usage.used {
        Some(u) => (u / 1024) as i64,
        None if total >= 0 && free >= 0 => total - free,
        None => -1,
    };
    let pct = if total > 0 && used >= 0 {
        // Rounded up, as df does.
        (used * 100 + total - 1) / total
    } else {
        -1
    };
    ok(format!(
        "\t\tFilesystem   1K-blocks      Used Available Use% Mounted on\n/dev/root {total} {used}  {free}  {pct}% /\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(
            parse(b"md5sum"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: None
            }
        );
        assert_eq!(
            parse(b"  sha1sum dir/a\\ b"),
            Command::Hash {
                kind: HashKind::Sha1,
                arg: Some(b"dir/a\\ b".to_vec())
            }
        );
        assert_eq!(
            parse(b"xxhsum -H2 f"),
            Command::Hash {
                kind: HashKind::Xxh128,
                arg: Some(b"f".to_vec())
            }
        );
        assert_eq!(
            parse(b"xxhsum -H2"),
            Command::Hash {
                kind: HashKind::Xxh128,
                arg: None
            }
        );
        assert_eq!(parse(b"xxhsum f"), Command::NotImplemented("xxhsum".into()));
        assert_eq!(
            parse(b"rclone hashsum sha256 x"),
            Command::Hash {
                kind: HashKind::Sha256,
                arg: Some(b"x".to_vec())
            }
        );
        assert_eq!(
            parse(b"rclone hashsum frob x"),
            Command::UnknownHash("frob".into())
        );
        assert_eq!(
            parse(b"rclone md5sum"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: None
            }
        );
        assert_eq!(parse(b"df -k /x"), Command::Df);
        assert_eq!(
            parse(b"md5sum    big.bin"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: Some(b"big.bin".to_vec())
            }
        );
        assert_eq!(
            parse(b"echo 'abc' | md5sum"),
            Command::EchoHash {
                kind: HashKind::Md5,
                text: "abc".into()
            }
        );
        assert_eq!(
            parse(b"echo ${ShellId}%ComSpec%"),
            Command::Echo(b"${ShellId}%ComSpec%".to_vec())
        );
        assert_eq!(parse(b"sh -c id"), Command::NotImplemented("sh".into()));
        assert_eq!(parse(b""), Command::NotImplemented("".into()));
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("a\\ b".as_bytes()), "a b".as_bytes());
        assert_eq!(unescape("x'\n'y".as_bytes()), "x\ny".as_bytes());
        assert_eq!(unescape("x\\n".as_bytes()), "xn".as_bytes());
        assert_eq!(unescape("q\\'s".as_bytes()), "q's".as_bytes());
        assert_eq!(
            unescape("back\\\\slash".as_bytes()),
            "back\\slash".as_bytes()
        );
        assert_eq!(unescape("caf\u{e9}".as_bytes()), "caf\u{e9}".as_bytes());
    }

    #[test]
    fn names_that_are_not_utf8_stay_bytes() {
        assert_eq!(
            parse(b"md5sum caf\xe9\\ x"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: Some(b"caf\xe9\\ x".to_vec())
            }
        );
        assert_eq!(unescape(b"caf\xe9\\ x"), b"caf\xe9 x");
        assert_eq!(
            parse(b"\xff rm"),
            Command::NotImplemented("\u{fffd}".into())
        );
    }

    #[tokio::test]
    async fn outcomes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a b"), b"abc\n").unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let be = ferry_backend_local::LocalBackend::open(tmp.path()).unwrap();
        let vfs = Vfs::new(std::sync::Arc::new(be), Default::default());
        let o = run(&vfs, &parse(b"md5sum a\\ b")).await;
        assert_eq!(o.stdout, b"0bee89b07a248e27c83fc3d5951213c1  a b\n");
        assert_eq!(o.status, 0);
        let o = run(&vfs, &parse(b"md5sum")).await;
        assert_eq!(o.stdout, b"d41d8cd98f00b204e9800998ecf8427e  -\n");
        let o = run(&vfs, &parse(b"sha1sum missing")).await;
        assert_eq!(o.status, 1);
        assert!(String::from_utf8_lossy(&o.stderr).contains("no such file"));
        let o = run(&vfs, &parse(b"sha1sum d")).await;
        assert_eq!(o.status, 1);
        let o = run(&vfs, &parse(b"rclone hashsum frob a")).await;
        assert_eq!(o.stderr, b"frob hash not supported\n");
        let o = run(&vfs, &parse(b"echo 'abc' | sha1sum")).await;
        assert_eq!(o.stdout, b"03cfd743661f07975fa2f1220c5194cbaff48451  -\n");
        let o = run(&vfs, &parse(b"cat /etc/passwd")).await;
        assert_eq!(o.stderr, b"\"cat\" not implemented\n");
        assert_eq!(o.status, 1);
        let o = run(&vfs, &parse(b"df -k /")).await;
        let text = String::from_utf8(o.stdout).unwrap();
        let line2: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(line2[0], "/dev/root");
        assert!(line2[1].parse::<i64>().unwrap() > 0);
        assert!(text.starts_with("\t\tFilesystem"));
    }
}
