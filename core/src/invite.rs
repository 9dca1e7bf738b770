//! Invite codes: `tertulia://HOST:PORT/FINGERPRINT#PASSPHRASE` (the host fingerprint is
//! optional), as `docs/PROTOCOL.md` §12 specifies them. One code carries everything needed to join a room; the app shows one when
//! it hosts, its Join form and `tertulia-chat` read them.
//!
//! The passphrase is percent-encoded as UTF-8 exactly as JavaScript's `encodeURIComponent`
//! does it (the UI's `ui/invite.js` is the other implementation; both check the vectors in
//! `docs/vectors/invite.json`). Pure: text in, values out.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::identity::Fingerprint;

/// What every invite code starts with.
pub const SCHEME: &str = "tertulia://";

/// An invite code's contents. `host` is an IP address or host name, an IPv6 address without
/// its brackets.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    pub host: String,
    pub port: u16,
    /// The host's identity: a client insists on it (no trust-on-first-use window). `None`
    /// in codes made before version 2.
    pub fingerprint: Option<Fingerprint>,
    pub passphrase: String,
}

/// The passphrase is never printed (a log line or a panic message must not carry it).
impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("fingerprint", &self.fingerprint)
            .field("passphrase", &"<secret>")
            .finish()
    }
}

/// Why a text is not a usable invite code.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum InviteError {
    /// It does not start with `tertulia://`: some other text (an address, say), not a code.
    #[error("not an invite code (an invite code starts with {SCHEME})")]
    NotAnInvite,
    /// No host before the port, or one that cannot be a host (an IPv6 address needs brackets).
    #[error("the invite code is damaged: it has no valid host before the port (an IPv6 address goes in brackets)")]
    BadHost,
    /// No `:PORT` before the `#`, or not a number from 1 to 65535.
    #[error("the invite code is damaged: its port is missing or not a number from 1 to 65535")]
    BadPort,
    /// A `%` not followed by two hex digits, or escapes that are not UTF-8.
    #[error("the invite code is damaged: the passphrase after '#' is not correctly percent-encoded (was it cut or retyped?)")]
    DamagedEncoding,
    /// A `/` after the port not followed by 24 hex digits (dashes allowed).
    #[error("the invite code is damaged: the host fingerprint after '/' is not 24 hex digits (was it cut or retyped?)")]
    BadFingerprint,
    /// Nothing (or no `#`) after the port.
    #[error("the invite code has no passphrase after '#'")]
    EmptyPassphrase,
}

impl Invite {
    pub fn new(host: impl Into<String>, port: u16, passphrase: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port,
            fingerprint: None,
            passphrase: passphrase.into(),
        }
    }

    /// The same invite carrying the host's fingerprint.
    pub fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}", self.port)?;
        if let Some(fingerprint) = &self.fingerprint {
            write!(f, "/{fingerprint}")?;
        }
        write!(f, "#{}", encode_component(&self.passphrase))
    }
}

impl FromStr for Invite {
    type Err = InviteError;

    /// Surrounding whitespace is ignored. The authority ends at the first `#`; everything
    /// after it is the passphrase, percent-decoded (characters that `encodeURIComponent`
    /// would have escaped are accepted as they are, so hand-written codes work).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text
            .trim()
            .strip_prefix(SCHEME)
            .ok_or(InviteError::NotAnInvite)?;
        let (authority, encoded) = rest.split_once('#').unwrap_or((rest, ""));
        let (authority, fingerprint) = match authority.split_once('/') {
            Some((authority, fp)) => (
                authority,
                Some(
                    fp.parse::<Fingerprint>()
                        .ok()
                        .filter(|_| !fp.contains(char::is_whitespace))
                        .ok_or(InviteError::BadFingerprint)?,
                ),
            ),
            None => (authority, None),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or(InviteError::BadHost)?;
                if host.is_empty()
                    || !host.contains(':')
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return Err(InviteError::BadHost);
                }
                (host, after.strip_prefix(':').ok_or(InviteError::BadPort)?)
            }
            None => {
                let (host, port) = authority.rsplit_once(':').ok_or(InviteError::BadPort)?;
                if host.is_empty()
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(InviteError::BadHost);
                }
                (host, port)
            }
        };
        let port = parse_port(port).ok_or(InviteError::BadPort)?;
        let passphrase = decode_component(encoded)?;
        if passphrase.is_empty() {
            return Err(InviteError::EmptyPassphrase);
        }
        let mut invite = Self::new(host, port, passphrase);
        invite.fingerprint = fingerprint;
        Ok(invite)
    }
}

/// ASCII digits only (no sign, no spaces), 1 to 65535.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|p| *p != 0)
}

/// The characters `encodeURIComponent` leaves as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `encodeURIComponent`: every UTF-8 byte but the unreserved ones as `%XX`, hex uppercase.
pub fn encode_component(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// `decodeURIComponent`: `%XX` (either case) to bytes, other characters as they are; the
/// result must be UTF-8. A `%` without two hex digits after it is damage, not a literal.
pub fn decode_component(text: &str) -> Result<String, InviteError> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let high = bytes.get(i + 1).copied().and_then(hex);
            let low = bytes.get(i + 2).copied().and_then(hex);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(InviteError::DamagedEncoding);
            };
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| InviteError::DamagedEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The vectors the UI's unit tests check too.
    const VECTORS: &str = include_str!("../../docs/vectors/invite.json");

    fn code(e: InviteError) -> &'static str {
        match e {
            InviteError::NotAnInvite => "not_an_invite",
            InviteError::BadHost => "bad_host",
            InviteError::BadPort => "bad_port",
            InviteError::DamagedEncoding => "damaged_encoding",
            InviteError::EmptyPassphrase => "empty_passphrase",
            InviteError::BadFingerprint => "bad_fingerprint",
        }
    }

    fn vectors(list: &str) -> Vec<Value> {
        let all: Value = serde_json::from_str(VECTORS).expect("docs/vectors/invite.json is JSON");
        all[list].as_array().expect("a list of vectors").clone()
    }

    fn field<'a>(v: &'a Value, name: &str) -> &'a str {
        v[name].as_str().unwrap_or_else(|| panic!("{name} in {v}"))
    }

    #[test]
    fn valid_vectors_parse_and_format() {
        let valid = vectors("valid");
        assert!(valid.len() >= 6);
        for v in &valid {
            let invite: Invite = field(v, "invite")
                .parse()
                .unwrap_or_else(|e| panic!("{v}: {e}"));
            let port = v["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            let mut expected = Invite::new(
                field(v, "host"),
                port.expect("port"),
                field(v, "passphrase"),
            );
            if let Some(fp) = v["fingerprint"].as_str() {
                expected = expected.with_fingerprint(fp.parse().expect("a fingerprint"));
            }
            assert_eq!(invite, expected, "{v}");
            assert_eq!(invite.to_string(), field(v, "formatted"), "{v}");
            // What is formatted reads back as the same invite.
            assert_eq!(invite.to_string().parse::<Invite>(), Ok(invite), "{v}");
        }
    }

    #[test]
    fn invalid_vectors_fail_as_listed() {
        let invalid = vectors("invalid");
        assert!(invalid.len() >= 10);
        for v in &invalid {
            let result = field(v, "invite").parse::<Invite>();
            assert_eq!(result.map_err(code), Err(field(v, "error")), "{v}");
        }
    }

    #[test]
    fn the_codes_protocol_md_quotes_are_vectors() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let section = doc
            .split_once("## 12. Invite codes")
            .map(|(_, s)| s)
            .expect("docs/PROTOCOL.md has an Invite codes section");
        let listed: Vec<Value> = [vectors("valid"), vectors("invalid")].concat();
        let quoted: Vec<&str> = section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|q| q.starts_with(SCHEME) && q.contains('#'))
            .collect();
        assert!(quoted.len() >= 10, "{quoted:?}");
        for q in quoted {
            assert!(
                listed.iter().any(|v| v["invite"] == q),
                "docs/PROTOCOL.md quotes {q}, which docs/vectors/invite.json does not list"
            );
        }
    }

    #[test]
    fn encoding_matches_encode_uri_component_for_every_ascii_byte() {
        for b in 0u8..0x80 {
            let s = char::from(b).to_string();
            let expected = if b.is_ascii_alphanumeric() || "-_.!~*'()".contains(char::from(b)) {
                s.clone()
            } else {
                format!("%{b:02X}")
            };
            assert_eq!(encode_component(&s), expected);
            assert_eq!(decode_component(&expected), Ok(s));
        }
    }

    #[test]
    fn any_passphrase_survives_the_round_trip() {
        for pass in [
            "%",
            "%%25",
            "#",
            "a b",
            "ñ",
            "❤️",
            "🏳️‍🌈",
            "\u{0}",
            "x".repeat(1024).as_str(),
        ] {
            let invite = Invite::new("::1", 1, pass);
            assert_eq!(invite.to_string().parse::<Invite>(), Ok(invite));
        }
    }

    #[test]
    fn debug_output_never_shows_the_passphrase() {
        let invite = Invite {
            host: "192.0.2.7".into(),
            port: 5555,
            fingerprint: None,
            passphrase: "correct horse battery".into(),
        };
        let shown = format!("{invite:?}");
        assert!(
            shown.contains("192.0.2.7") && !shown.contains("horse"),
            "{shown}"
        );
    }
}
