//! What the load generator measures: deliveries (verified), order, latency and schedule lag.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::payload::Header;

/// Shared by every client of one run (the load generator is single-threaded).
pub struct Recorder {
    base: Instant,
    clients: usize,
    pub deliveries: u64,
    pub corrupt: u64,
    pub out_of_order: u64,
    /// Latency, microseconds.
    pub latency: Histogram<u64>,
    /// Rate mode: how late each send was against its schedule, microseconds.
    pub lag: Histogram<u64>,
    /// Per receiver, per sender: the highest sequence number seen + 1 (0 = none yet).
    next_seq: Vec<u32>,
    /// When the last delivery was received, nanoseconds since `base`.
    last_delivery_ns: u64,
}

pub type Shared = Rc<RefCell<Recorder>>;

impl Recorder {
    pub fn new(base: Instant, clients: usize) -> Shared {
        Rc::new(RefCell::new(Self {
            base,
            clients,
            deliveries: 0,
            corrupt: 0,
            out_of_order: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram"),
            lag: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram"),
            next_seq: vec![0; clients * clients],
            last_delivery_ns: 0,
        }))
    }

    /// Nanoseconds since the run's clock base (the payload timestamp).
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Receiver `to` got message `header` from another client; `now_ns` is the receive time.
    pub fn deliver(&mut self, to: usize, header: Header, now_ns: u64) {
        let from = header.sender as usize;
        if from >= self.clients {
            self.corrupt += 1;
            return;
        }
        let slot = &mut self.next_seq[to * self.clients + from];
        if header.seq < *slot {
            self.out_of_order += 1;
        }
        *slot = (*slot).max(header.seq + 1);
        self.deliveries += 1;
        let micros = now_ns.saturating_sub(header.sent_ns) / 1000;
        let _ = self.latency.record(micros.max(1));
        self.last_delivery_ns = self.last_delivery_ns.max(now_ns);
    }

    /// When the last delivery was received (or the run started, before any).
    pub fn last_delivery(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_delivery_ns)
    }

    /// Count "no deliveries" from `at` (the start of the measured part of a run).
    pub fn reset_last_delivery(&mut self, at: Instant) {
        self.last_delivery_ns = at.saturating_duration_since(self.base).as_nanos() as u64;
    }

    /// Messages each receiver got (for diagnosing a run).
    pub fn per_receiver(&self) -> Vec<u64> {
        self.next_seq
            .chunks(self.clients)
            .map(|row| row.iter().map(|&n| n as u64).sum())
            .collect()
    }

    pub fn record_lag(&mut self, micros: u64) {
        let _ = self.lag.record(micros.max(1));
    }
}
