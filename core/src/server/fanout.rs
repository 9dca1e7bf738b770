//! The room's broadcast log: every sealed broadcast frame is appended once to one shared byte
//! log, and each member's writer sends from its own position (an offset into the log).
//!
//! A broadcast to N members therefore costs one copy and at most N wake-ups, instead of N
//! queue insertions, and a writer that is behind sends everything it is behind by with one
//! `writev` of a few large slices. The log forgets what every connected member has written
//! ([`FanoutLog::trim`]); the room cuts off a member that falls more than its send-queue
//! budget behind, so the log is bounded by that budget.
//!
//! The log is a sequence of frozen, reference-counted slices ([`Bytes`]) followed by an open
//! buffer that appends go to. Reading from the open part freezes it first, so readers never
//! see bytes that may still change, and a slice handed to a writer stays valid after the log
//! has forgotten it.
//!
//! The log also answers which broadcast counter starts at a frame boundary
//! ([`FanoutLog::counter_at`]), so a writer can tell a member its place in the broadcast
//! sequence (`pong.broadcast_next`) from its place in the log.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use crate::frame::HEADER_LEN;
use crate::sealed::COUNTER_LEN;

/// Size of the buffers appends go to (a larger frame gets a buffer of its own size).
const CHUNK: usize = 64 * 1024;

/// The position asked for has already been forgotten: that reader fell behind and was cut
/// off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("broadcast log position {0} is no longer kept")]
pub struct Forgotten(pub u64);

#[derive(Debug, Default)]
pub struct FanoutLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Frozen slices with the log position each starts at, contiguous, oldest first; they
    /// cover `frozen_start..open_start`.
    frozen: VecDeque<(u64, Bytes)>,
    frozen_start: u64,
    /// Appended bytes not yet frozen; they cover `open_start..open_start + open.len()`.
    open: BytesMut,
    open_start: u64,
    /// The counter the next broadcast appended will carry (one past the last one's).
    next_counter: u64,
}

impl Inner {
    fn end(&self) -> u64 {
        self.open_start + self.open.len() as u64
    }

    fn freeze(&mut self) {
        if !self.open.is_empty() {
            let part = self.open.split().freeze();
            let start = self.open_start;
            self.open_start += part.len() as u64;
            self.frozen.push_back((start, part));
        }
    }
}

impl FanoutLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way; keep serving if one ever did.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append one `Broadcast` frame (header, counter, ciphertext); returns the log's new end.
    pub fn append(&self, frame: &[u8]) -> u64 {
        let mut inner = self.lock();
        if let Some(counter) = counter_of(frame) {
            inner.next_counter = counter.saturating_add(1);
        }
        if inner.open.capacity() - inner.open.len() < frame.len() {
            inner.freeze();
            inner.open = BytesMut::with_capacity(CHUNK.max(frame.len()));
        }
        inner.open.extend_from_slice(frame);
        inner.end()
    }

    /// Offset just past the last byte appended.
    pub fn end(&self) -> u64 {
        self.lock().end()
    }

    /// Slices of the log from `from` up to `until` (or the end, if sooner), at most
    /// `max_bytes` in all, appended to `out`. Returns the position after them.
    pub fn read(
        &self,
        from: u64,
        until: u64,
        max_bytes: usize,
        out: &mut Vec<Bytes>,
    ) -> Result<u64, Forgotten> {
        let mut inner = self.lock();
        if from < inner.frozen_start {
            return Err(Forgotten(from));
        }
        let until = until
            .min(inner.end())
            .min(from.saturating_add(max_bytes as u64));
        if until <= from {
            return Ok(from);
        }
        if until > inner.open_start {
            inner.freeze();
        }
        // The first slice that ends after `from`.
        let first = inner
            .frozen
            .partition_point(|(start, part)| start + part.len() as u64 <= from);
        for (start, part) in inner.frozen.range(first..) {
            let end = start + part.len() as u64;
            let lo = from.saturating_sub(*start) as usize;
            let hi = (until.min(end) - start) as usize;
            out.push(part.slice(lo..hi));
            if end >= until {
                break;
            }
        }
        Ok(until)
    }

    /// The counter of the broadcast that starts at log position `at`, a frame boundary: of
    /// the frame there, or, at the end, of the next one to be appended. `None` if the log has
    /// forgotten that position.
    pub fn counter_at(&self, at: u64) -> Option<u64> {
        let inner = self.lock();
        if at == inner.end() {
            return Some(inner.next_counter);
        }
        if at < inner.frozen_start || at > inner.end() {
            return None;
        }
        // A frame never straddles two slices: appends go whole into one buffer, and freezing
        // takes all of it.
        if at >= inner.open_start {
            return counter_of(&inner.open[(at - inner.open_start) as usize..]);
        }
        let index = inner
            .frozen
            .partition_point(|(start, part)| start + part.len() as u64 <= at);
        let (start, part) = inner.frozen.get(index)?;
        counter_of(&part[(at - start) as usize..])
    }

    /// Forget the frozen slices that end at or before `keep_from`.
    pub fn trim(&self, keep_from: u64) {
        let mut inner = self.lock();
        while let Some((start, front)) = inner.frozen.front() {
            let end = start + front.len() as u64;
            if end > keep_from {
                break;
            }
            inner.frozen_start = end;
            inner.frozen.pop_front();
        }
    }

    /// Bytes the log holds (frozen and open).
    #[cfg(test)]
    pub fn retained(&self) -> u64 {
        let inner = self.lock();
        inner.end() - inner.frozen_start
    }
}

/// The counter of the broadcast frame `frame` starts with.
fn counter_of(frame: &[u8]) -> Option<u64> {
    let bytes = frame.get(HEADER_LEN..HEADER_LEN + COUNTER_LEN)?;
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::BroadcastSealer;

    /// The counter at every frame boundary, in the open part, in frozen slices and at the end,
    /// and nothing once forgotten.
    #[test]
    fn the_counter_at_each_frame_boundary_is_known() {
        let log = FanoutLog::new();
        assert_eq!(log.counter_at(0), Some(0), "an empty log starts at 0");
        let mut sealer = BroadcastSealer::new(&[1u8; 32], 0);
        let mut starts = Vec::new();
        for i in 0..2000u64 {
            starts.push(log.end());
            log.append(&sealer.seal(&vec![b'x'; (i % 300) as usize]).unwrap());
            if i % 37 == 0 {
                log.read(0, u64::MAX, usize::MAX, &mut Vec::new()).unwrap(); // freeze
            }
        }
        for (counter, at) in starts.iter().enumerate() {
            assert_eq!(log.counter_at(*at), Some(counter as u64), "at {at}");
        }
        assert_eq!(log.counter_at(log.end()), Some(2000));
        assert_eq!(log.counter_at(log.end() + 1), None);
        log.trim(starts[1500]);
        assert_eq!(log.counter_at(0), None, "forgotten");
        assert_eq!(log.counter_at(starts[1999]), Some(1999));
    }

    fn read_all(log: &FanoutLog, from: u64, until: u64, max: usize) -> (Vec<u8>, u64, usize) {
        let mut out = Vec::new();
        let next = log.read(from, until, max, &mut out).unwrap();
        let pieces = out.len();
        (out.concat(), next, pieces)
    }

    #[test]
    fn readers_see_every_byte_in_order_from_their_own_position() {
        let log = FanoutLog::new();
        assert_eq!(log.append(b"abc"), 3);
        let (bytes, next, _) = read_all(&log, 0, u64::MAX, 1 << 20);
        assert_eq!((&bytes[..], next), (&b"abc"[..], 3));
        assert_eq!(log.append(b"de"), 5);
        assert_eq!(log.append(b"fgh"), 8);
        // A reader that was at 3 gets what came since; one at 1 gets more.
        assert_eq!(read_all(&log, 3, u64::MAX, 1 << 20).0, b"defgh");
        assert_eq!(read_all(&log, 1, u64::MAX, 1 << 20).0, b"bcdefgh");
        // Bounded by `until` and by `max_bytes`.
        let (bytes, next, _) = read_all(&log, 1, 5, 1 << 20);
        assert_eq!((&bytes[..], next), (&b"bcde"[..], 5));
        let (bytes, next, _) = read_all(&log, 1, u64::MAX, 2);
        assert_eq!((&bytes[..], next), (&b"bc"[..], 3));
        // Nothing new: nothing read.
        assert_eq!(read_all(&log, 8, u64::MAX, 10), (Vec::new(), 8, 0));
    }

    #[test]
    fn a_handed_out_slice_survives_later_appends_and_trims() {
        let log = FanoutLog::new();
        log.append(b"one");
        let mut out = Vec::new();
        log.read(0, u64::MAX, 100, &mut out).unwrap();
        for _ in 0..1000 {
            log.append(&[7u8; 200]);
        }
        log.trim(log.end());
        assert_eq!(&out[0][..], b"one");
        assert_eq!(log.read(0, u64::MAX, 10, &mut out), Err(Forgotten(0)));
    }

    #[test]
    fn trim_forgets_only_what_everyone_has_and_keeps_memory_bounded() {
        let log = FanoutLog::new();
        let frame = [1u8; 300];
        let mut slow = 0;
        for i in 0..10_000u64 {
            let end = log.append(&frame);
            // Readers freeze the open part as they go, as writers do.
            let mut out = Vec::new();
            let fast = log.read(end - 300, u64::MAX, 1 << 20, &mut out).unwrap();
            if i % 100 == 0 {
                slow = log.read(slow, u64::MAX, 1 << 20, &mut out).unwrap();
            }
            log.trim(slow.min(fast));
            assert!(
                log.retained() <= 100 * 300 + CHUNK as u64,
                "retained {}",
                log.retained()
            );
        }
        let (rest, _, _) = read_all(&log, slow, u64::MAX, usize::MAX);
        assert_eq!(rest.len() as u64, log.end() - slow);
    }

    #[test]
    fn frames_larger_than_a_chunk_are_kept_whole() {
        let log = FanoutLog::new();
        log.append(b"x");
        let big = vec![9u8; CHUNK * 2 + 5];
        log.append(&big);
        log.append(b"y");
        let (bytes, next, _) = read_all(&log, 0, u64::MAX, usize::MAX);
        assert_eq!(next, (CHUNK * 2 + 7) as u64);
        assert_eq!(bytes[0], b'x');
        assert_eq!(&bytes[1..1 + big.len()], &big[..]);
        assert_eq!(*bytes.last().unwrap(), b'y');
    }
}
