//! The room server: a TCP listener and one handler per connection.
//!
//! Each connection has a reader (this handler: handshake, then client messages into the
//! [`Room`]) and a writer task that drains the member's bounded queue, seals private messages
//! with the session key, and writes everything queued so far in one syscall.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::cipher::{CipherState, Key};
use crate::conn::{self, ConnError, FrameReader, RejectCode};
use crate::flood::{FloodLimit, TokenBucket};
use crate::frame::{FrameKind, MAX_BODY};
use crate::message::{ClientMessage, ErrorCode, RoomEvent, ServerMessage};
use crate::passphrase::{self, PassphraseError, Salt};
use crate::room::{MemberLink, NotMember, Outgoing, Room, RoomConfig};
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
        let room = Mutex::new(room);
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                config,
                salt,
                psk,
                room,
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
    let link = MemberLink {
        conn_id,
        tx,
        queued_bytes: Arc::new(AtomicUsize::new(0)),
        cancel: stop.child_token(),
    };
    let writer = tokio::spawn(write_loop(
        write_half,
        keys.send,
        rx,
        link.queued_bytes.clone(),
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
    let _ = link.tx.try_send(Outgoing::Close);
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
                        let _ = self.link.tx.try_send(Outgoing::Session(Box::new(
                            ServerMessage::NickRejected { nick, reason },
                        )));
                    }
                }
            }
            (ClientMessage::Join { .. }, Some(_)) => {
                return Err(HandlerError::Protocol("already joined"))
            }
            (ClientMessage::Ping, None) => {
                let _ = self
                    .link
                    .tx
                    .try_send(Outgoing::Session(Box::new(ServerMessage::Pong)));
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

/// Encode history as as many `History` messages as needed to stay within the frame limit.
fn history_chunks(events: Vec<RoomEvent>) -> Vec<Vec<u8>> {
    const ENVELOPE: usize = 64;
    let mut chunks = Vec::new();
    let mut current: Vec<RoomEvent> = Vec::new();
    let mut size = ENVELOPE;
    for event in events {
        let len = serde_json::to_vec(&event)
            .map(|v| v.len() + 1)
            .unwrap_or(MAX_SESSION_PLAINTEXT);
        if !current.is_empty() && size + len > MAX_SESSION_PLAINTEXT {
            chunks.extend(
                sealed::encode_json(&ServerMessage::History {
                    events: std::mem::take(&mut current),
                })
                .ok(),
            );
            size = ENVELOPE;
        }
        size += len;
        current.push(event);
    }
    if !current.is_empty() {
        chunks.extend(sealed::encode_json(&ServerMessage::History { events: current }).ok());
    }
    chunks
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

/// Drain a member's queue to its socket until `Close`, a write error or cancellation.
async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut send: CipherState,
    mut rx: mpsc::Receiver<Outgoing>,
    queued_bytes: Arc<AtomicUsize>,
    cancel: CancellationToken,
) {
    // Grown on demand and given back when the queue runs dry, so an idle member costs little.
    let mut buf = Vec::new();
    loop {
        if rx.is_empty() && buf.capacity() > 4096 {
            buf = Vec::new();
        }
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            item = rx.recv() => item,
        };
        let Some(first) = first else { break };
        buf.clear();
        let mut frame_bytes = 0;
        let mut closing = false;
        // Acks are cumulative: of several queued for one write, only the last is sent.
        let mut ack: Option<ServerMessage> = None;
        let mut item = Some(first);
        while let Some(next) = item.take() {
            if let Outgoing::Session(message) = &next {
                if matches!(**message, ServerMessage::Ack { .. }) {
                    if let Outgoing::Session(message) = next {
                        ack = Some(*message);
                    }
                    if buf.len() < WRITE_BATCH {
                        item = rx.try_recv().ok();
                    }
                    continue;
                }
            }
            // Anything else goes after the acks queued before it.
            if let Some(message) = ack.take() {
                closing |= seal_or_close(&mut send, &message, &mut buf);
            }
            match next {
                Outgoing::Frame(frame) => {
                    frame_bytes += frame.len();
                    buf.extend_from_slice(&frame);
                }
                Outgoing::Session(message) => match *message {
                    ServerMessage::History { events } => {
                        for chunk in history_chunks(events) {
                            if sealed::seal_session_bytes(&mut send, &chunk, &mut buf).is_err() {
                                closing = true;
                            }
                        }
                    }
                    message => closing |= seal_or_close(&mut send, &message, &mut buf),
                },
                Outgoing::Close => closing = true,
            }
            if !closing && buf.len() < WRITE_BATCH {
                item = rx.try_recv().ok();
            }
        }
        if let Some(message) = ack.take() {
            closing |= seal_or_close(&mut send, &message, &mut buf);
        }
        let written = tokio::select! {
            _ = cancel.cancelled() => return,
            written = socket.write_all(&buf) => written,
        };
        queued_bytes.fetch_sub(frame_bytes, Ordering::Relaxed);
        if written.is_err() || closing {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RoomEventKind;

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
        let chunks = history_chunks(events);
        assert!(chunks.len() >= 5);
        let mut seqs = Vec::new();
        for chunk in &chunks {
            assert!(chunk.len() <= MAX_SESSION_PLAINTEXT);
            let ServerMessage::History { events } = serde_json::from_slice(chunk).unwrap() else {
                panic!()
            };
            seqs.extend(events.into_iter().map(|e| e.seq));
        }
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    }
}
