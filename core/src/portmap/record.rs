//! The mapping this host holds, recorded in its data directory (`portmap.json`) while it is
//! held, so that a host killed without deleting it (SIGKILL, a power cut) deletes it at its
//! next start ([`clear_stale`]) instead of leaving the router forwarding to nothing until the
//! lease ends, or forever where the router grants only permanent leases.
//!
//! The file is small and read with a size cap; anything unreadable is ignored with a warning
//! (and removed), never a crash.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{gateway, pmp, upnp, Failure, Method};

/// The record's name in the data directory.
pub const FILE_NAME: &str = "portmap.json";
/// Largest record read (one mapping is about 200 bytes).
pub const MAX_RECORD_BYTES: u64 = 4096;
/// How long deleting a stale mapping may take in all.
pub const CLEAR_TIMEOUT: Duration = Duration::from_secs(10);

/// One mapping as the router holds it, with what deleting it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The router's LAN address (UPnP: the one that answered; PCP / NAT-PMP: the gateway).
    pub router: IpAddr,
    /// Always `"TCP"` (the only protocol mapped).
    pub protocol: String,
    pub method: RecordMethod,
    pub external_port: u16,
    /// The LAN address and port the router forwards to.
    pub internal: SocketAddr,
    /// PCP: the mapping's nonce, without which the router refuses to delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcp_nonce: Option<[u32; 3]>,
}

/// [`Method`] as written in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordMethod {
    Upnp,
    Pcp,
    NatPmp,
}

impl From<Method> for RecordMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Upnp => RecordMethod::Upnp,
            Method::Pcp => RecordMethod::Pcp,
            Method::NatPmp => RecordMethod::NatPmp,
        }
    }
}

/// The record's path in `data_dir`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The record in `text`, if it is one. Pure.
pub fn parse(text: &[u8]) -> Option<Record> {
    let record: Record = serde_json::from_slice(text).ok()?;
    (record.protocol == "TCP" && record.external_port != 0).then_some(record)
}

/// Write `record` to `path` (replacing the file whole: written beside it, then renamed).
pub fn write(path: &Path, record: &Record) {
    let result = (|| {
        let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        warn!(path = %path.display(), error = %e, "could not record the port mapping (a crash would leave it on the router until its lease ends)");
    }
}

/// Remove the record at `path` (the mapping is deleted).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %path.display(), error = %e, "could not remove the port mapping record")
        }
    }
}

/// The record at `path`: `Ok(None)` when there is none; garbage or an oversized file is
/// ignored with a warning (and removed).
pub fn read(path: &Path) -> Option<Record> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "could not read the port mapping record; ignored");
            return None;
        }
    };
    let mut text = Vec::new();
    if let Err(e) = file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut text) {
        warn!(path = %path.display(), error = %e, "could not read the port mapping record; ignored");
        return None;
    }
    let record = (text.len() as u64 <= MAX_RECORD_BYTES)
        .then(|| parse(&text))
        .flatten();
    if record.is_none() {
        warn!(path = %path.display(), "the port mapping record is not one; ignored and removed");
        remove(path);
    }
    record
}

/// Delete the mapping recorded at `path` by a previous run that did not (best effort, at most
/// [`CLEAR_TIMEOUT`]), then remove the record. Nothing recorded: nothing done.
pub async fn clear_stale(path: &Path) {
    let Some(record) = read(path) else {
        return;
    };
    info!(
        router = %record.router,
        external_port = record.external_port,
        method = ?record.method,
        "deleting the port mapping a previous run left on the router"
    );
    match tokio::time::timeout(CLEAR_TIMEOUT, delete(&record)).await {
        Ok(Ok(())) => info!(
            external_port = record.external_port,
            "stale port mapping deleted"
        ),
        Ok(Err(e)) => {
            warn!(error = %e, "the router did not delete the stale port mapping; it ends with its lease")
        }
        Err(_) => warn!(
            "the router did not delete the stale port mapping in time; it ends with its lease"
        ),
    }
    remove(path);
}

async fn delete(record: &Record) -> Result<(), Failure> {
    match record.method {
        RecordMethod::Upnp => {
            let bind = Some(record.internal.ip());
            let known = gateway::default_gateway();
            let router = upnp::discover(bind, known).await?;
            if router.addr() != record.router {
                return Err(Failure::NotTheRouter {
                    answered: router.addr(),
                    router: match record.router {
                        IpAddr::V4(v4) => v4,
                        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                    },
                });
            }
            upnp::remove(&router, record.external_port).await
        }
        RecordMethod::Pcp | RecordMethod::NatPmp => {
            let IpAddr::V4(gw) = record.router else {
                return Err(Failure::NoGateway);
            };
            let port = NonZeroU16::new(record.internal.port()).ok_or(Failure::NoAnswer)?;
            pmp::drop_recorded(gw, record.internal.ip(), port, record.pcp_nonce).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            router: "10.77.0.1".parse().unwrap(),
            protocol: "TCP".into(),
            method: RecordMethod::Pcp,
            external_port: 5720,
            internal: "10.77.0.2:5720".parse().unwrap(),
            pcp_nonce: Some([1, 2, 3]),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        write(&path, &record());
        assert_eq!(read(&path), Some(record()));
        remove(&path);
        assert_eq!(read(&path), None);
    }

    #[test]
    fn garbage_and_oversized_records_are_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::write(&path, b"\xff{not json").unwrap();
        assert_eq!(read(&path), None);
        assert!(!path.exists());
        let mut big = serde_json::to_vec(&record()).unwrap();
        big.extend(std::iter::repeat_n(b' ', MAX_RECORD_BYTES as usize));
        std::fs::write(&path, &big).unwrap();
        assert_eq!(read(&path), None);
        assert!(!path.exists());
        assert_eq!(parse(br#"{"router":"10.0.0.1","protocol":"UDP","method":"upnp","external_port":1,"internal":"10.0.0.2:1"}"#), None);
    }
}
