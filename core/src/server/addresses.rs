//! The addresses a host gives to others: the interface addresses a server actually listens
//! on, best first, and which of them is "the LAN address" an invite code should name.
//!
//! Interfaces are told apart by name ([`interface_kind`]): container bridges, VM networks
//! and VPN tunnels (`docker0`, `br-…`, `veth…`, `virbr…`, `tun…`, `wg…`, `tailscale…`,
//! `zt…`, …) are reachable by few or none of the people a host invites, so a private LAN
//! address on a physical interface comes first. The ranking is pure ([`rank`],
//! [`shareable_on`]); [`interface_addrs`] reads the live list.

use std::net::{IpAddr, SocketAddr};

/// One address of one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    pub name: String,
    pub ip: IpAddr,
}

impl InterfaceAddr {
    pub fn new(name: &str, ip: IpAddr) -> Self {
        Self {
            name: name.to_owned(),
            ip,
        }
    }
}

/// What an interface is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceKind {
    Loopback,
    /// A container bridge, VM network, VPN or other tunnel.
    Virtual,
    /// Anything else: Ethernet, Wi-Fi (`eth0`, `enp3s0`, `wlan0`, `wlp2s0`, `en0`, …).
    Physical,
}

/// Name prefixes of virtual interfaces (Linux, macOS, the BSDs; Windows names its adapters
/// by description, e.g. "vEthernet (WSL)", matched case-insensitively).
const VIRTUAL_PREFIXES: &[&str] = &[
    "docker",
    "br-",
    "veth",
    "virbr",
    "vnet",
    "vmnet",
    "vboxnet",
    "lxcbr",
    "lxdbr",
    "incusbr",
    "podman",
    "cni",
    "flannel",
    "cali",
    "cilium",
    "kube",
    "weave",
    "tun",
    "tap",
    "utun",
    "wg",
    "tailscale",
    "zt",
    "nebula",
    "ham",
    "ipsec",
    "ppp",
    "gif",
    "stf",
    "awdl",
    "llw",
    "anpi",
    "bridge",
    "vethernet",
    "zerotier",
    "nordlynx",
    "proton",
    "mullvad",
];

/// Classify an interface by its name.
pub fn interface_kind(name: &str) -> InterfaceKind {
    let lower = name.to_ascii_lowercase();
    if lower == "lo" || lower.starts_with("lo0") || lower.starts_with("loopback") {
        return InterfaceKind::Loopback;
    }
    if VIRTUAL_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        InterfaceKind::Virtual
    } else {
        InterfaceKind::Physical
    }
}

/// Whether others could use `ip` at all: not loopback, link-local, unspecified or multicast.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some())
        }
    }
}

/// How good an address is to share, lower first; `None`: not shareable. Private LAN
/// addresses first — RFC 1918 IPv4, then IPv6 unique-local (so the first address shown, and
/// the invite code's, is the LAN address [`lan_address`] picks, whenever there is one) — then
/// public IPv4 (every device on a network speaks IPv4; not every one has IPv6), global IPv6,
/// and anything on a virtual interface or in the carrier-grade NAT range 100.64.0.0/10 (which
/// Tailscale uses) after all of them.
pub fn rank(addr: &InterfaceAddr) -> Option<u8> {
    if !usable(addr.ip) || interface_kind(&addr.name) == InterfaceKind::Loopback {
        return None;
    }
    let by_ip = match addr.ip {
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 => 4,
        IpAddr::V4(v4) if v4.is_private() => 0,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => 1,
        IpAddr::V4(_) => 2,
        IpAddr::V6(_) => 3,
    };
    Some(match interface_kind(&addr.name) {
        InterfaceKind::Virtual => 5 + by_ip,
        _ => by_ip,
    })
}

/// The best address to invite people on this computer's network with: the best-ranked
/// *private* address (RFC 1918 IPv4, IPv6 unique-local) on a physical interface, if any. A
/// public address (or a carrier-grade NAT one, shared with the ISP's other customers) is
/// never "this network": a listener on it is reachable from beyond the local network.
pub fn lan_address(interfaces: &[InterfaceAddr]) -> Option<IpAddr> {
    interfaces
        .iter()
        .filter(|a| interface_kind(&a.name) == InterfaceKind::Physical)
        .filter(|a| private(a.ip))
        .filter_map(|a| rank(a).map(|r| (r, a.ip.is_ipv6(), a.ip)))
        .min()
        .map(|(_, _, ip)| ip)
}

/// A private-network address: RFC 1918 IPv4 or IPv6 unique-local (`fc00::/7`).
fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The addresses others can reach a listener bound to `listen` at, best first (the first is
/// the one for an invite code). A listener on one address is reachable at that address only
/// (a loopback one too: it is all there is to show); on `0.0.0.0` at every usable IPv4
/// address; on `[::]` at every usable IPv6 address, and the IPv4 ones too when `dual_stack`.
pub fn shareable_on(
    interfaces: &[InterfaceAddr],
    listen: SocketAddr,
    dual_stack: bool,
) -> Vec<SocketAddr> {
    let port = listen.port();
    if !listen.ip().is_unspecified() {
        return vec![listen];
    }
    let wanted = |ip: &IpAddr| match listen.ip() {
        IpAddr::V4(_) => ip.is_ipv4(),
        IpAddr::V6(_) => ip.is_ipv6() || dual_stack,
    };
    let mut ranked: Vec<(u8, bool, IpAddr)> = interfaces
        .iter()
        .filter(|a| wanted(&a.ip))
        .filter_map(|a| rank(a).map(|r| (r, a.ip.is_ipv6(), a.ip)))
        .collect();
    ranked.sort();
    let mut seen = Vec::new();
    for (_, _, ip) in ranked {
        if !seen.contains(&ip) {
            seen.push(ip);
        }
    }
    seen.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// This computer's interface addresses, as the operating system lists them now.
pub fn interface_addrs() -> Vec<InterfaceAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|iface| InterfaceAddr {
            ip: iface.ip(),
            name: iface.name,
        })
        .collect()
}

/// Addresses others can use to reach a server listening on `port` on all interfaces (IPv4
/// and IPv6), best first.
pub fn shareable_addresses(port: u16) -> Vec<String> {
    let any = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port);
    shareable_on(&interface_addrs(), any, true)
        .into_iter()
        .map(|a| a.to_string())
        .collect()
}

/// The addresses others could reach a server at once it listens on `listen`, best first,
/// without binding it: for an invite code printed while that server runs (or before it
/// starts). An IPv6 wildcard counts as dual-stack unless the system binds IPv6 sockets to
/// IPv6 only (Linux: `net.ipv6.bindv6only = 1`), as [`crate::server::Server::bind`] would find.
pub fn shareable_for(listen: SocketAddr) -> Vec<SocketAddr> {
    let dual_stack = listen.is_ipv6()
        && std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
            .map_or(!cfg!(windows), |v| v.trim() == "0");
    shareable_on(&interface_addrs(), listen, dual_stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, ip: &str) -> InterfaceAddr {
        InterfaceAddr::new(name, ip.parse().unwrap())
    }

    fn listen(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn shareable_for_a_specific_address_is_that_address() {
        for addr in ["127.0.0.1:5555", "[::1]:7", "192.0.2.9:1"] {
            assert_eq!(shareable_for(listen(addr)), vec![listen(addr)]);
        }
        let any = shareable_for(listen("0.0.0.0:5555"));
        assert!(any
            .iter()
            .all(|a| a.is_ipv4() && a.port() == 5555 && !a.ip().is_loopback()));
    }

    #[test]
    fn interfaces_are_classified_by_name() {
        for name in ["lo", "lo0", "Loopback Pseudo-Interface 1"] {
            assert_eq!(interface_kind(name), InterfaceKind::Loopback, "{name}");
        }
        for name in [
            "docker0",
            "br-3f2a9c",
            "veth12ab",
            "virbr0",
            "vmnet8",
            "vboxnet0",
            "tun0",
            "tap1",
            "utun3",
            "wg0",
            "tailscale0",
            "zt5u4nj2ea",
            "lxcbr0",
            "cni0",
            "flannel.1",
            "podman1",
            "bridge100",
            "vEthernet (WSL)",
            "ppp0",
        ] {
            assert_eq!(interface_kind(name), InterfaceKind::Virtual, "{name}");
        }
        for name in ["eth0", "enp3s0", "eno1", "wlan0", "wlp2s0", "en0", "Wi-Fi"] {
            assert_eq!(interface_kind(name), InterfaceKind::Physical, "{name}");
        }
    }

    #[test]
    fn the_lan_address_beats_bridges_and_vpns() {
        let interfaces = [
            at("lo", "127.0.0.1"),
            at("docker0", "172.17.0.1"),
            at("tailscale0", "100.101.102.103"),
            at("wg0", "10.8.0.2"),
            at("virbr0", "192.168.122.1"),
            at("wlp2s0", "fe80::1234"),
            at("wlp2s0", "2a01:db8::5"),
            at("wlp2s0", "192.168.1.20"),
        ];
        assert_eq!(
            lan_address(&interfaces),
            Some("192.168.1.20".parse().unwrap())
        );
        let all = shareable_on(&interfaces, listen("[::]:5555"), true);
        assert_eq!(all[0], listen("192.168.1.20:5555"), "{all:?}");
        assert_eq!(all[1], listen("[2a01:db8::5]:5555"), "{all:?}");
        assert!(!all.contains(&listen("127.0.0.1:5555")));
        assert!(!all.contains(&listen("[fe80::1234]:5555")), "link-local");
        assert_eq!(all.len(), 6, "every listened-on address is shown: {all:?}");
    }

    #[test]
    fn a_tailscale_address_on_a_physical_looking_name_comes_after_the_lan() {
        let interfaces = [at("eth1", "100.64.0.7"), at("eth0", "10.0.0.5")];
        assert_eq!(lan_address(&interfaces), Some("10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn ipv6_only_when_listening_on_ipv6() {
        let interfaces = [at("eth0", "192.168.1.20"), at("eth0", "fd00::2")];
        let v4 = shareable_on(&interfaces, listen("0.0.0.0:5555"), false);
        assert_eq!(v4, vec![listen("192.168.1.20:5555")]);
        let v6_only = shareable_on(&interfaces, listen("[::]:5555"), false);
        assert_eq!(v6_only, vec![listen("[fd00::2]:5555")]);
        let dual = shareable_on(&interfaces, listen("[::]:5555"), true);
        assert_eq!(
            dual,
            vec![listen("192.168.1.20:5555"), listen("[fd00::2]:5555")]
        );
    }

    #[test]
    fn a_listener_on_one_address_is_shown_at_that_address_only() {
        let interfaces = [at("lo", "127.0.0.1"), at("eth0", "192.168.1.20")];
        assert_eq!(
            shareable_on(&interfaces, listen("127.0.0.1:5555"), false),
            vec![listen("127.0.0.1:5555")]
        );
        assert_eq!(
            shareable_on(&interfaces, listen("192.168.1.20:5555"), false),
            vec![listen("192.168.1.20:5555")]
        );
    }

    #[test]
    fn ipv4_comes_before_ipv6_on_the_same_network() {
        let interfaces = [at("eth0", "fd00::2"), at("eth0", "192.168.0.2")];
        assert_eq!(
            lan_address(&interfaces),
            Some("192.168.0.2".parse().unwrap())
        );
    }

    /// "This network" never listens on a public address: that is reachable from the Internet.
    #[test]
    fn a_public_address_is_never_the_lan_address() {
        let public_only = [
            at("eth0", "203.0.113.7"),
            at("eth0", "2001:db8::7"),
            at("eth1", "100.64.0.7"),
        ];
        assert_eq!(lan_address(&public_only), None);
        let with_ula = [at("eth0", "203.0.113.7"), at("eth0", "fd12:3456::7")];
        assert_eq!(
            lan_address(&with_ula),
            Some("fd12:3456::7".parse().unwrap())
        );
        // On all interfaces the LAN address is still the first shown (the invite's).
        assert_eq!(
            shareable_on(&with_ula, listen("[::]:5555"), true),
            vec![listen("[fd12:3456::7]:5555"), listen("203.0.113.7:5555")]
        );
    }

    #[test]
    fn no_lan_address_when_there_are_only_virtual_ones() {
        assert_eq!(
            lan_address(&[at("lo", "127.0.0.1"), at("docker0", "172.17.0.1")]),
            None
        );
    }

    #[test]
    fn shared_addresses_exclude_loopback() {
        let addrs = shareable_addresses(5555);
        assert!(
            addrs
                .iter()
                .all(|a| a.ends_with(":5555") && !a.starts_with("127.") && !a.starts_with("[::1]")),
            "{addrs:?}"
        );
    }
}
