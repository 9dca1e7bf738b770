//! The reconnecting client: one task per client that owns the connection, the outbox and the
//! resume state, driven by [`ClientHandle`] commands and reporting [`ClientEvent`]s.
//!
//! The same events feed the terminal client (`--json` prints them one per line) and the
//! desktop app, so they are serializable and self-describing (`"type": "message"`, …).

mod address;
mod backoff;
mod outbox;

pub use address::{is_valid_host, join_host_port};
use outbox::Outbox;
pub use outbox::{OutboxError, MAX_OUTBOX};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::cipher::{CipherState, Key};
use crate::conn::{self, ConnError, FrameReader};
use crate::frame::{FrameKind, MAX_BODY};
use crate::hello::{self, RejectCode};
use crate::message::{
    BroadcastMessage, ClientId, ClientMessage, ErrorCode, LeaveReason, Resume, RoomEvent,
    RoomEventKind, ServerMessage,
};

use crate::passphrase::{self, Salt};
use crate::sealed::{self, BroadcastOpener, SealError};
use crate::text::{nick_key, validate_message, validate_nick, MessageTextError, NickError};

/// Client tuning.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub nick: String,
    pub passphrase: String,
    /// Stop after this many failed connection attempts in a row (`None`: never give up).
    pub give_up_after: Option<u32>,
    pub connect_timeout: Duration,
    /// A keep-alive ping is sent this often.
    pub ping_interval: Duration,
    /// With nothing from the server for this long, the connection is considered dead.
    pub server_silence: Duration,
}

impl ClientConfig {
    pub fn new(
        addr: impl Into<String>,
        nick: impl Into<String>,
        passphrase: impl Into<String>,
    ) -> Self {
        Self {
            addr: addr.into(),
            nick: nick.into(),
            passphrase: passphrase.into(),
            give_up_after: None,
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            server_silence: Duration::from_secs(45),
        }
    }
}

/// Broad classes of errors, for programs reacting to [`ClientEvent::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The room passphrase is wrong (or the handshake was altered in transit). Not retried.
    WrongPassphrase,
    /// Received data failed authentication (tampered, replayed, reordered). Reconnecting.
    Integrity,
    /// The server reported that data from this client failed authentication. Reconnecting.
    IntegrityReportedByServer,
    /// Could not reach the server, or the connection broke. Reconnecting.
    Network,
    /// The peer broke the protocol. Reconnecting.
    Protocol,
    /// The address does not answer like a Tertulia server. Not retried.
    NotTertulia,
    /// The server is at its connection limit. Reconnecting.
    ServerFull,
    /// The server is shutting down. Reconnecting.
    ServerShuttingDown,
    /// The server cut this client off for not reading fast enough. Reconnecting.
    SlowConsumer,
    /// The server could not store a message (disk full, database error). Reconnecting; the
    /// message stays in the outbox.
    ServerStorage,
    /// The passphrase itself is unusable (empty, too long). Not retried.
    BadPassphrase,
    /// The server cut this client off for sending faster than the room's flood limit.
    /// Reconnecting; unacknowledged messages are resent.
    Flood,
}

/// Why the client stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The user disconnected.
    Quit,
    WrongPassphrase,
    /// `give_up_after` attempts failed in a row.
    GaveUp,
    /// A non-retryable error (see the preceding `error` event).
    Fatal,
}

/// What the client reports. Serialized with a `type` tag, e.g. `{"type":"message",…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Connection attempt `attempt` (1 = first after start or after being connected).
    Connecting {
        attempt: u32,
        addr: String,
    },
    /// In the room. `room_reset`: the server restarted without its history; earlier sequence
    /// numbers are void. `gap`: some missed history was no longer available.
    Connected {
        nick: String,
        epoch: String,
        resumed: bool,
        room_reset: bool,
        gap: bool,
        /// The oldest event the room keeps: when it is older than the oldest event shown,
        /// [`ClientHandle::load_older`] can page back to it.
        oldest_seq: u64,
    },
    /// A page of older history (answering [`ClientHandle::load_older`]), oldest first, all
    /// older than anything reported before. `more`: the room has even older events.
    Older {
        events: Vec<RoomEvent>,
        more: bool,
    },
    /// The nickname was refused; call [`ClientHandle::set_nick`] to try another.
    NickRejected {
        nick: String,
        reason: NickError,
        message: String,
    },
    /// The live online list, sent after connecting and on every change.
    Online {
        members: Vec<String>,
    },
    /// A chat message. `own`: sent by this client, `msg_id` is then the id [`ClientHandle::send`]
    /// returned. `history`: part of the backlog or a replay, not live.
    Message {
        seq: u64,
        time_ms: u64,
        from: String,
        text: String,
        own: bool,
        msg_id: Option<u64>,
        history: bool,
    },
    Join {
        seq: u64,
        time_ms: u64,
        nick: String,
        history: bool,
    },
    Leave {
        seq: u64,
        time_ms: u64,
        nick: String,
        reason: LeaveReason,
        history: bool,
    },
    /// These messages of ours are in the room.
    Acked {
        ids: Vec<u64>,
    },
    /// The server refused one of our messages; it will not be delivered.
    MessageRejected {
        id: u64,
        reason: MessageTextError,
        message: String,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Someone else is typing (sent at most about once a second per person while they type;
    /// show it for a few seconds).
    Typing {
        nick: String,
    },
    /// Waiting `delay_ms` before connection attempt `attempt`.
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// While waiting to reconnect: whole seconds left before attempt `attempt` (sent each second
    /// when the wait is a second or longer).
    Countdown {
        attempt: u32,
        remaining_secs: u64,
    },
    /// The client stopped; no more events follow.
    Disconnected {
        reason: DisconnectReason,
        message: String,
    },
}

/// Errors from [`ClientHandle`] calls.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    #[error(transparent)]
    InvalidText(#[from] MessageTextError),
    #[error(transparent)]
    InvalidNick(#[from] NickError),
    #[error(transparent)]
    OutboxFull(#[from] OutboxError),
    #[error("already in the room; the nickname can only be changed before joining")]
    AlreadyJoined,
    #[error("the client has stopped")]
    Stopped,
}

enum Command {
    Send {
        text: String,
        reply: oneshot::Sender<Result<u64, SendError>>,
    },
    SetNick {
        nick: String,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    ReconnectNow,
    Typing,
    LoadOlder,
    Disconnect,
    QuitWhenFlushed,
}

/// Controls a running client. Cheap to clone.
#[derive(Clone)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
}

impl ClientHandle {
    /// Queue a chat message; returns its id. It is sent now if connected, or after reconnecting.
    pub async fn send(&self, text: &str) -> Result<u64, SendError> {
        let text = validate_message(text)?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Send { text, reply })
            .await
            .map_err(|_| SendError::Stopped)?;
        answer.await.map_err(|_| SendError::Stopped)?
    }

    /// Try another nickname after [`ClientEvent::NickRejected`].
    pub async fn set_nick(&self, nick: &str) -> Result<(), SendError> {
        let nick = validate_nick(nick)?;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SetNick { nick, reply })
            .await
            .map_err(|_| SendError::Stopped)?;
        answer.await.map_err(|_| SendError::Stopped)?
    }

    /// Tell the room the user is typing. Cheap to call on every keystroke: notices are sent at
    /// most once per [`TYPING_NOTICE_INTERVAL`], and only while connected.
    pub async fn typing(&self) {
        let _ = self.commands.try_send(Command::Typing);
    }

    /// Ask for the page of history before the oldest event reported so far; it arrives as
    /// [`ClientEvent::Older`]. Ignored while not connected.
    pub async fn load_older(&self) {
        let _ = self.commands.send(Command::LoadOlder).await;
    }

    /// Skip the current reconnect wait.
    pub async fn reconnect_now(&self) {
        let _ = self.commands.send(Command::ReconnectNow).await;
    }

    /// Leave the room now. Messages still waiting for an ack are dropped.
    pub async fn disconnect(&self) {
        let _ = self.commands.send(Command::Disconnect).await;
    }

    /// Leave once every queued message has been acknowledged (reconnecting as needed).
    pub async fn disconnect_when_flushed(&self) {
        let _ = self.commands.send(Command::QuitWhenFlushed).await;
    }
}

/// Messages a client has sent and not yet seen acknowledged, at most (the server may ask for
/// fewer in `welcome`). Keeps a client that resends a full outbox after reconnecting within the
/// server's flood queue (`ServerConfig::flood_queue`), so it is slowed down, never cut off.
pub const SEND_WINDOW: usize = 64;

/// How long leaving waits for the server to close the connection.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// Events asked for per page of older history.
pub const OLDER_PAGE: usize = 100;

/// Minimum time between two typing notices sent by a client.
pub const TYPING_NOTICE_INTERVAL: Duration = Duration::from_secs(2);

/// Capacity of the event channel; a consumer that falls behind slows the client down.
pub const EVENT_QUEUE: usize = 1024;

/// Start a client task. Events arrive on the receiver until a `disconnected` event, after
/// which it closes.
pub fn spawn(config: ClientConfig) -> (ClientHandle, mpsc::Receiver<ClientEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let task = ClientTask {
        nick: config.nick.clone(),
        config,
        client_id: hex::encode(rand::random::<[u8; 16]>()),
        psk: None,
        outbox: Outbox::default(),
        resume: None,
        online: BTreeMap::new(),
        online_as_of: 0,
        oldest_seen: None,
        quit_when_flushed: false,
        last_typing: None,
        events: event_tx,
        commands: cmd_rx,
    };
    tokio::spawn(task.run());
    (ClientHandle { commands: cmd_tx }, event_rx)
}

/// How a connection ended.
enum SessionEnd {
    /// The user left.
    Quit,
    /// Stop for good.
    Fatal {
        kind: ErrorKind,
        reason: DisconnectReason,
        message: String,
    },
    /// Try again; `joined` tells whether this connection had made it into the room.
    Retry {
        kind: ErrorKind,
        message: String,
        joined: bool,
        report: bool,
    },
}

struct ClientTask {
    config: ClientConfig,
    nick: String,
    client_id: ClientId,
    /// The pre-shared key for the last salt seen; Argon2id runs once per salt per process.
    psk: Option<(Salt, Key)>,
    outbox: Outbox,
    resume: Option<Resume>,
    /// Folded nickname → display nickname.
    online: BTreeMap<String, String>,
    /// The room sequence the online list is current as of; older join/leave events do not change it.
    online_as_of: u64,
    /// The oldest room event reported in this room epoch (live, backlog or paged).
    oldest_seen: Option<u64>,
    quit_when_flushed: bool,
    /// When the last typing notice went out.
    last_typing: Option<std::time::Instant>,
    events: mpsc::Sender<ClientEvent>,
    commands: mpsc::Receiver<Command>,
}

fn retry(kind: ErrorKind, error: impl ToString) -> SessionEnd {
    SessionEnd::Retry {
        kind,
        message: error.to_string(),
        joined: false,
        report: true,
    }
}

fn classify(error: ConnError) -> SessionEnd {
    if error.is_wrong_passphrase() {
        return SessionEnd::Fatal {
            kind: ErrorKind::WrongPassphrase,
            reason: DisconnectReason::WrongPassphrase,
            message: "wrong passphrase: the server did not accept the room passphrase".into(),
        };
    }
    if error.is_integrity_failure() {
        return retry(
            ErrorKind::Integrity,
            format!("data from the server failed its integrity check ({error}); reconnecting"),
        );
    }
    match error {
        ConnError::Hello(_) => SessionEnd::Fatal {
            kind: ErrorKind::NotTertulia,
            reason: DisconnectReason::Fatal,
            message: error.to_string(),
        },
        ConnError::Passphrase(_) => SessionEnd::Fatal {
            kind: ErrorKind::BadPassphrase,
            reason: DisconnectReason::Fatal,
            message: error.to_string(),
        },
        ConnError::Rejected(Some(RejectCode::ServerFull)) => {
            retry(ErrorKind::ServerFull, "the server is full")
        }
        ConnError::Rejected(Some(RejectCode::TooManyFromAddress)) => retry(
            ErrorKind::ServerFull,
            "the server allows no more connections from your address",
        ),
        ConnError::Io(_) | ConnError::Closed | ConnError::Timeout => {
            retry(ErrorKind::Network, error)
        }
        other => retry(ErrorKind::Protocol, other),
    }
}

impl ClientTask {
    async fn emit(&self, event: ClientEvent) {
        // A consumer that went away no longer cares; keep running until told to stop.
        let _ = self.events.send(event).await;
    }

    async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.emit(ClientEvent::Connecting {
                attempt,
                addr: self.config.addr.clone(),
            })
            .await;
            let end = self.session().await;
            let (kind, message, joined, report) = match end {
                SessionEnd::Quit => {
                    self.emit(ClientEvent::Disconnected {
                        reason: DisconnectReason::Quit,
                        message: "left the room".into(),
                    })
                    .await;
                    return;
                }
                SessionEnd::Fatal {
                    kind,
                    reason,
                    message,
                } => {
                    self.emit(ClientEvent::Error {
                        kind,
                        message: message.clone(),
                    })
                    .await;
                    self.emit(ClientEvent::Disconnected { reason, message })
                        .await;
                    return;
                }
                SessionEnd::Retry {
                    kind,
                    message,
                    joined,
                    report,
                } => (kind, message, joined, report),
            };
            if joined {
                attempt = 0;
            }
            if report {
                self.emit(ClientEvent::Error {
                    kind,
                    message: message.clone(),
                })
                .await;
            }
            if self
                .config
                .give_up_after
                .is_some_and(|limit| attempt >= limit)
            {
                let message = format!("gave up after {attempt} failed attempts: {message}");
                self.emit(ClientEvent::Disconnected {
                    reason: DisconnectReason::GaveUp,
                    message,
                })
                .await;
                return;
            }
            let delay = backoff::delay(attempt + 1, &mut rand::thread_rng());
            self.emit(ClientEvent::Reconnecting {
                attempt: attempt + 1,
                delay_ms: delay.as_millis() as u64,
                reason: message,
            })
            .await;
            if self.wait_offline(attempt + 1, delay).await {
                self.emit(ClientEvent::Disconnected {
                    reason: DisconnectReason::Quit,
                    message: "left the room".into(),
                })
                .await;
                return;
            }
        }
    }

    /// Handle commands while disconnected. Returns `true` if the user quit.
    async fn wait_offline(&mut self, attempt: u32, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        // Tick on whole seconds before the deadline: "3 s", "2 s", "1 s".
        let first_tick = deadline - Duration::from_secs(delay.as_secs());
        let mut countdown = tokio::time::interval_at(first_tick, Duration::from_secs(1));
        loop {
            let command = tokio::select! {
                _ = &mut sleep => return false,
                _ = countdown.tick(), if delay >= Duration::from_secs(1) => {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let remaining_secs = remaining.as_secs_f64().round() as u64;
                    if remaining_secs > 0 {
                        self.emit(ClientEvent::Countdown { attempt, remaining_secs }).await;
                    }
                    continue;
                }
                command = self.commands.recv() => command,
            };
            match command {
                None | Some(Command::Disconnect) => return true,
                Some(Command::ReconnectNow) => return false,
                Some(Command::Typing) | Some(Command::LoadOlder) => {}
                Some(Command::Send { text, reply }) => {
                    let _ = reply.send(self.outbox.push(text).map_err(SendError::from));
                }
                Some(Command::SetNick { nick, reply }) => {
                    self.nick = nick;
                    let _ = reply.send(Ok(()));
                }
                Some(Command::QuitWhenFlushed) => {
                    if self.outbox.is_empty() {
                        return true;
                    }
                    self.quit_when_flushed = true;
                }
            }
        }
    }

    async fn psk_for(&mut self, salt: Salt) -> Result<Key, ConnError> {
        if let Some((cached_salt, key)) = self.psk {
            if cached_salt == salt {
                return Ok(key);
            }
        }
        let passphrase = self.config.passphrase.clone();
        let key = tokio::task::spawn_blocking(move || passphrase::derive_psk(&passphrase, &salt))
            .await
            .map_err(|_| ConnError::Timeout)??;
        self.psk = Some((salt, key));
        Ok(key)
    }

    async fn session(&mut self) -> SessionEnd {
        let connect = TcpStream::connect(self.config.addr.as_str());
        let stream = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return retry(
                    ErrorKind::Network,
                    format!("cannot reach {}: {e}", self.config.addr),
                )
            }
            Err(_) => {
                return retry(
                    ErrorKind::Network,
                    format!("connecting to {} timed out", self.config.addr),
                )
            }
        };
        let _ = stream.set_nodelay(true);
        let (read_half, mut writer) = stream.into_split();
        let mut reader = FrameReader::new(read_half);
        let keys = match self.handshake(&mut reader, &mut writer).await {
            Ok(keys) => keys,
            Err(end) => return end,
        };
        let mut link = Link {
            writer,
            send: keys.send,
            recv: keys.recv,
            opener: None,
            sent_through: 0,
            window: 1,
        };
        let mut joined = false;
        let end = self.connected(&mut link, &mut reader, &mut joined).await;
        match end {
            SessionEnd::Retry {
                kind,
                message,
                report,
                ..
            } => SessionEnd::Retry {
                kind,
                message,
                joined,
                report,
            },
            other => other,
        }
    }

    async fn handshake(
        &mut self,
        reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
        writer: &mut OwnedWriteHalf,
    ) -> Result<crate::handshake::TransportKeys, SessionEnd> {
        // The salt arrives in the server's hello; the key for it is derived (once per salt)
        // before the handshake proper.
        let timeout = self.config.connect_timeout;
        let hello = match tokio::time::timeout(timeout, conn::read_hello(reader)).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(e)) => return Err(classify(e)),
            Err(_) => return Err(classify(ConnError::Timeout)),
        };
        let salt = hello::parse_hello(&hello).map_err(|e| classify(e.into()))?;
        let psk = self.psk_for(salt).await.map_err(classify)?;
        let finish = conn::finish_initiator(reader, writer, &hello, &psk);
        match tokio::time::timeout(timeout, finish).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(classify(ConnError::Timeout)),
        }
    }

    fn resume_point(&self) -> Option<Resume> {
        self.resume.clone()
    }

    async fn connected(
        &mut self,
        link: &mut Link,
        reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
        joined: &mut bool,
    ) -> SessionEnd {
        let join = ClientMessage::Join {
            nick: self.nick.clone(),
            client_id: self.client_id.clone(),
            resume: self.resume_point(),
        };
        if let Err(e) = link.send(&join).await {
            return classify(e);
        }
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.tick().await;
        let silence = self.config.server_silence;
        loop {
            let deadline = tokio::time::sleep(silence);
            tokio::select! {
                frame = reader.read_frame(MAX_BODY) => {
                    let (kind, body) = match frame {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return retry(ErrorKind::Network, "the server closed the connection"),
                        Err(e) => return classify(e),
                    };
                    match self.on_frame(link, kind, &body, joined).await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(e) => return classify(e),
                    }
                }
                command = self.commands.recv() => {
                    match self.on_command(link, command, *joined).await {
                        Ok(None) => {}
                        Ok(Some(SessionEnd::Quit)) => {
                            // The server closes once it has taken the leave: wait for that
                            // (briefly), so that whoever stops the client next — the app
                            // stopping its hosted room — knows the leave has landed.
                            let _ = tokio::time::timeout(LEAVE_WAIT, async {
                                while let Ok(Some(_)) = reader.read_frame(MAX_BODY).await {}
                            })
                            .await;
                            return SessionEnd::Quit;
                        }
                        Ok(Some(end)) => return end,
                        Err(e) => return classify(e),
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = link.send(&ClientMessage::Ping).await {
                        return classify(e);
                    }
                }
                _ = deadline => return retry(ErrorKind::Network, "the server stopped responding"),
            }
        }
    }

    async fn on_command(
        &mut self,
        link: &mut Link,
        command: Option<Command>,
        joined: bool,
    ) -> Result<Option<SessionEnd>, ConnError> {
        match command {
            None | Some(Command::Disconnect) => {
                let _ = link.send(&ClientMessage::Leave).await;
                return Ok(Some(SessionEnd::Quit));
            }
            Some(Command::ReconnectNow) => {}
            Some(Command::LoadOlder) => {
                if let (true, Some(resume)) = (joined, &self.resume) {
                    let before_seq = self
                        .oldest_seen
                        .unwrap_or(resume.last_seq.saturating_add(1));
                    link.send(&ClientMessage::Older {
                        before_seq,
                        limit: OLDER_PAGE as u32,
                    })
                    .await?;
                }
            }
            Some(Command::Typing) => {
                let due = self
                    .last_typing
                    .is_none_or(|t| t.elapsed() >= TYPING_NOTICE_INTERVAL);
                if joined && due {
                    self.last_typing = Some(std::time::Instant::now());
                    link.send(&ClientMessage::Typing).await?;
                }
            }
            Some(Command::Send { text, reply }) => match self.outbox.push(text) {
                Ok(id) => {
                    let _ = reply.send(Ok(id));
                    if joined {
                        self.fill_window(link).await?;
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Some(Command::SetNick { nick, reply }) => {
                if joined {
                    let _ = reply.send(Err(SendError::AlreadyJoined));
                } else {
                    self.nick = nick.clone();
                    let _ = reply.send(Ok(()));
                    let join = ClientMessage::Join {
                        nick,
                        client_id: self.client_id.clone(),
                        resume: self.resume_point(),
                    };
                    link.send(&join).await?;
                }
            }
            Some(Command::QuitWhenFlushed) => {
                self.quit_when_flushed = true;
                if joined && self.outbox.is_empty() {
                    let _ = link.send(&ClientMessage::Leave).await;
                    return Ok(Some(SessionEnd::Quit));
                }
            }
        }
        Ok(None)
    }

    async fn on_frame(
        &mut self,
        link: &mut Link,
        kind: FrameKind,
        body: &[u8],
        joined: &mut bool,
    ) -> Result<Option<SessionEnd>, ConnError> {
        match kind {
            FrameKind::Session => {
                let message: ServerMessage = sealed::open_session(&mut link.recv, body)?;
                self.on_server_message(link, message, joined).await
            }
            FrameKind::Broadcast => {
                let opener = link
                    .opener
                    .as_mut()
                    .ok_or(ConnError::UnexpectedFrame(kind))?;
                match opener.open(body)? {
                    BroadcastMessage::Event(event) => self.on_event(event, false).await,
                    BroadcastMessage::Typing { nick } => {
                        if nick_key(&nick) != nick_key(&self.nick) {
                            self.emit(ClientEvent::Typing { nick }).await;
                        }
                    }
                }
                Ok(None)
            }
            other => Err(ConnError::UnexpectedFrame(other)),
        }
    }

    async fn on_server_message(
        &mut self,
        link: &mut Link,
        message: ServerMessage,
        joined: &mut bool,
    ) -> Result<Option<SessionEnd>, ConnError> {
        match message {
            ServerMessage::Welcome {
                nick,
                epoch,
                room_key,
                next_broadcast,
                head_seq,
                online,
                acked_up_to,
                resync,
                gap,
                resumed,
                oldest_seq,
                send_window,
            } => {
                link.window = (send_window as usize).clamp(1, SEND_WINDOW);
                let key: Key = hex::decode(&room_key)
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or(ConnError::Sealed(SealError::Decode("bad room key".into())))?;
                link.opener = Some(BroadcastOpener::new(&key, next_broadcast));
                let room_reset = resync || self.resume.as_ref().is_some_and(|r| r.epoch != epoch);
                let last_seq = match &self.resume {
                    Some(r) if !room_reset => r.last_seq,
                    _ => 0,
                };
                self.resume = Some(Resume {
                    epoch: epoch.clone(),
                    last_seq,
                });
                if room_reset {
                    self.oldest_seen = None;
                }
                self.nick = nick.clone();
                self.online = online.into_iter().map(|n| (nick_key(&n), n)).collect();
                self.online_as_of = head_seq;
                *joined = true;
                debug!(%nick, %epoch, resumed, "joined");
                self.emit(ClientEvent::Connected {
                    nick,
                    epoch,
                    resumed,
                    room_reset,
                    gap,
                    oldest_seq,
                })
                .await;
                self.emit_online().await;
                self.on_acked(acked_up_to).await;
                self.fill_window(link).await?;
                if self.quit_when_flushed && self.outbox.is_empty() {
                    let _ = link.send(&ClientMessage::Leave).await;
                    return Ok(Some(SessionEnd::Quit));
                }
            }
            ServerMessage::MoreOnline { online } => {
                self.online
                    .extend(online.into_iter().map(|n| (nick_key(&n), n)));
                self.emit_online().await;
            }
            ServerMessage::History { events } => {
                for event in events {
                    self.on_event(event, true).await;
                }
            }
            ServerMessage::Older {
                before_seq,
                mut events,
                more,
            } => {
                // Only what is older than everything reported so far (a stale answer from
                // before a reconnect is filtered the same way).
                let limit = self.oldest_seen.unwrap_or(u64::MAX).min(before_seq);
                events.retain(|e| e.seq < limit);
                if let Some(first) = events.first() {
                    self.oldest_seen = Some(first.seq);
                }
                self.emit(ClientEvent::Older { events, more }).await;
            }
            ServerMessage::Ack { up_to } => {
                self.on_acked(up_to).await;
                self.fill_window(link).await?;
                if self.quit_when_flushed && self.outbox.is_empty() {
                    let _ = link.send(&ClientMessage::Leave).await;
                    return Ok(Some(SessionEnd::Quit));
                }
            }
            ServerMessage::NickRejected { nick, reason } => {
                self.emit(ClientEvent::NickRejected {
                    nick,
                    reason,
                    message: reason.to_string(),
                })
                .await;
            }
            ServerMessage::MessageRejected { id, reason } => {
                self.outbox.reject(id);
                self.emit(ClientEvent::MessageRejected {
                    id,
                    reason,
                    message: reason.to_string(),
                })
                .await;
                self.fill_window(link).await?;
            }
            ServerMessage::Pong => {}
            ServerMessage::Error { code, message } => {
                let (kind, report) = match code {
                    ErrorCode::Integrity => (ErrorKind::IntegrityReportedByServer, true),
                    ErrorCode::SlowConsumer => (ErrorKind::SlowConsumer, true),
                    ErrorCode::ShuttingDown => (ErrorKind::ServerShuttingDown, true),
                    ErrorCode::Storage => (ErrorKind::ServerStorage, true),
                    ErrorCode::Flood => (ErrorKind::Flood, true),
                    ErrorCode::Replaced => (ErrorKind::Protocol, false),
                    ErrorCode::Protocol | ErrorCode::Timeout => (ErrorKind::Protocol, true),
                };
                return Ok(Some(SessionEnd::Retry {
                    kind,
                    message: format!("server: {message}"),
                    joined: *joined,
                    report,
                }));
            }
        }
        Ok(None)
    }

    /// Send outbox messages not yet sent on this connection, oldest first, keeping at most
    /// the window the server allows unacknowledged.
    async fn fill_window(&mut self, link: &mut Link) -> Result<(), ConnError> {
        let in_flight = self
            .outbox
            .pending()
            .filter(|p| p.id <= link.sent_through)
            .count();
        let room = link.window.saturating_sub(in_flight);
        let due: Vec<ClientMessage> = self
            .outbox
            .pending()
            .filter(|p| p.id > link.sent_through)
            .take(room)
            .map(|p| ClientMessage::Say {
                id: p.id,
                text: p.text.clone(),
            })
            .collect();
        for say in due {
            if let ClientMessage::Say { id, .. } = &say {
                link.sent_through = *id;
            }
            link.send(&say).await?;
        }
        Ok(())
    }

    async fn on_acked(&mut self, up_to: u64) {
        let ids = self.outbox.ack(up_to);
        if !ids.is_empty() {
            self.emit(ClientEvent::Acked { ids }).await;
        }
    }

    async fn emit_online(&self) {
        self.emit(ClientEvent::Online {
            members: self.online.values().cloned().collect(),
        })
        .await;
    }

    async fn on_event(&mut self, event: RoomEvent, history: bool) {
        let Some(resume) = &mut self.resume else {
            return;
        };
        if event.seq <= resume.last_seq {
            return; // already shown
        }
        resume.last_seq = event.seq;
        if self.oldest_seen.is_none() {
            self.oldest_seen = Some(event.seq);
        }
        let live_presence = event.seq > self.online_as_of;
        let RoomEvent { seq, time_ms, kind } = event;
        match kind {
            RoomEventKind::Message { from, text, msg_id } => {
                let own = nick_key(&from) == nick_key(&self.nick);
                let msg_id = own.then_some(msg_id);
                self.emit(ClientEvent::Message {
                    seq,
                    time_ms,
                    from,
                    text,
                    own,
                    msg_id,
                    history,
                })
                .await;
            }
            RoomEventKind::Join { nick } => {
                // The welcome's list may already hold this member (it is taken when sent):
                // the list is announced again only if it changed.
                let changed = live_presence
                    && self.online.insert(nick_key(&nick), nick.clone()).as_ref() != Some(&nick);
                self.emit(ClientEvent::Join {
                    seq,
                    time_ms,
                    nick,
                    history,
                })
                .await;
                if changed {
                    self.emit_online().await;
                }
            }
            RoomEventKind::Leave { nick, reason } => {
                let changed = live_presence && self.online.remove(&nick_key(&nick)).is_some();
                self.emit(ClientEvent::Leave {
                    seq,
                    time_ms,
                    nick,
                    reason,
                    history,
                })
                .await;
                if changed {
                    self.emit_online().await;
                }
            }
        }
    }
}

/// The write side of an established connection plus its receive state.
struct Link {
    writer: OwnedWriteHalf,
    send: CipherState,
    recv: CipherState,
    opener: Option<BroadcastOpener>,
    /// The highest outbox id sent on this connection.
    sent_through: u64,
    /// Messages that may be in flight unacknowledged (from `welcome`).
    window: usize,
}

impl Link {
    async fn send(&mut self, message: &ClientMessage) -> Result<(), ConnError> {
        let mut buf = Vec::new();
        sealed::seal_session(&mut self.send, message, &mut buf)?;
        self.writer.write_all(&buf).await?;
        Ok(())
    }
}
