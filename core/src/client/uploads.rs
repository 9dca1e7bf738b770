//! The client's uploads (`docs/PROTOCOL.md` §13, Upload): a bounded queue sent one at a time
//! in order, each offered again on every connection and continued at the host's `have`,
//! never more than `window` chunks beyond it. Pure: the task hashes and reads the sources
//! ([`UploadOut::Prepare`], [`Uploads::next_chunk`]) and sends what this asks for.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::event::{ClientEvent, FileFailure, FileRequestError, SendError, TransferDirection};
use super::progress::ProgressGate;
use crate::files::{chunk_len, is_chunk_offset, CHUNK_BYTES};
use crate::message::{ClientMessage, FileRefusal, Sha256};

/// Uploads queued (the one in progress included) per client.
pub const MAX_QUEUED_UPLOADS: usize = 32;
/// Bytes of in-memory uploads ([`ClientHandle::send_file_bytes`](super::ClientHandle::send_file_bytes)) held at once.
pub const MAX_MEMORY_UPLOAD_BYTES: u64 = 256 << 20;
/// How many times an upload the host found corrupt (the file changed while it was sent) starts
/// over from 0 before it is reported as [`FileFailure::Corrupt`].
pub const MAX_UPLOAD_RESTARTS: u32 = 2;
/// The protocol's largest `window` (§13).
pub const MAX_UPLOAD_WINDOW: u32 = 64;
/// Own files remembered from the room (`upload_id` → `file_id`, `seq`), to name the file of a
/// re-offer answered "already in the room".
const OWN_FILES_KEPT: usize = 64;

/// Where an upload's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadSource {
    Path(PathBuf),
    Memory(Arc<[u8]>),
}

/// What hashing a source found: what the offer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub size: u64,
    pub sha256: Sha256,
    pub mime: String,
}

/// A chunk the task is to read from the source and send as `file_chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDue {
    pub upload_id: u64,
    pub offset: u64,
    pub len: usize,
    pub size: u64,
    pub source: UploadSource,
}

/// Something the task must do for the uploads, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOut {
    /// Send this on the current connection.
    Send(ClientMessage),
    Emit(ClientEvent),
    /// Compute the size, SHA-256 and MIME hint of this source off the async thread, then call
    /// [`Uploads::prepared`].
    Prepare {
        upload_id: u64,
        name: String,
        source: UploadSource,
    },
    /// The source of this upload will not be read again (close it).
    Release {
        upload_id: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for its turn.
    Queued,
    /// Its source is being hashed.
    Hashing,
    /// Hashed; offered as soon as the client is in the room.
    Ready,
    /// Offered on this connection, waiting for the answer.
    Offered,
    /// Accepted: the host holds `have` bytes, chunks up to `next` are sent, `window` chunks
    /// may be in flight beyond `have`.
    Sending { have: u64, next: u64, window: u64 },
}

#[derive(Debug)]
struct Upload {
    id: u64,
    name: String,
    source: UploadSource,
    prepared: Option<Prepared>,
    stage: Stage,
    restarts: u32,
    progress: ProgressGate,
}

impl Upload {
    fn memory_bytes(&self) -> u64 {
        match &self.source {
            UploadSource::Memory(bytes) => bytes.len() as u64,
            UploadSource::Path(_) => 0,
        }
    }
}

/// A protocol violation by the host in an upload answer: the connection is ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UploadProtocolError(pub String);

/// The upload queue; see the module documentation.
#[derive(Debug)]
pub struct Uploads {
    items: VecDeque<Upload>,
    last_id: u64,
    memory_bytes: u64,
    /// In the room on a connection.
    online: bool,
    out: VecDeque<UploadOut>,
    own_files: VecDeque<(u64, u64, u64)>,
}

impl Default for Uploads {
    fn default() -> Self {
        Self::new()
    }
}

impl Uploads {
    pub fn new() -> Self {
        Self {
            items: VecDeque::new(),
            last_id: 0,
            memory_bytes: 0,
            online: false,
            out: VecDeque::new(),
            own_files: VecDeque::new(),
        }
    }

    /// The next thing to do, oldest first.
    pub fn next_out(&mut self) -> Option<UploadOut> {
        self.out.pop_front()
    }

    /// Uploads not yet finished (queued or in progress).
    pub fn pending(&self) -> usize {
        self.items.len()
    }

    /// Queue an upload of `source` under `name` (a file name, no path); returns its id.
    pub fn queue(&mut self, name: String, source: UploadSource) -> Result<u64, SendError> {
        if self.items.len() >= MAX_QUEUED_UPLOADS {
            return Err(FileRequestError::TooManyUploads {
                max: MAX_QUEUED_UPLOADS,
            }
            .into());
        }
        let upload = Upload {
            id: self.last_id + 1,
            name,
            source,
            prepared: None,
            stage: Stage::Queued,
            restarts: 0,
            progress: ProgressGate::default(),
        };
        let bytes = upload.memory_bytes();
        if self.memory_bytes + bytes > MAX_MEMORY_UPLOAD_BYTES {
            return Err(FileRequestError::MemoryFull {
                max_mib: MAX_MEMORY_UPLOAD_BYTES >> 20,
            }
            .into());
        }
        self.last_id = upload.id;
        self.memory_bytes += bytes;
        self.items.push_back(upload);
        self.advance();
        Ok(self.last_id)
    }

    /// The source of `upload_id` was hashed (or could not be read: `Err` says why).
    pub fn prepared(&mut self, upload_id: u64, result: Result<Prepared, String>) {
        let Some(head) = self.items.front_mut() else {
            return;
        };
        if head.id != upload_id || head.stage != Stage::Hashing {
            return; // cancelled meanwhile
        }
        match result {
            Ok(prepared) => {
                head.prepared = Some(prepared);
                head.stage = Stage::Ready;
                self.advance();
            }
            Err(message) => self.fail_head(FileFailure::Io, message),
        }
    }

    /// In the room on a new connection: offer the upload in progress again.
    pub fn joined(&mut self) {
        self.online = true;
        self.back_to_ready();
        self.advance();
    }

    /// The connection ended.
    pub fn offline(&mut self) {
        self.online = false;
        self.back_to_ready();
    }

    fn back_to_ready(&mut self) {
        if let Some(head) = self.items.front_mut() {
            if matches!(head.stage, Stage::Offered | Stage::Sending { .. }) {
                head.stage = Stage::Ready;
            }
        }
    }

    /// Start the next upload's hashing, or offer the hashed one.
    fn advance(&mut self) {
        let online = self.online;
        let Some(head) = self.items.front_mut() else {
            return;
        };
        match head.stage {
            Stage::Queued => {
                head.stage = Stage::Hashing;
                self.out.push_back(UploadOut::Prepare {
                    upload_id: head.id,
                    name: head.name.clone(),
                    source: head.source.clone(),
                });
            }
            Stage::Ready if online => {
                if let Some(p) = &head.prepared {
                    head.stage = Stage::Offered;
                    self.out
                        .push_back(UploadOut::Send(ClientMessage::FileOffer {
                            upload_id: head.id,
                            name: head.name.clone(),
                            size: p.size,
                            mime: p.mime.clone(),
                            sha256: p.sha256,
                        }));
                }
            }
            _ => {}
        }
    }

    /// Is a chunk due now (accepted, window open)?
    pub fn chunk_ready(&self) -> bool {
        self.online && self.peek_chunk().is_some()
    }

    fn peek_chunk(&self) -> Option<(u64, usize)> {
        let head = self.items.front()?;
        let Stage::Sending { have, next, window } = head.stage else {
            return None;
        };
        let size = head.prepared.as_ref()?.size;
        let within_window = next < have.saturating_add(window.saturating_mul(CHUNK_BYTES));
        (next < size && within_window).then(|| (next, chunk_len(size, next)))
    }

    /// The next chunk to send, if the window allows: counted as sent.
    pub fn next_chunk(&mut self) -> Option<ChunkDue> {
        if !self.online {
            return None;
        }
        let (offset, len) = self.peek_chunk()?;
        let head = self.items.front_mut()?;
        let size = head.prepared.as_ref()?.size;
        if let Stage::Sending { next, .. } = &mut head.stage {
            *next = offset + len as u64;
        }
        Some(ChunkDue {
            upload_id: head.id,
            offset,
            len,
            size,
            source: head.source.clone(),
        })
    }

    /// A chunk of `upload_id` could not be read. `changed`: the source is no longer what was
    /// hashed (shorter, say): started over like a corrupt upload; otherwise it fails.
    pub fn read_failed(&mut self, upload_id: u64, message: String, changed: bool) {
        if self.items.front().is_none_or(|h| h.id != upload_id) {
            return;
        }
        if changed {
            self.restart_or_fail(message);
        } else {
            if self.online {
                self.out
                    .push_back(UploadOut::Send(ClientMessage::FileCancel { upload_id }));
            }
            self.fail_head(FileFailure::Io, message);
        }
    }

    fn head_mut(&mut self, upload_id: u64) -> Option<&mut Upload> {
        self.items.front_mut().filter(|h| h.id == upload_id)
    }

    /// `file_accepted`.
    pub fn on_accepted(
        &mut self,
        upload_id: u64,
        have: u64,
        window: u32,
        now: Instant,
    ) -> Result<(), UploadProtocolError> {
        let Some(head) = self.head_mut(upload_id) else {
            tracing::debug!(upload_id, "file_accepted for an upload not offered");
            return Ok(());
        };
        if head.stage != Stage::Offered {
            return Ok(());
        }
        let Some(size) = head.prepared.as_ref().map(|p| p.size) else {
            return Ok(());
        };
        if have > size || !(is_chunk_offset(size, have) || have == size) {
            return Err(UploadProtocolError(format!(
                "the server accepted upload {upload_id} at {have}, not a chunk's place in {size} bytes"
            )));
        }
        let window = u64::from(window.clamp(1, MAX_UPLOAD_WINDOW));
        head.stage = Stage::Sending {
            have,
            next: have,
            window,
        };
        head.progress.force(have, now);
        let event = progress_event(head, have, size);
        self.out.push_back(UploadOut::Emit(event));
        Ok(())
    }

    /// `file_stored`: the host holds `have` bytes.
    pub fn on_stored(&mut self, upload_id: u64, stored: u64, now: Instant) {
        let Some(head) = self.head_mut(upload_id) else {
            return;
        };
        let Some(size) = head.prepared.as_ref().map(|p| p.size) else {
            return;
        };
        let Stage::Sending { have, next, .. } = &mut head.stage else {
            return;
        };
        // Never beyond what was sent: more would open the window past the file.
        let stored = stored.min(*next);
        if stored <= *have {
            return;
        }
        *have = stored;
        if stored < size && head.progress.due(stored, size, now) {
            let event = progress_event(head, stored, size);
            self.out.push_back(UploadOut::Emit(event));
        }
    }

    /// `file_done`: the upload is in the room (`file_id` 0: it already was).
    pub fn on_done(&mut self, upload_id: u64, file_id: u64, seq: u64) {
        let Some(head) = self.head_mut(upload_id) else {
            return;
        };
        if !matches!(head.stage, Stage::Offered | Stage::Sending { .. }) {
            return;
        }
        let (file_id, seq) = if file_id == 0 {
            self.own_files
                .iter()
                .find(|(u, _, _)| *u == upload_id)
                .map(|&(_, f, s)| (f, s))
                .unwrap_or((0, 0))
        } else {
            (file_id, seq)
        };
        if let Some(done) = self.remove_head() {
            if let Some(size) = done.prepared.as_ref().map(|p| p.size) {
                let event = progress_event(&done, size, size);
                self.out.push_back(UploadOut::Emit(event));
            }
        }
        self.out.push_back(UploadOut::Emit(ClientEvent::FileSent {
            upload_id,
            file_id,
            seq,
        }));
        self.advance();
    }

    /// `file_refused`.
    pub fn on_refused(&mut self, upload_id: u64, reason: FileRefusal, message: String) {
        if self.head_mut(upload_id).is_none() {
            return;
        }
        let (failure, text) = match reason {
            FileRefusal::Corrupt => {
                self.restart_or_fail(message);
                return;
            }
            FileRefusal::TooLarge => (
                FileFailure::TooLarge,
                "the host does not take files this large",
            ),
            FileRefusal::NoSpace => (FileFailure::NoSpace, "the host has no room for this file"),
            FileRefusal::Busy => (
                FileFailure::Busy,
                "the host holds too many unfinished uploads from here",
            ),
            FileRefusal::Disabled => (FileFailure::Disabled, "the host does not take files"),
            FileRefusal::BadOffer | FileRefusal::Other => {
                (FileFailure::Refused, "the host refused the file")
            }
        };
        let message = if message.is_empty() {
            text.to_string()
        } else {
            format!("{text}: {message}")
        };
        self.fail_head(failure, message);
    }

    /// The head was found corrupt (the file changed while it was sent): hash it again and start
    /// over from 0 (a new SHA-256 makes the host drop what it holds), at most
    /// [`MAX_UPLOAD_RESTARTS`] times.
    fn restart_or_fail(&mut self, message: String) {
        let Some(head) = self.items.front_mut() else {
            return;
        };
        if head.restarts >= MAX_UPLOAD_RESTARTS {
            let message = format!(
                "the file kept changing while it was sent ({message}); gave up after {} tries",
                MAX_UPLOAD_RESTARTS + 1
            );
            self.fail_head(FileFailure::Corrupt, message);
            return;
        }
        head.restarts += 1;
        head.prepared = None;
        head.stage = Stage::Queued;
        let upload_id = head.id;
        self.out.push_back(UploadOut::Release { upload_id });
        self.advance();
    }

    /// Stop `upload_id` (queued or in progress).
    /// The uploads queued or in progress, in order.
    pub fn upload_ids(&self) -> Vec<u64> {
        self.items.iter().map(|u| u.id).collect()
    }

    pub fn cancel(&mut self, upload_id: u64) {
        let Some(at) = self.items.iter().position(|u| u.id == upload_id) else {
            return;
        };
        if at == 0 {
            if self.online
                && self
                    .items
                    .front()
                    .is_some_and(|h| matches!(h.stage, Stage::Offered | Stage::Sending { .. }))
            {
                self.out
                    .push_back(UploadOut::Send(ClientMessage::FileCancel { upload_id }));
            }
            self.fail_head(FileFailure::Cancelled, "cancelled".into());
        } else if let Some(upload) = self.items.remove(at) {
            self.memory_bytes -= upload.memory_bytes();
            self.out.push_back(UploadOut::Emit(ClientEvent::FileFailed {
                direction: TransferDirection::Upload,
                id: upload_id,
                name: upload.name,
                reason: FileFailure::Cancelled,
                message: "cancelled".into(),
            }));
        }
    }

    /// One of our files is in the room (seen as an own `file` event).
    pub fn own_file_seen(&mut self, upload_id: u64, file_id: u64, seq: u64) {
        if self.own_files.len() >= OWN_FILES_KEPT {
            self.own_files.pop_front();
        }
        self.own_files.push_back((upload_id, file_id, seq));
    }

    fn remove_head(&mut self) -> Option<Upload> {
        let head = self.items.pop_front()?;
        self.memory_bytes -= head.memory_bytes();
        self.out
            .push_back(UploadOut::Release { upload_id: head.id });
        Some(head)
    }

    fn fail_head(&mut self, reason: FileFailure, message: String) {
        if let Some(head) = self.remove_head() {
            self.out.push_back(UploadOut::Emit(ClientEvent::FileFailed {
                direction: TransferDirection::Upload,
                id: head.id,
                name: head.name,
                reason,
                message,
            }));
        }
        self.advance();
    }
}

fn progress_event(upload: &Upload, done: u64, size: u64) -> ClientEvent {
    ClientEvent::FileProgress {
        direction: TransferDirection::Upload,
        id: upload.id,
        name: upload.name.clone(),
        done,
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(u: &mut Uploads) -> Vec<UploadOut> {
        std::iter::from_fn(|| u.next_out()).collect()
    }

    fn sent(outs: &[UploadOut]) -> Vec<ClientMessage> {
        outs.iter()
            .filter_map(|o| match o {
                UploadOut::Send(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn events(outs: &[UploadOut]) -> Vec<ClientEvent> {
        outs.iter()
            .filter_map(|o| match o {
                UploadOut::Emit(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn prepared(size: u64, sha: u8) -> Prepared {
        Prepared {
            size,
            sha256: [sha; 32],
            mime: "application/octet-stream".into(),
        }
    }

    fn memory(len: usize) -> UploadSource {
        UploadSource::Memory(vec![1u8; len].into())
    }

    /// Queue an upload of `size` bytes, hash it and get it accepted at `have`.
    fn accepted(u: &mut Uploads, size: u64, have: u64, window: u32) -> u64 {
        let id = u.queue("a.bin".into(), memory(0)).unwrap();
        u.prepared(id, Ok(prepared(size, 1)));
        u.joined();
        drain(u);
        u.on_accepted(id, have, window, Instant::now()).unwrap();
        id
    }

    fn chunk_offsets(u: &mut Uploads) -> Vec<u64> {
        std::iter::from_fn(|| u.next_chunk())
            .map(|c| c.offset)
            .collect()
    }

    #[test]
    fn an_upload_is_hashed_then_offered_once_in_the_room() {
        let mut u = Uploads::new();
        let id = u.queue("a.bin".into(), memory(3)).unwrap();
        assert_eq!(id, 1);
        let outs = drain(&mut u);
        assert!(matches!(
            outs[..],
            [UploadOut::Prepare { upload_id: 1, .. }]
        ));
        u.prepared(1, Ok(prepared(3, 9)));
        assert!(sent(&drain(&mut u)).is_empty(), "not offered while offline");
        u.joined();
        assert_eq!(
            sent(&drain(&mut u)),
            vec![ClientMessage::FileOffer {
                upload_id: 1,
                name: "a.bin".into(),
                size: 3,
                mime: "application/octet-stream".into(),
                sha256: [9; 32],
            }]
        );
        // A second one waits for the first: not even hashed yet.
        assert_eq!(u.queue("b".into(), memory(1)).unwrap(), 2);
        assert!(drain(&mut u).is_empty());
    }

    #[test]
    fn the_window_bounds_chunks_beyond_the_last_have() {
        let mut u = Uploads::new();
        let size = 10 * CHUNK_BYTES + 7;
        let id = accepted(&mut u, size, 0, 3);
        assert_eq!(chunk_offsets(&mut u), vec![0, CHUNK_BYTES, 2 * CHUNK_BYTES]);
        assert!(!u.chunk_ready());
        u.on_stored(id, CHUNK_BYTES, Instant::now());
        assert_eq!(chunk_offsets(&mut u), vec![3 * CHUNK_BYTES]);
        // A have beyond what was sent opens nothing past it.
        u.on_stored(id, 9 * CHUNK_BYTES, Instant::now());
        assert_eq!(chunk_offsets(&mut u).len(), 3);
        u.on_stored(id, 10 * CHUNK_BYTES, Instant::now());
        assert_eq!(
            chunk_offsets(&mut u),
            vec![7 * CHUNK_BYTES, 8 * CHUNK_BYTES, 9 * CHUNK_BYTES],
            "the have counted is at most what was sent"
        );
        u.on_stored(id, 10 * CHUNK_BYTES, Instant::now());
        let last = u.next_chunk().unwrap();
        assert_eq!((last.offset, last.len), (10 * CHUNK_BYTES, 7));
        assert!(u.next_chunk().is_none(), "nothing past the end");
    }

    #[test]
    fn a_reconnect_offers_again_and_resumes_at_have() {
        let mut u = Uploads::new();
        let id = accepted(&mut u, 6 * CHUNK_BYTES, 0, 64);
        assert_eq!(chunk_offsets(&mut u).len(), 6);
        u.offline();
        assert!(u.next_chunk().is_none());
        u.joined();
        assert!(matches!(
            sent(&drain(&mut u))[..],
            [ClientMessage::FileOffer { upload_id: 1, .. }]
        ));
        u.on_accepted(id, 4 * CHUNK_BYTES, 64, Instant::now())
            .unwrap();
        let outs = drain(&mut u);
        assert!(matches!(
            events(&outs)[..],
            [ClientEvent::FileProgress { done, .. }] if done == 4 * CHUNK_BYTES
        ));
        assert_eq!(
            chunk_offsets(&mut u),
            vec![4 * CHUNK_BYTES, 5 * CHUNK_BYTES]
        );
        // An accept at no chunk's place is the host breaking the protocol.
        u.offline();
        u.joined();
        drain(&mut u);
        assert!(u.on_accepted(id, 5, 64, Instant::now()).is_err());
    }

    #[test]
    fn a_re_offer_answered_done_is_done_with_the_file_seen_in_the_room() {
        let mut u = Uploads::new();
        let id = accepted(&mut u, 2 * CHUNK_BYTES, 0, 64);
        chunk_offsets(&mut u);
        u.own_file_seen(id, 77, 12);
        u.offline();
        u.joined();
        drain(&mut u);
        u.on_done(id, 0, 0);
        let outs = drain(&mut u);
        assert!(events(&outs).contains(&ClientEvent::FileSent {
            upload_id: id,
            file_id: 77,
            seq: 12
        }));
        assert_eq!(u.pending(), 0);
        // A late duplicate changes nothing.
        u.on_done(id, 77, 12);
        assert!(drain(&mut u).is_empty());
    }

    #[test]
    fn corrupt_restarts_from_zero_twice_then_fails() {
        let mut u = Uploads::new();
        let id = accepted(&mut u, CHUNK_BYTES, 0, 64);
        for restart in 1..=MAX_UPLOAD_RESTARTS {
            u.on_refused(id, FileRefusal::Corrupt, "sha".into());
            let outs = drain(&mut u);
            assert!(
                outs.iter()
                    .any(|o| matches!(o, UploadOut::Prepare { upload_id, .. } if *upload_id == id)),
                "restart {restart} hashes again"
            );
            u.prepared(id, Ok(prepared(CHUNK_BYTES, restart as u8 + 1)));
            assert!(matches!(
                sent(&drain(&mut u))[..],
                [ClientMessage::FileOffer { sha256, .. }] if sha256 == [restart as u8 + 1; 32]
            ));
            u.on_accepted(id, 0, 64, Instant::now()).unwrap();
            assert_eq!(chunk_offsets(&mut u), vec![0], "from 0 again");
        }
        drain(&mut u);
        u.on_refused(id, FileRefusal::Corrupt, "sha".into());
        let outs = drain(&mut u);
        assert!(matches!(
            events(&outs)[..],
            [ClientEvent::FileFailed {
                reason: FileFailure::Corrupt,
                ..
            }]
        ));
        assert_eq!(u.pending(), 0);
    }

    #[test]
    fn refusals_fail_with_their_reason_and_the_next_upload_starts() {
        let mut u = Uploads::new();
        let id = accepted(&mut u, 5, 0, 64);
        u.queue("next".into(), memory(1)).unwrap();
        drain(&mut u);
        u.on_refused(id, FileRefusal::TooLarge, "limit 100 MiB".into());
        let outs = drain(&mut u);
        assert!(matches!(
            &events(&outs)[..],
            [ClientEvent::FileFailed { reason: FileFailure::TooLarge, message, .. }]
                if message.contains("100 MiB")
        ));
        assert!(outs
            .iter()
            .any(|o| matches!(o, UploadOut::Prepare { upload_id: 2, .. })));
    }

    #[test]
    fn queues_are_bounded_in_items_and_memory_bytes() {
        let mut u = Uploads::new();
        for _ in 0..MAX_QUEUED_UPLOADS {
            u.queue("x".into(), memory(0)).unwrap();
        }
        assert!(matches!(
            u.queue("x".into(), memory(0)),
            Err(SendError::File(_))
        ));
        let mut u = Uploads::new();
        let big = UploadSource::Memory(vec![0u8; (MAX_MEMORY_UPLOAD_BYTES / 2) as usize].into());
        u.queue("a".into(), big.clone()).unwrap();
        u.queue("b".into(), big.clone()).unwrap();
        assert!(u.queue("c".into(), memory(1)).is_err());
        u.cancel(2);
        u.queue("c".into(), memory(1)).unwrap();
    }

    #[test]
    fn cancelling_tells_the_host_only_for_an_offered_upload() {
        let mut u = Uploads::new();
        let id = accepted(&mut u, 5, 0, 64);
        let queued = u.queue("q".into(), memory(1)).unwrap();
        drain(&mut u);
        u.cancel(queued);
        let outs = drain(&mut u);
        assert!(sent(&outs).is_empty());
        assert!(matches!(
            events(&outs)[..],
            [ClientEvent::FileFailed {
                reason: FileFailure::Cancelled,
                id: 2,
                ..
            }]
        ));
        u.cancel(id);
        assert_eq!(
            sent(&drain(&mut u)),
            vec![ClientMessage::FileCancel { upload_id: id }]
        );
        assert_eq!(u.pending(), 0);
    }
}
