//! The room's recent history in memory, shared with the connections' writers: the room
//! appends and forgets events (under its own lock), and a writer replaying history to a
//! member copies out one bounded piece at a time ([`RecentHistory::piece`]), so a member asking
//! for everything costs one piece of memory, not a copy of the history.
//!
//! A replay under way holds a [`ReplayPin`] on the oldest event it still needs: the history
//! keeps pinned events past its bound until the replay moves on (or its connection ends), so
//! the events a welcome promised are still there when the writer gets to them. That excess is
//! bounded by the connection's send cap: the broadcasts arriving meanwhile queue up for the
//! same member, which is cut off as a slow consumer past its cap.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::link::entry_len;
use crate::message::RoomEvent;

/// The events a replay still needs were forgotten (by the history bound or retention) while
/// it was under way; the connection must be closed so the member resumes afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {0} is no longer in the recent history")]
pub struct Forgotten(pub u64);

/// Recent room events in sequence order (contiguous sequence numbers).
#[derive(Debug, Default)]
pub struct RecentHistory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: VecDeque<Arc<RoomEvent>>,
    /// Oldest sequence number each replay under way still needs → how many replays.
    pins: BTreeMap<u64, usize>,
}

impl Inner {
    fn unpin(&mut self, seq: u64) {
        if let Some(count) = self.pins.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                self.pins.remove(&seq);
            }
        }
    }
}

/// A replay's hold on the events from `next` on; released on drop.
#[derive(Debug)]
pub struct ReplayPin {
    history: Arc<RecentHistory>,
    next: u64,
}

impl ReplayPin {
    /// The next sequence number the replay needs.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The replay has sent everything before `seq`.
    pub fn advance(&mut self, seq: u64) {
        if seq > self.next {
            let mut inner = self.history.lock();
            inner.unpin(self.next);
            *inner.pins.entry(seq).or_default() += 1;
            self.next = seq;
        }
    }
}

impl Drop for ReplayPin {
    fn drop(&mut self) {
        self.history.lock().unpin(self.next);
    }
}

impl RecentHistory {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each change is one push, pop or count: the history is valid after any panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, event: RoomEvent) {
        self.lock().events.push_back(Arc::new(event));
    }

    /// Hold the events from `from_seq` on for a replay.
    pub fn pin(self: &Arc<Self>, from_seq: u64) -> ReplayPin {
        *self.lock().pins.entry(from_seq).or_default() += 1;
        ReplayPin {
            history: self.clone(),
            next: from_seq,
        }
    }

    /// Forget the oldest events while `forget` says so, except those a replay still needs.
    pub fn forget_while(&self, mut forget: impl FnMut(&RoomEvent, usize) -> bool) {
        let mut inner = self.lock();
        let pinned = inner.pins.keys().next().copied().unwrap_or(u64::MAX);
        while inner
            .events
            .front()
            .is_some_and(|e| e.seq < pinned && forget(e, inner.events.len()))
        {
            inner.events.pop_front();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Sequence number of the oldest event kept.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.lock().events.front().map(|e| e.seq)
    }

    /// The events from `from_seq` through `through_seq`, as many as fit `max_bytes` as
    /// `history` entries (at least one). Empty once `from_seq` is past `through_seq`; [`Forgotten`] if
    /// `from_seq` is no longer kept.
    pub fn piece(
        &self,
        from_seq: u64,
        through_seq: u64,
        max_bytes: usize,
    ) -> Result<Vec<RoomEvent>, Forgotten> {
        if from_seq > through_seq {
            return Ok(Vec::new());
        }
        let shared: Vec<Arc<RoomEvent>> = {
            let inner = self.lock();
            let events = &inner.events;
            let start = events.partition_point(|e| e.seq < from_seq);
            if events.get(start).is_none_or(|e| e.seq != from_seq) {
                return Err(Forgotten(from_seq));
            }
            // Only pointers are copied under the lock; sizes are counted after it.
            events
                .range(start..)
                .take_while(|e| e.seq <= through_seq)
                .take(MAX_PIECE_EVENTS)
                .cloned()
                .collect()
        };
        let mut size = 0;
        let mut piece = Vec::new();
        for event in shared {
            size += entry_len(&event);
            if !piece.is_empty() && size > max_bytes {
                break;
            }
            piece.push(RoomEvent::clone(&event));
        }
        Ok(piece)
    }

    /// Up to `limit` events before `before_seq`, oldest first: the newest of them whose entries
    /// fit `max_bytes` (at least one), and whether older ones exist. Only those are
    /// copied out: a page never costs more memory than it sends.
    pub fn before(
        &self,
        before_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<RoomEvent>, bool) {
        let (shared, oldest): (Vec<Arc<RoomEvent>>, Option<u64>) = {
            let inner = self.lock();
            let events = &inner.events;
            let end = events.partition_point(|e| e.seq < before_seq);
            let start = end.saturating_sub(limit);
            (
                events.range(start..end).cloned().collect(),
                events.front().map(|e| e.seq),
            )
        };
        // Sizes are counted after the lock, newest first.
        let mut size = 0;
        let mut fits = shared.len();
        for (i, event) in shared.iter().enumerate().rev() {
            size += entry_len(event);
            if fits < shared.len() && size > max_bytes {
                break;
            }
            fits = i;
        }
        let page = &shared[fits..];
        let more = page
            .first()
            .is_some_and(|first| oldest.is_some_and(|oldest| oldest < first.seq));
        (page.iter().map(|e| RoomEvent::clone(e)).collect(), more)
    }
}

/// Most events one piece of a replay copies out of the history at a time.
const MAX_PIECE_EVENTS: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RoomEventKind;

    fn event(seq: u64, text: &str) -> RoomEvent {
        RoomEvent {
            seq,
            time_ms: 0,
            kind: RoomEventKind::Message {
                from: "a".into(),
                text: text.into(),
                msg_id: seq,
                author: "t".into(),
            },
        }
    }

    /// A page of older history copies out only what fits its frame: asking for 200 events of
    /// 8 KiB each copies about 64 KiB, not 1.6 MiB (per connection paging at once).
    #[test]
    fn a_page_copies_only_the_newest_events_that_fit() {
        let history = RecentHistory::default();
        for seq in 1..=300 {
            history.push(event(seq, &"x".repeat(8 * 1024)));
        }
        let (page, more) = history.before(301, 200, 64 * 1024);
        let size: usize = page.iter().map(entry_len).sum();
        assert!(size <= 64 * 1024, "{size} bytes copied");
        assert_eq!(page.len(), 7, "the newest seven 8 KiB events fit");
        assert_eq!(page.last().map(|e| e.seq), Some(300), "newest kept");
        assert_eq!(page.first().map(|e| e.seq), Some(294));
        assert!(more, "older ones exist");
        // At least one, even when a single event is larger than asked for.
        let (page, more) = history.before(2, 200, 10);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
        assert!(!more);
    }

    #[test]
    fn a_replay_comes_out_in_bounded_pieces_and_notices_forgotten_events() {
        let history = RecentHistory::default();
        for seq in 1..=100 {
            history.push(event(seq, &"x".repeat(1000)));
        }
        let mut next = 10;
        let mut seqs = Vec::new();
        while next <= 90 {
            let piece = history.piece(next, 90, 8 * 1024).unwrap();
            assert!(
                !piece.is_empty() && piece.len() <= 8,
                "bounded: {}",
                piece.len()
            );
            next = piece.last().unwrap().seq + 1;
            seqs.extend(piece.iter().map(|e| e.seq));
        }
        assert_eq!(seqs, (10..=90).collect::<Vec<_>>());
        assert_eq!(history.piece(91, 90, 1024), Ok(vec![]));
        // A replay's pin keeps what it still needs; moving on lets it go.
        let history = Arc::new(history);
        let mut pin = history.pin(30);
        history.forget_while(|e, _| e.seq < 50);
        assert_eq!(history.oldest_seq(), Some(30));
        pin.advance(40);
        history.forget_while(|e, _| e.seq < 50);
        assert_eq!(history.oldest_seq(), Some(40));
        drop(pin);
        history.forget_while(|e, _| e.seq < 50);
        assert_eq!(history.piece(20, 90, 1024), Err(Forgotten(20)));
        assert_eq!(history.oldest_seq(), Some(50));
        let (page, more) = history.before(60, 5, usize::MAX);
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![55, 56, 57, 58, 59]
        );
        assert!(more);
        let (page, more) = history.before(52, 5, usize::MAX);
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![50, 51]);
        assert!(!more);
    }
}
