//! Transport encryption: ChaCha20-Poly1305 with counter nonces (Noise §5.1 `CipherState`).
//!
//! The nonce is 32 zero bits followed by the little-endian 64-bit counter. The counter moves
//! only after a successful seal/open, so a failed open (tampering) leaves the state untouched
//! and is reported as [`CryptoError::Integrity`]. Counter `u64::MAX` is reserved and refused.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use thiserror::Error;

/// Bytes of the Poly1305 tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// A 256-bit symmetric key.
pub type Key = [u8; 32];

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The ciphertext, its associated data or its position in the stream is not what was sealed.
    #[error("integrity check failed: the data was altered, replayed or reordered")]
    Integrity,
    /// The 2^64 − 1 messages a key may protect have been used up.
    #[error("nonce space exhausted; the connection must be re-established")]
    NonceExhausted,
}

/// The 12-byte ChaCha20-Poly1305 nonce for counter `n`.
pub fn nonce_bytes(n: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_le_bytes());
    nonce
}

/// Seal `plaintext` in place (the tag is appended) under `key` and explicit counter `n`.
pub fn seal_with(
    aead: &ChaCha20Poly1305,
    n: u64,
    ad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if n == u64::MAX {
        return Err(CryptoError::NonceExhausted);
    }
    aead.encrypt_in_place(Nonce::from_slice(&nonce_bytes(n)), ad, buf)
        .map_err(|_| CryptoError::Integrity)
}

/// Open `buf` (ciphertext ‖ tag) in place under explicit counter `n`; on success `buf` holds
/// the plaintext.
pub fn open_with(
    aead: &ChaCha20Poly1305,
    n: u64,
    ad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    if n == u64::MAX {
        return Err(CryptoError::NonceExhausted);
    }
    aead.decrypt_in_place(Nonce::from_slice(&nonce_bytes(n)), ad, buf)
        .map_err(|_| CryptoError::Integrity)
}

/// One direction of an encrypted stream: a key and the implicit counter. The key is wiped
/// when the state is dropped (`chacha20poly1305` zeroizes it) and never shown by `Debug`.
pub struct CipherState {
    aead: ChaCha20Poly1305,
    n: u64,
}

impl std::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherState")
            .field("key", &format_args!("<secret>"))
            .field("n", &self.n)
            .finish()
    }
}

impl CipherState {
    pub fn new(key: &Key) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            n: 0,
        }
    }

    /// For tests and test vectors: start at counter `n`.
    pub fn with_nonce(key: &Key, n: u64) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            n,
        }
    }

    /// The counter the next seal/open will use.
    pub fn nonce(&self) -> u64 {
        self.n
    }

    /// Encrypt `plaintext` with associated data `ad`; returns ciphertext ‖ tag.
    pub fn seal(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(ad, &mut buf)?;
        Ok(buf)
    }

    /// Encrypt `buf` in place, appending the tag.
    pub fn seal_in_place(&mut self, ad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        seal_with(&self.aead, self.n, ad, buf)?;
        self.n += 1;
        Ok(())
    }

    /// Decrypt ciphertext ‖ tag; the counter advances only on success.
    pub fn open(&mut self, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut buf = ciphertext.to_vec();
        open_with(&self.aead, self.n, ad, &mut buf)?;
        self.n += 1;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = [0x42; 32];

    #[test]
    fn seal_then_open() {
        let mut tx = CipherState::new(&KEY);
        let mut rx = CipherState::new(&KEY);
        for text in [&b"one"[..], b"", b"three | with : separators"] {
            let ct = tx.seal(b"ad", text).unwrap();
            assert_eq!(ct.len(), text.len() + TAG_LEN);
            assert_eq!(rx.open(b"ad", &ct).unwrap(), text);
        }
        assert_eq!((tx.nonce(), rx.nonce()), (3, 3));
    }

    #[test]
    fn same_plaintext_gives_different_ciphertext() {
        let mut tx = CipherState::new(&KEY);
        assert_ne!(tx.seal(b"", b"hi").unwrap(), tx.seal(b"", b"hi").unwrap());
    }

    #[test]
    fn tampering_is_detected_and_does_not_advance() {
        let mut tx = CipherState::new(&KEY);
        let mut rx = CipherState::new(&KEY);
        let ct = tx.seal(b"ad", b"secret").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert_eq!(rx.open(b"ad", &bad), Err(CryptoError::Integrity));
        }
        assert_eq!(
            rx.open(b"AD", &ct),
            Err(CryptoError::Integrity),
            "associated data is bound"
        );
        assert_eq!(
            rx.open(b"ad", &ct[..ct.len() - 1]),
            Err(CryptoError::Integrity),
            "truncation"
        );
        assert_eq!(rx.nonce(), 0, "failed opens must not advance the counter");
        assert_eq!(rx.open(b"ad", &ct).unwrap(), b"secret");
    }

    #[test]
    fn replay_and_reorder_fail() {
        let mut tx = CipherState::new(&KEY);
        let mut rx = CipherState::new(&KEY);
        let first = tx.seal(b"", b"1").unwrap();
        let second = tx.seal(b"", b"2").unwrap();
        assert_eq!(
            rx.open(b"", &second),
            Err(CryptoError::Integrity),
            "reordered"
        );
        rx.open(b"", &first).unwrap();
        assert_eq!(
            rx.open(b"", &first),
            Err(CryptoError::Integrity),
            "replayed"
        );
        rx.open(b"", &second).unwrap();
    }

    #[test]
    fn nonce_max_is_refused() {
        let mut tx = CipherState::with_nonce(&KEY, u64::MAX - 1);
        tx.seal(b"", b"last").unwrap();
        assert_eq!(
            tx.seal(b"", b"one too many"),
            Err(CryptoError::NonceExhausted)
        );
        let mut rx = CipherState::with_nonce(&KEY, u64::MAX);
        assert_eq!(rx.open(b"", &[0u8; 16]), Err(CryptoError::NonceExhausted));
    }

    #[test]
    fn nonce_layout_is_noise() {
        assert_eq!(nonce_bytes(1), [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(nonce_bytes(0x0102), [0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
    }
}
