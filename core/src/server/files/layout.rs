//! Where each chunk of a file sits in the host's file for it, and what an upload may do next
//! (`docs/PROTOCOL.md` §13). Pure: sizes and offsets in, verdicts out.
//!
//! The host keeps a file as its `FileChunk` frames one after another, exactly as members get
//! them: every frame but the last is [`FULL_FRAME`] bytes, so the frame of chunk `i` starts at
//! `i · FULL_FRAME` and serving a chunk is one read at a computed place.

use crate::files::{chunk_count, chunk_len, CHUNK_BYTES, CHUNK_OVERHEAD};

/// Bytes of a whole chunk's frame on disk (and on the wire).
pub const FULL_FRAME: u64 = CHUNK_BYTES + CHUNK_OVERHEAD as u64;

/// Bytes the host's file for a file of `size` bytes takes once complete.
pub fn stored_len(size: u64) -> u64 {
    size + chunk_count(size) * CHUNK_OVERHEAD as u64
}

/// Where the frame of the chunk at content `offset` starts in the stored file, and its length.
pub fn frame_at(size: u64, offset: u64) -> (u64, usize) {
    let index = offset / CHUNK_BYTES;
    (index * FULL_FRAME, chunk_len(size, offset) + CHUNK_OVERHEAD)
}

/// How many content bytes a partly stored file of `size` bytes holds when its stored file is
/// `len` bytes long: whole frames only (a frame cut short by a crash does not count), so
/// always a multiple of [`CHUNK_BYTES`] or the whole size. Returns that and the stored length
/// to cut the file to.
pub fn have_from_len(size: u64, len: u64) -> (u64, u64) {
    if len >= stored_len(size) {
        return (size, stored_len(size));
    }
    let whole = len / FULL_FRAME;
    (whole * CHUNK_BYTES, whole * FULL_FRAME)
}

/// What to do with a `file_chunk` of `len` bytes at `offset` for an upload of `size` bytes
/// of which the host holds `have`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// The next chunk: seal it and store it.
    Store,
    /// Below `have`: a resend after a reconnect, already stored; dropped, never stored twice.
    Drop,
    /// Past `have`, not the chunk's length, or beyond the offered size: the connection breaks
    /// the protocol (`error: protocol`) and is closed.
    Violation(&'static str),
}

/// The verdict on a chunk (see [`ChunkVerdict`]).
pub fn judge_chunk(size: u64, have: u64, offset: u64, len: usize) -> ChunkVerdict {
    if offset >= size {
        return ChunkVerdict::Violation("file chunk beyond the offered size");
    }
    if !offset.is_multiple_of(CHUNK_BYTES) {
        return ChunkVerdict::Violation("file chunk not at a chunk's offset");
    }
    if len != chunk_len(size, offset) {
        return ChunkVerdict::Violation("file chunk of the wrong length");
    }
    if offset < have {
        return ChunkVerdict::Drop;
    }
    if offset > have {
        return ChunkVerdict::Violation("file chunk past what the host holds");
    }
    ChunkVerdict::Store
}

/// Is the chunk at `offset` beyond the upload window: `window` chunks past `told`, the last
/// `have` told the client? (The host tells `have` as it stores, so a client that sends in
/// order reaches past `have` first; this holds the rule whatever the cadence of `file_stored`.)
pub fn beyond_window(told: u64, window: u32, offset: u64) -> bool {
    offset >= told.saturating_add(u64::from(window).saturating_mul(CHUNK_BYTES))
}

/// Should `file_stored` go out after storing up to `have` (of `size`), the last one told
/// having been `told`? At least every `window / 2` chunks, and at the end.
pub fn progress_due(size: u64, have: u64, told: u64, window: u32) -> bool {
    have == size || have - told >= u64::from((window / 2).max(1)) * CHUNK_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: u64 = CHUNK_BYTES;

    #[test]
    fn frames_sit_at_computed_places_and_the_last_is_short() {
        let size = 2 * C + 10;
        assert_eq!(frame_at(size, 0), (0, C as usize + CHUNK_OVERHEAD));
        assert_eq!(frame_at(size, C), (FULL_FRAME, C as usize + CHUNK_OVERHEAD));
        assert_eq!(frame_at(size, 2 * C), (2 * FULL_FRAME, 10 + CHUNK_OVERHEAD));
        assert_eq!(
            stored_len(size),
            2 * FULL_FRAME + 10 + CHUNK_OVERHEAD as u64
        );
        assert_eq!(stored_len(0), 0);
        assert_eq!(stored_len(C), FULL_FRAME);
    }

    #[test]
    fn a_cut_frame_does_not_count_and_a_complete_file_is_whole() {
        let size = 3 * C + 1;
        assert_eq!(have_from_len(size, 0), (0, 0));
        assert_eq!(have_from_len(size, FULL_FRAME - 1), (0, 0));
        assert_eq!(
            have_from_len(size, 2 * FULL_FRAME + 7),
            (2 * C, 2 * FULL_FRAME)
        );
        assert_eq!(have_from_len(size, 3 * FULL_FRAME), (3 * C, 3 * FULL_FRAME));
        assert_eq!(
            have_from_len(size, stored_len(size)),
            (size, stored_len(size))
        );
        assert_eq!(have_from_len(size, stored_len(size) + 99).0, size);
        assert_eq!(have_from_len(2 * C, 2 * FULL_FRAME - 1), (C, FULL_FRAME));
        assert_eq!(have_from_len(0, 0), (0, 0));
    }

    #[test]
    fn the_window_reaches_window_chunks_past_the_last_have_told() {
        assert!(!beyond_window(0, 16, 15 * C));
        assert!(beyond_window(0, 16, 16 * C));
        assert!(!beyond_window(8 * C, 16, 23 * C));
        assert!(beyond_window(8 * C, 16, 24 * C));
        assert!(beyond_window(0, 1, C) && !beyond_window(0, 1, 0));
        assert!(
            !beyond_window(u64::MAX - 5, 16, u64::MAX - 1),
            "no overflow"
        );
    }

    #[test]
    fn only_the_next_chunk_is_stored_resends_are_dropped_and_lies_are_violations() {
        let size = 2 * C + 5;
        assert_eq!(judge_chunk(size, 0, 0, C as usize), ChunkVerdict::Store);
        assert_eq!(judge_chunk(size, C, 0, C as usize), ChunkVerdict::Drop);
        assert_eq!(judge_chunk(size, 2 * C, 2 * C, 5), ChunkVerdict::Store);
        assert!(matches!(
            judge_chunk(size, 0, C, C as usize),
            ChunkVerdict::Violation(_)
        ));
        assert!(matches!(
            judge_chunk(size, 0, 0, 100),
            ChunkVerdict::Violation(_)
        ));
        assert!(matches!(
            judge_chunk(size, 2 * C, 2 * C, C as usize),
            ChunkVerdict::Violation(_)
        ));
        assert!(matches!(
            judge_chunk(size, size, 3 * C, 1),
            ChunkVerdict::Violation(_)
        ));
        assert!(matches!(
            judge_chunk(size, 0, 7, C as usize),
            ChunkVerdict::Violation(_)
        ));
        // Announced 1 KiB, sends more.
        assert!(matches!(
            judge_chunk(1024, 0, 0, C as usize),
            ChunkVerdict::Violation(_)
        ));
        assert!(matches!(
            judge_chunk(1024, 1024, C, 10),
            ChunkVerdict::Violation(_)
        ));
    }

    #[test]
    fn progress_goes_out_every_half_window_and_at_the_end() {
        assert!(!progress_due(100 * C, 7 * C, 0, 16));
        assert!(progress_due(100 * C, 8 * C, 0, 16));
        assert!(!progress_due(100 * C, 15 * C, 8 * C, 16));
        assert!(progress_due(100 * C, 100 * C, 99 * C, 16));
        assert!(progress_due(10, 10, 0, 16));
    }
}
