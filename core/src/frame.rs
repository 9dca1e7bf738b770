//! Wire framing: `[kind: u8][length: u32 big-endian][body: length bytes]`.
//!
//! A pure codec over byte slices. [`decode`] never allocates before the declared length has
//! been checked against the caller's limit, treats "not enough bytes yet" as the normal
//! `Ok(None)` state, and accepts any split of the stream over reads.

use thiserror::Error;

/// Bytes in a frame header: one kind byte and a 32-bit big-endian body length.
pub const HEADER_LEN: usize = 5;
/// Largest body accepted before the handshake completes (Noise handshake messages are 48 bytes).
pub const MAX_PREAUTH_BODY: usize = 1024;
/// Largest body accepted on an authenticated connection (a Noise message is at most 65 535 bytes).
pub const MAX_BODY: usize = 65_535;

/// A `#[repr(u8)]` enum whose variants are wire bytes, with `from_byte` for decoding: each
/// value is written once, in the variant list.
macro_rules! wire_byte_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $value:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $value,)*
        }

        impl $name {
            /// The variant a wire byte stands for, if any.
            pub fn from_byte(byte: u8) -> Option<Self> {
                match byte {
                    $($value => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use wire_byte_enum;

wire_byte_enum! {
    /// What a frame carries. The numeric values are the wire encoding.
    pub enum FrameKind {
        /// Server → client, plaintext: protocol magic, the versions it speaks and the room's KDF salt.
        Hello = 0x01,
        /// Client → server: version ‖ SPAKE2 message A ‖ Noise NXpsk2 message 1 (`e`).
        HandshakeInit = 0x02,
        /// Server → client: SPAKE2 message B ‖ Noise NXpsk2 message 2 (`e, ee, s, es, psk`).
        HandshakeResponse = 0x03,
        /// Server → client, plaintext: the handshake was refused (a code byte and what the code
        /// defines), then close.
        Reject = 0x04,
        /// Either direction: a message sealed with the connection's session key.
        Session = 0x10,
        /// Server → client: a room event sealed once with the room broadcast key.
        Broadcast = 0x11,
        /// Server → client: one chunk of a file, sealed once with that file's key (§13).
        FileChunk = 0x12,
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {declared} bytes exceeds the limit of {limit}")]
    TooLarge { declared: usize, limit: usize },
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// One decoded frame borrowing its body from the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub body: &'a [u8],
}

/// The header bytes of a frame with `body_len` bytes of body. Used as AEAD associated data.
pub fn header(kind: FrameKind, body_len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes();
    [kind as u8, len[0], len[1], len[2], len[3]]
}

/// Append a whole frame to `out`. The caller guarantees `body.len() <= MAX_BODY`.
pub fn encode_into(out: &mut Vec<u8>, kind: FrameKind, body: &[u8]) {
    debug_assert!(body.len() <= MAX_BODY);
    out.extend_from_slice(&header(kind, body.len()));
    out.extend_from_slice(body);
}

/// A whole frame as a fresh buffer.
pub fn encode(kind: FrameKind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    encode_into(&mut out, kind, body);
    out
}

/// Decode the first frame in `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, otherwise the frame and the number
/// of bytes it used. A declared length above `max_body` fails before anything is buffered.
pub fn decode(buf: &[u8], max_body: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let kind = FrameKind::from_byte(head[0]).ok_or(FrameError::UnknownKind(head[0]))?;
    let declared = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if declared > max_body {
        return Err(FrameError::TooLarge {
            declared,
            limit: max_body,
        });
    }
    let end = HEADER_LEN + declared;
    Ok(buf
        .get(HEADER_LEN..end)
        .map(|body| (Frame { kind, body }, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode(FrameKind::Session, b"hello");
        assert_eq!(bytes, [0x10, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        let (frame, used) = decode(&bytes, MAX_BODY).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame {
                kind: FrameKind::Session,
                body: b"hello"
            }
        );
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let bytes = encode(FrameKind::Broadcast, &[7u8; 300]);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], MAX_BODY), Ok(None), "prefix {cut}");
        }
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut buf = Vec::new();
        encode_into(&mut buf, FrameKind::Session, b"a|b:c");
        encode_into(&mut buf, FrameKind::Session, b"");
        encode_into(&mut buf, FrameKind::Broadcast, b"\n\"x\"");
        let mut rest = &buf[..];
        let mut bodies = Vec::new();
        while let Some((frame, used)) = decode(rest, MAX_BODY).unwrap() {
            bodies.push(frame.body.to_vec());
            rest = &rest[used..];
        }
        assert_eq!(bodies, vec![b"a|b:c".to_vec(), vec![], b"\n\"x\"".to_vec()]);
        assert!(rest.is_empty());
    }

    #[test]
    fn oversized_length_rejected_from_header_alone() {
        let head = header(FrameKind::Session, MAX_PREAUTH_BODY + 1);
        assert_eq!(
            decode(&head, MAX_PREAUTH_BODY),
            Err(FrameError::TooLarge {
                declared: MAX_PREAUTH_BODY + 1,
                limit: MAX_PREAUTH_BODY
            })
        );
        let huge = [0x10, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&huge, MAX_BODY),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_kind_rejected() {
        assert_eq!(
            decode(&[0x7f, 0, 0, 0, 0], MAX_BODY),
            Err(FrameError::UnknownKind(0x7f))
        );
    }
}
