//! One connection's writer: sends the member's broadcasts (slices of the shared
//! [`FanoutLog`], never copied) and its private messages (sealed with the session key) in the
//! order [`order`](super::order) decides, up to [`WRITE_BATCH`] bytes per `writev`. A replay
//! of history is read from the room's [`RecentHistory`] a batch at a time as it goes out.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::fanout::{FanoutLog, Forgotten};
use super::link::{entry_len, DownloadJob, Outgoing, WriterProgress};
use super::order::{Private, SendOrder, Step};
use super::recent::{Forgotten as ReplayForgotten, RecentHistory, ReplayPin};
use super::roster::Roster;
use crate::cipher::CipherState;
use crate::message::{FileMissingReason, RoomEvent, ServerMessage};
use crate::sealed::{self, MAX_SESSION_PLAINTEXT};

/// Bytes of a `history` message around its events: the type number and the count (a varint
/// of at most 3 bytes, as a frame holds fewer than 2^21 events).
const HISTORY_ENVELOPE: usize = 1 + 3;

/// `events` in order, in runs whose encoding as one `history` message (exactly: each entry's
/// length prefix and bytes, plus the envelope) fits one session frame. An event too large for
/// a frame gets a run of its own.
fn runs_that_fit(items: Vec<RoomEvent>, envelope: usize) -> Vec<Vec<RoomEvent>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    let mut size = envelope;
    for item in items {
        let len = entry_len(&item);
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
/// limit.
fn history_runs(events: Vec<RoomEvent>) -> VecDeque<Vec<RoomEvent>> {
    runs_that_fit(events, HISTORY_ENVELOPE).into()
}

/// Most bytes of names in one piece of a welcome's online list (the welcome itself, then
/// `more_online` messages): what fits one frame beside the welcome's other fields.
const ONLINE_PIECE_BYTES: usize = MAX_SESSION_PLAINTEXT - 1024;

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

/// Fill in a pong's `broadcast_next` as it goes out: the counter of the next broadcast after
/// it in this connection's stream, from the writer's own place in the log (on a frame
/// boundary whenever a private message is sealed). 0 before the connection is attached.
pub(super) fn stamp_position(message: &mut ServerMessage, order: &SendOrder, log: &FanoutLog) {
    if let ServerMessage::Pong { broadcast_next } = message {
        *broadcast_next = order
            .position()
            .and_then(|at| log.counter_at(at))
            .unwrap_or(0);
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

    /// Add the broadcasts in `range` of the log (as far as the batch has room), after the
    /// ack `order` has due if there are any (an ack never lands inside a frame: a batch may
    /// end part-way through a broadcast, but never with an ack), and move `order` past them.
    /// Returns whether anything was added, and whether sealing the ack failed.
    fn add_broadcasts(
        &mut self,
        log: &FanoutLog,
        range: Range<u64>,
        send: &mut CipherState,
        order: &mut SendOrder,
    ) -> Result<(bool, bool), Forgotten> {
        let room = self.room_left();
        if room == 0 {
            return Ok((false, false));
        }
        let next = log.read(range.start, range.end, room, &mut self.slices)?;
        let mut failed = false;
        if !self.slices.is_empty() {
            if let Some(ack) = order.take_ack() {
                failed = self.seal(send, &ack);
            }
        }
        for slice in self.slices.drain(..) {
            self.len += slice.len();
            self.pieces.push(Piece::Shared(slice));
        }
        order.sent_through(next);
        Ok((next > range.start, failed))
    }

    /// Seal a private message; `true` if that failed and the connection must close.
    fn seal(&mut self, send: &mut CipherState, message: &ServerMessage) -> bool {
        let start = self.sealed.len();
        let failed = seal_or_close(send, message, &mut self.sealed);
        self.note_sealed(start);
        failed
    }

    /// Seal the `more_online` messages of a welcome's online list after the folded nickname
    /// `after` while the batch has room, read from `roster` a piece at a time as they go
    /// out, so a long list never sits whole in memory (once per member joining). Moves
    /// `after` on; `None` once the list is done. `true` if sealing failed.
    fn seal_online(
        &mut self,
        send: &mut CipherState,
        roster: &Roster,
        after: &mut Option<String>,
    ) -> bool {
        while self.room_left() > 0 {
            let Some(from) = after.as_deref() else {
                return false;
            };
            let (online, next) = roster.piece(Some(from), ONLINE_PIECE_BYTES);
            *after = next;
            if !online.is_empty() && self.seal(send, &ServerMessage::MoreOnline { online }) {
                return true;
            }
        }
        false
    }

    /// Seal `History` messages of the replay from `pin` through `through` while the batch has
    /// room, read from `recent` a piece at a time, so a long replay goes out a batch at a time
    /// (and counts as progress) and only one batch of it is ever in memory. Moves `pin` past
    /// what was sealed; `true` if the connection must close (sealing failed, or the events it
    /// needs are gone, which its pin prevents).
    fn seal_replay(
        &mut self,
        send: &mut CipherState,
        recent: &RecentHistory,
        pin: &mut ReplayPin,
        through: u64,
    ) -> bool {
        let mut failed = false;
        while self.room_left() > 0 && !failed && pin.next() <= through {
            let start = self.sealed.len();
            let events = match recent.piece(pin.next(), through, self.room_left()) {
                Ok(events) if !events.is_empty() => events,
                Ok(_) => break,
                Err(ReplayForgotten(seq)) => {
                    warn!(seq, "history to replay was forgotten meanwhile; closing");
                    failed = true;
                    break;
                }
            };
            if let Some(last) = events.last() {
                pin.advance(last.seq + 1);
            }
            for events in history_runs(events) {
                match sealed::encode(&ServerMessage::History { events }) {
                    Ok(plaintext) => {
                        failed |=
                            sealed::seal_session_bytes(send, &plaintext, &mut self.sealed).is_err();
                    }
                    Err(e) => {
                        warn!(error = %e, "could not encode history; closing");
                        failed = true;
                    }
                }
            }
            // Counted at once, so the batch stops growing when it is full.
            self.note_sealed(start);
        }
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

/// The least time a download waits for its member to take anything before the connection is
/// cut off: the client's own patience with a download (it asks again after 30 s without a
/// chunk, `docs/PROTOCOL.md` §9), so a member busy for a few seconds is never cut off for it.
pub(super) const DOWNLOAD_PATIENCE: Duration = Duration::from_secs(30);

/// How long a download waits for its member (see [`send_chunks`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct DownloadPatience {
    /// Nothing of the chunk frames being written taken for this long: a slow consumer.
    pub taken: Duration,
    /// Once the file left the room, the frames being written must be taken within this.
    pub left: Duration,
}

impl DownloadPatience {
    /// For a room whose slow-consumer stall time is `stall`.
    pub fn for_stall(stall: Duration) -> Self {
        Self {
            taken: stall.max(DOWNLOAD_PATIENCE),
            left: stall,
        }
    }
}

/// Send a member's broadcasts and private messages, in the room's order, until `Close`, a
/// write error or cancellation. A download its member does not take ends the connection as a
/// slow consumer (see [`send_chunks`] and `patience`).
// The connection's parts, each shared with a different side (room, reader, log): bundling
// them would only rename them.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_loop(
    mut socket: OwnedWriteHalf,
    mut send: CipherState,
    mut rx: mpsc::Receiver<Outgoing>,
    log: Arc<FanoutLog>,
    recent: Arc<RecentHistory>,
    progress: Arc<WriterProgress>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    patience: DownloadPatience,
) {
    let mut batch = Batch::default();
    // A replay of history being sent (where it is, and its last sequence number), a batch
    // at a time, before anything queued after it.
    let mut replay: Option<(ReplayPin, u64)> = None;
    // The rest of a welcome's online list being sent (the roster, and the folded nickname
    // it continues after), a batch at a time, before anything queued after it.
    let mut online: Option<(Arc<Roster>, Option<String>)> = None;
    // Items taken from the queue no longer count against the connection's cap.
    let taken = |item: Outgoing| {
        progress
            .queued
            .fetch_sub(item.queued_bytes(), Ordering::AcqRel);
        item
    };
    let mut order = SendOrder::default();
    let mut queue_open = true;
    let mut closing = false;
    // The file being sent, a chunk at a time whenever nothing else is due.
    let mut download: Option<DownloadJob> = None;
    let mut chunk = Vec::new();
    loop {
        batch.clear();
        loop {
            if let Some((roster, after)) = &mut online {
                closing |= batch.seal_online(&mut send, roster, after);
                if after.is_some() && !closing {
                    break;
                }
                online = None;
            }
            if let Some((pin, through)) = &mut replay {
                closing |= batch.seal_replay(&mut send, &recent, pin, *through);
                if pin.next() <= *through && !closing {
                    break;
                }
                replay = None;
            }
            if closing || batch.room_left() == 0 {
                break;
            }
            // The log's end is read before the queue: the room queues an item (a new room
            // key, a welcome) before it appends the broadcast that must follow it, so every
            // item positioned before this end is already in the queue, and the broadcasts
            // handed out never run past an item not yet taken.
            let log_end = log.end();
            if order.wants_item() && queue_open {
                match rx.try_recv() {
                    Ok(item) => order.offer(taken(item)),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => queue_open = false,
                }
            }
            match order.step(log_end) {
                Step::Broadcasts(range) => {
                    match batch.add_broadcasts(&log, range, &mut send, &mut order) {
                        Ok((moved, failed)) => {
                            closing |= failed;
                            if !moved {
                                break;
                            }
                        }
                        Err(Forgotten(_)) => order.detach(),
                    }
                }
                Step::Private(item) => {
                    if let Some(ack) = order.take_ack() {
                        closing |= batch.seal(&mut send, &ack);
                    }
                    match item {
                        Private::Message(mut message) => {
                            stamp_position(&mut message, &order, &log);
                            closing |= batch.seal(&mut send, &message)
                        }
                        Private::Replay { pin, through_seq } => replay = Some((pin, through_seq)),
                        Private::Welcome {
                            mut welcome,
                            roster,
                        } => {
                            // The list as it is when it goes out, a frame's worth at a time:
                            // the rest follows in `more_online` messages (`seal_online`).
                            // Changes meanwhile are joins and leaves whose events come after.
                            let (first, after) = roster.piece(None, ONLINE_PIECE_BYTES);
                            if let ServerMessage::Welcome { online, .. } = &mut *welcome {
                                *online = first;
                            }
                            closing |= batch.seal(&mut send, &welcome);
                            if after.is_some() {
                                online = Some((roster, after));
                            }
                        }
                        Private::Download { begin, job } => {
                            closing |= batch.seal(&mut send, &begin);
                            download = Some(job);
                        }
                        Private::Close => closing = true,
                    }
                }
                Step::Again => {}
                Step::Idle => break,
            }
        }
        if let Some(ack) = order.take_ack() {
            closing |= batch.seal(&mut send, &ack);
        }
        if batch.is_empty() {
            if closing || (!queue_open && order.wants_item()) {
                break;
            }
            // Nothing else waits: the next chunks of the file being sent, if any.
            let current = progress.download_gen.load(Ordering::Acquire);
            match download_step(&mut download, current) {
                DownloadStep::Chunks(job) => {
                    let sent = tokio::select! {
                        _ = cancel.cancelled() => return,
                        sent = send_chunks(&mut socket, job, std::mem::take(&mut chunk), &progress.sent, patience) => sent,
                    };
                    match sent {
                        Ok((job, buf)) => {
                            chunk = buf;
                            download = Some(job);
                        }
                        Err(ChunkError::Stalled) => {
                            warn!("slow consumer: a download is not being taken; disconnecting");
                            cancel.cancel();
                            break;
                        }
                        Err(ChunkError::Io(e)) => {
                            tracing::debug!(error = %e, "sending a file chunk failed; closing");
                            break;
                        }
                    }
                    continue;
                }
                // Its file left the room: the member is told, and the file is let go.
                DownloadStep::Left(file_id) => {
                    closing |= batch.seal(
                        &mut send,
                        &ServerMessage::FileMissing {
                            file_id,
                            reason: FileMissingReason::Gone,
                        },
                    );
                }
                DownloadStep::Idle => {
                    // Done, stopped or replaced: the buffer is let go too.
                    if chunk.capacity() > 0 {
                        chunk = Vec::new();
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = wake.notified(), if order.is_attached() => {
                            // Let the tasks already due run first: broadcasts they add in this
                            // scheduler round go out in this member's next write, not the one
                            // after.
                            tokio::task::yield_now().await;
                        }
                        item = rx.recv(), if order.wants_item() && queue_open => match item {
                            Some(item) => order.offer(taken(item)),
                            None => queue_open = false,
                        },
                    }
                    continue;
                }
            }
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = batch.write_to(&mut socket, &progress.sent) => result,
        };
        if let Some(at) = order.position() {
            progress.written.store(at, Ordering::Release);
        }
        if result.is_err() || closing {
            break;
        }
    }
    let _ = socket.shutdown().await;
}

/// Chunk frames read and written at once when nothing else waits (240 KiB): few enough that
/// whatever is queued meanwhile waits at most that long, enough to keep thread hand-offs and
/// system calls few per megabyte.
const CHUNKS_PER_WRITE: u64 = 4;

/// What the download in progress asks of the writer when nothing else is due.
enum DownloadStep {
    /// Send its next chunk frames.
    Chunks(DownloadJob),
    /// Its file left the room before it was all sent: say so (`file_missing: gone`).
    Left(u64),
    /// Nothing: none, done, stopped by a `file_stop` or replaced by a newer `file_get`.
    Idle,
}

/// Take the download in progress out of `download` and say what it needs, the connection's
/// download generation being `current` (the one place a job is looked at; a job sent on is
/// put back by the caller, any other is let go here with its file).
fn download_step(download: &mut Option<DownloadJob>, current: u64) -> DownloadStep {
    match download.take() {
        Some(job) if job.due(current) => DownloadStep::Chunks(job),
        Some(job) if job.generation == current && job.next < job.size => {
            DownloadStep::Left(job.file_id)
        }
        _ => DownloadStep::Idle,
    }
}

/// Why [`send_chunks`] stopped.
#[derive(Debug)]
enum ChunkError {
    /// The connection took nothing for `patience.taken`, or did not take what was being
    /// written within `patience.left` after the file left: a slow consumer.
    Stalled,
    Io(std::io::Error),
}

/// Read the next chunk frames of `job` from disk (on a blocking thread) and write them whole;
/// returns the job moved on and the buffer for the next ones. A frame cannot be left half
/// written, so the write goes on after the file left, but not for ever: nothing taken for
/// `patience.taken`, or still not written `patience.left` after the file left, is
/// [`ChunkError::Stalled`].
async fn send_chunks(
    socket: &mut OwnedWriteHalf,
    mut job: DownloadJob,
    mut buf: Vec<u8>,
    sent: &AtomicU64,
    patience: DownloadPatience,
) -> Result<(DownloadJob, Vec<u8>), ChunkError> {
    let (file, size, offset) = (job.file.clone(), job.size, job.next);
    let (read, buf_back) = tokio::task::spawn_blocking(move || {
        let read =
            super::files::file_store::read_frames(&file, size, offset, CHUNKS_PER_WRITE, &mut buf);
        (read, buf)
    })
    .await
    .map_err(|e| ChunkError::Io(std::io::Error::other(e)))?;
    buf = buf_back;
    job.next = read.map_err(ChunkError::Io)?;
    let after = |wait: Duration| tokio::time::Instant::now().checked_add(wait);
    let mut taken_by = after(patience.taken);
    let mut written_by: Option<tokio::time::Instant> = None;
    // Counted as the socket takes it: a member reading slowly is still reading.
    let mut at = 0;
    while at < buf.len() {
        let deadline = match (taken_by, written_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            n = socket.write(&buf[at..]) => {
                let n = n.map_err(ChunkError::Io)?;
                if n == 0 {
                    return Err(ChunkError::Io(std::io::ErrorKind::WriteZero.into()));
                }
                sent.fetch_add(n as u64, Ordering::Release);
                at += n;
                taken_by = after(patience.taken);
            }
            _ = job.left.cancelled(), if written_by.is_none() => written_by = after(patience.left),
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                return Err(ChunkError::Stalled);
            }
        }
    }
    Ok((job, buf))
}

#[cfg(test)]
mod tests {
    use super::super::link::{MemberLink, SendLimits};
    use super::*;
    use crate::cipher::Key;
    use crate::frame::{FrameKind, MAX_BODY};
    use crate::message::{ErrorCode, RoomEventKind};
    use crate::sealed::{BroadcastOpener, BroadcastSealer};
    use tokio::io::AsyncReadExt;
    use tokio::net::tcp::OwnedReadHalf;
    use tokio::net::{TcpListener, TcpStream};

    /// A member's writer task on a real loopback connection, not yet run.
    struct WriterUnderTest {
        client: TcpStream,
        _server_read: OwnedReadHalf,
        link: MemberLink,
        log: Arc<FanoutLog>,
        recent: Arc<RecentHistory>,
        writer: tokio::task::JoinHandle<()>,
    }

    impl WriterUnderTest {
        async fn start(session_key: &Key, queue: usize) -> Self {
            Self::start_with(session_key, queue, SendLimits::none()).await
        }

        /// With these limits, and a small kernel send buffer (64 KiB, as the server bounds
        /// it): a member that stops reading blocks the writer soon.
        async fn start_with(session_key: &Key, queue: usize, limits: SendLimits) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server_side, _) = listener.accept().await.unwrap();
            socket2::SockRef::from(&server_side)
                .set_send_buffer_size(64 * 1024)
                .unwrap();
            let (server_read, server_write) = server_side.into_split();
            let log = Arc::new(FanoutLog::new());
            let (tx, rx) = mpsc::channel(queue);
            let recent = Arc::new(RecentHistory::default());
            let link = MemberLink::new(1, tx, log.clone(), CancellationToken::new(), limits);
            let writer = tokio::spawn(write_loop(
                server_write,
                CipherState::new(session_key),
                rx,
                log.clone(),
                recent.clone(),
                link.progress.clone(),
                link.wake.clone(),
                link.cancel.clone(),
                DownloadPatience {
                    taken: link.limits.stall,
                    left: link.limits.stall,
                },
            ));
            Self {
                client,
                _server_read: server_read,
                link,
                log,
                recent,
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
            log.append(&sealer.seal(&sealed::encode(&text).unwrap()).unwrap());
            link.wake.notify_one();
            if i % 7 == 0 {
                assert!(link.queue(ServerMessage::Ack { up_to: i }));
            }
            if i % 500 == 0 {
                assert!(link.queue(ServerMessage::Pong { broadcast_next: 0 }));
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
                    ServerMessage::Pong { broadcast_next } => {
                        assert!(broadcasts > pongs * 500, "pong after its broadcast");
                        assert_eq!(broadcast_next, broadcasts, "its place in the stream");
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

    /// A stored file of `chunks` whole chunks sealed under `key` as file `file_id`.
    fn stored_file(key: &Key, file_id: u64, chunks: u64) -> (tempfile::NamedTempFile, u64) {
        use crate::files::{ChunkCipher, CHUNK_BYTES};
        let file = tempfile::NamedTempFile::new().unwrap();
        let cipher = ChunkCipher::new(key, file_id);
        let size = chunks * CHUNK_BYTES;
        for i in 0..chunks {
            let chunk = vec![i as u8; CHUNK_BYTES as usize];
            let frame = cipher.seal(i * CHUNK_BYTES, &chunk).unwrap();
            super::super::files::file_store::write_frame(
                file.as_file(),
                size,
                i * CHUNK_BYTES,
                &frame,
            )
            .unwrap();
        }
        (file, size)
    }

    /// A download goes out after its `file_begin`, its chunks read from disk only when
    /// nothing else waits (a pong queued with it goes first), each opening in its place; a
    /// newer download generation (`file_stop`, another `file_get`) stops it, and chat queued
    /// after still goes out.
    #[tokio::test]
    async fn a_download_streams_after_its_begin_behind_everything_else_and_stops_when_told() {
        use crate::files::{ChunkCipher, CHUNK_BYTES};
        let (session_key, file_key) = ([3u8; 32], [4u8; 32]);
        let WriterUnderTest {
            client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 64).await;
        let (stored, size) = stored_file(&file_key, 9, 40);
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        let generation = link.stop_download();
        assert!(link.queue_download(
            ServerMessage::FileBegin {
                file_id: 9,
                size,
                offset: CHUNK_BYTES,
                key: file_key,
            },
            crate::server::link::DownloadJob {
                file_id: 9,
                size,
                next: CHUNK_BYTES,
                file: Arc::new(stored.reopen().unwrap()),
                generation,
                left: CancellationToken::new(),
            },
        ));
        assert!(link.queue(ServerMessage::Pong { broadcast_next: 0 }));
        let mut reader = crate::conn::FrameReader::new(client);
        let mut recv = CipherState::new(&session_key);
        let next = |kind: FrameKind, body: Vec<u8>, recv: &mut CipherState| match kind {
            FrameKind::Session => format!(
                "{:?}",
                sealed::open_session::<ServerMessage>(recv, &body).unwrap()
            ),
            FrameKind::FileChunk => "chunk".into(),
            other => panic!("unexpected {other:?}"),
        };
        let mut seen = Vec::new();
        let cipher = ChunkCipher::new(&file_key, 9);
        let mut offset = CHUNK_BYTES;
        while seen.iter().filter(|s: &&String| *s == "chunk").count() < 3 {
            let (kind, body) = reader.read_frame(MAX_BODY).await.unwrap().unwrap();
            if kind == FrameKind::FileChunk {
                let chunk = cipher.open(offset, &body).unwrap();
                assert_eq!(chunk[0], (offset / CHUNK_BYTES) as u8, "in its place");
                offset += CHUNK_BYTES;
            }
            seen.push(next(kind, body, &mut recv));
        }
        assert!(seen[0].starts_with("FileBegin"), "{seen:?}");
        assert!(
            seen[1].starts_with("Pong"),
            "what waits goes first: {seen:?}"
        );
        drop(reader);
        writer.abort();

        // Stopped (a `file_stop`, or a newer `file_get`) before it went out: the begin, then
        // no chunk at all; what is queued after still goes out.
        let WriterUnderTest {
            client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 64).await;
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        let file = Arc::new(stored.reopen().unwrap());
        queue_download_of(&link, &file, size, file_key, &CancellationToken::new());
        link.stop_download();
        assert!(link.queue(ServerMessage::Ack { up_to: 1 }));
        assert!(link.close());
        let mut reader = crate::conn::FrameReader::new(client);
        let mut recv = CipherState::new(&session_key);
        let mut rest = Vec::new();
        while let Some((kind, body)) = reader.read_frame(MAX_BODY).await.unwrap() {
            rest.push(next(kind, body, &mut recv));
        }
        writer.await.unwrap();
        assert_eq!(rest.len(), 2, "{rest:?}");
        assert!(
            rest[0].starts_with("FileBegin") && rest[1].starts_with("Ack"),
            "{rest:?}"
        );
    }

    /// A download of `file` (file 9 of `size` bytes, from 0), after everything queued so far.
    fn queue_download_of(
        link: &MemberLink,
        file: &Arc<std::fs::File>,
        size: u64,
        key: Key,
        left: &CancellationToken,
    ) {
        let generation = link.stop_download();
        assert!(link.queue_download(
            ServerMessage::FileBegin {
                file_id: 9,
                size,
                offset: 0,
                key,
            },
            crate::server::link::DownloadJob {
                file_id: 9,
                size,
                next: 0,
                file: file.clone(),
                generation,
                left: left.clone(),
            },
        ));
    }

    /// The file leaves the room (its token cancelled) while a download of it goes out: the
    /// chunk frames being written are finished, then `file_missing: gone` instead of the
    /// rest, the writer has let go of the file, and what is queued after still goes out.
    #[tokio::test]
    async fn a_download_whose_file_left_ends_with_file_missing_and_lets_go_of_the_file() {
        let (session_key, file_key) = ([3u8; 32], [4u8; 32]);
        let WriterUnderTest {
            client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 64).await;
        let (stored, size) = stored_file(&file_key, 9, 40);
        let file = Arc::new(stored.reopen().unwrap());
        let left = CancellationToken::new();
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        queue_download_of(&link, &file, size, file_key, &left);
        let mut reader = crate::conn::FrameReader::new(client);
        let mut recv = CipherState::new(&session_key);
        let (mut chunks, mut seen) = (0, Vec::new());
        loop {
            let (kind, body) = reader.read_frame(MAX_BODY).await.unwrap().unwrap();
            match kind {
                FrameKind::FileChunk => {
                    chunks += 1;
                    if chunks == 1 {
                        // Queued first: whatever is queued goes before the next chunks.
                        assert!(link.queue(ServerMessage::Ack { up_to: 1 }));
                        left.cancel();
                    }
                }
                FrameKind::Session => {
                    let message: ServerMessage = sealed::open_session(&mut recv, &body).unwrap();
                    let missing = matches!(message, ServerMessage::FileMissing { .. });
                    seen.push(message);
                    if missing {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(chunks < 40, "stopped part-way: {chunks}");
        assert!(matches!(
            seen[0],
            ServerMessage::FileBegin { file_id: 9, .. }
        ));
        assert!(
            matches!(seen[1], ServerMessage::Ack { up_to: 1 }),
            "{seen:?}"
        );
        assert!(matches!(
            seen[2],
            ServerMessage::FileMissing {
                file_id: 9,
                reason: FileMissingReason::Gone
            }
        ));
        assert_eq!(Arc::strong_count(&file), 1, "the writer let go of the file");
        assert!(link.queue(ServerMessage::Pong { broadcast_next: 0 }));
        assert!(link.close());
        let mut rest = Vec::new();
        while let Some((kind, body)) = reader.read_frame(MAX_BODY).await.unwrap() {
            assert_eq!(kind, FrameKind::Session, "no chunk after file_missing");
            rest.push(sealed::open_session::<ServerMessage>(&mut recv, &body).unwrap());
        }
        writer.await.unwrap();
        assert!(matches!(rest[..], [ServerMessage::Pong { .. }]), "{rest:?}");
    }

    /// A room's slow-consumer stall time (5 s by default) is too short a wait for a download:
    /// a member busy for a few seconds is still downloading. The client's own patience (30 s)
    /// is the least; once the file left, the stall time.
    #[test]
    fn a_download_waits_at_least_the_clients_own_patience() {
        let default = DownloadPatience::for_stall(std::time::Duration::from_secs(5));
        assert_eq!(default.taken, DOWNLOAD_PATIENCE);
        assert_eq!(default.left, std::time::Duration::from_secs(5));
        let long = DownloadPatience::for_stall(std::time::Duration::from_secs(120));
        assert_eq!(long.taken, std::time::Duration::from_secs(120));
    }

    /// A member that never takes its download: after the stall time with nothing taken the
    /// connection is cut off (its token cancelled) and the writer has let go of the file —
    /// with no chat waiting that would have found it over its budget.
    #[tokio::test]
    async fn a_download_never_taken_cuts_the_connection_off_and_lets_go_of_the_file() {
        let (session_key, file_key) = ([3u8; 32], [4u8; 32]);
        let limits = SendLimits {
            stall: std::time::Duration::from_millis(200),
            ..SendLimits::none()
        };
        let WriterUnderTest {
            client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start_with(&session_key, 64, limits).await;
        let (stored, size) = stored_file(&file_key, 9, 40);
        let file = Arc::new(stored.reopen().unwrap());
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        queue_download_of(&link, &file, size, file_key, &CancellationToken::new());
        tokio::time::timeout(std::time::Duration::from_secs(60), writer)
            .await
            .expect("the writer gives up")
            .unwrap();
        assert!(link.cancel.is_cancelled(), "cut off as a slow consumer");
        assert_eq!(Arc::strong_count(&file), 1, "the writer let go of the file");
        drop(client);
    }

    /// A room key rotation in the middle of a backlog several writes long: the writer sends
    /// the `room_key` exactly before the first broadcast under it, so a member opening as the
    /// client does (switching at `from_broadcast`) opens every frame, and the pongs in
    /// between carry the counter of the broadcast that follows them.
    #[tokio::test]
    async fn writer_sends_a_new_room_key_just_before_its_first_broadcast() {
        let (session_key, keys) = ([8u8; 32], [[10u8; 32], [11u8; 32], [12u8; 32]]);
        let WriterUnderTest {
            mut client,
            link,
            log,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 4096).await;
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        let mut sealer = BroadcastSealer::new(&keys[0], 0);
        let mut switches = Vec::new();
        for i in 0..3000u64 {
            if i == 1000 || i == 2500 {
                let key = keys[if i == 1000 { 1 } else { 2 }];
                sealer = BroadcastSealer::new(&key, sealer.next_counter());
                assert!(link.queue(ServerMessage::RoomKey {
                    room_key: key,
                    from_broadcast: i,
                }));
                switches.push(i);
            }
            if i % 700 == 0 {
                assert!(link.queue(ServerMessage::Pong { broadcast_next: 0 }));
            }
            let text = format!("{i:0>100}");
            log.append(
                &sealer
                    .seal(&crate::message::encode(&text).unwrap())
                    .unwrap(),
            );
            link.wake.notify_one();
        }
        assert!(link.close());
        let (frames, sent) = frames_until_closed(&mut client, writer).await;
        assert!(sent > 4 * WRITE_BATCH, "several writes' worth");
        let mut member = crate::client::keys::BroadcastKeys::new(&keys[0], 0);
        let mut recv = CipherState::new(&session_key);
        let (mut next, mut announced, mut pongs) = (0u64, Vec::new(), Vec::new());
        for (kind, body) in frames {
            match kind {
                FrameKind::Broadcast => {
                    assert_eq!(
                        member.open::<String>(&body).unwrap(),
                        format!("{next:0>100}")
                    );
                    next += 1;
                }
                FrameKind::Session => match sealed::open_session(&mut recv, &body).unwrap() {
                    ServerMessage::RoomKey {
                        room_key,
                        from_broadcast,
                    } => {
                        assert_eq!(from_broadcast, next, "right before its first broadcast");
                        member.add(room_key, from_broadcast).unwrap();
                        announced.push(from_broadcast);
                    }
                    ServerMessage::Pong { broadcast_next } => {
                        member.check_position(broadcast_next).unwrap();
                        pongs.push(broadcast_next);
                    }
                    other => panic!("unexpected {other:?}"),
                },
                other => panic!("unexpected frame kind {other:?}"),
            }
        }
        assert_eq!(next, 3000);
        assert_eq!(announced, switches);
        assert_eq!(pongs, [0, 700, 1400, 2100, 2800]);
    }

    /// A replay of history many writes long goes out whole and in order, read from the
    /// recent history as it goes, before the broadcasts that came after it, and what it wrote
    /// counts as progress.
    #[tokio::test]
    async fn writer_sends_a_long_replay_before_later_broadcasts() {
        let (session_key, room_key) = ([3u8; 32], [4u8; 32]);
        let WriterUnderTest {
            mut client,
            link,
            log,
            recent,
            writer,
            ..
        } = WriterUnderTest::start(&session_key, 4096).await;
        link.tx.try_send(Outgoing::Attach(log.end())).unwrap();
        for seq in 1..=400 {
            recent.push(RoomEvent {
                seq,
                time_ms: 0,
                kind: RoomEventKind::Message {
                    from: "a".into(),
                    text: format!("{seq:0>4000}"),
                    msg_id: seq,
                    author: String::new(),
                },
            });
        }
        assert!(link.queue_replay(recent.pin(1), 300));
        let mut sealer = BroadcastSealer::new(&room_key, 0);
        for i in 0..50u64 {
            log.append(&sealer.seal(&sealed::encode(&i).unwrap()).unwrap());
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

    fn welcome() -> ServerMessage {
        ServerMessage::Welcome {
            nick: "ana".into(),
            epoch: "e".repeat(32),
            room_key: [0x6b; 32],
            next_broadcast: 0,
            head_seq: 0,
            online: Vec::new(),
            acked_up_to: 0,
            resync: false,
            gap: false,
            resumed: false,
            oldest_seq: 0,
            send_window: 32,
        }
    }

    /// The online lists of a welcome and the `more_online` messages after it, in the frames
    /// a writer sent (each within the frame limit).
    fn online_lists(frames: &[(FrameKind, Vec<u8>)], key: &Key) -> Vec<Vec<String>> {
        let mut recv = CipherState::new(key);
        let mut lists = Vec::new();
        for (i, (kind, body)) in frames.iter().enumerate() {
            assert_eq!(*kind, FrameKind::Session);
            assert!(body.len() <= MAX_BODY);
            match sealed::open_session(&mut recv, body).unwrap() {
                ServerMessage::Welcome { online, .. } if i == 0 => lists.push(online),
                ServerMessage::MoreOnline { online } if i > 0 => lists.push(online),
                other => panic!("unexpected frame {i}: {other:?}"),
            }
        }
        lists
    }

    fn roster_of(names: &[String]) -> Arc<Roster> {
        let roster = Arc::new(Roster::default());
        for name in names {
            roster.insert(name, name);
        }
        roster
    }

    #[tokio::test]
    async fn a_long_online_list_is_split_into_frames_that_fit() {
        let key = [6u8; 32];
        let names: Vec<String> = (0..3000)
            .map(|i| format!("{i:04}{}", "é".repeat(28)))
            .collect();
        let WriterUnderTest {
            mut client,
            link,
            writer,
            ..
        } = WriterUnderTest::start(&key, 16).await;
        assert!(link.queue_welcome(welcome(), &roster_of(&names)));
        assert!(link.close());
        let (frames, _) = frames_until_closed(&mut client, writer).await;
        let lists = online_lists(&frames, &key);
        assert!(lists.len() >= 3, "{} parts", lists.len());
        assert_eq!(lists.concat(), names);
        // A short list stays in the welcome.
        let WriterUnderTest {
            mut client,
            link,
            writer,
            ..
        } = WriterUnderTest::start(&key, 16).await;
        assert!(link.queue_welcome(welcome(), &roster_of(&["ana".into()])));
        assert!(link.close());
        let (frames, _) = frames_until_closed(&mut client, writer).await;
        assert_eq!(online_lists(&frames, &key), vec![vec!["ana".to_string()]]);
    }

    /// A member that never reads its welcome in a large room holds no copy of the whole
    /// online list: the writer reads it from the roster a piece at a time as the socket takes
    /// it, so a name that sorts last, added once the writer is stuck on a full socket, is in
    /// the list it sends (a list copied whole when the welcome went out would lack it).
    #[tokio::test]
    async fn a_long_online_list_is_read_from_the_roster_as_it_goes_out() {
        let key = [7u8; 32];
        // About 16 MiB of names: far more than loopback socket buffers hold.
        let names: Vec<String> = (0..135_000)
            .map(|i| format!("{i:07}{}", "x".repeat(120)))
            .collect();
        let roster = roster_of(&names);
        let WriterUnderTest {
            mut client,
            link,
            writer,
            ..
        } = WriterUnderTest::start(&key, 16).await;
        assert!(link.queue_welcome(welcome(), &roster));
        assert!(link.close());
        // The writer has taken the welcome (and sent its first frames) but not the whole list.
        while link.progress.sent.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        roster.insert("zzzzzzz late", "zzzzzzz late");
        let (frames, sent) = frames_until_closed(&mut client, writer).await;
        assert!(sent > 16 * 1024 * 1024, "{sent}");
        let mut all = online_lists(&frames, &key).concat();
        assert_eq!(all.pop().as_deref(), Some("zzzzzzz late"));
        assert_eq!(all, names);
    }

    #[test]
    fn history_is_split_into_frames_that_fit() {
        // Large events and many small ones (where a loose estimate would show).
        let events: Vec<RoomEvent> = (1..=640)
            .map(|seq| RoomEvent {
                seq,
                time_ms: 0,
                kind: RoomEventKind::Message {
                    from: "a".into(),
                    text: "é".repeat(if seq <= 40 { 4000 } else { 250 }),
                    msg_id: seq,
                    author: String::new(),
                },
            })
            .collect();
        let runs = history_runs(events);
        assert!(runs.len() >= 9);
        let mut seqs = Vec::new();
        let runs: Vec<Vec<RoomEvent>> = runs.into();
        for (i, events) in runs.iter().cloned().enumerate() {
            // Counted exactly: each run fits, and one more event would not have.
            if let Some(next) = runs.get(i + 1).and_then(|r| r.first()) {
                let mut more = events.clone();
                more.push(next.clone());
                let over = sealed::encode(&ServerMessage::History { events: more }).unwrap();
                assert!(
                    over.len() > MAX_SESSION_PLAINTEXT,
                    "run {i} could hold one more"
                );
            }
            let chunk = sealed::encode(&ServerMessage::History { events }).unwrap();
            assert!(chunk.len() <= MAX_SESSION_PLAINTEXT);
            let ServerMessage::History { events } = sealed::decode(&chunk).unwrap() else {
                panic!()
            };
            seqs.extend(events.into_iter().map(|e| e.seq));
        }
        assert_eq!(seqs, (1..=640).collect::<Vec<_>>());
    }
}
