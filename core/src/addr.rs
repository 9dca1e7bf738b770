//! Addresses as users type and share them: host-name validation and the list of interface
//! addresses a host can give to others.

use std::net::{IpAddr, SocketAddr};

/// Is `host` an IP address or a syntactically valid DNS host name (without brackets)?
pub fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && (host.parse::<IpAddr>().is_ok()
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

/// `host:port`, with brackets around IPv6 addresses.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

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
    fn hosts() {
        for good in [
            "127.0.0.1",
            "::1",
            "chat.example.org",
            "host-1",
            "localhost",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in ["", "bad host", "a..b", "x_y.org", &"a".repeat(64)] {
            assert!(!is_valid_host(bad), "{bad}");
        }
        assert_eq!(join_host_port("::1", 5), "[::1]:5");
        assert_eq!(join_host_port("h", 5), "h:5");
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
