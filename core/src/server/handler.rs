//! One connection's reader: the handshake, then every client message, admitted through flood
//! control and applied to the room. It starts the connection's [`writer`](super::writer) and,
//! when the connection ends, tells the room and lets the writer flush why.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::clock::Now;
use super::files::file_store::{self, VerifyError};
use super::files::layout::{beyond_window, judge_chunk, progress_due, ChunkVerdict};
use super::files::{ActiveUpload, ChunkError, Lookup, Offer, OfferOutcome};
use super::link::DownloadJob;
use super::link::{MemberLink, SendLimits};
use super::pages::PageSource;
use super::requests::{RequestBuckets, RequestLimits};
use super::room::NotMember;
use super::source::Source;
use super::throttle::Admission;
use super::turns::Turn;
use super::writer::{write_loop, DownloadPatience};
use super::Shared;
use crate::cipher::CipherState;
use crate::conn::{self, ConnError, FrameReader};
use crate::files::is_chunk_offset;
use crate::frame::{FrameKind, MAX_BODY};
use crate::hello::RejectCode;
use crate::message::{
    decode_client_message, is_valid_client_id, ClientMessage, ErrorCode, FileMissingReason,
    FileRefusal, ServerMessage,
};
use crate::sealed;
use crate::text::{validate_message, MessageTextError};

pub(super) async fn handle_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let conn_id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (read_half, mut write_half) = stream.into_split();
    let source = Source::of(peer.ip());
    let admission = shared.failed_handshakes().0.admit(source, Instant::now());
    match admission {
        Admission::Allow => {}
        Admission::Refuse { retry_after_secs } => {
            debug!(%peer, conn = conn_id, retry_after_secs, "refused: too many failed handshakes");
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                conn::send_throttled(&mut write_half, retry_after_secs),
            )
            .await;
            return;
        }
    }
    let mut reader = FrameReader::new(read_half);
    let sh: &Shared = &shared;
    // Asked again when the init arrives, after waiting for a turn (at most `MAX_IN_FLIGHT`
    // answered, unconfirmed handshakes per source; the handshake timeout cuts the wait): a
    // lockout set since this connection was admitted applies to it too, and so do the
    // source's guesses in flight (otherwise each connection opened before they settle is one
    // more guess).
    let turn = move || async move {
        let turn = sh.handshake_turns.wait(source).await;
        match sh.failed_handshakes().0.admit(source, Instant::now()) {
            Admission::Allow => Ok(turn),
            Admission::Refuse { retry_after_secs } => Err(retry_after_secs),
        }
    };
    // The handshake timeout covers the key confirmation (the first session frame) too.
    let deadline = tokio::time::Instant::now() + sh.config.handshake_timeout;
    let handshake = conn::accept_handshake(
        &mut reader,
        &mut write_half,
        &sh.salt,
        &sh.psk,
        &sh.host_key,
        turn,
        // Armed as the response goes out: from then on the peer holds an answer to its
        // guess, so it counts as a failure at once, until the client confirms the key (taken
        // back) or the connection ends without confirming (a failure for good). Checked
        // again under the same lock, so parallel connections cannot each slip in.
        move |turn| {
            let now = Instant::now();
            let delay = {
                let mut throttle = sh.failed_handshakes();
                if let Admission::Refuse { retry_after_secs } = throttle.0.admit(source, now) {
                    return Err(retry_after_secs);
                }
                throttle.0.answering(source, now)
            };
            let guard = Unconfirmed {
                shared: sh,
                source,
                conn_id,
                settled: false,
                _turn: turn,
            };
            Ok((guard, delay.min(sh.config.handshake_timeout / 2)))
        },
    );
    let (keys, unconfirmed) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(conn::ConnError::Throttled { retry_after_secs })) => {
            debug!(%peer, conn = conn_id, ?retry_after_secs, "init refused: too many failed or unconfirmed handshakes");
            return;
        }
        // Closed without a word after the `Hello`: a port check (the room's own self-check
        // of its internet address, a scanner, a client that gave up), not worth the host's log.
        Ok(Err(conn::ConnError::Closed)) => {
            debug!(%peer, conn = conn_id, "closed during the handshake");
            return;
        }
        Ok(Err(e)) => {
            if let Some(suppressed) = shared.connection_log() {
                info!(%peer, conn = conn_id, error = %e, suppressed, "handshake failed");
            }
            return;
        }
        Err(_) => {
            if let Some(suppressed) = shared.connection_log() {
                info!(%peer, conn = conn_id, suppressed, "handshake timed out");
            }
            return;
        }
    };
    let mut recv = keys.recv;
    // Key confirmation: the client's first session frame (its join) must open with the
    // session key. A wrong passphrase (or an attacker's guess) cannot produce one.
    let max_frame = shared.config.max_frame_bytes.min(MAX_BODY);
    let first = match tokio::time::timeout_at(deadline, reader.read_frame(max_frame)).await {
        Ok(Ok(Some((FrameKind::Session, body)))) => {
            sealed::open_session_plaintext(&mut recv, &body)
                .map(|plaintext| (plaintext, body.len()))
        }
        // Closed, cut, timed out, garbage: `unconfirmed` counts the failure when dropped.
        Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
        Ok(Ok(Some(_))) => Err(crate::sealed::SealError::Short),
    };
    let first = match first {
        Ok(first) => {
            unconfirmed.confirm();
            first
        }
        Err(_) => {
            let delay = unconfirmed.fail();
            tokio::time::sleep(delay).await;
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                conn::send_reject(&mut write_half, RejectCode::AuthenticationFailed),
            )
            .await;
            return;
        }
    };
    debug!(%peer, conn = conn_id, "handshake complete");

    let (tx, rx) = mpsc::channel(shared.config.send_queue_items);
    let room = &shared.config.room;
    let limits = SendLimits {
        budget: room.send_queue_bytes as u64,
        cap: room.send_queue_max_bytes.max(room.send_queue_bytes) as u64,
        stall: room.stall_timeout,
    };
    let link = MemberLink::new(conn_id, tx, shared.log.clone(), stop.child_token(), limits);
    let writer = tokio::spawn(write_loop(
        write_half,
        keys.send,
        rx,
        shared.log.clone(),
        shared.recent.clone(),
        link.progress.clone(),
        link.wake.clone(),
        link.cancel.clone(),
        DownloadPatience::for_stall(limits.stall),
    ));
    let mut handler = Handler {
        shared: shared.clone(),
        peer,
        link: link.clone(),
        recv,
        member: None,
        client_id: None,
        source: Source::of(peer.ip()),
        requests: RequestBuckets::new(
            if shared.config.flood.is_off() {
                RequestLimits::off()
            } else {
                shared.config.requests
            },
            Instant::now(),
        ),
        waiting: VecDeque::new(),
        waiting_bytes: 0,
        page: None,
        file_work: None,
        upload: None,
        droppable: 0,
        downloading: None,
    };
    let end = handler.read_loop(&mut reader, first).await;
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
        Err(HandlerError::TooManyJoins(wait)) => {
            // Debug only: a join loop must not flood the host's log either.
            debug!(%peer, conn = conn_id, "join refused: too many new members from this address");
            link.close_with(
                ErrorCode::Flood,
                &format!(
                    "too many people joined from your address; retry in {} s",
                    wait.as_secs() + 1
                ),
            );
        }
        Err(e) => debug!(%peer, conn = conn_id, error = %e, "connection ended"),
    }
    if let Some(key) = &handler.member {
        let mut room = shared.room();
        match end {
            Err(HandlerError::Left) => {}
            _ => room.disconnected(key, conn_id, Now::current()),
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

/// A handshake answered but not yet confirmed by the client's first session frame: counted
/// by the throttle as a failure while it is in flight (from the moment it was armed), and
/// holding one of its source's turns. Dropped unsettled (the connection closed, was cut, or
/// timed out first), it becomes a failed guess for good: a guess cannot be made free by
/// hanging up. Settling gives the turn back.
struct Unconfirmed<'a> {
    shared: &'a Shared,
    source: Source,
    conn_id: u64,
    settled: bool,
    _turn: Turn<'a>,
}

impl Unconfirmed<'_> {
    /// The client proved the key: not a failure; the source's earlier failures stay.
    fn confirm(mut self) {
        self.settled = true;
        self.shared.failed_handshakes().0.confirmed(self.source);
    }

    /// The first frame did not open: count the failure now; returns the delay before the
    /// `Reject(1)` (the throttle for online guessing).
    fn fail(mut self) -> Duration {
        self.settled = true;
        self.record()
    }

    fn record(&self) -> Duration {
        let now = Instant::now();
        let mut guard = self.shared.failed_handshakes();
        let (failures, log) = &mut *guard;
        let failure = failures.unconfirmed_failed(self.source, now);
        if let Some(suppressed) = log.allow(now) {
            let (source, conn) = (self.source, self.conn_id);
            match failure.lockout {
                Some(lockout) => warn!(
                    %source, conn, lockout_secs = lockout.as_secs(), suppressed,
                    "handshake failed: wrong passphrase; too many from this address, refusing it for a while"
                ),
                None => warn!(
                    %source, conn, suppressed,
                    "handshake failed: wrong passphrase (no key confirmation)"
                ),
            }
        }
        failure
            .reject_delay
            .min(self.shared.config.handshake_timeout / 2)
    }
}

impl Drop for Unconfirmed<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.record();
        }
    }
}

/// Run blocking work (disk, database, hashing) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HandlerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| HandlerError::Storage)
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
    #[error("too many new members from this address")]
    TooManyJoins(Duration),
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
    /// The member's client id once joined: flood control takes a token from its bucket and
    /// from its source's (shared with every connection; see `buckets`).
    client_id: Option<String>,
    source: Source,
    /// Rate limits of `join` retries, `ping`, `typing` and `older`.
    requests: RequestBuckets,
    /// Messages held back by flood control, in arrival order, with their frame sizes.
    waiting: VecDeque<(ClientMessage, usize)>,
    /// The sum of the frame sizes in `waiting` (at most [`MAX_WAITING_BYTES`]).
    waiting_bytes: usize,
    /// A page of older history asked for, served (off the room's lock) before the next
    /// message is handled.
    page: Option<PageRequest>,
    /// File work asked for (disk, database, hashing), done off the room's lock and the
    /// async threads before the next message is handled.
    file_work: Option<FileWork>,
    /// The connection's active upload.
    upload: Option<ActiveUpload>,
    /// Chunks this connection may still send that are not stored (below `have`, or not for
    /// its active upload): a window's worth from its last accepted offer, or from when the
    /// host stopped its active upload; one more is a protocol violation (§13).
    droppable: u32,
    /// The file this connection is downloading (the last `file_get` answered with a begin).
    downloading: Option<u64>,
}

/// File work a message asked for (see [`Handler::serve_file_work`]).
enum FileWork {
    Offer(Offer),
    /// Store the active upload's chunk at `offset` (already judged the next one).
    Chunk {
        offset: u64,
        data: Vec<u8>,
    },
    Cancel(u64),
    Get {
        file_id: u64,
        offset: u64,
    },
}

/// An `older` request, checked by the room and to be read without its lock.
struct PageRequest {
    link: MemberLink,
    source: PageSource,
    before_seq: u64,
    limit: usize,
}

/// Most bytes of messages one connection may have held back by flood control; one more and
/// it is cut off as flooding. A well-behaved client's send window (32 messages of at most
/// 8 KiB, a few bytes more encoded) stays well inside it.
const MAX_WAITING_BYTES: usize = 1024 * 1024;

/// Most bytes of a peer-supplied string the server echoes back (cut on a character boundary).
pub(super) const MAX_ECHO_BYTES: usize = 64;

/// `text` cut to at most [`MAX_ECHO_BYTES`] on a character boundary.
fn echo(mut text: String) -> String {
    if text.len() > MAX_ECHO_BYTES {
        let mut end = MAX_ECHO_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Handler {
    /// Handle the first message (`first`: its plaintext, opened for the key confirmation,
    /// and its frame size), then every frame that follows.
    async fn read_loop(
        &mut self,
        reader: &mut FrameReader<OwnedReadHalf>,
        first: (Vec<u8>, usize),
    ) -> Result<(), HandlerError> {
        let join_deadline = tokio::time::Instant::now() + self.shared.config.join_timeout;
        let max_frame = self.shared.config.max_frame_bytes.min(MAX_BODY);
        let (plaintext, size) = first;
        let Ok(message) = decode_client_message(&plaintext) else {
            return Err(HandlerError::Protocol("undecodable message"));
        };
        self.admit(message, size)?;
        self.serve_page().await;
        self.serve_file_work().await?;
        loop {
            let idle = tokio::time::sleep(self.shared.config.idle_timeout);
            let release = self
                .next_release(Instant::now())
                .map(tokio::time::Instant::from_std);
            let frame = tokio::select! {
                _ = self.link.cancel.cancelled() => return Err(HandlerError::Detached),
                _ = tokio::time::sleep_until(join_deadline), if self.member.is_none() => return Err(HandlerError::JoinTimeout),
                _ = idle => return Err(HandlerError::Idle),
                _ = tokio::time::sleep_until(release.unwrap_or(join_deadline)), if release.is_some() => {
                    self.release_waiting()?;
                    self.serve_page().await;
                    self.serve_file_work().await?;
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
            let size = body.len();
            let plaintext =
                sealed::open_session_plaintext(&mut self.recv, &body).map_err(ConnError::from)?;
            let Ok(message) = decode_client_message(&plaintext) else {
                return Err(HandlerError::Protocol("undecodable message"));
            };
            self.admit(message, size)?;
            self.serve_page().await;
            self.serve_file_work().await?;
        }
    }

    /// Do the file work the last message asked for: on blocking threads (the database, the
    /// disk, hashing), never holding the room's lock across it.
    async fn serve_file_work(&mut self) -> Result<(), HandlerError> {
        let Some(work) = self.file_work.take() else {
            return Ok(());
        };
        let Some(client) = self.client_id.clone() else {
            return Ok(());
        };
        let files = self.shared.files.clone();
        let conn = self.link.conn_id;
        match work {
            FileWork::Offer(offer) => {
                let upload_id = offer.upload_id;
                let source = self.source.to_string();
                let answer = {
                    let client = client.clone();
                    blocking(move || files.offer(&client, &source, conn, offer)).await?
                };
                match answer {
                    OfferOutcome::AlreadyInRoom => {
                        self.link.queue(ServerMessage::FileDone {
                            upload_id,
                            file_id: 0,
                            seq: 0,
                        });
                    }
                    OfferOutcome::Refused(reason, message) => {
                        debug!(peer = %self.peer, conn, upload_id, ?reason, "file offer refused");
                        self.link.queue(ServerMessage::FileRefused {
                            upload_id,
                            reason,
                            message,
                        });
                    }
                    OfferOutcome::Accepted(upload) => {
                        let window = self.shared.files.limits().window;
                        self.link.queue(ServerMessage::FileAccepted {
                            upload_id,
                            have: upload.have,
                            window,
                        });
                        self.droppable = window;
                        let complete = upload.have == upload.size;
                        self.upload = Some(*upload);
                        if complete {
                            self.finish_upload().await?;
                        }
                    }
                }
            }
            FileWork::Chunk { offset, data } => {
                let Some(upload) = self.upload.as_mut() else {
                    return Ok(());
                };
                let (target, upload_id) = (upload.target(), upload.upload_id);
                // Charged to the quota as it arrives (the oldest files may give way), sealed
                // once, as every member will get it, stored as it is and hashed, only if this
                // connection still owns the upload and this is its next chunk: decided under
                // the upload's lock, so no other connection seals at this offset (§13).
                let stored = {
                    let (files, client) = (files.clone(), client.clone());
                    blocking(move || files.store_chunk(&client, conn, &target, offset, &data))
                        .await?
                };
                let have = match stored {
                    Ok(have) => have,
                    Err(ChunkError::NotActive) => {
                        // Taken over by another connection of this client, or dropped: what
                        // it still has on the way is dropped too.
                        info!(peer = %self.peer, conn, upload_id, "upload no longer active on this connection (taken over or dropped); its chunks here are dropped");
                        self.upload = None;
                        self.droppable = files.limits().window;
                        return Ok(());
                    }
                    Err(e) => {
                        warn!(conn, error = %e, "could not store a file chunk");
                        self.upload = None;
                        self.droppable = files.limits().window;
                        blocking(move || files.cancel(&client, upload_id)).await?;
                        let message = match e {
                            ChunkError::NoSpace => "the room's file space is full; try again later",
                            _ => "the host could not store the file",
                        };
                        self.link.queue(ServerMessage::FileRefused {
                            upload_id,
                            reason: FileRefusal::NoSpace,
                            message: message.into(),
                        });
                        return Ok(());
                    }
                };
                upload.have = have;
                let window = files.limits().window;
                if progress_due(upload.size, upload.have, upload.told, window) {
                    upload.told = upload.have;
                    self.link.queue(ServerMessage::FileStored {
                        upload_id: upload.upload_id,
                        have: upload.have,
                    });
                }
                if upload.have == upload.size {
                    self.finish_upload().await?;
                }
            }
            FileWork::Cancel(upload_id) => {
                blocking(move || files.cancel(&client, upload_id)).await?;
            }
            FileWork::Get { file_id, offset } => {
                // A get replaces the download in progress, whatever its answer.
                let generation = self.link.stop_download();
                self.downloading = None;
                let missing = |reason| ServerMessage::FileMissing { file_id, reason };
                let (size, key, path, left) = match files.lookup(file_id) {
                    Lookup::Kept {
                        size,
                        key,
                        path,
                        left,
                    } => (size, key, path, left),
                    Lookup::Gone => {
                        self.link.queue(missing(FileMissingReason::Gone));
                        return Ok(());
                    }
                    Lookup::Unknown => {
                        self.link.queue(missing(FileMissingReason::Unknown));
                        return Ok(());
                    }
                };
                if !is_chunk_offset(size, offset) {
                    return Err(HandlerError::Protocol(
                        "file_get offset is not a chunk's place in the file",
                    ));
                }
                match blocking(move || file_store::open_for_reading(&path)).await? {
                    Ok(file) => {
                        self.link.queue_download(
                            ServerMessage::FileBegin {
                                file_id,
                                size,
                                offset,
                                key,
                            },
                            DownloadJob {
                                file_id,
                                size,
                                next: offset,
                                file: Arc::new(file),
                                generation,
                                left,
                            },
                        );
                        self.downloading = Some(file_id);
                    }
                    Err(e) => {
                        warn!(conn, error = %e, "a kept file could not be opened");
                        self.link.queue(missing(FileMissingReason::Gone));
                    }
                }
            }
        }
        Ok(())
    }

    /// The active upload is complete: make it durable and check its SHA-256 (on a blocking
    /// thread), then put it in the room — or refuse it as corrupt and drop what was stored.
    async fn finish_upload(&mut self) -> Result<(), HandlerError> {
        let Some(upload) = self.upload.take() else {
            return Ok(());
        };
        let (Some(client), Some(member)) = (self.client_id.clone(), self.member.clone()) else {
            return Ok(());
        };
        let files = self.shared.files.clone();
        let conn = self.link.conn_id;
        let upload_id = upload.upload_id;
        let (file, key, file_id, size, sha256) = (
            upload.file.clone(),
            upload.key,
            upload.file_id,
            upload.size,
            upload.sha256,
        );
        // Kept as the chunks were stored, by whichever connection (the one check of what is
        // on disk); read back from disk only for an upload resumed after a restart.
        let hashed = upload.slot.digest(size);
        let verified =
            blocking(move || file_store::verify(&file, &key, file_id, size, &sha256, hashed))
                .await?;
        let refuse = |reason, message: &str| ServerMessage::FileRefused {
            upload_id,
            reason,
            message: message.into(),
        };
        match verified {
            Ok(()) => {
                let shared = self
                    .shared
                    .room()
                    .share_file(&member, conn, &upload, Now::current());
                match shared? {
                    Some((file_id, seq)) => {
                        info!(peer = %self.peer, conn, file_id = format!("{file_id:016x}"), seq, size, "file shared");
                        self.link.queue(ServerMessage::FileDone {
                            upload_id,
                            file_id,
                            seq,
                        });
                    }
                    None => {
                        blocking(move || files.cancel(&client, upload_id)).await?;
                        self.link.queue(ServerMessage::FileDone {
                            upload_id,
                            file_id: 0,
                            seq: 0,
                        });
                    }
                }
            }
            Err(e) => {
                let (reason, message) = match e {
                    VerifyError::Mismatch | VerifyError::Sealed => (
                        FileRefusal::Corrupt,
                        "what arrived does not have the announced SHA-256; send it again",
                    ),
                    VerifyError::Io(_) => {
                        (FileRefusal::NoSpace, "the host could not store the file")
                    }
                };
                info!(peer = %self.peer, conn, upload_id, error = %e, "a finished upload was refused");
                blocking(move || files.cancel(&client, upload_id)).await?;
                self.link.queue(refuse(reason, message));
            }
        }
        Ok(())
    }

    /// Read the page of older history asked for (on a blocking thread, not holding the
    /// room's lock) and queue it. One at a time: the next request waits for this one.
    async fn serve_page(&mut self) {
        let Some(PageRequest {
            link,
            source,
            before_seq,
            limit,
        }) = self.page.take()
        else {
            return;
        };
        match tokio::task::spawn_blocking(move || source.read(before_seq, limit)).await {
            Ok(page) => {
                link.queue(page);
            }
            Err(e) => warn!(conn = link.conn_id, error = %e, "reading older history failed"),
        }
    }

    /// Take the token `message` needs now, if it needs one; `false` if none is available.
    /// Chat takes from the member's shared flood buckets, requests from this connection's.
    fn take_token(&mut self, message: &ClientMessage, now: Instant) -> bool {
        if takes_token(message) {
            return self.try_take(now);
        }
        let joined = self.member.is_some();
        if let (ClientMessage::FileOffer { .. }, Some(client)) = (message, &self.client_id) {
            // Also from its client id's and its address's buckets, across connections.
            let ready = self
                .requests
                .bucket(message, joined)
                .is_none_or(|bucket| bucket.available_at(now) <= now);
            if !(ready && self.shared.file_offers.try_take(client, self.source, now)) {
                return false;
            }
        }
        self.requests
            .bucket(message, joined)
            .is_none_or(|bucket| bucket.try_take(now))
    }

    /// When the first held-back message's token is available (`None`: nothing held back).
    fn next_release(&mut self, now: Instant) -> Option<Instant> {
        let (front, _) = self.waiting.front()?;
        if takes_token(front) {
            return Some(self.available_at(now));
        }
        let own = self
            .requests
            .bucket(front, self.member.is_some())
            .map_or(now, |bucket| bucket.available_at(now));
        let shared = match (front, &self.client_id) {
            (ClientMessage::FileOffer { .. }, Some(client)) => self
                .shared
                .file_offers
                .available_at(client, self.source, now),
            _ => now,
        };
        Some(own.max(shared))
    }

    /// Handle a message now, or hold it back if the member is over its flood limit (or
    /// earlier messages are still held: order is kept).
    /// A typing notice over its limit is dropped instead (it is ephemeral; the room relays at
    /// most one per interval anyway).
    fn admit(&mut self, message: ClientMessage, size: usize) -> Result<(), HandlerError> {
        let now = Instant::now();
        if matches!(message, ClientMessage::Typing) {
            if !self.take_token(&message, now) {
                return Ok(());
            }
            if self.waiting.is_empty() {
                return self.handle(message);
            }
        } else if self.waiting.is_empty() && self.take_token(&message, now) {
            return self.handle(message);
        } else if matches!(message, ClientMessage::FileChunk { .. })
            && !self.waiting.iter().any(|(m, _)| is_file_message(m))
        {
            // File data is bounded by the upload window, not the flood limit: it does not
            // queue behind held-back chat (whose order it has nothing to do with), only
            // behind a held-back file request.
            return self.handle(message);
        }
        if self.waiting.len() >= self.shared.config.flood_queue
            || self.waiting_bytes + size > MAX_WAITING_BYTES
        {
            return Err(HandlerError::Flood);
        }
        self.waiting_bytes += size;
        self.waiting.push_back((message, size));
        Ok(())
    }

    /// Handle held-back messages whose turn has come.
    fn release_waiting(&mut self) -> Result<(), HandlerError> {
        let now = Instant::now();
        while let Some((message, size)) = self.waiting.pop_front() {
            // A held typing notice already took its token.
            if !matches!(message, ClientMessage::Typing) && !self.take_token(&message, now) {
                self.waiting.push_front((message, size));
                break;
            }
            self.waiting_bytes -= size;
            self.handle(message)?;
            if self.page.is_some() || self.file_work.is_some() {
                break; // served before anything else is handled
            }
        }
        Ok(())
    }

    /// Take a flood token for this member (before joining there is nothing to take from:
    /// chat before joining is refused anyway).
    fn try_take(&self, now: Instant) -> bool {
        match &self.client_id {
            Some(client) => self.shared.flood.try_take(client, self.source, now),
            None => true,
        }
    }

    /// When the next flood token is available for this member.
    fn available_at(&self, now: Instant) -> Instant {
        match &self.client_id {
            Some(client) => self.shared.flood.available_at(client, self.source, now),
            None => now,
        }
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
                if !is_valid_client_id(&client_id) {
                    return Err(HandlerError::Protocol(
                        "client id must be 16 to 64 ASCII letters, digits, '_' or '-'",
                    ));
                }
                let mut room = self.shared.room();
                if room.would_add_member(&nick) {
                    if let Err(wait) = self.shared.joins.try_take(self.source, Instant::now()) {
                        return Err(HandlerError::TooManyJoins(wait));
                    }
                }
                match room.join(
                    &nick,
                    &client_id,
                    resume.as_ref(),
                    self.link.clone(),
                    Now::current(),
                ) {
                    Ok(joined) => {
                        info!(peer = %self.peer, conn = conn_id, nick = %joined.nick, resumed = joined.resumed, "joined");
                        self.member = Some(joined.key);
                        self.client_id = Some(client_id);
                    }
                    Err(reason) => {
                        drop(room);
                        // Never echo (or log) more than a few bytes of what the peer sent,
                        // and log it escaped: it may hold control characters.
                        let nick = echo(nick);
                        debug!(peer = %self.peer, nick = ?nick, %reason, "nickname refused");
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
                // Not joined: no broadcast position (the writer fills it in; 0 here).
                let _ = self.link.queue(ServerMessage::Pong { broadcast_next: 0 });
            }
            (ClientMessage::Ping, Some(key)) => {
                self.shared
                    .room()
                    // `broadcast_next` is filled in by the writer as it sends the pong.
                    .reply(key, conn_id, ServerMessage::Pong { broadcast_next: 0 })?
            }
            // A newer client's message: one short reply, the connection survives; it is
            // rate-limited like a ping, so it cannot make the server queue replies faster.
            (ClientMessage::Unknown, _) => {} // decode_client_message names it: never here
            (ClientMessage::Unsupported { what }, None) => {
                debug!(peer = %self.peer, conn = conn_id, what = ?what, "unsupported message type");
                let _ = self.link.queue(ServerMessage::Unsupported { what });
            }
            (ClientMessage::Unsupported { what }, Some(key)) => {
                debug!(peer = %self.peer, conn = conn_id, what = ?what, "unsupported message type");
                self.shared
                    .room()
                    .reply(key, conn_id, ServerMessage::Unsupported { what })?
            }
            (ClientMessage::Say { .. }, None) => {
                return Err(HandlerError::Protocol("message before joining"))
            }
            (ClientMessage::Say { id, text }, Some(key)) => {
                // Ids start at 1 (0 is "nothing acked yet"): refused, never acked and dropped.
                let valid_id = if id == 0 {
                    Err(MessageTextError::BadId)
                } else {
                    Ok(())
                };
                match valid_id
                    .and_then(|()| validate_message(&text))
                    .and_then(|text| {
                        if text.len() > self.shared.config.max_message_bytes {
                            Err(MessageTextError::TooLong)
                        } else {
                            Ok(text)
                        }
                    }) {
                    Ok(text) => self
                        .shared
                        .room()
                        .say(key, conn_id, id, text, Now::current())?,
                    Err(reason) => self.shared.room().reply(
                        key,
                        conn_id,
                        ServerMessage::MessageRejected { id, reason },
                    )?,
                }
            }
            (ClientMessage::Leave, Some(key)) => {
                self.shared.room().leave(key, conn_id, Now::current());
                info!(peer = %self.peer, conn = conn_id, "left");
                return Err(HandlerError::Left);
            }
            (ClientMessage::Leave, None) => return Ok(()),
            (ClientMessage::Typing, Some(key)) => {
                self.shared.room().typing(key, conn_id, Now::current())?
            }
            (ClientMessage::Typing, None) => {
                return Err(HandlerError::Protocol("typing before joining"))
            }
            (ClientMessage::Older { before_seq, limit }, Some(key)) => {
                // Read and queued by `serve_page`, without the room's lock.
                let (link, source) = self.shared.room().older(key, conn_id)?;
                self.page = Some(PageRequest {
                    link,
                    source,
                    before_seq,
                    limit: limit as usize,
                });
            }
            (ClientMessage::Older { .. }, None) => {
                return Err(HandlerError::Protocol("history request before joining"))
            }
            // Files (docs/PROTOCOL.md §13): the disk and database work is done by
            // `serve_file_work`, off the room's lock, before the next message is handled.
            (
                ClientMessage::FileOffer { .. }
                | ClientMessage::FileChunk { .. }
                | ClientMessage::FileCancel { .. }
                | ClientMessage::FileGet { .. }
                | ClientMessage::FileStop { .. },
                None,
            ) => return Err(HandlerError::Protocol("file transfer before joining")),
            (
                ClientMessage::FileOffer {
                    upload_id,
                    name,
                    size,
                    mime,
                    sha256,
                },
                Some(_),
            ) => {
                self.file_work = Some(FileWork::Offer(Offer {
                    upload_id,
                    name,
                    size,
                    mime,
                    sha256,
                }))
            }
            (
                ClientMessage::FileChunk {
                    upload_id,
                    offset,
                    data,
                },
                Some(_),
            ) => {
                // A chunk of an upload that is not the active one (cancelled, replaced,
                // finished, taken over) is dropped, and counted.
                let window = self.shared.files.limits().window;
                let verdict = match self.upload.as_ref().filter(|u| u.upload_id == upload_id) {
                    Some(u) => match judge_chunk(u.size, u.have, offset, data.len()) {
                        ChunkVerdict::Store if beyond_window(u.told, window, offset) => {
                            ChunkVerdict::Violation("file chunk beyond the upload window")
                        }
                        verdict => verdict,
                    },
                    None => ChunkVerdict::Drop,
                };
                match verdict {
                    ChunkVerdict::Store => self.file_work = Some(FileWork::Chunk { offset, data }),
                    ChunkVerdict::Drop => {
                        // Opened and read all the same: a window's worth at most (§13).
                        self.droppable =
                            self.droppable.checked_sub(1).ok_or(HandlerError::Protocol(
                                "more file chunks the host does not store than the window allows",
                            ))?;
                    }
                    ChunkVerdict::Violation(why) => return Err(HandlerError::Protocol(why)),
                }
            }
            (ClientMessage::FileCancel { upload_id }, Some(_)) => {
                if self
                    .upload
                    .as_ref()
                    .is_some_and(|u| u.upload_id == upload_id)
                {
                    self.upload = None;
                }
                self.file_work = Some(FileWork::Cancel(upload_id));
            }
            (ClientMessage::FileGet { file_id, offset }, Some(_)) => {
                self.file_work = Some(FileWork::Get { file_id, offset })
            }
            (ClientMessage::FileStop { file_id }, Some(_)) => {
                if self.downloading == Some(file_id) {
                    self.link.stop_download();
                    self.downloading = None;
                }
            }
        }
        Ok(())
    }
}

/// Messages of the file protocol (§13), whose order among themselves matters.
fn is_file_message(message: &ClientMessage) -> bool {
    matches!(
        message,
        ClientMessage::FileOffer { .. }
            | ClientMessage::FileChunk { .. }
            | ClientMessage::FileCancel { .. }
            | ClientMessage::FileGet { .. }
            | ClientMessage::FileStop { .. }
    )
}

/// Chat messages count against the flood limit; `join` retries, pings, typing notices and
/// history requests have their own ([`RequestBuckets`]); leaving has none.
fn takes_token(message: &ClientMessage) -> bool {
    matches!(message, ClientMessage::Say { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut_to_a_few_bytes_on_a_character_boundary() {
        assert_eq!(echo("ana".into()), "ana");
        let long = "é".repeat(40_000);
        let cut = echo(long);
        assert_eq!(cut, "é".repeat(32));
        let mixed = format!("a{}", "é".repeat(100));
        let cut = echo(mixed);
        assert!(
            cut.len() <= MAX_ECHO_BYTES && cut.len() == 63,
            "{}",
            cut.len()
        );
    }
}
