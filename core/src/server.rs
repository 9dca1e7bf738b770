//! The room server: a TCP listener and one handler per connection.
//!
//! Each connection has a reader (this handler: handshake, then client messages into the
//! [`Room`]) and a writer task that sends the room's broadcasts from the shared
//! [`FanoutLog`] and the member's private messages (sealed with the session key) in the
//! room's order, everything due in one `writev`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::cipher::{CipherState, Key};
use crate::conn::{self, ConnError, FrameReader, RejectCode};
use crate::fanout::{FanoutLog, Forgotten};
use crate::flood::{FloodLimit, TokenBucket};
use crate::frame::{FrameKind, MAX_BODY};
use crate::message::{ClientMessage, ErrorCode, RoomEvent, ServerMessage};
use crate::passphrase::{self, PassphraseError, Salt};
use crate::room::{MemberLink, NotMember, Outgoing, Room, RoomConfig, WriterProgress};
use crate::sealed::{self, MAX_SESSION_PLAINTEXT};
use crate::store::{Store, StoreError};
use crate::text::{validate_message, MessageTextError, MAX_MESSAGE_BYTES};

/// Server tuning; see `docs/PROTOCOL.md` (Limits) for the defaults and their reasons.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub room: RoomConfig,
    /// Simultaneous connections (handshaking or joined).
    pub max_connections: usize,
    /// Simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Largest frame body a client may send (at most [`MAX_BODY`]).
    pub max_frame_bytes: usize,
    /// Longest chat message in UTF-8 bytes (at most [`MAX_MESSAGE_BYTES`]).
    pub max_message_bytes: usize,
    /// Chat messages per second per member, and the burst allowed.
    pub flood: FloodLimit,
    /// Messages a member may have waiting for the flood limit; one more and it is cut off.
    pub flood_queue: usize,
    /// Time from TCP accept to a completed Noise handshake.
    pub handshake_timeout: Duration,
    /// Time from the handshake to an accepted nickname.
    pub join_timeout: Duration,
    /// A connection that sends nothing (not even a ping) for this long is closed.
    pub idle_timeout: Duration,
    /// Items (frames or private messages) in one member's send queue.
    pub send_queue_items: usize,
    /// Kernel send buffer per connection (`SO_SNDBUF`). Bounded so a member that stops reading
    /// costs little kernel memory and is detected (and cut off) sooner; `None`: autotuned.
    pub socket_send_buffer: Option<usize>,
    /// Where the room's history and state are stored (`None`: in memory only).
    pub data_dir: Option<std::path::PathBuf>,
    /// Largest size of the room database; beyond it messages are refused as on a full disk.
    pub max_store_bytes: Option<u64>,
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
            handshake_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            send_queue_items: 8192,
            socket_send_buffer: Some(256 * 1024),
            data_dir: None,
            max_store_bytes: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    #[error("could not derive the room key: {0}")]
    Kdf(String),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Shared {
    config: ServerConfig,
    salt: Salt,
    psk: Key,
    room: Mutex<Room>,
    /// The room's broadcast log (see [`Room::fanout`]).
    log: Arc<FanoutLog>,
    next_conn_id: AtomicU64,
    /// Open connections per peer IP address.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its IP address; released on drop.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    fn acquire(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
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
    fn room(&self) -> MutexGuard<'_, Room> {
        // A panic while holding the lock would be a bug; keep serving with the data as it is.
        self.room
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The most messages a client is told it may send ahead of the acks.
const MAX_SEND_WINDOW: u32 = 64;

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
        let listener = TcpListener::bind(addr).await?;
        Self::with_listener(listener, passphrase, config).await
    }

    pub async fn with_listener(
        listener: TcpListener,
        passphrase: &str,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        let passphrase = passphrase::normalize(passphrase)?.to_owned();
        let mut config = config;
        config.room.send_window = if config.flood.is_off() {
            MAX_SEND_WINDOW
        } else {
            (config.flood_queue as u32 / 2).clamp(1, MAX_SEND_WINDOW)
        };
        let (room, salt) = match &config.data_dir {
            Some(dir) => {
                let store = Store::open(dir)?;
                if let Some(bytes) = config.max_store_bytes {
                    store.set_max_bytes(bytes)?;
                }
                Room::with_store(config.room.clone(), store, passphrase::random_salt())?
            }
            None => (Room::new(config.room.clone()), passphrase::random_salt()),
        };
        let psk = tokio::task::spawn_blocking(move || passphrase::derive_psk(&passphrase, &salt))
            .await
            .map_err(|e| ServerError::Kdf(e.to_string()))??;
        let log = room.fanout();
        let room = Mutex::new(room);
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                salt,
                psk,
                room,
                log,
                next_conn_id: AtomicU64::new(1),
                per_ip: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
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
                        handle_connection(shared, stream, peer, stop).await;
                        drop(slot);
                        drop(permit);
                    });
                }
                (permit, slot) => {
                    let code = if permit.is_err() {
                        warn!(%peer, "connection limit reached; refusing");
                        RejectCode::ServerFull
                    } else {
                        warn!(%peer, "per-address connection limit reached; refusing");
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

/// Announce members whose grace period ran out, twice a second; apply the retention
/// settings once a minute.
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
        let mut room = shared.room();
        room.expire_away(Instant::now());
        ticks += 1;
        if ticks % RETENTION_EVERY == 0 {
            if let Err(e) = room.apply_retention(crate::room::now_ms()) {
                warn!(error = %e, "could not apply the retention settings");
            }
        }
    }
}

async fn handle_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FrameReader::new(read_half);
    let handshake = conn::accept_handshake(&mut reader, &mut write_half, &shared.salt, &shared.psk);
    let keys = match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
        Ok(Ok(keys)) => keys,
        Ok(Err(e)) if e.is_wrong_passphrase() => {
            warn!(%peer, conn = conn_id, "handshake failed: wrong passphrase (authentication failed)");
            return;
        }
        Ok(Err(e)) => {
            info!(%peer, conn = conn_id, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            info!(%peer, conn = conn_id, "handshake timed out");
            return;
        }
    };
    debug!(%peer, conn = conn_id, "handshake complete");

    let (tx, rx) = mpsc::channel(shared.config.send_queue_items);
    let link = MemberLink::new(conn_id, tx, shared.log.clone(), stop.child_token());
    let writer = tokio::spawn(write_loop(
        write_half,
        keys.send,
        rx,
        shared.log.clone(),
        link.progress.clone(),
        link.wake.clone(),
        link.cancel.clone(),
    ));
    let mut handler = Handler {
        shared: shared.clone(),
        peer,
        link: link.clone(),
        recv: keys.recv,
        member: None,
        bucket: TokenBucket::new(shared.config.flood, Instant::now()),
        waiting: VecDeque::new(),
    };
    let end = handler.read_loop(&mut reader).await;
    match &end {
        Ok(()) => {}
        Err(e) if e.is_integrity_failure() => {
            warn!(%peer, conn = conn_id, error = %e, "integrity check failed; closing");
            link.close_with(
                ErrorCode::Integrity,
                "a frame from you failed its integrity check",
            );
        }
        Err(HandlerError::Conn(ConnError::Frame(e))) => {
            info!(%peer, conn = conn_id, error = %e, "bad frame; closing");
            link.close_with(ErrorCode::Protocol, &format!("bad frame: {e}"));
        }
        Err(HandlerError::Protocol(why)) => {
            info!(%peer, conn = conn_id, why, "protocol violation; closing");
            link.close_with(ErrorCode::Protocol, why);
        }
        Err(HandlerError::Storage) => link.close_with(
            ErrorCode::Storage,
            "the server could not store your message; it will be resent when you reconnect",
        ),
        Err(HandlerError::JoinTimeout) => {
            link.close_with(ErrorCode::Timeout, "no nickname chosen in time")
        }
        Err(HandlerError::Flood) => {
            warn!(%peer, conn = conn_id, "flooding: too many messages waiting; closing");
            link.close_with(
                ErrorCode::Flood,
                "you sent messages faster than this room allows",
            );
        }
        Err(e) => debug!(%peer, conn = conn_id, error = %e, "connection ended"),
    }
    if let Some(key) = &handler.member {
        let mut room = shared.room();
        match end {
            Err(HandlerError::Left) => {}
            _ => room.disconnected(key, conn_id, Instant::now()),
        }
    }
    let _ = link.close();
    drop(handler);
    drop(link.tx);
    // Let the writer flush a final error frame, but not forever. Meanwhile keep reading (and
    // discarding) what the client still sends: closing a socket with unread input makes the
    // kernel send a reset, and the client would lose the error frame and see only "broken pipe".
    let cancel = link.cancel.clone();
    let mut read_half = reader.into_inner();
    let linger = async {
        if end.is_ok() {
            return; // the client closed its side already
        }
        let mut scratch = [0u8; 1024];
        while let Ok(n) = read_half.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    let flushed = tokio::time::timeout(Duration::from_secs(2), async {
        let (_, _) = tokio::join!(writer, linger);
    })
    .await;
    if flushed.is_err() {
        cancel.cancel();
    }
}

#[derive(Debug, Error)]
enum HandlerError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("no join before the deadline")]
    JoinTimeout,
    #[error("idle for too long")]
    Idle,
    #[error("left the room")]
    Left,
    #[error("connection replaced or cut off")]
    Detached,
    #[error("a message could not be stored")]
    Storage,
    #[error("flooding")]
    Flood,
}

impl HandlerError {
    fn is_integrity_failure(&self) -> bool {
        matches!(self, HandlerError::Conn(e) if e.is_integrity_failure())
    }
}

impl From<NotMember> for HandlerError {
    fn from(e: NotMember) -> Self {
        match e {
            NotMember::Detached => HandlerError::Detached,
            NotMember::StorageFailed => HandlerError::Storage,
        }
    }
}

struct Handler {
    shared: Arc<Shared>,
    peer: SocketAddr,
    link: MemberLink,
    recv: CipherState,
    /// The member key once joined.
    member: Option<String>,
    /// Flood control: chat messages take a token each.
    bucket: TokenBucket,
    /// Messages held back by flood control, in arrival order.
    waiting: VecDeque<ClientMessage>,
}

impl Handler {
    async fn read_loop(
        &mut self,
        reader: &mut FrameReader<OwnedReadHalf>,
    ) -> Result<(), HandlerError> {
        let join_deadline = tokio::time::Instant::now() + self.shared.config.join_timeout;
        let max_frame = self.shared.config.max_frame_bytes.min(MAX_BODY);
        loop {
            let idle = tokio::time::sleep(self.shared.config.idle_timeout);
            let release = (!self.waiting.is_empty())
                .then(|| tokio::time::Instant::from_std(self.bucket.available_at(Instant::now())));
            let frame = tokio::select! {
                _ = self.link.cancel.cancelled() => return Err(HandlerError::Detached),
                _ = tokio::time::sleep_until(join_deadline), if self.member.is_none() => return Err(HandlerError::JoinTimeout),
                _ = idle => return Err(HandlerError::Idle),
                _ = tokio::time::sleep_until(release.unwrap_or(join_deadline)), if release.is_some() => {
                    self.release_waiting()?;
                    continue;
                }
                frame = reader.read_frame(max_frame) => frame?,
            };
            let Some((kind, body)) = frame else {
                return Ok(());
            };
            if kind != FrameKind::Session {
                return Err(HandlerError::Protocol(
                    "only session frames are allowed after the handshake",
                ));
            }
            let message: ClientMessage = match sealed::open_session(&mut self.recv, &body) {
                Ok(message) => message,
                Err(sealed::SealError::Decode(_)) => {
                    return Err(HandlerError::Protocol("undecodable message"))
                }
                Err(e) => return Err(ConnError::from(e).into()),
            };
            self.admit(message)?;
        }
    }

    /// Handle a message now, or hold it back if the member is over its flood limit (or
    /// earlier messages are still held: order is kept).
    fn admit(&mut self, message: ClientMessage) -> Result<(), HandlerError> {
        let now = Instant::now();
        let is_chat = takes_token(&message);
        if self.waiting.is_empty() && (!is_chat || self.bucket.try_take(now)) {
            return self.handle(message);
        }
        if self.waiting.len() >= self.shared.config.flood_queue {
            return Err(HandlerError::Flood);
        }
        self.waiting.push_back(message);
        Ok(())
    }

    /// Handle held-back messages whose turn has come.
    fn release_waiting(&mut self) -> Result<(), HandlerError> {
        let now = Instant::now();
        while let Some(front) = self.waiting.front() {
            if takes_token(front) && !self.bucket.try_take(now) {
                break;
            }
            if let Some(message) = self.waiting.pop_front() {
                self.handle(message)?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, message: ClientMessage) -> Result<(), HandlerError> {
        let conn_id = self.link.conn_id;
        match (message, &self.member) {
            (
                ClientMessage::Join {
                    nick,
                    client_id,
                    resume,
                },
                None,
            ) => {
                if client_id.len() < 16 || client_id.len() > 64 {
                    return Err(HandlerError::Protocol(
                        "client id must be 16 to 64 characters",
                    ));
                }
                let mut room = self.shared.room();
                match room.join(&nick, &client_id, resume.as_ref(), self.link.clone()) {
                    Ok(joined) => {
                        info!(peer = %self.peer, conn = conn_id, nick = %joined.nick, resumed = joined.resumed, "joined");
                        self.member = Some(joined.key);
                    }
                    Err(reason) => {
                        debug!(peer = %self.peer, %nick, %reason, "nickname refused");
                        drop(room);
                        let _ = self
                            .link
                            .queue(ServerMessage::NickRejected { nick, reason });
                    }
                }
            }
            (ClientMessage::Join { .. }, Some(_)) => {
                return Err(HandlerError::Protocol("already joined"))
            }
            (ClientMessage::Ping, None) => {
                let _ = self.link.queue(ServerMessage::Pong);
            }
            (ClientMessage::Ping, Some(key)) => {
                self.shared
                    .room()
                    .reply(key, conn_id, ServerMessage::Pong)?
            }
            (ClientMessage::Say { .. }, None) => {
                return Err(HandlerError::Protocol("message before joining"))
            }
            (ClientMessage::Say { id, text }, Some(key)) => {
                match validate_message(&text).and_then(|text| {
                    if text.len() > self.shared.config.max_message_bytes {
                        Err(MessageTextError::TooLong)
                    } else {
                        Ok(text)
                    }
                }) {
                    Ok(text) => self.shared.room().say(key, conn_id, id, text)?,
                    Err(reason) => self.shared.room().reply(
                        key,
                        conn_id,
                        ServerMessage::MessageRejected { id, reason },
                    )?,
                }
            }
            (ClientMessage::Leave, Some(key)) => {
                self.shared.room().leave(key, conn_id);
                info!(peer = %self.peer, conn = conn_id, "left");
                return Err(HandlerError::Left);
            }
            (ClientMessage::Leave, None) => return Ok(()),
            (ClientMessage::Typing, Some(key)) => {
                self.shared.room().typing(key, conn_id, Instant::now())?
            }
            (ClientMessage::Typing, None) => {
                return Err(HandlerError::Protocol("typing before joining"))
            }
            (ClientMessage::Older { before_seq, limit }, Some(key)) => {
                self.shared
                    .room()
                    .older(key, conn_id, before_seq, limit as usize)?
            }
            (ClientMessage::Older { .. }, None) => {
                return Err(HandlerError::Protocol("history request before joining"))
            }
        }
        Ok(())
    }
}

/// Chat messages and history requests count against the flood limit; pings, typing notices
/// (rate-limited by the room) and leaving do not.
fn takes_token(message: &ClientMessage) -> bool {
    matches!(
        message,
        ClientMessage::Say { .. } | ClientMessage::Older { .. }
    )
}

/// The length of `value` as JSON, without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(MAX_SESSION_PLAINTEXT, |()| count.0)
}

/// `items` in order, in runs whose JSON (as a list, plus `envelope` bytes for the message
/// around it) fits one session frame. An item too large for a frame gets a run of its own.
fn runs_that_fit<T: serde::Serialize>(items: Vec<T>, envelope: usize) -> Vec<Vec<T>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    let mut size = envelope;
    for item in items {
        let len = json_len(&item) + 1;
        if !current.is_empty() && size + len > MAX_SESSION_PLAINTEXT {
            runs.push(std::mem::take(&mut current));
            size = envelope;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// History split into runs of events that each fit one `History` message within the frame
/// limit. The writer encodes and seals them a batch at a time.
fn history_runs(events: Vec<RoomEvent>) -> VecDeque<Vec<RoomEvent>> {
    runs_that_fit(events, 64).into()
}

/// A welcome as the messages that carry it within the frame limit: the welcome with as much
/// of its online list as fits, then `more_online` messages with the rest.
fn welcome_parts(mut welcome: ServerMessage) -> Vec<ServerMessage> {
    let ServerMessage::Welcome { online, .. } = &mut welcome else {
        return vec![welcome];
    };
    let mut lists = runs_that_fit(std::mem::take(online), 1024).into_iter();
    *online = lists.next().unwrap_or_default();
    std::iter::once(welcome)
        .chain(lists.map(|online| ServerMessage::MoreOnline { online }))
        .collect()
}

/// Seal a private message into `buf`; `true` if that failed and the connection must close.
fn seal_or_close(send: &mut CipherState, message: &ServerMessage, buf: &mut Vec<u8>) -> bool {
    match sealed::seal_session(send, message, buf) {
        Ok(()) => false,
        Err(e) => {
            warn!(error = %e, "could not seal a message; closing");
            true
        }
    }
}

/// Largest batch of queued output written with one syscall.
const WRITE_BATCH: usize = 64 * 1024;
/// Most buffers in one `writev` (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 512;

/// One part of a batch: a slice of the room's broadcast log, or a range of the writer's own
/// buffer of private messages sealed for this member.
enum Piece {
    Shared(Bytes),
    Sealed(std::ops::Range<usize>),
}

/// What one writer sends with one `writev`: slices of the broadcast log (not copied: every
/// member's batch points at the same bytes) and private messages sealed into `sealed`.
#[derive(Default)]
struct Batch {
    pieces: Vec<Piece>,
    sealed: Vec<u8>,
    len: usize,
    /// Scratch for slices read from the log.
    slices: Vec<Bytes>,
}

impl Batch {
    /// Empty the batch for the next write; a buffer grown large (a long welcome or history)
    /// is given back rather than kept for the life of the connection.
    fn clear(&mut self) {
        const KEEP_BYTES: usize = 4096;
        const KEEP_PIECES: usize = 64;
        if self.sealed.capacity() > KEEP_BYTES {
            self.sealed = Vec::new();
        }
        if self.pieces.capacity() > KEEP_PIECES {
            self.pieces = Vec::new();
        }
        self.pieces.clear();
        self.sealed.clear();
        self.len = 0;
    }

    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    fn room_left(&self) -> usize {
        if self.pieces.len() >= MAX_IOV {
            0
        } else {
            WRITE_BATCH.saturating_sub(self.len)
        }
    }

    /// Add the broadcasts from `from` up to `until` (as far as the batch has room), after
    /// `ack` if there are any (an ack never lands inside a frame: a batch may end part-way
    /// through a broadcast, but never with an ack). Returns the position after what was
    /// added, and whether sealing the ack failed.
    fn add_broadcasts(
        &mut self,
        log: &FanoutLog,
        from: u64,
        until: u64,
        send: &mut CipherState,
        ack: &mut Option<ServerMessage>,
    ) -> Result<(u64, bool), Forgotten> {
        let room = self.room_left();
        if room == 0 || from >= until {
            return Ok((from, false));
        }
        let next = log.read(from, until, room, &mut self.slices)?;
        let mut failed = false;
        if !self.slices.is_empty() {
            if let Some(message) = ack.take() {
                failed = self.seal(send, &message);
            }
        }
        for slice in self.slices.drain(..) {
            self.len += slice.len();
            self.pieces.push(Piece::Shared(slice));
        }
        Ok((next, failed))
    }

    /// Seal a private message; `true` if that failed and the connection must close.
    fn seal(&mut self, send: &mut CipherState, message: &ServerMessage) -> bool {
        let start = self.sealed.len();
        let failed = seal_or_close(send, message, &mut self.sealed);
        self.note_sealed(start);
        failed
    }

    /// Seal a welcome as the messages that carry it within the frame limit.
    fn seal_welcome(&mut self, send: &mut CipherState, welcome: ServerMessage) -> bool {
        welcome_parts(welcome)
            .iter()
            .fold(false, |failed, part| failed | self.seal(send, part))
    }

    /// Seal `History` messages from the front of `runs` while the batch has room, so a long
    /// replay goes out a batch at a time (and counts as progress) instead of all at once.
    fn seal_history(
        &mut self,
        send: &mut CipherState,
        runs: &mut VecDeque<Vec<RoomEvent>>,
    ) -> bool {
        let start = self.sealed.len();
        let mut failed = false;
        while self.room_left() > 0 && !failed {
            let Some(events) = runs.pop_front() else {
                break;
            };
            match sealed::encode_json(&ServerMessage::History { events }) {
                Ok(json) => {
                    failed = sealed::seal_session_bytes(send, &json, &mut self.sealed).is_err();
                }
                Err(e) => {
                    warn!(error = %e, "could not encode history; closing");
                    failed = true;
                }
            }
        }
        self.note_sealed(start);
        failed
    }

    /// Record what was just appended to `sealed` from `start` on, merging it with a sealed
    /// piece right before it.
    fn note_sealed(&mut self, start: usize) {
        let end = self.sealed.len();
        if end == start {
            return;
        }
        self.len += end - start;
        if let Some(Piece::Sealed(range)) = self.pieces.last_mut() {
            if range.end == start {
                range.end = end;
                return;
            }
        }
        self.pieces.push(Piece::Sealed(start..end));
    }

    fn piece<'a>(&'a self, piece: &'a Piece) -> &'a [u8] {
        match piece {
            Piece::Shared(bytes) => bytes,
            Piece::Sealed(range) => &self.sealed[range.clone()],
        }
    }

    /// Write the whole batch, in as few `writev` calls as the socket allows, counting what
    /// the socket took in `sent`.
    async fn write_to(&self, socket: &mut OwnedWriteHalf, sent: &AtomicU64) -> std::io::Result<()> {
        let (mut index, mut offset) = (0, 0);
        while index < self.pieces.len() {
            let slices: Vec<std::io::IoSlice<'_>> = self.pieces[index..]
                .iter()
                .enumerate()
                .map(|(i, piece)| {
                    let bytes = self.piece(piece);
                    std::io::IoSlice::new(if i == 0 { &bytes[offset..] } else { bytes })
                })
                .collect();
            let mut written = socket.write_vectored(&slices).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            sent.fetch_add(written as u64, Ordering::Release);
            while index < self.pieces.len() {
                let left = self.piece(&self.pieces[index]).len() - offset;
                if written < left {
                    offset += written;
                    break;
                }
                written -= left;
                index += 1;
                offset = 0;
            }
        }
        Ok(())
    }
}

/// Send a member's broadcasts and private messages, in the room's order, until `Close`, a
/// write error or cancellation.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut send: CipherState,
    mut rx: mpsc::Receiver<Outgoing>,
    log: Arc<FanoutLog>,
    progress: Arc<WriterProgress>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut batch = Batch::default();
    // A replay of history being sent, a batch at a time, before anything queued after it.
    let mut history: VecDeque<Vec<RoomEvent>> = VecDeque::new();
    // Where this member is in the broadcast log (`None` until it has joined).
    let mut cursor: Option<u64> = None;
    // The next private item, taken from the queue but not yet due.
    let mut next: Option<Outgoing> = None;
    let mut queue_open = true;
    let mut closing = false;
    loop {
        batch.clear();
        // Acks are cumulative: of several due in one write, only the last is sent.
        let mut ack: Option<ServerMessage> = None;
        loop {
            if !history.is_empty() {
                closing |= batch.seal_history(&mut send, &mut history);
                if !history.is_empty() || closing {
                    break;
                }
            }
            if next.is_none() && queue_open {
                match rx.try_recv() {
                    Ok(item) => next = Some(item),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => queue_open = false,
                }
            }
            // First the broadcasts due before the next private item.
            if let Some(at) = cursor {
                let until = next.as_ref().map_or(u64::MAX, Outgoing::after);
                match batch.add_broadcasts(&log, at, until, &mut send, &mut ack) {
                    Ok((moved, failed)) => {
                        cursor = Some(moved);
                        closing |= failed;
                    }
                    Err(Forgotten(_)) => {
                        // Fell behind what the log keeps: the room has let go of this
                        // connection (cut off or replaced). No more broadcasts; what is still
                        // queued for it (why it is being closed) goes out as it comes.
                        cursor = None;
                    }
                }
            }
            let due = match (&next, cursor) {
                (Some(item), Some(at)) => item.after() <= at,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !due || closing || batch.room_left() == 0 {
                break;
            }
            match next.take() {
                Some(Outgoing::Attach(at)) => cursor = Some(at),
                Some(Outgoing::Session { message, .. })
                    if matches!(*message, ServerMessage::Ack { .. }) =>
                {
                    ack = Some(*message);
                }
                Some(Outgoing::Session { message, .. }) => {
                    if let Some(ack) = ack.take() {
                        closing |= batch.seal(&mut send, &ack);
                    }
                    closing |= match *message {
                        ServerMessage::History { events } => {
                            history = history_runs(events);
                            continue;
                        }
                        message => batch.seal(&mut send, &message),
                    };
                }
                Some(Outgoing::Welcome {
                    mut welcome,
                    roster,
                    ..
                }) => {
                    if let Some(ack) = ack.take() {
                        closing |= batch.seal(&mut send, &ack);
                    }
                    // The list as of now: copied only here, one welcome at a time.
                    if let ServerMessage::Welcome { online, .. } = &mut *welcome {
                        *online = roster.names();
                    }
                    closing |= batch.seal_welcome(&mut send, *welcome);
                }
                Some(Outgoing::Close { .. }) => closing = true,
                None => {}
            }
        }
        if let Some(message) = ack.take() {
            closing |= batch.seal(&mut send, &message);
        }
        if batch.is_empty() {
            if closing || (!queue_open && next.is_none()) {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.notified(), if cursor.is_some() => {
                    // Let the tasks already due run first: broadcasts they add in this
                    // scheduler round go out in this member's next write, not the one after.
                    tokio::task::yield_now().await;
                }
                item = rx.recv(), if next.is_none() && queue_open => match item {
                    Some(item) => next = Some(item),
                    None => queue_open = false,
                },
            }
            continue;
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = batch.write_to(&mut socket, &progress.sent) => result,
        };
        if let Some(at) = cursor {
            progress.written.store(at, Ordering::Release);
        }
        if result.is_err() || closing {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RoomEventKind;
    use crate::sealed::{BroadcastOpener, BroadcastSealer};

    /// A member's writer task on a real loopback connection, not yet run.
    struct WriterUnderTest {
        client: TcpStream,
        _server_read: OwnedReadHalf,
        link: MemberLink,
        log: Arc<FanoutLog>,
        writer: tokio::task::JoinHandle<()>,
    }

    impl WriterUnderTest {
        async fn start(session_key: &Key, queue: usize) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server_side, _) = listener.accept().await.unwrap();
            let (server_read, server_write) = server_side.into_split();
            let log = Arc::new(FanoutLog::new());
            let (tx, rx) = mpsc::channel(queue);
            let link = MemberLink::new(1, tx, log.clone(), CancellationToken::new());
            let writer = tokio::spawn(write_loop(
                server_write,
                CipherState::new(session_key),
                rx,
                log.clone(),
                link.progress.clone(),
                link.wake.clone(),
                link.cancel.clone(),
            ));
            Self {
                client,
                _server_read: server_read,
                link,
                log,
                writer,
            }
        }
    }

    /// Everything `writer` sends until it closes the connection, as frames (kind, body), and
    /// the number of bytes read; every byte must belong to a whole frame.
    async fn frames_until_closed(
        client: &mut TcpStream,
        writer: tokio::task::JoinHandle<()>,
    ) -> (Vec<(FrameKind, Vec<u8>)>, usize) {
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.unwrap();
        writer.await.unwrap();
        let mut frames = Vec::new();
        let mut rest = &bytes[..];
        while let Some((frame, used)) = crate::frame::decode(rest, MAX_BODY).unwrap() {
            frames.push((frame.kind, frame.body.to_vec()));
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "whole frames only");
        (frames, bytes.len())
    }

    /// A backlog far larger than one write, with acks and a pong queued in between: the writer
    /// sends it over a real socket as whole frames, in the room's order, then closes.
    #[tokio::test]
    async fn writer_sends_broadcasts_and_private_messages_in_room_order() {
        let (session_key, room_key) = ([1u8; 32], [2u8; 32]);
        // Everything is queued before the writer first runs (single-threaded test runtime).
        let WriterUnderTest {
            mut client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 4096).await;
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        let mut sealer = BroadcastSealer::new(&room_key, 0);
        const COUNT: u64 = 2000;
        for i in 0..COUNT {
            let text = format!("{i:0>200}");
            log.append(&sealer.seal(&serde_json::to_vec(&text).unwrap()).unwrap());
            link.wake.notify_one();
            if i % 7 == 0 {
                assert!(link.queue(ServerMessage::Ack { up_to: i }));
            }
            if i % 500 == 0 {
                assert!(link.queue(ServerMessage::Pong));
            }
        }
        assert!(
            WRITE_BATCH < (log.end() as usize) / 4,
            "several writes' worth"
        );
        assert!(link.close());

        let (frames, sent) = frames_until_closed(&mut client, writer).await;
        let mut opener = BroadcastOpener::new(&room_key, 0);
        let mut recv = CipherState::new(&session_key);
        let (mut broadcasts, mut last_ack, mut pongs) = (0u64, None, 0);
        for (kind, body) in frames {
            match kind {
                FrameKind::Broadcast => {
                    let text: String = opener.open(&body).unwrap();
                    assert_eq!(text, format!("{broadcasts:0>200}"));
                    broadcasts += 1;
                }
                FrameKind::Session => match sealed::open_session(&mut recv, &body).unwrap() {
                    ServerMessage::Ack { up_to } => {
                        assert!(up_to < broadcasts, "ack {up_to} after its message");
                        assert!(last_ack < Some(up_to), "acks only go up");
                        last_ack = Some(up_to);
                    }
                    ServerMessage::Pong => {
                        assert!(broadcasts > pongs * 500, "pong after its broadcast");
                        pongs += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                },
                other => panic!("unexpected frame kind {other:?}"),
            }
        }
        assert_eq!(broadcasts, COUNT);
        assert_eq!(last_ack, Some(1995), "the last ack queued is sent");
        assert_eq!(pongs, 4);
        assert_eq!(link.progress.written.load(Ordering::Acquire), log.end());
        assert_eq!(link.progress.sent.load(Ordering::Acquire), sent as u64);
    }

    /// A replay of history many writes long goes out whole and in order, before the
    /// broadcasts that came after it, and what it wrote counts as progress.
    #[tokio::test]
    async fn writer_sends_a_long_replay_before_later_broadcasts() {
        let (session_key, room_key) = ([3u8; 32], [4u8; 32]);
        let WriterUnderTest {
            mut client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 4096).await;
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        let events: Vec<RoomEvent> = (1..=300)
            .map(|seq| RoomEvent {
                seq,
                time_ms: 0,
                kind: RoomEventKind::Message {
                    from: "a".into(),
                    text: format!("{seq:0>4000}"),
                    msg_id: seq,
                },
            })
            .collect();
        assert!(link.queue(ServerMessage::History { events }));
        let mut sealer = BroadcastSealer::new(&room_key, 0);
        for i in 0..50u64 {
            log.append(&sealer.seal(&serde_json::to_vec(&i).unwrap()).unwrap());
            link.wake.notify_one();
        }
        assert!(link.close());

        let (frames, sent) = frames_until_closed(&mut client, writer).await;
        assert!(sent > 10 * WRITE_BATCH, "many writes' worth");
        let mut opener = BroadcastOpener::new(&room_key, 0);
        let mut recv = CipherState::new(&session_key);
        let (mut seqs, mut broadcasts) = (Vec::new(), Vec::new());
        for (kind, body) in frames {
            match kind {
                FrameKind::Broadcast => broadcasts.push(opener.open::<u64>(&body).unwrap()),
                FrameKind::Session => {
                    assert!(broadcasts.is_empty(), "history before the later broadcasts");
                    let ServerMessage::History { events } =
                        sealed::open_session(&mut recv, &body).unwrap()
                    else {
                        panic!("expected history");
                    };
                    seqs.extend(events.into_iter().map(|e| e.seq));
                }
                other => panic!("unexpected frame kind {other:?}"),
            }
        }
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
        assert_eq!(broadcasts, (0..50).collect::<Vec<_>>());
        assert_eq!(link.progress.sent.load(Ordering::Acquire), sent as u64);
    }

    /// A connection the room has let go of (its log position forgotten) still gets the reason.
    #[tokio::test]
    async fn a_writer_left_behind_by_the_log_still_sends_why_it_closes() {
        let key = [5u8; 32];
        let WriterUnderTest {
            mut client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&key, 16).await;
        link.tx.try_send(Outgoing::Attach(0)).unwrap();
        let mut sealer = BroadcastSealer::new(&key, 0);
        for _ in 0..1000 {
            log.append(&sealer.seal(b"\"x\"").unwrap());
            log.read(log.end() - 1, u64::MAX, 1, &mut Vec::new())
                .unwrap(); // freeze, as writers do
        }
        log.trim(log.end());
        link.close_with(ErrorCode::Replaced, "replaced by a newer connection");
        let (frames, _) = frames_until_closed(&mut client, writer).await;
        assert_eq!(frames.len(), 1, "the reason and nothing else");
        let (kind, body) = &frames[0];
        assert_eq!(*kind, FrameKind::Session);
        let message: ServerMessage =
            sealed::open_session(&mut CipherState::new(&key), body).unwrap();
        assert!(matches!(
            message,
            ServerMessage::Error {
                code: ErrorCode::Replaced,
                ..
            }
        ));
    }

    #[test]
    fn a_long_online_list_is_split_into_frames_that_fit() {
        let online: Vec<String> = (0..3000)
            .map(|i| format!("{i:04}{}", "é".repeat(28)))
            .collect();
        let welcome = ServerMessage::Welcome {
            nick: "ana".into(),
            epoch: "e".repeat(32),
            room_key: "k".repeat(64),
            next_broadcast: 0,
            head_seq: 0,
            online: online.clone(),
            acked_up_to: 0,
            resync: false,
            gap: false,
            resumed: false,
            oldest_seq: 0,
            send_window: 32,
        };
        let parts = welcome_parts(welcome);
        assert!(parts.len() >= 3);
        let mut names = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            assert!(sealed::encode_json(part).unwrap().len() <= MAX_SESSION_PLAINTEXT);
            match part {
                ServerMessage::Welcome { online, .. } if i == 0 => names.extend(online.clone()),
                ServerMessage::MoreOnline { online } if i > 0 => names.extend(online.clone()),
                other => panic!("unexpected part {i}: {other:?}"),
            }
        }
        assert_eq!(names, online);
        // A short list stays in the welcome.
        let small = ServerMessage::Welcome {
            nick: "ana".into(),
            epoch: "e".into(),
            room_key: "k".into(),
            next_broadcast: 0,
            head_seq: 0,
            online: vec!["ana".into()],
            acked_up_to: 0,
            resync: false,
            gap: false,
            resumed: false,
            oldest_seq: 0,
            send_window: 32,
        };
        assert_eq!(welcome_parts(small.clone()), vec![small]);
    }

    #[test]
    fn history_is_split_into_frames_that_fit() {
        let events: Vec<RoomEvent> = (1..=40)
            .map(|seq| RoomEvent {
                seq,
                time_ms: 0,
                kind: RoomEventKind::Message {
                    from: "a".into(),
                    text: "é".repeat(4000),
                    msg_id: seq,
                },
            })
            .collect();
        let runs = history_runs(events);
        assert!(runs.len() >= 5);
        let mut seqs = Vec::new();
        for events in runs {
            let chunk = sealed::encode_json(&ServerMessage::History { events }).unwrap();
            assert!(chunk.len() <= MAX_SESSION_PLAINTEXT);
            let ServerMessage::History { events } = serde_json::from_slice(&chunk).unwrap() else {
                panic!()
            };
            seqs.extend(events.into_iter().map(|e| e.seq));
        }
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    }
}
