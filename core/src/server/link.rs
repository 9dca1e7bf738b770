//! A member connection as the room sees it: the [`MemberLink`] the room queues private
//! messages on (each [`Outgoing`] item marked with the broadcast-log position it follows) and
//! the [`WriterProgress`] the connection's writer reports back through. The room decides,
//! the writer sends; this is the channel between them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::fanout::FanoutLog;
use super::roster::Roster;
use crate::message::{ErrorCode, ServerMessage};

/// An item in a member's private queue. Private messages and closing are marked with the
/// room's broadcast log position when they were queued: the writer sends the broadcasts before
/// that position first, so the member sees everything in the order the room did it.
#[derive(Debug)]
pub enum Outgoing {
    /// Start sending the room's broadcasts from this log position (queued on joining, before
    /// the welcome).
    Attach(u64),
    /// A message for this member only; its writer seals it with the session key. Boxed so a
    /// queue slot stays small.
    Session {
        after: u64,
        message: Box<ServerMessage>,
    },
    /// The welcome: the writer fills in its online list from the room's roster when it sends
    /// it (as of `head_seq` or later; the join and leave events after `head_seq` that follow
    /// change a list keyed by nickname to the same end).
    Welcome {
        after: u64,
        welcome: Box<ServerMessage>,
        roster: Arc<Roster>,
    },
    /// Close the connection once everything queued before has been written.
    Close { after: u64 },
}

impl Outgoing {
    /// The broadcast log position this item follows.
    pub fn after(&self) -> u64 {
        match self {
            Outgoing::Attach(_) => 0,
            Outgoing::Session { after, .. }
            | Outgoing::Welcome { after, .. }
            | Outgoing::Close { after } => *after,
        }
    }
}

/// The room's handle on one member connection.
#[derive(Debug, Clone)]
pub struct MemberLink {
    pub conn_id: u64,
    /// Private messages, in order.
    pub tx: mpsc::Sender<Outgoing>,
    /// The room's broadcast log the writer sends from.
    pub log: Arc<FanoutLog>,
    /// What the writer has written so far.
    pub progress: Arc<WriterProgress>,
    /// Woken when broadcasts are appended to the log.
    pub wake: Arc<Notify>,
    /// Cancelling ends the connection at once (reader and writer).
    pub cancel: CancellationToken,
}

impl MemberLink {
    pub fn new(
        conn_id: u64,
        tx: mpsc::Sender<Outgoing>,
        log: Arc<FanoutLog>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            conn_id,
            tx,
            log,
            progress: Arc::default(),
            wake: Arc::default(),
            cancel,
        }
    }

    /// Queue a private message after every broadcast so far. Private messages are few and
    /// small (the replay of history is bounded by the history size); the queue is bounded in
    /// length.
    pub fn queue(&self, message: ServerMessage) -> bool {
        self.tx
            .try_send(Outgoing::Session {
                after: self.log.end(),
                message: Box::new(message),
            })
            .is_ok()
    }

    /// Queue the welcome, whose online list the writer takes from `roster` when it sends it.
    pub(super) fn queue_welcome(&self, welcome: ServerMessage, roster: &Arc<Roster>) -> bool {
        self.tx
            .try_send(Outgoing::Welcome {
                after: self.log.end(),
                welcome: Box::new(welcome),
                roster: roster.clone(),
            })
            .is_ok()
    }

    /// Close once everything queued so far has been written.
    pub fn close(&self) -> bool {
        self.tx
            .try_send(Outgoing::Close {
                after: self.log.end(),
            })
            .is_ok()
    }

    /// Send an error, then close; if the queue is full, close at once.
    pub fn close_with(&self, code: ErrorCode, message: &str) {
        let queued = self.queue(ServerMessage::Error {
            code,
            message: message.into(),
        }) && self.close();
        if !queued {
            self.cancel.cancel();
        }
    }

    /// Start receiving broadcasts from log position `at`.
    pub(super) fn attach(&self, at: u64) -> bool {
        self.progress.written.store(at, Ordering::Release);
        self.tx.try_send(Outgoing::Attach(at)).is_ok()
    }

    /// Broadcast bytes appended and not yet written, with the log ending at `end`.
    pub(super) fn behind(&self, end: u64) -> u64 {
        end.saturating_sub(self.progress.written.load(Ordering::Acquire))
    }
}

/// How far a member's writer has got, shared between the writer and the room.
#[derive(Debug, Default)]
pub struct WriterProgress {
    /// Log position up to which this member's broadcasts have been written.
    pub written: AtomicU64,
    /// Bytes written to the socket in all (broadcasts, replayed history, private messages):
    /// if it moves, the member is reading.
    pub sent: AtomicU64,
}
