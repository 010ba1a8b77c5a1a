//! An OpenSSH `known_hosts` file, to verify the server's host key.
//!
//! Lines are `[@marker] patterns keytype base64 [comment]`. Patterns are a
//! comma-separated list of host names with `*` and `?` wildcards and `!`
//! negation, or one hashed entry `|1|salt|hmac-sha1` (`HashKnownHosts`).
//! A host on a port other than 22 is written `[host]:port`. Lines that do
//! not parse are skipped, as OpenSSH does. `@revoked` keys are refused for
//! every host; `@cert-authority` lines are not used (host certificates are
//! refused when a known_hosts file is configured).

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use sha1::Sha1;

/// What the file says about a host's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line for the host has this key.
    Known,
    /// Lines for the host exist, none with this key.
    Mismatch,
    /// No line is for the host.
    Unknown,
    /// The key is marked `@revoked`.
    Revoked,
}

enum Marker {
    None,
    Revoked,
    CertAuthority,
}

enum Hosts {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<String>),
}

struct Entry {
    marker: Marker,
    hosts: Hosts,
    key: PublicKey,
}

/// A parsed known_hosts file.
pub(crate) struct KnownHosts {
    entries: Vec<Entry>,
}

/// The name a host is recorded under: `host` on port 22, `[host]:port`
/// otherwise.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Read and parse `path`.
    pub(crate) fn load(path: &Path) -> std::io::Result<KnownHosts> {
        Ok(KnownHosts::parse(&std::fs::read_to_string(path)?))
    }

    /// Parse the text of a known_hosts file.
    pub(crate) fn parse(text: &str) -> KnownHosts {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(n, line)| {
                let e = parse_line(line);
                if e.is_none() && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                    tracing::debug!("known_hosts line {} skipped: not understood", n + 1);
                }
                e
            })
            .collect();
        KnownHosts { entries }
    }

    /// The host key algorithms recorded for `host` on `port`, in a form
    /// fit to offer first in the key exchange (so a host recorded with only
    /// an ECDSA or RSA key is not asked for its Ed25519 key and then
    /// refused as a mismatch). Empty when the host is not recorded.
    pub(crate) fn algorithms_for(&self, host: &str, port: u16) -> Vec<russh::keys::Algorithm> {
        use russh::keys::{Algorithm, HashAlg};
        let name = host_port(host, port);
        let mut out: Vec<Algorithm> = Vec::new();
        for e in &self.entries {
            if !matches!(e.marker, Marker::None) || !e.hosts.matches(&name) {
                continue;
            }
            let algs = match e.key.algorithm() {
                Algorithm::Rsa { .. } => vec![
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha512),
                    },
                    Algorithm::Rsa {
                        hash: Some(HashAlg::Sha256),
                    },
                ],
                other => vec![other],
            };
            for a in algs {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Check `key` for `host` on `port`.
    pub(crate) fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_port(host, port);
        let same = |k: &PublicKey| k.key_data() == key.key_data();
        if self
            .entries
            .iter()
            .any(|e| matches!(e.marker, Marker::Revoked) && same(&e.key))
        {
            return Verdict::Revoked;
        }
        let mut seen = false;
        for e in &self.entries {
            if !matches!(e.marker, Marker::None) || !e.hosts.matches(&name) {
                continue;
            }
            if same(&e.key) {
                return Verdict::Known;
            }
            seen = true;
        }
        if seen {
            Verdict::Mismatch
        } else {
            Verdict::Unknown
        }
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if !matches!(marker, Marker::None) {
        first = fields.next()?;
    }
    let hosts = Hosts::parse(first)?;
    let keytype = fields.next()?;
    let blob = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{keytype} {blob}")).ok()?;
    Some(Entry { marker, hosts, key })
}

impl Hosts {
    fn parse(field: &str) -> Option<Hosts> {
        if let Some(rest) = field.strip_prefix("|1|") {
            let (salt, hash) = rest.split_once('|')?;
            let b64 = data_encoding::BASE64;
            return Some(Hosts::Hashed {
                salt: b64.decode(salt.as_bytes()).ok()?,
                hash: b64.decode(hash.as_bytes()).ok()?,
            });
        }
        Some(Hosts::Patterns(
            field.split(',').map(|p| p.to_ascii_lowercase()).collect(),
        ))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => match Hmac::<Sha1>::new_from_slice(salt) {
                Ok(mac) => mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok(),
                Err(_) => false,
            },
            Hosts::Patterns(patterns) => {
                let name = name.to_ascii_lowercase();
                let mut positive = false;
                for p in patterns {
                    match p.strip_prefix('!') {
                        Some(neg) if glob(neg.as_bytes(), name.as_bytes()) => return false,
                        Some(_) => {}
                        None => positive |= glob(p.as_bytes(), name.as_bytes()),
                    }
                }
                positive
            }
        }
    }
}

/// Shell-style match with `*` (any run) and `?` (one byte).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII+NTbyAufD+t+u2gU134BrFpk/3qXzlD9mhmpl1i917";
    const ED_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMCa1/iSVpY5M2p4gJHeZGOEX2rtAtprmDC1PJ942PtZ";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn glob_matches_like_openssh() {
        assert!(glob(b"*.example.com", b"a.example.com"));
        assert!(!glob(b"*.example.com", b"example.com"));
        assert!(glob(b"h?st", b"host"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(!glob(b"a*b*c", b"aXbYbZ"));
    }

    #[test]
    fn plain_and_port_entries() {
        let kh = KnownHosts::parse(&format!(
            "# comment\n\nhost1,other {ED_A} c\n[host2]:2222 {ED_A}\n"
        ));
        assert_eq!(kh.check("host1", 22, &key(ED_A)), Verdict::Known);
        assert_eq!(kh.check("HOST1", 22, &key(ED_A)), Verdict::Known);
        assert_eq!(kh.check("host1", 22, &key(ED_B)), Verdict::Mismatch);
        assert_eq!(kh.check("host1", 2222, &key(ED_A)), Verdict::Unknown);
        assert_eq!(kh.check("host2", 2222, &key(ED_A)), Verdict::Known);
        assert_eq!(kh.check("host2", 22, &key(ED_A)), Verdict::Unknown);
    }

    #[test]
    fn negation_wildcards_and_markers() {
        let kh = KnownHosts::parse(&format!(
            "*.lan,!bad.lan {ED_A}\n@revoked * {ED_B}\n@weird x {ED_A}\n"
        ));
        assert_eq!(kh.check("a.lan", 22, &key(ED_A)), Verdict::Known);
        assert_eq!(kh.check("bad.lan", 22, &key(ED_A)), Verdict::Unknown);
        assert_eq!(kh.check("a.lan", 22, &key(ED_B)), Verdict::Revoked);
    }

    #[test]
    fn hashed_entries() {
        // HMAC-SHA1 of "[127.0.0.1]:2200" under the salt, computed here.
        let salt = b"0123456789abcdefghij";
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .unwrap()
            .chain_update(b"[127.0.0.1]:2200")
            .finalize()
            .into_bytes();
        let b64 = data_encoding::BASE64;
        let line = format!("|1|{}|{} {ED_A}\n", b64.encode(salt), b64.encode(&mac));
        let kh = KnownHosts::parse(&line);
        assert_eq!(kh.check("127.0.0.1", 2200, &key(ED_A)), Verdict::Known);
        assert_eq!(kh.check("127.0.0.1", 2200, &key(ED_B)), Verdict::Mismatch);
        assert_eq!(kh.check("127.0.0.1", 22, &key(ED_A)), Verdict::Unknown);
    }
}
