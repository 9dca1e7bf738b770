//! Sealed message frames: typed messages ↔ encrypted frame bytes. Pure, no I/O. Plaintexts
//! are [`message`](crate::message) encodings (postcard, `docs/PROTOCOL.md` §6).
//!
//! * `Session` frame body: `ciphertext ‖ tag`, nonce = the direction's implicit counter,
//!   associated data = the 5-byte frame header.
//! * `Broadcast` frame body: `counter (u64 big-endian) ‖ ciphertext ‖ tag`, sealed once with the
//!   room broadcast key and nonce = counter; associated data = header ‖ counter. Members accept
//!   only the exact next counter, so a replayed, dropped or reordered broadcast is detected.

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::ChaCha20Poly1305;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::message;
use thiserror::Error;

use crate::cipher::{self, CipherState, CryptoError, Key, TAG_LEN};
use crate::frame::{self, FrameKind, HEADER_LEN, MAX_BODY};

/// Bytes of the explicit counter in front of a broadcast ciphertext.
pub const COUNTER_LEN: usize = 8;
/// Largest plaintext that fits in a session frame.
pub const MAX_SESSION_PLAINTEXT: usize = MAX_BODY - TAG_LEN;
/// Largest plaintext that fits in a broadcast frame.
pub const MAX_BROADCAST_PLAINTEXT: usize = MAX_BODY - TAG_LEN - COUNTER_LEN;

#[derive(Debug, Error)]
pub enum SealError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("message of {0} bytes does not fit in one frame")]
    TooLarge(usize),
    #[error("message could not be encoded: {0}")]
    Encode(#[source] postcard::Error),
    #[error("message could not be decoded: {0}")]
    Decode(#[source] postcard::Error),
    #[error(
        "broadcast counter {got} where {expected} was expected (replayed, dropped or reordered)"
    )]
    OutOfOrder { expected: u64, got: u64 },
    #[error("broadcast frame too short")]
    Short,
}

/// Encode `message` as a plaintext (§6).
pub fn encode(message: &impl Serialize) -> Result<Vec<u8>, SealError> {
    message::encode(message).map_err(SealError::Encode)
}

/// Decode a plaintext (§6), ignoring bytes after the fields this version knows.
pub fn decode<T: DeserializeOwned>(plaintext: &[u8]) -> Result<T, SealError> {
    message::decode(plaintext).map_err(SealError::Decode)
}

/// Seal already-encoded plaintext as a `Session` frame appended to `out`.
pub fn seal_session_bytes(
    cipher: &mut CipherState,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    if plaintext.len() > MAX_SESSION_PLAINTEXT {
        return Err(SealError::TooLarge(plaintext.len()));
    }
    let head = frame::header(FrameKind::Session, plaintext.len() + TAG_LEN);
    let start = out.len();
    out.extend_from_slice(&head);
    let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
    body.extend_from_slice(plaintext);
    if let Err(e) = cipher.seal_in_place(&head, &mut body) {
        out.truncate(start);
        return Err(e.into());
    }
    out.extend_from_slice(&body);
    Ok(())
}

/// Seal `message` as a `Session` frame appended to `out`.
pub fn seal_session(
    cipher: &mut CipherState,
    message: &impl Serialize,
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    seal_session_bytes(cipher, &encode(message)?, out)
}

/// Open the body of a `Session` frame.
pub fn open_session<T: DeserializeOwned>(
    cipher: &mut CipherState,
    body: &[u8],
) -> Result<T, SealError> {
    let plaintext = open_session_plaintext(cipher, body)?;
    decode(&plaintext)
}

/// Open the body of a `Session` frame, leaving its plaintext undecoded.
pub fn open_session_plaintext(cipher: &mut CipherState, body: &[u8]) -> Result<Vec<u8>, SealError> {
    let head = frame::header(FrameKind::Session, body.len());
    Ok(cipher.open(&head, body)?)
}

/// The room broadcast key: seals each broadcast once, for every member.
pub struct BroadcastSealer {
    aead: ChaCha20Poly1305,
    next: u64,
}

impl BroadcastSealer {
    pub fn new(key: &Key, first_counter: u64) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            next: first_counter,
        }
    }

    /// The counter the next broadcast will carry.
    pub fn next_counter(&self) -> u64 {
        self.next
    }

    /// A complete `Broadcast` frame for `plaintext`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        if plaintext.len() > MAX_BROADCAST_PLAINTEXT {
            return Err(SealError::TooLarge(plaintext.len()));
        }
        let counter = self.next;
        let body_len = COUNTER_LEN + plaintext.len() + TAG_LEN;
        let mut ad = [0u8; HEADER_LEN + COUNTER_LEN];
        ad[..HEADER_LEN].copy_from_slice(&frame::header(FrameKind::Broadcast, body_len));
        ad[HEADER_LEN..].copy_from_slice(&counter.to_be_bytes());
        let mut ct = Vec::with_capacity(plaintext.len() + TAG_LEN);
        ct.extend_from_slice(plaintext);
        cipher::seal_with(&self.aead, counter, &ad, &mut ct)?;
        self.next = counter.checked_add(1).ok_or(CryptoError::NonceExhausted)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body_len);
        out.extend_from_slice(&ad);
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// A member's view of the room broadcast key: opens broadcasts in strict counter order.
pub struct BroadcastOpener {
    aead: ChaCha20Poly1305,
    expected: u64,
}

impl BroadcastOpener {
    pub fn new(key: &Key, expected: u64) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            expected,
        }
    }

    /// Open the body of a `Broadcast` frame and decode it; it must carry exactly the next
    /// counter.
    pub fn open<T: DeserializeOwned>(&mut self, body: &[u8]) -> Result<T, SealError> {
        decode(&self.open_plaintext(body)?)
    }

    /// Open the body of a `Broadcast` frame, leaving its plaintext undecoded; it must carry
    /// exactly the next counter.
    pub fn open_plaintext(&mut self, body: &[u8]) -> Result<Vec<u8>, SealError> {
        if body.len() < COUNTER_LEN + TAG_LEN {
            return Err(SealError::Short);
        }
        let (counter_bytes, ct) = body.split_at(COUNTER_LEN);
        let mut counter = [0u8; COUNTER_LEN];
        counter.copy_from_slice(counter_bytes);
        let counter = u64::from_be_bytes(counter);
        if counter != self.expected {
            return Err(SealError::OutOfOrder {
                expected: self.expected,
                got: counter,
            });
        }
        let mut ad = [0u8; HEADER_LEN + COUNTER_LEN];
        ad[..HEADER_LEN].copy_from_slice(&frame::header(FrameKind::Broadcast, body.len()));
        ad[HEADER_LEN..].copy_from_slice(counter_bytes);
        let mut buf = ct.to_vec();
        cipher::open_with(&self.aead, counter, &ad, &mut buf)?;
        self.expected = counter.checked_add(1).ok_or(CryptoError::NonceExhausted)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;

    #[test]
    fn session_round_trip() {
        let key = [3u8; 32];
        let (mut tx, mut rx) = (CipherState::new(&key), CipherState::new(&key));
        let mut wire = Vec::new();
        seal_session(&mut tx, &"one", &mut wire).unwrap();
        seal_session(&mut tx, &"two", &mut wire).unwrap();
        let (f1, used) = decode(&wire, MAX_BODY).unwrap().unwrap();
        assert_eq!(open_session::<String>(&mut rx, f1.body).unwrap(), "one");
        let (f2, _) = decode(&wire[used..], MAX_BODY).unwrap().unwrap();
        assert_eq!(open_session::<String>(&mut rx, f2.body).unwrap(), "two");
    }

    #[test]
    fn session_header_is_authenticated() {
        let key = [3u8; 32];
        let (mut tx, mut rx) = (CipherState::new(&key), CipherState::new(&key));
        let mut wire = Vec::new();
        seal_session(&mut tx, &"x", &mut wire).unwrap();
        wire[0] = FrameKind::Broadcast as u8; // relabel the frame
        let (frame, _) = decode(&wire, MAX_BODY).unwrap().unwrap();
        let head = frame::header(FrameKind::Session, frame.body.len());
        assert_ne!(head[0], wire[0]);
        assert!(matches!(
            rx.open(&wire[..HEADER_LEN], frame.body),
            Err(CryptoError::Integrity)
        ));
    }

    #[test]
    fn oversized_plaintext_refused() {
        let mut tx = CipherState::new(&[0u8; 32]);
        let mut out = Vec::new();
        assert!(matches!(
            seal_session_bytes(&mut tx, &vec![b'a'; MAX_SESSION_PLAINTEXT + 1], &mut out),
            Err(SealError::TooLarge(_))
        ));
        assert!(out.is_empty());
        seal_session_bytes(&mut tx, &vec![b'a'; MAX_SESSION_PLAINTEXT], &mut out).unwrap();
        assert_eq!(out.len(), HEADER_LEN + MAX_BODY);
    }

    #[test]
    fn broadcast_in_order_only() {
        let key = [9u8; 32];
        let mut sealer = BroadcastSealer::new(&key, 5);
        let f5 = sealer.seal(&encode(&"five").unwrap()).unwrap();
        let f6 = sealer.seal(&encode(&"six").unwrap()).unwrap();
        let body = |f: &[u8]| f[HEADER_LEN..].to_vec();
        let mut member = BroadcastOpener::new(&key, 5);
        assert!(matches!(
            member.open::<String>(&body(&f6)),
            Err(SealError::OutOfOrder {
                expected: 5,
                got: 6
            })
        ));
        assert_eq!(member.open::<String>(&body(&f5)).unwrap(), "five");
        assert!(
            matches!(
                member.open::<String>(&body(&f5)),
                Err(SealError::OutOfOrder { .. })
            ),
            "replay"
        );
        assert_eq!(member.open::<String>(&body(&f6)).unwrap(), "six");
    }

    #[test]
    fn broadcast_tamper_detected() {
        let key = [9u8; 32];
        let frame = BroadcastSealer::new(&key, 0)
            .seal(&encode(&"hi").unwrap())
            .unwrap();
        for i in HEADER_LEN + COUNTER_LEN..frame.len() {
            let mut bad = frame[HEADER_LEN..].to_vec();
            bad[i - HEADER_LEN] ^= 0x20;
            let mut member = BroadcastOpener::new(&key, 0);
            assert!(matches!(
                member.open::<String>(&bad),
                Err(SealError::Crypto(CryptoError::Integrity))
            ));
        }
        let mut wrong_key = BroadcastOpener::new(&[8u8; 32], 0);
        assert!(wrong_key.open::<String>(&frame[HEADER_LEN..]).is_err());
    }
}
