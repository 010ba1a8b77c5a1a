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
        /// The path argument as sent (still escaped), if any.
        arg: Option<String>,
    },
    /// A hash type no command can compute (`rclone hashsum foo`).
    UnknownHash(String),
    /// Space used and free.
    Df,
    /// `echo TEXT`, printed back without any expansion.
    Echo(String),
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

fn hash_command(cmd: &str, args: &str) -> Option<(HashKind, String)> {
    let kind = match cmd {
        "md5sum" => HashKind::Md5,
        "sha1sum" => HashKind::Sha1,
        "sha256sum" => HashKind::Sha256,
        "crc32" => HashKind::Crc32,
        "b3sum" => HashKind::Blake3,
        "xxh128sum" => HashKind::Xxh128,
        "xxhsum" => {
            let rest = args.strip_prefix("-H2")?;
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            return Some((HashKind::Xxh128, rest.trim_start().to_string()));
        }
        _ => return None,
    };
    Some((kind, args.to_string()))
}

fn opt(arg: String) -> Option<String> {
    if arg.is_empty() {
        None
    } else {
        Some(arg)
    }
}

/// Parse a command line.
pub fn parse(line: &str) -> Command {
    let line = line.trim_start();
    let (cmd, args) = match line.split_once(' ') {
        Some((c, a)) => (c, a.trim_start()),
        None => (line, ""),
    };
    if let Some((kind, arg)) = hash_command(cmd, args) {
        return Command::Hash {
            kind,
            arg: opt(arg),
        };
    }
    match cmd {
        "df" => Command::Df,
        "echo" => {
            if let Some((text, pipe)) = args.split_once(" | ") {
                let pipe = pipe.trim();
                let (pcmd, pargs) = pipe.split_once(' ').unwrap_or((pipe, ""));
                if let Some((kind, rest)) = hash_command(pcmd, pargs) {
                    if rest.is_empty() {
                        return Command::EchoHash {
                            kind,
                            text: unquote(text.trim()),
                        };
                    }
                }
            }
            Command::Echo(args.to_string())
        }
        "rclone" => {
            let (sub, rest) = args.split_once(' ').unwrap_or((args, ""));
            match sub {
                "md5sum" => Command::Hash {
                    kind: HashKind::Md5,
                    arg: opt(rest.to_string()),
                },
                "sha1sum" => Command::Hash {
                    kind: HashKind::Sha1,
                    arg: opt(rest.to_string()),
                },
                "hashsum" => {
                    let (name, path) = rest.split_once(' ').unwrap_or((rest, ""));
                    match HashKind::from_name(name) {
                        Some(kind) => Command::Hash {
                            kind,
                            arg: opt(path.to_string()),
                        },
                        None => Command::UnknownHash(name.to_string()),
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
/// newline, then `\X` is `X`.
pub fn unescape(arg: &str) -> String {
    let s = arg.replace("'\n'", "\n");
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
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
        Command::Echo(text) => ok(format!("{text}\n")),
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

async fn hash_file(vfs: &Vfs, kind: HashKind, arg: &str) -> Outcome {
    let name = unescape(arg);
    let Ok(path) = RelPath::resolve(&RelPath::root(), name.as_bytes()) else {
        return fail(format!("{arg}: invalid path"));
    };
    match vfs.hash(&path, kind).await {
        // The path as it reads unescaped, as rclone prints it: scripts
        // that read the second field get the real name.
        Ok(hex) => ok(format!("{hex}  {name}\n")),
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
            parse("md5sum"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: None
            }
        );
        assert_eq!(
            parse("  sha1sum dir/a\\ b"),
            Command::Hash {
                kind: HashKind::Sha1,
                arg: Some("dir/a\\ b".into())
            }
        );
        assert_eq!(
            parse("xxhsum -H2 f"),
            Command::Hash {
                kind: HashKind::Xxh128,
                arg: Some("f".into())
            }
        );
        assert_eq!(
            parse("xxhsum -H2"),
            Command::Hash {
                kind: HashKind::Xxh128,
                arg: None
            }
        );
        assert_eq!(parse("xxhsum f"), Command::NotImplemented("xxhsum".into()));
        assert_eq!(
            parse("rclone hashsum sha256 x"),
            Command::Hash {
                kind: HashKind::Sha256,
                arg: Some("x".into())
            }
        );
        assert_eq!(
            parse("rclone hashsum frob x"),
            Command::UnknownHash("frob".into())
        );
        assert_eq!(
            parse("rclone md5sum"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: None
            }
        );
        assert_eq!(parse("df -k /x"), Command::Df);
        assert_eq!(
            parse("md5sum    big.bin"),
            Command::Hash {
                kind: HashKind::Md5,
                arg: Some("big.bin".into())
            }
        );
        assert_eq!(
            parse("echo 'abc' | md5sum"),
            Command::EchoHash {
                kind: HashKind::Md5,
                text: "abc".into()
            }
        );
        assert_eq!(
            parse("echo ${ShellId}%ComSpec%"),
            Command::Echo("${ShellId}%ComSpec%".into())
        );
        assert_eq!(parse("sh -c id"), Command::NotImplemented("sh".into()));
        assert_eq!(parse(""), Command::NotImplemented("".into()));
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("a\\ b"), "a b");
        assert_eq!(unescape("x'\n'y"), "x\ny");
        assert_eq!(unescape("x\\n"), "xn");
        assert_eq!(unescape("q\\'s"), "q's");
        assert_eq!(unescape("back\\\\slash"), "back\\slash");
        assert_eq!(unescape("caf\u{e9}"), "caf\u{e9}");
    }

    #[tokio::test]
    async fn outcomes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a b"), b"abc\n").unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        let be = ferry_backend_local::LocalBackend::open(tmp.path()).unwrap();
        let vfs = Vfs::new(std::sync::Arc::new(be), Default::default());
        let o = run(&vfs, &parse("md5sum a\\ b")).await;
        assert_eq!(o.stdout, b"0bee89b07a248e27c83fc3d5951213c1  a b\n");
        assert_eq!(o.status, 0);
        let o = run(&vfs, &parse("md5sum")).await;
        assert_eq!(o.stdout, b"d41d8cd98f00b204e9800998ecf8427e  -\n");
        let o = run(&vfs, &parse("sha1sum missing")).await;
        assert_eq!(o.status, 1);
        assert!(String::from_utf8_lossy(&o.stderr).contains("no such file"));
        let o = run(&vfs, &parse("sha1sum d")).await;
        assert_eq!(o.status, 1);
        let o = run(&vfs, &parse("rclone hashsum frob a")).await;
        assert_eq!(o.stderr, b"frob hash not supported\n");
        let o = run(&vfs, &parse("echo 'abc' | sha1sum")).await;
        assert_eq!(o.stdout, b"03cfd743661f07975fa2f1220c5194cbaff48451  -\n");
        let o = run(&vfs, &parse("cat /etc/passwd")).await;
        assert_eq!(o.stderr, b"\"cat\" not implemented\n");
        assert_eq!(o.status, 1);
        let o = run(&vfs, &parse("df -k /")).await;
        let text = String::from_utf8(o.stdout).unwrap();
        let line2: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(line2[0], "/dev/root");
        assert!(line2[1].parse::<i64>().unwrap() > 0);
        assert!(text.starts_with("\t\tFilesystem"));
    }
}
