//! The plaintext opening of every connection (`docs/PROTOCOL.md` §1, §3): the server's
//! `Hello` (magic, the protocol versions it speaks, room salt), the version negotiation, and
//! the `Reject` codes a server may answer with. Pure: bytes in, values out.
//!
//! ```text
//! S → C  Hello   "TRTL" ‖ max_version (u8) ‖ min_version (u8) ‖ room salt (16)   plaintext
//! ```
//! A version-1 client reads byte 4 (the max, 2) as "the server speaks protocol version 2;
//! this program speaks 1". A `Reject` body is one code byte and what that code defines (code
//! 6: seconds to wait, u16 BE; code 3: a UTF-8 text of at most 200 bytes); readers ignore
//! what they do not know.

use thiserror::Error;

use crate::frame::wire_byte_enum;
use crate::passphrase::{Salt, SALT_LEN};

/// First bytes of the `Hello` frame body.
pub const MAGIC: &[u8; 4] = b"TRTL";
/// The protocol version this crate speaks (the only one: min = max = 2).
pub const PROTOCOL_VERSION: u8 = 2;
/// Prefix of the Noise prologue.
pub const PROLOGUE_PREFIX: &[u8] = b"tertulia/2\n";
/// Bytes of a version-2 `Hello` body.
pub const HELLO_LEN: usize = MAGIC.len() + 2 + SALT_LEN;
/// Longest text a `Reject(3)` carries.
pub const MAX_REJECT_TEXT: usize = 200;

/// Why a `Hello` body was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("the peer is not a Tertulia server")]
    NotTertulia,
    /// The room speaks only versions above this program's.
    #[error("this room needs a newer Tertulia (it speaks protocol {min}–{max}; this program speaks {PROTOCOL_VERSION})")]
    NeedsNewer { min: u8, max: u8 },
    /// The host speaks only versions below this program's.
    #[error("the host runs an older Tertulia (protocol {max}); ask them to update")]
    HostOutdated { max: u8 },
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// `None`: a code this program does not know (or an empty body).
    pub code: Option<RejectCode>,
    /// For [`RejectCode::TooManyFailedAttempts`]: seconds to wait before trying again (`None`
    /// when the body is too short to say).
    pub retry_after_secs: Option<u16>,
    /// For [`RejectCode::BadVersion`]: the server's explanation (at most
    /// [`MAX_REJECT_TEXT`] bytes, invalid UTF-8 replaced).
    pub text: Option<String>,
}

/// The `Reject(3)` body: the code, then `text` cut to [`MAX_REJECT_TEXT`] bytes.
pub fn bad_version_body(text: &str) -> Vec<u8> {
    let mut end = text.len().min(MAX_REJECT_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut body = vec![RejectCode::BadVersion as u8];
    body.extend_from_slice(&text.as_bytes()[..end]);
    body
}

/// The text a server sends with `Reject(3)` to a client asking for another version.
pub fn bad_version_text() -> String {
    HelloError::HostOutdated {
        max: PROTOCOL_VERSION,
    }
    .to_string()
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
    let text = match code {
        Some(RejectCode::BadVersion) if body.len() > 1 => {
            let end = body.len().min(1 + MAX_REJECT_TEXT);
            Some(String::from_utf8_lossy(&body[1..end]).into_owned())
        }
        _ => None,
    };
    Reject {
        code,
        retry_after_secs,
        text,
    }
}

/// The `Hello` body for a room with `salt`: this server speaks version 2 only.
pub fn hello_body(salt: &Salt) -> Vec<u8> {
    hello_body_with(PROTOCOL_VERSION, PROTOCOL_VERSION, salt)
}

/// A `Hello` body advertising versions `min`..=`max` (tests play other servers with it).
pub fn hello_body_with(max: u8, min: u8, salt: &Salt) -> Vec<u8> {
    let mut body = Vec::with_capacity(HELLO_LEN);
    body.extend_from_slice(MAGIC);
    body.push(max);
    body.push(min);
    body.extend_from_slice(salt);
    body
}

/// Parse a `Hello` body: pick version 2 if `min ≤ 2 ≤ max`, and return the room salt.
/// The version bytes are read before the length, so a version-1 `Hello` (one version byte)
/// is "an older Tertulia", not "not Tertulia".
pub fn parse_hello(body: &[u8]) -> Result<Salt, HelloError> {
    if body.len() < MAGIC.len() + 2 || &body[..MAGIC.len()] != MAGIC {
        return Err(HelloError::NotTertulia);
    }
    let (max, min) = (body[MAGIC.len()], body[MAGIC.len() + 1]);
    if max < PROTOCOL_VERSION {
        return Err(HelloError::HostOutdated { max });
    }
    if min > max {
        return Err(HelloError::NotTertulia);
    }
    if min > PROTOCOL_VERSION {
        return Err(HelloError::NeedsNewer { min, max });
    }
    body[MAGIC.len() + 2..]
        .try_into()
        .map_err(|_| HelloError::NotTertulia)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_parsing_and_version_negotiation() {
        let salt = [9u8; SALT_LEN];
        assert_eq!(hello_body(&salt).len(), HELLO_LEN);
        assert_eq!(&hello_body(&salt)[..6], b"TRTL\x02\x02");
        assert_eq!(parse_hello(&hello_body(&salt)), Ok(salt));
        assert_eq!(
            parse_hello(&hello_body_with(5, 1, &salt)),
            Ok(salt),
            "a range with 2"
        );
        assert_eq!(parse_hello(&hello_body_with(2, 2, &salt)), Ok(salt));
        assert_eq!(
            parse_hello(b"HTTP/1.1 200 OK"),
            Err(HelloError::NotTertulia)
        );
        let needs_newer = parse_hello(&hello_body_with(4, 3, &salt));
        assert_eq!(needs_newer, Err(HelloError::NeedsNewer { min: 3, max: 4 }));
        assert_eq!(
            needs_newer.unwrap_err().to_string(),
            "this room needs a newer Tertulia (it speaks protocol 3–4; this program speaks 2)"
        );
        // A version-1 server's Hello: "TRTL" 01 salt.
        let v1 = [&b"TRTL\x01"[..], &salt].concat();
        let outdated = parse_hello(&v1);
        assert_eq!(outdated, Err(HelloError::HostOutdated { max: 1 }));
        assert_eq!(
            outdated.unwrap_err().to_string(),
            "the host runs an older Tertulia (protocol 1); ask them to update"
        );
        assert_eq!(
            parse_hello(&hello_body_with(2, 3, &salt)),
            Err(HelloError::NotTertulia),
            "min above max"
        );
        assert_eq!(
            parse_hello(&hello_body(&salt)[..10]),
            Err(HelloError::NotTertulia),
            "short salt"
        );
    }

    #[test]
    fn bad_version_rejects_carry_a_bounded_text() {
        let body = bad_version_body(&bad_version_text());
        assert_eq!(body[0], 3);
        let parsed = parse_reject(&body);
        assert_eq!(parsed.code, Some(RejectCode::BadVersion));
        assert_eq!(
            parsed.text.as_deref(),
            Some("the host runs an older Tertulia (protocol 2); ask them to update")
        );
        let long = bad_version_body(&"é".repeat(300));
        assert_eq!(long.len(), 1 + MAX_REJECT_TEXT);
        assert_eq!(parse_reject(&long).text.unwrap().chars().count(), 100);
        assert_eq!(parse_reject(&[3]).text, None);
        assert_eq!(parse_reject(&[1, b'x']).text, None);
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
                retry_after_secs: Some(300),
                text: None,
            },
            "later bytes are ignored"
        );
        assert_eq!(parse_reject(&[6, 1]).retry_after_secs, None, "short body");
        assert_eq!(parse_reject(&[1, 0, 5]).retry_after_secs, None);
        assert_eq!(parse_reject(&[]).code, None);
        assert_eq!(parse_reject(&[99]).code, None);
    }
}
