//! `--rc-htpasswd`: users and password hashes in Apache's htpasswd
//! format, the hashes `htpasswd` writes: bcrypt (`$2y$`, `-B`), Apache
//! MD5 (`$apr1$`, its default) and SHA-1 (`{SHA}`, `-s`). A line of
//! another kind is refused when the file is read, not ignored.

use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The users of an htpasswd file.
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    users: Vec<(String, Hash)>,
}

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(String),
    Apr1 { salt: String, full: String },
    Sha1(String),
}

impl Htpasswd {
    /// Parse the text of a file; `Err` names the first bad line.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: want user:hash", n + 1));
            };
            let hash =
                if hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")
                {
                    Hash::Bcrypt(hash.to_string())
                } else if let Some(rest) = hash.strip_prefix("$apr1$") {
                    let Some((salt, _)) = rest.split_once('$') else {
                        return Err(format!("line {}: malformed $apr1$ hash", n + 1));
                    };
                    Hash::Apr1 {
                        salt: salt.to_string(),
                        full: hash.to_string(),
                    }
                } else if let Some(b64) = hash.strip_prefix("{SHA}") {
                    Hash::Sha1(b64.to_string())
                } else {
                    return Err(format!(
                        "line {}: unsupported hash for user {user:?} (use htpasswd -B for bcrypt)",
                        n + 1
                    ));
                };
            users.push((user.to_string(), hash));
        }
        Ok(Htpasswd { users })
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// No users at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Does `user` have password `pass`?
    pub fn check(&self, user: &str, pass: &str) -> bool {
        let Some((_, hash)) = self.users.iter().find(|(u, _)| u == user) else {
            // The same work as a real check, so timing tells no names.
            let _ = bcrypt::verify(
                pass,
                "$2y$10$abcdefghijklmnopqrstuu5Ugb2NRO7B5qVwVxMyI7ZRhb/2uq9W",
            );
            return false;
        };
        match hash {
            Hash::Bcrypt(h) => bcrypt::verify(pass, h).unwrap_or(false),
            Hash::Apr1 { salt, full } => apr1(pass.as_bytes(), salt.as_bytes())
                .as_bytes()
                .ct_eq(full.as_bytes())
                .into(),
            Hash::Sha1(b64) => {
                use base64::Engine as _;
                let mine = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(pass));
                mine.as_bytes().ct_eq(b64.as_bytes()).into()
            }
        }
    }
}

/// Apache's MD5-based crypt, `$apr1$salt$hash`.
fn apr1(pw: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let alt = {
        let mut h = Md5::new();
        h.update(pw);
        h.update(salt);
        h.update(pw);
        h.finalize()
    };
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut left = pw.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(pw);
        }
        if i & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }
    const ITOA: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::from("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    push(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The password "s3cret" hashed by Python's bcrypt, `openssl passwd
    // -apr1` and `openssl sha1 | base64` (what htpasswd -B, -m and -s write).
    const FILE: &str = "\
# a comment
alice:$2y$05$626JIIemBljgaU/ptQj9he.hJSAPRi8ZKuyxKHldUTUhw4Dsc96za
bob:$apr1$QFlbZA7C$SxaJJJQHnhHhfP/BnBusj/
carol:{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg=
";

    #[test]
    fn each_kind_of_hash_checks_its_password() {
        let h = Htpasswd::parse(FILE).unwrap();
        assert_eq!(h.len(), 3);
        for user in ["alice", "bob", "carol"] {
            assert!(h.check(user, "s3cret"), "{user}");
            assert!(!h.check(user, "s3cret!"), "{user}");
            assert!(!h.check(user, ""), "{user}");
        }
        assert!(!h.check("dave", "s3cret"));
    }

    #[test]
    fn unknown_hashes_are_refused() {
        let e = Htpasswd::parse("eve:plaintext\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(Htpasswd::parse("nocolon\n").is_err());
    }
}
