//! The host side of file sharing (`docs/PROTOCOL.md` §13): the files a room keeps, the
//! uploads under way, and the limits on both.
//!
//! - [`layout`]: where each chunk's frame sits in a stored file, and the verdict on an
//!   upload's next chunk (pure);
//! - [`quota`]: which files give way for an offer (pure);
//! - [`slot`]: an unfinished upload's write side, shared by the connections that take it up;
//! - [`file_store`]: the files directory (blocking I/O).
//!
//! [`FileHost`] is the shared state behind its own lock (never the room's; lock order: room,
//! then files, then the database). Its methods that touch the disk or the database are
//! blocking and run on blocking threads; the room only asks it cheap questions under its lock.
//! Files live in `DATA_DIR/files/` as their sealed frames, not in SQLite: serving a chunk is a
//! plain positioned read, large writes never churn the WAL, and the quota is kept by size.

pub mod file_store;
pub mod layout;
pub mod quota;
pub mod slot;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::RngCore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::store::{FileRecord, Store, StoreError, StoredFiles, UploadRecord};
use crate::cipher::Key;
use crate::message::{FileRefusal, Sha256};
use file_store::FileDir;
use layout::{have_from_len, stored_len};
use slot::UploadSlot;

/// The host's limits on files; see `docs/PROTOCOL.md` (Limits) for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Largest file, in bytes; 0: the host takes no files (`file_refused: disabled`).
    pub max_file_bytes: u64,
    /// All files kept together, unfinished uploads included (by their offered size).
    pub max_total_bytes: u64,
    /// Unfinished uploads one client id may hold.
    pub unfinished_per_client: usize,
    /// Unfinished uploads one IPv4 address or IPv6 /64 may hold.
    pub unfinished_per_source: usize,
    /// An unfinished upload is deleted this long after its last chunk.
    pub unfinished_ttl: Duration,
    /// Chunks a client may send beyond the last `have` it was told.
    pub window: u32,
}

/// Default [`FileLimits::max_file_bytes`]: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// Default [`FileLimits::max_total_bytes`]: 2 GiB.
pub const DEFAULT_MAX_FILES_BYTES: u64 = 2048 * 1024 * 1024;
/// Default [`FileLimits::unfinished_ttl`]: 1 hour.
pub const DEFAULT_UNFINISHED_TTL: Duration = Duration::from_secs(3600);

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_total_bytes: DEFAULT_MAX_FILES_BYTES,
            unfinished_per_client: 2,
            unfinished_per_source: 8,
            unfinished_ttl: DEFAULT_UNFINISHED_TTL,
            window: 16,
        }
    }
}

impl FileLimits {
    /// Does the host take files at all?
    pub fn enabled(&self) -> bool {
        self.max_file_bytes > 0
    }
}

/// Most ids of files no longer kept that are remembered, to answer `gone` rather than
/// `unknown` for them.
const MAX_GONE: usize = 65_536;

/// Most unfinished uploads the host holds in all (each is a database row and a file): past
/// it an offer is `busy`, whatever its client and address.
const MAX_UNFINISHED: usize = 1024;

/// Most client ids whose highest upload id is kept in memory (as for messages); the least
/// recently updated is forgotten first.
const MAX_HIGHEST: usize = super::dedupe::MAX_DEDUPE_CLIENTS;

/// What a file counts against the quota: its content, and at least a disk block, so a flood
/// of empty files is bounded by the quota too.
pub fn charge(size: u64) -> u64 {
    size.max(4096)
}

/// A finished file the room keeps.
#[derive(Debug, Clone)]
struct Kept {
    seq: u64,
    size: u64,
    key: Key,
}

/// An upload the host holds part of (or none yet).
#[derive(Debug, Clone)]
struct Unfinished {
    file_id: u64,
    key: Key,
    name: String,
    size: u64,
    mime: String,
    sha256: Sha256,
    source: String,
    /// The last chunk (or the offer).
    touched: Instant,
    /// Which connection stores its chunks, and how much is stored (shared by every
    /// connection that takes it up).
    slot: Arc<UploadSlot>,
}

#[derive(Debug, Default)]
struct State {
    kept: HashMap<u64, Kept>,
    /// Kept files by their event's sequence number: the oldest give way first.
    by_seq: BTreeMap<u64, u64>,
    /// Content bytes of the kept files.
    kept_bytes: u64,
    uploads: HashMap<(String, u64), Unfinished>,
    /// Offered bytes of the unfinished uploads.
    unfinished_bytes: u64,
    /// Highest upload id in the room per client id, and when it was last updated (a
    /// counter), to forget the least recently updated beyond [`MAX_HIGHEST`].
    highest: HashMap<String, (u64, u64)>,
    highest_clock: u64,
    gone: HashSet<u64>,
    gone_order: VecDeque<u64>,
    /// Cancelled when a kept file leaves, so its downloads stop (one per file being sent).
    left: HashMap<u64, CancellationToken>,
    /// Stored files to delete (off every lock, by [`FileHost::empty_trash`]).
    trash: Vec<PathBuf>,
}

impl State {
    fn record_highest(&mut self, client: &str, upload_id: u64) {
        self.highest_clock += 1;
        let clock = self.highest_clock;
        let entry = self.highest.entry(client.to_string()).or_insert((0, clock));
        *entry = (entry.0.max(upload_id), clock);
        if self.highest.len() > MAX_HIGHEST {
            let oldest = self
                .highest
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(c, _)| c.clone());
            if let Some(oldest) = oldest {
                self.highest.remove(&oldest);
            }
        }
    }

    fn forget_kept(&mut self, file_id: u64, dir: &FileDir) {
        if let Some(kept) = self.kept.remove(&file_id) {
            self.by_seq.remove(&kept.seq);
            self.kept_bytes -= charge(kept.size);
            self.trash.push(dir.file_path(file_id));
            if let Some(left) = self.left.remove(&file_id) {
                left.cancel();
            }
            self.gone.insert(file_id);
            self.gone_order.push_back(file_id);
            while self.gone_order.len() > MAX_GONE {
                if let Some(old) = self.gone_order.pop_front() {
                    self.gone.remove(&old);
                }
            }
        }
    }

    fn forget_upload(&mut self, client: &str, upload_id: u64, dir: &FileDir) -> Option<Unfinished> {
        let upload = self.uploads.remove(&(client.to_string(), upload_id))?;
        upload.slot.close();
        self.unfinished_bytes -= charge(upload.size);
        self.trash.push(dir.file_path(upload.file_id));
        Some(upload)
    }

    fn id_in_use(&self, id: u64) -> bool {
        id == 0
            || self.kept.contains_key(&id)
            || self.gone.contains(&id)
            || self.uploads.values().any(|u| u.file_id == id)
    }
}

/// An offer, as the handler passes it on.
#[derive(Debug, Clone)]
pub struct Offer {
    pub upload_id: u64,
    /// The name as sent (made safe here).
    pub name: String,
    pub size: u64,
    pub mime: String,
    pub sha256: Sha256,
}

/// The upload a connection is sending: what it needs to store chunks without asking.
#[derive(Debug)]
pub struct ActiveUpload {
    pub upload_id: u64,
    pub file_id: u64,
    pub key: Key,
    pub size: u64,
    pub sha256: Sha256,
    pub name: String,
    pub mime: String,
    /// Content bytes stored, as this connection last stored or was told them.
    pub have: u64,
    /// The last `have` told the client.
    pub told: u64,
    pub file: Arc<File>,
    /// Where chunks are stored, if this connection still owns the upload, and the SHA-256 of
    /// what is stored (see [`slot`]).
    pub slot: Arc<UploadSlot>,
}

/// The answer to an offer.
#[derive(Debug)]
pub enum OfferOutcome {
    /// At or below the client's highest upload id in the room: already there.
    AlreadyInRoom,
    Refused(FileRefusal, String),
    Accepted(Box<ActiveUpload>),
}

/// A file to send, as `file_get` finds it.
#[derive(Debug)]
pub enum Lookup {
    /// `left` is cancelled when the file leaves the room: its downloads stop.
    Kept {
        size: u64,
        key: Key,
        path: PathBuf,
        left: CancellationToken,
    },
    Gone,
    Unknown,
}

/// Why the host could not set up its files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("cannot use the files directory: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The room's files: see the module documentation.
pub struct FileHost {
    limits: FileLimits,
    dir: FileDir,
    store: Option<Arc<Mutex<Store>>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for FileHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHost")
            .field("dir", &self.dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn random_key() -> Key {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

impl FileHost {
    /// The files of a stored room (`store` and `data_dir`) or, without them, of an in-memory
    /// room (a private temporary directory). Files on disk the database does not know
    /// (orphans of a crash) are removed; uploads resume from the whole frames they hold.
    /// Blocking.
    pub fn open(
        limits: FileLimits,
        data_dir: Option<&std::path::Path>,
        store: Option<Arc<Mutex<Store>>>,
    ) -> Result<Self, FilesError> {
        let dir = match data_dir {
            Some(dir) => FileDir::open(dir)?,
            None => FileDir::temporary()?,
        };
        let stored = match &store {
            Some(store) => store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .load_files()?,
            None => StoredFiles::default(),
        };
        let host = Self {
            limits,
            dir,
            store,
            state: Mutex::new(State::default()),
        };
        host.restore(stored)?;
        Ok(host)
    }

    pub fn limits(&self) -> &FileLimits {
        &self.limits
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_store(&self, f: impl FnOnce(&mut Store) -> Result<(), StoreError>) {
        if let Some(store) = &self.store {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = f(&mut store) {
                warn!(error = %e, "could not update the room's file records");
            }
        }
    }

    fn restore(&self, stored: StoredFiles) -> Result<(), FilesError> {
        let mut state = self.state();
        let now = Instant::now();
        let mut lost = Vec::new();
        for (seq, record) in stored.finished {
            let path = self.dir.file_path(record.file_id);
            if file_store::stored_len_of(&path) != stored_len(record.size) {
                lost.push(record.file_id);
                continue;
            }
            state.kept_bytes += charge(record.size);
            state.by_seq.insert(seq, record.file_id);
            state.kept.insert(
                record.file_id,
                Kept {
                    seq,
                    size: record.size,
                    key: record.key,
                },
            );
        }
        let mut expired = Vec::new();
        for upload in stored.uploads {
            let path = self.dir.file_path(upload.file.file_id);
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if age >= self.limits.unfinished_ttl {
                expired.push((upload.client_id, upload.upload_id, path));
                continue;
            }
            let (have, _) = have_from_len(upload.file.size, file_store::stored_len_of(&path));
            state.unfinished_bytes += charge(upload.file.size);
            state.uploads.insert(
                (upload.client_id, upload.upload_id),
                Unfinished {
                    file_id: upload.file.file_id,
                    key: upload.file.key,
                    name: upload.name,
                    size: upload.file.size,
                    mime: upload.mime,
                    sha256: upload.sha256,
                    source: upload.source,
                    touched: now.checked_sub(age).unwrap_or(now),
                    slot: Arc::new(UploadSlot::new(have)),
                },
            );
        }
        for file_id in stored.gone {
            state.gone.insert(file_id);
            state.gone_order.push_back(file_id);
        }
        for (client, highest) in stored.highest {
            state.record_highest(&client, highest);
        }
        drop(state);
        for file_id in &lost {
            warn!(
                file_id = format!("{file_id:016x}"),
                "a kept file is missing or damaged on disk; its event stays, the file is gone"
            );
            self.with_store(|s| s.file_gone(*file_id));
            self.state().gone.insert(*file_id);
        }
        for (client, upload_id, path) in &expired {
            self.with_store(|s| s.delete_upload(client, *upload_id));
            file_store::remove(path);
        }
        // Orphans: files the database does not know (a crash between writing and recording).
        let (ids, other) = self.dir.list()?;
        let state = self.state();
        let known: HashSet<u64> = state
            .kept
            .keys()
            .copied()
            .chain(state.uploads.values().map(|u| u.file_id))
            .collect();
        drop(state);
        let mut orphans = 0;
        for id in ids.into_iter().filter(|id| !known.contains(id)) {
            file_store::remove(&self.dir.file_path(id));
            orphans += 1;
        }
        for path in other {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() || m.is_symlink()) {
                file_store::remove(&path);
                orphans += 1;
            }
        }
        let state = self.state();
        info!(
            files = state.kept.len(),
            unfinished = state.uploads.len(),
            orphans_removed = orphans,
            dir = %self.dir.path().display(),
            "room files ready"
        );
        Ok(())
    }

    /// The highest upload id of `client` in the room (0: none).
    pub fn highest_done(&self, client: &str) -> u64 {
        self.state().highest.get(client).map_or(0, |(h, _)| *h)
    }

    /// Answer an offer from `client` (at `source`) on connection `conn`. Blocking (it may
    /// write the database and open the stored file).
    pub fn offer(&self, client: &str, source: &str, conn: u64, offer: Offer) -> OfferOutcome {
        let limits = self.limits;
        if offer.upload_id == 0 {
            return OfferOutcome::Refused(FileRefusal::BadOffer, "upload id 0".into());
        }
        if !limits.enabled() {
            return OfferOutcome::Refused(
                FileRefusal::Disabled,
                "this host does not take files".into(),
            );
        }
        if offer.size > limits.max_file_bytes {
            return OfferOutcome::Refused(
                FileRefusal::TooLarge,
                format!(
                    "files up to {} are taken here",
                    human_size(limits.max_file_bytes)
                ),
            );
        }
        let mut state = self.state();
        if state
            .highest
            .get(client)
            .is_some_and(|&(h, _)| offer.upload_id <= h)
        {
            return OfferOutcome::AlreadyInRoom;
        }
        let key = (client.to_string(), offer.upload_id);
        if let Some(upload) = state.uploads.get_mut(&key) {
            if upload.size == offer.size && upload.sha256 == offer.sha256 {
                upload.touched = Instant::now();
                let upload = upload.clone();
                drop(state);
                let path = self.dir.file_path(upload.file_id);
                // Taken over (from an earlier connection of this client, live or not): `have`
                // read and the file cut to it under the upload's lock, so no chunk of the
                // connection it was active on lands in between.
                let (have, opened) = upload.slot.take_over(conn, |have| {
                    self.dir.ensure().and_then(|()| {
                        file_store::open_for_upload(&path, have_to_stored(upload.size, have))
                    })
                });
                return match opened {
                    Ok(file) => OfferOutcome::Accepted(Box::new(ActiveUpload {
                        upload_id: offer.upload_id,
                        file_id: upload.file_id,
                        key: upload.key,
                        size: upload.size,
                        sha256: upload.sha256,
                        name: upload.name,
                        mime: upload.mime,
                        have,
                        told: have,
                        file: Arc::new(file),
                        slot: upload.slot,
                    })),
                    Err(e) => {
                        warn!(error = %e, "could not reopen an unfinished upload");
                        OfferOutcome::Refused(
                            FileRefusal::NoSpace,
                            "the host could not store it".into(),
                        )
                    }
                };
            }
            // Another file under the same id: what is held of it goes, and it starts again.
            state.forget_upload(client, offer.upload_id, &self.dir);
            self.with_store(|s| s.delete_upload(client, offer.upload_id));
        }
        let by_client = state.uploads.keys().filter(|(c, _)| c == client).count();
        let by_source = state
            .uploads
            .values()
            .filter(|u| u.source == source)
            .count();
        if by_client >= limits.unfinished_per_client
            || by_source >= limits.unfinished_per_source
            || state.uploads.len() >= MAX_UNFINISHED
        {
            return OfferOutcome::Refused(
                FileRefusal::Busy,
                "too many unfinished uploads; finish or cancel one first".into(),
            );
        }
        let usage = quota::Usage {
            finished: state.kept_bytes,
            unfinished: state.unfinished_bytes,
            quota: limits.max_total_bytes,
        };
        let oldest: Vec<(u64, u64)> = state
            .by_seq
            .values()
            .filter_map(|id| state.kept.get(id).map(|k| (*id, charge(k.size))))
            .collect();
        let give_way = match quota::make_room(usage, charge(offer.size), oldest) {
            Ok(ids) => ids,
            Err(quota::NoSpace) => {
                return OfferOutcome::Refused(
                    FileRefusal::NoSpace,
                    "the room's file space is full".into(),
                )
            }
        };
        for id in &give_way {
            state.forget_kept(*id, &self.dir);
        }
        if !give_way.is_empty() {
            info!(
                files = give_way.len(),
                "the room's file quota is full: the oldest files gave way"
            );
        }
        let mut file_id = rand::random::<u64>();
        while state.id_in_use(file_id) {
            file_id = rand::random::<u64>();
        }
        let upload = Unfinished {
            file_id,
            key: random_key(),
            name: crate::files::safe_name(&offer.name),
            size: offer.size,
            mime: crate::files::kept_mime(&offer.mime),
            sha256: offer.sha256,
            source: source.to_string(),
            touched: Instant::now(),
            slot: Arc::new(UploadSlot::new(0)),
        };
        state.unfinished_bytes += charge(upload.size);
        state.uploads.insert(key, upload.clone());
        drop(state);
        for id in &give_way {
            self.with_store(|s| s.file_gone(*id));
        }
        self.empty_trash();
        let record = UploadRecord {
            client_id: client.to_string(),
            upload_id: offer.upload_id,
            file: FileRecord {
                file_id,
                size: upload.size,
                key: upload.key,
            },
            name: upload.name.clone(),
            mime: upload.mime.clone(),
            sha256: upload.sha256,
            source: source.to_string(),
        };
        let recorded = match &self.store {
            Some(store) => store
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert_upload(&record),
            None => Ok(()),
        };
        let opened = recorded.map_err(|e| e.to_string()).and_then(|()| {
            let (_, opened) = upload.slot.take_over(conn, |_| {
                self.dir
                    .ensure()
                    .and_then(|()| file_store::open_for_upload(&self.dir.file_path(file_id), 0))
            });
            opened.map_err(|e| e.to_string())
        });
        match opened {
            Ok(file) => OfferOutcome::Accepted(Box::new(ActiveUpload {
                upload_id: offer.upload_id,
                file_id,
                key: upload.key,
                size: upload.size,
                sha256: upload.sha256,
                name: upload.name,
                mime: upload.mime,
                have: 0,
                told: 0,
                file: Arc::new(file),
                slot: upload.slot,
            })),
            Err(e) => {
                warn!(error = %e, "could not start storing an upload");
                self.cancel(client, offer.upload_id);
                OfferOutcome::Refused(FileRefusal::NoSpace, "the host could not store it".into())
            }
        }
    }

    /// A chunk of `client`'s upload was stored (in its [`slot`]): it is kept its time again.
    pub fn touch(&self, client: &str, upload_id: u64) {
        if let Some(upload) = self
            .state()
            .uploads
            .get_mut(&(client.to_string(), upload_id))
        {
            upload.touched = Instant::now();
        }
    }

    /// Drop an upload and what is held of it (`file_cancel`, or a corrupt one). Blocking.
    pub fn cancel(&self, client: &str, upload_id: u64) {
        let forgotten = self.state().forget_upload(client, upload_id, &self.dir);
        if forgotten.is_some() {
            self.with_store(|s| s.delete_upload(client, upload_id));
        }
        self.empty_trash();
    }

    /// Delete the stored files that left (off every lock). Blocking.
    fn empty_trash(&self) {
        let trash = std::mem::take(&mut self.state().trash);
        for path in trash {
            file_store::remove(&path);
        }
    }

    /// The upload is in the room as event `seq` (the database has recorded it with the event):
    /// keep it as a file. Called under the room's lock.
    pub fn finished(&self, client: &str, upload_id: u64, seq: u64) {
        let mut state = self.state();
        state.record_highest(client, upload_id);
        if let Some(upload) = state.uploads.remove(&(client.to_string(), upload_id)) {
            state.unfinished_bytes -= charge(upload.size);
            state.kept_bytes += charge(upload.size);
            state.by_seq.insert(seq, upload.file_id);
            state.kept.insert(
                upload.file_id,
                Kept {
                    seq,
                    size: upload.size,
                    key: upload.key,
                },
            );
        }
        // Its earlier unfinished uploads can never be put in the room now (an offer at or
        // below the highest is already there): they go, and free their quota.
        let stale: Vec<u64> = state
            .uploads
            .keys()
            .filter(|(c, id)| c == client && *id < upload_id)
            .map(|(_, id)| *id)
            .collect();
        for id in &stale {
            state.forget_upload(client, *id, &self.dir);
        }
        drop(state);
        for id in stale {
            self.with_store(|s| s.delete_upload(client, id));
        }
    }

    /// Files leave with their events: forget every file whose event is at or before `seq`.
    /// Called under the room's lock (no I/O: the files go to the trash).
    pub fn forget_through(&self, seq: u64) {
        let mut state = self.state();
        let ids: Vec<u64> = state.by_seq.range(..=seq).map(|(_, id)| *id).collect();
        for id in ids {
            state.forget_kept(id, &self.dir);
        }
    }

    /// Where file `file_id` can be read, if the room keeps it, and what tells its download
    /// that it left (asked under the same lock as whether it is kept, so a file leaving
    /// after this always reaches the download).
    pub fn lookup(&self, file_id: u64) -> Lookup {
        let mut state = self.state();
        let state = &mut *state;
        match state.kept.get(&file_id) {
            Some(kept) => Lookup::Kept {
                size: kept.size,
                key: kept.key,
                path: self.dir.file_path(file_id),
                left: state.left.entry(file_id).or_default().clone(),
            },
            None if state.gone.contains(&file_id) => Lookup::Gone,
            None => Lookup::Unknown,
        }
    }

    /// Delete unfinished uploads whose last chunk is older than the limit, and the stored
    /// files waiting in the trash. Blocking. Returns how many uploads expired.
    pub fn expire(&self, now: Instant) -> usize {
        let ttl = self.limits.unfinished_ttl;
        let mut state = self.state();
        let expired: Vec<(String, u64)> = state
            .uploads
            .iter()
            .filter(|(_, u)| now.saturating_duration_since(u.touched) >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for (client, upload_id) in &expired {
            state.forget_upload(client, *upload_id, &self.dir);
        }
        let trash = std::mem::take(&mut state.trash);
        drop(state);
        for (client, upload_id) in &expired {
            self.with_store(|s| s.delete_upload(client, *upload_id));
        }
        if !expired.is_empty() {
            info!(uploads = expired.len(), "unfinished uploads expired");
        }
        for path in trash {
            file_store::remove(&path);
        }
        expired.len()
    }
}

/// The stored bytes of the whole frames holding the first `have` bytes of a file of `size`.
fn have_to_stored(size: u64, have: u64) -> u64 {
    if have >= size {
        stored_len(size)
    } else {
        (have / crate::files::CHUNK_BYTES) * layout::FULL_FRAME
    }
}

/// `bytes` as people read it (MiB or KiB).
pub fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}
