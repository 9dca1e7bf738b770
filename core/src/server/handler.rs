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
use super::flood::TokenBucket;
use super::link::MemberLink;
use super::room::NotMember;
use super::source::Source;
use super::throttle::Admission;
use super::writer::write_loop;
use super::Shared;
use crate::cipher::CipherState;
use crate::conn::{self, ConnError, FrameReader};
use crate::frame::{FrameKind, MAX_BODY};
use crate::message::{ClientMessage, ErrorCode, ServerMessage};
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
    // Counted the moment message 1 fails, so that dropping the connection before the delayed
    // Reject (or the handshake timeout cutting it) does not make a guess free.
    let wrong_passphrase = || {
        let now = Instant::now();
        let mut guard = shared.failed_handshakes();
        let (failures, log) = &mut *guard;
        let failure = failures.failed(source, now);
        if let Some(suppressed) = log.allow(now) {
            match failure.lockout {
                Some(lockout) => warn!(
                    %source, conn = conn_id, lockout_secs = lockout.as_secs(), suppressed,
                    "handshake failed: wrong passphrase; too many from this address, refusing it for a while"
                ),
                None => warn!(
                    %source, conn = conn_id, suppressed,
                    "handshake failed: wrong passphrase (authentication failed)"
                ),
            }
        }
        failure
            .reject_delay
            .min(shared.config.handshake_timeout / 2)
    };
    // Asked again when message 1 arrives: a lockout set since this connection was admitted
    // applies to it too (otherwise each connection opened before it is one more guess).
    let refused_now = || match shared.failed_handshakes().0.admit(source, Instant::now()) {
        Admission::Allow => None,
        Admission::Refuse { retry_after_secs } => Some(retry_after_secs),
    };
    let handshake = conn::accept_handshake(
        &mut reader,
        &mut write_half,
        &shared.salt,
        &shared.psk,
        refused_now,
        wrong_passphrase,
    );
    let keys = match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
        Ok(Ok(keys)) => keys,
        Ok(Err(e)) if e.is_wrong_passphrase() => return,
        Ok(Err(conn::ConnError::Throttled { .. })) => return,
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
