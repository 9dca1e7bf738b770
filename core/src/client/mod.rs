//! The reconnecting client: one task per client that owns the connection and drives a pure
//! [`Session`](session::Session) with what happens on it, doing the I/O the session asks for.
//! [`ClientHandle`] sends it the user's commands; it reports [`ClientEvent`]s.
//!
//! ## Layout
//! - [`session`]: the state machine (outbox and send window, resume, online list, "own",
//!   reconnect decisions); pure, unit-tested without sockets.
//! - [`event`]: the events reported and the errors of [`ClientHandle`] calls.
//! - [`outbox`]: messages kept until acknowledged; [`backoff`]: reconnect delays.
//! - [`keys`]: the room broadcast keys (rotation) and the pong's broadcast-position check.
//! - [`address`]: host names and `host:port` as users type them.
//! - [`throttle`]: failing handshake answers per address, slowed down like guesses.
//! - this module: the task and its socket.

mod address;
mod backoff;
mod event;
pub(crate) mod keys;
mod outbox;
mod session;
mod throttle;

pub use address::{is_valid_host, join_host_port};
pub use event::{
    ClientEvent, DisconnectReason, ErrorKind, FileFailure, SendError, TransferDirection,
};
pub use outbox::{OutboxError, MAX_OUTBOX};
pub use session::{OLDER_PAGE, PASSPHRASE_VERDICTS};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::cipher::CipherState;
use crate::conn::{self, ConnError, FrameReader};
use crate::frame::{FrameKind, MAX_BODY};
use crate::handshake::{ClientDone, TransportKeys};
use crate::hello;
use crate::identity::{HostVerdict, KnownHosts};
use crate::message::{decode_broadcast_message, decode_server_message, ClientId, ClientMessage};
use crate::passphrase::{self, Salt};
use crate::sealed::{self, SealError};
use crate::secret::{SecretKey, SecretString};
use crate::text::{validate_message, validate_nick};
use keys::BroadcastKeys;
use session::{classify, integrity_failure, network_failure, Action, Ending, Next, Session};

/// Client tuning.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub nick: String,
    /// Wiped on drop, `<secret>` in `Debug`.
    pub passphrase: SecretString,
    /// Stop after this many failed connection attempts in a row (`None`: never give up).
    pub give_up_after: Option<u32>,
    pub connect_timeout: Duration,
    /// A keep-alive ping is sent this often.
    pub ping_interval: Duration,
    /// With nothing from the server for this long, the connection is considered dead.
    pub server_silence: Duration,
    /// The file of pinned host identities (`ADDRESS HEX-PUBLIC-KEY` lines; see
    /// [`KnownHosts`](crate::identity::KnownHosts)). `None`: pins are kept in memory for the
    /// life of the process only.
    pub known_hosts: Option<std::path::PathBuf>,
    /// An invite code's host identity: any other is refused; on first contact it is pinned.
    /// It does not replace a different pin (that needs `accept_new_host`). `None`: the
    /// pinned identity, or trust on first use.
    pub expected_host: Option<crate::identity::Fingerprint>,
    /// An identity the user accepted deliberately after being told the host's identity
    /// changed: if the host presents it, it is trusted and pinned, replacing the old pin.
    pub accept_new_host: Option<crate::identity::Fingerprint>,
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
            passphrase: SecretString::new(passphrase.into()),
            give_up_after: None,
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            server_silence: Duration::from_secs(45),
            known_hosts: None,
            expected_host: None,
            accept_new_host: None,
        }
    }
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
        self.request(|reply| Command::Send { text, reply }).await
    }

    /// Try another nickname after [`ClientEvent::NickRejected`].
    pub async fn set_nick(&self, nick: &str) -> Result<(), SendError> {
        let nick = validate_nick(nick)?;
        self.request(|reply| Command::SetNick { nick, reply }).await
    }

    /// Send a command that answers, and wait for the answer.
    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, SendError>>) -> Command,
    ) -> Result<T, SendError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| SendError::Stopped)?;
        answer.await.map_err(|_| SendError::Stopped)?
    }

    /// Tell the room the user is typing. Cheap to call on every keystroke: notices are sent at
    /// most once per [`TYPING_NOTICE_INTERVAL`](crate::message::TYPING_NOTICE_INTERVAL), and only
    /// while in the room.
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

/// Salts whose derived key is kept.
const PSK_CACHE: usize = 2;

/// How long leaving waits for the server to close the connection.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// Capacity of the event channel; a consumer that falls behind slows the client down.
pub const EVENT_QUEUE: usize = 1024;

/// Start a client task. Events arrive on the receiver until a `disconnected` event, after
/// which it closes.
pub fn spawn(config: ClientConfig) -> (ClientHandle, mpsc::Receiver<ClientEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let client_id: ClientId = hex::encode(rand::random::<[u8; 16]>());
    let task = ClientTask {
        session: Session::new(
            config.addr.clone(),
            config.nick.clone(),
            client_id,
            config.give_up_after,
        )
        .sharing_answers(throttle::for_address(&config.addr)),
        config,
        psks: VecDeque::new(),
        known_hosts: None,
        events: event_tx,
        commands: cmd_rx,
    };
    tokio::spawn(task.run());
    (ClientHandle { commands: cmd_tx }, event_rx)
}

struct ClientTask {
    config: ClientConfig,
    session: Session,
    /// Pre-shared keys for the last [`PSK_CACHE`] salts used, most recent first: Argon2id runs
    /// once per salt per process, and one altered salt does not evict the room's key.
    psks: VecDeque<(Salt, SecretKey)>,
    /// The pinned host identities, loaded at the first connection.
    known_hosts: Option<KnownHosts>,
    events: mpsc::Sender<ClientEvent>,
    commands: mpsc::Receiver<Command>,
}

/// The write side of an established connection plus its receive state.
struct Link {
    writer: OwnedWriteHalf,
    send: CipherState,
    recv: CipherState,
    /// The room broadcast keys, from the welcome on.
    keys: Option<BroadcastKeys>,
}

impl Link {
    fn new(writer: OwnedWriteHalf, keys: TransportKeys) -> Self {
        Self {
            writer,
            send: keys.send,
            recv: keys.recv,
            keys: None,
        }
    }

    async fn send(&mut self, message: &ClientMessage) -> Result<(), ConnError> {
        let mut buf = Vec::new();
        sealed::seal_session(&mut self.send, message, &mut buf)?;
        self.writer.write_all(&buf).await?;
        Ok(())
    }
}

impl ClientTask {
    async fn run(mut self) {
        loop {
            self.session.connecting();
            self.emit_pending().await;
            let ending = self.connection().await;
            let next =
                self.session
                    .connection_ended(ending, Instant::now(), &mut rand::thread_rng());
            self.emit_pending().await;
            match next {
                Next::Stop => return,
                Next::Reconnect { attempt, delay } => {
                    if self.wait_offline(attempt, delay).await {
                        self.session.stop_offline();
                        self.emit_pending().await;
                        return;
                    }
                }
            }
        }
    }

    /// Report the events the session has queued (offline: it queues nothing else but
    /// [`Action::End`], returned if present).
    async fn emit_pending(&mut self) -> Option<Ending> {
        let mut ending = None;
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Emit(event) => self.emit(event).await,
                Action::End(end) => ending = Some(end),
                Action::Send(_)
                | Action::OpenBroadcasts { .. }
                | Action::NextRoomKey { .. }
                | Action::CheckBroadcasts { .. } => {}
            }
        }
        ending
    }

    async fn emit(&self, event: ClientEvent) {
        // A consumer that went away no longer cares; keep running until told to stop.
        let _ = self.events.send(event).await;
    }

    /// Do what the session asks on `link`. Returns how the connection ends, if it does: the
    /// session said so, or a send failed (then the remaining sends are skipped; events are
    /// still reported).
    async fn perform(&mut self, link: &mut Link) -> Option<Ending> {
        let mut ending = None;
        let mut broken = None;
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Emit(event) => self.emit(event).await,
                Action::Send(message) if broken.is_none() => {
                    if let Err(e) = link.send(&message).await {
                        // A goodbye that cannot be sent changes nothing: the user is leaving.
                        if message != ClientMessage::Leave {
                            broken = Some(classify(e));
                        }
                    }
                }
                Action::Send(_) => {}
                Action::OpenBroadcasts { key, next_counter } => {
                    link.keys = Some(BroadcastKeys::new(&key, next_counter));
                }
                // The session asks for these only once joined, after `OpenBroadcasts`.
                Action::NextRoomKey { key, from } => {
                    if let Some(Err(e)) = link.keys.as_mut().map(|k| k.add(key, from)) {
                        broken = broken.or(Some(integrity_failure(e)));
                    }
                }
                Action::CheckBroadcasts { next } => {
                    if let Some(Err(e)) = link.keys.as_ref().map(|k| k.check_position(next)) {
                        broken = broken.or(Some(integrity_failure(e)));
                    }
                }
                Action::End(end) => ending = ending.or(Some(end)),
            }
        }
        broken.or(ending)
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
            if matches!(command, Some(Command::ReconnectNow)) {
                return false;
            }
            self.apply(command);
            if self.emit_pending().await == Some(Ending::Quit) {
                return true;
            }
        }
    }

    /// Pass a user command (`None`: the handle is gone) to the session.
    fn apply(&mut self, command: Option<Command>) {
        match command {
            None | Some(Command::Disconnect) => self.session.disconnect(),
            Some(Command::ReconnectNow) => {}
            Some(Command::Typing) => self.session.typing(Instant::now()),
            Some(Command::LoadOlder) => self.session.load_older(),
            Some(Command::Send { text, reply }) => {
                let _ = reply.send(self.session.send(text));
            }
            Some(Command::SetNick { nick, reply }) => {
                let _ = reply.send(self.session.set_nick(nick));
            }
            Some(Command::QuitWhenFlushed) => self.session.disconnect_when_flushed(),
        }
    }

    async fn psk_for(&mut self, salt: Salt) -> Result<SecretKey, ConnError> {
        if let Some(at) = self.psks.iter().position(|(s, _)| *s == salt) {
            if let Some(entry) = self.psks.remove(at) {
                let key = entry.1.clone();
                self.psks.push_front(entry);
                return Ok(key);
            }
        }
        let passphrase = self.config.passphrase.clone();
        let key = tokio::task::spawn_blocking(move || passphrase::derive_psk(&passphrase, &salt))
            .await??;
        let key = SecretKey::new(key);
        self.psks.push_front((salt, key.clone()));
        self.psks.truncate(PSK_CACHE);
        Ok(key)
    }

    /// The pins, read from [`ClientConfig::known_hosts`] the first time.
    fn known_hosts(&mut self) -> Result<&mut KnownHosts, Ending> {
        if self.known_hosts.is_none() {
            let hosts = match &self.config.known_hosts {
                None => KnownHosts::in_memory(),
                Some(path) => KnownHosts::load(path).map_err(|e| Ending::Fatal {
                    kind: ErrorKind::KnownHosts,
                    reason: DisconnectReason::Fatal,
                    message: e.to_string(),
                })?,
            };
            self.known_hosts = Some(hosts);
        }
        Ok(self.known_hosts.get_or_insert_with(KnownHosts::in_memory))
    }

    /// One connection, from TCP connect to its end.
    async fn connection(&mut self) -> Ending {
        let addr = self.config.addr.clone();
        let pinned = match self.known_hosts() {
            Ok(hosts) => hosts.pinned(&addr),
            Err(ending) => return ending,
        };
        let connect = TcpStream::connect(self.config.addr.as_str());
        let stream = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return network_failure(format!("cannot reach {}: {e}", self.config.addr))
            }
            Err(_) => {
                return network_failure(format!("connecting to {} timed out", self.config.addr))
            }
        };
        let _ = stream.set_nodelay(true);
        let (read_half, mut writer) = stream.into_split();
        let mut reader = FrameReader::new(read_half);
        let ClientDone { keys, host } = match self.handshake(&mut reader, &mut writer).await {
            Ok(done) => done,
            Err(e) => return classify(e),
        };
        // The host proved the passphrase and this identity: is it the one we trust here?
        let verdict = self.session.handshake_completed(
            host,
            pinned,
            self.config.expected_host,
            self.config.accept_new_host,
        );
        if verdict == (HostVerdict::Trusted { pin: true }) {
            if let Ok(hosts) = self.known_hosts() {
                if let Err(e) = hosts.pin(&addr, host) {
                    self.emit(ClientEvent::Error {
                        kind: ErrorKind::KnownHosts,
                        message: format!("the host identity could not be saved: {e}"),
                        retry_after_secs: None,
                        pinned_fingerprint: None,
                        presented_fingerprint: None,
                    })
                    .await;
                }
            }
        }
        let mut link = Link::new(writer, keys);
        let ending = match self.perform(&mut link).await {
            Some(ending) => ending,
            None => self.serve(&mut link, &mut reader).await,
        };
        if ending == Ending::Quit {
            // The server closes once it has taken the leave: wait for that (briefly), so that
            // whoever stops the client next — the app stopping its hosted room — knows the
            // leave has landed.
            let _ = tokio::time::timeout(LEAVE_WAIT, async {
                while let Ok(Some(_)) = reader.read_frame(MAX_BODY).await {}
            })
            .await;
        }
        ending
    }

    async fn handshake(
        &mut self,
        reader: &mut FrameReader<OwnedReadHalf>,
        writer: &mut OwnedWriteHalf,
    ) -> Result<ClientDone, ConnError> {
        // The salt arrives in the server's hello; the key for it is derived (once per salt)
        // before the handshake proper.
        let timeout = self.config.connect_timeout;
        let hello = tokio::time::timeout(timeout, conn::read_hello(reader))
            .await
            .map_err(|_| ConnError::Timeout)??;
        let salt = hello::parse_hello(&hello)?;
        self.session.hello(salt);
        self.emit_pending().await;
        let psk = self.psk_for(salt).await?;
        self.session.key_ready(throttle::KeyTag::of(&psk));
        let finish = conn::finish_initiator(reader, writer, &hello, &psk);
        tokio::time::timeout(timeout, finish)
            .await
            .map_err(|_| ConnError::Timeout)?
    }

    /// Feed the session what arrives and what the user asks until the connection ends.
    async fn serve(&mut self, link: &mut Link, reader: &mut FrameReader<OwnedReadHalf>) -> Ending {
        let mut ping = tokio::time::interval(self.config.ping_interval);
        ping.tick().await;
        let silence = self.config.server_silence;
        loop {
            let deadline = tokio::time::sleep(silence);
            tokio::select! {
                frame = reader.read_frame(MAX_BODY) => {
                    let (kind, body) = match frame {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return network_failure("the server closed the connection"),
                        Err(e) => return classify(e),
                    };
                    if let Err(e) = self.on_frame(link, kind, &body) {
                        return classify(e);
                    }
                }
                command = self.commands.recv() => self.apply(command),
                _ = ping.tick() => {
                    if let Err(e) = link.send(&ClientMessage::Ping).await {
                        return classify(e);
                    }
                }
                _ = deadline => return network_failure("the server stopped responding"),
            }
            if let Some(ending) = self.perform(link).await {
                return ending;
            }
        }
    }

    /// Open a frame and hand its message to the session.
    fn on_frame(&mut self, link: &mut Link, kind: FrameKind, body: &[u8]) -> Result<(), ConnError> {
        match kind {
            FrameKind::Session => {
                let plaintext = sealed::open_session_plaintext(&mut link.recv, body)?;
                let message = decode_server_message(&plaintext).map_err(SealError::Decode)?;
                self.session.on_server_message(message);
            }
            FrameKind::Broadcast => {
                let keys = link.keys.as_mut().ok_or(ConnError::UnexpectedFrame(kind))?;
                let plaintext = keys.open_plaintext(body)?;
                let message = decode_broadcast_message(&plaintext).map_err(SealError::Decode)?;
                self.session.on_broadcast(message);
            }
            other => return Err(ConnError::UnexpectedFrame(other)),
        }
        Ok(())
    }
}
