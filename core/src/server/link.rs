//! A member connection as the room sees it: the [`MemberLink`] the room queues private
//! messages on (each [`Outgoing`] item marked with the broadcast-log position it follows) and
//! the [`WriterProgress`] the connection's writer reports back through. The room decides,
//! the writer sends; this is the channel between them.
//!
//! Every private item is counted in bytes (its exact encoded length, plus a fixed overhead) from when it is
//! queued until the writer takes it, and together with the broadcasts the member has not been
//! sent yet it must stay under the connection's cap ([`SendLimits::cap`]); a connection past it,
//! or over its budget with nothing taken for the stall timeout, is cut off as a slow consumer,
//! before joining as after. A replay of history is queued as a
//! range ([`Outgoing::Replay`]) the writer reads in bounded pieces, so it costs next to nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::fanout::FanoutLog;
use super::recent::ReplayPin;
use super::roster::Roster;
use crate::message::{ErrorCode, RoomEvent, ServerMessage};

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
    /// Replay the room events `from_seq..=through_seq` from the room's recent history, a
    /// bounded piece at a time as the writer sends them.
    Replay {
        after: u64,
        pin: ReplayPin,
        through_seq: u64,
    },
    /// Start sending a file (`file_get`): the writer sends `begin` (the `file_begin`) in its
    /// place, then the file's chunk frames, read from disk only when nothing else is waiting.
    /// Replaces the download in progress.
    Download {
        after: u64,
        begin: Box<ServerMessage>,
        job: DownloadJob,
    },
    /// Close the connection once everything queued before has been written.
    Close { after: u64 },
}

/// A file being sent to a member: the writer reads its frames from `file` as the connection
/// takes them (never the whole file in memory; never counted against the send queue).
#[derive(Debug)]
pub struct DownloadJob {
    pub file_id: u64,
    /// The file's content size.
    pub size: u64,
    /// The content offset of the next chunk to send.
    pub next: u64,
    pub file: Arc<std::fs::File>,
    /// The connection's download generation it belongs to ([`WriterProgress::download_gen`]):
    /// a newer `file_get` or a `file_stop` moves it on, and this job stops.
    pub generation: u64,
    /// Cancelled when the file leaves the room (retention, the quota): the job stops with
    /// `file_missing: gone` and lets go of `file`.
    pub left: CancellationToken,
}

impl DownloadJob {
    /// Are chunks of it still to be sent, the connection's download generation being
    /// `current`? (Not when it is done, stopped or replaced, or its file left.)
    pub fn due(&self, current: u64) -> bool {
        self.generation == current && self.next < self.size && !self.left.is_cancelled()
    }
}

/// Bytes counted for an item besides its encoding: its frame, tag and queue slot.
const ITEM_OVERHEAD: u64 = 64;

impl Outgoing {
    /// The broadcast log position this item follows.
    pub fn after(&self) -> u64 {
        match self {
            Outgoing::Attach(_) => 0,
            Outgoing::Session { after, .. }
            | Outgoing::Welcome { after, .. }
            | Outgoing::Replay { after, .. }
            | Outgoing::Download { after, .. }
            | Outgoing::Close { after } => *after,
        }
    }

    /// The bytes this item counts against its connection's cap while it waits in the queue.
    pub fn queued_bytes(&self) -> u64 {
        match self {
            Outgoing::Session { message, .. }
            | Outgoing::Welcome {
                welcome: message, ..
            }
            | Outgoing::Download { begin: message, .. } => {
                wire_len(&**message) as u64 + ITEM_OVERHEAD
            }
            Outgoing::Replay { .. } => ITEM_OVERHEAD,
            // Queued past the cap (they end or start the connection), so never counted.
            Outgoing::Attach(_) | Outgoing::Close { .. } => 0,
        }
    }
}

/// The exact encoded length of `value` (§6), without building it; a value that cannot be
/// encoded counts as a whole frame.
pub(super) fn wire_len(value: &(impl serde::Serialize + ?Sized)) -> usize {
    crate::message::encoded_len(value).unwrap_or(crate::sealed::MAX_SESSION_PLAINTEXT)
}

/// The exact bytes `event` takes inside a `history` or `older` message (length prefix and
/// encoding).
pub(super) fn entry_len(event: &RoomEvent) -> usize {
    crate::message::history_entry_len(event).unwrap_or(crate::sealed::MAX_SESSION_PLAINTEXT)
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
    /// How much may wait for this connection.
    pub limits: SendLimits,
}

/// How many bytes (private items queued plus broadcasts not yet sent) may wait for one
/// connection (the room's send-queue budget, cap and stall timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Past it the connection is cut off if it takes nothing for `stall`.
    pub budget: u64,
    /// Past it the connection is cut off at once.
    pub cap: u64,
    pub stall: std::time::Duration,
}

impl SendLimits {
    /// No limits (tests of the writer alone).
    #[cfg(test)]
    pub fn none() -> Self {
        Self {
            budget: u64::MAX,
            cap: u64::MAX,
            stall: std::time::Duration::MAX,
        }
    }
}

impl MemberLink {
    pub fn new(
        conn_id: u64,
        tx: mpsc::Sender<Outgoing>,
        log: Arc<FanoutLog>,
        cancel: CancellationToken,
        limits: SendLimits,
    ) -> Self {
        Self {
            conn_id,
            tx,
            log,
            progress: Arc::default(),
            wake: Arc::default(),
            cancel,
            limits,
        }
    }

    /// Queue an item, counting its bytes; a connection whose queue is full (in items, or in
    /// bytes with its unsent broadcasts) is cut off as a slow consumer instead.
    fn push(&self, item: Outgoing) -> bool {
        if self.cancel.is_cancelled() {
            return false;
        }
        let bytes = item.queued_bytes();
        let private = self.progress.queued.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let total = private + self.behind(self.log.end());
        let stalled = self.stalled(total);
        if total <= self.limits.cap && !stalled && self.tx.try_send(item).is_ok() {
            return true;
        }
        self.progress.queued.fetch_sub(bytes, Ordering::AcqRel);
        tracing::warn!(
            conn = self.conn_id,
            queued_bytes = total,
            budget = self.limits.budget,
            cap = self.limits.cap,
            stalled,
            "slow consumer: private send queue full, disconnecting"
        );
        self.cancel.cancel();
        false
    }

    /// Over budget with `total` bytes waiting, has the connection taken nothing for the stall
    /// timeout? (Under budget, the watch is reset.)
    fn stalled(&self, total: u64) -> bool {
        let mut over = self
            .progress
            .over_budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if total <= self.limits.budget {
            *over = None;
            return false;
        }
        let sent = self.progress.sent.load(Ordering::Acquire);
        let now = std::time::Instant::now();
        match *over {
            Some((seen, since)) if seen == sent => {
                now.saturating_duration_since(since) >= self.limits.stall
            }
            _ => {
                *over = Some((sent, now));
                false
            }
        }
    }

    /// Queue a private message after every broadcast so far.
    pub fn queue(&self, message: ServerMessage) -> bool {
        self.push(Outgoing::Session {
            after: self.log.end(),
            message: Box::new(message),
        })
    }

    /// Queue the welcome, whose online list the writer takes from `roster` when it sends it.
    pub(super) fn queue_welcome(&self, welcome: ServerMessage, roster: &Arc<Roster>) -> bool {
        self.push(Outgoing::Welcome {
            after: self.log.end(),
            welcome: Box::new(welcome),
            roster: roster.clone(),
        })
    }

    /// Queue the replay of room events from `pin` through `through_seq`, read from the
    /// room's recent history by the writer as it sends them.
    pub(super) fn queue_replay(&self, pin: ReplayPin, through_seq: u64) -> bool {
        self.push(Outgoing::Replay {
            after: self.log.end(),
            pin,
            through_seq,
        })
    }

    /// Send `begin` (a `file_begin`) after everything queued so far, then the chunks of `job`
    /// as the connection has nothing else to send.
    pub(super) fn queue_download(&self, begin: ServerMessage, job: DownloadJob) -> bool {
        self.push(Outgoing::Download {
            after: self.log.end(),
            begin: Box::new(begin),
            job,
        })
    }

    /// Stop the download in progress (if any) and return the generation a new one gets.
    pub(super) fn stop_download(&self) -> u64 {
        self.progress.download_gen.fetch_add(1, Ordering::AcqRel) + 1
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
        self.progress.attached.store(true, Ordering::Release);
        self.tx.try_send(Outgoing::Attach(at)).is_ok()
    }

    /// Broadcast bytes appended and not yet written, with the log ending at `end` (none
    /// before the connection receives broadcasts).
    pub(super) fn behind(&self, end: u64) -> u64 {
        if !self.progress.attached.load(Ordering::Acquire) {
            return 0;
        }
        end.saturating_sub(self.progress.written.load(Ordering::Acquire))
    }

    /// Bytes of private items queued and not yet taken by the writer.
    pub(super) fn private_queued(&self) -> u64 {
        self.progress.queued.load(Ordering::Acquire)
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
    /// Bytes of private items queued and not yet taken by the writer.
    pub queued: AtomicU64,
    /// The connection receives the room's broadcasts (it has joined).
    pub attached: AtomicBool,
    /// While private items find it over its budget: what it had taken, and since when.
    pub over_budget: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
    /// The current download generation: a [`DownloadJob`] of another one is not sent on.
    pub download_gen: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn link(limits: SendLimits) -> (MemberLink, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(1_000_000);
        let log = Arc::new(FanoutLog::new());
        (
            MemberLink::new(1, tx, log, CancellationToken::new(), limits),
            rx,
        )
    }

    fn big() -> ServerMessage {
        ServerMessage::NickRejected {
            nick: "x".repeat(10_000),
            reason: crate::text::NickError::TooLong,
        }
    }

    /// Items count in bytes whatever their kind; the connection past its cap is cut off, and
    /// what the writer takes no longer counts.
    #[test]
    fn private_bytes_count_against_the_cap_until_taken() {
        let (link, mut rx) = link(SendLimits {
            budget: 100_000,
            cap: 100_000,
            stall: Duration::MAX,
        });
        let mut queued = 0;
        while link.queue(big()) {
            queued += 1;
        }
        assert_eq!(queued, 9, "10 KiB items under a 100 000-byte cap");
        assert!(link.cancel.is_cancelled(), "cut off as a slow consumer");
        assert!(
            !link.queue(ServerMessage::Pong { broadcast_next: 0 }),
            "nothing more once cut off"
        );
        let item = rx.try_recv().unwrap();
        let before = link.private_queued();
        link.progress
            .queued
            .fetch_sub(item.queued_bytes(), Ordering::AcqRel);
        let encoded = crate::sealed::encode(&big()).unwrap().len() as u64;
        assert_eq!(before - link.private_queued(), encoded + ITEM_OVERHEAD);
    }

    /// Over its budget, a connection that takes nothing for the stall timeout is cut off.
    #[test]
    fn over_budget_and_stalled_is_cut_off() {
        let (link, _rx) = link(SendLimits {
            budget: 20_000,
            cap: u64::MAX,
            stall: Duration::from_millis(50),
        });
        assert!(link.queue(big()) && link.queue(big()) && link.queue(big()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!link.queue(ServerMessage::Pong { broadcast_next: 0 }));
        assert!(link.cancel.is_cancelled());
    }
}
