//! The thin I/O half of LAN discovery: the `mdns-sd` daemon (its own thread, its own
//! sockets on UDP 5353) announcing one room or browsing for rooms. Loopback is never used:
//! an announcement is for the LAN, and nothing here speaks on an interface the caller did
//! not ask for. What arrives from the network goes through [`super::txt`] before anyone sees it.

use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use super::txt::{self, Resolved, RoomTable, KEY_FINGERPRINT, KEY_ROOM, KEY_VERSION};
use super::{Advert, DiscoveryError, DiscoveryEvent, SERVICE_TYPE};

/// Events a [`Browser`] queues for a consumer that is not reading (each at most a few hundred
/// bytes: every field is bounded). A browser whose consumer stops reading waits, and the
/// mDNS daemon's own bounded queue behind it ends the browse rather than growing.
pub const EVENT_QUEUE: usize = 256;

/// How long [`Announcer::stop`] waits for the daemon to confirm each step.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// The daemon repeats a goodbye 120 ms after the first; [`Announcer::stop`] lets it go out
/// before shutting the daemon down.
const GOODBYE_REPEAT: Duration = Duration::from_millis(300);

/// This machine's host name as the operating system reports it (`tertulia` if it does not).
pub fn local_host_name() -> String {
    let from_os = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok());
    let name = from_os.map(|n| n.trim().to_owned()).unwrap_or_default();
    let name = txt::clean_text(&name, txt::MAX_ROOM_NAME_BYTES);
    if name.is_empty() {
        "tertulia".to_owned()
    } else {
        name
    }
}

/// The interfaces mDNS could use: up, not loopback, not point-to-point.
fn lan_interfaces() -> Vec<if_addrs::Interface> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.is_oper_up() && !i.is_loopback() && !i.is_p2p())
        .collect()
}

/// A daemon that never speaks on loopback.
fn lan_daemon() -> Result<ServiceDaemon, DiscoveryError> {
    let daemon = ServiceDaemon::new()?;
    daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
    Ok(daemon)
}

/// Log what the daemon reports (socket errors, a renamed instance) until it shuts down.
fn log_daemon_events(daemon: &ServiceDaemon, what: &'static str) {
    let Ok(events) = daemon.monitor() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name(format!("tertulia-mdns-{what}"))
        .spawn(move || {
            while let Ok(event) = events.recv() {
                match event {
                    DaemonEvent::Error(e) => tracing::warn!(error = %e, "mDNS {what}"),
                    DaemonEvent::NameChange(change) => tracing::info!(
                        from = %change.original,
                        to = %change.new_name,
                        "mDNS {what}: another host on the LAN uses this name; renamed"
                    ),
                    _ => {}
                }
            }
        });
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "no mDNS monitor thread");
    }
}

/// One room announced on the LAN until [`stop`](Self::stop) (or drop) withdraws it.
pub struct Announcer {
    daemon: Option<ServiceDaemon>,
    fullname: String,
    room_name: String,
}

impl Announcer {
    /// Announce on every LAN interface (IPv4 and IPv6), for a room listening on `[::]`.
    pub fn start(advert: Advert) -> Result<Self, DiscoveryError> {
        Self::start_for(advert, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
    }

    /// Announce where a room listening on `listen` can be reached: every LAN interface for
    /// `[::]`, IPv4 ones only for `0.0.0.0`, just the interface with that address otherwise.
    /// A loopback `listen` is refused ([`DiscoveryError::LoopbackOnly`]).
    pub fn start_for(advert: Advert, listen: IpAddr) -> Result<Self, DiscoveryError> {
        if listen.is_loopback() {
            return Err(DiscoveryError::LoopbackOnly(listen));
        }
        let interfaces = lan_interfaces();
        if interfaces.is_empty() {
            return Err(DiscoveryError::NoNetwork);
        }
        let specific = !listen.is_unspecified();
        if specific && !interfaces.iter().any(|i| i.ip() == listen) {
            return Err(DiscoveryError::AddressNotHere(listen));
        }
        let room_name = txt::announced_room_name(&advert.room_name, "Tertulia");
        // A host name of the room's own (`HOST-PORT.local.`): its goodbye withdraws address
        // records that nothing else relies on — not another room on this machine, not
        // Avahi's `HOST.local.` (withdrawing a shared name makes browsers drop every service
        // on it).
        let host = format!(
            "{}.local.",
            txt::host_label(&format!("{}-{}", local_host_name(), advert.port))
        );
        let properties = txt::encode(&Advert {
            room_name: room_name.clone(),
            ..advert.clone()
        });
        let daemon = lan_daemon()?;
        let info = if specific {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Addr(listen))?;
            ServiceInfo::new(
                SERVICE_TYPE,
                &room_name,
                &host,
                listen,
                advert.port,
                &properties[..],
            )?
        } else {
            if listen.is_ipv4() {
                daemon.disable_interface(IfKind::IPv6)?;
            }
            ServiceInfo::new(
                SERVICE_TYPE,
                &room_name,
                &host,
                "",
                advert.port,
                &properties[..],
            )?
            .enable_addr_auto()
        };
        let fullname = info.get_fullname().to_owned();
        log_daemon_events(&daemon, "announce");
        if let Err(e) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
        tracing::info!(instance = %fullname, host = %host, port = advert.port, "announcing the room on the LAN (mDNS)");
        Ok(Self {
            daemon: Some(daemon),
            fullname,
            room_name,
        })
    }

    /// The room name as announced (cleaned and cut).
    pub fn room_name(&self) -> &str {
        &self.room_name
    }

    /// The DNS-SD instance name as first announced (`NAME._tertulia._tcp.local.`).
    pub fn instance(&self) -> &str {
        &self.fullname
    }

    /// Withdraw the room: goodbye packets (sent twice), then the daemon stops. Blocks for
    /// up to a few seconds: call it from a blocking context (`spawn_blocking`).
    pub fn stop(mut self) {
        self.withdraw(true);
    }

    fn withdraw(&mut self, wait: bool) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        match daemon.unregister(&self.fullname) {
            Ok(done) if wait => {
                if done.recv_timeout(STOP_WAIT).is_err() {
                    tracing::warn!("mDNS: the goodbye was not confirmed");
                }
                std::thread::sleep(GOODBYE_REPEAT);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "mDNS: could not withdraw the room"),
        }
        match daemon.shutdown() {
            Ok(done) if wait => {
                let _ = done.recv_timeout(STOP_WAIT);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "mDNS daemon shutdown"),
        }
        tracing::info!(instance = %self.fullname, "no longer announcing the room");
    }
}

/// Best effort: the goodbye is queued but not waited for (the process may end first).
impl Drop for Announcer {
    fn drop(&mut self) {
        self.withdraw(false);
    }
}

/// Browsing the LAN for rooms; dropping it (or [`stop`](Self::stop)) ends the browse.
pub struct Browser {
    daemon: Option<ServiceDaemon>,
}

impl Browser {
    /// Start browsing. Rooms arrive on the receiver as they appear, change and disappear;
    /// it closes when the browse ends. [`DiscoveryError::NoNetwork`] when only loopback is
    /// up (nothing could ever arrive).
    pub fn start() -> Result<(Self, mpsc::Receiver<DiscoveryEvent>), DiscoveryError> {
        if lan_interfaces().is_empty() {
            return Err(DiscoveryError::NoNetwork);
        }
        let daemon = lan_daemon()?;
        log_daemon_events(&daemon, "browse");
        let resolutions = daemon.browse(SERVICE_TYPE)?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        std::thread::Builder::new()
            .name("tertulia-mdns-rooms".into())
            .spawn(move || {
                let mut table = RoomTable::new();
                while let Ok(event) = resolutions.recv() {
                    let news = match event {
                        ServiceEvent::ServiceResolved(service) => {
                            table.resolved(&resolved(&service))
                        }
                        ServiceEvent::ServiceRemoved(_, fullname) => {
                            table.removed(&fullname).into_iter().collect()
                        }
                        _ => Vec::new(),
                    };
                    if news.into_iter().any(|news| tx.blocking_send(news).is_err()) {
                        break;
                    }
                }
            })
            .map_err(|e| DiscoveryError::Mdns(format!("cannot start the browse thread: {e}")))?;
        Ok((
            Self {
                daemon: Some(daemon),
            },
            rx,
        ))
    }

    /// End the browse (the receiver then closes).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.shutdown();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the daemon resolved, keeping only the TXT keys Tertulia reads.
fn resolved(service: &ResolvedService) -> Resolved {
    Resolved {
        fullname: service.get_fullname().to_owned(),
        host: service.get_hostname().to_owned(),
        port: service.get_port(),
        addresses: service
            .get_addresses()
            .iter()
            .map(|a| a.to_ip_addr())
            .collect(),
        txt: service
            .get_properties()
            .iter()
            .filter(|p| {
                [KEY_ROOM, KEY_VERSION, KEY_FINGERPRINT]
                    .iter()
                    .any(|k| p.key().eq_ignore_ascii_case(k))
            })
            .map(|p| (p.key().to_owned(), p.val().map(<[u8]>::to_vec)))
            .collect(),
    }
}
