//! Online guessing: failed handshakes (wrong passphrase at Noise message 1) counted per
//! [`Source`] (an IPv4 address or an IPv6 /64). Pure: time comes in as an argument.
//!
//! - The first [`FREE_FAILURES`] failures from a source are answered at once; after that each
//!   `Reject(1)` is held back by a growing delay (250 ms, 500 ms, … up to [`MAX_REJECT_DELAY`]).
//! - At [`HandshakeThrottle::max_failures`] the source is refused for
//!   [`HandshakeThrottle::lockout`]: its connections get `Reject(6)` with the seconds left,
//!   before any handshake work. After the lockout one more failure locks it again, until the
//!   source has had no failure for [`HandshakeThrottle::forget_after`].
//! - Other sources are not affected: a source only ever pays for its own failures.
//! - A handshake the server has answered but the client has not yet confirmed (its first
//!   session frame) is *in flight*: the server cannot tell it from a failed guess until it
//!   settles, so every decision above counts it as a failure ([`FailedHandshakes::answering`]
//!   when the answer goes out). It then settles exactly once: as a real failure
//!   ([`FailedHandshakes::unconfirmed_failed`]) or, confirmed, it is taken back
//!   ([`FailedHandshakes::confirmed`]) without touching the source's real failures. A source
//!   whose failures and guesses in flight together reach the limit is refused (`Reject(6)`,
//!   retry in [`IN_FLIGHT_RETRY_SECS`]) until they settle. The guesses in flight are kept
//!   apart from the failures, one entry per source with at least one, so they are bounded by
//!   the open connections and never dropped to make room.
//! - The table is bounded ([`HandshakeThrottle::max_sources`] entries, about 64 bytes each):
//!   when full, forgotten entries are dropped, then an eighth of the table at once (sources
//!   not locked out first, the longest idle first).
//! - [`LogLimit`] keeps the log of failures to a bounded rate, counting what it left out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::source::Source;

/// Failures answered without delay.
pub const FREE_FAILURES: u32 = 3;
/// The delay before the first held-back `Reject(1)`; it doubles with each further failure.
pub const FIRST_REJECT_DELAY: Duration = Duration::from_millis(250);
/// The longest a `Reject(1)` is held back.
pub const MAX_REJECT_DELAY: Duration = Duration::from_secs(4);
/// The retry time a source is told while its guesses in flight keep it at the limit: they
/// settle within the handshake timeout, usually at once (a guesser hangs up, a member
/// confirms), and a real lockout then answers with its own time.
pub const IN_FLIGHT_RETRY_SECS: u16 = 1;

/// Limits on failed handshakes per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeThrottle {
    /// Failed handshakes from one source before it is refused for [`Self::lockout`].
    pub max_failures: u32,
    /// How long a source is refused.
    pub lockout: Duration,
    /// A source with no failure for this long starts over.
    pub forget_after: Duration,
    /// Sources remembered at most.
    pub max_sources: usize,
}

impl Default for HandshakeThrottle {
    fn default() -> Self {
        Self {
            max_failures: 10,
            lockout: Duration::from_secs(60),
            forget_after: Duration::from_secs(15 * 60),
            max_sources: 16_384,
        }
    }
}

/// What to do with a new connection from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead with the handshake.
    Allow,
    /// Refuse with `Reject(6)`: try again in `retry_after_secs` (at least 1).
    Refuse { retry_after_secs: u16 },
}

/// What a failed handshake leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Hold the `Reject(1)` back this long.
    pub reject_delay: Duration,
    /// The source is now refused for this long.
    pub lockout: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Failed handshakes per source; see the module documentation.
#[derive(Debug)]
pub struct FailedHandshakes {
    limits: HandshakeThrottle,
    entries: HashMap<Source, Entry>,
    /// Answered, unconfirmed handshakes per source (never zero: removed at zero).
    in_flight: HashMap<Source, u32>,
}

impl FailedHandshakes {
    pub fn new(limits: HandshakeThrottle) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Sources currently remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Handshakes from `source` answered and not yet settled.
    pub fn in_flight(&self, source: Source) -> u32 {
        self.in_flight.get(&source).copied().unwrap_or(0)
    }

    /// Failures from `source` that still count, and its guesses in flight, together.
    fn counted(&self, source: Source, now: Instant) -> u32 {
        let failures = match self.entries.get(&source) {
            Some(entry) if !self.forgotten(entry, now) => entry.failures,
            _ => 0,
        };
        failures.saturating_add(self.in_flight(source))
    }

    fn forgotten(&self, entry: &Entry, now: Instant) -> bool {
        entry.locked_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(entry.last_failure) >= self.limits.forget_after
    }

    /// May a connection from `source` handshake now (and, asked again when its init arrives,
    /// be answered)? Refused while locked out, and while its failures and guesses in flight
    /// together have reached the limit (each in flight may still turn out a failure).
    pub fn admit(&mut self, source: Source, now: Instant) -> Admission {
        if let Some(entry) = self.entries.get(&source).copied() {
            if self.forgotten(&entry, now) {
                self.entries.remove(&source);
            } else if let Some(until) = entry.locked_until.filter(|until| *until > now) {
                let left = until.saturating_duration_since(now);
                // Whole seconds, rounded up, so the client never comes back too early.
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Admission::Refuse {
                    retry_after_secs: secs.clamp(1, u16::MAX.into()) as u16,
                };
            }
        }
        // Only with a guess in flight: after a lockout the failures alone stay at the limit,
        // and one more guess (which then locks again) is allowed.
        if self.in_flight(source) > 0 && self.counted(source, now) >= self.limits.max_failures {
            return Admission::Refuse {
                retry_after_secs: IN_FLIGHT_RETRY_SECS,
            };
        }
        Admission::Allow
    }

    /// How long to hold back the answer to a guess from `source` (the handshake response,
    /// which tells a guesser whether it guessed right): the delay its earlier failures and
    /// its guesses in flight earned.
    pub fn answer_delay(&self, source: Source, now: Instant) -> Duration {
        reject_delay(self.counted(source, now))
    }

    /// The answer to a guess from `source` goes out now: from here on it counts as a failure
    /// until it settles ([`Self::confirmed`] or [`Self::unconfirmed_failed`], exactly once).
    /// Returns how long to hold the answer back ([`Self::answer_delay`] before counting it).
    pub fn answering(&mut self, source: Source, now: Instant) -> Duration {
        let delay = self.answer_delay(source, now);
        let count = self.in_flight.entry(source).or_insert(0);
        *count = count.saturating_add(1);
        delay
    }

    /// A guess in flight from `source` was confirmed (its first session frame opened): not a
    /// failure. Its earlier failures stay as they were.
    pub fn confirmed(&mut self, source: Source) {
        self.settle(source);
    }

    /// A guess in flight from `source` was not confirmed (a first frame that did not open, a
    /// close, a cut, the timeout): it becomes a real failure; see [`Self::failed`].
    pub fn unconfirmed_failed(&mut self, source: Source, now: Instant) -> Failure {
        self.settle(source);
        self.failed(source, now)
    }

    fn settle(&mut self, source: Source) {
        if let Some(count) = self.in_flight.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_flight.remove(&source);
            }
        }
    }

    /// A handshake from `source` failed authentication: how long to hold its `Reject(1)`
    /// back, and the lockout it starts, if any.
    pub fn failed(&mut self, source: Source, now: Instant) -> Failure {
        match self.entries.get(&source) {
            Some(entry) if self.forgotten(entry, now) => {
                self.entries.remove(&source);
            }
            Some(_) => {}
            None => self.make_room(now),
        }
        let limits = self.limits;
        let entry = self.entries.entry(source).or_insert(Entry {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        let delay = reject_delay(entry.failures);
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let locked = entry.locked_until.is_some_and(|until| until > now);
        let lockout = (entry.failures >= limits.max_failures && !locked).then(|| {
            entry.locked_until = Some(now + limits.lockout);
            limits.lockout
        });
        Failure {
            reject_delay: delay,
            lockout,
        }
    }

    /// Make room for one more source: drop forgotten entries, then, if still full, an eighth
    /// of the table at once — sources not locked out first, the longest idle first — so that
    /// a guesser with many sources (IPv6 /64s are cheap) neither pays one full scan of the
    /// table per failure under the lock every connection takes, nor flushes a locked-out
    /// source (its own) before the others.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.limits.max_sources {
            return;
        }
        let limits = self.limits;
        self.entries.retain(|_, e| {
            !(e.locked_until.is_none_or(|until| until <= now)
                && now.saturating_duration_since(e.last_failure) >= limits.forget_after)
        });
        let max = self.limits.max_sources.max(1);
        if self.entries.len() < max {
            return;
        }
        let excess = self.entries.len() + 1 - max;
        let batch = (max / 8).max(excess).min(self.entries.len());
        let mut by_age: Vec<((bool, Instant), Source)> = self
            .entries
            .iter()
            .map(|(source, e)| {
                let locked = e.locked_until.is_some_and(|until| until > now);
                ((locked, e.last_failure), *source)
            })
            .collect();
        if batch < by_age.len() {
            by_age.select_nth_unstable(batch - 1);
        }
        for (_, source) in &by_age[..batch] {
            self.entries.remove(source);
        }
    }
}

/// The delay before a `Reject(1)` after `failures` earlier failures.
fn reject_delay(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => FIRST_REJECT_DELAY
            .saturating_mul(1u32 << extra.min(16))
            .min(MAX_REJECT_DELAY),
    }
}

/// A token bucket for log lines: a burst of [`LogLimit::BURST`], then one per second.
#[derive(Debug)]
pub struct LogLimit {
    tokens: f64,
    at: Option<Instant>,
    suppressed: u64,
}

impl Default for LogLimit {
    fn default() -> Self {
        Self {
            tokens: Self::BURST,
            at: None,
            suppressed: 0,
        }
    }
}

impl LogLimit {
    pub const BURST: f64 = 5.0;

    /// May a line be logged now? `Some(n)`: yes, and `n` lines were left out since the last one.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + refill).min(Self::BURST);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::of(text.parse().unwrap())
    }

    fn limits() -> HandshakeThrottle {
        HandshakeThrottle {
            max_failures: 6,
            lockout: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
            max_sources: 3,
        }
    }

    #[test]
    fn failures_grow_the_delay_then_lock_the_source_out_and_only_it() {
        let mut t = FailedHandshakes::new(limits());
        let (attacker, other) = (source("192.0.2.1"), source("192.0.2.2"));
        let now = Instant::now();
        let mut delays = Vec::new();
        for i in 1..=6 {
            assert_eq!(t.admit(attacker, now), Admission::Allow, "failure {i}");
            let failure = t.failed(attacker, now);
            assert_eq!(failure.lockout.is_some(), i == 6, "failure {i}");
            delays.push(failure.reject_delay);
        }
        let ms = |d: &Duration| d.as_millis() as u64;
        assert_eq!(
            delays.iter().map(ms).collect::<Vec<_>>(),
            [0, 0, 0, 250, 500, 1000]
        );
        assert_eq!(
            t.admit(attacker, now + Duration::from_millis(500)),
            Admission::Refuse {
                retry_after_secs: 30
            },
            "rounded up"
        );
        assert_eq!(t.admit(other, now), Admission::Allow);
        // After the lockout one more failure locks it again.
        let later = now + Duration::from_secs(31);
        assert_eq!(t.admit(attacker, later), Admission::Allow);
        assert!(t.failed(attacker, later).lockout.is_some());
        // Long quiet: forgotten, and the next failure is answered at once.
        let much_later = later + Duration::from_secs(31 + 600);
        assert_eq!(t.admit(attacker, much_later), Admission::Allow);
        assert_eq!(
            t.failed(attacker, much_later + Duration::from_secs(1)),
            Failure {
                reject_delay: Duration::ZERO,
                lockout: None
            }
        );
        assert_eq!(reject_delay(100), MAX_REJECT_DELAY);
    }

    /// Guesses in flight count as failures for the delay and the lockout from the moment
    /// they are answered; a confirmed one is taken back without erasing an earlier failure,
    /// an unconfirmed one becomes a real failure.
    #[test]
    fn guesses_in_flight_count_until_settled_and_a_confirm_takes_back_only_its_own() {
        let mut t = FailedHandshakes::new(limits());
        let (attacker, other) = (source("192.0.2.1"), source("192.0.2.2"));
        let now = Instant::now();
        let ms = |d: Duration| d.as_millis() as u64;
        // Two guesses answered at once, before any failure: the second already pays for the
        // first.
        for _ in 0..3 {
            t.failed(attacker, now);
        }
        assert_eq!(ms(t.answering(attacker, now)), 250);
        assert_eq!(ms(t.answering(attacker, now)), 500);
        assert_eq!(ms(t.answer_delay(attacker, now)), 1000);
        assert_eq!(t.in_flight(attacker), 2);
        // One confirms: only it is taken back, the 3 earlier failures stay.
        t.confirmed(attacker);
        assert_eq!(ms(t.answer_delay(attacker, now)), 500);
        t.confirmed(attacker);
        assert_eq!(ms(t.answer_delay(attacker, now)), 250);
        assert_eq!(t.entries[&attacker].failures, 3);
        assert_eq!(t.in_flight(attacker), 0);
        assert!(t.in_flight.is_empty(), "nothing kept at zero");
        // Five failures and one guess in flight reach the limit (6): refused until it
        // settles; confirmed, the source may go on.
        t.failed(attacker, now);
        t.failed(attacker, now);
        t.answering(attacker, now);
        let in_flight_refusal = Admission::Refuse {
            retry_after_secs: IN_FLIGHT_RETRY_SECS,
        };
        assert_eq!(t.admit(attacker, now), in_flight_refusal);
        assert_eq!(t.admit(other, now), Admission::Allow, "only its own");
        t.confirmed(attacker);
        assert_eq!(t.admit(attacker, now), Admission::Allow);
        // Not confirmed: a real failure, which locks the source out.
        t.answering(attacker, now);
        let failure = t.unconfirmed_failed(attacker, now);
        assert_eq!(failure.lockout, Some(Duration::from_secs(30)));
        assert_eq!(t.in_flight(attacker), 0);
        assert_eq!(
            t.admit(attacker, now),
            Admission::Refuse {
                retry_after_secs: 30
            }
        );
        // After the lockout the failures alone do not refuse (one more guess is allowed),
        // but that guess in flight does, until it settles.
        let later = now + Duration::from_secs(31);
        assert_eq!(t.admit(attacker, later), Admission::Allow);
        t.answering(attacker, later);
        assert_eq!(t.admit(attacker, later), in_flight_refusal);
        t.confirmed(attacker);
        assert_eq!(t.admit(attacker, later), Admission::Allow);
        // Settling more than was answered changes nothing.
        t.confirmed(attacker);
        assert_eq!(t.entries[&attacker].failures, 6);
    }

    /// Making room in a full table of failures never drops a guess in flight.
    #[test]
    fn guesses_in_flight_survive_a_full_table() {
        let mut t = FailedHandshakes::new(HandshakeThrottle {
            max_failures: 1,
            ..limits()
        });
        let now = Instant::now();
        let guesser = source("10.0.0.1");
        t.answering(guesser, now);
        for i in 2..10 {
            t.failed(source(&format!("10.0.0.{i}")), now);
        }
        assert!(matches!(t.admit(guesser, now), Admission::Refuse { .. }));
        assert!(t.unconfirmed_failed(guesser, now).lockout.is_some());
    }

    #[test]
    fn the_table_is_bounded_dropping_the_longest_idle_source() {
        let mut t = FailedHandshakes::new(limits());
        let now = Instant::now();
        for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .enumerate()
        {
            t.failed(source(ip), now + Duration::from_secs(i as u64));
            assert!(t.len() <= 3);
        }
        assert!(
            !t.entries.contains_key(&source("10.0.0.1")),
            "oldest dropped"
        );
        assert!(t.entries.contains_key(&source("10.0.0.3")));
        assert!(t.entries.contains_key(&source("10.0.0.4")));
        // An IPv6 /64 is one source.
        t.failed(source("2001:db8::1"), now);
        t.failed(source("2001:db8::2"), now);
        assert_eq!(t.entries[&source("2001:db8::3")].failures, 2);
    }

    /// A guesser with many sources cannot flush its own locked-out source by failing from new
    /// ones, and a full table does not cost one scan per new source.
    #[test]
    fn a_full_table_drops_unlocked_sources_first_and_in_batches() {
        let mut t = FailedHandshakes::new(HandshakeThrottle {
            max_failures: 3,
            max_sources: 64,
            ..limits()
        });
        let now = Instant::now();
        let locked = source("192.0.2.1");
        for _ in 0..3 {
            t.failed(locked, now);
        }
        assert!(matches!(t.admit(locked, now), Admission::Refuse { .. }));
        // The attacker fails once from each of many other sources, all newer.
        for i in 0..1000u32 {
            let ip = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64));
            t.failed(Source::of(ip.into()), now + Duration::from_millis(1));
            assert!(t.len() <= 64);
        }
        assert!(
            matches!(
                t.admit(locked, now + Duration::from_secs(1)),
                Admission::Refuse { .. }
            ),
            "the locked-out source is still refused"
        );
        // Full again: the next new source drops a batch, not one.
        let mut i = 0u8;
        while t.len() < 64 {
            t.failed(
                source(&format!("198.51.100.{i}")),
                now + Duration::from_secs(1),
            );
            i += 1;
        }
        t.failed(source("203.0.113.1"), now + Duration::from_secs(2));
        assert_eq!(t.len(), 64 - 64 / 8 + 1);
    }

    #[test]
    fn the_log_is_rate_limited_and_counts_what_it_left_out() {
        let mut log = LogLimit::default();
        let now = Instant::now();
        let allowed = (0..20).filter(|_| log.allow(now).is_some()).count();
        assert_eq!(allowed, LogLimit::BURST as usize);
        assert_eq!(log.allow(now + Duration::from_secs(1)), Some(15));
    }
}
