//! The plaintext opening of every connection (`docs/PROTOCOL.md`, Handshake): the server's
//! `Hello` (magic, protocol version, room salt), the Noise prologue built from it, and the
//! `Reject` codes a server may answer a handshake with. Pure: bytes in, values out.
//!
//! ```text
//! S → C  Hello              "TRTL" ‖ version (1) ‖ room salt (16)          plaintext
//! C → S  HandshakeInit      Noise message 1 (48 bytes)
//! S → C  HandshakeResponse  Noise message 2 (48 bytes)    or   Reject (code byte ‖ …), close
//! ```
//! A `Reject` body is one code byte, and for code 6 (too many failed attempts) the seconds to
//! wait as a big-endian u16 after it; readers look at the first byte and ignore what they do
//! not know, so the body can grow within protocol version 1.
//! The Noise prologue is `"tertulia/1\n" ‖ Hello body`, so an altered salt or version makes the
//! handshake fail.

use thiserror::Error;

use crate::frame::wire_byte_enum;
use crate::passphrase::{Salt, SALT_LEN};

/// First bytes of the `Hello` frame body.
pub const MAGIC: &[u8; 4] = b"TRTL";
/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Prefix of the Noise prologue.
pub const PROLOGUE_PREFIX: &[u8] = b"tertulia/1\n";

/// Why a `Hello` body was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("the peer is not a Tertulia server")]
    NotTertulia,
    #[error("the server speaks protocol version {0}; this program speaks {PROTOCOL_VERSION}")]
    UnsupportedVersion(u8),
}

wire_byte_enum! {
    /// Reasons the server gives in a `Reject` frame (the single body byte).
    pub enum RejectCode {
        /// Noise message 1 did not authenticate: wrong passphrase.
        AuthenticationFailed = 1,
        /// The server is at its connection limit.
        ServerFull = 2,
        /// The client spoke a protocol version the server does not.
        BadVersion = 3,
        /// Anything else wrong with the handshake message.
        Malformed = 4,
        /// Too many connections from the client's IP address.
        TooManyFromAddress = 5,
        /// Too many failed handshakes from the client's address (IPv4 or IPv6 /64): refused
        /// for a while; the body carries the seconds to wait.
        TooManyFailedAttempts = 6,
    }
}

/// A parsed `Reject` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// `None`: a code this program does not know (or an empty body).
    pub code: Option<RejectCode>,
    /// For [`RejectCode::TooManyFailedAttempts`]: seconds to wait before trying again (`None`
    /// when the body is too short to say).
    pub retry_after_secs: Option<u16>,
}

/// The body of a `Reject` frame; `retry_after_secs` is sent only with
/// [`RejectCode::TooManyFailedAttempts`].
pub fn reject_body(code: RejectCode, retry_after_secs: u16) -> Vec<u8> {
    let mut body = vec![code as u8];
    if code == RejectCode::TooManyFailedAttempts {
        body.extend_from_slice(&retry_after_secs.to_be_bytes());
    }
    body
}

/// Parse a `Reject` body: the first byte is the code; bytes after what a code defines are
/// ignored.
pub fn parse_reject(body: &[u8]) -> Reject {
    let code = body.first().copied().and_then(RejectCode::from_byte);
    let retry_after_secs = match (code, body.get(1..3)) {
        (Some(RejectCode::TooManyFailedAttempts), Some(&[hi, lo])) => {
            Some(u16::from_be_bytes([hi, lo]))
        }
        _ => None,
    };
    Reject {
        code,
        retry_after_secs,
    }
}

/// The `Hello` body for a room with `salt`.
pub fn hello_body(salt: &Salt) -> Vec<u8> {
    let mut body = Vec::with_capacity(MAGIC.len() + 1 + SALT_LEN);
    body.extend_from_slice(MAGIC);
    body.push(PROTOCOL_VERSION);
    body.extend_from_slice(salt);
    body
}

/// Parse a `Hello` body into the room salt.
pub fn parse_hello(body: &[u8]) -> Result<Salt, HelloError> {
    if body.len() < MAGIC.len() + 1 || &body[..MAGIC.len()] != MAGIC {
        return Err(HelloError::NotTertulia);
    }
    let version = body[MAGIC.len()];
    if version != PROTOCOL_VERSION {
        return Err(HelloError::UnsupportedVersion(version));
    }
    body[MAGIC.len() + 1..]
        .try_into()
        .map_err(|_| HelloError::NotTertulia)
}

/// The Noise prologue for a `Hello` body.
pub fn prologue(hello_body: &[u8]) -> Vec<u8> {
    [PROLOGUE_PREFIX, hello_body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_parsing() {
        let salt = [9u8; SALT_LEN];
        assert_eq!(parse_hello(&hello_body(&salt)), Ok(salt));
        assert_eq!(
            parse_hello(b"HTTP/1.1 200 OK"),
            Err(HelloError::NotTertulia)
        );
        let mut v2 = hello_body(&salt);
        v2[4] = 2;
        assert_eq!(parse_hello(&v2), Err(HelloError::UnsupportedVersion(2)));
        assert_eq!(
            parse_hello(&hello_body(&salt)[..10]),
            Err(HelloError::NotTertulia),
            "short salt"
        );
    }

    #[test]
    fn reject_codes_round_trip() {
        for code in [
            RejectCode::AuthenticationFailed,
            RejectCode::ServerFull,
            RejectCode::BadVersion,
            RejectCode::Malformed,
            RejectCode::TooManyFromAddress,
            RejectCode::TooManyFailedAttempts,
        ] {
            assert_eq!(RejectCode::from_byte(code as u8), Some(code));
            assert_eq!(parse_reject(&reject_body(code, 42)).code, Some(code));
        }
        assert_eq!(RejectCode::from_byte(0), None);
        assert_eq!(RejectCode::from_byte(7), None);
    }

    #[test]
    fn reject_bodies_carry_a_retry_time_only_for_too_many_failures() {
        assert_eq!(reject_body(RejectCode::AuthenticationFailed, 9), vec![1]);
        assert_eq!(
            reject_body(RejectCode::TooManyFailedAttempts, 300),
            vec![6, 0x01, 0x2c]
        );
        assert_eq!(
            parse_reject(&[6, 0x01, 0x2c, 0xff]),
            Reject {
                code: Some(RejectCode::TooManyFailedAttempts),
                retry_after_secs: Some(300)
            },
            "later bytes are ignored"
        );
        assert_eq!(parse_reject(&[6, 1]).retry_after_secs, None, "short body");
        assert_eq!(parse_reject(&[1, 0, 5]).retry_after_secs, None);
        assert_eq!(parse_reject(&[]).code, None);
        assert_eq!(parse_reject(&[99]).code, None);
    }
}
