//! Durable room state in SQLite (WAL mode): the room's salt and epoch, every room event, and
//! the duplicate-suppression state. The room writes an event (and, for a chat message, the
//! sender's new highest message id) in one transaction **before** it broadcasts or acks it,
//! so an acknowledged message survives a crash of the server process (`kill -9`).
//!
//! `synchronous = NORMAL` in WAL mode: a committed transaction is in the WAL file before the
//! ack goes out, which survives a process crash; an operating-system crash or power loss may
//! lose the last transactions (see `docs/PROTOCOL.md`, Durability).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

use crate::message::{ClientId, Epoch, RoomEvent};
use crate::passphrase::{Salt, SALT_LEN};

/// File name of the room database inside the data directory.
pub const DB_FILE: &str = "room.sqlite3";
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {error}")]
    Directory { path: String, error: std::io::Error },
    #[error("the room database is locked by another running server")]
    Locked,
    #[error("the room database is damaged or not a Tertulia database ({0}); move it away to start a fresh room")]
    Corrupt(String),
    #[error("the disk is full: the message was not stored")]
    DiskFull,
    #[error("room database error: {0}")]
    Sqlite(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Locked,
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Sqlite(e.to_string()),
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
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (or create) the room database in `dir`. A second server on the same directory is
    /// refused with [`StoreError::Locked`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| StoreError::Directory {
            path: dir.display().to_string(),
            error,
        })?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        Self::init(conn)
    }

    /// A throw-away database in memory (tests).
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
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(check));
        }
        conn.execute_batch(
            "BEGIN EXCLUSIVE;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS dedupe (client_id TEXT PRIMARY KEY, highest INTEGER NOT NULL, touched INTEGER NOT NULL);
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
        Ok(Self { conn })
    }

    fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Load the room, creating its salt and epoch on first use. Keeps the newest `keep` events.
    pub fn load(
        &mut self,
        keep: usize,
        new_salt: Salt,
        new_epoch: Epoch,
    ) -> Result<Loaded, StoreError> {
        let salt = match self.meta_blob("salt")? {
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
        };
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
        let next_seq = max_seq.map_or(1, |s| s as u64 + 1);
        let mut stmt = self
            .conn
            .prepare("SELECT json FROM events ORDER BY seq DESC LIMIT ?1")?;
        let mut recent = stmt
            .query_map(params![keep as i64], |r| r.get::<_, String>(0))?
            .map(|json| {
                let json = json?;
                serde_json::from_str::<RoomEvent>(&json)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
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
        Ok(Loaded {
            salt,
            epoch,
            recent,
            next_seq,
            dedupe,
        })
    }

    /// Store an event, and for a chat message the sender's new highest message id, atomically.
    pub fn append(
        &mut self,
        event: &RoomEvent,
        sender: Option<(&ClientId, u64)>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(event).map_err(|e| StoreError::Sqlite(e.to_string()))?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO events (seq, time_ms, json) VALUES (?1, ?2, ?3)",
            params![event.seq as i64, event.time_ms as i64, json],
        )?;
        if let Some((client, highest)) = sender {
            tx.execute(
                "INSERT INTO dedupe (client_id, highest, touched) VALUES (?1, ?2, ?3)
                 ON CONFLICT(client_id) DO UPDATE SET highest = excluded.highest, touched = excluded.touched",
                params![client, highest as i64, event.seq as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::RoomEventKind;

    fn event(seq: u64, text: &str) -> RoomEvent {
        RoomEvent {
            seq,
            time_ms: seq * 10,
            kind: RoomEventKind::Message {
                from: "ana".into(),
                text: text.into(),
                msg_id: seq,
            },
        }
    }

    #[test]
    fn state_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("tertulia-store-{}", rand::random::<u64>()));
        {
            let mut store = Store::open(&dir).unwrap();
            let loaded = store.load(10, [7; SALT_LEN], "epoch-1".into()).unwrap();
            assert_eq!((loaded.next_seq, loaded.recent.len()), (1, 0));
            for seq in 1..=5 {
                store
                    .append(
                        &event(seq, &format!("m{seq}")),
                        Some((&"client-a".to_string(), seq)),
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_server_on_the_same_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("tertulia-store-{}", rand::random::<u64>()));
        let mut first = Store::open(&dir).unwrap();
        first.load(10, [1; SALT_LEN], "e".into()).unwrap();
        assert!(
            matches!(Store::open(&dir), Err(StoreError::Locked)),
            "second opener must be refused"
        );
        drop(first);
        assert!(Store::open(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_file_is_reported_as_corrupt() {
        let dir = std::env::temp_dir().join(format!("tertulia-store-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DB_FILE), vec![0x42u8; 8192]).unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::Corrupt(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn duplicate_sequence_numbers_are_refused() {
        let mut store = Store::in_memory().unwrap();
        store.load(10, [0; SALT_LEN], "e".into()).unwrap();
        store.append(&event(1, "a"), None).unwrap();
        assert!(store.append(&event(1, "again"), None).is_err());
    }
}
