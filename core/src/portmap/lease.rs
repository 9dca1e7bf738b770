//! The lease of one port mapping, as a pure state machine: time and the router's answers in,
//! actions out. It never touches a socket; [`super::Mapper`] performs its actions.
//!
//! ```text
//!            start                 Granted                     renew time
//!   Idle ───────────▶ Mapping ───────────────▶ Held ──────────────────────▶ Renewing
//!                       │ Failed                ▲  Granted (extended)          │
//!                       ▼                       └──────────────────────────────┤
//!                    Waiting ── retry time ─▶ Mapping          Failed: again before expiry,
//!                                                               after it: Lost → Waiting
//!   any ── stop ──▶ Removing (if the router holds one) ── Removed ──▶ Done
//! ```
//!
//! A mapping is renewed at half its granted lifetime (RFC 6886 §3.3's advice, and what keeps
//! it alive through one lost renewal). A router whose external address is itself private or
//! shared (double NAT, carrier-grade NAT) cannot make the room reachable from the internet:
//! the mapping is removed and the host is told so, with no retry.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Failure, Method, Status};

/// The soonest a failed renewal is tried again.
pub const MIN_RENEW_RETRY: Duration = Duration::from_secs(1);

/// How the lease is asked for and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lifetime asked of the router (routers may grant less, or more).
    pub lifetime: Duration,
    /// Wait after a first failed mapping before asking again; doubled after each further
    /// failure up to [`LeaseConfig::retry_max`].
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// The default lifetime asked for: one hour (renewed every half hour while hosting).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            lifetime: DEFAULT_LIFETIME,
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(15 * 60),
        }
    }
}

/// What the router granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The router's external address and the port mapped on it.
    pub external: SocketAddr,
    pub method: Method,
    /// `None`: the mapping has no end (a router that grants only permanent mappings).
    pub lifetime: Option<Duration>,
}

/// What happened, told to [`Lease::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin: ask for a mapping.
    Start,
    /// The answer to [`Action::Map`] or [`Action::Renew`]: a mapping.
    Granted(Granted),
    /// The answer to [`Action::Map`] or [`Action::Renew`]: none.
    Failed(Failure),
    /// [`Action::Remove`] is done (deleted, or the router could not be told: either way
    /// there is nothing more to do).
    Removed,
    /// Hosting stops.
    Stop,
    /// The time [`Lease::deadline`] named has come.
    Tick,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Find the router and ask it for a mapping of the listening port.
    Map,
    /// Ask the router that granted the mapping to extend it.
    Renew,
    /// Delete the mapping the router holds.
    Remove,
    /// Tell the host.
    Report(Status),
    /// Nothing more will happen.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Waiting for the answer to a `Map`.
    Mapping,
    Held {
        granted: Granted,
        renew_at: Option<Instant>,
        expires_at: Option<Instant>,
    },
    /// Waiting for the answer to a `Renew`.
    Renewing {
        granted: Granted,
        expires_at: Option<Instant>,
    },
    /// A renewal failed; the mapping still holds until `expires_at`.
    RetryRenew {
        granted: Granted,
        at: Instant,
        expires_at: Option<Instant>,
    },
    /// No mapping; ask again at `at`.
    Waiting {
        at: Instant,
    },
    /// Waiting for the answer to a `Remove`.
    Removing {
        then_done: bool,
    },
    Done,
}

/// One mapping's lifecycle.
#[derive(Debug)]
pub struct Lease {
    config: LeaseConfig,
    phase: Phase,
    /// Failed mappings in a row (for the retry backoff).
    failures: u32,
    /// Whether the host was told the room is reachable (and so must hear when it stops being).
    reported_reachable: bool,
    /// Whether a stop came in while a `Map` or `Renew` was in flight.
    stopping: bool,
}

impl Lease {
    pub fn new(config: LeaseConfig) -> Self {
        Self {
            config,
            phase: Phase::Idle,
            failures: 0,
            reported_reachable: false,
            stopping: false,
        }
    }

    /// When to send [`Input::Tick`] (`None`: only on an answer or a stop).
    pub fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Held { renew_at, .. } => *renew_at,
            Phase::RetryRenew { at, .. } | Phase::Waiting { at } => Some(*at),
            _ => None,
        }
    }

    /// Whether the machine has finished.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Feed one input at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let (phase, actions) = self.step(phase, now, input);
        self.phase = phase;
        actions
    }

    fn step(&mut self, phase: Phase, now: Instant, input: Input) -> (Phase, Vec<Action>) {
        use Action::*;
        match (phase, input) {
            (Phase::Done, _) => (Phase::Done, vec![]),
            (Phase::Removing { then_done }, Input::Removed) => {
                if then_done {
                    (Phase::Done, vec![Report(Status::Removed), Done])
                } else {
                    (Phase::Done, vec![Done])
                }
            }
            (phase @ Phase::Removing { .. }, _) => (phase, vec![]),

            (Phase::Idle, Input::Start) => (Phase::Mapping, vec![Report(Status::Asking), Map]),
            (Phase::Idle, Input::Stop) => (Phase::Done, vec![Done]),

            // An answer to a Map.
            (Phase::Mapping, Input::Granted(granted)) => self.granted(now, granted, true),
            (Phase::Mapping, Input::Failed(failure)) => {
                if self.stopping {
                    return (Phase::Done, vec![Done]);
                }
                self.failures = self.failures.saturating_add(1);
                self.reported_reachable = false;
                let at = now + self.backoff();
                (
                    Phase::Waiting { at },
                    vec![Report(Status::Unreachable(failure))],
                )
            }
            // A stop while the router is being asked: wait for its answer, then undo it.
            (Phase::Mapping, Input::Stop) => {
                self.stopping = true;
                (Phase::Mapping, vec![])
            }

            (Phase::Waiting { at }, Input::Tick) if now >= at => {
                (Phase::Mapping, vec![Report(Status::Asking), Map])
            }
            (Phase::Waiting { .. }, Input::Stop) => (Phase::Done, vec![Done]),

            (
                Phase::Held {
                    granted,
                    renew_at: Some(at),
                    expires_at,
                },
                Input::Tick,
            ) if now >= at => (
                Phase::Renewing {
                    granted,
                    expires_at,
                },
                vec![Renew],
            ),
            (
                Phase::RetryRenew {
                    granted,
                    at,
                    expires_at,
                },
                Input::Tick,
            ) if now >= at => (
                Phase::Renewing {
                    granted,
                    expires_at,
                },
                vec![Renew],
            ),
            (Phase::Held { .. } | Phase::RetryRenew { .. }, Input::Stop) => {
                (Phase::Removing { then_done: true }, vec![Remove])
            }

            // An answer to a Renew.
            (Phase::Renewing { .. }, Input::Granted(granted)) => self.granted(now, granted, false),
            (
                Phase::Renewing {
                    granted,
                    expires_at,
                },
                Input::Failed(failure),
            ) => {
                if self.stopping {
                    return (Phase::Removing { then_done: true }, vec![Remove]);
                }
                match expires_at {
                    Some(end) if now >= end => {
                        // The router forgot it (or never extended it): ask afresh.
                        self.reported_reachable = false;
                        self.failures = 1;
                        let at = now + self.config.retry_min.min(Duration::from_secs(5));
                        (
                            Phase::Waiting { at },
                            vec![Report(Status::Lost {
                                external: granted.external,
                                failure,
                            })],
                        )
                    }
                    Some(end) => {
                        let left = end - now;
                        let at = now + (left / 2).max(MIN_RENEW_RETRY).min(left);
                        (
                            Phase::RetryRenew {
                                granted,
                                at,
                                expires_at,
                            },
                            vec![],
                        )
                    }
                    // A permanent mapping is never renewed; nothing to do.
                    None => (
                        Phase::Held {
                            granted,
                            renew_at: None,
                            expires_at: None,
                        },
                        vec![],
                    ),
                }
            }
            (phase @ Phase::Renewing { .. }, Input::Stop) => {
                self.stopping = true;
                (phase, vec![])
            }

            // Anything else (an early tick, a second start) changes nothing.
            (phase, _) => (phase, vec![]),
        }
    }

    fn granted(&mut self, now: Instant, granted: Granted, first: bool) -> (Phase, Vec<Action>) {
        use Action::*;
        if self.stopping {
            return (Phase::Removing { then_done: true }, vec![Remove]);
        }
        if !is_public(granted.external.ip()) {
            self.reported_reachable = false;
            return (
                Phase::Removing { then_done: false },
                vec![
                    Report(Status::Unreachable(Failure::NotPublic {
                        external: granted.external.ip(),
                    })),
                    Remove,
                ],
            );
        }
        self.failures = 0;
        let (renew_at, expires_at) = match granted.lifetime {
            Some(life) => (Some(now + life / 2), Some(now + life)),
            None => (None, None),
        };
        let report = if first || !self.reported_reachable {
            Status::Reachable {
                external: granted.external,
                method: granted.method,
                lifetime: granted.lifetime,
            }
        } else {
            Status::Renewed {
                external: granted.external,
                lifetime: granted.lifetime,
            }
        };
        self.reported_reachable = true;
        (
            Phase::Held {
                granted,
                renew_at,
                expires_at,
            },
            vec![Report(report)],
        )
    }

    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        self.config
            .retry_min
            .saturating_mul(1 << doublings)
            .min(self.config.retry_max)
    }
}

/// Whether `ip` can be reached from the internet: not private (RFC 1918, IPv6 unique-local),
/// carrier-grade NAT (100.64.0.0/10, shared with the provider's other customers), loopback,
/// link-local, unspecified or multicast. Documentation ranges (192.0.2.0/24, 198.51.100.0/24,
/// 203.0.113.0/24) count as public: test networks use them as their "internet".
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn granted(ip: &str, lifetime: Option<Duration>) -> Granted {
        Granted {
            external: SocketAddr::new(ip.parse().unwrap(), 5555),
            method: Method::Upnp,
            lifetime,
        }
    }

    fn config() -> LeaseConfig {
        LeaseConfig {
            lifetime: HOUR,
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(600),
        }
    }

    #[test]
    fn a_granted_mapping_is_reported_and_renewed_at_half_its_lifetime() {
        let t0 = Instant::now();
        let mut lease = Lease::new(config());
        assert_eq!(
            lease.handle(t0, Input::Start),
            vec![Action::Report(Status::Asking), Action::Map]
        );
        assert_eq!(lease.deadline(), None, "waiting for the router's answer");
        let g = granted("203.0.113.1", Some(HOUR));
        assert_eq!(
            lease.handle(t0, Input::Granted(g)),
            vec![Action::Report(Status::Reachable {
                external: g.external,
                method: Method::Upnp,
                lifetime: Some(HOUR),
            })]
        );
        assert_eq!(lease.deadline(), Some(t0 + HOUR / 2));
        assert!(
            lease.handle(t0 + HOUR / 4, Input::Tick).is_empty(),
            "too early"
        );
        assert_eq!(
            lease.handle(t0 + HOUR / 2, Input::Tick),
            vec![Action::Renew]
        );
        let t1 = t0 + HOUR / 2;
        assert_eq!(
            lease.handle(t1, Input::Granted(g)),
            vec![Action::Report(Status::Renewed {
                external: g.external,
                lifetime: Some(HOUR),
            })]
        );
        assert_eq!(lease.deadline(), Some(t1 + HOUR / 2));
    }

    #[test]
    fn the_granted_lifetime_rules_not_the_one_asked_for() {
        let t0 = Instant::now();
        let mut lease = Lease::new(config());
        lease.handle(t0, Input::Start);
        let short = Duration::from_secs(4);
        lease.handle(t0, Input::Granted(granted("203.0.113.1", Some(short))));
        assert_eq!(lease.deadline(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_permanent_mapping_is_never_renewed_but_is_removed_on_stop() {
        let t0 = Instant::now();
        let mut lease = Lease::new(config());
        lease.handle(t0, Input::Start);
        lease.handle(t0, Input::Granted(granted("198.51.100.7", None)));
        assert_eq!(lease.deadline(), None);
        assert_eq!(lease.handle(t0 + HOUR, Input::Stop), vec![Action::Remove]);
        assert_eq!(
            lease.handle(t0 + HOUR, Input::Removed),
            vec![Action::Report(Status::Removed), Action::Done]
        );
        assert!(lease.is_done());
    }

    #[test]
    fn no_answer_is_reported_and_asked_again_with_backoff() {
        let t0 = Instant::now();
        let mut lease = Lease::new(config());
        lease.handle(t0, Input::Start);
        assert_eq!(
            lease.handle(t0, Input::Failed(Failure::NoAnswer)),
            vec![Action::Report(Status::Unreachable(Failure::NoAnswer))]
        );
        assert_eq!(lease.deadline(), Some(t0 + Duration::from_secs(60)));
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(
            lease.handle(t1, Input::Tick),
            vec![Action::Report(Status::Asking), Action::Map]
        );
        lease.handle(t1, Input::Failed(Failure::NoAnswer));
        assert_eq!(lease.deadline(), Some(t1 + Duration::from_secs(120)));
        let mut t = t1;
        for _ in 0..10 {
            t = lease.deadline().unwrap();
            lease.handle(t, Input::Tick);
            lease.handle(t, Input::Failed(Failure::NoAnswer));
        }
        assert_eq!(
            lease.deadline(),
            Some(t + Duration::from_secs(600)),
            "capped"
        );
        // Stopping with no mapping deletes nothing.
        assert_eq!(lease.handle(t, Input::Stop), vec![Action::Done]);
    }

    #[test]
    fn a_failed_renewal_is_retried_before_expiry_and_the_mapping_lost_after() {
        let t0 = Instant::now();
        let life = Duration::from_secs(100);
        let mut lease = Lease::new(config());
        lease.handle(t0, Input::Start);
        let g = granted("203.0.113.1", Some(life));
        lease.handle(t0, Input::Granted(g));
        let t1 = t0 + Duration::from_secs(50);
        assert_eq!(lease.handle(t1, Input::Tick), vec![Action::Renew]);
        assert!(lease
            .handle(t1, Input::Failed(Failure::NoAnswer))
            .is_empty());
        // Half of the 50 s left.
        assert_eq!(lease.deadline(), Some(t1 + Duration::from_secs(25)));
        let t2 = t1 + Duration::from_secs(25);
        assert_eq!(lease.handle(t2, Input::Tick), vec![Action::Renew]);
        assert!(lease
            .handle(t2, Input::Failed(Failure::NoAnswer))
            .is_empty());
        let t3 = t0 + life;
        lease.handle(lease.deadline().unwrap(), Input::Tick);
        assert_eq!(
            lease.handle(t3, Input::Failed(Failure::NoAnswer)),
            vec![Action::Report(Status::Lost {
                external: g.external,
                failure: Failure::NoAnswer,
            })]
        );
        let at = lease.deadline().unwrap();
        assert_eq!(
            lease.handle(at, Input::Tick),
            vec![Action::Report(Status::Asking), Action::Map]
        );
        // Granted again: reachable (told afresh, not "renewed").
        assert!(matches!(
            lease.handle(at, Input::Granted(g)).as_slice(),
            [Action::Report(Status::Reachable { .. })]
        ));
    }

    #[test]
    fn a_stop_while_asking_undoes_the_answer() {
        let t0 = Instant::now();
        let mut lease = Lease::new(config());
        lease.handle(t0, Input::Start);
        assert!(lease.handle(t0, Input::Stop).is_empty());
        assert_eq!(
            lease.handle(t0, Input::Granted(granted("203.0.113.1", Some(HOUR)))),
            vec![Action::Remove]
        );
        assert_eq!(
            lease.handle(t0, Input::Removed),
            vec![Action::Report(Status::Removed), Action::Done]
        );
        let mut failed = Lease::new(config());
        failed.handle(t0, Input::Start);
        failed.handle(t0, Input::Stop);
        assert_eq!(
            failed.handle(t0, Input::Failed(Failure::NoAnswer)),
            vec![Action::Done]
        );
    }

    #[test]
    fn a_stop_while_renewing_removes_the_mapping() {
        let t0 = Instant::now();
        let mut lease = Lease::new(config());
        lease.handle(t0, Input::Start);
        lease.handle(t0, Input::Granted(granted("203.0.113.1", Some(HOUR))));
        lease.handle(t0 + HOUR / 2, Input::Tick);
        assert!(lease.handle(t0 + HOUR / 2, Input::Stop).is_empty());
        assert_eq!(
            lease.handle(t0 + HOUR / 2, Input::Failed(Failure::NoAnswer)),
            vec![Action::Remove]
        );
    }

    #[test]
    fn a_private_or_shared_external_address_is_not_the_internet() {
        for ip in ["192.168.1.1", "10.0.0.1", "100.64.3.4", "172.16.0.9"] {
            let t0 = Instant::now();
            let mut lease = Lease::new(config());
            lease.handle(t0, Input::Start);
            assert_eq!(
                lease.handle(t0, Input::Granted(granted(ip, Some(HOUR)))),
                vec![
                    Action::Report(Status::Unreachable(Failure::NotPublic {
                        external: ip.parse().unwrap()
                    })),
                    Action::Remove
                ],
                "{ip}"
            );
            assert_eq!(lease.handle(t0, Input::Removed), vec![Action::Done]);
            assert_eq!(lease.deadline(), None, "no retry: it would be the same");
        }
    }

    #[test]
    fn documentation_addresses_count_as_public() {
        for ip in [
            "203.0.113.1",
            "198.51.100.2",
            "192.0.2.3",
            "8.8.8.8",
            "2001:db8::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.1.1",
            "100.127.0.1",
            "fd00::1",
            "fe80::1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("100.128.0.1".parse().unwrap()), "past 100.64/10");
    }
}
