//! The SSH algorithms the server offers: OpenSSH 9's defaults where russh
//! has them, SHA-1 and CBC only when the operator asks.
//!
//! Five lists, each changed with OpenSSH's syntax (`sshd_config`'s
//! `KexAlgorithms`, `Ciphers`, `MACs`, `HostKeyAlgorithms`,
//! `PubkeyAcceptedAlgorithms`): `+a,b` appends, `-a,b` removes, `^a,b`
//! puts first, and a plain list replaces; names may use `*` and `?`.
//!
//! Order matters little on a server: SSH picks the client's first choice
//! among those the server offers.

use russh::kex::dh::groups::DhGroup;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{cipher, kex, mac};

/// One of the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// Key exchange (`--ssh-kex`).
    Kex,
    /// Ciphers (`--ssh-ciphers`).
    Ciphers,
    /// MACs, used with the ciphers that need one (`--ssh-macs`).
    Macs,
    /// Host key signature algorithms (`--ssh-host-key-algorithms`).
    HostKeys,
    /// Signature algorithms accepted for public-key logins
    /// (`--ssh-pubkey-algorithms`).
    Pubkeys,
}

impl List {
    /// Every list.
    pub const ALL: [List; 5] = [
        List::Kex,
        List::Ciphers,
        List::Macs,
        List::HostKeys,
        List::Pubkeys,
    ];

    /// The flag that changes this list.
    pub fn flag(self) -> &'static str {
        match self {
            List::Kex => "--ssh-kex",
            List::Ciphers => "--ssh-ciphers",
            List::Macs => "--ssh-macs",
            List::HostKeys => "--ssh-host-key-algorithms",
            List::Pubkeys => "--ssh-pubkey-algorithms",
        }
    }

    /// What the list is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            List::Kex => "key exchange",
            List::Ciphers => "cipher",
            List::Macs => "MAC",
            List::HostKeys => "host key",
            List::Pubkeys => "public key",
        }
    }

    /// Every algorithm of the list Ferry can offer, and whether it is on by
    /// default.
    fn table(self) -> &'static [(&'static str, bool)] {
        match self {
            List::Kex => KEX,
            List::Ciphers => CIPHERS,
            List::Macs => MACS,
            List::HostKeys | List::Pubkeys => KEYS,
        }
    }

    /// The names Ferry supports in this list.
    pub fn supported(self) -> impl Iterator<Item = &'static str> {
        self.table().iter().map(|(n, _)| *n)
    }
}

/// Key exchanges: OpenSSH 9.9's defaults (but sntrup761, which russh does
/// not have), then the SHA-1 ones and the groups OpenSSH no longer offers.
const KEX: &[(&str, bool)] = &[
    ("mlkem768x25519-sha256", true),
    ("curve25519-sha256", true),
    ("curve25519-sha256@libssh.org", true),
    ("ecdh-sha2-nistp256", true),
    ("ecdh-sha2-nistp384", true),
    ("ecdh-sha2-nistp521", true),
    ("diffie-hellman-group-exchange-sha256", true),
    ("diffie-hellman-group16-sha512", true),
    ("diffie-hellman-group18-sha512", true),
    ("diffie-hellman-group14-sha256", true),
    ("diffie-hellman-group15-sha512", false),
    ("diffie-hellman-group17-sha512", false),
    ("diffie-hellman-group14-sha1", false),
    ("diffie-hellman-group-exchange-sha1", false),
    ("diffie-hellman-group1-sha1", false),
];

/// Ciphers: OpenSSH's defaults (AES-GCM first: the fastest here), then
/// CBC, which OpenSSH stopped offering.
const CIPHERS: &[(&str, bool)] = &[
    ("aes128-gcm@openssh.com", true),
    ("aes256-gcm@openssh.com", true),
    ("chacha20-poly1305@openssh.com", true),
    ("aes128-ctr", true),
    ("aes192-ctr", true),
    ("aes256-ctr", true),
    ("aes128-cbc", false),
    ("aes192-cbc", false),
    ("aes256-cbc", false),
];

/// MACs: OpenSSH's SHA-2 defaults (russh has no UMAC), then SHA-1.
const MACS: &[(&str, bool)] = &[
    ("hmac-sha2-256-etm@openssh.com", true),
    ("hmac-sha2-512-etm@openssh.com", true),
    ("hmac-sha2-256", true),
    ("hmac-sha2-512", true),
    ("hmac-sha1-etm@openssh.com", false),
    ("hmac-sha1", false),
];

/// Signature algorithms, for host keys and logins: no SHA-1 `ssh-rsa`
/// unless asked for, as OpenSSH 8.8 and later.
const KEYS: &[(&str, bool)] = &[
    ("ssh-ed25519", true),
    ("ecdsa-sha2-nistp256", true),
    ("ecdsa-sha2-nistp384", true),
    ("ecdsa-sha2-nistp521", true),
    ("rsa-sha2-512", true),
    ("rsa-sha2-256", true),
    ("ssh-rsa", false),
];

/// The algorithms offered, each list by wire name in the order offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithms {
    kex: Vec<&'static str>,
    ciphers: Vec<&'static str>,
    macs: Vec<&'static str>,
    host_keys: Vec<&'static str>,
    pubkeys: Vec<&'static str>,
}

impl Default for Algorithms {
    fn default() -> Self {
        let defaults = |l: List| {
            l.table()
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n)
                .collect()
        };
        Algorithms {
            kex: defaults(List::Kex),
            ciphers: defaults(List::Ciphers),
            macs: defaults(List::Macs),
            host_keys: defaults(List::HostKeys),
            pubkeys: defaults(List::Pubkeys),
        }
    }
}

impl Algorithms {
    fn list(&self, l: List) -> &Vec<&'static str> {
        match l {
            List::Kex => &self.kex,
            List::Ciphers => &self.ciphers,
            List::Macs => &self.macs,
            List::HostKeys => &self.host_keys,
            List::Pubkeys => &self.pubkeys,
        }
    }

    fn list_mut(&mut self, l: List) -> &mut Vec<&'static str> {
        match l {
            List::Kex => &mut self.kex,
            List::Ciphers => &mut self.ciphers,
            List::Macs => &mut self.macs,
            List::HostKeys => &mut self.host_keys,
            List::Pubkeys => &mut self.pubkeys,
        }
    }

    /// The names offered in a list, in order.
    pub fn names(&self, l: List) -> &[&'static str] {
        self.list(l)
    }

    /// Is `name` offered in list `l`?
    pub fn offers(&self, l: List, name: &str) -> bool {
        self.list(l).contains(&name)
    }

    /// Change a list with OpenSSH's syntax (see the module docs). Errors
    /// name what is wrong and what is supported.
    pub fn change(&mut self, l: List, spec: &str) -> Result<(), String> {
        let spec = spec.trim();
        let (how, rest) = match spec.chars().next() {
            Some(c @ ('+' | '-' | '^')) => (c, &spec[1..]),
            _ => ('=', spec),
        };
        let mut named: Vec<&'static str> = Vec::new();
        for pattern in rest.split(',').map(str::trim) {
            if pattern.is_empty() {
                return Err(format!("{}: empty algorithm name in {spec:?}", l.flag()));
            }
            let hits: Vec<_> = l.supported().filter(|n| glob(pattern, n)).collect();
            if hits.is_empty() {
                return Err(format!(
                    "{}: unknown or unsupported {} algorithm {pattern:?}; supported: {}",
                    l.flag(),
                    l.what(),
                    l.supported().collect::<Vec<_>>().join(",")
                ));
            }
            for h in hits {
                if !named.contains(&h) {
                    named.push(h);
                }
            }
        }
        // Changed on a copy: a refused change leaves the list as it was.
        let mut list = self.list(l).clone();
        match how {
            '+' => {
                for n in named {
                    if !list.contains(&n) {
                        list.push(n);
                    }
                }
            }
            '-' => list.retain(|n| !named.contains(n)),
            '^' => {
                list.retain(|n| !named.contains(n));
                list.splice(0..0, named);
            }
            _ => list = named,
        }
        if list.is_empty() {
            return Err(format!(
                "{}: {spec:?} leaves no {} algorithm",
                l.flag(),
                l.what()
            ));
        }
        *self.list_mut(l) = list;
        Ok(())
    }

    /// Key exchanges for russh, with the ext-info and strict-kex markers.
    pub fn russh_kex(&self) -> Vec<kex::Name> {
        self.kex
            .iter()
            .filter_map(|n| kex::Name::try_from(*n).ok())
            .chain([
                kex::EXTENSION_SUPPORT_AS_SERVER,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
            ])
            .collect()
    }

    /// Ciphers for russh.
    pub fn russh_ciphers(&self) -> Vec<cipher::Name> {
        self.ciphers
            .iter()
            .filter_map(|n| cipher::Name::try_from(*n).ok())
            .collect()
    }

    /// MACs for russh.
    pub fn russh_macs(&self) -> Vec<mac::Name> {
        self.macs
            .iter()
            .filter_map(|n| mac::Name::try_from(*n).ok())
            .collect()
    }

    /// Host key algorithms for russh (also what it announces in
    /// `server-sig-algs`).
    pub fn russh_host_keys(&self) -> Vec<Algorithm> {
        self.host_keys.iter().filter_map(|n| key_alg(n)).collect()
    }

    /// Is a login signature made with `alg` accepted?
    pub fn accepts_pubkey(&self, alg: &Algorithm) -> bool {
        self.pubkeys
            .iter()
            .any(|n| key_alg(n).as_ref() == Some(alg))
    }

    /// Of the algorithms a client offered, those Ferry supports but does not
    /// offer now: what the operator could turn on.
    pub fn could_enable<'a>(&self, l: List, theirs: &'a [String]) -> Vec<&'a str> {
        theirs
            .iter()
            .map(String::as_str)
            .filter(|t| l.supported().any(|n| n == *t) && !self.offers(l, t))
            .collect()
    }
}

/// The group for a group-exchange request (RFC 4419): of the standard
/// MODP groups of 2048 bits and more, the smallest at least the preferred
/// size, else the largest the client allows; none below its minimum or
/// above its maximum.
pub fn gex_group(min: usize, preferred: usize, max: usize) -> Option<DhGroup> {
    use russh::kex::dh::groups::{DH_GROUP14, DH_GROUP15, DH_GROUP16, DH_GROUP17, DH_GROUP18};
    let groups = [DH_GROUP14, DH_GROUP15, DH_GROUP16, DH_GROUP17, DH_GROUP18];
    let allowed = || {
        groups
            .iter()
            .filter(|g| (min..=max).contains(&g.bit_size()))
    };
    allowed()
        .find(|g| g.bit_size() >= preferred)
        .or_else(|| allowed().next_back())
        .cloned()
}

fn key_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "ssh-ed25519" => Algorithm::Ed25519,
        "ecdsa-sha2-nistp256" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        "ecdsa-sha2-nistp384" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        "ecdsa-sha2-nistp521" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        "rsa-sha2-512" => Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        "rsa-sha2-256" => Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
        "ssh-rsa" => Algorithm::Rsa { hash: None },
        _ => return None,
    })
}

/// `*` and `?` wildcards, as OpenSSH's algorithm lists allow.
fn glob(p: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(p.as_bytes(), s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_one_russh_knows() {
        for l in List::ALL {
            for n in l.supported() {
                let known = match l {
                    List::Kex => kex::Name::try_from(n).is_ok(),
                    List::Ciphers => cipher::Name::try_from(n).is_ok(),
                    List::Macs => mac::Name::try_from(n).is_ok(),
                    List::HostKeys | List::Pubkeys => key_alg(n).is_some(),
                };
                assert!(known, "{n} ({l:?})");
            }
        }
        let all = Algorithms::default();
        assert_eq!(all.russh_kex().len(), all.names(List::Kex).len() + 2);
        assert_eq!(all.russh_ciphers().len(), all.names(List::Ciphers).len());
        assert_eq!(all.russh_macs().len(), all.names(List::Macs).len());
    }

    #[test]
    fn defaults_are_openssh_9_without_sha1() {
        let a = Algorithms::default();
        for n in [
            "ecdh-sha2-nistp256",
            "ecdh-sha2-nistp521",
            "diffie-hellman-group-exchange-sha256",
            "curve25519-sha256",
        ] {
            assert!(a.offers(List::Kex, n), "{n}");
        }
        for l in List::ALL {
            for n in a.names(l) {
                assert!(!n.contains("sha1") && *n != "ssh-rsa", "{n} on by default");
                assert!(!n.contains("cbc"), "{n} on by default");
            }
        }
        assert!(!a.accepts_pubkey(&Algorithm::Rsa { hash: None }));
        assert!(a.accepts_pubkey(&Algorithm::Rsa {
            hash: Some(HashAlg::Sha256)
        }));
    }

    #[test]
    fn openssh_list_syntax() {
        let mut a = Algorithms::default();
        a.change(List::Pubkeys, "+ssh-rsa").unwrap();
        assert!(a.accepts_pubkey(&Algorithm::Rsa { hash: None }));
        assert_eq!(a.names(List::Pubkeys).last(), Some(&"ssh-rsa"));
        a.change(List::Kex, "+diffie-hellman-group14-sha1").unwrap();
        assert!(a.offers(List::Kex, "diffie-hellman-group14-sha1"));
        a.change(List::Kex, "-ecdh-sha2-*").unwrap();
        assert!(!a.offers(List::Kex, "ecdh-sha2-nistp384"));
        a.change(List::Ciphers, "^aes256-ctr").unwrap();
        assert_eq!(a.names(List::Ciphers)[0], "aes256-ctr");
        assert_eq!(
            a.names(List::Ciphers)
                .iter()
                .filter(|n| **n == "aes256-ctr")
                .count(),
            1
        );
        a.change(List::Macs, "hmac-sha2-256,hmac-sha1").unwrap();
        assert_eq!(a.names(List::Macs), ["hmac-sha2-256", "hmac-sha1"]);
        // Adding what is there already changes nothing.
        let before = a.clone();
        a.change(List::Macs, "+hmac-sha1").unwrap();
        assert_eq!(a, before);
    }

    #[test]
    fn bad_specs_are_refused_with_the_supported_names() {
        let mut a = Algorithms::default();
        let e = a.change(List::Kex, "+sntrup761x25519-sha512").unwrap_err();
        assert!(
            e.contains("--ssh-kex") && e.contains("curve25519-sha256"),
            "{e}"
        );
        assert!(a.change(List::Ciphers, "+").is_err());
        assert!(a.change(List::Ciphers, "aes128-ctr,,aes256-ctr").is_err());
        let e = a.change(List::Macs, "-hmac-*").unwrap_err();
        assert!(e.contains("leaves no MAC"), "{e}");
        assert_eq!(a, Algorithms::default(), "refused changes change nothing");
    }

    #[test]
    fn group_exchange_sizes() {
        let bits = |min, n, max| gex_group(min, n, max).map(|g| g.bit_size());
        // OpenSSH asks 2048..8192, preferring the cipher's strength.
        assert_eq!(bits(2048, 3072, 8192), Some(3072));
        assert_eq!(bits(2048, 7680, 8192), Some(8192));
        assert_eq!(bits(2048, 8192, 8192), Some(8192));
        // JSch asks 1024..2048 preferring 2048.
        assert_eq!(bits(1024, 2048, 2048), Some(2048));
        // A preference above what is allowed: the largest allowed.
        assert_eq!(bits(1024, 4096, 3072), Some(3072));
        // Only groups below 2048 bits allowed: none (no 1024-bit group).
        assert_eq!(bits(1024, 1024, 1024), None);
    }

    #[test]
    fn what_a_client_could_have() {
        let a = Algorithms::default();
        let theirs = vec![
            "diffie-hellman-group14-sha1".to_string(),
            "ecdh-sha2-nistp256".to_string(),
            "sntrup761x25519-sha512@openssh.com".to_string(),
        ];
        assert_eq!(
            a.could_enable(List::Kex, &theirs),
            ["diffie-hellman-group14-sha1"]
        );
    }
}
