//! The benchmark payload: a fixed-width ASCII header (sender, sequence number, send time in
//! nanoseconds from a clock shared by the whole load generator) padded to `B` bytes. ASCII so
//! the same bytes are a valid Tertulia message, Redis/NATS payload and IRC line.

/// `s` + 6 digits sender, `q` + 10 digits sequence, `t` + 16 hex digits nanoseconds.
pub const HEADER_LEN: usize = 1 + 6 + 1 + 10 + 1 + 16;
const PAD: u8 = b'.';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub sender: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

/// Write a payload of exactly `size` bytes (at least [`HEADER_LEN`]) to `out`.
pub fn write(out: &mut Vec<u8>, header: Header, size: usize) {
    use std::io::Write;
    let start = out.len();
    let _ = write!(
        out,
        "s{:06}q{:010}t{:016x}",
        header.sender, header.seq, header.sent_ns
    );
    let written = out.len() - start;
    out.resize(start + size.max(written), PAD);
}

/// The longest payload (`--size` is at most 8192): padding is checked against this.
const MAX_SIZE: usize = 8192;
static PADDING: [u8; MAX_SIZE] = [PAD; MAX_SIZE];

/// `digits` as a decimal number: `None` if empty, longer than 18 digits or any byte is not a
/// digit. (The readers parse their protocols' length fields with it too.)
pub fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        (d < 10).then(|| n * 10 + u64::from(d))
    })
}

/// `digits` as a lowercase hexadecimal number (`None` if any byte is not a hex digit).
fn hexadecimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u64::from(d))
    })
}

/// Parse and check a payload: the header fields and that the padding is intact. Called for
/// every delivery of every target, so it reads the fixed-width fields directly (no UTF-8
/// check, no `str::parse`) and checks the padding with one slice comparison.
pub fn parse(payload: &[u8], size: usize) -> Option<Header> {
    if payload.len() != size.max(HEADER_LEN) || payload.len() > MAX_SIZE {
        return None;
    }
    let (head, padding) = payload.split_at(HEADER_LEN);
    if head[0] != b's' || head[7] != b'q' || head[18] != b't' {
        return None;
    }
    let sender = u32::try_from(decimal(&head[1..7])?).ok()?;
    let seq = u32::try_from(decimal(&head[8..18])?).ok()?;
    let sent_ns = hexadecimal(&head[19..35])?;
    if padding != &PADDING[..padding.len()] {
        return None;
    }
    Some(Header {
        sender,
        seq,
        sent_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detected() {
        let h = Header {
            sender: 42,
            seq: 123_456,
            sent_ns: 0xdead_beef,
        };
        let mut buf = Vec::new();
        write(&mut buf, h, 128);
        assert_eq!(buf.len(), 128);
        assert_eq!(parse(&buf, 128), Some(h));
        let mut bad = buf.clone();
        bad[100] = b'x';
        assert_eq!(parse(&bad, 128), None);
        assert_eq!(parse(&buf[..127], 128), None);
        let mut bad = buf.clone();
        bad[3] = b'x'; // a sender digit
        assert_eq!(parse(&bad, 128), None);
        let mut bad = buf.clone();
        bad[20] = b'g'; // a timestamp digit
        assert_eq!(parse(&bad, 128), None);
        let mut big = Vec::new();
        write(&mut big, h, 8192);
        assert_eq!(parse(&big, 8192), Some(h));
        let mut small = Vec::new();
        write(&mut small, h, 0);
        assert_eq!(small.len(), HEADER_LEN);
        assert_eq!(parse(&small, 0), Some(h));
    }
}
