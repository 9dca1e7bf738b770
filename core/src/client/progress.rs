//! How often a transfer reports [`FileProgress`](super::ClientEvent::FileProgress): when it
//! starts or resumes, when it ends, and in between at most every ~1 % and 250 ms, so a
//! 100 MiB transfer says a hundred lines at most, not two thousand. Pure (time is passed in).

use std::time::{Duration, Instant};

/// Least time between two in-between reports.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The last report of one transfer.
#[derive(Debug, Clone, Default)]
pub struct ProgressGate {
    last: Option<(u64, Instant)>,
}

impl ProgressGate {
    /// Report now no matter what (a start or a resume): remembered as the last report.
    pub fn force(&mut self, done: u64, now: Instant) {
        self.last = Some((done, now));
    }

    /// Is `done` of `size` worth reporting at `now`? If so it is remembered as reported.
    pub fn due(&mut self, done: u64, size: u64, now: Instant) -> bool {
        let due = match self.last {
            None => true,
            Some((_, _)) if done >= size => true,
            Some((last_done, at)) => {
                let step = (size / 100).max(1);
                done.saturating_sub(last_done) >= step
                    && now.saturating_duration_since(at) >= PROGRESS_INTERVAL
            }
        };
        if due {
            self.last = Some((done, now));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_spaced_by_percent_and_time_but_the_end_always_shows() {
        let t0 = Instant::now();
        let mut gate = ProgressGate::default();
        assert!(gate.due(0, 1000, t0));
        assert!(!gate.due(5, 1000, t0 + PROGRESS_INTERVAL), "under 1 %");
        assert!(!gate.due(50, 1000, t0), "too soon");
        assert!(gate.due(50, 1000, t0 + PROGRESS_INTERVAL));
        assert!(gate.due(1000, 1000, t0 + PROGRESS_INTERVAL), "the end");
        gate.force(0, t0);
        assert!(!gate.due(100, 1000, t0));
    }
}
