//! Durable room state in SQLite (WAL mode): the room's salt and epoch, the room events (within
//! the retention limits), the duplicate-suppression state and who is present. The room writes
//! an event (and, for a chat message, the sender's new highest message id; for a join or leave,
//! the presence change) in one transaction **before** it broadcasts or acks it, so an
//! acknowledged message survives a crash of the server process (`kill -9`).
//!
//! `synchronous = NORMAL` in WAL mode: a committed transaction is in the WAL file before the
//! ack goes out, which survives a process crash; an operating-system crash or power loss may
//! lose the last transactions (see `docs/PROTOCOL.md`, Durability).
//!
//! A size cap ([`Store::set_max_bytes`]) is kept by deleting the **oldest** events when an
//! append would not fit under it ([`Eviction`]), down to about 90 % of the cap, like
//! retention; the dedupe state (per client id, in its own table) and presence are kept. Only
//! a full disk, or a message that cannot fit even after eviction, refuses an append.
//!
//! Events are stored as JSON in a format of their own ([`StoredEvent`]), independent of the
//! wire encoding (`docs/PROTOCOL.md` §6), so rooms stored by earlier versions keep opening.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::binding::Verifier;
use super::dedupe::MAX_DEDUPE_CLIENTS;
use crate::message::{ClientId, Epoch, LeaveReason, RoomEvent, RoomEventKind};
use crate::passphrase::{Salt, SALT_LEN};
use crate::text::nick_key;

/// File name of the room database inside the data directory.
pub const DB_FILE: &str = "room.sqlite3";
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {error}")]
    Directory {
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("the room database is locked by another running server")]
    Locked,
    #[error("the room database is damaged or not a Tertulia database ({0}); move it away to start a fresh room")]
    Corrupt(String),
    #[error("the room database is damaged or not a Tertulia database ({0}); move it away to start a fresh room")]
    Damaged(#[source] rusqlite::Error),
    #[error("the room database holds an event that cannot be read ({0}); move it away to start a fresh room")]
    BadEvent(#[source] serde_json::Error),
    #[error("an event could not be encoded for the room database: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("a room event of a kind this server does not store")]
    Unstorable,
    #[error("the disk (or the room's storage limit) is full: the message was not stored")]
    DiskFull,
    #[error("room database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Locked,
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                StoreError::Damaged(e)
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// What a room needs to continue where it stopped.
#[derive(Debug)]
pub struct Loaded {
    pub salt: Salt,
    pub epoch: Epoch,
    /// The newest `keep` events, oldest first.
    pub recent: Vec<RoomEvent>,
    /// The sequence number the next event gets.
    pub next_seq: u64,
    /// Highest accepted message id per client, most recently updated last.
    pub dedupe: Vec<(ClientId, u64)>,
    /// Members who were in the room when the server stopped: (nickname, client id).
    pub present: Vec<(String, ClientId)>,
    /// The oldest stored event's sequence number (`next_seq` when none is stored).
    pub oldest_seq: u64,
}

/// How much history to keep on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many newest events.
    pub max_events: Option<u64>,
    /// Drop events older than this many milliseconds.
    pub max_age_ms: Option<u64>,
}

/// The oldest history deleted to keep the room database under its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    /// Events deleted.
    pub events: usize,
    /// Every event up to this sequence number is gone.
    pub through_seq: u64,
}

impl Eviction {
    fn and(self, later: Option<Eviction>) -> Eviction {
        match later {
            Some(later) => Eviction {
                events: self.events + later.events,
                through_seq: self.through_seq.max(later.through_seq),
            },
            None => self,
        }
    }
}

/// The room database's size cap, in pages.
#[derive(Debug, Clone, Copy)]
struct Cap {
    pages: u64,
    page_size: u64,
}

/// Most an eviction deletes at a time beyond what the message needs: 10 % of the cap, at
/// most this much (deleting is `secure_delete` work done under the room's lock).
const MAX_EVICTION_CHUNK: u64 = 16 * 1024 * 1024;
/// Bytes an event takes on disk beyond its JSON (record header, cell pointer, row id).
const EVENT_OVERHEAD: i64 = 32;

/// Logs evictions at a bounded rate: the first at once, then at most one line a minute with
/// what was deleted meanwhile.
#[derive(Debug, Default)]
struct EvictionLog {
    last: Option<Instant>,
    evictions: u64,
    events: u64,
}

impl EvictionLog {
    const EVERY: Duration = Duration::from_secs(60);

    /// Count `evicted`; `Some((evictions, events))` to log now, totals since the last line.
    fn note(&mut self, evicted: &Eviction, now: Instant) -> Option<(u64, u64)> {
        self.evictions += 1;
        self.events += evicted.events as u64;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < Self::EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some((
            std::mem::take(&mut self.evictions),
            std::mem::take(&mut self.events),
        ))
    }
}

pub struct Store {
    conn: Connection,
    cap: Option<Cap>,
    eviction_log: EvictionLog,
}

impl Store {
    /// Open (or create) the room database in `dir`. A second server on the same directory is
    /// refused with [`StoreError::Locked`].
    ///
    /// The directory is created readable by its owner only (`0700`; an existing directory
    /// open to others is reported, not changed: it may be one the host uses for more) and the
    /// database files are made `0600` (SQLite gives its WAL the database file's mode).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let directory_error = |error| StoreError::Directory {
            path: dir.display().to_string(),
            error,
        };
        super::binding::create_private_dir(dir).map_err(directory_error)?;
        let path = dir.join(DB_FILE);
        make_private(dir, &path).map_err(directory_error)?;
        let conn = Connection::open(&path)?;
        Self::init(conn)
    }

    /// A throw-away database in memory (tests).
    #[cfg(test)]
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // Another server holding the lock answers at once instead of after SQLite's 5 s default.
        conn.busy_timeout(std::time::Duration::from_millis(200))?;
        // Exclusive locking: the database belongs to one server process at a time.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Deleted history (retention) is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(check));
        }
        conn.execute_batch(
            "BEGIN EXCLUSIVE;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS dedupe (client_id TEXT PRIMARY KEY, highest INTEGER NOT NULL, touched INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS dedupe_touched ON dedupe (touched);
             CREATE TABLE IF NOT EXISTS present (nick_key TEXT PRIMARY KEY, nick TEXT NOT NULL, client_id TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS files (file_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, size INTEGER NOT NULL, file_key BLOB NOT NULL, gone INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX IF NOT EXISTS files_seq ON files (seq);
             CREATE TABLE IF NOT EXISTS uploads (client_id TEXT NOT NULL, upload_id INTEGER NOT NULL, file_id INTEGER NOT NULL, file_key BLOB NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, mime TEXT NOT NULL, sha256 BLOB NOT NULL, source TEXT NOT NULL, PRIMARY KEY (client_id, upload_id));
             CREATE TABLE IF NOT EXISTS upload_dedupe (client_id TEXT PRIMARY KEY, highest INTEGER NOT NULL, touched INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS upload_dedupe_touched ON upload_dedupe (touched);
             COMMIT;",
        )?;
        let version: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1)",
                    params![SCHEMA_VERSION],
                )?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "unknown schema version {other}"
                )))
            }
        }
        Ok(Self {
            conn,
            cap: None,
            eviction_log: EvictionLog::default(),
        })
    }

    /// Keep the room database within about `bytes` (a room's disk quota): the file never
    /// grows beyond it (`max_page_count`), and an append that would not fit first deletes
    /// the oldest events (see [`append`](Self::append)). The WAL is checkpointed and
    /// truncated often enough to stay under about a quarter of the cap. A room stored under
    /// a higher cap (or none) is brought under this one now, oldest history first.
    pub fn set_max_bytes(&mut self, bytes: u64) -> Result<Option<Eviction>, StoreError> {
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let page_size = page_size.max(512) as u64;
        let pages = (bytes / page_size).max(16);
        // Cannot go below the file's current size (a lower cap than the file's): then the
        // file stays that large, its free pages reused, and the cap applies to what is used.
        let _: i64 = self
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
        // SQLite checkpoints every 1000 pages (4 MiB) by default: for a small cap, sooner,
        // and the WAL file is cut back after each checkpoint.
        let checkpoint_pages = (pages / 8).clamp(16, 1000);
        let _: i64 = self.conn.query_row(
            &format!("PRAGMA wal_autocheckpoint = {checkpoint_pages}"),
            [],
            |r| r.get(0),
        )?;
        let _: i64 = self.conn.query_row(
            &format!(
                "PRAGMA journal_size_limit = {}",
                checkpoint_pages * page_size
            ),
            [],
            |r| r.get(0),
        )?;
        self.cap = Some(Cap { pages, page_size });
        self.make_room(0)
    }

    /// Pages of the database file in use (not free).
    fn used_pages(&self) -> Result<u64, StoreError> {
        let used: i64 = self.conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())",
            [],
            |r| r.get(0),
        )?;
        Ok(used.max(0) as u64)
    }

    /// Pages storing an event of `json_len` bytes may take, generously: its record and
    /// overflow pages, and b-tree pages split on the way (events, dedupe and its index,
    /// presence).
    fn pages_needed(cap: Cap, json_len: usize) -> u64 {
        let usable = cap.page_size.saturating_sub(40).max(1);
        (json_len as u64 + EVENT_OVERHEAD as u64).div_ceil(usable) + 8
    }

    /// If `needed` more pages would not fit under the cap, delete the oldest events until
    /// the database is back to about 90 % of it (and `needed` fits).
    fn make_room(&mut self, needed: u64) -> Result<Option<Eviction>, StoreError> {
        let Some(cap) = self.cap else {
            return Ok(None);
        };
        if self.used_pages()? + needed <= cap.pages {
            return Ok(None);
        }
        let chunk = (cap.pages / 10)
            .min(MAX_EVICTION_CHUNK / cap.page_size)
            .max(1);
        self.evict_to(cap.pages.saturating_sub(chunk + needed))
    }

    /// Delete the oldest events until at most `target` pages are in use (or no event is
    /// left), then checkpoint the WAL as after retention.
    fn evict_to(&mut self, target: u64) -> Result<Option<Eviction>, StoreError> {
        let Some(cap) = self.cap else {
            return Ok(None);
        };
        if self.used_pages()? <= target {
            return Ok(None);
        }
        // Start the deletions on an empty WAL: it then holds at most what they write, not
        // that on top of a checkpoint interval's worth.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let mut evicted: Option<Eviction> = None;
        // Each round deletes at least one event; sizes are estimated, so a few rounds may
        // be needed (the next one measures again).
        for _ in 0..64 {
            let used = self.used_pages()?;
            if used <= target {
                break;
            }
            let to_free = ((used - target) * cap.page_size) as i64;
            let cutoff: Option<i64> = {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT seq, octet_length(json) FROM events ORDER BY seq")?;
                let mut rows = stmt.query([])?;
                let (mut freed, mut cutoff) = (0i64, None);
                while let Some(row) = rows.next()? {
                    cutoff = Some(row.get::<_, i64>(0)?);
                    freed += row.get::<_, i64>(1)? + EVENT_OVERHEAD;
                    if freed >= to_free {
                        break;
                    }
                }
                cutoff
            };
            let Some(cutoff) = cutoff else {
                break; // nothing left to delete
            };
            let tx = self.conn.transaction()?;
            let events = delete_through(&tx, cutoff)?;
            tx.commit()?;
            let round = Eviction {
                events,
                through_seq: cutoff as u64,
            };
            evicted = Some(round.and(evicted));
        }
        if let Some(evicted) = evicted {
            // The WAL still holds copies of the deleted events' pages: write them back
            // (overwritten, `secure_delete`) and empty it.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            if let Some((evictions, events)) = self.eviction_log.note(&evicted, Instant::now()) {
                tracing::warn!(
                    evictions,
                    events,
                    through_seq = evicted.through_seq,
                    cap_kib = cap.pages * cap.page_size / 1024,
                    "the room database reached its size cap: the oldest history was deleted to make room"
                );
            }
        }
        Ok(evicted)
    }

    /// After an append failed as on a full disk: was it the cap (the file is at its page
    /// limit and `needed` more pages do not fit), rather than the disk?
    fn at_cap(&self, needed: u64) -> Result<bool, StoreError> {
        if self.cap.is_none() {
            return Ok(false);
        }
        let (pages, free, max): (i64, i64, i64) = self.conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT freelist_count FROM pragma_freelist_count()), (SELECT max_page_count FROM pragma_max_page_count())",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok((free as u64) < needed && pages as u64 + needed > max as u64)
    }

    fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|v| v as u64))
    }

    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The room's salt, stored as `new_salt` on first use.
    pub fn salt(&mut self, new_salt: Salt) -> Result<Salt, StoreError> {
        Ok(match self.meta_blob("salt")? {
            Some(bytes) => bytes
                .try_into()
                .map_err(|_| StoreError::Corrupt("bad salt".into()))?,
            None => {
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('salt', ?1)",
                    params![new_salt.to_vec()],
                )?;
                new_salt
            }
        })
    }

    /// The verifier of the passphrase the room is bound to (see `binding`); `None` for a new
    /// room or one stored before rooms were bound to their passphrase.
    pub fn verifier(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.meta_blob("verifier")
    }

    /// Bind the room to the passphrase whose verifier this is.
    pub fn set_verifier(&mut self, verifier: &Verifier) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('verifier', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![verifier.to_vec()],
        )?;
        Ok(())
    }

    /// Whether the room has (or had) any history: a brand-new database has none.
    pub fn has_history(&self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM events) OR EXISTS(SELECT 1 FROM meta WHERE key = 'pruned_through')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Rebuild the database file (`VACUUM`) so that nothing deleted before `secure_delete`
    /// was on (a database from an older version) stays in free pages or free space.
    pub fn wipe_free_space(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("VACUUM")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Load the room, creating its salt and epoch on first use. Keeps the newest `keep` events.
    pub fn load(
        &mut self,
        keep: usize,
        new_salt: Salt,
        new_epoch: Epoch,
    ) -> Result<Loaded, StoreError> {
        let salt = self.salt(new_salt)?;
        let _: &[u8; SALT_LEN] = &salt;
        let epoch = match self.meta_blob("epoch")? {
            Some(bytes) => {
                String::from_utf8(bytes).map_err(|_| StoreError::Corrupt("bad epoch".into()))?
            }
            None => {
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('epoch', ?1)",
                    params![new_epoch.as_bytes()],
                )?;
                new_epoch
            }
        };
        let max_seq: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
        // Retention may have removed every event; numbering continues after the pruned ones.
        let pruned_through = self.meta_u64("pruned_through")?.unwrap_or(0);
        let next_seq = max_seq.map_or(0, |s| s as u64).max(pruned_through) + 1;
        let min_seq: Option<i64> = self
            .conn
            .query_row("SELECT MIN(seq) FROM events", [], |r| r.get(0))?;
        let oldest_seq = min_seq.map_or(next_seq, |s| s as u64);
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM events ORDER BY seq DESC LIMIT ?1")?;
        let mut recent = stmt
            .query_map(params![keep as i64], |r| r.get::<_, String>(0))?
            .map(|json| {
                let json = json?;
                StoredEvent::decode(&json)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        recent.reverse();
        drop(stmt);
        let mut stmt = self
            .conn
            .prepare("SELECT client_id, highest FROM dedupe ORDER BY touched")?;
        let dedupe = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        let mut stmt = self
            .conn
            .prepare("SELECT nick, client_id FROM present ORDER BY nick_key")?;
        let present = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Loaded {
            salt,
            epoch,
            recent,
            next_seq,
            dedupe,
            present,
            oldest_seq,
        })
    }

    /// The oldest stored event's sequence number.
    pub fn oldest_seq(&self) -> Result<Option<u64>, StoreError> {
        let min: Option<i64> = self
            .conn
            .query_row("SELECT MIN(seq) FROM events", [], |r| r.get(0))?;
        Ok(min.map(|s| s as u64))
    }

    /// Up to `limit` stored events older than `before_seq`, oldest first, and whether even
    /// older ones exist.
    #[cfg(test)]
    pub fn page(
        &self,
        before_seq: u64,
        limit: usize,
    ) -> Result<(Vec<RoomEvent>, bool), StoreError> {
        let (rows, more) = self.page_json(before_seq, limit, usize::MAX)?;
        Ok((Self::decode_events(&rows)?, more))
    }

    /// [`page`](Self::page) as the stored JSON of each event, to be decoded (with
    /// [`decode_events`](Self::decode_events)) without holding the database: the newest up to
    /// `limit` events before `before_seq` whose JSON adds up to at most `max_bytes` (at least
    /// one), so a page never reads more than it can send.
    pub fn page_json(
        &self,
        before_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT json FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2")?;
        let mut rows = stmt.query(params![
            before_seq.min(i64::MAX as u64) as i64,
            limit as i64 + 1
        ])?;
        let (mut page, mut size, mut more) = (Vec::new(), 0, false);
        while let Some(row) = rows.next()? {
            let json: String = row.get(0)?;
            size += json.len() + 1;
            if page.len() == limit || (!page.is_empty() && size > max_bytes) {
                more = true;
                break;
            }
            page.push(json);
        }
        page.reverse();
        Ok((page, more))
    }

    /// Decode events stored as JSON.
    pub fn decode_events(rows: &[String]) -> Result<Vec<RoomEvent>, StoreError> {
        rows.iter().map(|json| StoredEvent::decode(json)).collect()
    }

    /// Delete the events `retention` no longer keeps, and the dedupe state of the least
    /// recently seen clients beyond [`MAX_DEDUPE_CLIENTS`]. Returns the number of events removed.
    pub fn prune(&mut self, retention: Retention, now_ms: u64) -> Result<usize, StoreError> {
        let tx = self.conn.transaction()?;
        let max_seq: Option<i64> = tx.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
        let Some(max_seq) = max_seq else {
            return Ok(0);
        };
        let mut cutoff: i64 = 0; // delete seq <= cutoff
        if let Some(max_events) = retention.max_events {
            cutoff = cutoff.max(max_seq - max_events.min(i64::MAX as u64) as i64);
        }
        if let Some(max_age) = retention.max_age_ms {
            let oldest_time = now_ms.saturating_sub(max_age) as i64;
            let newest_too_old: Option<i64> = tx.query_row(
                "SELECT MAX(seq) FROM events WHERE time_ms < ?1",
                params![oldest_time],
                |r| r.get(0),
            )?;
            cutoff = cutoff.max(newest_too_old.unwrap_or(0));
        }
        let removed = if cutoff > 0 {
            delete_through(&tx, cutoff)?
        } else {
            0
        };
        tx.execute(
            "DELETE FROM dedupe WHERE client_id NOT IN
             (SELECT client_id FROM dedupe ORDER BY touched DESC LIMIT ?1)",
            params![MAX_DEDUPE_CLIENTS as i64],
        )?;
        tx.execute(
            "DELETE FROM upload_dedupe WHERE client_id NOT IN
             (SELECT client_id FROM upload_dedupe ORDER BY touched DESC LIMIT ?1)",
            params![MAX_DEDUPE_CLIENTS as i64],
        )?;
        tx.commit()?;
        if removed > 0 {
            // The WAL still holds copies of the deleted events' pages: write them back
            // (overwritten, `secure_delete`) and empty it.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(removed)
    }

    /// Store an event atomically with its effect: for a chat message from `client`, the
    /// client's new highest message id; for a join by `client` or any leave, the presence
    /// change. Under a size cap, the oldest events are deleted first if it would not fit
    /// (returned, so the room can forget them too); [`StoreError::DiskFull`] only when the
    /// disk is full or the event does not fit even then.
    pub fn append(
        &mut self,
        event: &RoomEvent,
        client: Option<&ClientId>,
    ) -> Result<Option<Eviction>, StoreError> {
        self.append_with(event, client, None)
    }

    /// [`append`](Self::append) for a `file` event: in the same transaction the file's row
    /// (its key, to serve it), the client's new highest upload id, and the end of its
    /// unfinished upload's row — so a file in the room is there exactly once.
    pub fn append_file(
        &mut self,
        event: &RoomEvent,
        client: &ClientId,
        file: &FileRecord,
    ) -> Result<Option<Eviction>, StoreError> {
        self.append_with(event, Some(client), Some(file))
    }

    fn append_with(
        &mut self,
        event: &RoomEvent,
        client: Option<&ClientId>,
        file: Option<&FileRecord>,
    ) -> Result<Option<Eviction>, StoreError> {
        let json = StoredEvent::encode(event)?;
        let needed = self
            .cap
            .map_or(0, |cap| Self::pages_needed(cap, json.len()));
        if self.cap.is_some_and(|cap| needed > cap.pages / 2) {
            // Would take most of a (tiny) cap: refused without deleting history for it.
            return Err(StoreError::DiskFull);
        }
        let evicted = self.make_room(needed)?;
        match self.insert(event, &json, client, file) {
            Ok(()) => Ok(evicted),
            // The estimate fell short (the file is at its page limit): make more room, once.
            Err(StoreError::DiskFull) if self.at_cap(needed)? => {
                let chunk = self.cap.map_or(0, |cap| cap.pages / 10);
                let target = self.used_pages()?.saturating_sub(chunk + needed);
                let more = self.evict_to(target)?;
                self.insert(event, &json, client, file)?;
                Ok(match (evicted, more) {
                    (Some(first), more) => Some(first.and(more)),
                    (None, more) => more,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn insert(
        &mut self,
        event: &RoomEvent,
        json: &str,
        client: Option<&ClientId>,
        file: Option<&FileRecord>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO events (seq, time_ms, json) VALUES (?1, ?2, ?3)",
            params![event.seq as i64, event.time_ms as i64, json],
        )?;
        match (&event.kind, client) {
            (RoomEventKind::Message { msg_id, .. }, Some(client)) => {
                tx.execute(
                    "INSERT INTO dedupe (client_id, highest, touched) VALUES (?1, ?2, ?3)
                     ON CONFLICT(client_id) DO UPDATE SET highest = excluded.highest, touched = excluded.touched",
                    params![client, *msg_id as i64, event.seq as i64],
                )?;
            }
            (RoomEventKind::Join { nick }, Some(client)) => {
                tx.execute(
                    "INSERT OR REPLACE INTO present (nick_key, nick, client_id) VALUES (?1, ?2, ?3)",
                    params![nick_key(nick), nick, client],
                )?;
            }
            (RoomEventKind::Leave { nick, .. }, _) => {
                // By nickname too: rows stored under an older version's key (the nickname
                // rules changed, #12) must not outlive their member.
                tx.execute(
                    "DELETE FROM present WHERE nick_key = ?1 OR nick = ?2",
                    params![nick_key(nick), nick],
                )?;
            }
            (RoomEventKind::File { upload_id, .. }, Some(client)) => {
                tx.execute(
                    "INSERT INTO upload_dedupe (client_id, highest, touched) VALUES (?1, ?2, ?3)
                     ON CONFLICT(client_id) DO UPDATE SET highest = MAX(highest, excluded.highest), touched = excluded.touched",
                    params![client, *upload_id as i64, event.seq as i64],
                )?;
                if let Some(file) = file {
                    tx.execute(
                        "INSERT OR REPLACE INTO files (file_id, seq, size, file_key) VALUES (?1, ?2, ?3, ?4)",
                        params![file.file_id as i64, event.seq as i64, file.size as i64, &file.key[..]],
                    )?;
                    tx.execute(
                        "DELETE FROM uploads WHERE client_id = ?1 AND upload_id = ?2",
                        params![client, *upload_id as i64],
                    )?;
                }
            }
            _ => {}
        }
        tx.commit()?;
        Ok(())
    }

    /// The files the room keeps, the unfinished uploads, and each client's highest upload id
    /// put in the room.
    pub fn load_files(&self) -> Result<StoredFiles, StoreError> {
        let key_of = |blob: Vec<u8>| -> Result<[u8; 32], StoreError> {
            blob.try_into()
                .map_err(|_| StoreError::Corrupt("a file key is not 32 bytes".into()))
        };
        let mut stmt = self.conn.prepare(
            "SELECT file_id, seq, size, file_key FROM files WHERE gone = 0 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut finished = Vec::with_capacity(rows.len());
        for (file_id, seq, size, key) in rows {
            finished.push((
                seq,
                FileRecord {
                    file_id,
                    size,
                    key: key_of(key)?,
                },
            ));
        }
        drop(stmt);
        let gone = self
            .conn
            .prepare("SELECT file_id FROM files WHERE gone = 1 ORDER BY seq")?
            .query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT client_id, upload_id, file_id, file_key, name, size, mime, sha256, source FROM uploads",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)? as u64,
                    r.get::<_, String>(6)?,
                    r.get::<_, Vec<u8>>(7)?,
                    r.get::<_, String>(8)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut uploads = Vec::with_capacity(rows.len());
        for (client_id, upload_id, file_id, key, name, size, mime, sha256, source) in rows {
            uploads.push(UploadRecord {
                client_id,
                upload_id,
                file: FileRecord {
                    file_id,
                    size,
                    key: key_of(key)?,
                },
                name,
                mime,
                sha256: key_of(sha256)?,
                source,
            });
        }
        drop(stmt);
        let mut stmt = self
            .conn
            .prepare("SELECT client_id, highest FROM upload_dedupe ORDER BY touched")?;
        let highest = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoredFiles {
            finished,
            gone,
            uploads,
            highest,
        })
    }

    /// The highest upload id `client_id` has put in the room, if the database remembers it
    /// (for a client the host's memory has forgotten).
    pub fn upload_highest(&self, client_id: &str) -> Result<Option<u64>, StoreError> {
        let highest: Option<i64> = self
            .conn
            .query_row(
                "SELECT highest FROM upload_dedupe WHERE client_id = ?1",
                params![client_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(highest.map(|h| h as u64))
    }

    /// Record an unfinished upload (before any of it is stored), so it resumes after a restart.
    pub fn insert_upload(&mut self, upload: &UploadRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO uploads (client_id, upload_id, file_id, file_key, name, size, mime, sha256, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                upload.client_id,
                upload.upload_id as i64,
                upload.file.file_id as i64,
                &upload.file.key[..],
                upload.name,
                upload.file.size as i64,
                upload.mime,
                &upload.sha256[..],
                upload.source,
            ],
        )?;
        Ok(())
    }

    /// Forget an unfinished upload (cancelled, expired, corrupt or replaced).
    pub fn delete_upload(&mut self, client_id: &str, upload_id: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM uploads WHERE client_id = ?1 AND upload_id = ?2",
            params![client_id, upload_id as i64],
        )?;
        Ok(())
    }

    /// A kept file is gone (it gave way to the quota, or its stored copy is lost); its event
    /// stays, and so does the row, to answer `gone` until the event leaves too.
    pub fn file_gone(&mut self, file_id: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE files SET gone = 1, file_key = zeroblob(32) WHERE file_id = ?1",
            params![file_id as i64],
        )?;
        Ok(())
    }
}

/// A file the room keeps: its id, content size and file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub file_id: u64,
    pub size: u64,
    pub key: [u8; 32],
}

/// An unfinished upload as the database keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub client_id: ClientId,
    pub upload_id: u64,
    pub file: FileRecord,
    /// The safe name.
    pub name: String,
    pub mime: String,
    pub sha256: [u8; 32],
    /// The sender's source address (for the per-address limit).
    pub source: String,
}

/// What [`Store::load_files`] finds.
#[derive(Debug, Default)]
pub struct StoredFiles {
    /// Files kept, with their event's sequence number, oldest first.
    pub finished: Vec<(u64, FileRecord)>,
    /// Files no longer kept whose events are still in the room.
    pub gone: Vec<u64>,
    pub uploads: Vec<UploadRecord>,
    /// Highest upload id in the room per client id, least recently updated first.
    pub highest: Vec<(ClientId, u64)>,
}

/// Delete the events through `cutoff` (the oldest ones) and remember that numbering goes on
/// after them. Returns how many were deleted.
fn delete_through(tx: &rusqlite::Transaction<'_>, cutoff: i64) -> Result<usize, StoreError> {
    let removed = tx.execute("DELETE FROM events WHERE seq <= ?1", params![cutoff])?;
    // A file leaves with its event.
    tx.execute("DELETE FROM files WHERE seq <= ?1", params![cutoff])?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('pruned_through', ?1)
         ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
        params![cutoff],
    )?;
    Ok(removed)
}

/// Create the database file `path` as `0600` if it is missing and make the room's files
/// `0600` if they are more open; warn when the directory `dir` is open to other users.
fn make_private(dir: &Path, path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:o}", mode & 0o777),
                "the data directory is open to other users; the room's files in it are kept private, but consider chmod 700"
            );
        }
        // A room file that is a symbolic link (planted in a directory others can write, or
        // by mistake) would make SQLite write the room's history, or overwrite a WAL header,
        // wherever it points: refused, and never followed.
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = dir.join(format!("{DB_FILE}{suffix}"));
            if let Ok(meta) = std::fs::symlink_metadata(&file) {
                if !meta.file_type().is_file() {
                    return Err(std::io::Error::other(format!(
                        "{} is a symbolic link or not a regular file; refusing to use it",
                        file.display()
                    )));
                }
            }
        }
        // A write-ahead log or rollback journal without its database (a move of the room's
        // files interrupted, or files moved by hand) would be applied to a new, empty
        // database: the old room's pages in the new room, or a damaged one. Refused.
        if std::fs::symlink_metadata(path).is_err() {
            for suffix in ["-wal", "-journal"] {
                let file = dir.join(format!("{DB_FILE}{suffix}"));
                if std::fs::symlink_metadata(&file).is_ok_and(|m| m.len() > 0) {
                    return Err(std::io::Error::other(format!(
                        "{} is there without its database {}; move it away (with any other \
                         {DB_FILE} files) to start a new room",
                        file.display(),
                        path.display()
                    )));
                }
            }
        }
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?
            .metadata()?;
        // The file opened is the one at `path`, not one a link put there meanwhile pointed to.
        let at_path = std::fs::symlink_metadata(path)?;
        if !at_path.file_type().is_file()
            || (at_path.dev(), at_path.ino()) != (opened.dev(), opened.ino())
        {
            return Err(std::io::Error::other(format!(
                "{} changed while it was opened; refusing to use it",
                path.display()
            )));
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = dir.join(format!("{DB_FILE}{suffix}"));
            if let Ok(meta) = std::fs::symlink_metadata(&file) {
                if meta.permissions().mode() & 0o077 != 0 {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, path);
    Ok(())
}

/// A room event as the database keeps it: the JSON object written since the first version,
/// `{"seq":…,"time_ms":…,"kind":"message","from":…,"text":…,"msg_id":…,"author":…}` (no
/// `author` when empty), `"kind":"join","nick":…` or `"kind":"leave","nick":…,"reason":…`.
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    seq: u64,
    time_ms: u64,
    #[serde(flatten)]
    kind: StoredKind,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredKind {
    Message {
        from: String,
        text: String,
        msg_id: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        author: String,
    },
    Join {
        nick: String,
    },
    Leave {
        nick: String,
        reason: StoredLeaveReason,
    },
    File(StoredFile),
}

/// A `file` event as the database keeps it: `"kind":"file","from":…,"file_id":…,"name":…,
/// "size":…,"mime":…,"sha256":"<64 hex digits>","upload_id":…,"author":…` (no `author` when
/// empty).
#[derive(Serialize, Deserialize)]
struct StoredFile {
    from: String,
    file_id: u64,
    name: String,
    size: u64,
    mime: String,
    #[serde(with = "hex_digest")]
    sha256: crate::message::Sha256,
    upload_id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    author: String,
}

/// A SHA-256 as 64 hex digits.
mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digest: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(digest))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&text, &mut digest)
            .map_err(|_| serde::de::Error::custom("sha256 is not 64 hex digits"))?;
        Ok(digest)
    }
}

impl TryFrom<&RoomEventKind> for StoredKind {
    type Error = StoreError;

    fn try_from(kind: &RoomEventKind) -> Result<Self, StoreError> {
        Ok(match kind.clone() {
            RoomEventKind::Message {
                from,
                text,
                msg_id,
                author,
            } => StoredKind::Message {
                from,
                text,
                msg_id,
                author,
            },
            RoomEventKind::Join { nick } => StoredKind::Join { nick },
            RoomEventKind::Leave { nick, reason } => StoredKind::Leave {
                nick,
                reason: match reason {
                    LeaveReason::Quit => StoredLeaveReason::Quit,
                    LeaveReason::ConnectionLost => StoredLeaveReason::ConnectionLost,
                    LeaveReason::Renamed => StoredLeaveReason::Renamed,
                    LeaveReason::Other => return Err(StoreError::Unstorable),
                },
            },
            RoomEventKind::File {
                from,
                file_id,
                name,
                size,
                mime,
                sha256,
                upload_id,
                author,
            } => StoredKind::File(StoredFile {
                from,
                file_id,
                name,
                size,
                mime,
                sha256,
                upload_id,
                author,
            }),
            RoomEventKind::Other => return Err(StoreError::Unstorable),
        })
    }
}

impl From<StoredKind> for RoomEventKind {
    fn from(kind: StoredKind) -> Self {
        match kind {
            StoredKind::Message {
                from,
                text,
                msg_id,
                author,
            } => RoomEventKind::Message {
                from,
                text,
                msg_id,
                author,
            },
            StoredKind::Join { nick } => RoomEventKind::Join { nick },
            StoredKind::Leave { nick, reason } => RoomEventKind::Leave {
                nick,
                reason: match reason {
                    StoredLeaveReason::Quit => LeaveReason::Quit,
                    StoredLeaveReason::ConnectionLost => LeaveReason::ConnectionLost,
                    StoredLeaveReason::Renamed => LeaveReason::Renamed,
                },
            },
            StoredKind::File(StoredFile {
                from,
                file_id,
                name,
                size,
                mime,
                sha256,
                upload_id,
                author,
            }) => RoomEventKind::File {
                from,
                file_id,
                name,
                size,
                mime,
                sha256,
                upload_id,
                author,
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredLeaveReason {
    Quit,
    ConnectionLost,
    Renamed,
}

impl StoredEvent {
    fn encode(event: &RoomEvent) -> Result<String, StoreError> {
        let stored = StoredEvent {
            seq: event.seq,
            time_ms: event.time_ms,
            kind: StoredKind::try_from(&event.kind)?,
        };
        serde_json::to_string(&stored).map_err(StoreError::Encode)
    }

    fn decode(json: &str) -> Result<RoomEvent, StoreError> {
        let stored: StoredEvent = serde_json::from_str(json).map_err(StoreError::BadEvent)?;
        Ok(RoomEvent {
            seq: stored.seq,
            time_ms: stored.time_ms,
            kind: stored.kind.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, text: &str) -> RoomEvent {
        RoomEvent {
            seq,
            time_ms: seq * 10,
            kind: RoomEventKind::Message {
                from: "ana".into(),
                text: text.into(),
                msg_id: seq,
                author: String::new(),
            },
        }
    }

    /// Rows exactly as version 1 wrote them (its `RoomEvent` as JSON), one of each kind and
    /// reason, and a message from before author tags: they load, page and are written again
    /// byte for byte, whatever the wire encoding.
    const VERSION_1_ROWS: [&str; 6] = [
        r#"{"seq":1,"time_ms":1000,"kind":"join","nick":"ana"}"#,
        r#"{"seq":2,"time_ms":2000,"kind":"message","from":"ana","text":"hola \"tú\"\n","msg_id":1,"author":"0011223344556677"}"#,
        r#"{"seq":3,"time_ms":3000,"kind":"message","from":"ana","text":"before author tags","msg_id":2}"#,
        r#"{"seq":4,"time_ms":4000,"kind":"leave","nick":"ana","reason":"renamed"}"#,
        r#"{"seq":5,"time_ms":5000,"kind":"leave","nick":"ben","reason":"connection_lost"}"#,
        r#"{"seq":6,"time_ms":6000,"kind":"leave","nick":"cy","reason":"quit"}"#,
    ];

    #[test]
    fn events_stored_by_version_1_still_load_and_are_stored_the_same_way() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        {
            let mut store = Store::open(&dir).unwrap();
            store.load(10, [7; SALT_LEN], "e".into()).unwrap();
            for (i, json) in VERSION_1_ROWS.iter().enumerate() {
                let seq = i as i64 + 1;
                store
                    .conn
                    .execute(
                        "INSERT INTO events (seq, time_ms, json) VALUES (?1, ?2, ?3)",
                        params![seq, seq * 1000, json],
                    )
                    .unwrap();
            }
        }
        let mut store = Store::open(&dir).unwrap();
        let loaded = store.load(10, [9; SALT_LEN], "other".into()).unwrap();
        assert_eq!(loaded.next_seq, 7);
        let kinds: Vec<RoomEventKind> = loaded.recent.iter().map(|e| e.kind.clone()).collect();
        let message = |text: &str, msg_id, author: &str| RoomEventKind::Message {
            from: "ana".into(),
            text: text.into(),
            msg_id,
            author: author.into(),
        };
        let leave = |nick: &str, reason| RoomEventKind::Leave {
            nick: nick.into(),
            reason,
        };
        assert_eq!(
            kinds,
            [
                RoomEventKind::Join { nick: "ana".into() },
                message("hola \"tú\"\n", 1, "0011223344556677"),
                message("before author tags", 2, ""),
                leave("ana", LeaveReason::Renamed),
                leave("ben", LeaveReason::ConnectionLost),
                leave("cy", LeaveReason::Quit),
            ]
        );
        assert_eq!(loaded.recent[1].time_ms, 2000);
        let (page, more) = store.page(7, 10).unwrap();
        assert_eq!((page, more), (loaded.recent.clone(), false));
        for (event, json) in loaded.recent.iter().zip(VERSION_1_ROWS) {
            assert_eq!(StoredEvent::encode(event).unwrap(), json);
        }
        let unstorable = RoomEvent {
            seq: 7,
            time_ms: 0,
            kind: RoomEventKind::Other,
        };
        assert!(matches!(
            store.append(&unstorable, None),
            Err(StoreError::Unstorable)
        ));
    }

    #[test]
    fn state_survives_reopening() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        {
            let mut store = Store::open(&dir).unwrap();
            let loaded = store.load(10, [7; SALT_LEN], "epoch-1".into()).unwrap();
            assert_eq!((loaded.next_seq, loaded.recent.len()), (1, 0));
            for seq in 1..=5 {
                store
                    .append(
                        &event(seq, &format!("m{seq}")),
                        Some(&"client-a".to_string()),
                    )
                    .unwrap();
            }
        }
        let mut store = Store::open(&dir).unwrap();
        let loaded = store.load(3, [9; SALT_LEN], "epoch-2".into()).unwrap();
        assert_eq!(loaded.salt, [7; SALT_LEN], "salt kept");
        assert_eq!(loaded.epoch, "epoch-1", "epoch kept");
        assert_eq!(loaded.next_seq, 6);
        assert_eq!(
            loaded.recent.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(loaded.dedupe, vec![("client-a".to_string(), 5)]);
        drop(store);
    }

    /// A finished upload commits its event, its file record, the client's highest upload id
    /// and the end of its unfinished row together; the file leaves with its event.
    #[test]
    fn a_file_is_recorded_with_its_event_and_leaves_with_it() {
        let temp = tempfile::tempdir().unwrap();
        let client = "client-a".to_string();
        let file = FileRecord {
            file_id: u64::MAX - 1,
            size: 1234,
            key: [5; 32],
        };
        let upload = UploadRecord {
            client_id: client.clone(),
            upload_id: 3,
            file: file.clone(),
            name: "a.png".into(),
            mime: "image/png".into(),
            sha256: [6; 32],
            source: "127.0.0.1".into(),
        };
        {
            let mut store = Store::open(temp.path()).unwrap();
            store.load(10, [7; SALT_LEN], "epoch".into()).unwrap();
            store.insert_upload(&upload).unwrap();
            let other = UploadRecord {
                upload_id: 4,
                ..upload.clone()
            };
            store.insert_upload(&other).unwrap();
            let stored = store.load_files().unwrap();
            assert_eq!(stored.uploads, vec![upload.clone(), other.clone()]);
            store.append(&event(1, "hi"), Some(&client)).unwrap();
            let shared = RoomEvent {
                seq: 2,
                time_ms: 20,
                kind: RoomEventKind::File {
                    from: "ana".into(),
                    file_id: file.file_id,
                    name: "a.png".into(),
                    size: 1234,
                    mime: "image/png".into(),
                    sha256: [6; 32],
                    upload_id: 3,
                    author: "0011223344556677".into(),
                },
            };
            store.append_file(&shared, &client, &file).unwrap();
        }
        let mut store = Store::open(temp.path()).unwrap();
        let loaded = store.load(10, [7; SALT_LEN], "epoch".into()).unwrap();
        assert!(matches!(
            loaded.recent[1].kind,
            RoomEventKind::File { upload_id: 3, .. }
        ));
        let stored = store.load_files().unwrap();
        assert_eq!(stored.finished, vec![(2, file.clone())]);
        assert_eq!(stored.highest, vec![(client.clone(), 3)]);
        assert_eq!(
            stored
                .uploads
                .iter()
                .map(|u| u.upload_id)
                .collect::<Vec<_>>(),
            vec![4],
            "the finished upload's row is gone, the other stays"
        );
        store.delete_upload(&client, 4).unwrap();
        store.file_gone(file.file_id).unwrap();
        let stored = store.load_files().unwrap();
        assert!(stored.finished.is_empty());
        assert_eq!(
            stored.gone,
            vec![file.file_id],
            "gone while its event stays"
        );
        store
            .prune(
                Retention {
                    max_events: Some(0),
                    max_age_ms: None,
                },
                0,
            )
            .unwrap();
        let stored = store.load_files().unwrap();
        assert!(
            stored.finished.is_empty() && stored.gone.is_empty(),
            "the file left with its event"
        );
        assert!(stored.uploads.is_empty());
        assert_eq!(stored.highest, vec![(client, 3)], "exactly once still");
    }

    #[test]
    fn a_file_event_is_stored_as_before_and_a_bad_digest_is_a_bad_event() {
        let event = RoomEvent {
            seq: 2,
            time_ms: 20,
            kind: RoomEventKind::File {
                from: "ana".into(),
                file_id: u64::MAX - 1,
                name: "a.png".into(),
                size: 1234,
                mime: "image/png".into(),
                sha256: [0xab; 32],
                upload_id: 3,
                author: "0011223344556677".into(),
            },
        };
        let json = format!(
            r#"{{"seq":2,"time_ms":20,"kind":"file","from":"ana","file_id":18446744073709551614,"name":"a.png","size":1234,"mime":"image/png","sha256":"{}","upload_id":3,"author":"0011223344556677"}}"#,
            "ab".repeat(32)
        );
        assert_eq!(StoredEvent::encode(&event).unwrap(), json);
        assert_eq!(StoredEvent::decode(&json).unwrap(), event);
        let no_author = json.replace(r#","author":"0011223344556677""#, "");
        assert!(matches!(
            StoredEvent::decode(&no_author).unwrap().kind,
            RoomEventKind::File { author, .. } if author.is_empty()
        ));
        for bad in ["ab", &"zz".repeat(32)] {
            let json = json.replace(&"ab".repeat(32), bad);
            assert!(matches!(
                StoredEvent::decode(&json),
                Err(StoreError::BadEvent(_))
            ));
        }
    }

    /// The highest upload id per client is found by client id (for a client the host's
    /// memory forgot), and the table is indexed by `touched` for pruning — also in a database
    /// written before the index existed.
    #[test]
    fn upload_highest_is_looked_up_and_indexed_also_in_an_older_database() {
        let temp = tempfile::tempdir().unwrap();
        let client = "client-a".to_string();
        let shared = |seq, upload_id| RoomEvent {
            seq,
            time_ms: 0,
            kind: RoomEventKind::File {
                from: "ana".into(),
                file_id: seq,
                name: "a".into(),
                size: 1,
                mime: String::new(),
                sha256: [0; 32],
                upload_id,
                author: String::new(),
            },
        };
        let record = |file_id| FileRecord {
            file_id,
            size: 1,
            key: [1; 32],
        };
        {
            let mut store = Store::open(temp.path()).unwrap();
            store.load(10, [7; SALT_LEN], "epoch".into()).unwrap();
            assert_eq!(store.upload_highest(&client).unwrap(), None);
            store
                .append_file(&shared(1, 5), &client, &record(1))
                .unwrap();
            store
                .append_file(&shared(2, 4), &client, &record(2))
                .unwrap();
            assert_eq!(store.upload_highest(&client).unwrap(), Some(5));
            assert_eq!(store.upload_highest("someone else").unwrap(), None);
            // As a database of the previous version: no index.
            store
                .conn
                .execute("DROP INDEX upload_dedupe_touched", [])
                .unwrap();
        }
        let store = Store::open(temp.path()).unwrap();
        let plan: String = store
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT client_id FROM upload_dedupe ORDER BY touched DESC LIMIT 5",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("upload_dedupe_touched"), "{plan}");
        assert_eq!(store.upload_highest(&client).unwrap(), Some(5));
    }

    #[test]
    fn a_leave_removes_a_presence_stored_under_an_older_nickname_key() {
        let temp = tempfile::tempdir().unwrap();
        let mut store = Store::open(temp.path()).unwrap();
        store.load(10, [1; SALT_LEN], "e".into()).unwrap();
        // As an earlier version stored it: its key was the lower-cased nickname.
        store
            .conn
            .execute(
                "INSERT INTO present (nick_key, nick, client_id) VALUES ('ｊｏｓé', 'Ｊｏｓé', 'c')",
                [],
            )
            .unwrap();
        let leave = RoomEvent {
            seq: 1,
            time_ms: 0,
            kind: RoomEventKind::Leave {
                nick: "Ｊｏｓé".into(),
                reason: crate::message::LeaveReason::ConnectionLost,
            },
        };
        store.append(&leave, None).unwrap();
        let loaded = store.load(10, [1; SALT_LEN], "e".into()).unwrap();
        assert!(loaded.present.is_empty(), "{:?}", loaded.present);
    }

    #[test]
    fn a_second_server_on_the_same_directory_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut first = Store::open(&dir).unwrap();
        first.load(10, [1; SALT_LEN], "e".into()).unwrap();
        assert!(
            matches!(Store::open(&dir), Err(StoreError::Locked)),
            "second opener must be refused"
        );
        drop(first);
        assert!(Store::open(&dir).is_ok());
    }

    #[test]
    fn garbage_file_is_reported_as_corrupt() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DB_FILE), vec![0x42u8; 8192]).unwrap();
        assert!(matches!(
            Store::open(&dir),
            Err(StoreError::Corrupt(_) | StoreError::Damaged(_))
        ));
    }

    #[test]
    fn presence_is_kept_until_the_leave() {
        let mut store = Store::in_memory().unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        let join = |seq, nick: &str| RoomEvent {
            seq,
            time_ms: 0,
            kind: RoomEventKind::Join { nick: nick.into() },
        };
        store
            .append(&join(1, "Ana"), Some(&"c-ana".into()))
            .unwrap();
        store.append(&join(2, "Bo"), Some(&"c-bo".into())).unwrap();
        let leave = RoomEvent {
            seq: 3,
            time_ms: 0,
            kind: RoomEventKind::Leave {
                nick: "ANA".into(),
                reason: crate::message::LeaveReason::Quit,
            },
        };
        store.append(&leave, None).unwrap();
        let loaded = store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        assert_eq!(loaded.present, vec![("Bo".to_string(), "c-bo".to_string())]);
    }

    #[test]
    fn retention_by_count_and_age_and_paging() {
        let mut store = Store::in_memory().unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        for seq in 1..=20 {
            store.append(&event(seq, "x"), None).unwrap(); // time_ms = seq * 10
        }
        let (page, more) = store.page(21, 5).unwrap();
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![16, 17, 18, 19, 20]
        );
        assert!(more);
        let (page, more) = store.page(3, 5).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!more);

        let by_count = Retention {
            max_events: Some(15),
            max_age_ms: None,
        };
        assert_eq!(store.prune(by_count, 0).unwrap(), 5);
        assert_eq!(store.page(7, 100).unwrap(), (vec![event(6, "x")], false));
        // Events with time_ms < 1000 - 850 = 150 (seq 6..=14) are too old.
        let by_age = Retention {
            max_events: None,
            max_age_ms: Some(850),
        };
        assert_eq!(store.prune(by_age, 1000).unwrap(), 9);
        let loaded = store.load(100, [0; SALT_LEN], "e".into()).unwrap();
        assert_eq!((loaded.oldest_seq, loaded.next_seq), (15, 21));

        // Everything pruned: numbering still continues.
        let all = Retention {
            max_events: Some(0),
            max_age_ms: None,
        };
        store.prune(all, 0).unwrap();
        let loaded = store.load(100, [0; SALT_LEN], "e".into()).unwrap();
        assert_eq!(
            (loaded.recent.len(), loaded.next_seq, loaded.oldest_seq),
            (0, 21, 21)
        );
    }

    fn file_len(dir: &Path, suffix: &str) -> u64 {
        std::fs::metadata(dir.join(format!("{DB_FILE}{suffix}"))).map_or(0, |m| m.len())
    }

    #[test]
    fn at_the_cap_the_oldest_history_gives_way_and_dedupe_state_and_numbering_stay() {
        const CAP: u64 = 256 * 1024;
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut store = Store::open(&dir).unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        assert_eq!(store.set_max_bytes(CAP).unwrap(), None, "nothing to evict");
        let message = |seq: u64, client: &str| RoomEvent {
            seq,
            time_ms: seq,
            kind: RoomEventKind::Message {
                from: client.into(),
                text: format!("{seq:04} {}", "z".repeat(8000)),
                msg_id: seq,
                author: String::new(),
            },
        };
        // Client b says one thing, first; client a then writes ten times the cap.
        store.append(&message(1, "b"), Some(&"b".into())).unwrap();
        let (mut evictions, mut last) = (0, None);
        let (mut max_db, mut max_wal) = (0, 0);
        for seq in 2..=320 {
            // Never refused: at the cap the oldest events give way.
            if let Some(evicted) = store.append(&message(seq, "a"), Some(&"a".into())).unwrap() {
                evictions += 1;
                assert!(evicted.events > 0 && evicted.through_seq < seq);
                assert!(
                    last.is_none_or(|l: Eviction| evicted.through_seq > l.through_seq),
                    "oldest first"
                );
                last = Some(evicted);
            }
            max_db = max_db.max(file_len(&dir, ""));
            max_wal = max_wal.max(file_len(&dir, "-wal"));
        }
        let last = last.expect("the cap was reached");
        println!("cap {CAP}: {evictions} evictions, largest file {max_db}, largest WAL {max_wal}");
        // A tenth of this cap is three such messages, plus the one that did not fit.
        assert!(
            evictions > 0 && evictions <= 320 / 4,
            "in chunks, not one event at a time: {evictions}"
        );
        assert!(max_db <= CAP, "database file {max_db} over the cap");
        // The WAL: the checkpoint interval (an eighth of the cap, here the floor of 16 pages)
        // and one transaction.
        assert!(max_wal <= 96 * 1024, "WAL {max_wal} beyond its margin");
        let used = store.used_pages().unwrap() * 4096;
        assert!(
            used >= CAP / 2,
            "not more evicted than needed: {used} in use"
        );
        drop(store);

        let mut store = Store::open(&dir).unwrap();
        let loaded = store.load(10_000, [0; SALT_LEN], "e".into()).unwrap();
        assert_eq!(loaded.next_seq, 321, "numbering goes on");
        assert_eq!(loaded.oldest_seq, last.through_seq + 1);
        let seqs: Vec<u64> = loaded.recent.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (last.through_seq + 1..=320).collect::<Vec<_>>(),
            "the newest kept, contiguous"
        );
        assert!(seqs.len() >= 15, "kept {}", seqs.len());
        // b's message is gone from history, not from duplicate suppression: a resend of it
        // is still recognised.
        assert_eq!(
            loaded.dedupe,
            vec![("b".to_string(), 1), ("a".to_string(), 320)]
        );
        assert!(store.has_history().unwrap());
    }

    #[test]
    fn a_room_over_a_lowered_cap_is_brought_under_it_at_start() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut store = Store::open(&dir).unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        for seq in 1..=100 {
            store.append(&event(seq, &"y".repeat(4000)), None).unwrap();
        }
        drop(store);
        let mut store = Store::open(&dir).unwrap();
        let evicted = store.set_max_bytes(128 * 1024).unwrap().expect("evicted");
        assert!(store.used_pages().unwrap() * 4096 <= 128 * 1024);
        let loaded = store.load(1000, [0; SALT_LEN], "e".into()).unwrap();
        assert_eq!(
            (loaded.oldest_seq, loaded.next_seq),
            (evicted.through_seq + 1, 101)
        );
    }

    #[test]
    fn a_message_that_cannot_fit_even_after_eviction_is_refused_and_history_kept() {
        let mut store = Store::in_memory().unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        store.append(&event(1, "kept"), None).unwrap();
        store.set_max_bytes(16 * 4096).unwrap(); // the smallest cap: 16 pages
        let err = store.append(&event(2, &"x".repeat(40_000)), None);
        assert!(matches!(err, Err(StoreError::DiskFull)), "got {err:?}");
        assert_eq!(store.page(10, 10).unwrap(), (vec![event(1, "kept")], false));
    }

    #[test]
    fn evictions_are_logged_at_a_bounded_rate() {
        let mut log = EvictionLog::default();
        let t0 = Instant::now();
        let e = Eviction {
            events: 3,
            through_seq: 9,
        };
        assert_eq!(log.note(&e, t0), Some((1, 3)), "the first at once");
        assert_eq!(log.note(&e, t0 + Duration::from_secs(10)), None);
        assert_eq!(log.note(&e, t0 + Duration::from_secs(59)), None);
        assert_eq!(
            log.note(&e, t0 + Duration::from_secs(60)),
            Some((3, 9)),
            "a minute later, with what was left out"
        );
    }

    #[test]
    fn deleted_history_is_wiped_also_from_a_database_written_without_secure_delete() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let file_has = |needle: &str| {
            ["", "-wal"].iter().any(|suffix| {
                std::fs::read(dir.join(format!("{DB_FILE}{suffix}")))
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
        };
        let mut store = Store::open(&dir).unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        // As an older version wrote it: deletions left in place.
        store
            .conn
            .pragma_update(None, "secure_delete", "OFF")
            .unwrap();
        store.append(&event(1, "old secret 9d2c"), None).unwrap();
        store.append(&event(2, "kept"), None).unwrap();
        let one = Retention {
            max_events: Some(1),
            max_age_ms: None,
        };
        assert_eq!(store.prune(one, 0).unwrap(), 1);
        assert!(file_has("old secret 9d2c"), "left in free space");
        store.wipe_free_space().unwrap();
        assert!(!file_has("old secret 9d2c"));
        assert!(file_has("kept"));
        assert!(store.has_history().unwrap());
        assert!(!Store::in_memory().unwrap().has_history().unwrap());
    }

    #[test]
    fn duplicate_sequence_numbers_are_refused() {
        let mut store = Store::in_memory().unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        store.append(&event(1, "a"), None).unwrap();
        assert!(store.append(&event(1, "again"), None).is_err());
    }

    /// A room file that is a symbolic link is refused, and what it points to is left alone:
    /// the history is never written through a link (one planted in a directory others can
    /// write), nor a WAL header over the file a `-wal` link names.
    #[cfg(unix)]
    #[test]
    fn room_files_that_are_symbolic_links_are_refused_and_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let temp = tempfile::tempdir().unwrap();
            let dir = temp.path().join("data");
            let elsewhere = temp.path().join("victim.txt");
            std::fs::write(&elsewhere, b"not a database").unwrap();
            std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            let link = dir.join(format!("{DB_FILE}{suffix}"));
            std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
            let error = Store::open(&dir).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("symbolic link")),
                "{suffix:?}: {error:?}"
            );
            assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not a database");
            let mode = std::fs::metadata(&elsewhere).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o644,
                "{suffix:?}: the target's mode is untouched"
            );
            assert!(std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
        }
    }

    /// A WAL left without its database (a set-aside interrupted between its files) is not
    /// applied to a new, empty database: the directory is refused, naming the file, and the
    /// file is left as it was.
    #[test]
    fn a_wal_without_its_database_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        {
            let mut store = Store::open(&dir).unwrap();
            store.load(10, [0; SALT_LEN], "e".into()).unwrap();
            store.append(&event(1, "old room secret"), None).unwrap();
        }
        let wal = dir.join(format!("{DB_FILE}-wal"));
        std::fs::write(&wal, b"a WAL of the previous room").unwrap();
        std::fs::remove_file(dir.join(DB_FILE)).unwrap();
        let error = Store::open(&dir).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("without its database") && e.contains("-wal")),
            "{error:?}"
        );
        assert!(!dir.join(DB_FILE).exists(), "no new database was created");
        assert_eq!(std::fs::read(&wal).unwrap(), b"a WAL of the previous room");
        // Once it is moved away, a new room starts.
        std::fs::remove_file(&wal).unwrap();
        Store::open(&dir).unwrap();
    }
}
