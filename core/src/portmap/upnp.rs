//! UPnP-IGD through `igd-next`: find the router by SSDP on the LAN, map a TCP port on its
//! WANIPConnection (or WANPPPConnection) service, learn its external address, delete it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::aio::Gateway;
use igd_next::{AddAnyPortError, AddPortError, PortMappingProtocol, SearchError, SearchOptions};

use super::Failure;

/// How long SSDP discovery waits for a router's answer (a router answers in milliseconds).
pub const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one SOAP request to the router may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The mapping's description on the router's page.
pub const DESCRIPTION: &str = "Tertulia";

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

/// Find the IPv4 router by SSDP, sending from `local` (this host's LAN address).
pub async fn discover(local: Option<IpAddr>) -> Result<Router, Failure> {
    let mut options = SearchOptions::default();
    if let Some(ip) = local.filter(IpAddr::is_ipv4) {
        options.bind_addr = SocketAddr::new(ip, 0);
    }
    options.timeout = Some(SEARCH_TIMEOUT);
    options.single_search_timeout = Some(SEARCH_TIMEOUT);
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

async fn bounded<T>(request: impl std::future::Future<Output = T>) -> Result<T, Failure> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| Failure::NoAnswer)
}
