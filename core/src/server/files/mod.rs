//! The host side of file sharing (`docs/PROTOCOL.md` §13): the files a room keeps, the
//! uploads under way, and the limits on both.
//!
//! - [`layout`]: where each chunk's frame sits in a stored file, and the verdict on an
//!   upload's next chunk (pure);
//! - [`quota`]: which finished files give way for a chunk, and the unfinished uploads' share
//!   (pure);
//! - [`slot`]: an unfinished upload's write side, shared by the connections that take it up;
//! - [`file_store`]: the files directory (blocking I/O).
//!
//! [`FileHost`] is the shared state behind its own lock (never the room's). Its methods that
//! touch the disk or the database are blocking and run on blocking threads; the room only
//! asks it cheap questions under its lock. Files live in `DATA_DIR/files/` as their sealed
//! frames, not in SQLite: serving a chunk is a plain positioned read, large writes never
//! churn the WAL, and the quota is kept by size.
//!
//! **Lock order**: room, then files, then the database — and an upload's [`slot`] lock
//! before the files lock and the database's. A chunk is charged to the quota, what gave way
//! for it recorded and deleted, and the chunk sealed and written, all while its slot is held
//! ([`FileHost::store_chunk`]); a slot's lock is never taken under the room's, the files' or
//! the database's, and one connection holds one slot at a time. The files lock is never
//! held across disk or database I/O, nor while taking the database's lock or a slot's (which
//! may be held across a write): lookups take it on async threads.
//!
//! The quota is charged what has **arrived** (see [`quota`]): an offer reserves nothing, the
//! oldest finished files give way only just before a chunk is stored, and only a stored chunk
//! keeps an unfinished upload from expiring.

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

use super::dedupe::{Dedupe, MAX_DEDUPE_CLIENTS};
use super::store::{FileRecord, Store, StoreError, StoredFiles, UploadRecord};
use crate::cipher::Key;
use crate::files::ChunkCipher;
use crate::message::{FileRefusal, Sha256};
use file_store::FileDir;
use layout::{have_from_len, stored_len};
use quota::charge;
use slot::UploadSlot;

/// The host's limits on files; see `docs/PROTOCOL.md` (Limits) for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Largest file, in bytes; 0: the host takes no files (`file_refused: disabled`).
    pub max_file_bytes: u64,
    /// All files kept together, unfinished uploads included (by what has arrived of them);
    /// unfinished uploads hold at most [`quota::unfinished_share`] of it.
    pub max_total_bytes: u64,
    /// Unfinished uploads one client id may hold.
    pub unfinished_per_client: usize,
    /// Unfinished uploads one IPv4 address or IPv6 /64 may hold.
    pub unfinished_per_source: usize,
    /// An unfinished upload is deleted this long after its last stored chunk.
    pub unfinished_ttl: Duration,
    /// An upload that has received no chunk is deleted this long after its offer.
    pub unstarted_ttl: Duration,
    /// Chunks a client may send beyond the last `have` it was told.
    pub window: u32,
}

/// Default [`FileLimits::max_file_bytes`]: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// Default [`FileLimits::max_total_bytes`]: 2 GiB.
pub const DEFAULT_MAX_FILES_BYTES: u64 = 2048 * 1024 * 1024;
/// Default [`FileLimits::unfinished_ttl`]: 1 hour.
pub const DEFAULT_UNFINISHED_TTL: Duration = Duration::from_secs(3600);
/// Default [`FileLimits::unstarted_ttl`]: 60 s. A client sends its first chunk as soon as its
/// offer is accepted; an offer that sends nothing only holds a place.
pub const DEFAULT_UNSTARTED_TTL: Duration = Duration::from_secs(60);

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_total_bytes: DEFAULT_MAX_FILES_BYTES,
            unfinished_per_client: 2,
            unfinished_per_source: 8,
            unfinished_ttl: DEFAULT_UNFINISHED_TTL,
            unstarted_ttl: DEFAULT_UNSTARTED_TTL,
            window: 16,
        }
    }
}

impl FileLimits {
    /// Does the host take files at all?
    pub fn enabled(&self) -> bool {
        self.max_file_bytes > 0
    }

    /// The most the unfinished uploads may hold together.
    pub fn unfinished_share(&self) -> u64 {
        quota::unfinished_share(self.max_total_bytes, self.max_file_bytes)
    }
}

/// Most ids of files no longer kept that are remembered, to answer `gone` rather than
/// `unknown` for them.
const MAX_GONE: usize = 65_536;

/// Most unfinished uploads the host holds in all (each is a database row and a file): past
/// it an offer is `busy`, whatever its client and address.
const MAX_UNFINISHED: usize = 1024;

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
    /// What it counts against the quota: the bytes that have arrived, and the chunk being
    /// stored (the whole [`charge`] of the file once the last one arrives).
    charged: u64,
    /// The offer, then the last stored chunk (never a re-offer).
    touched: Instant,
    /// Which connection stores its chunks, how much is stored and its SHA-256 so far (shared
    /// by every connection that takes it up; closed once it is no longer unfinished).
    slot: Arc<UploadSlot>,
    /// All of it has arrived and its connection is putting it in the room: another file
    /// under its id is `busy` until then.
    finishing: bool,
}

impl Unfinished {
    /// How long it is kept after [`touched`](Self::touched).
    fn ttl(&self, limits: &FileLimits) -> Duration {
        if self.charged == 0 {
            limits.unstarted_ttl
        } else {
            limits.unfinished_ttl
        }
    }

    /// Its last chunk has been charged (an empty file with its offer): all of it has
    /// arrived. Known from the charge, so the files lock never waits for the slot's.
    fn all_arrived(&self) -> bool {
        self.charged >= charge(self.size)
    }
}

#[derive(Debug)]
struct State {
    kept: HashMap<u64, Kept>,
    /// Kept files by their event's sequence number: the oldest give way first.
    by_seq: BTreeMap<u64, u64>,
    /// Charged bytes of the kept files.
    kept_bytes: u64,
    uploads: HashMap<(String, u64), Unfinished>,
    /// Charged bytes of the unfinished uploads (what has arrived).
    unfinished_bytes: u64,
    /// Highest upload id in the room per client id, the least recently updated forgotten
    /// first beyond [`MAX_DEDUPE_CLIENTS`] (the database keeps as many: a client forgotten
    /// here is looked up there).
    highest: Dedupe,
    /// Nothing has been forgotten from `highest`: a client it does not know has put no file
    /// in the room (no need to ask the database).
    highest_complete: bool,
    gone: HashSet<u64>,
    gone_order: VecDeque<u64>,
    /// Cancelled when a kept file leaves, so its downloads stop (one per file being sent).
    left: HashMap<u64, CancellationToken>,
    /// Stored files to delete (off every lock, by [`FileHost::empty_trash`]).
    trash: Vec<PathBuf>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            kept: HashMap::new(),
            by_seq: BTreeMap::new(),
            kept_bytes: 0,
            uploads: HashMap::new(),
            unfinished_bytes: 0,
            highest: Dedupe::default(),
            highest_complete: true,
            gone: HashSet::new(),
            gone_order: VecDeque::new(),
            left: HashMap::new(),
            trash: Vec::new(),
        }
    }
}

impl State {
    fn record_highest(&mut self, client: &str, upload_id: u64) {
        let client = client.to_string();
        if self.highest.highest(&client) == 0 && self.highest.len() >= MAX_DEDUPE_CLIENTS {
            self.highest_complete = false; // the least recently updated is forgotten
        }
        self.highest.record(&client, upload_id);
    }

    fn mark_gone(&mut self, file_id: u64) {
        if self.gone.insert(file_id) {
            self.gone_order.push_back(file_id);
        }
        while self.gone_order.len() > MAX_GONE {
            if let Some(old) = self.gone_order.pop_front() {
                self.gone.remove(&old);
            }
        }
    }

    fn forget_kept(&mut self, file_id: u64, dir: &FileDir) {
        if let Some(kept) = self.kept.remove(&file_id) {
            self.by_seq.remove(&kept.seq);
            self.kept_bytes = self.kept_bytes.saturating_sub(charge(kept.size));
            self.trash.push(dir.file_path(file_id));
            if let Some(left) = self.left.remove(&file_id) {
                left.cancel();
            }
            self.mark_gone(file_id);
        }
    }

    fn keep(&mut self, file_id: u64, seq: u64, size: u64, key: Key) {
        self.kept_bytes += charge(size);
        self.by_seq.insert(seq, file_id);
        self.kept.insert(file_id, Kept { seq, size, key });
    }

    fn insert_upload(&mut self, client: &str, upload_id: u64, upload: Unfinished) {
        self.unfinished_bytes += upload.charged;
        if let Some(old) = self.uploads.insert((client.to_string(), upload_id), upload) {
            self.unfinished_bytes = self.unfinished_bytes.saturating_sub(old.charged);
        }
    }

    fn remove_upload(&mut self, client: &str, upload_id: u64) -> Option<Unfinished> {
        let upload = self.uploads.remove(&(client.to_string(), upload_id))?;
        // No longer unfinished (dropped, or kept): nothing more is stored of it.
        upload.slot.close();
        self.unfinished_bytes = self.unfinished_bytes.saturating_sub(upload.charged);
        Some(upload)
    }

    fn forget_upload(&mut self, client: &str, upload_id: u64, dir: &FileDir) -> Option<Unfinished> {
        let upload = self.remove_upload(client, upload_id)?;
        self.trash.push(dir.file_path(upload.file_id));
        Some(upload)
    }

    fn id_in_use(&self, id: u64) -> bool {
        id == 0
            || self.kept.contains_key(&id)
            || self.gone.contains(&id)
            || self.uploads.values().any(|u| u.file_id == id)
    }

    /// Make room for `bytes` more of the unfinished uploads: the finished files that gave
    /// way (forgotten here, their stored files in the trash), or [`quota::NoSpace`].
    fn make_room(
        &mut self,
        limits: &FileLimits,
        bytes: u64,
        dir: &FileDir,
    ) -> Result<Vec<u64>, quota::NoSpace> {
        let usage = quota::Usage {
            finished: self.kept_bytes,
            unfinished: self.unfinished_bytes,
            quota: limits.max_total_bytes,
            unfinished_cap: limits.unfinished_share(),
        };
        let oldest = self
            .by_seq
            .values()
            .filter_map(|id| self.kept.get(id).map(|k| (*id, charge(k.size))));
        let give_way = quota::make_room(usage, bytes, oldest)?;
        for id in &give_way {
            self.forget_kept(*id, dir);
        }
        Ok(give_way)
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

impl ActiveUpload {
    /// Where its chunks go ([`FileHost::store_chunk`]).
    pub fn target(&self) -> ChunkTarget {
        ChunkTarget {
            upload_id: self.upload_id,
            file_id: self.file_id,
            key: self.key,
            size: self.size,
            file: self.file.clone(),
            slot: self.slot.clone(),
        }
    }
}

/// What [`FileHost::store_chunk`] needs of an [`ActiveUpload`] (to take to a blocking thread).
#[derive(Debug, Clone)]
pub struct ChunkTarget {
    pub upload_id: u64,
    pub file_id: u64,
    pub key: Key,
    pub size: u64,
    pub file: Arc<File>,
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

/// Why a chunk was not stored ([`FileHost::store_chunk`]).
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The upload is no longer this connection's (taken over by another, cancelled, expired
    /// or finished): the chunk is dropped, and the connection stops sending it.
    #[error("the upload is not active on this connection")]
    NotActive,
    /// The unfinished uploads hold their whole share of the quota.
    #[error("the unfinished uploads hold their whole share of the room's file space")]
    NoSpace,
    #[error("could not store the chunk: {0}")]
    Io(#[from] std::io::Error),
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

    /// Update the database (never under the files lock).
    fn with_store(&self, f: impl FnOnce(&mut Store) -> Result<(), StoreError>) {
        if let Some(store) = &self.store {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = f(&mut store) {
                warn!(error = %e, "could not update the room's file records");
            }
        }
    }

    /// Build the state from the database and the disk (all of the I/O first, then the state
    /// is put in place).
    fn restore(&self, stored: StoredFiles) -> Result<(), FilesError> {
        let mut state = State::default();
        let now = Instant::now();
        let mut lost = Vec::new();
        for (seq, record) in stored.finished {
            let path = self.dir.file_path(record.file_id);
            if file_store::stored_len_of(&path) != stored_len(record.size) {
                lost.push(record.file_id);
                continue;
            }
            state.keep(record.file_id, seq, record.size, record.key);
        }
        let mut expired = Vec::new();
        for upload in stored.uploads {
            let path = self.dir.file_path(upload.file.file_id);
            let age = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            let size = upload.file.size;
            let (have, _) = have_from_len(size, file_store::stored_len_of(&path));
            let restored = Unfinished {
                file_id: upload.file.file_id,
                key: upload.file.key,
                name: upload.name,
                size,
                mime: upload.mime,
                sha256: upload.sha256,
                source: upload.source,
                charged: if have == size { charge(size) } else { have },
                touched: now.checked_sub(age).unwrap_or(now),
                slot: Arc::new(UploadSlot::new(have)),
                finishing: false,
            };
            if age >= restored.ttl(&self.limits) {
                expired.push((upload.client_id, upload.upload_id, path));
                continue;
            }
            state.insert_upload(&upload.client_id, upload.upload_id, restored);
        }
        for file_id in stored.gone {
            state.mark_gone(file_id);
        }
        for (client, highest) in stored.highest {
            state.record_highest(&client, highest);
        }
        for file_id in &lost {
            state.mark_gone(*file_id);
        }
        let known: HashSet<u64> = state
            .kept
            .keys()
            .copied()
            .chain(state.uploads.values().map(|u| u.file_id))
            .collect();
        let (files, unfinished) = (state.kept.len(), state.uploads.len());
        *self.state() = state;
        for file_id in &lost {
            warn!(
                file_id = format!("{file_id:016x}"),
                "a kept file is missing or damaged on disk; its event stays, the file is gone"
            );
            self.with_store(|s| s.file_gone(*file_id));
        }
        for (client, upload_id, path) in &expired {
            self.with_store(|s| s.delete_upload(client, *upload_id));
            file_store::remove(path);
        }
        // Orphans: files the database does not know (a crash between writing and recording).
        let (ids, other) = self.dir.list()?;
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
        info!(
            files,
            unfinished,
            orphans_removed = orphans,
            dir = %self.dir.path().display(),
            "room files ready"
        );
        Ok(())
    }

    /// The highest upload id of `client` in the room (0: none). A client forgotten from
    /// memory is looked up in the database (not under the files lock). Blocking when it
    /// does.
    pub fn highest_done(&self, client: &str) -> u64 {
        let (known, complete) = {
            let state = self.state();
            (
                state.highest.highest(&client.to_string()),
                state.highest_complete,
            )
        };
        if known > 0 || complete {
            return known;
        }
        let Some(store) = &self.store else {
            return known;
        };
        let stored = store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .upload_highest(client);
        match stored {
            Ok(Some(highest)) => {
                self.state().record_highest(client, highest);
                highest
            }
            Ok(None) => 0,
            Err(e) => {
                warn!(error = %e, "could not look up a client's highest upload id");
                0
            }
        }
    }

    /// Answer an offer from `client` (at `source`) on connection `conn`. Blocking (it may
    /// write the database and open the stored file). An offer reserves no quota and evicts
    /// nothing (but an empty file, which arrives whole with its offer), and offering an
    /// unfinished upload again does not extend its time.
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
        if offer.upload_id <= self.highest_done(client) {
            return OfferOutcome::AlreadyInRoom;
        }
        let key = (client.to_string(), offer.upload_id);
        let mut state = self.state();
        if offer.upload_id <= state.highest.highest(&key.0) {
            return OfferOutcome::AlreadyInRoom; // put in the room meanwhile
        }
        if let Some(upload) = state.uploads.get_mut(&key) {
            if upload.size == offer.size && upload.sha256 == offer.sha256 {
                // Not `touched`: only a stored chunk keeps it longer.
                upload.finishing = upload.all_arrived();
                let upload = upload.clone();
                drop(state);
                return self.resume(conn, offer.upload_id, upload);
            }
            if upload.finishing {
                return OfferOutcome::Refused(
                    FileRefusal::Busy,
                    "an upload with this id is being put in the room".into(),
                );
            }
            // Another file under the same id: what is held of it goes, and it starts again.
            state.forget_upload(client, offer.upload_id, &self.dir);
            drop(state);
            self.with_store(|s| s.delete_upload(client, offer.upload_id));
            self.empty_trash();
            state = self.state();
            if state.uploads.contains_key(&key) {
                return OfferOutcome::Refused(
                    FileRefusal::Busy,
                    "this upload was offered again from another connection".into(),
                );
            }
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
        // An empty file has arrived whole: it is charged now (a disk block), as a chunk is.
        let (charged, give_way) = if offer.size == 0 {
            match state.make_room(&limits, charge(0), &self.dir) {
                Ok(ids) => (charge(0), ids),
                Err(quota::NoSpace) => {
                    return OfferOutcome::Refused(
                        FileRefusal::NoSpace,
                        "the room's file space is full".into(),
                    )
                }
            }
        } else {
            (0, Vec::new())
        };
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
            charged,
            touched: Instant::now(),
            slot: Arc::new(UploadSlot::new(0)),
            finishing: offer.size == 0,
        };
        state.insert_upload(client, offer.upload_id, upload.clone());
        drop(state);
        self.gave_way(&give_way);
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

    /// An unfinished upload offered again (a reconnect, or another connection of the client
    /// racing the old one): connection `conn` takes it over, and its stored file is reopened
    /// at the whole frames held. `have` is read and the file cut to it under the upload's
    /// lock (see [`slot`]), so no chunk of the connection it was active on lands in between.
    fn resume(&self, conn: u64, upload_id: u64, upload: Unfinished) -> OfferOutcome {
        let path = self.dir.file_path(upload.file_id);
        let (have, opened) = upload.slot.take_over(conn, |have| {
            self.dir.ensure().and_then(|()| {
                file_store::open_for_upload(&path, have_to_stored(upload.size, have))
            })
        });
        match opened {
            Ok(file) => OfferOutcome::Accepted(Box::new(ActiveUpload {
                upload_id,
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
                OfferOutcome::Refused(FileRefusal::NoSpace, "the host could not store it".into())
            }
        }
    }

    /// Finished files gave way (already forgotten in memory): record it and delete them.
    fn gave_way(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        for id in ids {
            self.with_store(|s| s.file_gone(*id));
        }
        self.empty_trash();
        info!(
            files = ids.len(),
            "the room's file quota is full: the oldest files gave way"
        );
    }

    /// Store `data`, the chunk at `offset` of `client`'s upload `target`, as connection `conn`
    /// sends it; returns the bytes of the upload now stored. Blocking.
    ///
    /// All of it happens under the upload's slot lock (see [`slot`]), so no other connection
    /// stores at this offset meanwhile: first whether `conn` owns the upload and `offset` is
    /// its next chunk ([`ChunkError::NotActive`] if not: nothing is charged, sealed or
    /// written); then the quota is charged for it under the files lock — the oldest finished
    /// files give way if it would not fit otherwise, [`ChunkError::NoSpace`] past the
    /// unfinished uploads' share — and what gave way is recorded and deleted (off the files
    /// lock); then it is sealed once, as every member will get it, written in its place and
    /// hashed. Only then is the upload `touched`.
    pub fn store_chunk(
        &self,
        client: &str,
        conn: u64,
        target: &ChunkTarget,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, ChunkError> {
        let ChunkTarget {
            upload_id,
            file_id,
            ref key,
            size,
            ref file,
            ref slot,
        } = *target;
        let Some(claim) = slot.claim(conn, offset) else {
            return Err(ChunkError::NotActive);
        };
        let end = offset.saturating_add(data.len() as u64);
        let upload_key = (client.to_string(), upload_id);
        let give_way = {
            let mut state = self.state();
            let Some(upload) = state.uploads.get(&upload_key) else {
                return Err(ChunkError::NotActive);
            };
            if upload.file_id != file_id || !Arc::ptr_eq(&upload.slot, slot) {
                return Err(ChunkError::NotActive);
            }
            let arrived = if end >= size { charge(size) } else { end };
            let more = arrived.saturating_sub(upload.charged);
            let give_way = state
                .make_room(&self.limits, more, &self.dir)
                .map_err(|quota::NoSpace| ChunkError::NoSpace)?;
            state.unfinished_bytes += more;
            if let Some(upload) = state.uploads.get_mut(&upload_key) {
                upload.charged += more;
            }
            give_way
        };
        self.gave_way(&give_way);
        let written = ChunkCipher::new(key, file_id)
            .seal(offset, data)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|frame| file_store::write_frame(file, size, offset, &frame));
        if let Err(e) = written {
            claim.failed();
            return Err(ChunkError::Io(e));
        }
        let have = claim.stored(data);
        // A stored chunk keeps the upload from expiring; once all of it is there it is being
        // put in the room.
        if let Some(upload) = self.state().uploads.get_mut(&upload_key) {
            if Arc::ptr_eq(&upload.slot, slot) {
                upload.touched = Instant::now();
                upload.finishing = have == size;
            }
        }
        Ok(have)
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

    /// File `file_id`, upload `upload_id` of `client`, is in the room as event `seq` (the
    /// database has recorded it with the event): keep it. Matched by its file id: if the
    /// upload under that id is another file now, that one is not kept in its place — the
    /// event's file is gone. Called under the room's lock (no disk I/O: what leaves goes to
    /// the trash).
    pub fn finished(&self, client: &str, upload_id: u64, file_id: u64, seq: u64) {
        let mut state = self.state();
        state.record_highest(client, upload_id);
        let key = (client.to_string(), upload_id);
        let lost = match state.uploads.get(&key) {
            Some(upload) if upload.file_id == file_id => {
                if let Some(upload) = state.remove_upload(client, upload_id) {
                    state.keep(file_id, seq, upload.size, upload.key);
                }
                false
            }
            _ => {
                state.mark_gone(file_id);
                true
            }
        };
        // Its other unfinished uploads at or below this id can never be put in the room now
        // (an offer at or below the highest is already there): they go, and free their quota.
        let stale: Vec<u64> = state
            .uploads
            .keys()
            .filter(|(c, id)| c == client && *id <= upload_id)
            .map(|(_, id)| *id)
            .collect();
        for id in &stale {
            state.forget_upload(client, *id, &self.dir);
        }
        drop(state);
        if lost {
            warn!(
                file_id = format!("{file_id:016x}"),
                "a file was put in the room after its upload was replaced; the file is gone"
            );
            self.with_store(|s| s.file_gone(file_id));
        }
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

    /// Delete unfinished uploads past their time (60 s after an offer that sent nothing, an
    /// hour after the last stored chunk, by default), and the stored files waiting in the
    /// trash. Blocking. Returns how many uploads expired.
    pub fn expire(&self, now: Instant) -> usize {
        let limits = self.limits;
        let mut state = self.state();
        let expired: Vec<(String, u64)> = state
            .uploads
            .iter()
            .filter(|(_, u)| now.saturating_duration_since(u.touched) >= u.ttl(&limits))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::CHUNK_BYTES;
    use crate::message::{RoomEvent, RoomEventKind};
    use sha2::Digest;

    const C: u64 = CHUNK_BYTES;

    /// A quota of 10 chunks, files up to 4: unfinished uploads may hold 5 chunks.
    fn small() -> FileLimits {
        FileLimits {
            max_file_bytes: 4 * C,
            max_total_bytes: 10 * C,
            ..FileLimits::default()
        }
    }

    fn host(limits: FileLimits) -> FileHost {
        FileHost::open(limits, None, None).unwrap()
    }

    fn offer_of(upload_id: u64, content: &[u8]) -> Offer {
        Offer {
            upload_id,
            name: "f.bin".into(),
            size: content.len() as u64,
            mime: String::new(),
            sha256: sha2::Sha256::digest(content).into(),
        }
    }

    fn accepted(outcome: OfferOutcome) -> Box<ActiveUpload> {
        match outcome {
            OfferOutcome::Accepted(upload) => upload,
            other => panic!("expected accepted, got {other:?}"),
        }
    }

    fn refused(outcome: OfferOutcome) -> FileRefusal {
        match outcome {
            OfferOutcome::Refused(reason, _) => reason,
            other => panic!("expected refused, got {other:?}"),
        }
    }

    fn content(chunks: u64, fill: u8) -> Vec<u8> {
        vec![fill; (chunks * C) as usize]
    }

    /// Store chunks `from..to` of `content` as connection `conn` would.
    fn send(
        host: &FileHost,
        client: &str,
        conn: u64,
        upload: &ActiveUpload,
        content: &[u8],
        chunks: std::ops::Range<u64>,
    ) -> Result<(), ChunkError> {
        let target = upload.target();
        for i in chunks {
            let (start, end) = (i * C, ((i + 1) * C).min(content.len() as u64));
            let have = host.store_chunk(
                client,
                conn,
                &target,
                start,
                &content[start as usize..end as usize],
            )?;
            assert_eq!(have, end);
        }
        Ok(())
    }

    /// Upload `content` whole and put it in the room as event `seq`: its file id.
    fn put(host: &FileHost, client: &str, upload_id: u64, content: &[u8], seq: u64) -> u64 {
        let upload = accepted(host.offer(client, "192.0.2.1", seq, offer_of(upload_id, content)));
        let chunks = content.len().div_ceil(C as usize) as u64;
        send(host, client, seq, &upload, content, 0..chunks).unwrap();
        host.finished(client, upload_id, upload.file_id, seq);
        upload.file_id
    }

    fn kept(host: &FileHost, file_id: u64) -> bool {
        matches!(host.lookup(file_id), Lookup::Kept { .. })
    }

    /// The review's attack, on the host itself: offers that never send anything, from many
    /// client ids and addresses, take no space and make nothing give way; an honest upload
    /// then evicts the oldest file only once its chunks need the room.
    #[test]
    fn bare_offers_reserve_nothing_and_files_give_way_only_as_chunks_arrive() {
        let host = host(small());
        let first = put(&host, "ana", 1, &content(4, 1), 1);
        let second = put(&host, "ana", 2, &content(4, 2), 2);
        for i in 0..24u64 {
            let source = format!("192.0.2.{}", 10 + i / 8);
            let outcome = host.offer(
                &format!("made-up-{i}"),
                &source,
                100 + i,
                offer_of(1, &content(4, i as u8)),
            );
            accepted(outcome);
        }
        assert!(
            kept(&host, first) && kept(&host, second),
            "nothing gave way"
        );
        let honest = content(4, 9);
        let upload = accepted(host.offer("bea", "198.51.100.1", 7, offer_of(1, &honest)));
        send(&host, "bea", 7, &upload, &honest, 0..2).unwrap();
        assert!(kept(&host, first), "8 + 2 chunks fit the quota of 10");
        send(&host, "bea", 7, &upload, &honest, 2..3).unwrap();
        assert!(
            matches!(host.lookup(first), Lookup::Gone),
            "the oldest, for the third"
        );
        send(&host, "bea", 7, &upload, &honest, 3..4).unwrap();
        host.finished("bea", 1, upload.file_id, 3);
        assert!(kept(&host, second) && kept(&host, upload.file_id));
    }

    /// Unfinished uploads hold at most half the quota: the chunk past it is refused, and the
    /// finished files keep the other half.
    #[test]
    fn unfinished_uploads_never_hold_more_than_their_share() {
        let host = host(small());
        let first = put(&host, "ana", 1, &content(4, 1), 1);
        let second = put(&host, "ana", 2, &content(4, 2), 2);
        let (a, b) = (content(4, 3), content(4, 4));
        let one = accepted(host.offer("c1", "192.0.2.1", 10, offer_of(1, &a)));
        let two = accepted(host.offer("c2", "192.0.2.2", 11, offer_of(1, &b)));
        send(&host, "c1", 10, &one, &a, 0..3).unwrap();
        send(&host, "c2", 11, &two, &b, 0..2).unwrap();
        assert!(matches!(
            send(&host, "c2", 11, &two, &b, 2..3),
            Err(ChunkError::NoSpace)
        ));
        assert!(!kept(&host, first) && kept(&host, second), "half is kept");
        // Once one is cancelled the other goes on.
        host.cancel("c1", 1);
        send(&host, "c2", 11, &two, &b, 2..4).unwrap();
    }

    /// An offer that sends nothing is gone after the short time; a stored chunk keeps an
    /// upload for the long one; offering it again extends neither.
    #[test]
    fn only_stored_chunks_keep_an_upload_and_a_bare_offer_expires_quickly() {
        let host = host(small());
        let start = Instant::now();
        let a = content(2, 1);
        accepted(host.offer("ana", "192.0.2.1", 1, offer_of(1, &a)));
        let secs = |n| start + Duration::from_secs(n);
        assert_eq!(host.expire(secs(30)), 0);
        // Offered again (a reconnect) later on: no longer time for it.
        accepted(host.offer("ana", "192.0.2.1", 2, offer_of(1, &a)));
        assert_eq!(host.expire(secs(61)), 1, "60 s after its offer");
        let upload = accepted(host.offer("ana", "192.0.2.1", 3, offer_of(1, &a)));
        assert_eq!(upload.have, 0, "starts again");
        send(&host, "ana", 3, &upload, &a, 0..1).unwrap();
        assert_eq!(host.expire(Instant::now() + Duration::from_secs(120)), 0);
        let again = accepted(host.offer("ana", "192.0.2.1", 4, offer_of(1, &a)));
        assert_eq!(again.have, C, "resumes");
        assert_eq!(host.expire(Instant::now() + Duration::from_secs(3599)), 0);
        assert_eq!(host.expire(Instant::now() + Duration::from_secs(3601)), 1);
        // The older connection no longer stores anything.
        assert!(matches!(
            send(&host, "ana", 3, &upload, &a, 1..2),
            Err(ChunkError::NotActive)
        ));
    }

    /// `finished` keeps the file the event names: when the upload under that id is another
    /// file by then, that one is not kept in its place (the event's file is gone).
    #[test]
    fn finished_keeps_the_file_its_event_names_not_another_under_the_same_id() {
        let host = host(small());
        let (p, q) = (content(2, 1), content(2, 2));
        let first = accepted(host.offer("ana", "192.0.2.1", 1, offer_of(1, &p)));
        send(&host, "ana", 1, &first, &p, 0..1).unwrap();
        // Another file under the same id, from another connection, before it was complete.
        let second = accepted(host.offer("ana", "192.0.2.1", 2, offer_of(1, &q)));
        assert_ne!(second.file_id, first.file_id);
        host.finished("ana", 1, first.file_id, 5);
        assert!(matches!(host.lookup(first.file_id), Lookup::Gone));
        assert!(
            matches!(host.lookup(second.file_id), Lookup::Unknown),
            "a half-stored replacement is never served as the event's file"
        );
        assert!(matches!(
            host.offer("ana", "192.0.2.1", 3, offer_of(1, &q)),
            OfferOutcome::AlreadyInRoom
        ));
        assert!(matches!(
            send(&host, "ana", 2, &second, &q, 1..2),
            Err(ChunkError::NotActive)
        ));
    }

    /// A chunk is charged only once it is to be stored, under the upload's slot: one from the
    /// connection that lost the upload to a takeover, or not at `have`, is charged nothing and
    /// makes nothing give way; the digest runs on across both connections' chunks.
    #[test]
    fn only_the_owner_s_next_chunk_is_charged_and_evicts() {
        let host = host(small());
        let first = put(&host, "ana", 1, &content(4, 1), 1);
        put(&host, "ana", 2, &content(4, 2), 2);
        let honest: Vec<u8> = (0..4 * C).map(|i| (i % 251) as u8).collect();
        let old = accepted(host.offer("bea", "198.51.100.1", 7, offer_of(1, &honest)));
        send(&host, "bea", 7, &old, &honest, 0..2).unwrap();
        let new = accepted(host.offer("bea", "198.51.100.1", 8, offer_of(1, &honest)));
        assert_eq!(new.have, 2 * C, "taken over where it stood");
        assert!(matches!(
            send(&host, "bea", 7, &old, &honest, 2..3),
            Err(ChunkError::NotActive)
        ));
        let ahead = &honest[(3 * C) as usize..];
        assert!(matches!(
            host.store_chunk("bea", 8, &new.target(), 3 * C, ahead),
            Err(ChunkError::NotActive)
        ));
        assert!(kept(&host, first), "nothing charged for chunks not stored");
        send(&host, "bea", 8, &new, &honest, 2..3).unwrap();
        assert!(
            matches!(host.lookup(first), Lookup::Gone),
            "the stored one evicts"
        );
        send(&host, "bea", 8, &new, &honest, 3..4).unwrap();
        assert_eq!(
            new.slot.digest(4 * C),
            Some(sha2::Sha256::digest(&honest).into()),
            "hashed across both connections"
        );
    }

    /// An upload whose chunks have all arrived is being put in the room: another file under
    /// its id is `busy` (the same file is taken over, as after a reconnect).
    #[test]
    fn a_complete_upload_is_not_replaced_while_it_is_put_in_the_room() {
        let host = host(small());
        let (p, q) = (content(2, 1), content(2, 2));
        let upload = accepted(host.offer("ana", "192.0.2.1", 1, offer_of(1, &p)));
        send(&host, "ana", 1, &upload, &p, 0..2).unwrap();
        assert_eq!(
            refused(host.offer("ana", "192.0.2.1", 2, offer_of(1, &q))),
            FileRefusal::Busy
        );
        let same = accepted(host.offer("ana", "192.0.2.1", 3, offer_of(1, &p)));
        assert_eq!((same.file_id, same.have), (upload.file_id, 2 * C));
        host.finished("ana", 1, upload.file_id, 4);
        assert!(kept(&host, upload.file_id));
    }

    /// A client whose highest upload id memory has forgotten (65 536 others uploaded since)
    /// is looked up in the database: its old upload is not accepted again.
    #[test]
    fn a_client_forgotten_in_memory_is_found_in_the_database() {
        let store = Arc::new(Mutex::new(Store::in_memory().unwrap()));
        store
            .lock()
            .unwrap()
            .load(10, [1; crate::passphrase::SALT_LEN], "e".into())
            .unwrap();
        let host = FileHost::open(small(), None, Some(store.clone())).unwrap();
        let empty = offer_of(1, b"");
        let upload = accepted(host.offer("ana", "192.0.2.1", 1, empty.clone()));
        let event = RoomEvent {
            seq: 1,
            time_ms: 0,
            kind: RoomEventKind::File {
                from: "ana".into(),
                file_id: upload.file_id,
                name: upload.name.clone(),
                size: 0,
                mime: upload.mime.clone(),
                sha256: upload.sha256,
                upload_id: 1,
                author: String::new(),
            },
        };
        let record = FileRecord {
            file_id: upload.file_id,
            size: 0,
            key: upload.key,
        };
        store
            .lock()
            .unwrap()
            .append_file(&event, &"ana".to_string(), &record)
            .unwrap();
        host.finished("ana", 1, upload.file_id, 1);
        for i in 0..MAX_DEDUPE_CLIENTS {
            host.state().record_highest(&format!("client-{i}"), 1);
        }
        assert_eq!(
            host.state().highest.highest(&"ana".to_string()),
            0,
            "forgotten in memory"
        );
        assert_eq!(host.highest_done("ana"), 1);
        assert!(matches!(
            host.offer("ana", "192.0.2.1", 2, empty),
            OfferOutcome::AlreadyInRoom
        ));
        assert_eq!(host.highest_done("never-uploaded"), 0);
    }
}
