//! Flood buckets that outlive connections: one per member identity (client id) and one per
//! source (an IPv4 address or IPv6 /64), shared by all connections, so reconnecting — with
//! the same client id or a new one — does not refill a member's burst. A chat message takes a
//! token from both its member's and its source's bucket.
//!
//! Bounded: a bucket that has refilled to its burst is the same as a new one and is forgotten
//! when room is needed; at most [`MAX_BUCKETS`] of each kind are kept (beyond that the least
//! recently used is dropped, which at worst gives that key a fresh burst).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use super::flood::{FloodLimit, TokenBucket};
use super::source::Source;

/// Most buckets kept per kind (client ids, sources): about 2 MiB of client ids at most.
pub const MAX_BUCKETS: usize = 16_384;

/// Buckets by key, bounded in number.
struct Buckets<K> {
    limit: FloodLimit,
    max: usize,
    map: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(limit: FloodLimit, max: usize) -> Self {
        Self {
            limit,
            max: max.max(1),
            map: HashMap::new(),
        }
    }

    fn bucket(&mut self, key: &K, now: Instant) -> &mut TokenBucket {
        if !self.map.contains_key(key) && self.map.len() >= self.max {
            self.map.retain(|_, bucket| !bucket.is_full(now));
            if self.map.len() >= self.max {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.updated())
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.map.remove(&oldest);
                }
            }
        }
        let limit = self.limit;
        self.map
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(limit, now))
    }
}

/// The flood buckets of every member and source, shared by the server's connections.
pub struct FloodBuckets {
    inner: Mutex<(Buckets<String>, Buckets<Source>)>,
    off: bool,
}

impl FloodBuckets {
    /// `member` limits one client id; `source` one address.
    pub fn new(member: FloodLimit, source: FloodLimit) -> Self {
        Self::with_max(member, source, MAX_BUCKETS)
    }

    fn with_max(member: FloodLimit, source: FloodLimit, max: usize) -> Self {
        Self {
            off: member.is_off() && source.is_off(),
            inner: Mutex::new((Buckets::new(member, max), Buckets::new(source, max))),
        }
    }

    /// Take a token for a message from `client` at `source`, if both buckets have one.
    pub fn try_take(&self, client: &str, source: Source, now: Instant) -> bool {
        if self.off {
            return true;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (members, sources) = &mut *guard;
        let client = client.to_owned();
        let member_ready = members.bucket(&client, now).available_at(now) <= now;
        let source_ready = sources.bucket(&source, now).available_at(now) <= now;
        if !(member_ready && source_ready) {
            return false;
        }
        members.bucket(&client, now).try_take(now) && sources.bucket(&source, now).try_take(now)
    }

    /// When both of `client`'s and `source`'s buckets have a token (`now` if they do).
    pub fn available_at(&self, client: &str, source: Source, now: Instant) -> Instant {
        if self.off {
            return now;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (members, sources) = &mut *guard;
        let member = members.bucket(&client.to_owned(), now).available_at(now);
        let source = sources.bucket(&source, now).available_at(now);
        member.max(source)
    }
}

/// One bucket per source, shared by all connections (new members joining, see `handler`).
pub struct SourceBuckets {
    inner: Mutex<Buckets<Source>>,
    off: bool,
}

impl SourceBuckets {
    pub fn new(limit: FloodLimit) -> Self {
        Self {
            off: limit.is_off(),
            inner: Mutex::new(Buckets::new(limit, MAX_BUCKETS)),
        }
    }

    /// Take a token for `source` if it has one; otherwise how long until it has.
    pub fn try_take(&self, source: Source, now: Instant) -> Result<(), std::time::Duration> {
        if self.off {
            return Ok(());
        }
        let mut buckets = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.bucket(&source, now);
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(bucket.available_at(now).saturating_duration_since(now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    fn source(ip: &str) -> Source {
        Source::of(ip.parse::<IpAddr>().unwrap())
    }

    const MEMBER: FloodLimit = FloodLimit {
        per_second: 1.0,
        burst: 3.0,
    };
    const SOURCE: FloodLimit = FloodLimit {
        per_second: 2.0,
        burst: 5.0,
    };

    #[test]
    fn a_new_connection_or_client_id_does_not_refill_the_burst() {
        let now = Instant::now();
        let buckets = FloodBuckets::new(MEMBER, SOURCE);
        let a = source("192.0.2.1");
        let taken = |id: &str, at| (0..10).filter(|_| buckets.try_take(id, a, at)).count();
        assert_eq!(taken("client-1", now), 3, "the member's burst");
        assert_eq!(taken("client-1", now), 0, "the same client again: empty");
        assert_eq!(
            taken("client-2", now),
            2,
            "another id: what the address has left"
        );
        assert_eq!(taken("client-3", now), 0);
        let other = source("2001:db8::1");
        assert_eq!(
            (0..10)
                .filter(|_| buckets.try_take("client-3", other, now))
                .count(),
            3,
            "another address is not affected"
        );
        // One second later the address has refilled 2 (2/s), client-2 has 1 left + 1.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            buckets.available_at("client-1", a, now),
            now + Duration::from_secs(1)
        );
        assert_eq!(taken("client-2", later), 2);
        assert_eq!(taken("client-1", later), 0, "the address is spent again");
    }

    #[test]
    fn the_registry_is_bounded_and_forgets_refilled_buckets_first() {
        let now = Instant::now();
        let buckets = FloodBuckets::with_max(MEMBER, SOURCE, 4);
        let a = source("192.0.2.1");
        for i in 0..100 {
            buckets.try_take(&format!("client-{i}"), source(&format!("10.0.0.{i}")), now);
        }
        let guard = buckets.inner.lock().unwrap();
        assert!(guard.0.map.len() <= 4 && guard.1.map.len() <= 4);
        drop(guard);
        // A drained bucket survives while idle refilled ones make room.
        let buckets = FloodBuckets::with_max(MEMBER, SOURCE, 2);
        assert_eq!(
            (0..10)
                .filter(|_| buckets.try_take("flooder", a, now))
                .count(),
            3
        );
        buckets.try_take("quiet", source("192.0.2.2"), now);
        // 2.5 s later "quiet" has refilled (1/s, one token used), "flooder" not yet (3 used).
        let later = now + Duration::from_millis(2500);
        buckets.try_take("third", source("192.0.2.3"), later);
        assert_eq!(
            (0..10)
                .filter(|_| buckets.try_take("flooder", a, later))
                .count(),
            2,
            "the flooder's bucket was kept (2.5 tokens), not replaced by a full one"
        );
    }

    #[test]
    fn off_means_unlimited() {
        let off = FloodLimit {
            per_second: 0.0,
            burst: 1.0,
        };
        let buckets = FloodBuckets::new(off, off);
        let now = Instant::now();
        assert!((0..10_000).all(|_| buckets.try_take("c", source("192.0.2.1"), now)));
    }
}
