//! Private keys as `ssh-keygen` writes them.
//!
//! [`decode_private_key`] reads what `russh::keys::decode_secret_key` reads
//! (OpenSSH, PKCS#1, SEC1, PKCS#8, PuTTY), plus one kind of key it refuses:
//! an ECDSA P-256 key in OpenSSH's format whose private scalar is shorter
//! than 32 bytes. OpenSSH writes the scalar as an `mpint`, which drops
//! leading zero bytes, so about one P-256 key in 256 that `ssh-keygen`
//! makes has a 31-byte scalar (or shorter); the `ssh-key` crate rejects
//! those with "length invalid". Such a key is read here by hand, decrypted
//! with its passphrase if it has one, and its scalar padded back to 32
//! bytes.

use data_encoding::BASE64;
use russh::keys::ssh_key::cipher::{Cipher, Tag};
use russh::keys::ssh_key::encoding::{self, Decode};
use russh::keys::ssh_key::private::{EcdsaKeypair, EcdsaPrivateKey, KeypairData};
use russh::keys::ssh_key::public::{EcdsaPublicKey, KeyData};
use russh::keys::ssh_key::{Kdf, PrivateKey};
use russh::keys::Error;

const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
const END: &str = "-----END OPENSSH PRIVATE KEY-----";
const MAGIC: &[u8] = b"openssh-key-v1\0";

/// Decode a private key file's text, decrypting it with `pass` if it is
/// encrypted. Errors are russh's (`KeyIsEncrypted` when a passphrase is
/// needed and none was given).
pub fn decode_private_key(text: &str, pass: Option<&str>) -> Result<PrivateKey, Error> {
    match russh::keys::decode_secret_key(text, pass) {
        Ok(key) => Ok(key),
        Err(e) => match short_ecdsa(text, pass) {
            Some(Ok(key)) => Ok(key),
            Some(Err(again)) => Err(again),
            // Not the kind of key this reads by hand: russh's answer stands.
            None => Err(e),
        },
    }
}

/// The key in `text` if it is an OpenSSH-format ECDSA key whose private
/// scalar is shorter than its curve's size; `None` if it is anything else.
fn short_ecdsa(text: &str, pass: Option<&str>) -> Option<Result<PrivateKey, Error>> {
    let blob = pem_body(text)?;
    let container = Container::parse(&blob).ok()?;
    // Only ECDSA keys are read here: the public half says which kind.
    let public = match KeyData::decode(&mut &container.public[..]).ok()? {
        KeyData::Ecdsa(public) => public,
        _ => return None,
    };
    let section = match container.decrypt(pass) {
        Ok(section) => section,
        Err(e) => return Some(Err(e)),
    };
    match read_section(&section, &public) {
        Ok(Some(key)) => Some(Ok(key)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The base64 between the OpenSSH armour lines, decoded.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    let b64: String = text[start..end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    BASE64.decode(b64.as_bytes()).ok()
}

/// The parts of an `openssh-key-v1` container (OpenSSH's PROTOCOL.key).
struct Container {
    cipher: Cipher,
    kdf: Kdf,
    public: Vec<u8>,
    private: Vec<u8>,
    tag: Option<Tag>,
}

impl Container {
    fn parse(blob: &[u8]) -> Result<Self, Error> {
        let mut r = blob.strip_prefix(MAGIC).ok_or(Error::CouldNotReadKey)?;
        let cipher_name = String::decode(&mut r).map_err(ssh_err)?;
        let cipher = cipher_name
            .parse::<Cipher>()
            .map_err(|_| Error::CouldNotReadKey)?;
        let kdf = Kdf::decode(&mut r).map_err(ssh_key_err)?;
        if u32::decode(&mut r).map_err(ssh_err)? != 1 {
            // ssh-keygen writes one key per file.
            return Err(Error::CouldNotReadKey);
        }
        let public = Vec::<u8>::decode(&mut r).map_err(ssh_err)?;
        let private = Vec::<u8>::decode(&mut r).map_err(ssh_err)?;
        let tag = if cipher.has_tag() {
            Some(Tag::try_from(r).map_err(|_| Error::CouldNotReadKey)?)
        } else if r.is_empty() {
            None
        } else {
            return Err(Error::CouldNotReadKey);
        };
        Ok(Self {
            cipher,
            kdf,
            public,
            private,
            tag,
        })
    }

    /// The private section in the clear.
    fn decrypt(&self, pass: Option<&str>) -> Result<Vec<u8>, Error> {
        let mut section = self.private.clone();
        if self.cipher.is_none() {
            return Ok(section);
        }
        let pass = pass.ok_or(Error::KeyIsEncrypted)?;
        let (key, iv) = self
            .kdf
            .derive_key_and_iv(self.cipher, pass)
            .map_err(ssh_key_err)?;
        self.cipher
            .decrypt(&key, &iv, &mut section, self.tag)
            .map_err(|_| ssh_key_err(russh::keys::ssh_key::Error::Crypto))?;
        Ok(section)
    }
}

/// Read the private section of an ECDSA key: two check words (equal, or
/// the passphrase was wrong), the key type, curve, public point, private
/// scalar and comment, then padding. `None` if the scalar is not short
/// (then it is not the case this reads).
fn read_section(section: &[u8], public: &EcdsaPublicKey) -> Result<Option<PrivateKey>, Error> {
    let mut r = section;
    let check1 = u32::decode(&mut r).map_err(ssh_err)?;
    let check2 = u32::decode(&mut r).map_err(ssh_err)?;
    if check1 != check2 {
        // What ssh-key says for a wrong passphrase.
        return Err(ssh_key_err(russh::keys::ssh_key::Error::Crypto));
    }
    let _key_type = String::decode(&mut r).map_err(ssh_err)?;
    let _curve = String::decode(&mut r).map_err(ssh_err)?;
    let point = Vec::<u8>::decode(&mut r).map_err(ssh_err)?;
    let scalar = Vec::<u8>::decode(&mut r).map_err(ssh_err)?;
    let comment = String::decode(&mut r).map_err(ssh_err)?;
    // The padding is 1, 2, 3, ... up to the cipher's block size.
    if r.len() >= 256 || r.iter().enumerate().any(|(i, &b)| b as usize != i + 1) {
        return Err(Error::CouldNotReadKey);
    }
    let inner = EcdsaPublicKey::from_sec1_bytes(&point).map_err(ssh_key_err)?;
    if &inner != public {
        return Err(ssh_key_err(russh::keys::ssh_key::Error::PublicKey));
    }
    // An mpint: leading zeros dropped, one added if the top bit is set.
    let digits = match scalar.iter().position(|&b| b != 0) {
        Some(first) => &scalar[first..],
        None => return Err(Error::CouldNotReadKey),
    };
    let keypair = match inner {
        EcdsaPublicKey::NistP256(public) => EcdsaKeypair::NistP256 {
            public,
            private: match padded::<32>(digits) {
                Some(private) => private,
                None => return Ok(None),
            },
        },
        EcdsaPublicKey::NistP384(public) => EcdsaKeypair::NistP384 {
            public,
            private: match padded::<48>(digits) {
                Some(private) => private,
                None => return Ok(None),
            },
        },
        EcdsaPublicKey::NistP521(public) => EcdsaKeypair::NistP521 {
            public,
            private: match padded::<66>(digits) {
                Some(private) => private,
                None => return Ok(None),
            },
        },
    };
    PrivateKey::new(KeypairData::Ecdsa(keypair), comment)
        .map(Some)
        .map_err(ssh_key_err)
}

/// `digits` (big-endian, no leading zeros) as a `SIZE`-byte scalar, if it
/// is shorter than `SIZE` bytes (a full-size scalar is not this case).
fn padded<const SIZE: usize>(digits: &[u8]) -> Option<EcdsaPrivateKey<SIZE>> {
    if digits.len() >= SIZE {
        return None;
    }
    let mut bytes = [0u8; SIZE];
    bytes[SIZE - digits.len()..].copy_from_slice(digits);
    Some(EcdsaPrivateKey::from(bytes))
}

fn ssh_err(e: encoding::Error) -> Error {
    ssh_key_err(e.into())
}

fn ssh_key_err(e: russh::keys::ssh_key::Error) -> Error {
    Error::from(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::{HashAlg, LineEnding};

    const SHORT: &str = include_str!("../tests/data/ecdsa256_short_scalar");
    const SHORT_PUB: &str = include_str!("../tests/data/ecdsa256_short_scalar.pub");
    const SHORT_CTR: &str = include_str!("../tests/data/ecdsa256_short_scalar_encrypted");
    const SHORT_GCM: &str = include_str!("../tests/data/ecdsa256_short_scalar_gcm");
    const PASS: &str = "ferry-test-passphrase";

    /// The key's type and base64, without the comment.
    fn public_line(key: &PrivateKey) -> String {
        let line = key.public_key().to_openssh().unwrap();
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn expected_public() -> String {
        let mut parts = SHORT_PUB.split_whitespace();
        format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
    }

    #[test]
    fn the_crate_alone_refuses_a_short_scalar() {
        // The reason this crate exists; if ssh-key starts reading these, the
        // hand-reading path is no longer needed.
        assert!(russh::keys::decode_secret_key(SHORT, None).is_err());
    }

    #[test]
    fn a_short_scalar_is_read_whole() {
        let key = decode_private_key(SHORT, None).unwrap();
        assert_eq!(public_line(&key), expected_public());
        assert_eq!(key.comment().as_bytes(), b"root@vm");
        let scalar = key.key_data().ecdsa().unwrap().private_key_bytes();
        assert_eq!(scalar.len(), 32);
        assert_eq!(scalar[0], 0, "the missing byte is a leading zero");
    }

    #[test]
    fn the_key_signs_for_its_public_half() {
        let key = decode_private_key(SHORT, None).unwrap();
        let sig = key.sign("ferry-test", HashAlg::Sha256, b"message").unwrap();
        key.public_key()
            .verify("ferry-test", b"message", &sig)
            .expect("signature verifies");
        // A key whose scalar was padded on the wrong side would sign for a
        // different public key; the re-encoded file reads back the same.
        let again = key.to_openssh(LineEnding::LF).unwrap();
        let back = decode_private_key(&again, None).unwrap();
        assert_eq!(public_line(&back), expected_public());
    }

    #[test]
    fn encrypted_short_scalars_need_and_take_the_passphrase() {
        for text in [SHORT_CTR, SHORT_GCM] {
            assert!(matches!(
                decode_private_key(text, None),
                Err(Error::KeyIsEncrypted)
            ));
            let key = decode_private_key(text, Some(PASS)).unwrap();
            assert_eq!(public_line(&key), expected_public());
            let wrong = decode_private_key(text, Some("not it"));
            assert!(wrong.is_err(), "a wrong passphrase is refused");
        }
    }

    #[test]
    fn other_keys_go_through_russh_unchanged() {
        let mut rng = rand::rng();
        for alg in [
            russh::keys::Algorithm::Ed25519,
            russh::keys::Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP384,
            },
        ] {
            let key = PrivateKey::random(&mut rng, alg).unwrap();
            let text = key.to_openssh(LineEnding::LF).unwrap();
            let back = decode_private_key(&text, None).unwrap();
            assert_eq!(public_line(&back), public_line(&key));
        }
        assert!(decode_private_key("not a key", None).is_err());
        let truncated = &SHORT[..SHORT.len() / 2];
        assert!(decode_private_key(truncated, None).is_err());
    }
}
