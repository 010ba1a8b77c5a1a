//! rclone's "obscure": reversible hiding of passwords in config files.
//!
//! This is not encryption: the key is fixed and public. It only keeps a
//! secret from being read over a shoulder. The format, so that values are
//! interchangeable with `rclone obscure` / `rclone reveal`:
//!
//! - AES-256 in CTR mode (128-bit big-endian counter) with a fixed key;
//! - a random 16-byte IV per value;
//! - output: unpadded URL-safe base64 of `IV || ciphertext`.

use aes::Aes256;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use ctr::cipher::{KeyIvInit, StreamCipher};

/// The fixed key rclone uses for obscuring.
const KEY: [u8; 32] = [
    0x9c, 0x93, 0x5b, 0x48, 0x73, 0x0a, 0x55, 0x4d, 0x6b, 0xfd, 0x7c, 0x63, 0xc8, 0x86, 0xa9, 0x2b,
    0xd3, 0x90, 0x19, 0x8e, 0xb8, 0x12, 0x8a, 0xfb, 0xf4, 0xde, 0x16, 0x2b, 0x8b, 0x95, 0xf6, 0x38,
];

/// Length of the IV that prefixes every obscured value.
const IV_LEN: usize = 16;

/// Unpadded URL-safe base64, as Go's `base64.RawURLEncoding`: padding is
/// rejected, and non-zero trailing bits are accepted (Go is not strict).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Why a value could not be revealed. The first two messages are rclone's.
#[derive(Debug, thiserror::Error)]
pub enum RevealError {
    /// The value is not unpadded URL-safe base64.
    #[error("base64 decode failed when revealing password - is it obscured?")]
    Base64(#[source] base64::DecodeError),
    /// The decoded value is shorter than the 16-byte IV.
    #[error("input too short when revealing password - is it obscured?")]
    TooShort,
    /// The revealed bytes are not UTF-8 (rclone would pass them on as
    /// they are; Ferry's options are strings).
    #[error("revealed password is not valid UTF-8 - is it obscured?")]
    NotUtf8,
}

/// Obscures `plain` with a fresh random IV, as `rclone obscure` does.
pub fn obscure(plain: &str) -> String {
    let mut iv = [0u8; IV_LEN];
    rand::fill(&mut iv[..]);
    obscure_with_iv(plain, iv)
}

/// Obscures `plain` with the given IV. Deterministic; for tests and test
/// vectors. Use [`obscure`] for real secrets.
pub fn obscure_with_iv(plain: &str, iv: [u8; IV_LEN]) -> String {
    let mut buf = Vec::with_capacity(IV_LEN + plain.len());
    buf.extend_from_slice(&iv);
    buf.extend_from_slice(plain.as_bytes());
    apply_keystream(&iv, &mut buf[IV_LEN..]);
    B64.encode(&buf)
}

/// Reveals a value made by [`obscure`] or `rclone obscure`.
pub fn reveal(obscured: &str) -> Result<String, RevealError> {
    let mut buf = B64.decode(obscured).map_err(RevealError::Base64)?;
    if buf.len() < IV_LEN {
        return Err(RevealError::TooShort);
    }
    let (iv, data) = buf.split_at_mut(IV_LEN);
    let iv: [u8; IV_LEN] = (&*iv).try_into().expect("split at IV_LEN");
    apply_keystream(&iv, data);
    String::from_utf8(data.to_vec()).map_err(|_| RevealError::NotUtf8)
}

/// Encrypts or decrypts `data` in place (CTR mode is symmetric).
fn apply_keystream(iv: &[u8; IV_LEN], data: &mut [u8]) {
    let mut cipher = Aes256Ctr::new(&KEY.into(), &(*iv).into());
    cipher.apply_keystream(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    const IV_A: [u8; 16] = *b"aaaaaaaaaaaaaaaa";
    const IV_B: [u8; 16] = *b"bbbbbbbbbbbbbbbb";

    #[test]
    fn spec_vectors_obscure() {
        assert_eq!(obscure_with_iv("", IV_A), "YWFhYWFhYWFhYWFhYWFhYQ");
        assert_eq!(
            obscure_with_iv("potato", IV_A),
            "YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ"
        );
        assert_eq!(
            obscure_with_iv("potato", IV_B),
            "YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw"
        );
    }

    #[test]
    fn spec_vectors_reveal() {
        assert_eq!(reveal("YWFhYWFhYWFhYWFhYWFhYQ").unwrap(), "");
        assert_eq!(reveal("YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ").unwrap(), "potato");
        assert_eq!(reveal("YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw").unwrap(), "potato");
    }

    #[test]
    fn round_trips_with_random_iv() {
        for plain in [
            "",
            "x",
            "potato",
            "a longer password spanning more than one AES block: 0123456789",
            "ünïcödé ✓",
        ] {
            let a = obscure(plain);
            let b = obscure(plain);
            assert_ne!(a, b, "a fresh IV each time");
            assert_eq!(reveal(&a).unwrap(), plain);
            assert_eq!(reveal(&b).unwrap(), plain);
            assert!(!a.contains('=') && !a.contains('+') && !a.contains('/'));
        }
    }

    #[test]
    fn reveal_error_messages() {
        let e = reveal("not base64!").unwrap_err();
        assert!(matches!(e, RevealError::Base64(_)));
        assert_eq!(
            e.to_string(),
            "base64 decode failed when revealing password - is it obscured?"
        );
        // Padding is not accepted, as with Go's RawURLEncoding.
        assert!(matches!(
            reveal("YWFhYWFhYWFhYWFhYWFhYQ=="),
            Err(RevealError::Base64(_))
        ));

        let e = reveal("YWFh").unwrap_err();
        assert!(matches!(e, RevealError::TooShort));
        assert_eq!(
            e.to_string(),
            "input too short when revealing password - is it obscured?"
        );
        assert!(matches!(reveal(""), Err(RevealError::TooShort)));

        // IV 'a'*16 followed by one byte that decrypts to 0xff.
        let mut raw = IV_A.to_vec();
        let mut byte = [0xffu8];
        apply_keystream(&IV_A, &mut byte);
        raw.push(byte[0]);
        let e = reveal(&B64.encode(&raw)).unwrap_err();
        assert!(matches!(e, RevealError::NotUtf8));
        assert_eq!(
            e.to_string(),
            "revealed password is not valid UTF-8 - is it obscured?"
        );
    }
}
