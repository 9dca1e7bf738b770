//! Image previews: what a file's bytes must be before the window shows them inline, and the
//! previews kept for the window (`docs/PROTOCOL.md` §13, Images).
//!
//! A file is shown as an image only if [`check_image`] accepts it: its bytes are a PNG, JPEG,
//! GIF or WebP by their signature (`tertulia_core::files::sniff_image`, whatever the sender
//! said it is), its header claims at most [`MAX_SIDE`] pixels each way and [`MAX_PIXELS`] in
//! all — read before anything is decoded, so a PNG claiming 50 000 × 50 000 costs nothing —
//! and it then decodes whole within those limits (the `image` crate, [`image::Limits`]).
//! SVG has no signature here: it is never an image, always a file. The window gets the
//! bytes of an accepted image only, with the MIME type of the *sniffed* format.
//!
//! [`Previews`] keeps accepted images in memory for the window to pull by file id, at most
//! [`PREVIEW_MEMORY_BYTES`] in all: the oldest previews give way.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use image::{ImageReader, Limits};
use serde::Serialize;
use tertulia_core::files::{sniff_image, ImageFormat};
use thiserror::Error;

/// The widest or tallest image shown inline, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels an image shown inline may have.
pub const MAX_PIXELS: u64 = 50_000_000;
/// The largest file fetched into memory for a preview (larger images are offered as files).
pub const MAX_PREVIEW_FILE_BYTES: u64 = 25 * 1024 * 1024;
/// The decoder's allocation limit: the largest allowed image at 8 bytes a pixel (16-bit
/// RGBA), and some room for its own buffers.
const MAX_DECODE_ALLOC: u64 = MAX_PIXELS * 8 + 16 * 1024 * 1024;
/// The most bytes of previews kept for the window at once.
pub const PREVIEW_MEMORY_BYTES: usize = 96 * 1024 * 1024;

/// Why a file is not shown as an image (it is then shown as a file).
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotAnImage {
    /// Its bytes are not a PNG, JPEG, GIF or WebP (an SVG, a text file named `.png`, …).
    #[error("its bytes are not a PNG, JPEG, GIF or WebP image")]
    UnknownFormat,
    /// Its header claims more pixels than a preview may have.
    #[error("it claims {width} × {height} pixels, more than a preview may have")]
    TooManyPixels { width: u32, height: u32 },
    /// It does not decode (truncated, corrupt, or over the decoder's limits).
    #[error("it does not decode as an image: {detail}")]
    Undecodable { detail: String },
}

/// An image [`check_image`] accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckedImage {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl CheckedImage {
    /// The MIME type of the sniffed format (never the sender's word).
    pub fn mime(&self) -> &'static str {
        self.format.mime()
    }
}

fn decoder_format(format: ImageFormat) -> image::ImageFormat {
    match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
    }
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// Whether a header's dimensions are within a preview's.
pub fn dimensions_allowed(width: u32, height: u32) -> bool {
    width > 0
        && height > 0
        && width <= MAX_SIDE
        && height <= MAX_SIDE
        && u64::from(width) * u64::from(height) <= MAX_PIXELS
}

/// The dimensions an image's header claims, read without decoding any pixel.
pub fn header_dimensions(format: ImageFormat, bytes: &[u8]) -> Result<(u32, u32), NotAnImage> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), decoder_format(format));
    // Only the header is read here: no limits yet, so a huge claim is reported as such
    // rather than as a decoder error.
    reader.no_limits();
    reader
        .into_dimensions()
        .map_err(|e| NotAnImage::Undecodable {
            detail: e.to_string(),
        })
}

/// Is `bytes` an image the window may show inline? The format by its signature, the
/// dimensions from its header before decoding, then a whole decode within limits. CPU-bound
/// for large images: call it off the async runtime (`spawn_blocking`).
pub fn check_image(bytes: &[u8]) -> Result<CheckedImage, NotAnImage> {
    let format = sniff_image(bytes).ok_or(NotAnImage::UnknownFormat)?;
    let (width, height) = header_dimensions(format, bytes)?;
    if !dimensions_allowed(width, height) {
        return Err(NotAnImage::TooManyPixels { width, height });
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), decoder_format(format));
    reader.limits(limits());
    let decoded = reader.decode().map_err(|e| NotAnImage::Undecodable {
        detail: e.to_string(),
    })?;
    if (decoded.width(), decoded.height()) != (width, height) {
        return Err(NotAnImage::Undecodable {
            detail: "the decoded size is not the header's".into(),
        });
    }
    Ok(CheckedImage {
        format,
        width,
        height,
    })
}

/// Whether a file offered in the room is worth fetching for a preview: announced as a PNG,
/// JPEG, GIF or WebP (only a hint: [`check_image`] decides) and small enough.
pub fn wants_preview(mime: &str, size: u64) -> bool {
    matches!(
        mime,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    ) && size > 0
        && size <= MAX_PREVIEW_FILE_BYTES
}

/// One accepted preview.
#[derive(Clone)]
pub struct Preview {
    pub bytes: Arc<[u8]>,
    pub image: CheckedImage,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<u64, Preview>,
    /// File ids, oldest first.
    order: VecDeque<u64>,
    bytes: usize,
}

/// The previews kept for the window, bounded in bytes ([`PREVIEW_MEMORY_BYTES`]), and the
/// files being fetched for one (as many as the client queues: it refuses more).
pub struct Previews {
    kept: Mutex<Kept>,
    fetching: Mutex<HashSet<u64>>,
    /// One image decoded at a time: a decode may take hundreds of MB.
    pub decode_slot: tokio::sync::Semaphore,
}

impl Default for Previews {
    fn default() -> Self {
        Self {
            kept: Mutex::default(),
            fetching: Mutex::default(),
            decode_slot: tokio::sync::Semaphore::new(1),
        }
    }
}

impl Previews {
    /// A fetch for `file_id`'s preview was queued; false if one already is.
    pub fn start_fetch(&self, file_id: u64) -> bool {
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file_id)
    }

    /// The fetch for `file_id` ended; true if it was a preview's.
    pub fn end_fetch(&self, file_id: u64) -> bool {
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&file_id)
    }

    pub fn is_fetching(&self, file_id: u64) -> bool {
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&file_id)
    }

    /// Keep `preview` for `file_id`; returns the file ids of the older previews dropped to
    /// make room (the window forgets them too).
    pub fn insert(&self, file_id: u64, preview: Preview) -> Vec<u64> {
        self.insert_bounded(file_id, preview, PREVIEW_MEMORY_BYTES)
    }

    fn insert_bounded(&self, file_id: u64, preview: Preview, max_bytes: usize) -> Vec<u64> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = kept.by_id.remove(&file_id) {
            kept.bytes -= old.bytes.len();
            kept.order.retain(|id| *id != file_id);
        }
        let mut dropped = Vec::new();
        while kept.bytes + preview.bytes.len() > max_bytes {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            if let Some(old) = kept.by_id.remove(&oldest) {
                kept.bytes -= old.bytes.len();
            }
            dropped.push(oldest);
        }
        if preview.bytes.len() <= max_bytes {
            kept.bytes += preview.bytes.len();
            kept.order.push_back(file_id);
            kept.by_id.insert(file_id, preview);
        } else {
            dropped.push(file_id);
        }
        dropped
    }

    pub fn get(&self, file_id: u64) -> Option<Preview> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.by_id.get(&file_id).cloned()
    }

    /// Forget every preview and fetch (a new session).
    pub fn clear(&self) {
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Kept::default();
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, RgbaImage};

    fn picture(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x * 20) as u8, (y * 30) as u8, 128, 255])
        }))
    }

    fn encoded(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let img = match format {
            // JPEG has no alpha channel.
            image::ImageFormat::Jpeg => DynamicImage::ImageRgb8(picture(width, height).to_rgb8()),
            _ => picture(width, height),
        };
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn small_real_images_of_the_four_formats_are_accepted() {
        for (format, sniffed) in [
            (image::ImageFormat::Png, ImageFormat::Png),
            (image::ImageFormat::Jpeg, ImageFormat::Jpeg),
            (image::ImageFormat::Gif, ImageFormat::Gif),
            (image::ImageFormat::WebP, ImageFormat::Webp),
        ] {
            let bytes = encoded(format, 12, 7);
            let checked = check_image(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(
                checked,
                CheckedImage {
                    format: sniffed,
                    width: 12,
                    height: 7
                }
            );
            assert_eq!(checked.mime(), sniffed.mime());
        }
    }

    /// A PNG whose IHDR says `width` × `height` followed by a tiny IDAT and IEND, with
    /// correct CRCs: a decompression bomb's header.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc_input = kind.to_vec();
            crc_input.extend_from_slice(data);
            out.extend_from_slice(&crc_input);
            out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
        chunk(&mut out, b"IHDR", &ihdr);
        // zlib stream of nothing useful: a decoder that trusted the header would allocate
        // width × height × 4 bytes before finding out.
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_png_claiming_50000_by_50000_is_refused_from_its_header() {
        let bomb = png_claiming(50_000, 50_000);
        assert_eq!(
            header_dimensions(ImageFormat::Png, &bomb),
            Ok((50_000, 50_000)),
            "the header is read as it is"
        );
        assert_eq!(
            check_image(&bomb),
            Err(NotAnImage::TooManyPixels {
                width: 50_000,
                height: 50_000
            })
        );
        // Within each side but over the pixel count: 16 384 × 4 000 = 65.5 Mpx.
        assert_eq!(
            check_image(&png_claiming(16_384, 4_000)),
            Err(NotAnImage::TooManyPixels {
                width: 16_384,
                height: 4_000
            })
        );
        assert!(matches!(
            check_image(&png_claiming(20_000, 10)),
            Err(NotAnImage::TooManyPixels { .. })
        ));
    }

    #[test]
    fn an_allowed_header_over_a_body_that_does_not_match_is_refused_by_the_decode() {
        // 4 000 × 4 000 is allowed; its "pixels" are 8 bytes of zlib: not an image.
        assert!(matches!(
            check_image(&png_claiming(4_000, 4_000)),
            Err(NotAnImage::Undecodable { .. })
        ));
    }

    #[test]
    fn text_named_png_and_svg_with_script_are_not_images() {
        assert_eq!(
            check_image(b"hello, I am a text file called photo.png\n"),
            Err(NotAnImage::UnknownFormat)
        );
        let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>"#;
        assert_eq!(check_image(svg), Err(NotAnImage::UnknownFormat));
        assert!(
            !wants_preview("image/svg+xml", svg.len() as u64),
            "an SVG is not even fetched for a preview"
        );
        assert_eq!(check_image(b""), Err(NotAnImage::UnknownFormat));
    }

    /// JPEG is left out: its decoder fills a cut-off scan with grey, which is harmless (and
    /// a file's SHA-256 is checked before it is shown: only a sender can cut it).
    #[test]
    fn a_truncated_image_is_refused() {
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Gif,
            image::ImageFormat::WebP,
        ] {
            let whole = encoded(format, 64, 64);
            let cut = &whole[..whole.len() * 2 / 3];
            assert!(
                matches!(check_image(cut), Err(NotAnImage::Undecodable { .. })),
                "{format:?} cut to {} of {} bytes: {:?}",
                cut.len(),
                whole.len(),
                check_image(cut)
            );
        }
    }

    #[test]
    fn only_announced_raster_images_of_a_preview_size_are_fetched() {
        assert!(wants_preview("image/png", 1000));
        assert!(wants_preview("image/webp", MAX_PREVIEW_FILE_BYTES));
        assert!(!wants_preview("image/png", MAX_PREVIEW_FILE_BYTES + 1));
        assert!(!wants_preview("image/png", 0));
        assert!(!wants_preview("application/pdf", 1000));
        assert!(!wants_preview("image/svg+xml", 1000));
    }

    fn preview_of(len: usize) -> Preview {
        Preview {
            bytes: vec![0u8; len].into(),
            image: CheckedImage {
                format: ImageFormat::Png,
                width: 1,
                height: 1,
            },
        }
    }

    #[test]
    fn previews_are_bounded_in_bytes_dropping_the_oldest() {
        let previews = Previews::default();
        assert!(previews.insert_bounded(1, preview_of(400), 1000).is_empty());
        assert!(previews.insert_bounded(2, preview_of(400), 1000).is_empty());
        assert_eq!(previews.insert_bounded(3, preview_of(400), 1000), vec![1]);
        assert!(previews.get(1).is_none());
        assert!(previews.get(2).is_some() && previews.get(3).is_some());
        assert_eq!(previews.bytes(), 800);
        assert_eq!(
            previews.insert_bounded(4, preview_of(1000), 1000),
            vec![2, 3]
        );
        assert_eq!(previews.bytes(), 1000);
        assert_eq!(
            previews.insert_bounded(5, preview_of(1001), 1000),
            vec![4, 5],
            "one larger than the whole budget is not kept"
        );
        assert_eq!(previews.bytes(), 0);
        previews.insert_bounded(6, preview_of(10), 1000);
        previews.insert_bounded(6, preview_of(20), 1000);
        assert_eq!(previews.bytes(), 20, "the same file again replaces it");
        previews.clear();
        assert!(previews.get(6).is_none());
    }
}
