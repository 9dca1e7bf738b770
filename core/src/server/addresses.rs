//! The addresses a host gives to others: every interface address a server listening on all
//! interfaces can be reached at.

use std::net::{IpAddr, SocketAddr};

/// Addresses others can use to reach a server listening on `port` on all interfaces: every
/// non-loopback, non-link-local interface address, IPv4 first.
pub fn shareable_addresses(port: u16) -> Vec<String> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|iface| !iface.is_loopback())
        .map(|iface| iface.ip())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    ips.dedup();
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
