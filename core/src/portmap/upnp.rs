//! UPnP-IGD through `igd-next`: find the router by SSDP on the LAN, map a TCP port on its
//! WANIPConnection (or WANPPPConnection) service, learn its external address, delete it.
//!
//! Any device on the LAN can answer SSDP, and faster than the router (which delays its
//! answers to a multicast search by up to its MX). So when the default gateway is known the
//! gateway is asked first, by unicast (miniupnpd and most routers answer at once), and a
//! device that answers the multicast search is trusted only when its description is served
//! from the gateway's own address ([`judge`]); any other is ignored, and said so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::aio::Gateway;
use igd_next::{
    AddAnyPortError, AddPortError, GetGenericPortMappingEntryError, PortMappingProtocol,
    RequestError, SearchError, SearchOptions,
};

use tracing::{debug, warn};

use super::Failure;

/// How long SSDP discovery waits for a router's answer (a router answers in milliseconds).
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the unicast search of the default gateway waits (a router answers a unicast
/// M-SEARCH at once; one that does not is then searched for by multicast).
pub const UNICAST_SEARCH_TIMEOUT: Duration = Duration::from_millis(1500);
/// SSDP's IPv4 multicast address and port.
pub const SSDP_MULTICAST: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)), 1900);
/// How long one SOAP request to the router may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The mapping's description on the router's page.
pub const DESCRIPTION: &str = "Tertulia";
/// Most entries of the router's mapping table read looking for one port (IGD has no
/// by-port query in `igd-next`; a home router holds a few dozen at most).
pub const MAX_ENTRIES_WALKED: u32 = 256;

/// A TCP mapping as the router lists it (its strings bounded by [`super::bounded_reason`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub external_port: u16,
    pub internal_client: String,
    pub internal_port: u16,
    pub description: String,
}

impl Entry {
    /// Why this entry is not the mapping of `internal` this host made (`None`: it is):
    /// internal client, internal port and description must all match. Pure.
    pub fn not_ours(&self, internal: SocketAddr) -> Option<String> {
        let client_matches = self
            .internal_client
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip == internal.ip());
        if !client_matches || self.internal_port != internal.port() {
            return Some(format!(
                "it forwards to {}:{}, not {internal}",
                self.internal_client, self.internal_port
            ));
        }
        if self.description != DESCRIPTION {
            return Some(format!(
                "its description is {:?}, not {DESCRIPTION:?}",
                self.description
            ));
        }
        None
    }
}

/// A router that answered SSDP.
pub struct Router {
    gateway: Gateway<Tokio>,
}

impl Router {
    /// The router's LAN address (where its SOAP service listens).
    pub fn addr(&self) -> IpAddr {
        self.gateway.addr.ip()
    }
}

/// Where to send M-SEARCH, in order: the default gateway by unicast when it is known, then
/// the SSDP multicast group. Pure.
pub fn search_targets(gateway: Option<Ipv4Addr>) -> Vec<SocketAddr> {
    let mut targets = Vec::with_capacity(2);
    if let Some(gw) = gateway {
        targets.push(SocketAddr::new(IpAddr::V4(gw), 1900));
    }
    targets.push(SSDP_MULTICAST);
    targets
}

/// Whether the device that answered SSDP at `answered` (the address its description and
/// control service are served from: `igd-next` accepts only a responder's own address) may be
/// used as the router: with a known default gateway, only the gateway itself; without one
/// (no route table to read), the one that answered. Pure.
pub fn judge(answered: IpAddr, gateway: Option<Ipv4Addr>) -> Result<(), Failure> {
    match gateway {
        Some(gw) if answered != IpAddr::V4(gw) => Err(Failure::NotTheRouter {
            answered,
            router: gw,
        }),
        _ => Ok(()),
    }
}

/// Find the IPv4 router by SSDP, sending from `local` (this host's LAN address); with the
/// default `gateway` known, the gateway is asked first and only it is trusted ([`judge`]).
pub async fn discover(local: Option<IpAddr>, gateway: Option<Ipv4Addr>) -> Result<Router, Failure> {
    let mut last = Failure::NoAnswer;
    for target in search_targets(gateway) {
        let unicast = !target.ip().is_multicast();
        let timeout = if unicast {
            UNICAST_SEARCH_TIMEOUT
        } else {
            SEARCH_TIMEOUT
        };
        match search(local, target, timeout).await {
            Ok(router) => match judge(router.addr(), gateway) {
                Ok(()) => {
                    debug!(router = %router.addr(), via = %target, "UPnP router found");
                    return Ok(router);
                }
                Err(failure) => {
                    warn!("{failure}");
                    last = failure;
                }
            },
            Err(Failure::NoAnswer) if unicast => {
                debug!(gateway = %target, "the default gateway did not answer a unicast SSDP search");
            }
            Err(failure) => last = failure,
        }
    }
    Err(last)
}

async fn search(
    local: Option<IpAddr>,
    target: SocketAddr,
    timeout: Duration,
) -> Result<Router, Failure> {
    let mut options = SearchOptions::default();
    if let Some(ip) = local.filter(IpAddr::is_ipv4) {
        options.bind_addr = SocketAddr::new(ip, 0);
    }
    options.broadcast_address = target;
    options.timeout = Some(timeout);
    options.single_search_timeout = Some(timeout);
    options.gateway_ip_version = igd_next::GatewayIpVersion::V4;
    match igd_next::aio::tokio::search_gateway(options).await {
        Ok(gateway) => Ok(Router { gateway }),
        Err(SearchError::NoResponseWithinTimeout) => Err(Failure::NoAnswer),
        Err(SearchError::IoError(e)) => {
            Err(Failure::Network(super::bounded_reason(&e.to_string())))
        }
        Err(e) => Err(refused(e)),
    }
}

fn refused(reason: impl ToString) -> Failure {
    Failure::Refused {
        method: super::Method::Upnp,
        reason: super::bounded_reason(&reason.to_string()),
    }
}

/// Map TCP `external_port` (or, when another host holds it, any port the router gives) to
/// `internal` for `lifetime` seconds (0: permanent, for routers that grant nothing else);
/// returns the external address and the lifetime granted (`None`: permanent).
pub async fn map(
    router: &Router,
    external_port: u16,
    internal: SocketAddr,
    lifetime: u32,
) -> Result<(SocketAddr, Option<Duration>), Failure> {
    let gateway = &router.gateway;
    let ip = bounded(gateway.get_external_ip()).await?.map_err(refused)?;
    let mut lifetime = lifetime;
    let mut port = external_port;
    for _ in 0..3 {
        let added = bounded(gateway.add_port(
            PortMappingProtocol::TCP,
            port,
            internal,
            lifetime,
            DESCRIPTION,
        ))
        .await?;
        match added {
            Ok(()) => return Ok((SocketAddr::new(ip, port), lease(lifetime))),
            Err(AddPortError::OnlyPermanentLeasesSupported) if lifetime != 0 => lifetime = 0,
            Err(AddPortError::PortInUse) => {
                let any = bounded(gateway.add_any_port(
                    PortMappingProtocol::TCP,
                    internal,
                    lifetime,
                    DESCRIPTION,
                ))
                .await?;
                match any {
                    Ok(p) => {
                        port = p;
                        return Ok((SocketAddr::new(ip, port), lease(lifetime)));
                    }
                    Err(AddAnyPortError::OnlyPermanentLeasesSupported) if lifetime != 0 => {
                        lifetime = 0
                    }
                    Err(e) => return Err(refused(e)),
                }
            }
            Err(e) => return Err(refused(e)),
        }
    }
    Err(refused("the router refused every lease offered"))
}

fn lease(lifetime: u32) -> Option<Duration> {
    (lifetime != 0).then(|| Duration::from_secs(u64::from(lifetime)))
}

/// Delete the TCP mapping of `external_port`.
pub async fn remove(router: &Router, external_port: u16) -> Result<(), Failure> {
    bounded(
        router
            .gateway
            .remove_port(PortMappingProtocol::TCP, external_port),
    )
    .await?
    .map_err(refused)
}

/// The router's TCP mapping of `external_port`, read from its table (at most
/// [`MAX_ENTRIES_WALKED`] entries, each request bounded): `None` when it lists none.
pub async fn entry_of(router: &Router, external_port: u16) -> Result<Option<Entry>, Failure> {
    for index in 0..MAX_ENTRIES_WALKED {
        match bounded(router.gateway.get_generic_port_mapping_entry(index)).await? {
            Ok(e) if e.external_port == external_port && e.protocol == PortMappingProtocol::TCP => {
                return Ok(Some(Entry {
                    external_port: e.external_port,
                    internal_client: super::bounded_reason(&e.internal_client),
                    internal_port: e.internal_port,
                    description: super::bounded_reason(&e.port_mapping_description),
                }));
            }
            Ok(_) => {}
            // The end of the table (713 SpecifiedArrayIndexInvalid; some routers say 714
            // NoSuchEntryInArray).
            Err(GetGenericPortMappingEntryError::SpecifiedArrayIndexInvalid)
            | Err(GetGenericPortMappingEntryError::RequestError(RequestError::ErrorCode(714, _))) => {
                return Ok(None)
            }
            Err(GetGenericPortMappingEntryError::RequestError(
                e @ (RequestError::IoError(_)
                | RequestError::HyperError(_)
                | RequestError::HyperClientError(_)),
            )) => return Err(Failure::Network(super::bounded_reason(&e.to_string()))),
            Err(e) => return Err(refused(e)),
        }
    }
    Err(refused(format!(
        "its mapping table lists more than {MAX_ENTRIES_WALKED} entries"
    )))
}

async fn bounded<T>(request: impl std::future::Future<Output = T>) -> Result<T, Failure> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| Failure::NoAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    #[test]
    fn the_gateway_is_asked_first_by_unicast_then_the_lan_by_multicast() {
        assert_eq!(
            search_targets(Some(GW)),
            vec!["10.77.0.1:1900".parse().unwrap(), SSDP_MULTICAST]
        );
        assert_eq!(search_targets(None), vec![SSDP_MULTICAST]);
    }

    #[test]
    fn only_the_default_gateway_is_trusted_as_the_router() {
        assert_eq!(judge(IpAddr::V4(GW), Some(GW)), Ok(()));
        let other: IpAddr = "10.77.0.3".parse().unwrap();
        let failure = judge(other, Some(GW)).unwrap_err();
        assert_eq!(
            failure,
            Failure::NotTheRouter {
                answered: other,
                router: GW
            }
        );
        assert!(failure.to_string().contains("10.77.0.3"), "{failure}");
        assert!(failure.to_string().contains("ignored"), "{failure}");
    }

    fn entry(client: &str, port: u16, description: &str) -> Entry {
        Entry {
            external_port: 5719,
            internal_client: client.into(),
            internal_port: port,
            description: description.into(),
        }
    }

    #[test]
    fn only_an_entry_matching_client_port_and_description_is_ours() {
        let internal: SocketAddr = "10.77.0.2:5719".parse().unwrap();
        assert_eq!(
            entry("10.77.0.2", 5719, DESCRIPTION).not_ours(internal),
            None
        );
        for other in [
            entry("10.77.0.3", 5719, DESCRIPTION),
            entry("10.77.0.2", 9999, DESCRIPTION),
            entry("10.77.0.2", 5719, "other"),
            entry("not an address", 5719, DESCRIPTION),
        ] {
            assert!(other.not_ours(internal).is_some(), "{other:?}");
        }
    }

    #[test]
    fn without_a_known_gateway_the_device_that_answered_is_used() {
        assert_eq!(judge("192.168.1.254".parse().unwrap(), None), Ok(()));
    }
}
