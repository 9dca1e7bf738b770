//! Finding rooms on the LAN (`docs/PROTOCOL.md` §14): DNS-SD over multicast DNS, service type
//! `_tertulia._tcp.local.`, TXT keys `room`, `v` and `fp`.
//!
//! - [`txt`]: the pure part — the TXT record a host announces, and what a browser makes of a
//!   resolution (every field from the network checked, cleaned for display and bounded), the
//!   table of listed rooms (found / updated / lost, at most [`txt::MAX_ROOMS`]).
//! - `mdns` (re-exported here): the thin wrapper over the `mdns-sd` crate's daemon —
//!   [`Announcer`] (withdrawn with goodbye packets by [`Announcer::stop`]) and [`Browser`].
//!
//! An announced room is only a hint: joining it is the ordinary handshake, and the host's
//! fingerprint from `fp` is insisted on like one from an invite code.

mod mdns;
pub mod txt;

use std::net::IpAddr;

use serde::Serialize;
use thiserror::Error;

pub use mdns::{local_host_name, Announcer, Browser, EVENT_QUEUE};

/// The DNS-SD service type of a Tertulia room.
pub const SERVICE_TYPE: &str = "_tertulia._tcp.local.";

/// What a host announces about its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The room name; cleaned and cut to 63 bytes when announced.
    pub room_name: String,
    /// The TCP port the room listens on.
    pub port: u16,
    /// The host identity fingerprint in its canonical form (`Fingerprint`'s `Display`: the
    /// form invite codes and the app show).
    pub fingerprint: String,
    /// The protocol version the host speaks: [`crate::hello::PROTOCOL_VERSION`].
    pub version: u8,
}

/// A room found on the LAN, cleaned and bounded as `docs/PROTOCOL.md` §14 says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundRoom {
    /// Identifies the room among those listed (the cleaned DNS-SD instance name, unique).
    pub instance: String,
    /// The room name to show (from `room`, else the instance name).
    #[serde(rename = "room")]
    pub room_name: String,
    /// The host's mDNS name, without the trailing dot (e.g. `ana-laptop.local`).
    pub host: String,
    /// IPv4 first, then IPv6 without link-local ones; never empty.
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// The protocol version the host announced (compare with `PROTOCOL_VERSION`).
    pub version: u8,
    /// The host fingerprint in canonical form, or empty when none or an invalid one was
    /// announced (then the client trusts the host on first use).
    pub fingerprint: String,
}

/// What a [`Browser`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DiscoveryEvent {
    /// A room appeared.
    #[serde(rename = "room_found")]
    Found(FoundRoom),
    /// A listed room's records changed (name, addresses, port, version or fingerprint).
    #[serde(rename = "room_updated")]
    Updated(FoundRoom),
    /// A listed room was withdrawn (goodbye packets) or its records expired.
    #[serde(rename = "room_lost")]
    Lost { instance: String },
}

/// Why discovery could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Only loopback (or nothing) is up: no interface can carry multicast to the LAN.
    #[error("no network interface other than loopback is up, so rooms on the LAN can neither be found nor announced; connect to a network, or join by address")]
    NoNetwork,
    /// The room listens only on loopback: nobody else could join, so it is not announced.
    #[error("the room listens only on {0} (this computer): nobody on the LAN could join, so it is not announced; listen on 0.0.0.0 or a LAN address")]
    LoopbackOnly(IpAddr),
    /// The room listens on an address no interface of this machine has.
    #[error("no network interface of this computer has the address {0}, so the room cannot be announced there")]
    AddressNotHere(IpAddr),
    /// The mDNS daemon failed (sockets, its thread).
    #[error("mDNS: {0}")]
    Mdns(String),
}

impl DiscoveryError {
    /// A stable name of the cause (`snake_case`), for a window to say it in its language.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::NoNetwork => "no_network",
            Self::LoopbackOnly(_) => "loopback_only",
            Self::AddressNotHere(_) => "address_not_here",
            Self::Mdns(_) => "mdns",
        }
    }
}

impl From<mdns_sd::Error> for DiscoveryError {
    fn from(e: mdns_sd::Error) -> Self {
        DiscoveryError::Mdns(e.to_string())
    }
}
