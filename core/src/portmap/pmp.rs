//! PCP (RFC 6887) and its predecessor NAT-PMP (RFC 6886) through `crab_nat`, to the default
//! gateway's UDP port 5351. PCP is asked first; a server that answers "unsupported version"
//! with NAT-PMP's version number is asked in NAT-PMP. A renewal reuses the mapping (PCP: its
//! nonce, without which the router refuses it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::{
    natpmp, pcp, InternetProtocol, PortMapping, PortMappingOptions, PortMappingType, TimeoutConfig,
    VersionCode,
};

use super::{Failure, Method};

/// Retries of one request: 250 ms, then 500 ms, then 1 s (a router on the LAN answers in
/// milliseconds; one that says nothing is not waited on for the RFCs' minutes).
pub const TIMEOUTS: TimeoutConfig = TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 2,
    max_retry_timeout: Some(Duration::from_secs(1)),
};

/// Which of the two to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// PCP, then NAT-PMP if the router speaks only that.
    Either,
    NatPmpOnly,
}

/// A mapping held on the router, and what it said.
pub struct Held {
    mapping: PortMapping,
    pub external: SocketAddr,
    pub method: Method,
    pub lifetime: Option<Duration>,
}

/// A request that got no answer (a timeout, or ICMP "port unreachable" seen as a refused
/// connection on the UDP socket) is "no answer"; anything the router said is a refusal.
fn failure(method: Method, e: &dyn std::fmt::Display, unanswered: bool) -> Failure {
    if unanswered {
        Failure::NoAnswer
    } else {
        Failure::Refused {
            method,
            reason: super::bounded_reason(&e.to_string()),
        }
    }
}

fn pcp_failure(e: pcp::Failure) -> Failure {
    let unanswered = matches!(e, pcp::Failure::Timeout | pcp::Failure::Socket(_));
    failure(Method::Pcp, &e, unanswered)
}

fn natpmp_failure(e: natpmp::Failure) -> Failure {
    let unanswered = matches!(e, natpmp::Failure::Timeout | natpmp::Failure::Socket(_));
    failure(Method::NatPmp, &e, unanswered)
}

fn options(external_port: u16, lifetime: u32) -> PortMappingOptions {
    PortMappingOptions {
        external_port: NonZeroU16::new(external_port),
        lifetime_seconds: Some(lifetime),
        timeout_config: Some(TIMEOUTS),
    }
}

/// Map TCP `internal` (this host's address facing `gateway`, and the listening port) on the
/// `gateway`, asking for `external_port` and `lifetime` seconds.
pub async fn map(
    gateway: Ipv4Addr,
    internal: SocketAddr,
    external_port: u16,
    lifetime: u32,
    which: Which,
) -> Result<Held, Failure> {
    let port = NonZeroU16::new(internal.port()).ok_or(Failure::Refused {
        method: Method::Pcp,
        reason: "port 0 cannot be mapped".into(),
    })?;
    if which == Which::Either {
        let base =
            pcp::BaseMapRequest::new(gateway.into(), internal.ip(), InternetProtocol::Tcp, port);
        match pcp::port_mapping(base, None, None, options(external_port, lifetime)).await {
            Ok(mapping) => return held(mapping, gateway).await,
            Err(pcp::Failure::UnsupportedVersion(VersionCode::NatPmp)) => {}
            Err(e) => return Err(pcp_failure(e)),
        }
    }
    let mapping = natpmp::port_mapping(
        gateway.into(),
        InternetProtocol::Tcp,
        port,
        options(external_port, lifetime),
    )
    .await
    .map_err(natpmp_failure)?;
    held(mapping, gateway).await
}

/// What the mapping means: PCP names the external address; NAT-PMP is asked for it.
async fn held(mapping: PortMapping, gateway: Ipv4Addr) -> Result<Held, Failure> {
    let (method, ip) = match mapping.mapping_type() {
        PortMappingType::Pcp { external_ip, .. } => (Method::Pcp, unmapped(external_ip)),
        PortMappingType::NatPmp => {
            let ip = natpmp::external_address(gateway.into(), Some(TIMEOUTS))
                .await
                .map_err(natpmp_failure)?;
            (Method::NatPmp, IpAddr::V4(ip))
        }
    };
    let lifetime = match mapping.lifetime() {
        0 => None,
        secs => Some(Duration::from_secs(u64::from(secs))),
    };
    Ok(Held {
        external: SocketAddr::new(ip, mapping.external_port().get()),
        method,
        lifetime,
        mapping,
    })
}

/// PCP carries IPv4 addresses as IPv4-mapped IPv6 ones.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl Held {
    /// Extend the mapping (same external port, same PCP nonce) by `lifetime` seconds.
    pub async fn renew(&mut self, gateway: Ipv4Addr, lifetime: u32) -> Result<(), Failure> {
        let mut mapping = self.mapping.clone();
        mapping.timeout_config = TIMEOUTS;
        // crab_nat renews for the lifetime last granted; ask for ours instead.
        let renewed = match mapping.mapping_type() {
            PortMappingType::Pcp {
                client,
                nonce,
                external_ip,
            } => pcp::port_mapping(
                pcp::BaseMapRequest::new(
                    gateway.into(),
                    client,
                    InternetProtocol::Tcp,
                    mapping.internal_port(),
                ),
                Some(nonce),
                Some(external_ip),
                options(mapping.external_port().get(), lifetime),
            )
            .await
            .map_err(pcp_failure)?,
            PortMappingType::NatPmp => natpmp::port_mapping(
                gateway.into(),
                InternetProtocol::Tcp,
                mapping.internal_port(),
                options(mapping.external_port().get(), lifetime),
            )
            .await
            .map_err(natpmp_failure)?,
        };
        *self = held(renewed, gateway).await?;
        Ok(())
    }

    /// The PCP nonce that deleting the mapping needs (`None`: NAT-PMP, which needs none).
    pub fn pcp_nonce(&self) -> Option<[u32; 3]> {
        match self.mapping.mapping_type() {
            PortMappingType::Pcp { nonce, .. } => Some(nonce),
            PortMappingType::NatPmp => None,
        }
    }

    /// Delete the mapping.
    pub async fn remove(self) -> Result<(), Failure> {
        let mut mapping = self.mapping;
        mapping.timeout_config = TIMEOUTS;
        mapping.try_drop().await.map_err(|(e, _)| match e {
            crab_nat::MappingFailure::Pcp(e) => pcp_failure(e),
            crab_nat::MappingFailure::NatPmp(e) => natpmp_failure(e),
        })
    }
}

/// Delete a mapping a previous run recorded and did not delete: PCP with its `nonce` (for
/// `client`, this host's address, and the internal `port`), NAT-PMP without one.
pub async fn drop_recorded(
    gateway: Ipv4Addr,
    client: IpAddr,
    port: NonZeroU16,
    nonce: Option<[u32; 3]>,
) -> Result<(), Failure> {
    match nonce {
        Some(nonce) => pcp::try_drop_mapping(
            gateway.into(),
            client,
            nonce,
            pcp::DropMappingRange::Single {
                internal_port: port,
                protocol: InternetProtocol::Tcp,
            },
            Some(TIMEOUTS),
        )
        .await
        .map_err(pcp_failure),
        None => natpmp::try_drop_mapping(
            gateway.into(),
            InternetProtocol::Tcp,
            Some(port),
            Some(TIMEOUTS),
        )
        .await
        .map_err(natpmp_failure),
    }
}
