//! Reconnect delays: exponential backoff with jitter.
//!
//! Attempt 1 waits 150–300 ms, each further attempt doubles the ceiling, capped at 5 s; the
//! actual delay is drawn uniformly from the upper half of the ceiling ("equal jitter"), so a
//! room full of clients that lost the same server do not all come back in the same millisecond.

use std::time::Duration;

use rand::Rng;

/// Ceiling of the first retry delay.
pub const FIRST_DELAY: Duration = Duration::from_millis(300);
/// Largest delay between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The delay ceiling before attempt `attempt` (1-based).
pub fn ceiling(attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1u32 << shift).min(MAX_DELAY)
}

/// A jittered delay before attempt `attempt`: uniform in `[ceiling/2, ceiling]`.
pub fn delay(attempt: u32, rng: &mut impl Rng) -> Duration {
    let ceiling = ceiling(attempt);
    let half = ceiling / 2;
    half + rng.gen_range(Duration::ZERO..=half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        assert_eq!(ceiling(1), Duration::from_millis(300));
        assert_eq!(ceiling(2), Duration::from_millis(600));
        assert_eq!(ceiling(4), Duration::from_millis(2400));
        assert_eq!(ceiling(5), Duration::from_millis(4800));
        assert_eq!(ceiling(6), MAX_DELAY);
        assert_eq!(ceiling(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut rng = rand::thread_rng();
        for attempt in 1..10 {
            for _ in 0..100 {
                let d = delay(attempt, &mut rng);
                assert!(d >= ceiling(attempt) / 2 && d <= ceiling(attempt), "{d:?}");
            }
        }
        assert!(
            delay(1, &mut rng) < Duration::from_secs(1),
            "first retry well under a second"
        );
    }
}
