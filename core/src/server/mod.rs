//! The room server: a TCP listener, one handler per connection, and the room they share.
//!
//! Each connection has a reader ([`handler`]: handshake, then client messages into the
//! [`Room`]) and a writer task ([`writer`]) that sends the room's broadcasts from the shared
//! [`FanoutLog`] and the member's private messages (sealed with the session key) in the
//! room's order, everything due in one `writev`.
//!
//! ## Layout
//! - [`room`]: membership, presence, history and the seal-once fan-out (pure: time, the room
//!   key and the epoch come in from outside); [`roster`]: its online list;
//!   [`fanout`]: the shared log of sealed broadcasts; [`dedupe`]: exactly-once on the server's
//!   side; [`flood`]: the per-member rate limit; [`store`]: the room's durable state (SQLite);
//!   [`recent`]: the recent history in memory, which writers replay from in pieces;
//!   [`requests`]: the rate limits of `join` retries, `ping`, `typing` and `older`;
//!   [`pages`]: `older` pages, read off the room's lock.

//! - [`clock`]: the time and randomness the room is given.
//! - [`order`]: the order a member's connection sends in (pure), used by the writer.
//! - [`link`]: what the room holds of a member connection, and what its writer reports.
//! - [`handler`] and [`writer`]: the two halves of a connection (I/O).
//! - [`addresses`]: the addresses a host shares with others; [`source`]: the unit per-address
//!   limits count (an IPv4 address or an IPv6 /64); [`throttle`]: failed handshakes per source
//!   (online guessing).
//! - [`binding`]: a stored room is bound to its passphrase.
//! - [`buckets`]: flood buckets per client id and per source that outlive connections.
//! - [`files`]: the files the room keeps, uploads under way, and their limits (§13).

pub mod addresses;
mod binding;
mod buckets;
mod clock;
pub(crate) mod dedupe;
mod fanout;
mod files;
mod flood;
mod handler;
mod link;
mod order;
mod pages;
mod recent;
mod requests;
mod room;
mod roster;
pub(crate) mod source;
mod store;
mod throttle;
mod turns;
mod writer;

pub use addresses::{shareable_addresses, shareable_for};
pub use files::{
    FileLimits, DEFAULT_MAX_FILES_BYTES, DEFAULT_MAX_FILE_BYTES, DEFAULT_UNFINISHED_TTL,
    DEFAULT_UNSTARTED_TTL,
};
pub use flood::FloodLimit;
pub use requests::RequestLimits;
pub use room::RoomConfig;
pub use store::{Retention, StoreError};
pub use throttle::HandshakeThrottle;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::conn;
use crate::frame::MAX_BODY;
use crate::hello::RejectCode;
use crate::identity::{Fingerprint, HostKey, HostPublicKey};
use crate::message::MAX_SEND_WINDOW;
use crate::passphrase::{self, PassphraseError, Salt};
use crate::secret::{SecretKey, SecretString};
use crate::text::MAX_MESSAGE_BYTES;
use buckets::{FloodBuckets, SourceBuckets};
use clock::{Now, RoomIdentity};
use fanout::FanoutLog;
use room::Room;
use source::Source;
use store::Store;

/// Server tuning; see `docs/PROTOCOL.md` (Limits) for the defaults and their reasons.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub room: RoomConfig,
    /// Simultaneous connections (handshaking or joined).
    pub max_connections: usize,
    /// Simultaneous connections from one IPv4 address or IPv6 /64.
    pub max_connections_per_ip: usize,
    /// Largest frame body a client may send (at most [`MAX_BODY`]).
    pub max_frame_bytes: usize,
    /// Longest chat message in UTF-8 bytes (at most [`MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
    /// Chat messages per second per member, and the burst allowed.
    pub flood: FloodLimit,
    /// Messages a member may have waiting for the flood limit; one more and it is cut off.
    pub flood_queue: usize,
    /// Rates of `join` retries, `ping`, `typing` and `older` (off when `flood` is off).
    pub requests: RequestLimits,
    /// Time from TCP accept to a completed Noise handshake.
    pub handshake_timeout: Duration,
    /// Time from the handshake to an accepted nickname (the client joins right after the
    /// handshake; `tertulia-server` sets it to the handshake timeout).
    pub join_timeout: Duration,
    /// Failed handshakes per source address: delay, then a temporary refusal (`Reject(6)`).
    pub handshake_throttle: HandshakeThrottle,
    /// A connection that sends nothing (not even a ping) for this long is closed.
    pub idle_timeout: Duration,
    /// Items (frames or private messages) in one member's send queue.
    pub send_queue_items: usize,
    /// Kernel send buffer per connection (`SO_SNDBUF`). Bounded so a member that stops reading
    /// costs little kernel memory and is detected (and cut off) sooner; `None`: autotuned.
    pub socket_send_buffer: Option<usize>,
    /// Where the room's history and state are stored (`None`: in memory only).
    pub data_dir: Option<std::path::PathBuf>,
    /// Largest size of the room database; at it the oldest history is deleted to make room
    /// (messages are refused only when the disk itself is full).
    pub max_store_bytes: Option<u64>,
    /// What to do when `data_dir` holds a room bound to a different passphrase.
    pub previous_room: PreviousRoom,
    /// New members (joins that write a join event; resuming writes none) one source may
    /// add per minute, after a burst of `max_connections_per_ip`; `0` turns it off. Bounds
    /// the join and leave events a join/leave loop writes.
    pub joins_per_minute: f64,
    /// A room broadcast key in use this long (since the first broadcast sealed under it) is
    /// replaced by a fresh one; at least [`MIN_REKEY_INTERVAL`].
    pub rekey_interval: Duration,
    /// The host's long-term identity, presented in every handshake (clients pin it).
    /// `None`: a new identity for this process (an in-memory room; members who pinned the
    /// previous one are warned that it changed).
    pub host_key: Option<HostKey>,
    /// Files members share: the per-file limit (0: none taken), the quota, unfinished uploads.
    pub files: FileLimits,
}

/// What happens to a stored room whose passphrase differs from the one the server starts
/// with: a room is bound to its passphrase, so a different one means a different room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviousRoom {
    /// Refuse to start ([`ServerError::RoomPassphraseChanged`]); the host decides.
    #[default]
    Refuse,
    /// Start a new room; the previous room's files are kept, set aside in the data directory.
    Keep,
    /// Start a new room; the previous room's files are deleted.
    Delete,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            room: RoomConfig::default(),
            max_connections: 1024,
            max_connections_per_ip: 16,
            max_frame_bytes: MAX_BODY,
            max_message_bytes: MAX_MESSAGE_BYTES,
            flood: FloodLimit::default(),
            flood_queue: 64,
            requests: RequestLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(10),
            handshake_throttle: HandshakeThrottle::default(),
            idle_timeout: Duration::from_secs(60),
            send_queue_items: 8192,
            socket_send_buffer: Some(256 * 1024),
            data_dir: None,
            max_store_bytes: Some(DEFAULT_MAX_STORE_BYTES),
            previous_room: PreviousRoom::Refuse,
            joins_per_minute: 6.0,
            rekey_interval: DEFAULT_REKEY_INTERVAL,
            host_key: None,
            files: FileLimits::default(),
        }
    }
}

/// Default [`ServerConfig::rekey_interval`]: 5 minutes.
pub const DEFAULT_REKEY_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The shortest [`ServerConfig::rekey_interval`]: every rotation costs each member one
/// session message.
pub const MIN_REKEY_INTERVAL: Duration = Duration::from_secs(1);

/// Default cap on the room database: 512 MiB (see `docs/PROTOCOL.md`, Limits).
pub const DEFAULT_MAX_STORE_BYTES: u64 = 512 * 1024 * 1024;

/// Server settings that contradict each other or the protocol.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    #[error("the largest frame must be from {MIN_FRAME_BYTES} to {MAX_BODY} bytes, not {0}")]
    FrameBytes(usize),
    #[error("the longest message must be from 1 to {MAX_MESSAGE_BYTES} bytes, not {0}")]
    MessageBytes(usize),
    #[error("a frame of {frame} bytes is too small for messages of {message} bytes (needs at least {needed})")]
    FrameTooSmallForMessage {
        frame: usize,
        message: usize,
        needed: usize,
    },
    #[error("the send-queue cap ({cap} bytes) is below the send-queue budget ({budget} bytes)")]
    SendQueueCapBelowBudget { cap: usize, budget: usize },
    #[error("the flood rate must be from 0 to {MAX_FLOOD_RATE} messages per second, not {0}")]
    FloodRate(f64),
    #[error("the join rate must be from 0 to {MAX_FLOOD_RATE} new members per minute, not {0}")]
    JoinRate(f64),
    #[error("at least one connection (and one per address) must be allowed")]
    NoConnections,
    #[error("the room key must be kept at least 1 s before it is replaced, not {} s", .0.as_secs_f64())]
    RekeyInterval(Duration),
    #[error("the largest file ({file} bytes) does not fit the room's file quota ({quota} bytes)")]
    FileOverQuota { file: u64, quota: u64 },
}

/// The smallest frame a client's `file_chunk` needs: a whole chunk, its fields and the tag.
pub const FRAME_NEEDED_FOR_FILES: usize = crate::files::CHUNK_BYTES as usize + 64;

/// The smallest frame limit a server may set.
pub const MIN_FRAME_BYTES: usize = 1024;
/// The highest flood rate a server may set (messages per second).
pub const MAX_FLOOD_RATE: f64 = 1_000_000.0;

impl ServerConfig {
    /// The smallest frame that carries the longest message: JSON-escaped text can take
    /// twice its bytes, plus the message around it.
    pub fn frame_needed_for(max_message_bytes: usize) -> usize {
        (2 * max_message_bytes + 512).min(MAX_BODY)
    }

    /// Check that the settings agree with each other and with the protocol's limits.
    /// [`Server::bind`] refuses a configuration that does not pass.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_FRAME_BYTES..=MAX_BODY).contains(&self.max_frame_bytes) {
            return Err(ConfigError::FrameBytes(self.max_frame_bytes));
        }
        if !(1..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(ConfigError::MessageBytes(self.max_message_bytes));
        }
        let needed = Self::frame_needed_for(self.max_message_bytes);
        if self.max_frame_bytes < needed {
            return Err(ConfigError::FrameTooSmallForMessage {
                frame: self.max_frame_bytes,
                message: self.max_message_bytes,
                needed,
            });
        }
        if self.room.send_queue_max_bytes < self.room.send_queue_bytes {
            return Err(ConfigError::SendQueueCapBelowBudget {
                cap: self.room.send_queue_max_bytes,
                budget: self.room.send_queue_bytes,
            });
        }
        let rate = self.flood.per_second;
        if !(rate.is_finite() && (0.0..=MAX_FLOOD_RATE).contains(&rate)) {
            return Err(ConfigError::FloodRate(rate));
        }
        let joins = self.joins_per_minute;
        if !(joins.is_finite() && (0.0..=MAX_FLOOD_RATE).contains(&joins)) {
            return Err(ConfigError::JoinRate(joins));
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(ConfigError::NoConnections);
        }
        if self.rekey_interval < MIN_REKEY_INTERVAL {
            return Err(ConfigError::RekeyInterval(self.rekey_interval));
        }
        if self.files.enabled() && self.files.max_file_bytes > self.files.max_total_bytes {
            return Err(ConfigError::FileOverQuota {
                file: self.files.max_file_bytes,
                quota: self.files.max_total_bytes,
            });
        }
        Ok(())
    }

    /// Does this server take files? Not with `files.max_file_bytes` 0, nor with frames too
    /// small to carry a chunk ([`FRAME_NEEDED_FOR_FILES`]): then offers are `disabled`.
    pub fn takes_files(&self) -> bool {
        self.files.enabled() && self.max_frame_bytes >= FRAME_NEEDED_FOR_FILES
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    #[error("the room key derivation did not finish: {0}")]
    Kdf(#[from] tokio::task::JoinError),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot use the room's files directory: {0}")]
    Files(#[source] std::io::Error),
    /// The data directory holds a room bound to a different passphrase.
    #[error("the room stored in {} was created with a different passphrase; start a new room or use the previous passphrase", data_dir.display())]
    RoomPassphraseChanged { data_dir: std::path::PathBuf },
}

struct Shared {
    config: ServerConfig,
    salt: Salt,
    psk: SecretKey,
    /// The host's identity ([`ServerConfig::host_key`], or one made at start).
    host_key: HostKey,
    room: Mutex<Room>,
    /// The room's broadcast log (see [`Room::fanout`]).
    log: Arc<FanoutLog>,
    /// The room's recent history (see [`Room::recent`]).
    recent: Arc<recent::RecentHistory>,
    next_conn_id: AtomicU64,
    /// Open connections per source (IPv4 address or IPv6 /64).
    per_ip: Mutex<HashMap<Source, usize>>,
    /// Failed handshakes per source, and the rate limit on logging them.
    failed_handshakes: Mutex<(throttle::FailedHandshakes, throttle::LogLimit)>,
    /// Turns to be answered: at most two unconfirmed handshakes per source at once.
    handshake_turns: turns::HandshakeTurns,
    /// Flood control per client id and per source, across connections.
    flood: FloodBuckets,
    /// `file_offer`s per client id and per source, across connections (each connection has
    /// its own bucket too, see `requests`).
    file_offers: FloodBuckets,
    /// New members per source (see [`ServerConfig::joins_per_minute`]).
    joins: SourceBuckets,
    /// The rate limit on logging other connections that end before joining (refused, failed
    /// or timed-out handshakes): anyone can make those, as fast as they can connect.
    connection_log: Mutex<throttle::LogLimit>,
    /// The room's files (§13).
    files: Arc<files::FileHost>,
}

/// One connection counted against its source address; released on drop.
struct IpSlot {
    shared: Arc<Shared>,
    ip: Source,
}

impl IpSlot {
    fn acquire(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let ip = Source::of(ip);
        let mut per_ip = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= shared.config.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(Self {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    fn failed_handshakes(
        &self,
    ) -> MutexGuard<'_, (throttle::FailedHandshakes, throttle::LogLimit)> {
        self.failed_handshakes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// May a line about a connection that ended before joining be logged now? `Some(n)`:
    /// yes, and `n` such lines were left out since the last one.
    fn connection_log(&self) -> Option<u64> {
        self.connection_log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .allow(Instant::now())
    }

    fn room(&self) -> MutexGuard<'_, Room> {
        // A panic while holding the lock would be a bug; keep serving with the data as it is.
        self.room
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A bound, keyed server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Bind `addr` and derive the room key from `passphrase` (once, for the process lifetime).
    pub async fn bind(
        addr: &str,
        passphrase: &str,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let listener = TcpListener::bind(addr).await?;
        Self::with_listener(listener, passphrase, config).await
    }

    pub async fn with_listener(
        listener: TcpListener,
        passphrase: &str,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let passphrase = SecretString::new(passphrase::normalize(passphrase)?);
        let mut config = config;
        config.room.send_window = if config.flood.is_off() {
            MAX_SEND_WINDOW
        } else {
            (config.flood_queue as u32 / 2).clamp(1, MAX_SEND_WINDOW)
        };
        let (room, salt, psk) = match &config.data_dir {
            Some(dir) => {
                let (mut store, salt, psk) =
                    open_bound_store(dir, &passphrase, config.previous_room).await?;
                if let Some(bytes) = config.max_store_bytes {
                    store.set_max_bytes(bytes)?;
                }
                let (room, salt) = Room::with_store(
                    config.room.clone(),
                    store,
                    salt,
                    RoomIdentity::generate(&mut rand::thread_rng()),
                    Now::current(),
                )?;
                (room, salt, psk)
            }
            None => {
                let salt = passphrase::random_salt();
                let room = Room::new(
                    config.room.clone(),
                    RoomIdentity::generate(&mut rand::thread_rng()),
                );
                (room, salt, derive_psk(&passphrase, salt).await?)
            }
        };
        let mut room = room;
        if config.files.enabled() && !config.takes_files() {
            warn!(
                max_frame_bytes = config.max_frame_bytes,
                needed = FRAME_NEEDED_FOR_FILES,
                "frames are too small to carry file chunks: this room takes no files"
            );
            config.files.max_file_bytes = 0;
        }
        let file_limits = config.files;
        let file_dir = config.data_dir.clone();
        let store = room.store_handle();
        let files = tokio::task::spawn_blocking(move || {
            files::FileHost::open(file_limits, file_dir.as_deref(), store)
        })
        .await
        .map_err(|e| ServerError::Files(std::io::Error::other(e)))?
        .map_err(|e| match e {
            files::FilesError::Io(e) => ServerError::Files(e),
            files::FilesError::Store(e) => ServerError::Store(e),
        })?;
        let files = Arc::new(files);
        room.set_files(files.clone());
        let log = room.fanout();
        let recent = room.recent();
        let room = Mutex::new(room);
        let joins = SourceBuckets::new(FloodLimit {
            per_second: config.joins_per_minute / 60.0,
            burst: config.max_connections_per_ip as f64,
        });
        let flood = FloodBuckets::new(
            config.flood,
            config.flood.per_source(config.max_connections_per_ip),
        );
        let offers = config.requests.file_offer;
        let file_offers =
            FloodBuckets::new(offers, offers.per_source(requests::FILE_OFFERS_PER_SOURCE));
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                host_key: config.host_key.clone().unwrap_or_else(HostKey::generate),
                salt,
                psk,
                room,
                log,
                recent,
                next_conn_id: AtomicU64::new(1),
                per_ip: Mutex::new(HashMap::new()),
                failed_handshakes: Mutex::new((
                    throttle::FailedHandshakes::new(config.handshake_throttle),
                    throttle::LogLimit::default(),
                )),
                handshake_turns: turns::HandshakeTurns::default(),
                flood,
                file_offers,
                joins,
                connection_log: Mutex::new(throttle::LogLimit::default()),
                files,
                config,
            }),
        })
    }

    /// The host identity's public key, presented in every handshake.
    pub fn host_public_key(&self) -> HostPublicKey {
        self.shared.host_key.public()
    }

    /// The fingerprint members compare and pin (shown at start, carried in invite codes).
    pub fn host_fingerprint(&self) -> Fingerprint {
        self.host_public_key().fingerprint()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The addresses others can reach this server at, best first: only ones its listener
    /// accepts on (IPv6 only when it listens on IPv6).
    pub fn shareable_addresses(&self) -> std::io::Result<Vec<SocketAddr>> {
        let local = self.listener.local_addr()?;
        let dual_stack = local.is_ipv6()
            && !socket2::SockRef::from(&self.listener)
                .only_v6()
                .unwrap_or(true);
        Ok(addresses::shareable_on(
            &addresses::interface_addrs(),
            local,
            dual_stack,
        ))
    }

    /// Serve until `shutdown` completes, then tell members and wait briefly for connections to close.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, shared } = self;
        let limit = Arc::new(Semaphore::new(shared.config.max_connections));
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let stop_expiry = CancellationToken::new();
        tasks.spawn(expire_away_members(shared.clone(), stop_expiry.clone()));
        tokio::pin!(shutdown);
        let mut accept_errors = 0u32;
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(ok) => {
                    accept_errors = 0;
                    ok
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    accept_errors = (accept_errors + 1).min(6);
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10 << accept_errors)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if let Some(bytes) = shared.config.socket_send_buffer {
                let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
            }
            let permit = limit.clone().try_acquire_owned();
            let slot = IpSlot::acquire(&shared, peer.ip());
            match (permit, slot) {
                (Ok(permit), Some(slot)) => {
                    let shared = shared.clone();
                    let stop = stop.clone();
                    tasks.spawn(async move {
                        handler::handle_connection(shared, stream, peer, stop).await;
                        drop(slot);
                        drop(permit);
                    });
                }
                (permit, slot) => {
                    let logged = shared.connection_log();
                    let code = if permit.is_err() {
                        if let Some(suppressed) = logged {
                            warn!(%peer, suppressed, "connection limit reached; refusing");
                        }
                        RejectCode::ServerFull
                    } else {
                        if let Some(suppressed) = logged {
                            warn!(%peer, suppressed, "per-address connection limit reached; refusing");
                        }
                        RejectCode::TooManyFromAddress
                    };
                    drop(slot);
                    tasks.spawn(async move {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            conn::send_reject(&mut stream, code),
                        )
                        .await;
                    });
                }
            }
        }
        info!("shutting down: telling members");
        shared.room().shutdown();
        stop_expiry.cancel();
        tasks.close();
        // Members get the notice and close their side; give them a moment, then cut the rest
        // (connections still handshaking or not reading).
        if tokio::time::timeout(Duration::from_secs(2), tasks.wait())
            .await
            .is_err()
        {
            stop.cancel();
            if tokio::time::timeout(Duration::from_secs(1), tasks.wait())
                .await
                .is_err()
            {
                warn!("some connections did not close in time");
            }
        }
    }
}

/// The room key from the passphrase, off the async runtime (Argon2id takes a while).
async fn derive_psk(passphrase: &str, salt: Salt) -> Result<SecretKey, ServerError> {
    let passphrase = SecretString::new(passphrase.to_owned());
    let psk =
        tokio::task::spawn_blocking(move || passphrase::derive_psk(&passphrase, &salt)).await??;
    Ok(SecretKey::new(psk))
}

/// Open the room stored in `dir` if it is bound to `passphrase` (a room stored before rooms
/// were bound adopts it); otherwise refuse, or set it aside or delete it and start a new room,
/// as `previous` says. Returns the store, the room's salt and its pre-shared key.
async fn open_bound_store(
    dir: &std::path::Path,
    passphrase: &str,
    previous: PreviousRoom,
) -> Result<(Store, Salt, SecretKey), ServerError> {
    let mut store = Store::open(dir)?;
    let salt = store.salt(passphrase::random_salt())?;
    let psk = derive_psk(passphrase, salt).await?;
    match store.verifier()? {
        Some(stored) if binding::matches(&stored, &psk) => return Ok((store, salt, psk)),
        Some(_) => {}
        None => {
            // A new room, or one stored before rooms were bound (and before deleted history
            // was overwritten): it adopts this passphrase, and once, free space is wiped.
            if store.has_history()? {
                if let Err(e) = store.wipe_free_space() {
                    warn!(error = %e, "could not wipe deleted history from the room database's free space");
                }
            }
            store.set_verifier(&binding::verifier(&psk))?;
            return Ok((store, salt, psk));
        }
    }
    let directory_error = |error| StoreError::Directory {
        path: dir.display().to_string(),
        error,
    };
    match previous {
        PreviousRoom::Refuse => {
            return Err(ServerError::RoomPassphraseChanged {
                data_dir: dir.to_path_buf(),
            })
        }
        PreviousRoom::Keep => {
            drop(store);
            let kept =
                binding::set_aside(dir, std::time::SystemTime::now()).map_err(directory_error)?;
            info!(previous = %kept.display(), "new passphrase: the previous room was set aside; starting a new room");
        }
        PreviousRoom::Delete => {
            drop(store);
            binding::delete(dir).map_err(directory_error)?;
            info!(dir = %dir.display(), "new passphrase: the previous room was deleted; starting a new room");
        }
    }
    let mut store = Store::open(dir)?;
    let salt = store.salt(passphrase::random_salt())?;
    let psk = derive_psk(passphrase, salt).await?;
    store.set_verifier(&binding::verifier(&psk))?;
    Ok((store, salt, psk))
}

/// Announce members whose grace period ran out and rotate a room key in use for the rekey
/// interval, twice a second; apply the retention settings once a minute.
async fn expire_away_members(shared: Arc<Shared>, stop: CancellationToken) {
    const TICK: Duration = Duration::from_millis(500);
    const RETENTION_EVERY: u32 = 120;
    let mut tick = tokio::time::interval(TICK);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        {
            let mut room = shared.room();
            let now = Now::current();
            room.expire_away(now);
            room.rotate_if_due(now, shared.config.rekey_interval);
            ticks += 1;
            if ticks.is_multiple_of(RETENTION_EVERY) {
                if let Err(e) = room.apply_retention(now.wall_ms) {
                    warn!(error = %e, "could not apply the retention settings");
                }
            }
        }
        // Unfinished uploads past their time, and files that left: off the room's lock.
        let files = shared.files.clone();
        let _ = tokio::task::spawn_blocking(move || files.expire(Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_contradictions_are_named() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let config = |f: fn(&mut ServerConfig)| {
            let mut c = ServerConfig::default();
            f(&mut c);
            c.validate()
        };
        assert_eq!(
            config(|c| {
                c.room.send_queue_bytes = 512 * 1024;
                c.room.send_queue_max_bytes = 256 * 1024;
            }),
            Err(ConfigError::SendQueueCapBelowBudget {
                cap: 256 * 1024,
                budget: 512 * 1024
            })
        );
        assert_eq!(
            config(|c| {
                c.max_message_bytes = 8192;
                c.max_frame_bytes = 4096;
            }),
            Err(ConfigError::FrameTooSmallForMessage {
                frame: 4096,
                message: 8192,
                needed: 16896
            })
        );
        assert_eq!(
            config(|c| c.max_frame_bytes = MAX_BODY + 1),
            Err(ConfigError::FrameBytes(MAX_BODY + 1))
        );
        assert_eq!(
            config(|c| c.max_message_bytes = 0),
            Err(ConfigError::MessageBytes(0))
        );
        assert_eq!(
            config(|c| c.flood.per_second = f64::NAN).map_err(|e| e.to_string()),
            Err("the flood rate must be from 0 to 1000000 messages per second, not NaN".into())
        );
        assert_eq!(
            config(|c| c.max_connections_per_ip = 0),
            Err(ConfigError::NoConnections)
        );
        assert_eq!(
            config(|c| c.flood.per_second = 0.0),
            Ok(()),
            "0 turns it off"
        );
        assert_eq!(
            config(|c| c.rekey_interval = Duration::from_millis(999)),
            Err(ConfigError::RekeyInterval(Duration::from_millis(999)))
        );
        assert_eq!(
            config(|c| c.rekey_interval = Duration::from_secs(1)),
            Ok(())
        );
        assert_eq!(
            ServerConfig::default().rekey_interval,
            Duration::from_secs(300)
        );
    }

    /// What a host is told to share matches what its listener accepts on: one address when
    /// bound to one, IPv4 only on `0.0.0.0`.
    #[tokio::test]
    async fn shared_addresses_are_ones_the_listener_accepts_on() {
        let one = Server::bind("127.0.0.1:0", "a fine passphrase", ServerConfig::default())
            .await
            .unwrap();
        assert_eq!(
            one.shareable_addresses().unwrap(),
            vec![one.local_addr().unwrap()]
        );
        let v4 = Server::bind("0.0.0.0:0", "a fine passphrase", ServerConfig::default())
            .await
            .unwrap();
        let shared = v4.shareable_addresses().unwrap();
        assert!(shared.iter().all(|a| a.is_ipv4()), "{shared:?}");
        assert!(shared
            .iter()
            .all(|a| a.port() == v4.local_addr().unwrap().port()));
    }

    /// The library interface the desktop app uses: a different passphrase is refused until
    /// the host chooses to keep or delete the previous room.
    #[tokio::test]
    async fn a_stored_room_opens_only_with_its_passphrase_unless_told() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("room");
        let open = |pass: &'static str, previous_room| {
            let config = ServerConfig {
                data_dir: Some(dir.clone()),
                previous_room,
                ..ServerConfig::default()
            };
            async move {
                Server::bind("127.0.0.1:0", pass, config)
                    .await
                    .map(|server| server.shared.salt)
            }
        };
        let first = open("first passphrase", PreviousRoom::Refuse)
            .await
            .unwrap();
        assert_eq!(
            open("first passphrase", PreviousRoom::Refuse)
                .await
                .unwrap(),
            first,
            "the same room"
        );
        match open("second passphrase", PreviousRoom::Refuse).await {
            Err(ServerError::RoomPassphraseChanged { data_dir }) => assert_eq!(data_dir, dir),
            other => panic!(
                "expected RoomPassphraseChanged, got {:?}",
                other.map(|_| ())
            ),
        }
        let second = open("second passphrase", PreviousRoom::Keep).await.unwrap();
        assert_ne!(second, first, "a new room");
        let kept: Vec<_> = std::fs::read_dir(dir.join(binding::PREVIOUS_ROOMS_DIR))
            .unwrap()
            .collect();
        assert_eq!(kept.len(), 1);
        let third = open("first passphrase", PreviousRoom::Delete)
            .await
            .unwrap();
        assert_ne!(third, first);
        assert_ne!(third, second);
        assert!(open("second passphrase", PreviousRoom::Refuse)
            .await
            .is_err());
    }

    #[test]
    fn the_room_database_is_capped_by_default() {
        let config = ServerConfig::default();
        assert_eq!(config.max_store_bytes, Some(512 * 1024 * 1024));
        assert_eq!(config.room.retention.max_events, Some(1_000_000));
        assert_eq!(config.previous_room, PreviousRoom::Refuse);
        assert!(config.joins_per_minute > 0.0);
    }

    #[tokio::test]
    async fn a_server_with_contradictory_settings_is_refused() {
        let mut config = ServerConfig::default();
        config.room.send_queue_max_bytes = 1;
        let refused = Server::bind("127.0.0.1:0", "a fine passphrase", config).await;
        assert!(matches!(
            refused,
            Err(ServerError::Config(
                ConfigError::SendQueueCapBelowBudget { .. }
            ))
        ));
    }
}
