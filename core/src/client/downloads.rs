//! The client's downloads (`docs/PROTOCOL.md` §13, Download): a bounded queue fetched one
//! at a time, each chunk opened under the file key only at the offset expected next, hashed as
//! it comes and written once; after the last chunk the SHA-256 decides: into place, or fetched
//! again from 0 (twice at most) and then reported corrupt — a bad file is never given its
//! name. Resumes on every connection from the first chunk not yet received. Pure: the task
//! does the file I/O the [`DownloadOut`]s ask for.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256 as Hasher};

use super::event::{ClientEvent, FileFailure, FileRequestError, SendError, TransferDirection};
use super::progress::ProgressGate;
use crate::files::{chunk_len, chunk_place, ChunkCipher, ChunkError};
use crate::message::{ClientMessage, FileMissingReason, RoomKey, Sha256};

/// Downloads waiting (besides the one in progress) per client.
pub const MAX_QUEUED_DOWNLOADS: usize = 64;
/// Files whose metadata (from `file` events) is kept, to check what is fetched.
pub const KNOWN_FILES: usize = 4096;
/// How many times a download whose SHA-256 did not match is fetched again from 0.
pub const MAX_REFETCHES: u32 = 2;
/// With no chunk for this long while connected, the download is asked for again.
pub const STALL: Duration = Duration::from_secs(30);
/// A chunk that fails to open at the same place this many times in a row (each time after
/// reconnecting and asking again) means the host's copy is damaged: the download fails as
/// corrupt instead of reconnecting for ever. Likewise a download that stalls this many times
/// in a row without a chunk fails.
pub const MAX_BAD_CHUNKS: u32 = 3;

/// Where a fetched file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchTarget {
    /// Into memory (at most `max_bytes`, else FileFailed { reason: TooLarge }):
    /// FileReceived.bytes.
    Memory { max_bytes: u64 },
    /// Into this folder, under the file's safe name, never overwriting (`name (1).ext`, …):
    /// written under a hidden temporary name of its own (random, created new, never through a
    /// link) and moved into place without replacing anything once the SHA-256 matched.
    Folder(PathBuf),
    /// To exactly this path (the user picked it in a save dialog, which asked about
    /// replacing): written under a hidden temporary name beside it, renamed once checked.
    Path(PathBuf),
}

/// What the room said about a file (its `file` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub name: String,
    pub size: u64,
    pub sha256: Sha256,
}

/// Where a checked file is moved from its temporary name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Into `dir` under `name`, or `name (1).ext`, … (never overwriting).
    Folder { dir: PathBuf, name: String },
    /// Exactly here (replacing).
    Path(PathBuf),
}

/// Something the task must do for the downloads, in order. File operations that fail are
/// reported back with [`Downloads::io_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadOut {
    Send(ClientMessage),
    Emit(ClientEvent),
    /// Create the temporary file of `file_id` at `temp`: a new file (never one already
    /// there, never through a link), after checking that its filesystem has room for `size`
    /// more bytes (and the client's free-space margin).
    Open {
        file_id: u64,
        temp: PathBuf,
        size: u64,
    },
    /// Write `data` at `offset` of the temporary file.
    Write {
        file_id: u64,
        offset: u64,
        data: Vec<u8>,
    },
    /// Empty the temporary file (the download starts over).
    Truncate {
        file_id: u64,
    },
    /// The file is whole and checked: close the temporary file, move it into `place`, then
    /// report [`ClientEvent::FileReceived`] with the path it got.
    Finish {
        file_id: u64,
        meta: FileMeta,
        temp: PathBuf,
        place: Place,
    },
    /// Close and remove the temporary file.
    Discard {
        file_id: u64,
        temp: PathBuf,
    },
}

/// Received data that breaks the download's integrity: the connection is ended and the
/// download resumes on the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadIntegrity {
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    #[error("file chunk of {got} bytes where {expected} were due")]
    Length { expected: usize, got: usize },
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Its temporary file is being created ([`DownloadOut::Open`]); the host is asked once
    /// it is ([`Downloads::opened`]), so a download that cannot start asks nothing of it.
    Opening,
    /// Not asked on this connection (offline).
    Waiting,
    /// `file_get` sent at this time; chunks before its `file_begin` are stale.
    Asked(Instant),
    /// Chunks arriving; the last at this time.
    Receiving(Instant),
}

struct Active {
    file_id: u64,
    meta: FileMeta,
    target: FetchTarget,
    temp: Option<PathBuf>,
    /// Bytes received, checked by the AEAD, hashed and written: the next offset due.
    received: u64,
    hasher: Hasher,
    memory: Option<Vec<u8>>,
    cipher: Option<ChunkCipher>,
    refetches: u32,
    /// Chunks refused in a row at `received` (reset by a good one).
    bad_chunks: u32,
    /// Stalls in a row (reset by a good chunk).
    stalls: u32,
    stage: Stage,
    progress: ProgressGate,
}

/// The metadata of the last [`KNOWN_FILES`] files seen.
#[derive(Default)]
struct KnownFiles {
    order: VecDeque<u64>,
    map: HashMap<u64, FileMeta>,
}

impl KnownFiles {
    /// A file's metadata is fixed by its first `file` event: a later event under the same id
    /// (only a faulty or hostile host sends one) changes nothing, so a fetch checked against
    /// one size (a preview's memory cap) cannot be given another.
    fn insert(&mut self, file_id: u64, meta: FileMeta) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.map.entry(file_id) {
            slot.insert(meta);
            self.order.push_back(file_id);
            while self.order.len() > KNOWN_FILES {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// The download queue; see the module documentation.
#[derive(Default)]
pub struct Downloads {
    known: KnownFiles,
    queue: VecDeque<(u64, FetchTarget)>,
    active: Option<Active>,
    online: bool,
    out: VecDeque<DownloadOut>,
}

impl Downloads {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next_out(&mut self) -> Option<DownloadOut> {
        self.out.pop_front()
    }

    /// Downloads not yet finished (queued or in progress).
    pub fn pending(&self) -> usize {
        self.queue.len() + usize::from(self.active.is_some())
    }

    /// A `file` event was seen: its file can be fetched.
    pub fn remember(&mut self, file_id: u64, meta: FileMeta) {
        self.known.insert(file_id, meta);
    }

    /// Queue fetching `file_id` into `target`.
    pub fn fetch(
        &mut self,
        file_id: u64,
        target: FetchTarget,
        now: Instant,
    ) -> Result<(), SendError> {
        let Some(meta) = self.known.map.get(&file_id).cloned() else {
            return Err(FileRequestError::UnknownFile { file_id }.into());
        };
        // The same file may be fetched into two places at once (a preview in memory, then
        // Save to a path): only the same request twice is refused.
        let busy = self
            .active
            .as_ref()
            .is_some_and(|a| a.file_id == file_id && a.target == target)
            || self
                .queue
                .iter()
                .any(|(id, queued)| *id == file_id && *queued == target);
        if busy {
            return Err(FileRequestError::AlreadyFetching { file_id }.into());
        }
        if self.queue.len() >= MAX_QUEUED_DOWNLOADS {
            return Err(FileRequestError::TooManyDownloads {
                max: MAX_QUEUED_DOWNLOADS,
            }
            .into());
        }
        if let FetchTarget::Memory { max_bytes } = target {
            if meta.size > max_bytes {
                self.emit_failed(
                    file_id,
                    &meta.name,
                    FileFailure::TooLarge,
                    format!("{} bytes, more than the {max_bytes} asked for", meta.size),
                );
                return Ok(());
            }
        }
        self.queue.push_back((file_id, target));
        self.start_next(now);
        Ok(())
    }

    /// In the room on a new connection: ask for the download in progress from the first
    /// chunk not yet received, or start the next.
    pub fn joined(&mut self, now: Instant) {
        self.online = true;
        match &mut self.active {
            // Asked for once its temporary file is there.
            Some(active) if matches!(active.stage, Stage::Opening) => {}
            Some(active) => {
                active.cipher = None;
                active.stage = Stage::Asked(now);
                let (file_id, offset) = (active.file_id, active.received);
                active.progress.force(offset, now);
                let event = progress_event(active);
                self.out.push_back(DownloadOut::Emit(event));
                self.send_get(file_id, offset);
            }
            None => self.start_next(now),
        }
    }

    /// The connection ended.
    pub fn offline(&mut self) {
        self.online = false;
        if let Some(active) = &mut self.active {
            if !matches!(active.stage, Stage::Opening) {
                active.stage = Stage::Waiting;
            }
            active.cipher = None;
        }
    }

    fn send_get(&mut self, file_id: u64, offset: u64) {
        self.out
            .push_back(DownloadOut::Send(ClientMessage::FileGet {
                file_id,
                offset,
            }));
    }

    fn start_next(&mut self, now: Instant) {
        if self.active.is_some() || !self.online {
            return;
        }
        let Some((file_id, target)) = self.queue.pop_front() else {
            return;
        };
        let Some(meta) = self.known.map.get(&file_id).cloned() else {
            return self.start_next(now);
        };
        let temp = temp_path(&target, file_id, rand::random());
        let memory = match target {
            // Never more than the cap the fetch was checked against, whatever the size says.
            FetchTarget::Memory { max_bytes } => Some(Vec::with_capacity(
                usize::try_from(meta.size.min(max_bytes)).unwrap_or(0),
            )),
            _ => None,
        };
        let opening = temp.is_some();
        let mut active = Active {
            file_id,
            meta,
            target,
            temp,
            received: 0,
            hasher: Hasher::new(),
            memory,
            cipher: None,
            refetches: 0,
            bad_chunks: 0,
            stalls: 0,
            stage: if opening {
                Stage::Opening
            } else {
                Stage::Asked(now)
            },
            progress: ProgressGate::default(),
        };
        active.progress.force(0, now);
        self.out
            .push_back(DownloadOut::Emit(progress_event(&active)));
        match &active.temp {
            Some(temp) => self.out.push_back(DownloadOut::Open {
                file_id,
                temp: temp.clone(),
                size: active.meta.size,
            }),
            None => self.send_get(file_id, 0),
        }
        self.active = Some(active);
    }

    /// The temporary file of `file_id` was created: the host is asked for the file.
    pub fn opened(&mut self, file_id: u64, now: Instant) {
        let Some(active) = self.active.as_mut().filter(|a| a.file_id == file_id) else {
            return;
        };
        if !matches!(active.stage, Stage::Opening) {
            return;
        }
        if self.online {
            active.stage = Stage::Asked(now);
            let offset = active.received;
            self.send_get(file_id, offset);
        } else {
            active.stage = Stage::Waiting;
        }
    }

    /// `file_begin`: the chunks of `file_id` from `offset` on follow under `key`.
    pub fn on_begin(&mut self, file_id: u64, size: u64, offset: u64, key: RoomKey, now: Instant) {
        let Some(active) = self.active.as_mut().filter(|a| a.file_id == file_id) else {
            return;
        };
        if !matches!(active.stage, Stage::Asked(_)) || offset != active.received {
            tracing::debug!(file_id, offset, "a file_begin not for the last file_get");
            return;
        }
        if size != active.meta.size {
            let message = format!(
                "the host holds {size} bytes for a file announced as {} bytes",
                active.meta.size
            );
            self.stop_active(FileFailure::Corrupt, message, now);
            return;
        }
        active.cipher = Some(ChunkCipher::new(&key, file_id));
        active.stage = Stage::Receiving(now);
        if active.received == active.meta.size {
            self.complete(now);
        }
    }

    /// A `FileChunk` frame's body.
    pub fn on_chunk(&mut self, body: &[u8], now: Instant) -> Result<(), DownloadIntegrity> {
        let (file_id, _) = chunk_place(body)?;
        let Some(active) = self.active.as_mut().filter(|a| a.file_id == file_id) else {
            // The rest of a download stopped or replaced on this connection.
            tracing::debug!(file_id, "dropping a chunk of a file not being fetched");
            return Ok(());
        };
        let (Stage::Receiving(_), Some(cipher)) = (active.stage, &active.cipher) else {
            tracing::debug!(file_id, "dropping a chunk sent before the last file_begin");
            return Ok(());
        };
        let offset = active.received;
        let expected = chunk_len(active.meta.size, offset);
        let opened = match cipher.open(offset, body) {
            Ok(data) if data.len() == expected => Ok(data),
            Ok(data) => Err(DownloadIntegrity::Length {
                expected,
                got: data.len(),
            }),
            Err(e) => Err(e.into()),
        };
        let data = match opened {
            Ok(data) => data,
            Err(e) => {
                active.bad_chunks += 1;
                if active.bad_chunks >= MAX_BAD_CHUNKS {
                    let message = format!(
                        "the host's copy is damaged: the chunk at {offset} failed its check {} times ({e})",
                        active.bad_chunks
                    );
                    self.fail_active(FileFailure::Corrupt, message, now);
                }
                return Err(e);
            }
        };
        active.bad_chunks = 0;
        active.stalls = 0;
        active.hasher.update(&data);
        active.received += data.len() as u64;
        active.stage = Stage::Receiving(now);
        let done = active.received;
        let size = active.meta.size;
        let report = done < size && active.progress.due(done, size, now);
        let event = report.then(|| progress_event(active));
        match &mut active.memory {
            Some(memory) => memory.extend_from_slice(&data),
            None => self.out.push_back(DownloadOut::Write {
                file_id,
                offset,
                data,
            }),
        }
        if let Some(event) = event {
            self.out.push_back(DownloadOut::Emit(event));
        }
        if done == size {
            self.complete(now);
        }
        Ok(())
    }

    /// Every byte is in: into place if the SHA-256 matches; otherwise again from 0 or failed.
    fn complete(&mut self, now: Instant) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let digest: Sha256 = std::mem::take(&mut active.hasher).finalize().into();
        if digest != active.meta.sha256 {
            if active.refetches < MAX_REFETCHES {
                active.refetches += 1;
                active.received = 0;
                active.cipher = None;
                active.stage = Stage::Asked(now);
                if let Some(memory) = &mut active.memory {
                    memory.clear();
                }
                let file_id = active.file_id;
                tracing::warn!(
                    file_id,
                    "a fetched file did not match its SHA-256: fetching it again"
                );
                if active.temp.is_some() {
                    self.out.push_back(DownloadOut::Truncate { file_id });
                }
                self.send_get(file_id, 0);
            } else {
                let message = format!(
                    "what arrived did not match the announced SHA-256, {} times",
                    MAX_REFETCHES + 1
                );
                self.fail_active(FileFailure::Corrupt, message, now);
            }
            return;
        }
        let Some(active) = self.active.take() else {
            return;
        };
        let event = ClientEvent::FileProgress {
            direction: TransferDirection::Download,
            id: active.file_id,
            name: active.meta.name.clone(),
            done: active.meta.size,
            size: active.meta.size,
        };
        self.out.push_back(DownloadOut::Emit(event));
        let sha256 = hex::encode(active.meta.sha256);
        match (active.target, active.memory, active.temp) {
            (FetchTarget::Memory { .. }, memory, _) => {
                let bytes: Arc<[u8]> = memory.unwrap_or_default().into();
                self.out
                    .push_back(DownloadOut::Emit(ClientEvent::FileReceived {
                        file_id: active.file_id,
                        name: active.meta.name,
                        size: active.meta.size,
                        sha256,
                        path: None,
                        bytes: Some(bytes),
                    }));
            }
            (FetchTarget::Folder(dir), _, Some(temp)) => {
                let name = active.meta.name.clone();
                self.out.push_back(DownloadOut::Finish {
                    file_id: active.file_id,
                    meta: active.meta,
                    temp,
                    place: Place::Folder { dir, name },
                });
            }
            (FetchTarget::Path(path), _, Some(temp)) => {
                self.out.push_back(DownloadOut::Finish {
                    file_id: active.file_id,
                    meta: active.meta,
                    temp,
                    place: Place::Path(path),
                });
            }
            (_, _, None) => {}
        }
        self.start_next(now);
    }

    /// `file_missing`.
    pub fn on_missing(&mut self, file_id: u64, reason: FileMissingReason, now: Instant) {
        if self.active.as_ref().is_none_or(|a| a.file_id != file_id) {
            return;
        }
        let message = match reason {
            FileMissingReason::Unknown => "the host has no such file",
            FileMissingReason::Gone | FileMissingReason::Other => {
                "the host no longer keeps this file"
            }
        };
        self.fail_active(FileFailure::Gone, message.into(), now);
    }

    /// Stop fetching `file_id` (in progress and queued, into every target); a partial file is
    /// removed. Returns whether anything was fetching it.
    pub fn cancel(&mut self, file_id: u64, now: Instant) -> bool {
        let mut cancelled = false;
        while let Some(at) = self.queue.iter().position(|(id, _)| *id == file_id) {
            self.queue.remove(at);
            self.emit_failed_known(file_id, FileFailure::Cancelled, "cancelled".into());
            cancelled = true;
        }
        if self.active.as_ref().is_some_and(|a| a.file_id == file_id) {
            self.stop_active(FileFailure::Cancelled, "cancelled".into(), now);
            cancelled = true;
        }
        cancelled
    }

    /// The files being fetched or waiting to be, in order, each once.
    pub fn file_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.active.iter().map(|a| a.file_id).collect();
        for (id, _) in &self.queue {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids
    }

    /// The client stops: the temporary file of the download in progress, to remove.
    pub fn abandon(&mut self) -> Option<PathBuf> {
        self.queue.clear();
        self.active
            .take()
            .filter(|a| !matches!(a.stage, Stage::Opening))
            .and_then(|a| a.temp)
    }

    /// A file operation for `file_id` failed (`message` says how, `reason` what it means for
    /// the user: [`FileFailure::Io`], or [`FileFailure::LocalSpace`]): the download fails.
    pub fn io_failed(&mut self, file_id: u64, reason: FileFailure, message: String, now: Instant) {
        if self.active.as_ref().is_some_and(|a| a.file_id == file_id) {
            self.stop_active(reason, message, now);
        } else {
            // Moving a checked file into place failed: it was already taken off the queue.
            self.emit_failed_known(file_id, reason, message);
        }
    }

    /// Time passes: a download that got nothing for [`STALL`] is asked for again.
    pub fn tick(&mut self, now: Instant) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let since = match active.stage {
            Stage::Waiting | Stage::Opening => return,
            Stage::Asked(at) | Stage::Receiving(at) => at,
        };
        if now.saturating_duration_since(since) >= STALL {
            active.stalls += 1;
            if active.stalls >= MAX_BAD_CHUNKS {
                let message = format!(
                    "the host stopped sending this file ({} stalls)",
                    active.stalls
                );
                self.fail_active(FileFailure::Gone, message, now);
                return;
            }
            tracing::info!(file_id = active.file_id, "a download stalled: asking again");
            active.cipher = None;
            active.stage = Stage::Asked(now);
            let (file_id, offset) = (active.file_id, active.received);
            self.send_get(file_id, offset);
        }
    }

    /// The download in progress ends without its file: the host is told to stop sending it
    /// (when connected), then as [`Self::fail_active`].
    fn stop_active(&mut self, reason: FileFailure, message: String, now: Instant) {
        let asked = self
            .active
            .as_ref()
            .filter(|a| !matches!(a.stage, Stage::Opening))
            .map(|a| a.file_id);
        if let Some(file_id) = asked {
            if self.online {
                self.out
                    .push_back(DownloadOut::Send(ClientMessage::FileStop { file_id }));
            }
        }
        self.fail_active(reason, message, now);
    }

    /// The download in progress ends without its file: its partial file is removed, the
    /// failure reported, and the next download starts.
    fn fail_active(&mut self, reason: FileFailure, message: String, now: Instant) {
        if let Some(active) = self.active.take() {
            // Not created (yet, or at all: whatever is at that name is not ours to remove).
            let created = !matches!(active.stage, Stage::Opening);
            if let Some(temp) = active.temp.filter(|_| created) {
                self.out.push_back(DownloadOut::Discard {
                    file_id: active.file_id,
                    temp,
                });
            }
            self.emit_failed(active.file_id, &active.meta.name, reason, message);
        }
        self.start_next(now);
    }

    /// Report a failure of `file_id`, named as its `file` event named it.
    fn emit_failed_known(&mut self, file_id: u64, reason: FileFailure, message: String) {
        let name = self
            .known
            .map
            .get(&file_id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        self.emit_failed(file_id, &name, reason, message);
    }

    fn emit_failed(&mut self, file_id: u64, name: &str, reason: FileFailure, message: String) {
        self.out
            .push_back(DownloadOut::Emit(ClientEvent::FileFailed {
                direction: TransferDirection::Download,
                id: file_id,
                name: name.to_string(),
                reason,
                message,
            }));
    }
}

fn progress_event(active: &Active) -> ClientEvent {
    ClientEvent::FileProgress {
        direction: TransferDirection::Download,
        id: active.file_id,
        name: active.meta.name.clone(),
        done: active.received,
        size: active.meta.size,
    }
}

/// The hidden temporary file a download into `target` is written to (`None` in memory).
/// `nonce` (random) makes its name unguessable and different for every download, so two
/// clients fetching one file into one folder never share it, and nobody can plant something
/// at it beforehand (it is created new anyway, never through a link).
pub fn temp_path(target: &FetchTarget, file_id: u64, nonce: u64) -> Option<PathBuf> {
    let temp_name = format!(".tertulia-{file_id:016x}-{nonce:016x}.part");
    match target {
        FetchTarget::Memory { .. } => None,
        FetchTarget::Folder(dir) => Some(dir.join(temp_name)),
        FetchTarget::Path(path) => Some(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(temp_name),
        ),
    }
}

/// The `n`th name tried for `name` in a folder: `name`, then `stem (1).ext`, `stem (2).ext`, …
/// (The stem is cut, on a character boundary, so the name stays within
/// [`MAX_NAME_BYTES`](crate::files::MAX_NAME_BYTES).)
pub fn numbered_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let suffix = format!(" ({n})");
    let room = crate::files::MAX_NAME_BYTES.saturating_sub(suffix.len() + ext.len());
    let mut end = stem.len().min(room);
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}{ext}", &stem[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::CHUNK_BYTES;

    const KEY: RoomKey = [5; 32];
    const FILE: u64 = 0xabc;

    fn drain(d: &mut Downloads) -> Vec<DownloadOut> {
        std::iter::from_fn(|| d.next_out()).collect()
    }

    fn sent(outs: &[DownloadOut]) -> Vec<ClientMessage> {
        outs.iter()
            .filter_map(|o| match o {
                DownloadOut::Send(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn failures(outs: &[DownloadOut]) -> Vec<FileFailure> {
        outs.iter()
            .filter_map(|o| match o {
                DownloadOut::Emit(ClientEvent::FileFailed { reason, .. }) => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn written(outs: &[DownloadOut]) -> Vec<u64> {
        outs.iter()
            .filter_map(|o| match o {
                DownloadOut::Write { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect()
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn frames(content: &[u8]) -> Vec<Vec<u8>> {
        let cipher = ChunkCipher::new(&KEY, FILE);
        content
            .chunks(CHUNK_BYTES as usize)
            .enumerate()
            .map(|(i, c)| cipher.seal(i as u64 * CHUNK_BYTES, c).unwrap()[5..].to_vec())
            .collect()
    }

    fn downloads(content: &[u8], sha: Sha256, target: FetchTarget) -> Downloads {
        let mut d = Downloads::new();
        d.joined(Instant::now());
        d.remember(
            FILE,
            FileMeta {
                name: "photo.png".into(),
                size: content.len() as u64,
                sha256: sha,
            },
        );
        d.fetch(FILE, target, Instant::now()).unwrap();
        // As the task does once the temporary file is created.
        d.opened(FILE, Instant::now());
        d
    }

    fn sha(content: &[u8]) -> Sha256 {
        Hasher::digest(content).into()
    }

    fn folder() -> FetchTarget {
        FetchTarget::Folder("/dl".into())
    }

    #[test]
    fn a_whole_checked_file_is_written_in_order_then_put_in_place() {
        let data = content(2 * CHUNK_BYTES as usize + 10);
        let mut d = downloads(&data, sha(&data), folder());
        let outs = drain(&mut d);
        assert!(outs
            .iter()
            .any(|o| matches!(o, DownloadOut::Open { temp, .. } if temp.starts_with("/dl"))));
        assert_eq!(
            sent(&outs),
            vec![ClientMessage::FileGet {
                file_id: FILE,
                offset: 0
            }]
        );
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        for frame in frames(&data) {
            d.on_chunk(&frame, Instant::now()).unwrap();
        }
        let outs = drain(&mut d);
        assert_eq!(written(&outs), vec![0, CHUNK_BYTES, 2 * CHUNK_BYTES]);
        assert!(matches!(
            outs.last(),
            Some(DownloadOut::Finish { place: Place::Folder { name, .. }, .. }) if name == "photo.png"
        ));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_reconnect_resumes_at_the_first_chunk_not_received_and_nothing_is_written_twice() {
        let data = content(3 * CHUNK_BYTES as usize);
        let mut d = downloads(&data, sha(&data), folder());
        let frames = frames(&data);
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        d.on_chunk(&frames[0], Instant::now()).unwrap();
        d.offline();
        drain(&mut d);
        d.joined(Instant::now());
        assert_eq!(
            sent(&drain(&mut d)),
            vec![ClientMessage::FileGet {
                file_id: FILE,
                offset: CHUNK_BYTES
            }]
        );
        // A chunk before the new file_begin is stale: dropped.
        d.on_chunk(&frames[1], Instant::now()).unwrap();
        assert!(written(&drain(&mut d)).is_empty());
        d.on_begin(FILE, data.len() as u64, CHUNK_BYTES, KEY, Instant::now());
        // The chunk already received, sent again, is out of place.
        assert!(d.on_chunk(&frames[0], Instant::now()).is_err());
        d.on_chunk(&frames[1], Instant::now()).unwrap();
        d.on_chunk(&frames[2], Instant::now()).unwrap();
        let outs = drain(&mut d);
        assert_eq!(written(&outs), vec![CHUNK_BYTES, 2 * CHUNK_BYTES]);
        assert!(matches!(outs.last(), Some(DownloadOut::Finish { .. })));
    }

    #[test]
    fn out_of_place_and_forged_chunks_are_integrity_failures() {
        let data = content(2 * CHUNK_BYTES as usize);
        let mut d = downloads(&data, sha(&data), folder());
        let frames = frames(&data);
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        assert!(matches!(
            d.on_chunk(&frames[1], Instant::now()),
            Err(DownloadIntegrity::Chunk(ChunkError::OutOfPlace { .. }))
        ));
        let mut forged = frames[0].clone();
        forged[40] ^= 1;
        assert!(d.on_chunk(&forged, Instant::now()).is_err());
        // A chunk of another file (a stopped download's rest) is dropped quietly.
        let other = ChunkCipher::new(&KEY, FILE + 1).seal(0, b"x").unwrap();
        d.on_chunk(&other[5..], Instant::now()).unwrap();
        d.on_chunk(&frames[0], Instant::now()).unwrap();
        assert_eq!(written(&drain(&mut d)), vec![0]);
    }

    #[test]
    fn a_chunk_that_keeps_failing_at_one_place_fails_the_download_as_corrupt() {
        let data = content(2 * CHUNK_BYTES as usize);
        let mut d = downloads(&data, sha(&data), folder());
        let frames = frames(&data);
        let mut damaged = frames[1].clone();
        damaged[100] ^= 1;
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        d.on_chunk(&frames[0], Instant::now()).unwrap();
        for attempt in 1..=MAX_BAD_CHUNKS {
            assert!(d.on_chunk(&damaged, Instant::now()).is_err());
            let outs = drain(&mut d);
            if attempt < MAX_BAD_CHUNKS {
                assert!(failures(&outs).is_empty(), "attempt {attempt}");
                d.offline();
                d.joined(Instant::now());
                d.on_begin(FILE, data.len() as u64, CHUNK_BYTES, KEY, Instant::now());
            } else {
                assert_eq!(failures(&outs), vec![FileFailure::Corrupt]);
                assert!(outs
                    .iter()
                    .any(|o| matches!(o, DownloadOut::Discard { .. })));
            }
        }
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_sha_mismatch_fetches_again_from_zero_twice_then_fails_and_discards() {
        let data = content(CHUNK_BYTES as usize + 1);
        let mut d = downloads(&data, [0; 32], folder());
        drain(&mut d);
        for _ in 0..MAX_REFETCHES {
            d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
            for frame in frames(&data) {
                d.on_chunk(&frame, Instant::now()).unwrap();
            }
            let outs = drain(&mut d);
            assert!(outs.contains(&DownloadOut::Truncate { file_id: FILE }));
            assert_eq!(
                sent(&outs),
                vec![ClientMessage::FileGet {
                    file_id: FILE,
                    offset: 0
                }]
            );
            assert!(!outs.iter().any(|o| matches!(o, DownloadOut::Finish { .. })));
        }
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        for frame in frames(&data) {
            d.on_chunk(&frame, Instant::now()).unwrap();
        }
        let outs = drain(&mut d);
        assert_eq!(failures(&outs), vec![FileFailure::Corrupt]);
        assert!(outs
            .iter()
            .any(|o| matches!(o, DownloadOut::Discard { .. })));
        assert!(!outs.iter().any(|o| matches!(o, DownloadOut::Finish { .. })));
    }

    #[test]
    fn memory_fetches_are_bounded_and_missing_files_fail_gone() {
        let data = content(100);
        let mut d = downloads(&data, sha(&data), FetchTarget::Memory { max_bytes: 100 });
        d.on_begin(FILE, 100, 0, KEY, Instant::now());
        for frame in frames(&data) {
            d.on_chunk(&frame, Instant::now()).unwrap();
        }
        let outs = drain(&mut d);
        assert!(outs.iter().any(|o| matches!(o,
            DownloadOut::Emit(ClientEvent::FileReceived { bytes: Some(b), .. }) if b[..] == data[..])));
        d.fetch(FILE, FetchTarget::Memory { max_bytes: 99 }, Instant::now())
            .unwrap();
        assert_eq!(failures(&drain(&mut d)), vec![FileFailure::TooLarge]);
        d.fetch(FILE, folder(), Instant::now()).unwrap();
        d.on_missing(FILE, FileMissingReason::Gone, Instant::now());
        assert_eq!(failures(&drain(&mut d)), vec![FileFailure::Gone]);
        assert!(
            d.fetch(FILE + 9, folder(), Instant::now()).is_err(),
            "unknown file"
        );
    }

    /// A host that announces a known file id again with another size (the review's probe:
    /// 2^63 bytes behind a preview checked against 1 KiB) changes nothing: no huge
    /// allocation, no panic, and the fetch gets the first announcement's bytes.
    #[test]
    fn a_file_announced_again_under_its_id_keeps_its_first_size() {
        let data = content(10);
        let mut d = downloads(&data, sha(&data), folder());
        d.fetch(
            FILE,
            FetchTarget::Memory { max_bytes: 1024 },
            Instant::now(),
        )
        .unwrap();
        d.remember(
            FILE,
            FileMeta {
                name: "photo.png".into(),
                size: 1 << 63,
                sha256: sha(&data),
            },
        );
        for _ in 0..2 {
            d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
            for frame in frames(&data) {
                d.on_chunk(&frame, Instant::now()).unwrap();
            }
            d.opened(FILE, Instant::now());
        }
        let outs = drain(&mut d);
        assert!(failures(&outs).is_empty(), "{:?}", failures(&outs));
        assert!(outs.iter().any(|o| matches!(o,
            DownloadOut::Emit(ClientEvent::FileReceived { bytes: Some(b), .. }) if b[..] == data[..])));
    }

    #[test]
    fn a_stalled_download_is_asked_for_again_and_cancelling_discards() {
        let data = content(CHUNK_BYTES as usize * 2);
        let t0 = Instant::now();
        let mut d = downloads(&data, sha(&data), folder());
        drain(&mut d);
        d.on_begin(FILE, data.len() as u64, 0, KEY, t0);
        d.on_chunk(&frames(&data)[0], t0).unwrap();
        drain(&mut d);
        d.tick(t0 + STALL / 2);
        assert!(drain(&mut d).is_empty());
        d.tick(t0 + STALL);
        assert_eq!(
            sent(&drain(&mut d)),
            vec![ClientMessage::FileGet {
                file_id: FILE,
                offset: CHUNK_BYTES
            }]
        );
        d.cancel(FILE, t0);
        let outs = drain(&mut d);
        assert_eq!(sent(&outs), vec![ClientMessage::FileStop { file_id: FILE }]);
        assert!(outs
            .iter()
            .any(|o| matches!(o, DownloadOut::Discard { .. })));
        assert_eq!(failures(&outs), vec![FileFailure::Cancelled]);
    }

    #[test]
    fn a_file_previewed_in_memory_can_be_saved_at_once_after_it() {
        let data = content(CHUNK_BYTES as usize + 5);
        let mut d = downloads(
            &data,
            sha(&data),
            FetchTarget::Memory { max_bytes: 1 << 20 },
        );
        drain(&mut d);
        let save = FetchTarget::Path("/home/ana/photo.png".into());
        d.fetch(FILE, save.clone(), Instant::now())
            .expect("Save while the preview is on its way is queued behind it");
        assert!(matches!(
            d.fetch(FILE, save.clone(), Instant::now()),
            Err(SendError::File(FileRequestError::AlreadyFetching { .. }))
        ));
        assert_eq!(d.pending(), 2);
        assert_eq!(d.file_ids(), vec![FILE]);
        for _ in 0..2 {
            d.opened(FILE, Instant::now());
            d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
            for frame in frames(&data) {
                d.on_chunk(&frame, Instant::now()).unwrap();
            }
        }
        let outs = drain(&mut d);
        assert!(outs.iter().any(|o| matches!(o,
            DownloadOut::Emit(ClientEvent::FileReceived { bytes: Some(b), .. }) if b[..] == data[..])));
        assert!(outs.iter().any(|o| matches!(o,
            DownloadOut::Open { temp, size, .. } if temp.parent() == Some(Path::new("/home/ana")) && *size == data.len() as u64)));
        assert!(outs.iter().any(|o| matches!(o,
            DownloadOut::Finish { place: Place::Path(p), .. } if p == Path::new("/home/ana/photo.png"))));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_host_is_asked_only_once_the_temporary_file_is_there() {
        let mut d = Downloads::new();
        d.joined(Instant::now());
        let meta = FileMeta {
            name: "a.bin".into(),
            size: 10,
            sha256: [0; 32],
        };
        d.remember(FILE, meta.clone());
        d.remember(FILE + 1, meta);
        d.fetch(FILE, folder(), Instant::now()).unwrap();
        d.fetch(FILE + 1, folder(), Instant::now()).unwrap();
        let outs = drain(&mut d);
        assert!(outs.iter().any(|o| matches!(o, DownloadOut::Open { .. })));
        assert!(
            sent(&outs).is_empty(),
            "nothing asked before the file exists"
        );
        // It could not be created (no space, say): it fails, and the host heard nothing.
        d.io_failed(FILE, FileFailure::LocalSpace, "full".into(), Instant::now());
        let outs = drain(&mut d);
        assert_eq!(failures(&outs), vec![FileFailure::LocalSpace]);
        assert!(sent(&outs).is_empty(), "{outs:?}");
        assert!(
            !outs
                .iter()
                .any(|o| matches!(o, DownloadOut::Discard { .. })),
            "what is at a name it could not create is not its to remove"
        );
        // The next one opens, and only then asks.
        assert!(
            matches!(outs.last(), Some(DownloadOut::Open { file_id, .. }) if *file_id == FILE + 1)
        );
        d.opened(FILE + 1, Instant::now());
        assert_eq!(
            sent(&drain(&mut d)),
            vec![ClientMessage::FileGet {
                file_id: FILE + 1,
                offset: 0
            }]
        );
    }

    #[test]
    fn cancelling_a_file_stops_every_fetch_of_it() {
        let data = content(10);
        let mut d = downloads(&data, sha(&data), FetchTarget::Memory { max_bytes: 100 });
        d.fetch(FILE, folder(), Instant::now()).unwrap();
        drain(&mut d);
        assert!(d.cancel(FILE, Instant::now()));
        let outs = drain(&mut d);
        assert_eq!(
            failures(&outs),
            vec![FileFailure::Cancelled, FileFailure::Cancelled]
        );
        assert_eq!(sent(&outs), vec![ClientMessage::FileStop { file_id: FILE }]);
        assert_eq!(d.pending(), 0);
        assert!(!d.cancel(FILE, Instant::now()), "nothing left to cancel");
    }

    #[test]
    fn temporary_names_are_unguessable_and_never_shared() {
        let (a, b) = (
            temp_path(&folder(), FILE, rand::random()),
            temp_path(&folder(), FILE, rand::random()),
        );
        assert_ne!(a, b, "two downloads of one file into one folder");
        let a = a.unwrap();
        let name = a.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with(".tertulia-") && name.ends_with(".part"),
            "{name}"
        );
        assert_ne!(name, format!(".tertulia-{FILE:016x}.part"));
        let mut d = downloads(&content(1), [0; 32], folder());
        let mut e = downloads(&content(1), [0; 32], folder());
        let open = |d: &mut Downloads| {
            drain(d).into_iter().find_map(|o| match o {
                DownloadOut::Open { temp, .. } => Some(temp),
                _ => None,
            })
        };
        assert_ne!(open(&mut d), open(&mut e));
    }

    #[test]
    fn nothing_beyond_the_announced_size_is_taken() {
        let data = content(CHUNK_BYTES as usize + 10);
        let mut longer = data.clone();
        longer.extend_from_slice(&[7; 100]);
        let mut d = downloads(&data, sha(&data), folder());
        drain(&mut d);
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        let frames_longer = frames(&longer);
        d.on_chunk(&frames_longer[0], Instant::now()).unwrap();
        assert!(matches!(
            d.on_chunk(&frames_longer[1], Instant::now()),
            Err(DownloadIntegrity::Length {
                expected: 10,
                got: 110
            })
        ));
        assert_eq!(
            written(&drain(&mut d)),
            vec![0],
            "the long chunk is not written"
        );
        // A host that claims another size for the file is refused before anything is taken.
        let mut d = downloads(&data, sha(&data), folder());
        drain(&mut d);
        d.on_begin(FILE, longer.len() as u64, 0, KEY, Instant::now());
        let outs = drain(&mut d);
        assert_eq!(failures(&outs), vec![FileFailure::Corrupt]);
        assert!(sent(&outs).contains(&ClientMessage::FileStop { file_id: FILE }));
        // And after the last byte, more chunks are not taken either.
        let mut d = downloads(&data, sha(&data), folder());
        d.on_begin(FILE, data.len() as u64, 0, KEY, Instant::now());
        for frame in frames(&data) {
            d.on_chunk(&frame, Instant::now()).unwrap();
        }
        drain(&mut d);
        let extra = ChunkCipher::new(&KEY, FILE)
            .seal(2 * CHUNK_BYTES, &[1; 10])
            .unwrap();
        d.on_chunk(&extra[5..], Instant::now()).unwrap();
        assert!(written(&drain(&mut d)).is_empty());
    }

    #[test]
    fn the_known_files_are_bounded_and_names_are_numbered() {
        let mut d = Downloads::new();
        for id in 0..(KNOWN_FILES as u64 + 10) {
            d.remember(
                id,
                FileMeta {
                    name: "x".into(),
                    size: 1,
                    sha256: [0; 32],
                },
            );
        }
        assert_eq!(d.known.map.len(), KNOWN_FILES);
        assert!(d.fetch(0, folder(), Instant::now()).is_err(), "forgotten");
        assert_eq!(numbered_name("a.png", 0), "a.png");
        assert_eq!(numbered_name("a.png", 1), "a (1).png");
        assert_eq!(numbered_name("a.tar.gz", 2), "a.tar (2).gz");
        assert_eq!(numbered_name("README", 3), "README (3)");
        assert_eq!(numbered_name(".env", 1), ".env (1)");
        let long = format!("{}.png", "é".repeat(125));
        let numbered = numbered_name(&long, 12);
        assert!(numbered.len() <= crate::files::MAX_NAME_BYTES);
        assert!(numbered.ends_with("é (12).png"), "{numbered}");
    }
}
