//! The client's throttle on handshake answers that fail their check, per room address for the
//! life of the process.
//!
//! Someone on the path (ARP spoofing) who does not hold the passphrase can play the server:
//! its message 2 verifies for the client only if its one passphrase guess was right, and the
//! client's reaction (a join, or a quick reconnect) tells it which. The stop after
//! [`PASSPHRASE_VERDICTS`](super::PASSPHRASE_VERDICTS) refusals in a row does not bound that,
//! as the attacker can let a connection through to the real server between guesses; so, like
//! the server with failed handshakes, the client slows down the answers it gets: the first
//! [`FREE_FAILURES`] failures take the usual reconnect backoff, each further one adds a wait
//! that starts at [`FIRST_EXTRA_WAIT`] and doubles up to [`MAX_EXTRA_WAIT`] — about one guess a
//! minute. A completed handshake does not reset the count; [`FORGET_AFTER`] without a failure
//! does.
//!
//! It also remembers which keys (passphrase and salt, as a [`KeyTag`]) completed a handshake
//! at the address: under such a key a failing answer cannot mean a wrong passphrase, only
//! interference.
//!
//! The logic is pure (time comes in as an argument); [`for_address`] hands out the
//! process-wide state of one address, shared by every client of that address.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cipher::Key;
use crate::identity::pin_address;

/// Failing answers that take only the usual backoff.
pub const FREE_FAILURES: u32 = 3;
/// The extra wait after the first failure beyond [`FREE_FAILURES`]; it doubles per failure.
pub const FIRST_EXTRA_WAIT: Duration = Duration::from_secs(1);
/// The longest extra wait.
pub const MAX_EXTRA_WAIT: Duration = Duration::from_secs(60);
/// The count is forgotten after this long without a failing answer.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Proven keys remembered per address (a room changes its salt rarely).
const PROVEN_KEYS: usize = 8;

/// Names a derived room key (one passphrase with one salt) without holding it: a hash of it
/// under its own label. Never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyTag([u8; 32]);

impl KeyTag {
    /// The tag of the room key `w` (Argon2id of the passphrase and the salt).
    pub fn of(w: &Key) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tertulia proven room key v2\0");
        hash.update(w);
        Self(hash.finalize().into())
    }
}

impl fmt::Debug for KeyTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyTag(<secret>)")
    }
}

/// The extra wait after the `failure`th failing answer in a row (1-based) before the next
/// attempt: none for the first [`FREE_FAILURES`], then 1 s, 2 s, 4 s, … up to 60 s.
pub fn extra_wait(failure: u32) -> Duration {
    match failure.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        Some(doublings) => FIRST_EXTRA_WAIT
            .saturating_mul(1u32 << doublings.min(16))
            .min(MAX_EXTRA_WAIT),
    }
}

/// One address's failing answers and proven keys.
#[derive(Debug, Default)]
pub struct AnswerThrottle {
    failures: u32,
    last_failure: Option<Instant>,
    /// Most recent first.
    proven: VecDeque<KeyTag>,
}

impl AnswerThrottle {
    /// Failing answers still counted at `now`.
    pub fn failures(&self, now: Instant) -> u32 {
        match self.last_failure {
            Some(last) if now.saturating_duration_since(last) < FORGET_AFTER => self.failures,
            _ => 0,
        }
    }

    /// An answer failed its check at `now`: count it; returns the extra wait before the next
    /// attempt (zero for the first few).
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures(now).saturating_add(1);
        self.last_failure = Some(now);
        extra_wait(self.failures)
    }

    /// A handshake under `key` completed at this address.
    pub fn prove(&mut self, key: KeyTag) {
        self.proven.retain(|k| *k != key);
        self.proven.push_front(key);
        self.proven.truncate(PROVEN_KEYS);
    }

    /// Has a handshake under `key` completed at this address?
    pub fn is_proven(&self, key: &KeyTag) -> bool {
        self.proven.contains(key)
    }
}

/// An address's throttle, shared by the clients of that address.
pub type SharedThrottle = Arc<Mutex<AnswerThrottle>>;

/// The process-wide throttle of `addr` (in the form it is pinned under: `Host:5555` and
/// `host:5555` are one address).
pub fn for_address(addr: &str) -> SharedThrottle {
    static ALL: OnceLock<Mutex<HashMap<String, SharedThrottle>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    all.entry(pin_address(addr)).or_default().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extra_wait_starts_after_three_and_doubles_to_a_minute() {
        let waits: Vec<u64> = (1..=12).map(|n| extra_wait(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(extra_wait(u32::MAX), MAX_EXTRA_WAIT);
    }

    #[test]
    fn failures_are_forgotten_after_fifteen_quiet_minutes() {
        let start = Instant::now();
        let mut t = AnswerThrottle::default();
        for i in 0..5 {
            t.failed(start + Duration::from_secs(i));
        }
        let last = start + Duration::from_secs(4);
        assert_eq!(t.failures(last + FORGET_AFTER - Duration::from_secs(1)), 5);
        assert_eq!(t.failures(last + FORGET_AFTER), 0);
        assert_eq!(t.failed(last + FORGET_AFTER), Duration::ZERO, "starts over");
        assert_eq!(t.failures(last + FORGET_AFTER), 1);
    }

    #[test]
    fn proven_keys_are_remembered_per_key() {
        let (a, b) = (KeyTag::of(&[1; 32]), KeyTag::of(&[2; 32]));
        let mut t = AnswerThrottle::default();
        t.prove(a);
        assert!(t.is_proven(&a) && !t.is_proven(&b));
        for i in 0..PROVEN_KEYS as u8 {
            t.prove(KeyTag::of(&[10 + i; 32]));
        }
        assert!(!t.is_proven(&a), "bounded");
        assert!(!format!("{a:?}").contains(&hex::encode(&a.0[..4])));
    }

    #[test]
    fn one_throttle_per_address_as_pinned() {
        let a = for_address("Throttle-Test.example:5555");
        let b = for_address("throttle-test.example:5555");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &for_address("throttle-test.example:5556")));
    }
}
