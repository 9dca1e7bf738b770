//! Router port mapping: make a hosted room reachable from the internet by asking the home
//! router to forward its TCP port, over UPnP-IGD ([`upnp`], `igd-next`) or PCP / NAT-PMP
//! ([`pmp`], `crab_nat`). Not wire protocol: nothing here is seen by members.
//!
//! ## Layout
//! - [`lease`]: the pure state machine of one mapping (ask, renew at half the lifetime, ask
//!   again after losing it, remove on stop); time and answers in, actions out.
//! - [`gateway`]: the default gateway and this host's address facing it.
//! - [`upnp`], [`pmp`]: the thin I/O of each protocol.
//! - [`check`]: the self-check that the room answers at its external address.
//! - [`record`]: the mapping held, recorded in the data directory, so that one left behind by
//!   a crash is deleted at the next start.
//! - [`Mapper`] (here): the task that performs the lease's actions and reports [`Update`]s.
//!
//! A mapping failure never stops hosting: the host is told why ([`Failure`]) and what to do
//! instead, and the room goes on serving the LAN.

pub mod check;
pub mod gateway;
pub mod lease;
pub mod pmp;
pub mod record;
pub mod upnp;

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use check::Check;
pub use lease::{is_public, LeaseConfig, DEFAULT_LIFETIME};
use lease::{Action, Granted, Input, Lease};

/// Longest router's reason kept (a router's error text is untrusted: shown to the host, logged).
pub const MAX_REASON_BYTES: usize = 200;

/// A router's words made safe to show: control characters dropped, cut to
/// [`MAX_REASON_BYTES`] at a character boundary.
pub fn bounded_reason(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_REASON_BYTES {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// How long stopping waits for the router to delete the mapping.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(8);
/// Updates waiting for the host to read them (each a few dozen bytes; the mapper waits when
/// the host is behind rather than dropping one).
pub const UPDATE_QUEUE: usize = 16;
/// Longest lifetime asked for (a week: what IGDv2 routers grant at most).
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The protocol a mapping was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Upnp,
    Pcp,
    NatPmp,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Upnp => "UPnP",
            Method::Pcp => "PCP",
            Method::NatPmp => "NAT-PMP",
        })
    }
}

/// Which protocols to ask the router in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// UPnP-IGD, then PCP / NAT-PMP.
    #[default]
    Auto,
    Upnp,
    /// PCP, then NAT-PMP if the router speaks only that.
    Pcp,
    NatPmp,
}

/// Why the room is not reachable from the internet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Failure {
    /// No router answered UPnP, PCP or NAT-PMP (not there, or turned off).
    #[error("your router did not answer UPnP, PCP or NAT-PMP")]
    NoAnswer,
    /// No route to any router (a computer on no network, or on a VPN only).
    #[error("this computer has no router to ask (no default gateway)")]
    NoGateway,
    /// The router answered and refused.
    #[error("your router refused the port mapping ({method}: {reason})")]
    Refused { method: Method, reason: String },
    /// The request could not even be sent.
    #[error("the network refused the request: {0}")]
    Network(String),
    /// The router's own internet address is private or shared (another router in front of
    /// it, or the provider's carrier-grade NAT): a mapping would not reach the internet.
    #[error("your router's internet address {external} is not public (another router or your provider's NAT is in front of it)")]
    NotPublic { external: IpAddr },
    /// A device other than the default gateway answered UPnP: it was ignored (it could name
    /// any address as "the router's", and receive the mapping).
    #[error(
        "a device at {answered} answered UPnP but it is not your router ({router}); it was ignored"
    )]
    NotTheRouter { answered: IpAddr, router: Ipv4Addr },
}

/// What the host is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Asking the router.
    Asking,
    /// Reachable from the internet at `external` (until stopped; renewed meanwhile).
    Reachable {
        external: SocketAddr,
        method: Method,
        /// `None`: a permanent mapping (removed when hosting stops).
        lifetime: Option<Duration>,
    },
    /// The lease was extended (the external address may have changed).
    Renewed {
        external: SocketAddr,
        lifetime: Option<Duration>,
    },
    /// What the self-check found at `external`.
    Checked { external: SocketAddr, check: Check },
    /// Not reachable from the internet, and why; asked again later unless it is a
    /// [`Failure::NotPublic`].
    Unreachable(Failure),
    /// The router stopped honouring the mapping (renewals failed until it expired); asking
    /// again.
    Lost {
        external: SocketAddr,
        failure: Failure,
    },
    /// The mapping was deleted (hosting stopped).
    Removed,
}

/// A [`Status`] and the address the router forwards to (or should: the LAN address facing
/// it, to forward by hand), once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub status: Status,
    pub internal: Option<SocketAddr>,
}

/// What to map.
#[derive(Debug, Clone)]
pub struct MapperConfig {
    /// The room's listening port (the external port asked for is the same).
    pub port: u16,
    /// The listener's address: unspecified (`0.0.0.0`, `[::]`) means this host's address
    /// facing the router; a specific one is used as it is.
    pub listen_ip: IpAddr,
    pub via: Via,
    pub lease: LeaseConfig,
    /// Where to record the mapping while it is held ([`record`]; `None`: a room kept in
    /// memory, nothing recorded). A mapping recorded there by a run that did not delete it is
    /// deleted first.
    pub record: Option<std::path::PathBuf>,
}

/// The mapping task of one hosted room. [`Mapper::stop`] deletes the mapping.
pub struct Mapper {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Mapper {
    /// Start asking the router; updates arrive on the receiver, which must be read.
    pub fn start(config: MapperConfig) -> (Mapper, mpsc::Receiver<Update>) {
        let (tx, rx) = mpsc::channel(UPDATE_QUEUE);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(config, stop.clone(), tx));
        (Mapper { stop, task }, rx)
    }

    /// Stop renewing and delete the mapping (waiting at most [`STOP_TIMEOUT`]).
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(STOP_TIMEOUT, &mut task).await.is_err() {
            warn!("the router did not confirm deleting the port mapping in time");
            task.abort();
        }
    }
}

/// The mapping as the router holds it.
enum Held {
    Upnp {
        router: upnp::Router,
        external_port: u16,
    },
    Pmp {
        held: pmp::Held,
        gateway: Ipv4Addr,
    },
}

struct Io {
    config: MapperConfig,
    held: Option<Held>,
    internal: Option<SocketAddr>,
}

fn lifetime_secs(lease: &LeaseConfig) -> u32 {
    u32::try_from(lease.lifetime.min(MAX_LIFETIME).as_secs())
        .unwrap_or(u32::MAX)
        .max(1)
}

impl Io {
    /// Record the mapping held now (see [`record`]).
    fn record_held(&self) {
        let (Some(path), Some(held), Some(internal)) =
            (&self.config.record, &self.held, self.internal)
        else {
            return;
        };
        let rec = match held {
            Held::Upnp {
                router,
                external_port,
            } => record::Record {
                router: router.addr(),
                protocol: "TCP".into(),
                method: record::RecordMethod::Upnp,
                external_port: *external_port,
                internal,
                pcp_nonce: None,
            },
            Held::Pmp { held, gateway } => record::Record {
                router: IpAddr::V4(*gateway),
                protocol: "TCP".into(),
                method: held.method.into(),
                external_port: held.external.port(),
                internal,
                pcp_nonce: held.pcp_nonce(),
            },
        };
        record::write(path, &rec);
    }

    /// The address to forward to, given the router's address.
    fn internal_towards(&mut self, router: IpAddr) -> Result<SocketAddr, Failure> {
        let ip = if self.config.listen_ip.is_unspecified() {
            gateway::local_address_towards(router).map_err(|e| Failure::Network(e.to_string()))?
        } else {
            self.config.listen_ip
        };
        let internal = SocketAddr::new(ip, self.config.port);
        self.internal = Some(internal);
        Ok(internal)
    }

    async fn map(&mut self) -> Input {
        let lifetime = lifetime_secs(&self.config.lease);
        let port = self.config.port;
        let mut found_router = None;
        let mut failures = Vec::new();
        let default_gateway = gateway::default_gateway();
        if matches!(self.config.via, Via::Auto | Via::Upnp) {
            let bind = Some(self.config.listen_ip).filter(|ip| !ip.is_unspecified());
            match upnp::discover(bind, default_gateway).await {
                Ok(router) => {
                    found_router = Some(router.addr());
                    match self.internal_towards(router.addr()) {
                        Ok(internal) => match upnp::map(&router, port, internal, lifetime).await {
                            Ok((external, granted)) => {
                                self.held = Some(Held::Upnp {
                                    router,
                                    external_port: external.port(),
                                });
                                self.record_held();
                                return Input::Granted(Granted {
                                    external,
                                    method: Method::Upnp,
                                    lifetime: granted,
                                });
                            }
                            Err(e) => failures.push(e),
                        },
                        Err(e) => failures.push(e),
                    }
                }
                Err(e) => failures.push(e),
            }
        }
        if matches!(self.config.via, Via::Auto | Via::Pcp | Via::NatPmp) {
            let gateway = default_gateway.or(match found_router {
                Some(IpAddr::V4(v4)) => Some(v4),
                _ => None,
            });
            match gateway {
                None => failures.push(Failure::NoGateway),
                Some(gw) => match self.internal_towards(gw.into()) {
                    Ok(internal) => {
                        let which = if self.config.via == Via::NatPmp {
                            pmp::Which::NatPmpOnly
                        } else {
                            pmp::Which::Either
                        };
                        match pmp::map(gw, internal, port, lifetime, which).await {
                            Ok(held) => {
                                let granted = Granted {
                                    external: held.external,
                                    method: held.method,
                                    lifetime: held.lifetime,
                                };
                                self.held = Some(Held::Pmp { held, gateway: gw });
                                self.record_held();
                                return Input::Granted(granted);
                            }
                            Err(e) => failures.push(e),
                        }
                    }
                    Err(e) => failures.push(e),
                },
            }
        }
        Input::Failed(most_telling(failures))
    }

    async fn renew(&mut self) -> Input {
        let input = self.renew_held().await;
        if matches!(input, Input::Granted(_)) {
            self.record_held();
        }
        input
    }

    async fn renew_held(&mut self) -> Input {
        let lifetime = lifetime_secs(&self.config.lease);
        let internal = self.internal;
        match &mut self.held {
            None => Input::Failed(Failure::NoAnswer),
            Some(Held::Upnp {
                router,
                external_port,
            }) => {
                let Some(internal) = internal else {
                    return Input::Failed(Failure::NoAnswer);
                };
                match upnp::map(router, *external_port, internal, lifetime).await {
                    Ok((external, granted)) => {
                        *external_port = external.port();
                        Input::Granted(Granted {
                            external,
                            method: Method::Upnp,
                            lifetime: granted,
                        })
                    }
                    Err(e) => Input::Failed(e),
                }
            }
            Some(Held::Pmp { held, gateway }) => match held.renew(*gateway, lifetime).await {
                Ok(()) => Input::Granted(Granted {
                    external: held.external,
                    method: held.method,
                    lifetime: held.lifetime,
                }),
                Err(e) => Input::Failed(e),
            },
        }
    }

    async fn remove(&mut self) {
        let result = match self.held.take() {
            None => Ok(()),
            Some(Held::Upnp {
                router,
                external_port,
            }) => upnp::remove(&router, external_port).await,
            Some(Held::Pmp { held, .. }) => held.remove().await,
        };
        match result {
            Ok(()) => {
                info!("port mapping deleted");
                if let Some(path) = &self.config.record {
                    record::remove(path);
                }
            }
            Err(e) => {
                warn!(error = %e, "the router did not delete the port mapping; it ends with its lease")
            }
        }
    }
}

/// Of the failures of each protocol asked, the one that says most: a router's own refusal
/// over silence, silence over having nobody to ask.
fn most_telling(failures: Vec<Failure>) -> Failure {
    let rank = |f: &Failure| match f {
        Failure::NotPublic { .. } => 0,
        Failure::Refused { .. } => 1,
        Failure::NotTheRouter { .. } => 2,
        Failure::Network(_) => 3,
        Failure::NoAnswer => 4,
        Failure::NoGateway => 5,
    };
    failures
        .into_iter()
        .min_by_key(rank)
        .unwrap_or(Failure::NoAnswer)
}

async fn run(config: MapperConfig, stop: CancellationToken, tx: mpsc::Sender<Update>) {
    if let Some(path) = &config.record {
        // Bounded (record::CLEAR_TIMEOUT); hosting on the LAN goes on meanwhile.
        tokio::select! {
            _ = record::clear_stale(path) => {}
            _ = stop.cancelled() => {}
        }
    }
    let mut lease = Lease::new(config.lease);
    let mut io = Io {
        config,
        held: None,
        internal: None,
    };
    let mut check: Option<tokio::task::JoinHandle<()>> = None;
    let mut stopped = false;
    let mut pending: VecDeque<Action> = lease.handle(Instant::now(), Input::Start).into();
    loop {
        while let Some(action) = pending.pop_front() {
            let answer = match action {
                Action::Map | Action::Renew => {
                    let asking = async {
                        if action == Action::Map {
                            io.map().await
                        } else {
                            io.renew().await
                        }
                    };
                    tokio::pin!(asking);
                    // A stop while the router is being asked is noted at once; the answer
                    // is then undone.
                    loop {
                        tokio::select! {
                            input = &mut asking => break Some(input),
                            _ = stop.cancelled(), if !stopped => {
                                stopped = true;
                                pending.extend(lease.handle(Instant::now(), Input::Stop));
                            }
                        }
                    }
                }
                Action::Remove => {
                    io.remove().await;
                    Some(Input::Removed)
                }
                Action::Report(status) => {
                    debug!(?status, "port mapping");
                    if let Status::Reachable { external, .. } = &status {
                        if let (Some(internal), false) = (io.internal, stopped) {
                            if let Some(old) = check.take() {
                                old.abort();
                            }
                            check = Some(tokio::spawn(self_check(internal, *external, tx.clone())));
                        }
                    }
                    let _ = tx
                        .send(Update {
                            status,
                            internal: io.internal,
                        })
                        .await;
                    None
                }
                Action::Done => {
                    if let Some(check) = check.take() {
                        check.abort();
                    }
                    return;
                }
            };
            if let Some(input) = answer {
                pending.extend(lease.handle(Instant::now(), input));
            }
        }
        if lease.is_done() {
            return;
        }
        let deadline = lease.deadline();
        tokio::select! {
            _ = stop.cancelled(), if !stopped => {
                stopped = true;
                if let Some(check) = check.take() {
                    check.abort();
                }
                pending.extend(lease.handle(Instant::now(), Input::Stop));
            }
            _ = sleep_until(deadline) => {
                pending.extend(lease.handle(Instant::now(), Input::Tick));
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The room's own listener at `internal` against the router's `external` address.
async fn self_check(internal: SocketAddr, external: SocketAddr, tx: mpsc::Sender<Update>) {
    let check = check::same_room(internal, external).await;
    let _ = tx
        .send(Update {
            status: Status::Checked { external, check },
            internal: Some(internal),
        })
        .await;
}

/// What a host can do instead when the router will not map the port: forward it by hand, or
/// use a VPN. English, for logs and `tertulia-server`; the app words it itself.
pub fn advice(port: u16, internal: Option<SocketAddr>) -> String {
    match internal {
        Some(addr) => format!(
            "forward TCP port {port} to {} by hand in your router's settings, or use a VPN such as Tailscale",
            addr.ip()
        ),
        None => format!(
            "forward TCP port {port} to this computer by hand in your router's settings, or use a VPN such as Tailscale"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_more_than_silence() {
        let refused = Failure::Refused {
            method: Method::Upnp,
            reason: "ActionNotAuthorized".into(),
        };
        assert_eq!(
            most_telling(vec![Failure::NoAnswer, refused.clone()]),
            refused
        );
        assert_eq!(
            most_telling(vec![Failure::NoGateway, Failure::NoAnswer]),
            Failure::NoAnswer
        );
        assert_eq!(most_telling(vec![]), Failure::NoAnswer);
    }

    #[test]
    fn the_advice_names_the_port_and_the_lan_address() {
        let text = advice(5555, Some("10.77.0.2:5555".parse().unwrap()));
        assert!(text.contains("port 5555 to 10.77.0.2"), "{text}");
        assert!(text.contains("Tailscale"));
        assert_eq!(
            Failure::NoAnswer.to_string(),
            "your router did not answer UPnP, PCP or NAT-PMP"
        );
    }

    #[test]
    fn a_routers_words_are_bounded_and_without_control_characters() {
        assert_eq!(
            bounded_reason("Conflict\u{1b}[31m\nInMapping"),
            "Conflict[31mInMapping"
        );
        let long = bounded_reason(&"é".repeat(500));
        assert!(
            long.len() <= MAX_REASON_BYTES + '…'.len_utf8(),
            "{}",
            long.len()
        );
        assert!(long.ends_with('…'));
    }

    #[test]
    fn the_lifetime_asked_for_is_bounded() {
        let mut lease = LeaseConfig::default();
        assert_eq!(lifetime_secs(&lease), 3600);
        lease.lifetime = Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(lifetime_secs(&lease), 604_800);
        lease.lifetime = Duration::ZERO;
        assert_eq!(
            lifetime_secs(&lease),
            1,
            "0 would ask for a permanent mapping"
        );
    }
}
