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
//! - [`uploads`], [`downloads`]: the file transfers' state machines (`docs/PROTOCOL.md` §13),
//!   pure; [`progress`]: how often they report.
//! - this module: the task and its socket, and the transfers' file I/O (hashing and reading
//!   sources, writing downloads to their temporary files and moving them into place).
//!
//! ## Chat first
//! The task sends an upload's chunks one at a time, only when nothing else is ready (the
//! user's commands, a ping due, frames to read; while a download keeps frames coming, one
//! chunk every few frames): a message typed during a large upload waits behind one chunk at
//! most.

mod address;
mod backoff;
mod downloads;
mod event;
pub(crate) mod keys;
mod outbox;
mod progress;
mod session;
mod throttle;
mod uploads;

pub use address::{is_valid_host, join_host_port};
pub use downloads::{FetchTarget, KNOWN_FILES, MAX_QUEUED_DOWNLOADS, MAX_REFETCHES};
pub use event::{
    ClientEvent, DisconnectReason, ErrorKind, FileFailure, FileRequestError, SendError,
    TransferDirection,
};
pub use outbox::{OutboxError, MAX_OUTBOX};
pub use session::{OLDER_PAGE, PASSPHRASE_VERDICTS};
pub use uploads::{MAX_MEMORY_UPLOAD_BYTES, MAX_QUEUED_UPLOADS, MAX_UPLOAD_RESTARTS};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256 as Hasher};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::cipher::CipherState;
use crate::conn::{self, ConnError, FrameReader};
use crate::frame::{FrameKind, MAX_BODY};
use crate::handshake::{ClientDone, TransportKeys};
use crate::hello;
use crate::identity::{HostVerdict, KnownHosts};
use crate::message::{
    decode_broadcast_message, decode_server_message, ClientId, ClientMessage, ServerMessage,
};
use crate::passphrase::{self, Salt};
use crate::sealed::{self, SealError};
use crate::secret::{SecretKey, SecretString};
use crate::text::{validate_message, validate_nick};
use downloads::{numbered_name, DownloadOut, Downloads, FileMeta, Place};
use keys::BroadcastKeys;
use session::{classify, integrity_failure, network_failure, Action, Ending, Next, Session};
use uploads::{ChunkDue, Prepared, UploadOut, UploadSource, Uploads};

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
    /// A download into a folder or a path starts only if its filesystem would still have this
    /// many bytes free once the whole file is there; otherwise it fails at once with
    /// [`FileFailure::LocalSpace`]. (Checked where the system can tell: on Unix.)
    pub min_free_bytes: u64,
}

/// The default [`ClientConfig::min_free_bytes`]: 256 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 << 20;

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
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
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
    SendFile {
        name: String,
        source: UploadSource,
        reply: oneshot::Sender<Result<u64, SendError>>,
    },
    CancelUpload(u64),
    FetchFile {
        file_id: u64,
        target: FetchTarget,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    CancelFetch(u64),
    CancelTransfers {
        id: Option<u64>,
        reply: oneshot::Sender<Result<Vec<(TransferDirection, u64)>, SendError>>,
    },
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

    /// Queue a file upload; returns its upload id (the client's own increasing number, from 1).
    /// Uploads go one at a time in order, resume after reconnects, and report FileProgress,
    /// then FileSent (and the room's FileOffered with own: true), or FileFailed.
    pub async fn send_file(&self, path: PathBuf) -> Result<u64, SendError> {
        let shown = path.display().to_string();
        let unreadable = |e: std::io::Error| FileRequestError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let meta = tokio::fs::metadata(&path).await.map_err(unreadable)?;
        if !meta.is_file() {
            return Err(FileRequestError::NotAFile { path: shown }.into());
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| FileRequestError::NoName {
                path: shown.clone(),
            })?;
        let source = UploadSource::Path(path);
        self.request(|reply| Command::SendFile {
            name,
            source,
            reply,
        })
        .await
    }

    /// The same for bytes already in memory (a pasted image), under `name`.
    pub async fn send_file_bytes(&self, name: String, bytes: Vec<u8>) -> Result<u64, SendError> {
        let source = UploadSource::Memory(bytes.into());
        self.request(|reply| Command::SendFile {
            name,
            source,
            reply,
        })
        .await
    }

    /// Stop an upload (queued or in progress): FileFailed { reason: Cancelled }.
    pub async fn cancel_upload(&self, upload_id: u64) {
        let _ = self.commands.send(Command::CancelUpload(upload_id)).await;
    }

    /// Fetch file `file_id` (from a FileOffered) into `to`: reports FileProgress, then
    /// FileReceived (path or bytes) once its SHA-256 matched, or FileFailed. One download runs
    /// at a time; others wait in order. Resumes after reconnects from the first chunk not yet
    /// received.
    pub async fn fetch_file(&self, file_id: u64, to: FetchTarget) -> Result<(), SendError> {
        self.request(|reply| Command::FetchFile {
            file_id,
            target: to,
            reply,
        })
        .await
    }

    /// Stop a download (queued or in progress): FileFailed { reason: Cancelled }; a partial
    /// file is removed.
    pub async fn cancel_fetch(&self, file_id: u64) {
        let _ = self.commands.send(Command::CancelFetch(file_id)).await;
    }

    /// Stop transfers, queued or in progress: with `id`, the upload with that upload id and
    /// any download of the file with that file id; without, every upload and download. Each
    /// stopped reports FileFailed { reason: Cancelled }; returns which were stopped (empty:
    /// none matched).
    pub async fn cancel_transfers(
        &self,
        id: Option<u64>,
    ) -> Result<Vec<(TransferDirection, u64)>, SendError> {
        self.request(|reply| Command::CancelTransfers { id, reply })
            .await
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

    /// Leave once every queued message has been acknowledged and every queued upload and
    /// download has ended (reconnecting as needed).
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

/// Hashing results waiting for the task (one upload is hashed at a time; a cancelled one's
/// result may still be on its way).
const PREPARED_QUEUE: usize = 8;

/// While frames keep arriving (a download), an upload's chunk still goes after this many.
const FRAMES_PER_CHUNK: u32 = 4;

/// How often a download is checked for a stall.
const TRANSFER_TICK: Duration = Duration::from_secs(5);

/// What hashing an upload's source gives, for the task.
type PreparedResult = (u64, Result<Prepared, String>);

/// Start a client task. Events arrive on the receiver until a `disconnected` event, after
/// which it closes.
pub fn spawn(config: ClientConfig) -> (ClientHandle, mpsc::Receiver<ClientEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    let client_id: ClientId = hex::encode(rand::random::<[u8; 16]>());
    let (prepared_tx, prepared_rx) = mpsc::channel(PREPARED_QUEUE);
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
        uploads: Uploads::new(),
        downloads: Downloads::new(),
        prepared_tx,
        prepared_rx,
        upload_file: None,
        download_file: None,
        rejoined: false,
        quit_when_idle: false,
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
    uploads: Uploads,
    downloads: Downloads,
    prepared_tx: mpsc::Sender<PreparedResult>,
    prepared_rx: mpsc::Receiver<PreparedResult>,
    /// The open source file of the upload in progress.
    upload_file: Option<(u64, tokio::fs::File)>,
    /// The open temporary file of the download in progress.
    download_file: Option<(u64, tokio::fs::File)>,
    /// The session reported being in the room: the transfers resume once its actions are done.
    rejoined: bool,
    /// The user asked to leave once everything queued is done.
    quit_when_idle: bool,
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
            self.uploads.offline();
            self.downloads.offline();
            let next =
                self.session
                    .connection_ended(ending, Instant::now(), &mut rand::thread_rng());
            self.emit_pending().await;
            match next {
                Next::Stop => return self.abandon_transfers().await,
                Next::Reconnect { attempt, delay } => {
                    if self.wait_offline(attempt, delay).await {
                        self.session.stop_offline();
                        self.emit_pending().await;
                        return self.abandon_transfers().await;
                    }
                }
            }
        }
    }

    /// Report the events the session has queued (offline: it queues nothing else but
    /// [`Action::End`], returned if present).
    async fn emit_pending(&mut self) -> Option<Ending> {
        self.quit_if_idle();
        let mut ending = None;
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Emit(event) => self.report(event).await,
                Action::End(end) => ending = Some(end),
                Action::Send(_)
                | Action::OpenBroadcasts { .. }
                | Action::NextRoomKey { .. }
                | Action::CheckBroadcasts { .. } => {}
            }
        }
        self.drain_files(None).await;
        ending
    }

    /// Report a session event, noting what the transfers need: the files offered in the room
    /// (to check what is fetched), our own (to name a re-offer's file), being in the room.
    async fn report(&mut self, event: ClientEvent) {
        match &event {
            ClientEvent::FileOffered { .. } => self.note_file(&event),
            ClientEvent::Older { events, .. } => {
                for e in events {
                    self.note_file(e);
                }
            }
            ClientEvent::Connected { .. } => self.rejoined = true,
            _ => {}
        }
        self.emit(event).await;
    }

    fn note_file(&mut self, event: &ClientEvent) {
        if let ClientEvent::FileOffered {
            seq,
            file_id,
            name,
            size,
            sha256,
            upload_id,
            ..
        } = event
        {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(sha256, &mut hash).is_ok() {
                let meta = FileMeta {
                    name: name.clone(),
                    size: *size,
                    sha256: hash,
                };
                self.downloads.remember(*file_id, meta);
            }
            if let Some(upload_id) = upload_id {
                self.uploads.own_file_seen(*upload_id, *file_id, *seq);
            }
        }
    }

    /// Do what the transfers ask: on `link` when connected (sends are skipped offline, where
    /// the state machines ask for none). Returns how the connection ends if a send failed.
    async fn drain_files(&mut self, mut link: Option<&mut Link>) -> Option<Ending> {
        let mut broken = None;
        loop {
            if let Some(out) = self.uploads.next_out() {
                match out {
                    UploadOut::Send(message) => {
                        if let (Some(link), None) = (link.as_mut(), &broken) {
                            if let Err(e) = link.send(&message).await {
                                broken = Some(classify(e));
                            }
                        }
                    }
                    UploadOut::Emit(event) => self.emit(event).await,
                    UploadOut::Prepare {
                        upload_id,
                        name,
                        source,
                    } => self.spawn_prepare(upload_id, name, source),
                    UploadOut::Release { upload_id } => {
                        if self
                            .upload_file
                            .as_ref()
                            .is_some_and(|(id, _)| *id == upload_id)
                        {
                            self.upload_file = None;
                        }
                    }
                }
                continue;
            }
            if let Some(out) = self.downloads.next_out() {
                if let DownloadOut::Send(message) = &out {
                    if let (Some(link), None) = (link.as_mut(), &broken) {
                        if let Err(e) = link.send(message).await {
                            broken = Some(classify(e));
                        }
                    }
                } else {
                    self.download_io(out).await;
                }
                continue;
            }
            return broken;
        }
    }

    /// Hash an upload's source off the async thread; the result arrives on `prepared_rx`.
    fn spawn_prepare(&self, upload_id: u64, name: String, source: UploadSource) {
        let results = self.prepared_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = prepare(&name, &source);
            let _ = results.blocking_send((upload_id, result));
        });
    }

    /// The next chunk of the upload in progress, read and sent.
    async fn send_chunk(&mut self, link: &mut Link) -> Result<(), ConnError> {
        let Some(due) = self.uploads.next_chunk() else {
            return Ok(());
        };
        match self.read_chunk(&due).await {
            Ok(data) => {
                let chunk = ClientMessage::FileChunk {
                    upload_id: due.upload_id,
                    offset: due.offset,
                    data,
                };
                link.send(&chunk).await
            }
            Err((message, changed)) => {
                tracing::warn!(upload_id = due.upload_id, %message, "an upload's source could not be read");
                self.uploads.read_failed(due.upload_id, message, changed);
                Ok(())
            }
        }
    }

    /// Read the chunk `due` from its source. `Err((why, changed))`: `changed` when the source
    /// is shorter than it was when hashed.
    async fn read_chunk(&mut self, due: &ChunkDue) -> Result<Vec<u8>, (String, bool)> {
        let path = match &due.source {
            UploadSource::Memory(bytes) => {
                let start = due.offset as usize;
                return bytes
                    .get(start..start + due.len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| ("the bytes are shorter than announced".to_string(), true));
            }
            UploadSource::Path(path) => path,
        };
        let io = |e: std::io::Error| (format!("cannot read {}: {e}", path.display()), false);
        if self
            .upload_file
            .as_ref()
            .is_none_or(|(id, _)| *id != due.upload_id)
        {
            let file = tokio::fs::File::open(path).await.map_err(io)?;
            self.upload_file = Some((due.upload_id, file));
        }
        let Some((_, file)) = self.upload_file.as_mut() else {
            return Err(("the file is not open".into(), false));
        };
        file.seek(std::io::SeekFrom::Start(due.offset))
            .await
            .map_err(io)?;
        let mut data = vec![0u8; due.len];
        match file.read_exact(&mut data).await {
            Ok(_) => Ok(data),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err((
                format!("{} got shorter while it was sent", path.display()),
                true,
            )),
            Err(e) => Err(io(e)),
        }
    }

    /// A download's file operation; a failure fails the download.
    async fn download_io(&mut self, out: DownloadOut) {
        let (file_id, result) = match out {
            DownloadOut::Send(_) => return,
            DownloadOut::Emit(event) => return self.emit(event).await,
            DownloadOut::Open {
                file_id,
                temp,
                size,
            } => {
                if let Err(message) = check_free_space(&temp, size, self.config.min_free_bytes) {
                    self.downloads.io_failed(
                        file_id,
                        FileFailure::LocalSpace,
                        message,
                        Instant::now(),
                    );
                    return;
                }
                let result = create_new(&temp).await.map(|file| {
                    self.download_file = Some((file_id, file));
                    self.downloads.opened(file_id, Instant::now());
                });
                (
                    file_id,
                    result.map_err(|e| format!("cannot create {}: {e}", temp.display())),
                )
            }
            DownloadOut::Write {
                file_id,
                offset,
                data,
            } => {
                let result = match self.download_file.as_mut() {
                    Some((id, file)) if *id == file_id => write_at(file, offset, &data).await,
                    _ => Err(std::io::Error::other("the temporary file is not open")),
                };
                (
                    file_id,
                    result.map_err(|e| format!("cannot write the file: {e}")),
                )
            }
            DownloadOut::Truncate { file_id } => {
                let result = match self.download_file.as_mut() {
                    Some((id, file)) if *id == file_id => file.set_len(0).await,
                    _ => Err(std::io::Error::other("the temporary file is not open")),
                };
                (
                    file_id,
                    result.map_err(|e| format!("cannot write the file: {e}")),
                )
            }
            DownloadOut::Discard { file_id, temp } => {
                self.close_download(file_id).await;
                if let Err(e) = tokio::fs::remove_file(&temp).await {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %temp.display(), "cannot remove a partial download: {e}");
                    }
                }
                return;
            }
            DownloadOut::Finish {
                file_id,
                meta,
                temp,
                place,
            } => {
                let placed = async {
                    if let Some((id, mut file)) = self.download_file.take() {
                        if id == file_id {
                            file.flush().await?;
                            file.sync_all().await?;
                        }
                    }
                    put_in_place(&temp, &place).await
                }
                .await;
                match placed {
                    Ok(path) => {
                        return self
                            .emit(ClientEvent::FileReceived {
                                file_id,
                                name: meta.name,
                                size: meta.size,
                                sha256: hex::encode(meta.sha256),
                                path: Some(path.display().to_string()),
                                bytes: None,
                            })
                            .await
                    }
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&temp).await;
                        (file_id, Err(format!("cannot save the file: {e}")))
                    }
                }
            }
        };
        if let Err(message) = result {
            tracing::warn!(file_id, %message, "a download's file operation failed");
            self.close_download(file_id).await;
            self.downloads
                .io_failed(file_id, FileFailure::Io, message, Instant::now());
        }
    }

    async fn close_download(&mut self, file_id: u64) {
        if self
            .download_file
            .as_ref()
            .is_some_and(|(id, _)| *id == file_id)
        {
            self.download_file = None;
        }
    }

    /// The client stops: a partial download is removed.
    async fn abandon_transfers(&mut self) {
        self.download_file = None;
        self.upload_file = None;
        if let Some(temp) = self.downloads.abandon() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
    }

    async fn emit(&self, event: ClientEvent) {
        // A consumer that went away no longer cares; keep running until told to stop.
        let _ = self.events.send(event).await;
    }

    /// Do what the session asks on `link`. Returns how the connection ends, if it does: the
    /// session said so, or a send failed (then the remaining sends are skipped; events are
    /// still reported).
    async fn perform(&mut self, link: &mut Link) -> Option<Ending> {
        self.quit_if_idle();
        let mut ending = None;
        let mut broken = None;
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Emit(event) => self.report(event).await,
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
        if std::mem::take(&mut self.rejoined) && ending.is_none() && broken.is_none() {
            self.uploads.joined();
            self.downloads.joined(Instant::now());
        }
        let files = self.drain_files(Some(link)).await;
        broken.or(ending).or(files)
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
                Some((id, result)) = self.prepared_rx.recv() => {
                    self.uploads.prepared(id, result);
                    self.drain_files(None).await;
                    continue;
                }
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

    /// After `disconnect_when_flushed`, once no transfer is left: the session leaves when its
    /// outbox is empty.
    fn quit_if_idle(&mut self) {
        if self.quit_when_idle && self.uploads.pending() == 0 && self.downloads.pending() == 0 {
            self.quit_when_idle = false;
            self.session.disconnect_when_flushed();
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
            Some(Command::QuitWhenFlushed) => {
                self.quit_when_idle = true;
                self.quit_if_idle();
            }
            Some(Command::SendFile {
                name,
                source,
                reply,
            }) => {
                let _ = reply.send(self.uploads.queue(name, source));
            }
            Some(Command::CancelUpload(id)) => self.uploads.cancel(id),
            Some(Command::FetchFile {
                file_id,
                target,
                reply,
            }) => {
                let _ = reply.send(self.downloads.fetch(file_id, target, Instant::now()));
            }
            Some(Command::CancelFetch(id)) => {
                self.downloads.cancel(id, Instant::now());
            }
            Some(Command::CancelTransfers { id, reply }) => {
                let _ = reply.send(Ok(self.cancel_transfers(id)));
            }
        }
    }

    /// Stop the uploads and downloads `id` names (all without one); returns which.
    fn cancel_transfers(&mut self, id: Option<u64>) -> Vec<(TransferDirection, u64)> {
        let now = Instant::now();
        let wanted = |candidate: &u64| id.is_none_or(|id| id == *candidate);
        let mut cancelled = Vec::new();
        for upload_id in self.uploads.upload_ids().into_iter().filter(wanted) {
            self.uploads.cancel(upload_id);
            cancelled.push((TransferDirection::Upload, upload_id));
        }
        for file_id in self.downloads.file_ids().into_iter().filter(wanted) {
            if self.downloads.cancel(file_id, now) {
                cancelled.push((TransferDirection::Download, file_id));
            }
        }
        cancelled
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
        let mut transfers = tokio::time::interval(TRANSFER_TICK);
        let silence = self.config.server_silence;
        // Frames read since the last chunk went out.
        let mut frames_in_a_row = 0u32;
        loop {
            let deadline = tokio::time::sleep(silence);
            let chunk_due = self.uploads.chunk_ready();
            let chunk_turn = chunk_due && frames_in_a_row >= FRAMES_PER_CHUNK;
            // In this order. The user's commands and pings first (a human's pace: they cannot
            // starve the rest); then what the server sends; an upload's chunk only when nothing
            // else is ready — or, while a download keeps frames coming, one every
            // FRAMES_PER_CHUNK frames, so neither transfer stops the other.
            tokio::select! {
                biased;
                command = self.commands.recv() => self.apply(command),
                _ = ping.tick() => {
                    if let Err(e) = link.send(&ClientMessage::Ping).await {
                        return classify(e);
                    }
                }
                Some((id, result)) = self.prepared_rx.recv() => self.uploads.prepared(id, result),
                _ = transfers.tick() => self.downloads.tick(Instant::now()),
                _ = std::future::ready(()), if chunk_turn => {
                    frames_in_a_row = 0;
                    if let Err(e) = self.send_chunk(link).await {
                        return classify(e);
                    }
                }
                frame = reader.read_frame(MAX_BODY) => {
                    frames_in_a_row = frames_in_a_row.saturating_add(1);
                    let (kind, body) = match frame {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return network_failure("the server closed the connection"),
                        Err(e) => return classify(e),
                    };
                    if let Err(ending) = self.on_frame(link, kind, &body) {
                        return ending;
                    }
                }
                _ = deadline => return network_failure("the server stopped responding"),
                _ = std::future::ready(()), if chunk_due => {
                    frames_in_a_row = 0;
                    if let Err(e) = self.send_chunk(link).await {
                        return classify(e);
                    }
                }
            }
            if let Some(ending) = self.perform(link).await {
                return ending;
            }
        }
    }

    /// Open a frame and hand its message to the session, or to the transfers.
    fn on_frame(&mut self, link: &mut Link, kind: FrameKind, body: &[u8]) -> Result<(), Ending> {
        match kind {
            FrameKind::Session => {
                let plaintext = sealed::open_session_plaintext(&mut link.recv, body)
                    .map_err(|e| classify(e.into()))?;
                let message = decode_server_message(&plaintext)
                    .map_err(|e| classify(SealError::Decode(e).into()))?;
                if let Some(message) = self.on_transfer_message(message)? {
                    self.session.on_server_message(message);
                }
            }
            FrameKind::Broadcast => {
                let keys = link
                    .keys
                    .as_mut()
                    .ok_or(classify(ConnError::UnexpectedFrame(kind)))?;
                let plaintext = keys.open_plaintext(body).map_err(|e| classify(e.into()))?;
                let message = decode_broadcast_message(&plaintext)
                    .map_err(|e| classify(SealError::Decode(e).into()))?;
                self.session.on_broadcast(message);
            }
            // Integrity failures: reconnect, and the download resumes from its first missing chunk.
            FrameKind::FileChunk => self
                .downloads
                .on_chunk(body, Instant::now())
                .map_err(integrity_failure)?,
            other => return Err(classify(ConnError::UnexpectedFrame(other))),
        }
        Ok(())
    }

    /// A transfer's answer goes to its state machine; anything else is returned for the
    /// session.
    fn on_transfer_message(
        &mut self,
        message: ServerMessage,
    ) -> Result<Option<ServerMessage>, Ending> {
        let now = Instant::now();
        match message {
            ServerMessage::FileAccepted {
                upload_id,
                have,
                window,
            } => self
                .uploads
                .on_accepted(upload_id, have, window, now)
                .map_err(|e| Ending::Retry {
                    kind: ErrorKind::Protocol,
                    message: e.to_string(),
                    report: true,
                    wait: None,
                })?,
            ServerMessage::FileStored { upload_id, have } => {
                self.uploads.on_stored(upload_id, have, now)
            }
            ServerMessage::FileRefused {
                upload_id,
                reason,
                message,
            } => self.uploads.on_refused(upload_id, reason, message),
            ServerMessage::FileDone {
                upload_id,
                file_id,
                seq,
            } => self.uploads.on_done(upload_id, file_id, seq),
            ServerMessage::FileBegin {
                file_id,
                size,
                offset,
                key,
            } => self.downloads.on_begin(file_id, size, offset, key, now),
            ServerMessage::FileMissing { file_id, reason } => {
                self.downloads.on_missing(file_id, reason, now)
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }
}

/// Size, SHA-256 and MIME hint of an upload's source (blocking: run off the async thread).
fn prepare(name: &str, source: &UploadSource) -> Result<Prepared, String> {
    match source {
        UploadSource::Memory(bytes) => Ok(Prepared {
            size: bytes.len() as u64,
            sha256: Hasher::digest(bytes).into(),
            mime: crate::files::mime_hint(name, bytes).to_string(),
        }),
        UploadSource::Path(path) => {
            use std::io::Read;
            let io = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
            let mut file = std::fs::File::open(path).map_err(io)?;
            if !file.metadata().map_err(io)?.is_file() {
                return Err(format!("{} is not a regular file", path.display()));
            }
            let mut hasher = Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut head = Vec::new();
            let mut size = 0u64;
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io(e)),
                };
                if head.len() < 16 {
                    head.extend_from_slice(&buf[..n.min(16)]);
                }
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Ok(Prepared {
                size,
                sha256: hasher.finalize().into(),
                mime: crate::files::mime_hint(name, &head).to_string(),
            })
        }
    }
}

/// Write `data` at `offset` of `file`.
async fn write_at(file: &mut tokio::fs::File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    file.write_all(data).await
}

/// Create `path` as a new file for writing: never one already there, and never through a
/// link planted at its name.
async fn create_new(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let path = path.to_path_buf();
    let file = tokio::task::spawn_blocking(move || options.open(path))
        .await
        .map_err(std::io::Error::other)??;
    Ok(tokio::fs::File::from_std(file))
}

/// Whether the filesystem holding `temp` has room for `size` more bytes and still
/// `min_free` free; `Err` says why not. Where the system cannot tell, it does not refuse.
fn check_free_space(temp: &Path, size: u64, min_free: u64) -> Result<(), String> {
    let Some(available) = available_bytes(temp) else {
        return Ok(());
    };
    let needed = size.saturating_add(min_free);
    if available < needed {
        return Err(format!(
            "not enough free space in {}: {} MiB free, {} MiB needed (the file and a margin of {} MiB)",
            temp.parent().unwrap_or(temp).display(),
            available >> 20,
            needed.div_ceil(1 << 20),
            min_free >> 20,
        ));
    }
    Ok(())
}

/// The bytes an unprivileged process may still write on the filesystem holding `path`'s
/// folder.
#[cfg(unix)]
fn available_bytes(path: &Path) -> Option<u64> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match rustix::fs::statvfs(dir) {
        Ok(stats) => Some(stats.f_bavail.saturating_mul(stats.f_frsize)),
        Err(e) => {
            tracing::debug!(dir = %dir.display(), "cannot tell the free space: {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn available_bytes(_path: &Path) -> Option<u64> {
    None
}

/// Move a checked download from `temp` into `place`; returns where it went. In a folder it
/// never replaces anything (a file, a link, another client's download of the same file):
/// `name`, `name (1).ext`, … each claimed atomically — a hard link where the filesystem has
/// them, else a rename that refuses to replace (Linux), else a copy into a new file.
async fn put_in_place(temp: &Path, place: &Place) -> std::io::Result<PathBuf> {
    match place {
        Place::Path(path) => {
            // The user chose this path in a save dialog that asked about replacing it. (A
            // rename replaces a link there, never writes through it.)
            tokio::fs::rename(temp, path).await?;
            Ok(path.clone())
        }
        Place::Folder { dir, name } => {
            let (temp, dir, name) = (temp.to_path_buf(), dir.clone(), name.clone());
            tokio::task::spawn_blocking(move || claim_name(&temp, &dir, &name))
                .await
                .map_err(std::io::Error::other)?
        }
    }
}

/// How a checked download takes a name in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    HardLink,
    #[cfg(target_os = "linux")]
    RenameNoReplace,
    Copy,
}

/// Blocking: the first of `name`, `name (1).ext`, … not taken in `dir`, claimed without
/// replacing anything, with `temp`'s content; `temp` is gone afterwards.
fn claim_name(temp: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let name = crate::files::safe_name(name);
    let mut how = Claim::HardLink;
    let mut n = 0;
    while n < 10_000 {
        let candidate = dir.join(numbered_name(&name, n));
        match claim_once(how, temp, &candidate) {
            Ok(()) => {
                if how == Claim::HardLink {
                    std::fs::remove_file(temp)?;
                }
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            // This filesystem cannot do it this way: the next way, at the same name.
            Err(e) if how != Claim::Copy => {
                tracing::debug!(?how, "cannot claim a name this way: {e}");
                how = match how {
                    #[cfg(target_os = "linux")]
                    Claim::HardLink => Claim::RenameNoReplace,
                    _ => Claim::Copy,
                };
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "too many files named like {name} in {}",
        dir.display()
    )))
}

fn claim_once(how: Claim, temp: &Path, candidate: &Path) -> std::io::Result<()> {
    match how {
        Claim::HardLink => std::fs::hard_link(temp, candidate),
        #[cfg(target_os = "linux")]
        Claim::RenameNoReplace => rustix::fs::renameat_with(
            rustix::fs::CWD,
            temp,
            rustix::fs::CWD,
            candidate,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(std::io::Error::from),
        Claim::Copy => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
            }
            let mut to = options.open(candidate)?;
            let copied = std::fs::File::open(temp)
                .and_then(|mut from| std::io::copy(&mut from, &mut to))
                .and_then(|_| to.sync_all());
            if let Err(e) = copied {
                let _ = std::fs::remove_file(candidate);
                // Not "already exists": that would try the next name.
                return Err(std::io::Error::other(e));
            }
            std::fs::remove_file(temp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of claiming a name, as used when hard links are not possible there.
    fn ways() -> Vec<Claim> {
        vec![
            Claim::HardLink,
            #[cfg(target_os = "linux")]
            Claim::RenameNoReplace,
            Claim::Copy,
        ]
    }

    #[test]
    fn no_way_of_claiming_a_name_replaces_a_file_or_writes_through_a_link() {
        for how in ways() {
            let dir = tempfile::tempdir().unwrap();
            let temp = dir.path().join(".part");
            std::fs::write(&temp, b"checked").unwrap();
            let taken = dir.path().join("taken");
            std::fs::write(&taken, b"theirs").unwrap();
            let outside = dir.path().join("outside");
            #[cfg(unix)]
            std::os::unix::fs::symlink(&outside, dir.path().join("link")).unwrap();
            let refused = claim_once(how, &temp, &taken).unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists, "{how:?}");
            assert_eq!(std::fs::read(&taken).unwrap(), b"theirs", "{how:?}");
            #[cfg(unix)]
            {
                let link = dir.path().join("link");
                let refused = claim_once(how, &temp, &link).unwrap_err();
                assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists, "{how:?}");
                assert!(!outside.exists(), "{how:?} wrote through the link");
            }
            assert_eq!(std::fs::read(&temp).unwrap(), b"checked", "{how:?}");
            let free = dir.path().join("free");
            claim_once(how, &temp, &free).unwrap();
            assert_eq!(std::fs::read(&free).unwrap(), b"checked", "{how:?}");
        }
    }

    #[test]
    fn a_checked_download_takes_the_first_name_nothing_holds() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".tertulia-1-2.part");
        std::fs::write(&temp, b"new").unwrap();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("a (1).txt")).unwrap();
        let placed = claim_name(&temp, dir.path(), "a.txt").unwrap();
        let expected = if cfg!(unix) { "a (2).txt" } else { "a (1).txt" };
        assert_eq!(placed, dir.path().join(expected));
        assert_eq!(std::fs::read(&placed).unwrap(), b"new");
        assert!(!temp.exists(), "the temporary file is gone");
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"old");
    }

    #[test]
    fn a_download_is_refused_when_the_disk_would_be_left_without_its_margin() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".part");
        assert!(check_free_space(&temp, 1, 0).is_ok());
        if cfg!(unix) {
            let refused = check_free_space(&temp, 1, u64::MAX / 2).unwrap_err();
            assert!(refused.contains("not enough free space"), "{refused}");
            let refused = check_free_space(&temp, u64::MAX, 0).unwrap_err();
            assert!(refused.contains("MiB needed"), "{refused}");
        }
    }
}
