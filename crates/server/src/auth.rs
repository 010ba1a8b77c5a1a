//! Authentication: passwords, authorized keys and their options.
//!
//! # authorized_keys options
//! Each line is `[options] keytype base64 [comment]`, as OpenSSH reads it.
//! Options are parsed, never silently ignored:
//! - `from="pattern-list"`: honoured. Patterns match the client's IP
//!   address (`*`, `?`, `!` negation, and CIDR `addr/len`); host names are
//!   not looked up, so a name pattern never matches.
//! - `expiry-time="YYYYMMDD[HHMM[SS]]"`: honoured (UTC).
//! - `restrict`, `no-pty`, `no-port-forwarding`, `no-agent-forwarding`,
//!   `no-X11-forwarding`, `no-user-rc`, `pty`, `port-forwarding`,
//!   `agent-forwarding`, `X11-forwarding`, `user-rc`, `permitopen`,
//!   `permitlisten`, `environment`, `tunnel`: accepted; Ferry offers no
//!   terminals, forwarding or user rc files to begin with.
//! - `command="..."` naming an SFTP server (`internal-sftp`, any path
//!   ending in `sftp-server`, or `ferry serve sftp --stdio ...`), the usual
//!   way to make a key SFTP-only: the key gets SFTP, which is all Ferry
//!   serves anyway. `-R` (sftp-server) and `--read-only` (Ferry) make its
//!   logins read-only; sftp-server's logging options (`-e`, `-f`, `-l`) do
//!   not matter here; any other option refuses the key. Ferry's own
//!   arguments (its path and other flags) are not applied, with a warning:
//!   the key gets this server's remote. Any other forced command refuses
//!   the key (an SFTP-only server cannot run it), with a warning at load.
//! - `cert-authority`, `principals=`, and anything unknown: the line is
//!   skipped with a warning, as OpenSSH skips lines with bad options.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::sha2::{Digest, Sha256};
use russh::keys::PublicKey;
use subtle::ConstantTimeEq;

/// Who may log in.
#[derive(Debug, Default, Clone)]
pub struct AuthConfig {
    /// The password user (`--user`).
    pub user: Option<String>,
    /// The password (`--pass`).
    pub pass: Option<String>,
    /// Keys from authorized_keys.
    pub keys: Vec<AuthorizedKey>,
    /// Accept anyone (`--no-auth`).
    pub no_auth: bool,
}

impl AuthConfig {
    /// Is password login possible?
    pub fn password_enabled(&self) -> bool {
        matches!((&self.user, &self.pass), (Some(u), Some(p)) if !u.is_empty() && !p.is_empty())
    }

    /// Is any way in configured?
    pub fn any_method(&self) -> bool {
        self.no_auth || self.password_enabled() || !self.keys.is_empty()
    }

    /// Check a password login in constant time (both user and password).
    pub fn check_password(&self, user: &str, pass: &str) -> bool {
        let (Some(u), Some(p)) = (&self.user, &self.pass) else {
            return false;
        };
        if !self.password_enabled() {
            return false;
        }
        let user_ok = digest(u.as_bytes()).ct_eq(&digest(user.as_bytes()));
        let pass_ok = digest(p.as_bytes()).ct_eq(&digest(pass.as_bytes()));
        (user_ok & pass_ok).into()
    }

    /// The authorized key matching `key` that allows a login from `ip` now.
    pub fn find_key(&self, key: &PublicKey, ip: Option<IpAddr>) -> Option<&AuthorizedKey> {
        let now = SystemTime::now();
        self.keys
            .iter()
            .find(|k| k.key.key_data() == key.key_data() && k.allows(ip, now))
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// One usable line of an authorized_keys file.
#[derive(Debug, Clone)]
pub struct AuthorizedKey {
    /// The key.
    pub key: PublicKey,
    /// `from=` patterns, if any.
    pub from: Option<Vec<String>>,
    /// `expiry-time=`, if any.
    pub expiry: Option<SystemTime>,
    /// The comment, for logs.
    pub comment: String,
    /// Logins with this key may not change anything (a forced
    /// `internal-sftp -R`).
    pub read_only: bool,
}

impl AuthorizedKey {
    /// May this key be used from `ip` at `now`?
    pub fn allows(&self, ip: Option<IpAddr>, now: SystemTime) -> bool {
        if let Some(exp) = self.expiry {
            if now >= exp {
                return false;
            }
        }
        match &self.from {
            None => true,
            Some(patterns) => match ip {
                Some(ip) => match_pattern_list(patterns, ip),
                None => false,
            },
        }
    }
}

/// The result of reading an authorized_keys file.
#[derive(Debug, Default)]
pub struct ParsedKeys {
    /// Usable keys.
    pub keys: Vec<AuthorizedKey>,
    /// One message per skipped or restricted line.
    pub warnings: Vec<String>,
}

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Parse an authorized_keys file. `source` names it in warnings.
pub fn parse_authorized_keys(text: &str, source: &str) -> ParsedKeys {
    let mut out = ParsedKeys::default();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok((k, note)) => {
                out.keys.push(k);
                if let Some(note) = note {
                    out.warnings.push(format!("{source}:{}: {note}", n + 1));
                }
            }
            Err(why) => out.warnings.push(format!("{source}:{}: {why}", n + 1)),
        }
    }
    out
}

/// A usable line, with a note for the log when part of it is not applied.
fn parse_line(line: &str) -> Result<(AuthorizedKey, Option<String>), String> {
    let (options, rest) = if KEY_TYPES.iter().any(|t| line.starts_with(&format!("{t} "))) {
        ("", line)
    } else {
        split_options(line)?
    };
    let mut parts = rest.split_whitespace();
    let ktype = parts.next().ok_or("no key type")?;
    let b64 = parts.next().ok_or("no key data")?;
    let comment = parts.collect::<Vec<_>>().join(" ");
    let key = russh::keys::parse_public_key_base64(b64)
        .map_err(|e| format!("cannot read {ktype} key: {e}"))?;
    if key.algorithm().as_str() != ktype {
        return Err(format!(
            "key type {ktype} does not match its data ({})",
            key.algorithm().as_str()
        ));
    }
    let mut k = AuthorizedKey {
        key,
        from: None,
        expiry: None,
        comment,
        read_only: false,
    };
    let mut note = None;
    // OpenSSH refuses a line that names these twice (which one would
    // hold?); of two expiry times, the earlier holds.
    let (mut had_from, mut had_command) = (false, false);
    let (mut no_touch, mut verify) = (false, false);
    for opt in split_commas(options)? {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(unquote(v)?)),
            None => (opt.as_str(), None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("from", Some(_)) if had_from => return Err("from given twice; line skipped".into()),
            ("command", Some(_)) if had_command => {
                return Err("command given twice; line skipped".into())
            }
            ("from", Some(v)) => {
                had_from = true;
                k.from = Some(v.split(',').map(|s| s.trim().to_string()).collect())
            }
            ("expiry-time", Some(v)) => {
                let t = parse_expiry(&v)?;
                k.expiry = Some(k.expiry.map_or(t, |e| e.min(t)));
            }
            ("no-touch-required", None) => no_touch = true,
            ("verify-required", None) => verify = true,
            ("command", Some(cmd)) => {
                had_command = true;
                let forced = forced_sftp(&cmd)?;
                k.read_only |= forced.read_only;
                note = forced.note;
            }
            ("cert-authority" | "principals", _) => {
                return Err("certificate authorities are not supported; line skipped".into())
            }
            (
                "restrict"
                | "no-pty"
                | "no-port-forwarding"
                | "no-agent-forwarding"
                | "no-x11-forwarding"
                | "no-user-rc"
                | "pty"
                | "port-forwarding"
                | "agent-forwarding"
                | "x11-forwarding"
                | "user-rc",
                None,
            ) => {}
            ("permitopen" | "permitlisten" | "environment" | "tunnel", Some(_)) => {}
            (other, _) => {
                return Err(format!(
                    "unknown or malformed option {other:?}; line skipped"
                ))
            }
        }
    }
    // A FIDO key's signature says whether the user touched it (and
    // whether a PIN was checked), and OpenSSH requires the touch unless
    // told otherwise; this server cannot read those flags, so it accepts
    // such a key only where the line says no touch is needed.
    if ktype.starts_with("sk-") {
        if verify {
            return Err(
                "verify-required (a PIN on a FIDO key) cannot be checked by this server; line skipped"
                    .into(),
            );
        }
        if !no_touch {
            return Err(format!(
                "a {ktype} key must be touched to log in unless the line says no-touch-required, \
                 and this server cannot check the touch; line skipped"
            ));
        }
    }
    Ok((k, note))
}

/// What a forced command that is an SFTP server means for its key.
#[derive(Debug, PartialEq, Eq)]
struct ForcedSftp {
    read_only: bool,
    /// What of the command is not applied, for the log.
    note: Option<String>,
}

/// Accept a forced command that starts an SFTP server; refuse any other.
fn forced_sftp(cmd: &str) -> Result<ForcedSftp, String> {
    let refused = || {
        format!(
            "command={cmd:?} (a forced command) cannot be run by an SFTP-only server; key refused"
        )
    };
    let words: Vec<&str> = cmd
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
        .collect();
    let Some((program, args)) = words.split_first() else {
        return Err(refused());
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    if base == "internal-sftp" || base.ends_with("sftp-server") {
        return sftp_server_options(cmd, args);
    }
    let is_ferry = base == "ferry"
        && args.first() == Some(&"serve")
        && args.get(1) == Some(&"sftp")
        && args.contains(&"--stdio");
    if !is_ferry {
        return Err(refused());
    }
    let mut read_only = false;
    let mut ignored = Vec::new();
    for a in &args[2..] {
        match *a {
            "--stdio" => {}
            "--read-only" | "--read-only=true" => read_only = true,
            other => ignored.push(other),
        }
    }
    let note = (!ignored.is_empty()).then(|| {
        format!(
            "command={cmd:?}: the key gets SFTP on this server's remote; the command's own \
             arguments ({}) are not applied",
            ignored.join(" ")
        )
    });
    Ok(ForcedSftp { read_only, note })
}

/// OpenSSH sftp-server's options: `-R` is honoured, the logging ones do
/// not matter here, any other would change what the key may do and is not
/// supported.
fn sftp_server_options(cmd: &str, args: &[&str]) -> Result<ForcedSftp, String> {
    let mut read_only = false;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Err(format!(
                "command={cmd:?}: argument {a:?} is not understood; key refused"
            ));
        };
        for (i, f) in flags.char_indices() {
            match f {
                'R' => read_only = true,
                'e' => {}
                'f' | 'l' => {
                    // The value is the rest of this word or the next one.
                    if i + 1 == flags.len() {
                        args.next();
                    }
                    break;
                }
                other => {
                    return Err(format!(
                        "command={cmd:?}: sftp-server option -{other} is not supported; key refused"
                    ))
                }
            }
        }
    }
    Ok(ForcedSftp {
        read_only,
        note: None,
    })
}

/// Split `options rest` where options may contain quoted spaces.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&line[..i], line[i..].trim_start())),
            _ => {}
        }
    }
    Err("no key after the options".into())
}

fn split_commas(options: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in options.chars() {
        match c {
            _ if escaped => {
                cur.push(c);
                escaped = false;
            }
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                cur.push(c);
                quoted = !quoted;
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote in options".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<String, String> {
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| format!("option value {v} must be quoted"))?;
    Ok(inner.replace("\\\"", "\""))
}

fn parse_expiry(v: &str) -> Result<SystemTime, String> {
    let bad = || format!("bad expiry-time {v:?}: want YYYYMMDD[HHMM[SS]]");
    if !v.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&v.len()) {
        return Err(bad());
    }
    let num =
        |r: std::ops::Range<usize>| v.get(r).map(|s| s.parse::<i64>().unwrap_or(0)).unwrap_or(0);
    let (y, m, d) = (num(0..4), num(4..6), num(6..8));
    let (hh, mm, ss) = (num(8..10), num(10..12), num(12..14));
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, m, d);
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    if secs < 0 {
        return Ok(UNIX_EPOCH);
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// OpenSSH pattern-list semantics: any matching negated pattern denies;
/// otherwise any matching positive pattern allows.
pub fn match_pattern_list(patterns: &[String], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let text = ip.to_string();
    let mut allowed = false;
    for p in patterns {
        let (neg, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let hit = if p.contains('/') {
            cidr_match(p, ip)
        } else {
            wildcard_match(p.as_bytes(), text.as_bytes())
        };
        if hit && neg {
            return false;
        }
        allowed |= hit;
    }
    allowed
}

fn cidr_match(p: &str, ip: IpAddr) -> bool {
    let Some((addr, len)) = p.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

fn wildcard_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&p[1..], s) || (!s.is_empty() && wildcard_match(p, &s[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => wildcard_match(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIInZ9ZIxKjZ6L7/gz1hhhsQkEY5iqYaYjKCifsAkj28E";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_and_optioned_lines() {
        let text = format!(
            "# comment\n\n{ED} alice@host\nfrom=\"127.0.0.1,10.0.0.0/8\",no-pty {ED} bob\nrestrict,command=\"ls\" {ED} carol\ncert-authority {ED}\nfrobnicate {ED}\nnot a key\nexpiry-time=\"20000101\" {ED} old\n"
        );
        let parsed = parse_authorized_keys(&text, "ak");
        assert_eq!(parsed.keys.len(), 3, "{:?}", parsed.warnings);
        assert_eq!(parsed.warnings.len(), 4, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].starts_with("ak:5: command=\"ls\""));
        assert_eq!(parsed.keys[0].comment, "alice@host");
        let bob = &parsed.keys[1];
        let now = SystemTime::now();
        assert!(bob.allows(Some(ip("127.0.0.1")), now));
        assert!(bob.allows(Some(ip("10.1.2.3")), now));
        assert!(!bob.allows(Some(ip("127.0.0.2")), now));
        assert!(!bob.allows(None, now));
        assert!(
            !parsed.keys[2].allows(Some(ip("127.0.0.1")), now),
            "expired"
        );
    }

    /// An `sk-ssh-ed25519@openssh.com` public key (a FIDO key's).
    const SK: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIInZ9ZIxKjZ6L7/gz1hhhsQkEY5iqYaYjKCifsAkj28EAAAABHNzaDo=";

    #[test]
    fn repeated_and_fido_options_as_openssh_has_them() {
        let text = format!(
            "from=\"127.0.0.1\",from=\"10.0.0.0/8\" {ED} twofrom\n\
             command=\"internal-sftp\",command=\"internal-sftp -R\" {ED} twocmd\n\
             expiry-time=\"20990101\",expiry-time=\"20000101\" {ED} earlier\n\
             {SK} touch\n\
             no-touch-required {SK} notouch\n\
             no-touch-required,verify-required {SK} pin\n\
             verify-required,no-touch-required {ED} plain\n"
        );
        let parsed = parse_authorized_keys(&text, "ak");
        let comments: Vec<&str> = parsed.keys.iter().map(|k| k.comment.as_str()).collect();
        assert_eq!(
            comments,
            ["earlier", "notouch", "plain"],
            "{:?}",
            parsed.warnings
        );
        assert_eq!(parsed.warnings.len(), 4, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].starts_with("ak:1: from given twice"));
        assert!(parsed.warnings[1].starts_with("ak:2: command given twice"));
        assert!(parsed.warnings[2].contains("no-touch-required"));
        assert!(parsed.warnings[3].contains("verify-required"));
        // The earlier of two expiry times holds.
        assert!(!parsed.keys[0].allows(Some(ip("127.0.0.1")), SystemTime::now()));
    }

    #[test]
    fn forced_sftp_commands_are_accepted_others_refused() {
        let ok = |c: &str| forced_sftp(c).map(|f| f.read_only);
        assert_eq!(ok("internal-sftp"), Ok(false));
        assert_eq!(ok("internal-sftp -l INFO -f AUTH"), Ok(false));
        assert_eq!(ok("internal-sftp -R"), Ok(true));
        assert_eq!(ok("/usr/lib/openssh/sftp-server -e -lVERBOSE -R"), Ok(true));
        assert_eq!(ok("/usr/libexec/sftp-server"), Ok(false));
        assert_eq!(
            ok("/usr/local/bin/ferry serve sftp --stdio /srv/files"),
            Ok(false)
        );
        assert_eq!(ok("ferry serve sftp --stdio --read-only /srv"), Ok(true));
        let noted = forced_sftp("ferry serve sftp --stdio /srv/files").unwrap();
        assert!(noted.note.unwrap().contains("/srv/files"));
        assert_eq!(forced_sftp("internal-sftp").unwrap().note, None);
        for refused in [
            "ls",
            "",
            "/bin/sh -c internal-sftp",
            "internal-sftp -d /upload",
            "internal-sftp -P remove",
            "internal-sftp -u 077",
            "sftp-server extra",
            "ferry serve sftp /srv",
            "ferry version --stdio",
            "rrsync -ro /srv",
        ] {
            assert!(forced_sftp(refused).is_err(), "{refused:?} accepted");
        }
        let text = format!(
            "command=\"internal-sftp -R\" {ED} ro\nrestrict,command=\"/usr/lib/openssh/sftp-server\" {ED} rw\ncommand=\"ferry serve sftp --stdio /x\" {ED} f\n"
        );
        let parsed = parse_authorized_keys(&text, "ak");
        assert_eq!(parsed.keys.len(), 3, "{:?}", parsed.warnings);
        assert!(parsed.keys[0].read_only);
        assert!(!parsed.keys[1].read_only);
        assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].starts_with("ak:3: "));
    }

    #[test]
    fn patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(match_pattern_list(&p(&["127.0.0.*"]), ip("127.0.0.9")));
        assert!(match_pattern_list(&p(&["127.0.0.?"]), ip("127.0.0.9")));
        assert!(!match_pattern_list(&p(&["127.0.0.?"]), ip("127.0.0.19")));
        assert!(!match_pattern_list(
            &p(&["*", "!127.0.0.1"]),
            ip("127.0.0.1")
        ));
        assert!(match_pattern_list(
            &p(&["*", "!127.0.0.1"]),
            ip("127.0.0.2")
        ));
        assert!(match_pattern_list(&p(&["::1"]), ip("::1")));
        assert!(match_pattern_list(
            &p(&["127.0.0.1"]),
            ip("::ffff:127.0.0.1")
        ));
        assert!(match_pattern_list(&p(&["fe80::/10"]), ip("fe80::1")));
        assert!(!match_pattern_list(&p(&["example.com"]), ip("127.0.0.1")));
    }

    #[test]
    fn expiry_parsing() {
        assert_eq!(
            parse_expiry("19700102").unwrap(),
            UNIX_EPOCH + Duration::from_secs(86400)
        );
        assert_eq!(
            parse_expiry("197001010001").unwrap(),
            UNIX_EPOCH + Duration::from_secs(60)
        );
        assert!(parse_expiry("2020").is_err());
        assert!(parse_expiry("20201301").is_err());
    }

    #[test]
    fn passwords() {
        let a = AuthConfig {
            user: Some("u".into()),
            pass: Some("p".into()),
            ..Default::default()
        };
        assert!(a.check_password("u", "p"));
        assert!(!a.check_password("u", "q"));
        assert!(!a.check_password("v", "p"));
        let none = AuthConfig {
            user: Some("u".into()),
            pass: Some(String::new()),
            ..Default::default()
        };
        assert!(!none.check_password("u", ""));
        assert!(!none.any_method());
    }
}
