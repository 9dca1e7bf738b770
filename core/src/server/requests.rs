//! Rate limits for the requests besides chat that make the server answer or work: `join`
//! retries before joining, `ping`, `typing`, `older` (which reads the disk), `file_offer`
//! (which may write the database and evict files) and `file_get`/`file_stop` (which open a
//! file and queue a reply). Each has its
//! own token bucket per connection; `file_offer` also takes from its client id's and its
//! address's (shared by their connections, see `buckets`: a new connection or client id does
//! not bring a new burst). See `docs/PROTOCOL.md` (Limits) for the defaults and what happens
//! beyond them.

use std::time::Instant;

use super::flood::{FloodLimit, TokenBucket};
use crate::message::ClientMessage;

/// An address's `file_offer` bucket holds this many client ids' (a few members behind one
/// address dropping photos at once).
pub const FILE_OFFERS_PER_SOURCE: usize = 4;

/// The rates of the rate-limited requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimits {
    /// `join` before joining (each refused one costs a `nick_rejected`).
    pub join: FloodLimit,
    pub ping: FloodLimit,
    pub typing: FloodLimit,
    /// `older`: far lower than chat, each page is a disk read of up to a frame.
    pub older: FloodLimit,
    /// `file_offer`, per connection and per client id (× [`FILE_OFFERS_PER_SOURCE`] per
    /// address): friends dropping a handful of photos at once.
    pub file_offer: FloodLimit,
    /// `file_get` and `file_stop` together: the app fetches previews one at a time.
    pub file_get: FloodLimit,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            join: FloodLimit {
                per_second: 1.0,
                burst: 4.0,
            },
            ping: FloodLimit {
                per_second: 0.5,
                burst: 4.0,
            },
            typing: FloodLimit {
                per_second: 1.0,
                burst: 2.0,
            },
            older: FloodLimit {
                per_second: 1.0,
                burst: 4.0,
            },
            file_offer: FloodLimit {
                per_second: 1.0,
                burst: 8.0,
            },
            file_get: FloodLimit {
                per_second: 4.0,
                burst: 16.0,
            },
        }
    }
}

impl RequestLimits {
    /// No limits (with flood control off).
    pub fn off() -> Self {
        let off = FloodLimit {
            per_second: 0.0,
            burst: 0.0,
        };
        Self {
            join: off,
            ping: off,
            typing: off,
            older: off,
            file_offer: off,
            file_get: off,
        }
    }
}

/// One connection's buckets for the rate-limited requests.
#[derive(Debug, Clone)]
pub struct RequestBuckets {
    join: TokenBucket,
    ping: TokenBucket,
    typing: TokenBucket,
    older: TokenBucket,
    file_offer: TokenBucket,
    file_get: TokenBucket,
}

impl RequestBuckets {
    pub fn new(limits: RequestLimits, now: Instant) -> Self {
        Self {
            join: TokenBucket::new(limits.join, now),
            ping: TokenBucket::new(limits.ping, now),
            typing: TokenBucket::new(limits.typing, now),
            older: TokenBucket::new(limits.older, now),
            file_offer: TokenBucket::new(limits.file_offer, now),
            file_get: TokenBucket::new(limits.file_get, now),
        }
    }

    /// The bucket `message` takes a token from (`None`: not rate-limited here). A `join`
    /// after joining is a protocol error, not a retry.
    pub fn bucket(&mut self, message: &ClientMessage, joined: bool) -> Option<&mut TokenBucket> {
        match message {
            ClientMessage::Join { .. } if !joined => Some(&mut self.join),
            // An unknown type is answered like a ping (`unsupported`), and limited like one.
            ClientMessage::Ping | ClientMessage::Unsupported { .. } => Some(&mut self.ping),
            ClientMessage::Typing => Some(&mut self.typing),
            ClientMessage::Older { .. } => Some(&mut self.older),
            ClientMessage::FileOffer { .. } => Some(&mut self.file_offer),
            ClientMessage::FileGet { .. } | ClientMessage::FileStop { .. } => {
                Some(&mut self.file_get)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_request_has_its_own_bucket_and_chat_none() {
        let now = Instant::now();
        let mut buckets = RequestBuckets::new(RequestLimits::default(), now);
        let older = ClientMessage::Older {
            before_seq: 10,
            limit: 100,
        };
        for _ in 0..4 {
            assert!(buckets.bucket(&older, true).unwrap().try_take(now));
        }
        assert!(
            !buckets.bucket(&older, true).unwrap().try_take(now),
            "burst of 4"
        );
        assert!(buckets
            .bucket(&ClientMessage::Ping, true)
            .unwrap()
            .try_take(now));
        let later = now + Duration::from_secs(1);
        assert!(
            buckets.bucket(&older, true).unwrap().try_take(later),
            "1 per second"
        );
        let say = ClientMessage::Say {
            id: 1,
            text: "hi".into(),
        };
        assert!(buckets.bucket(&say, true).is_none());
        let join = ClientMessage::Join {
            nick: "ana".into(),
            client_id: "c".repeat(32),
            resume: None,
        };
        assert!(buckets.bucket(&join, false).is_some());
        assert!(
            buckets.bucket(&join, true).is_none(),
            "a protocol error, not a retry"
        );
        let offer = ClientMessage::FileOffer {
            upload_id: 1,
            name: "a.png".into(),
            size: 1,
            mime: String::new(),
            sha256: [0; 32],
        };
        assert!((0..8).all(|_| buckets.bucket(&offer, true).unwrap().try_take(now)));
        assert!(
            !buckets.bucket(&offer, true).unwrap().try_take(now),
            "burst of 8"
        );
        let get = ClientMessage::FileGet {
            file_id: 1,
            offset: 0,
        };
        let stop = ClientMessage::FileStop { file_id: 1 };
        assert!(
            (0..8).all(|_| buckets.bucket(&get, true).unwrap().try_take(now)
                && buckets.bucket(&stop, true).unwrap().try_take(now))
        );
        assert!(
            !buckets.bucket(&get, true).unwrap().try_take(now),
            "gets and stops share 16"
        );
        let chunk = ClientMessage::FileChunk {
            upload_id: 1,
            offset: 0,
            data: vec![],
        };
        assert!(
            buckets.bucket(&chunk, true).is_none(),
            "chunks are bounded by the window"
        );
        let mut off = RequestBuckets::new(RequestLimits::off(), now);
        assert!((0..1000).all(|_| off.bucket(&older, true).unwrap().try_take(now)));
    }
}
