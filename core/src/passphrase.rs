//! From a room passphrase to the 32-byte Noise pre-shared key.
//!
//! `psk = Argon2id(NFC(trimmed passphrase), salt = room salt, m = 19 MiB, t = 2, p = 1, 32 bytes)`: OWASP's
//! minimum Argon2id setting. The server computes it once at start and the client once per
//! (passphrase, salt) per process, never per connection, so the KDF is not a CPU lever for a
//! denial of service. A recorded handshake still allows offline guessing of a weak passphrase,
//! which is why [`generate`] makes strong ones.

use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::cipher::Key;

/// Bytes of the per-room salt, sent in the server's `Hello` frame.
pub const SALT_LEN: usize = 16;
/// Argon2id memory cost in KiB (19 MiB).
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const ARGON2_T: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_P: u32 = 1;
/// Longest passphrase accepted, in bytes.
pub const MAX_PASSPHRASE_BYTES: usize = 1024;
/// Characters used by [`generate`]: no `l`, `o`, `0`, `1` to avoid misreading. 32 symbols = 5 bits each.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

pub type Salt = [u8; SALT_LEN];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PassphraseError {
    #[error("the passphrase is empty")]
    Empty,
    #[error("the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes")]
    TooLong,
    #[error("key derivation failed: {0}")]
    Kdf(#[source] argon2::Error),
}

/// Check a passphrase as typed: surrounding whitespace (a trailing newline from a file) is not
/// part of it, and it is put in Unicode NFC, so `José` typed precomposed (macOS, Windows) or
/// decomposed (some Linux input methods, files) is the same passphrase.
pub fn normalize(passphrase: &str) -> Result<String, PassphraseError> {
    let trimmed = passphrase.trim();
    if trimmed.is_empty() {
        return Err(PassphraseError::Empty);
    }
    // NFC never grows text by more than 3×: refuse the absurd before normalising it.
    if trimmed.len() > MAX_PASSPHRASE_BYTES * 3 {
        return Err(PassphraseError::TooLong);
    }
    let composed: String = trimmed.nfc().collect();
    if composed.len() > MAX_PASSPHRASE_BYTES {
        return Err(PassphraseError::TooLong);
    }
    Ok(composed)
}

/// Stretch a passphrase into the room's pre-shared key. Costs tens of milliseconds: call it off
/// the async runtime (`spawn_blocking`) and cache the result.
pub fn derive_psk(passphrase: &str, salt: &Salt) -> Result<Key, PassphraseError> {
    let passphrase = normalize(passphrase)?;
    let params =
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32)).map_err(PassphraseError::Kdf)?;
    let passphrase = Zeroizing::new(passphrase);
    let mut psk = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut *psk)
        .map_err(PassphraseError::Kdf)?;
    Ok(*psk)
}

/// A fresh random room salt.
pub fn random_salt() -> Salt {
    rand::random()
}

/// A strong passphrase: five groups of five characters, 125 bits, e.g. `k7m2x-9qpwa-…`.
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    let groups: Vec<String> = (0..5)
        .map(|_| {
            (0..5)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        })
        .collect();
    groups.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_salted() {
        let salt = [1u8; SALT_LEN];
        let a = derive_psk("correct horse", &salt).unwrap();
        assert_eq!(a, derive_psk("  correct horse\n", &salt).unwrap());
        assert_ne!(a, derive_psk("correct horse", &[2u8; SALT_LEN]).unwrap());
        assert_ne!(a, derive_psk("correct horsf", &salt).unwrap());
    }

    #[test]
    fn precomposed_and_decomposed_are_one_passphrase() {
        assert_eq!(normalize("Jose\u{301} ").unwrap(), "Jos\u{E9}");
        assert_eq!(normalize("Jos\u{E9}").unwrap(), "Jos\u{E9}");
        assert_ne!(normalize("JOS\u{C9}").unwrap(), "Jos\u{E9}", "case matters");
        // NFKC is not applied: full-width letters are other characters of a passphrase.
        assert_eq!(normalize("\u{FF21}").unwrap(), "\u{FF21}");
    }

    #[test]
    fn empty_and_huge_rejected() {
        assert_eq!(
            derive_psk(" \n", &[0; SALT_LEN]),
            Err(PassphraseError::Empty)
        );
        assert_eq!(
            normalize(&"x".repeat(MAX_PASSPHRASE_BYTES + 1)),
            Err(PassphraseError::TooLong)
        );
    }

    #[test]
    fn generated_passphrases_are_long_and_distinct() {
        let a = generate();
        assert_eq!(a.len(), 29);
        assert!(a.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))));
        assert_ne!(a, generate());
    }
}
