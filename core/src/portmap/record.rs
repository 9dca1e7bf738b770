//! The mapping this host holds, recorded in its data directory (`portmap.json`) while it is
//! held, so that a host killed without deleting it (SIGKILL, a power cut) deletes it at its
//! next start ([`clear_stale`]) instead of leaving the router forwarding to nothing until the
//! lease ends, or forever where the router grants only permanent leases.
//!
//! The file is small and read with a size cap; anything unreadable is ignored with a warning
//! (and removed), never a crash. A UPnP mapping is deleted only while the router still maps its
//! port to this host's Tertulia: another's, made on that port since, is left alone.

use std::io::{Read, Write};
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

/// Write `record` to `path` (replacing the file whole: written beside it, then renamed). The
/// file beside it is created new (mode 0600, never through a link planted at its name; a stale
/// one left by a crash is removed first).
pub fn write(path: &Path, record: &Record) {
    let result = (|| {
        let text = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        let mut file = match create_new(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp)?;
                create_new(&tmp)?
            }
            other => other?,
        };
        file.write_all(&text)?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        warn!(path = %path.display(), error = %e, "could not record the port mapping (a crash would leave it on the router until its lease ends)");
    }
}

fn create_new(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options.open(path)
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

/// The record at `path`: `None` when there is none; anything but a regular file (a FIFO, a
/// link), garbage or an oversized file is ignored with a warning (and removed). Blocking.
pub fn read(path: &Path) -> Option<Record> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(_) => {
            warn!(path = %path.display(), "the port mapping record is not a regular file; ignored and removed");
            remove(path);
            return None;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "could not read the port mapping record; ignored");
            return None;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Replaced by a FIFO or a link since it was looked at: never block, never follow.
        options.custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
    }
    let file = match options.open(path) {
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

/// What became of a recorded mapping when the router answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    Deleted,
    /// The router holds no mapping of that port (its lease ended, or someone deleted it).
    NotFound,
    /// The router maps that port to something else (why): left alone.
    NotOurs(String),
}

/// Whether the record is kept for a later start to retry, after `outcome` (`None`: out of
/// time): kept when the router could not be reached; dropped once it answered. Pure.
pub fn keep_after(outcome: Option<&Result<Cleared, Failure>>) -> bool {
    match outcome {
        None => true,
        Some(Ok(_)) => false,
        Some(Err(failure)) => matches!(
            failure,
            Failure::NoAnswer
                | Failure::Network(_)
                | Failure::NoGateway
                | Failure::NotTheRouter { .. }
        ),
    }
}

/// Delete the mapping recorded at `path` by a previous run that did not (best effort, at most
/// [`CLEAR_TIMEOUT`]), if the router still maps its port to this host's Tertulia; then remove
/// the record, unless the router could not be reached ([`keep_after`]: a later start retries).
/// Nothing recorded: nothing done.
pub async fn clear_stale(path: &Path) {
    let owned = path.to_path_buf();
    let Ok(Some(record)) = tokio::task::spawn_blocking(move || read(&owned)).await else {
        return;
    };
    info!(
        router = %record.router,
        external_port = record.external_port,
        method = ?record.method,
        "deleting the port mapping a previous run left on the router"
    );
    let outcome = tokio::time::timeout(CLEAR_TIMEOUT, delete(&record))
        .await
        .ok();
    let port = record.external_port;
    match &outcome {
        Some(Ok(Cleared::Deleted)) => info!(external_port = port, "stale port mapping deleted"),
        Some(Ok(Cleared::NotFound)) => {
            info!(
                external_port = port,
                "the router no longer holds the stale port mapping"
            )
        }
        Some(Ok(Cleared::NotOurs(why))) => warn!(
            external_port = port,
            "the router maps this port to another now ({why}); that mapping was left alone"
        ),
        Some(Err(e)) => {
            warn!(error = %e, "the router did not delete the stale port mapping; it ends with its lease")
        }
        None => warn!(
            "the router did not delete the stale port mapping in time; it ends with its lease"
        ),
    }
    if keep_after(outcome.as_ref()) {
        info!(path = %path.display(), "the port mapping record is kept: the next start tries again");
    } else {
        let owned = path.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || remove(&owned)).await;
    }
}

async fn delete(record: &Record) -> Result<Cleared, Failure> {
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
            match upnp::entry_of(&router, record.external_port).await? {
                None => Ok(Cleared::NotFound),
                Some(entry) => match entry.not_ours(record.internal) {
                    Some(why) => Ok(Cleared::NotOurs(why)),
                    None => upnp::remove(&router, record.external_port)
                        .await
                        .map(|()| Cleared::Deleted),
                },
            }
        }
        RecordMethod::Pcp | RecordMethod::NatPmp => {
            let IpAddr::V4(gw) = record.router else {
                return Err(Failure::NoGateway);
            };
            let port = NonZeroU16::new(record.internal.port()).ok_or(Failure::NoAnswer)?;
            pmp::drop_recorded(gw, record.internal.ip(), port, record.pcp_nonce)
                .await
                .map(|()| Cleared::Deleted)
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

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_link_at_the_record_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening a FIFO with no writer blocks forever; read must return at once.
        assert_eq!(read(&path), None);
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "the FIFO was not removed"
        );

        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, serde_json::to_vec(&record()).unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert_eq!(read(&path), None, "a link was followed");
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "the link was not removed"
        );
        assert!(target.exists(), "the link's target was removed");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let target = dir.path().join("victim");
        std::fs::write(&target, b"untouched").unwrap();
        std::os::unix::fs::symlink(&target, path.with_extension("json.tmp")).unwrap();
        write(&path, &record());
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_file());
        assert_eq!(read(&path), Some(record()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_record_is_kept_only_when_the_router_could_not_be_reached() {
        assert!(keep_after(None));
        assert!(keep_after(Some(&Err(Failure::NoAnswer))));
        assert!(keep_after(Some(&Err(Failure::Network(
            "unreachable".into()
        )))));
        for answered in [
            Ok(Cleared::Deleted),
            Ok(Cleared::NotFound),
            Ok(Cleared::NotOurs("another".into())),
            Err(Failure::Refused {
                method: Method::Upnp,
                reason: "no".into(),
            }),
        ] {
            assert!(!keep_after(Some(&answered)), "{answered:?}");
        }
    }
}
