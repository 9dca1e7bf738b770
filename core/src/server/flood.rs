//! Flood control for one member: a token bucket. A member may send `burst` messages at once
//! and `per_second` messages a second after that. Messages beyond the rate are not refused:
//! the server holds them and handles them as tokens come in (IRC servers' "fake lag"); only a
//! member that keeps more than the flood queue waiting is cut off (see `server`).

use std::time::{Duration, Instant};

/// The rate a member may send chat messages at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodLimit {
    /// Sustained messages per second; `0` turns flood control off.
    pub per_second: f64,
    /// Messages that may be sent at once after a quiet spell.
    pub burst: f64,
}

impl Default for FloodLimit {
    fn default() -> Self {
        Self {
            per_second: 5.0,
            burst: 10.0,
        }
    }
}

impl FloodLimit {
    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }

    /// The limit of one source address: what its `connections` allowed connections may send
    /// together. It holds across reconnects, so new connections or client ids from one
    /// address do not bring new bursts beyond it.
    pub fn per_source(&self, connections: usize) -> Self {
        let n = connections.max(1) as f64;
        Self {
            per_second: self.per_second * n,
            burst: self.burst * n,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: FloodLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: FloodLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: limit.burst.max(1.0),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst.max(1.0));
        self.updated = now;
    }

    /// Take a token if one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.limit.is_off() {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled to its burst: then it is the same as a new one.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.limit.burst.max(1.0)
    }

    /// When the bucket was last taken from (or refilled).
    pub fn updated(&self) -> Instant {
        self.updated
    }

    /// When the next token is available (`now` if one is).
    pub fn available_at(&mut self, now: Instant) -> Instant {
        if self.limit.is_off() {
            return now;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let limit = FloodLimit {
            per_second: 2.0,
            burst: 3.0,
        };
        let mut bucket = TokenBucket::new(limit, start);
        assert!((0..3).all(|_| bucket.try_take(start)), "burst passes");
        assert!(!bucket.try_take(start), "fourth at once is held");
        let next = bucket.available_at(start);
        assert_eq!(next - start, Duration::from_millis(500));
        assert!(!bucket.try_take(start + Duration::from_millis(499)));
        assert!(bucket.try_take(start + Duration::from_millis(501)));
        // A long quiet spell refills only up to the burst.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 3);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(
            FloodLimit {
                per_second: 0.0,
                burst: 1.0,
            },
            now,
        );
        assert!((0..10_000).all(|_| bucket.try_take(now)));
        assert_eq!(bucket.available_at(now), now);
    }
}
