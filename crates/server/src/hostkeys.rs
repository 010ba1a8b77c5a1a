//! Host keys: load them from files, or generate them once and cache them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::ssh_key::LineEnding;
pub use russh::keys::ssh_key::PrivateKey;
use russh::keys::{Algorithm, EcdsaCurve};

/// Why host keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// The file could not be read.
    #[error("cannot read host key {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is protected by a passphrase.
    #[error("host key {0} is encrypted; Ferry needs an unencrypted host key")]
    Encrypted(PathBuf),
    /// The file is not a private key Ferry can read.
    #[error("cannot parse host key {path}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Generating or saving a key failed.
    #[error("cannot create host key {path}: {why}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Load one private key file (OpenSSH, PKCS#1, SEC1 or PKCS#8 PEM).
pub fn load_key_file(path: &Path) -> Result<PrivateKey, HostKeyError> {
    let text = fs::read_to_string(path).map_err(|source| HostKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(HostKeyError::Encrypted(path.to_owned()));
    }
    ferry_sshkey::decode_private_key(&text, None).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => HostKeyError::Encrypted(path.to_owned()),
        e => HostKeyError::Parse {
            path: path.to_owned(),
            why: e.to_string(),
        },
    })
}

/// The cached host keys in `dir` (`<cache-dir>/serve-sftp`): Ed25519,
/// ECDSA P-256 and RSA-3072, generated on first use. The directory is made
/// 0700 and each private key 0600, with its `.pub` beside it.
pub fn load_or_generate(dir: &Path) -> Result<Vec<PrivateKey>, HostKeyError> {
    let create_err = |why: String| HostKeyError::Create {
        path: dir.to_owned(),
        why,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| create_err(e.to_string()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| create_err(e.to_string()))?;
    let kinds = [
        ("id_ed25519", Kind::Ed25519),
        ("id_ecdsa", Kind::Ecdsa),
        ("id_rsa", Kind::Rsa),
    ];
    let mut keys = Vec::new();
    for (name, kind) in kinds {
        let path = dir.join(name);
        if path.exists() {
            keys.push(load_key_file(&path)?);
        } else {
            let key = generate(kind).map_err(|why| HostKeyError::Create {
                path: path.clone(),
                why,
            })?;
            let won = save(&path, &key).map_err(|why| HostKeyError::Create {
                path: path.clone(),
                why,
            })?;
            if won {
                tracing::info!("generated host key {}", path.display());
                keys.push(key);
            } else {
                // Another instance generated it first: use that one.
                keys.push(load_key_file(&path)?);
            }
        }
    }
    Ok(keys)
}

#[derive(Clone, Copy)]
enum Kind {
    Ed25519,
    Ecdsa,
    Rsa,
}

fn generate(kind: Kind) -> Result<PrivateKey, String> {
    let mut rng = rand::rng();
    match kind {
        Kind::Ed25519 => {
            PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(|e| e.to_string())
        }
        Kind::Ecdsa => PrivateKey::random(
            &mut rng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        )
        .map_err(|e| e.to_string()),
        Kind::Rsa => {
            let kp = RsaKeypair::random(&mut rng, 3072).map_err(|e| e.to_string())?;
            PrivateKey::new(KeypairData::Rsa(kp), "").map_err(|e| e.to_string())
        }
    }
}

/// Write the key 0600 and its public half beside it. The key is written to
/// a temporary file of this process's own and published with a hard link,
/// which fails if the name exists: when two instances start at once on an
/// empty cache directory, one key wins and the other instance uses it
/// (`Ok(false)`).
fn save(path: &Path, key: &PrivateKey) -> Result<bool, String> {
    let pem = key.to_openssh(LineEnding::LF).map_err(|e| e.to_string())?;
    let unique = format!(
        ".{}.{}.{:016x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id(),
        rand::random::<u64>()
    );
    let tmp = path.with_file_name(unique);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e.to_string()),
    }
    let public = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    fs::write(&pub_path, format!("{public}\n")).map_err(|e| e.to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("serve-sftp");
        let a = load_or_generate(&dir).unwrap();
        assert_eq!(a.len(), 3);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let m = fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, 0o600, "{name}");
            assert!(dir.join(format!("{name}.pub")).exists());
        }
        let b = load_or_generate(&dir).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.public_key().key_data(), y.public_key().key_data());
        }
    }

    #[test]
    fn bad_key_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        assert!(matches!(
            load_key_file(&missing),
            Err(HostKeyError::Read { .. })
        ));
        let junk = tmp.path().join("junk");
        fs::write(&junk, "not a key").unwrap();
        let e = load_key_file(&junk).unwrap_err();
        assert!(e.to_string().contains("cannot parse host key"), "{e}");
        let enc = tmp.path().join("enc");
        let key = generate(Kind::Ed25519).unwrap();
        let encrypted = key.encrypt(&mut rand::rng(), "secret").unwrap();
        fs::write(
            &enc,
            encrypted.to_openssh(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            load_key_file(&enc),
            Err(HostKeyError::Encrypted(_))
        ));
    }
}
