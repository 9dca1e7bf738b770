//! Where the router is: the default IPv4 gateway (NAT-PMP and PCP servers listen there), and
//! this host's address on the network that faces it (the address a mapping must point to: a
//! router in secure mode maps only to the asking host's own address).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// Longest `/proc/net/route` read (a router table of a few thousand routes).
const MAX_ROUTE_TABLE_BYTES: u64 = 1024 * 1024;

/// The default IPv4 gateway in the text of Linux's `/proc/net/route` (lowest metric first):
/// the `Gateway` column of a line whose `Destination` and `Mask` are both 0, in the host's byte
/// order as hex. Pure.
pub fn default_gateway_in(route_table: &str) -> Option<Ipv4Addr> {
    let mut best: Option<(u32, Ipv4Addr)> = None;
    for line in route_table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(gw), Some(flags), Some(mask)) =
            (hex(cols[1]), hex(cols[2]), hex(cols[3]), hex(cols[7]))
        else {
            continue;
        };
        let metric: u32 = cols[6].parse().unwrap_or(u32::MAX);
        // RTF_UP (1) and RTF_GATEWAY (2).
        if dest != 0 || mask != 0 || flags & 0x3 != 0x3 || gw == 0 {
            continue;
        }
        // The kernel prints the address's bytes as one native-endian word.
        let ip = Ipv4Addr::from(gw.to_ne_bytes());
        if best.is_none_or(|(m, _)| metric < m) {
            best = Some((metric, ip));
        }
    }
    best.map(|(_, ip)| ip)
}

/// The default IPv4 gateway of this host, where the operating system tells it (Linux:
/// `/proc/self/net/route`, the process's own view: a hardened service whose `/proc` shows only
/// processes (systemd `ProcSubset=pid`, as the server package's unit) still has it); `None`
/// elsewhere or without one (UPnP discovery still finds a router).
pub fn default_gateway() -> Option<Ipv4Addr> {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read;
        let file = std::fs::File::open("/proc/self/net/route").ok()?;
        let mut text = String::new();
        file.take(MAX_ROUTE_TABLE_BYTES)
            .read_to_string(&mut text)
            .ok()?;
        default_gateway_in(&text)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = MAX_ROUTE_TABLE_BYTES;
        None
    }
}

/// This host's address on the network facing `gateway`: the source address the operating
/// system picks for it (a UDP socket is "connected" to it; nothing is sent).
pub fn local_address_towards(gateway: IpAddr) -> io::Result<IpAddr> {
    let any: SocketAddr = match gateway {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(SocketAddr::new(gateway, 9))?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t01004D0A\t0003\t0\t0\t100\t00000000\t0\t0\t0
tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0
";

    #[test]
    fn the_default_route_with_the_lowest_metric_names_the_gateway() {
        // 01004D0A is 10.77.0.1 in little-endian memory order; tun0's default has no gateway.
        assert_eq!(default_gateway_in(TABLE), Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(
            default_gateway_in(&TABLE.replace("\t100\t", "\t700\t")),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
    }

    #[test]
    fn no_default_route_no_gateway() {
        let only_lan = TABLE.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(default_gateway_in(&only_lan), None);
        assert_eq!(default_gateway_in(""), None);
        assert_eq!(
            default_gateway_in("header\neth0 zz yy 0003 0 0 0 00000000"),
            None
        );
    }

    #[test]
    fn the_address_towards_loopback_is_loopback() {
        assert_eq!(
            local_address_towards(Ipv4Addr::LOCALHOST.into()).unwrap(),
            IpAddr::from(Ipv4Addr::LOCALHOST)
        );
    }
}
