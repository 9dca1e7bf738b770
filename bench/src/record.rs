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
    /// Messages sent so far by all clients.
    pub sent: u64,
    /// The most messages of one client seen out at once: sent, and not yet back on its own
    /// connection when one of them came back (targets that deliver a sender's own copy).
    pub max_in_flight: u64,
    /// Set at the end of a timed run: senders send nothing more.
    pub stop: bool,
    /// Latency is recorded for messages sent in this span (nanoseconds since `base`): a timed
    /// run's measured part, not its warm-up nor its drain.
    measured: std::ops::Range<u64>,
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
            sent: 0,
            max_in_flight: 0,
            stop: false,
            measured: 0..u64::MAX,
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
        if self.measured.contains(&header.sent_ns) {
            let micros = now_ns.saturating_sub(header.sent_ns) / 1000;
            let _ = self.latency.record(micros.max(1));
        }
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

    /// Record latency only for messages sent from `from` to `to` (Instants).
    pub fn measure_between(&mut self, from: Instant, to: Instant) {
        let ns = |t: Instant| t.saturating_duration_since(self.base).as_nanos() as u64;
        self.measured = ns(from)..ns(to);
    }

    pub fn record_lag(&mut self, micros: u64) {
        let _ = self.lag.record(micros.max(1));
    }
}
