//! Ed25519 keys and their one-line text files:
//!
//! * secret key: `kup-secret-key <64 hex: the 32-byte seed>\n`
//! * public key: `kup-public-key <64 hex: the 32-byte public key>\n`
//!
//! The two prefixes differ so that a secret key pasted where a trusted public key belongs is
//! refused instead of being silently used.

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const SECRET_PREFIX: &str = "kup-secret-key";
const PUBLIC_PREFIX: &str = "kup-public-key";

/// Why a key could not be generated or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate a key: the operating system's random source failed: {0}")]
    Random(getrandom::Error),
    #[error("this is a kup secret key; a {expected} line is needed here")]
    SecretKeyGiven { expected: &'static str },
    #[error("this is a kup public key; a {expected} line is needed here")]
    PublicKeyGiven { expected: &'static str },
    #[error("not a kup key: expected one line \"{expected} <64 hex characters>\"")]
    NotAKey { expected: &'static str },
    #[error("key must be exactly 64 hex characters (32 bytes), found {found} characters")]
    WrongLength { found: usize },
    #[error("key is not hexadecimal")]
    NotHex,
    #[error("key is not a valid ed25519 public key")]
    InvalidPublicKey,
}

/// A new signing key from the operating system's random source.
pub fn generate_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    // SigningKey zeroizes itself on drop; the stack copy of the seed is wiped here.
    seed.fill(0);
    Ok(key)
}

/// The secret key file: `kup-secret-key <hex seed>\n`.
pub fn format_secret_key(key: &SigningKey) -> String {
    format!("{SECRET_PREFIX} {}\n", hex::encode(key.to_bytes()))
}

/// The public key file: `kup-public-key <hex>\n`.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX} {}\n", hex::encode(key.to_bytes()))
}

/// Reads a secret key file (one line, trailing newline and surrounding blanks allowed).
pub fn parse_secret_key(text: &str) -> Result<SigningKey, KeyError> {
    let bytes = parse_line(text, SECRET_PREFIX)?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Reads a public key file (one line, trailing newline and surrounding blanks allowed).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = parse_line(text, PUBLIC_PREFIX)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublicKey)
}

/// A short, stable name for a public key: the first 16 hex characters of its sha256.
pub fn key_id(key: &VerifyingKey) -> String {
    let mut id = hex::encode(Sha256::digest(key.as_bytes()));
    id.truncate(16);
    id
}

fn parse_line(text: &str, expected: &'static str) -> Result<[u8; 32], KeyError> {
    let line = text.trim();
    let mut words = line.split_ascii_whitespace();
    let (Some(prefix), Some(body), None) = (words.next(), words.next(), words.next()) else {
        return Err(prefix_error(line, expected));
    };
    if prefix != expected {
        return Err(prefix_error(line, expected));
    }
    if body.len() != 64 {
        return Err(KeyError::WrongLength {
            found: body.chars().count(),
        });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(body, &mut out).map_err(|_| KeyError::NotHex)?;
    Ok(out)
}

fn prefix_error(line: &str, expected: &'static str) -> KeyError {
    if expected != SECRET_PREFIX && line.starts_with(SECRET_PREFIX) {
        KeyError::SecretKeyGiven { expected }
    } else if expected != PUBLIC_PREFIX && line.starts_with(PUBLIC_PREFIX) {
        KeyError::PublicKeyGiven { expected }
    } else {
        KeyError::NotAKey { expected }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_files() {
        let key = generate_key().unwrap();
        let secret = format_secret_key(&key);
        assert!(secret.starts_with("kup-secret-key ") && secret.ends_with('\n'));
        assert_eq!(secret.len(), "kup-secret-key ".len() + 64 + 1);
        let back = parse_secret_key(&secret).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());

        let public = format_public_key(&key.verifying_key());
        assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
        assert_eq!(
            parse_public_key(public.trim_end()).unwrap(),
            key.verifying_key()
        );
        assert_ne!(generate_key().unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn key_id_is_16_hex_of_the_public_key_hash() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let id = key_id(&key);
        assert_eq!(id.len(), 16);
        assert_eq!(id, hex::encode(Sha256::digest(key.to_bytes()))[..16]);
    }

    #[test]
    fn clear_errors() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let secret = format_secret_key(&key);
        let public = format_public_key(&key.verifying_key());
        let msg = |e: KeyError| e.to_string();
        assert_eq!(
            msg(parse_public_key(&secret).unwrap_err()),
            "this is a kup secret key; a kup-public-key line is needed here"
        );
        assert_eq!(
            msg(parse_secret_key(&public).unwrap_err()),
            "this is a kup public key; a kup-secret-key line is needed here"
        );
        assert!(msg(parse_public_key("").unwrap_err()).starts_with("not a kup key"));
        assert!(msg(parse_public_key("ssh-ed25519 AAAA").unwrap_err()).starts_with("not a kup"));
        assert!(matches!(
            parse_public_key("kup-public-key abc"),
            Err(KeyError::WrongLength { found: 3 })
        ));
        assert!(matches!(
            parse_public_key(&format!("kup-public-key {}", "zz".repeat(32))),
            Err(KeyError::NotHex)
        ));
        assert!(matches!(
            parse_public_key(&format!("{} extra", public.trim())),
            Err(KeyError::NotAKey { .. })
        ));
    }

    #[test]
    fn invalid_public_points_are_refused() {
        // y = 2 is not on the curve: decompression fails.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let text = format!("kup-public-key {}", hex::encode(bytes));
        assert!(matches!(
            parse_public_key(&text),
            Err(KeyError::InvalidPublicKey)
        ));
    }
}
