//! The set-up shared by the tests that attack a running room (`hostile_memory.rs`,
//! `file_host_memory.rs`, `file_host_limits.rs`): two ordinary members who keep chatting
//! while it happens, the server's resident memory watched from its idle size, members that
//! join and never read, and other loopback addresses to attack from.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tertulia_core::message::ServerMessage;

use crate::{rss_bytes, ChatProcess, RawMember, ServerProcess};

const MIB: u64 = 1024 * 1024;

/// How far above its idle size an attacked server's RSS may go.
pub const RSS_BOUND: u64 = 64 * MIB;

/// `127.0.0.LAST`: another source address on this machine (every 127.0.0.0/8 address is
/// loopback), for attacks from several addresses.
pub fn loopback(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// A fresh client id, recognisable by `n` (a member making up identities).
pub fn client_id(n: usize) -> String {
    format!("{n:0>8}{:024x}", rand::random::<u128>() >> 32)
}

/// Two ordinary members (`tertulia-chat`), `ana` and `ben`, connected to each other.
pub async fn two_members(server: &ServerProcess, passphrase: &str) -> (ChatProcess, ChatProcess) {
    let mut ana = ChatProcess::start(server.addr, "ana", passphrase, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", passphrase, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;
    (ana, ben)
}

/// Ana says `text` and Ben gets it.
pub async fn still_chatting(ana: &mut ChatProcess, ben: &mut ChatProcess, text: &str) {
    ana.say(text).await;
    ben.wait_for(text, |e| e["type"] == "message" && e["text"] == text)
        .await;
}

/// A member (random client id) from `source` that has joined as `nick` and never reads
/// (not even its welcome).
pub async fn never_reading(
    addr: SocketAddr,
    passphrase: &str,
    nick: &str,
    source: Option<IpAddr>,
) -> RawMember {
    let mut member = RawMember::connect(addr, passphrase, source)
        .await
        .expect("connect");
    member.join(nick).await;
    member
}

/// A member from `source` that has joined as `nick` under `client` (a random one if `None`)
/// and read its welcome.
pub async fn welcomed(
    addr: SocketAddr,
    passphrase: &str,
    nick: &str,
    client: Option<&str>,
    source: Option<IpAddr>,
) -> RawMember {
    let mut member = RawMember::connect(addr, passphrase, source)
        .await
        .expect("connect");
    match client {
        Some(client) => member.join_as(nick, client).await,
        None => member.join(nick).await,
    }
    member
        .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
        .await
        .expect("welcome");
    member
}

/// The server's RSS once the room has settled (members joined, history loaded).
pub async fn idle_rss(server: &ServerProcess) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss_bytes(server.child.id().expect("pid")).expect("rss")
}

/// The highest RSS of a process, sampled every 20 ms while it runs.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    /// Watch `server` from now on.
    pub fn watch(server: &ServerProcess) -> Self {
        let pid = server.child.id().expect("pid");
        let peak = Arc::new(AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            while let Some(rss) = rss_bytes(pid) {
                seen.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, task }
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The peak so far stayed under `idle` + [`RSS_BOUND`] (printed either way).
    pub fn assert_bounded(&self, what: &str, idle: u64) {
        let peak = self.peak();
        println!(
            "{what}: idle RSS {} MiB, peak {} MiB (+{} MiB, bound +{} MiB)",
            idle / MIB,
            peak / MIB,
            peak.saturating_sub(idle) / MIB,
            RSS_BOUND / MIB
        );
        assert!(
            peak < idle + RSS_BOUND,
            "{what}: RSS grew from {} MiB to {} MiB",
            idle / MIB,
            peak / MIB
        );
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}
