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

/// Parse and check a payload: the header fields and that the padding is intact.
pub fn parse(payload: &[u8], size: usize) -> Option<Header> {
    if payload.len() != size.max(HEADER_LEN) || payload.len() < HEADER_LEN {
        return None;
    }
    let text = std::str::from_utf8(&payload[..HEADER_LEN]).ok()?;
    if !(text.starts_with('s') && &text[7..8] == "q" && &text[18..19] == "t") {
        return None;
    }
    let sender = text[1..7].parse().ok()?;
    let seq = text[8..18].parse().ok()?;
    let sent_ns = u64::from_str_radix(&text[19..35], 16).ok()?;
    if !payload[HEADER_LEN..].iter().all(|&b| b == PAD) {
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
    }
}
