//! Files shared in a room (`docs/PROTOCOL.md` §13), the pure parts both sides share: the
//! chunk layout, the `FileChunk` frame sealed once with a file's key, safe file names, and
//! what a file's bytes say it is. No I/O here.

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::ChaCha20Poly1305;
use thiserror::Error;
use unicode_normalization::char::is_combining_mark;

use crate::cipher::{self, CryptoError, Key, TAG_LEN};
use crate::frame::{self, FrameKind, HEADER_LEN};

/// Bytes of file content in one chunk (the last chunk of a file may be shorter).
pub const CHUNK_BYTES: u64 = 61_440;

/// Bytes of a `FileChunk` body before the ciphertext: file id and offset, both u64 BE.
pub const CHUNK_PREFIX: usize = 16;

/// Bytes a whole `FileChunk` frame (header included) adds to the chunk it carries.
pub const CHUNK_OVERHEAD: usize = HEADER_LEN + CHUNK_PREFIX + TAG_LEN;

/// The longest safe name, in bytes (what file systems allow).
pub const MAX_NAME_BYTES: usize = 255;

/// The longest `mime` kept from an offer, in bytes.
pub const MAX_MIME_BYTES: usize = 100;

/// How many chunks a file of `size` bytes has.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_BYTES)
}

/// The length of the chunk at `offset` of a file of `size` bytes (0 at or past the end).
pub fn chunk_len(size: u64, offset: u64) -> usize {
    size.saturating_sub(offset).min(CHUNK_BYTES) as usize
}

/// Is `offset` where a chunk of a file of `size` bytes starts (or the end of the file)?
pub fn is_chunk_offset(size: u64, offset: u64) -> bool {
    offset.is_multiple_of(CHUNK_BYTES) && offset <= size
}

/// Why a `FileChunk` frame was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    #[error("file chunk frame too short")]
    TooShort,
    /// Not the file and offset the receiver asked for next: dropped, injected or reordered.
    #[error("file chunk out of place: expected file {expected_file:016x} at {expected_offset}, got file {file_id:016x} at {offset}")]
    OutOfPlace {
        expected_file: u64,
        expected_offset: u64,
        file_id: u64,
        offset: u64,
    },
    #[error("file chunk at {offset} is not a chunk's place")]
    BadOffset { offset: u64 },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Seals and opens the chunks of one file under its key (`docs/PROTOCOL.md` §13).
pub struct ChunkCipher {
    aead: ChaCha20Poly1305,
    file_id: u64,
}

impl ChunkCipher {
    pub fn new(key: &Key, file_id: u64) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            file_id,
        }
    }

    /// The whole `FileChunk` frame (header included) for `chunk`, the content at `offset`.
    pub fn seal(&self, offset: u64, chunk: &[u8]) -> Result<Vec<u8>, ChunkError> {
        if !offset.is_multiple_of(CHUNK_BYTES) {
            return Err(ChunkError::BadOffset { offset });
        }
        let body_len = CHUNK_PREFIX + chunk.len() + TAG_LEN;
        let ad = self.ad(offset, body_len);
        let mut out = Vec::with_capacity(HEADER_LEN + body_len);
        out.extend_from_slice(&ad);
        let mut sealed = chunk.to_vec();
        cipher::seal_with(&self.aead, offset / CHUNK_BYTES, &ad, &mut sealed)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The content of a `FileChunk` frame body, which must be this file's chunk at
    /// `expected_offset`.
    pub fn open(&self, expected_offset: u64, body: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let (file_id, offset) = chunk_place(body)?;
        if file_id != self.file_id || offset != expected_offset {
            return Err(ChunkError::OutOfPlace {
                expected_file: self.file_id,
                expected_offset,
                file_id,
                offset,
            });
        }
        if !offset.is_multiple_of(CHUNK_BYTES) {
            return Err(ChunkError::BadOffset { offset });
        }
        let ad = self.ad(offset, body.len());
        let mut buf = body[CHUNK_PREFIX..].to_vec();
        cipher::open_with(&self.aead, offset / CHUNK_BYTES, &ad, &mut buf)?;
        Ok(buf)
    }

    /// Associated data: the frame header, the file id and the offset.
    fn ad(&self, offset: u64, body_len: usize) -> [u8; HEADER_LEN + CHUNK_PREFIX] {
        let mut ad = [0u8; HEADER_LEN + CHUNK_PREFIX];
        ad[..HEADER_LEN].copy_from_slice(&frame::header(FrameKind::FileChunk, body_len));
        ad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&self.file_id.to_be_bytes());
        ad[HEADER_LEN + 8..].copy_from_slice(&offset.to_be_bytes());
        ad
    }
}

/// The file id and offset a `FileChunk` body says it carries (unauthenticated until opened).
pub fn chunk_place(body: &[u8]) -> Result<(u64, u64), ChunkError> {
    if body.len() < CHUNK_PREFIX + TAG_LEN {
        return Err(ChunkError::TooShort);
    }
    let mut id = [0u8; 8];
    let mut off = [0u8; 8];
    id.copy_from_slice(&body[..8]);
    off.copy_from_slice(&body[8..16]);
    Ok((u64::from_be_bytes(id), u64::from_be_bytes(off)))
}

/// Windows device names that cannot be file names, with any extension.
const RESERVED_NAMES: [&str; 30] = [
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

/// The safe form of a file name a peer sent (`docs/PROTOCOL.md` §13, Names): no directory
/// part, no control, invisible or bidi characters, none of `< > : " | ? *`, no leading or
/// trailing dots and spaces, not a Windows device name, at most [`MAX_NAME_BYTES`] bytes with
/// its extension kept; never empty.
pub fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = base.chars().filter(|&c| !is_unsafe_char(c)).collect();
    let trimmed = kept.trim_matches(|c: char| c == ' ' || c == '.');
    let mut safe = if trimmed.is_empty() {
        "file".to_string()
    } else {
        trimmed.to_string()
    };
    let stem = safe.split('.').next().unwrap_or_default().trim_end();
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        safe.insert(0, '_');
    }
    cut_keeping_extension(&safe, MAX_NAME_BYTES)
}

/// Characters a safe name leaves out.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*' | '/' | '\\')
        || is_default_ignorable(c)
}

/// Unicode Default_Ignorable_Code_Point (DerivedCoreProperties), which covers zero-width
/// characters, bidi controls, variation selectors and fillers: invisible in a name.
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// `name` cut to at most `max` bytes on a character boundary (not inside a combining
/// sequence), keeping an extension of at most 16 bytes.
fn cut_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => &name[dot..],
        _ => "",
    };
    let room = max - ext.len();
    let stem = &name[..name.len() - ext.len()];
    let mut end = 0;
    for (i, c) in stem.char_indices() {
        if i + c.len_utf8() > room {
            break;
        }
        end = i + c.len_utf8();
    }
    // Do not leave a base letter without the marks that followed it.
    while end > 0 && end < stem.len() {
        match stem[end..].chars().next() {
            Some(next) if is_combining_mark(next) => {
                end = stem[..end]
                    .char_indices()
                    .next_back()
                    .map(|(i, _)| i)
                    .unwrap_or(0);
            }
            _ => break,
        }
    }
    let mut out = stem[..end].trim_end_matches([' ', '.']).to_string();
    if out.is_empty() {
        out.push_str("file");
    }
    out.push_str(ext);
    out
}

/// The image formats a receiver may show inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// The MIME type of the format.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
        }
    }
}

/// Which image format `bytes` start like (its signature), whatever a peer said it is.
pub fn sniff_image(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// The MIME hint a sender gives for a file: the image format its first bytes show, else by
/// its extension for a few common types, else `application/octet-stream`.
pub fn mime_hint(name: &str, first_bytes: &[u8]) -> &'static str {
    if let Some(format) = sniff_image(first_bytes) {
        return format.mime();
    }
    let ext = name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "md" => "text/plain",
        "pdf" => "application/pdf",
        "svg" => "image/svg+xml",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// The `mime` a host keeps from an offer: ASCII `type/subtype` of at most
/// [`MAX_MIME_BYTES`], otherwise `application/octet-stream`.
pub fn kept_mime(mime: &str) -> String {
    let ok = mime.len() <= MAX_MIME_BYTES
        && mime.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty()
                && !s.is_empty()
                && mime
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/+-.;=_ ".contains(&b))
        });
    if ok {
        mime.to_ascii_lowercase()
    } else {
        "application/octet-stream".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_layout() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_BYTES), 1);
        assert_eq!(chunk_count(CHUNK_BYTES + 1), 2);
        assert_eq!(chunk_len(CHUNK_BYTES + 5, CHUNK_BYTES), 5);
        assert_eq!(chunk_len(10, 10), 0);
        assert!(is_chunk_offset(100, 0) && !is_chunk_offset(100, 5));
        assert!(is_chunk_offset(CHUNK_BYTES, CHUNK_BYTES));
        assert!(!is_chunk_offset(CHUNK_BYTES, 2 * CHUNK_BYTES));
        assert!(CHUNK_BYTES as usize + CHUNK_OVERHEAD - HEADER_LEN <= frame::MAX_BODY);
    }

    #[test]
    fn chunks_open_only_in_their_place() {
        let key = [7u8; 32];
        let cipher = ChunkCipher::new(&key, 42);
        let frame = cipher.seal(CHUNK_BYTES, b"hello").unwrap();
        assert_eq!(frame[0], FrameKind::FileChunk as u8);
        assert_eq!(frame.len(), 5 + CHUNK_OVERHEAD);
        let body = &frame[HEADER_LEN..];
        assert_eq!(chunk_place(body).unwrap(), (42, CHUNK_BYTES));
        assert_eq!(cipher.open(CHUNK_BYTES, body).unwrap(), b"hello");
        assert!(matches!(
            cipher.open(0, body),
            Err(ChunkError::OutOfPlace { .. })
        ));
        assert!(matches!(
            ChunkCipher::new(&key, 43).open(CHUNK_BYTES, body),
            Err(ChunkError::OutOfPlace { .. })
        ));
        let mut tampered = body.to_vec();
        tampered[20] ^= 1;
        assert_eq!(
            cipher.open(CHUNK_BYTES, &tampered),
            Err(ChunkError::Crypto(CryptoError::Integrity))
        );
        assert_eq!(
            ChunkCipher::new(&[8u8; 32], 42).open(CHUNK_BYTES, body),
            Err(ChunkError::Crypto(CryptoError::Integrity))
        );
        // Deterministic: the same chunk sealed again is the same frame (it is stored once).
        assert_eq!(cipher.seal(CHUNK_BYTES, b"hello").unwrap(), frame);
        assert!(cipher.seal(5, b"x").is_err());
        assert_eq!(cipher.open(0, &[0; 10]), Err(ChunkError::TooShort));
    }

    #[test]
    fn every_reserved_windows_name_gets_a_prefix_in_any_case_and_with_an_extension() {
        for name in [
            "COM\u{b9}",
            "com\u{b2}",
            "Com\u{b3}",
            "LPT\u{b9}",
            "lpt\u{b2}",
            "LpT\u{b3}",
            "CONIN$",
            "conin$",
            "CONOUT$",
            "ConOut$",
        ] {
            assert_eq!(safe_name(name), format!("_{name}"));
            for ext in [".txt", ".tar.gz", " .log"] {
                let with = format!("{name}{ext}");
                assert_eq!(safe_name(&with), format!("_{with}"), "{with:?}");
            }
        }
        assert_eq!(safe_name("dir/COM\u{b9}.png"), "_COM\u{b9}.png");
        // Near misses stay as they are.
        for name in [
            "COM\u{b9}0",
            "COM\u{2074}",
            "CONIN",
            "CONOUT",
            "CONIN$x",
            "LPT\u{b3}a.txt",
        ] {
            assert_eq!(safe_name(name), name, "{name:?}");
        }
    }

    #[test]
    fn hostile_names_become_safe_names() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("/etc/shadow"), "shadow");
        assert_eq!(safe_name("C:\\Windows\\system.ini"), "system.ini");
        assert_eq!(safe_name("a\0b.txt"), "ab.txt");
        assert_eq!(safe_name("ok\u{1b}[31m.txt"), "ok[31m.txt");
        assert_eq!(safe_name("invoice\u{202e}fdp.exe"), "invoicefdp.exe");
        assert_eq!(safe_name("zero\u{200b}width.png"), "zerowidth.png");
        assert_eq!(safe_name("CON"), "_CON");
        assert_eq!(safe_name("nul.txt"), "_nul.txt");
        assert_eq!(safe_name("com1.tar.gz"), "_com1.tar.gz");
        assert_eq!(safe_name("console.txt"), "console.txt");
        assert_eq!(safe_name(" .. "), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("dir/"), "file");
        assert_eq!(safe_name("what?.txt"), "what.txt");
        assert_eq!(
            safe_name("foto de la playa ñ ❤️.jpg"),
            "foto de la playa ñ ❤.jpg"
        );
        let long = format!("{}.png", "á".repeat(10_000));
        let cut = safe_name(&long);
        assert!(cut.len() <= MAX_NAME_BYTES, "{}", cut.len());
        assert!(cut.ends_with("á.png"));
        let marks = format!("{}.png", "e\u{301}".repeat(200));
        let cut = safe_name(&marks);
        assert!(cut.len() <= MAX_NAME_BYTES);
        assert!(
            !cut.trim_end_matches(".png").ends_with('e'),
            "a mark is not split off"
        );
        let long_ext = format!("a.{}", "x".repeat(1000));
        assert!(safe_name(&long_ext).len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn images_are_known_by_their_bytes() {
        assert_eq!(
            sniff_image(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            sniff_image(&[0xff, 0xd8, 0xff, 0xe0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(sniff_image(b"GIF89a.."), Some(ImageFormat::Gif));
        assert_eq!(
            sniff_image(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(sniff_image(b"<svg onload=alert(1)>"), None);
        assert_eq!(mime_hint("x.svg", b"<svg"), "image/svg+xml");
        assert_eq!(mime_hint("x.png", b"not a png"), "application/octet-stream");
        assert_eq!(mime_hint("x.bin", b"\x89PNG\r\n\x1a\n"), "image/png");
        assert_eq!(kept_mime("image/PNG"), "image/png");
        assert_eq!(kept_mime("text/html<script>"), "application/octet-stream");
        assert_eq!(kept_mime(&"a/".repeat(100)), "application/octet-stream");
    }
}

#[cfg(test)]
mod vector {
    use super::*;

    /// The `FileChunk` vector of `docs/PROTOCOL.md` §13: key 00 01 … 1f, file id
    /// 0x1122334455667788, the second chunk (offset 61 440), content "hola".
    #[test]
    fn chunk_frame_vector_is_the_documented_one() {
        let key: Key = std::array::from_fn(|i| i as u8);
        let frame = ChunkCipher::new(&key, 0x1122_3344_5566_7788)
            .seal(CHUNK_BYTES, b"hola")
            .unwrap();
        let hex = hex::encode(&frame);
        println!("{hex}");
        let doc = include_str!("../../docs/PROTOCOL.md");
        assert!(doc.contains(&hex), "docs/PROTOCOL.md §13 quotes {hex}");
    }
}
