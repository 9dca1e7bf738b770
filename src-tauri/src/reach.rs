//! Where a hosted room is reachable from, as the host chose it, and the one listener that
//! makes it so: "this computer only" on 127.0.0.1, "this network" on the LAN address
//! ([`addresses::lan_address`]: a private address on a physical interface, not a VPN or
//! container bridge), "all interfaces" on a dual-stack `[::]` socket (IPv4 and IPv6; plain
//! `0.0.0.0` where this computer has no IPv6). The addresses shown to others are the ones
//! that listener accepts on ([`addresses::shareable_on`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tertulia_core::server::addresses::{self, InterfaceAddr};
use thiserror::Error;

/// The host's choice (`"computer" | "network" | "all"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// Loopback only: others on this computer.
    Computer,
    /// The LAN address only.
    #[default]
    Network,
    /// Every interface, IPv4 and IPv6.
    All,
}

/// Pending connections the kernel holds for the room (it serves up to 1024).
const BACKLOG: i32 = 1024;

/// A bound listener and what it means for the host and the people it invites.
#[derive(Debug)]
pub struct Listening {
    pub listener: std::net::TcpListener,
    /// Where the host's own window connects.
    pub own: SocketAddr,
    /// Where others can connect, best first (the invite code names the first).
    pub shared: Vec<SocketAddr>,
}

#[derive(Debug, Error)]
pub enum ReachError {
    /// "This network" on a computer with no LAN address (only loopback, VPNs, bridges).
    #[error("this computer has no address on a local network")]
    NoNetwork,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Bind `port` as `reach` says, given this computer's `interfaces`.
pub fn listen(
    reach: Reach,
    port: u16,
    interfaces: &[InterfaceAddr],
) -> Result<Listening, ReachError> {
    let (listener, dual_stack) = match reach {
        Reach::Computer => (
            bind(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port), false)?,
            false,
        ),
        Reach::Network => {
            let lan = addresses::lan_address(interfaces).ok_or(ReachError::NoNetwork)?;
            (bind(SocketAddr::new(lan, port), false)?, false)
        }
        Reach::All => match bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), true) {
            Ok(listener) => (listener, true),
            // No IPv6 on this computer (no such socket, or no [::]): IPv4 on every interface.
            // A busy or forbidden port is that, whatever the family.
            Err(e) if !port_problem(&e) => (
                bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), false)?,
                false,
            ),
            Err(e) => return Err(e.into()),
        },
    };
    let local = listener.local_addr()?;
    let own = match local.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()),
        _ => local,
    };
    Ok(Listening {
        shared: addresses::shareable_on(interfaces, local, dual_stack),
        own,
        listener,
    })
}

fn port_problem(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

/// A non-blocking listener on `addr` (for tokio); `dual_stack` accepts IPv4 on an IPv6 socket.
fn bind(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    // As tokio's TcpListener::bind: a port whose last room just closed can be reused at once.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The IP of the first shared address (the invite code's), else the host's own.
pub fn invite_ip(listening: &Listening) -> IpAddr {
    listening.shared.first().unwrap_or(&listening.own).ip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    fn at(name: &str, ip: &str) -> InterfaceAddr {
        InterfaceAddr::new(name, ip.parse().unwrap())
    }

    fn reaches(addr: SocketAddr) -> bool {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    }

    #[test]
    fn this_computer_only_listens_on_loopback_and_shows_nothing_else() {
        let live = addresses::interface_addrs();
        let l = listen(Reach::Computer, 0, &live).unwrap();
        let port = l.own.port();
        assert_eq!(l.own, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        assert_eq!(l.shared, vec![l.own]);
        assert!(reaches(l.own));
        for other in addresses::shareable_on(
            &live,
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
            true,
        ) {
            assert!(!reaches(other), "{other} must be refused");
        }
    }

    #[test]
    fn all_interfaces_is_dual_stack_and_shows_what_it_accepts_on() {
        let live = addresses::interface_addrs();
        let l = listen(Reach::All, 0, &live).unwrap();
        assert!(reaches(l.own), "the host's own address");
        for shared in &l.shared {
            assert!(reaches(*shared), "{shared} is shown, so it must accept");
        }
        assert!(l.shared.iter().all(|a| !a.ip().is_loopback()));
    }

    #[test]
    fn this_network_binds_the_lan_address_not_a_bridge() {
        // Loopback stands in for the LAN address: the classification is what is tested.
        let interfaces = [at("docker0", "172.17.0.1"), at("eth0", "127.0.0.1")];
        assert_eq!(
            addresses::lan_address(&interfaces),
            None,
            "loopback is never the LAN"
        );
        assert!(matches!(
            listen(Reach::Network, 0, &[at("docker0", "172.17.0.1")]),
            Err(ReachError::NoNetwork)
        ));
        let live = addresses::interface_addrs();
        if let Some(lan) = addresses::lan_address(&live) {
            let l = listen(Reach::Network, 0, &live).unwrap();
            assert_eq!(l.own.ip(), lan);
            assert_eq!(l.shared, vec![l.own]);
            assert!(reaches(l.own));
            let loopback = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), l.own.port());
            assert!(!reaches(loopback), "only the LAN address listens");
        }
    }

    #[test]
    fn absent_means_this_network() {
        assert_eq!(Reach::default(), Reach::Network);
        assert_eq!(serde_json::to_value(Reach::Computer).unwrap(), "computer");
        assert_eq!(
            serde_json::from_str::<Reach>("\"all\"").unwrap(),
            Reach::All
        );
    }
}
