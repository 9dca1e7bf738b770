//! Pages of older history (`older`), read off the room's lock: the room only checks who asks
//! and hands out where to read ([`PageSource`]); the page is read (from the recent history in
//! memory, or from the database on a blocking thread), decoded and cut to one frame here, and
//! queued on the member's link afterwards, so paging never stalls the room's chat.

use std::sync::{Arc, Mutex, PoisonError};

use super::recent::RecentHistory;
use super::store::Store;
use crate::message::{RoomEvent, ServerMessage};

/// Most events one page of older history carries.
pub const MAX_PAGE_EVENTS: usize = 200;
/// Room for the page envelope inside one session frame.
const PAGE_BYTES: usize = crate::sealed::MAX_SESSION_PLAINTEXT - 256;

/// Where a room's older history is read from.
#[derive(Clone)]
pub enum PageSource {
    /// A memory-only room: its recent history is all there is.
    Memory(Arc<RecentHistory>),
    /// A stored room: the database (shared with the room, locked only for the query).
    Store(Arc<Mutex<Store>>),
}

impl PageSource {
    /// The `older` reply: up to `limit` (1 to [`MAX_PAGE_EVENTS`]) events before
    /// `before_seq`, the newest that fit one frame. Blocks on the database: call it from a
    /// blocking thread.
    pub fn read(&self, before_seq: u64, limit: usize) -> ServerMessage {
        let limit = limit.clamp(1, MAX_PAGE_EVENTS);
        let (events, more) = match self {
            PageSource::Memory(history) => history.before(before_seq, limit, PAGE_BYTES),
            PageSource::Store(store) => {
                let rows = store
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .page_json(before_seq, limit, PAGE_BYTES);
                match rows.and_then(|(rows, more)| Ok((Store::decode_events(&rows)?, more))) {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::error!(error = %e, "could not read older history");
                        (Vec::new(), false)
                    }
                }
            }
        };
        let (events, more) = fit_one_frame(events, more);
        ServerMessage::Older {
            before_seq,
            events,
            more,
        }
    }
}

/// Keep the newest events that fit one frame; `more` if any were left out.
fn fit_one_frame(mut events: Vec<RoomEvent>, mut more: bool) -> (Vec<RoomEvent>, bool) {
    let mut size = 0;
    let mut fits = events.len();
    for (i, event) in events.iter().enumerate().rev() {
        size += super::link::entry_len(event);
        if size > PAGE_BYTES {
            break;
        }
        fits = i;
    }
    if fits > 0 {
        events.drain(..fits);
        more = true;
    }
    (events, more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RoomEventKind;

    #[test]
    fn a_page_keeps_the_newest_events_that_fit_one_frame() {
        let history = Arc::new(RecentHistory::default());
        for seq in 1..=50 {
            history.push(RoomEvent {
                seq,
                time_ms: 0,
                kind: RoomEventKind::Message {
                    from: "a".into(),
                    text: "é".repeat(4000),
                    msg_id: seq,
                    author: "t".into(),
                },
            });
        }
        let ServerMessage::Older { events, more, .. } = PageSource::Memory(history).read(41, 500)
        else {
            panic!()
        };
        assert!(more);
        assert_eq!(events.last().map(|e| e.seq), Some(40));
        let encoded = crate::sealed::encode(&ServerMessage::Older {
            before_seq: 41,
            events: events.clone(),
            more,
        })
        .unwrap();
        assert!(encoded.len() <= crate::sealed::MAX_SESSION_PLAINTEXT);
        assert!(events.len() > 4 && events.len() < 40, "{}", events.len());
    }
}
