//! Saved rooms: the rooms this app has joined, listed on the start screen to rejoin with one
//! click.
//!
//! - The list is a JSON file in the app's data directory ([`ROOMS_FILE`]), most recent first,
//!   at most [`MAX_ROOMS`] entries, written atomically (a temporary file renamed over it). A
//!   file that cannot be read or parsed is renamed aside (`rooms.json.damaged-<ms>`), never
//!   overwritten, and the window is told so.
//! - A passphrase is kept only when the user asks ("Remember passphrase"), and then only in
//!   the operating system's keyring ([`Keyring`]: the Secret Service on Linux), never in the
//!   file: the file records only *whether* one is remembered.
//! - A room is saved when its connection is actually established (the first `connected`
//!   event of the session `connect` started), not when `connect` is called: a mistyped
//!   address or a wrong passphrase never lands in the list or the keyring, and the nickname
//!   saved is the one the room accepted (after a rename in the nickname dialog).
//! - Rooms this app hosts are not listed: "rejoining" `127.0.0.1` would not start the room
//!   again; the Host form remembers its port instead.
//!
//! After every change the window gets the [`SAVED_ROOMS_EVENT`] event with the new list and
//! what went wrong, if anything ([`RoomsUpdate`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, EventId, Listener, Manager, Runtime, State};
use tertulia_core::client;
use thiserror::Error;

use crate::commands::{self, CommandError};
use crate::forward::CHAT_EVENT;
use crate::session::AppState;

/// The event telling the window the saved rooms changed; payload: [`RoomsUpdate`].
pub const SAVED_ROOMS_EVENT: &str = "saved-rooms";
/// The list's file name in the app's data directory.
pub const ROOMS_FILE: &str = "rooms.json";
/// The most rooms kept; joining another drops the least recently used (and its passphrase).
pub const MAX_ROOMS: usize = 20;
/// The keyring service under which passphrases are stored; the user name is the room's id
/// (its `HOST:PORT`). `secret-tool lookup service chat.tertulia.app username HOST:PORT`.
pub const KEYRING_SERVICE: &str = "chat.tertulia.app";
/// How long one keyring call may take: a locked keyring waits for a prompt nobody may answer.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);
const FILE_VERSION: u32 = 1;

/// One saved room as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRoom {
    /// `HOST:PORT` (`[v6]:PORT`), as joined: the key of the list and of the keyring entry.
    pub id: String,
    /// What the list shows; the address unless renamed.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The nickname the room last accepted.
    pub nick: String,
    /// When it was last joined, ms since the Unix epoch.
    pub last_used_ms: u64,
    /// A passphrase for it is in the keyring.
    pub passphrase_saved: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RoomsFile {
    version: u32,
    rooms: Vec<SavedRoom>,
}

/// What went wrong with the saved rooms, for the window to say (codes it translates, with
/// the technical detail in English).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// "Remember passphrase" was ticked but the keyring could not store it.
    NotRemembered { detail: String },
    /// A remembered passphrase could not be removed from the keyring.
    NotRemoved { detail: String },
    /// The room could not be added to the list (the file could not be written).
    NotSaved { detail: String },
    /// The list's file was damaged or unreadable and has been set aside.
    SetAside { detail: String },
}

/// The saved rooms after a change, and what went wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomsUpdate {
    pub rooms: Vec<SavedRoom>,
    pub problem: Option<Problem>,
}

/// Errors of the list's file.
#[derive(Debug, Error)]
pub enum RoomsError {
    #[error("the app has no data directory for its saved rooms: {0}")]
    NoDataDir(String),
    #[error(
        "the saved rooms list ({path}) could not be read and was set aside as {aside}: {source}"
    )]
    Unreadable {
        path: PathBuf,
        aside: PathBuf,
        source: std::io::Error,
    },
    #[error("the saved rooms list ({path}) could not be read: {source}")]
    Stuck {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the saved rooms list was damaged ({reason}); it was set aside as {aside} and a new list is started")]
    Corrupt { aside: PathBuf, reason: String },
    #[error("the saved rooms list ({path}) could not be written: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("there is no saved room {0}")]
    NotFound(String),
    #[error("{0}")]
    Join(#[from] CommandError),
}

/// As [`CommandError`]: `{"kind", "message", …}` for the window to word in its language.
impl Serialize for RoomsError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let kind = match self {
            Self::Join(e) => return e.serialize(s),
            Self::NotFound(_) => "saved_room_not_found",
            _ => "rooms_file",
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("kind", kind)?;
        map.serialize_entry("message", &self.to_string())?;
        map.end()
    }
}

/// Errors of the keyring.
#[derive(Debug, Error)]
pub enum KeyringError {
    #[error("the system keyring is not available ({0})")]
    Unavailable(String),
    #[error("the system keyring did not answer within {} s (is it locked?)", KEYRING_TIMEOUT.as_secs())]
    Timeout,
    #[error("the system keyring refused: {0}")]
    Failed(String),
}

impl From<keyring::Error> for KeyringError {
    fn from(e: keyring::Error) -> Self {
        match e {
            keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_) => {
                KeyringError::Unavailable(e.to_string())
            }
            other => KeyringError::Failed(other.to_string()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

// ---- the list (pure) ----

/// Put `room` first, keeping the name of an entry with the same id; the list is cut to
/// [`MAX_ROOMS`]. Returns the rooms that fell off the end.
fn upsert(rooms: &mut Vec<SavedRoom>, mut room: SavedRoom) -> Vec<SavedRoom> {
    if let Some(i) = rooms.iter().position(|r| r.id == room.id) {
        let old = rooms.remove(i);
        room.name = old.name;
    }
    rooms.insert(0, room);
    if rooms.len() > MAX_ROOMS {
        rooms.split_off(MAX_ROOMS)
    } else {
        Vec::new()
    }
}

/// The entries of a file as read: bad ones dropped (with a warning), most recent first,
/// duplicates and the overflow removed.
fn tidy(mut rooms: Vec<SavedRoom>) -> Vec<SavedRoom> {
    rooms.retain(|r| {
        let ok = r.port != 0
            && client::is_valid_host(&r.host)
            && r.id == client::join_host_port(&r.host, r.port);
        if !ok {
            tracing::warn!(id = %r.id, "saved room with a bad address dropped");
        }
        ok
    });
    rooms.sort_by_key(|r| std::cmp::Reverse(r.last_used_ms));
    let mut seen = std::collections::HashSet::new();
    rooms.retain(|r| seen.insert(r.id.clone()));
    rooms.truncate(MAX_ROOMS);
    rooms
}

// ---- the file ----

/// The list's file: read whole, written atomically.
#[derive(Debug, Clone)]
pub struct RoomsFileStore {
    path: PathBuf,
}

impl RoomsFileStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved rooms; none when there is no file yet. A file that cannot be read or parsed
    /// is renamed aside and reported (the next load starts afresh).
    pub fn load(&self) -> Result<Vec<SavedRoom>, RoomsError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return match self.set_aside() {
                    Some(aside) => Err(RoomsError::Unreadable {
                        path: self.path.clone(),
                        aside,
                        source,
                    }),
                    None => Err(RoomsError::Stuck {
                        path: self.path.clone(),
                        source,
                    }),
                };
            }
        };
        match serde_json::from_slice::<RoomsFile>(&bytes) {
            Ok(file) => Ok(tidy(file.rooms)),
            Err(e) => {
                let reason = e.to_string();
                match self.set_aside() {
                    Some(aside) => Err(RoomsError::Corrupt { aside, reason }),
                    None => Err(RoomsError::Stuck {
                        path: self.path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
                    }),
                }
            }
        }
    }

    /// Rename the file aside so a new list can start without losing the old one.
    fn set_aside(&self) -> Option<PathBuf> {
        // A name no earlier damaged list has (two can be set aside within one millisecond;
        // renaming onto an existing one would fail, or replace it on some systems).
        let file_name = self.path.file_name()?;
        let stamp = now_ms();
        let aside = (0u32..1000)
            .map(|n| {
                let mut name = file_name.to_os_string();
                name.push(if n == 0 {
                    format!(".damaged-{stamp}")
                } else {
                    format!(".damaged-{stamp}-{n}")
                });
                self.path.with_file_name(name)
            })
            .find(|candidate| !candidate.exists())?;
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => {
                tracing::warn!(from = %self.path.display(), to = %aside.display(), "saved rooms file set aside");
                Some(aside)
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "saved rooms file could not be set aside");
                None
            }
        }
    }

    /// Write `rooms` to a temporary file beside the list, flush it to disk and rename it over
    /// the list: a crash leaves the old list or the new one, never half of one.
    pub fn save(&self, rooms: &[SavedRoom]) -> Result<(), RoomsError> {
        let err = |source| RoomsError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = RoomsFile {
            version: FILE_VERSION,
            rooms: rooms.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let mut tmp_name = self
            .path
            .file_name()
            .unwrap_or_else(|| std::ffi::OsStr::new(ROOMS_FILE))
            .to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = self.path.with_file_name(tmp_name);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        Ok(())
    }
}

// ---- the keyring ----

/// Room passphrases in the operating system's keyring. Every call runs on a blocking thread
/// (the keyring crate blocks, and must not block an async worker) and is bounded in time.
#[derive(Debug, Clone)]
pub struct Keyring {
    service: String,
}

impl Default for Keyring {
    fn default() -> Self {
        Self {
            service: KEYRING_SERVICE.to_owned(),
        }
    }
}

impl Keyring {
    async fn run<T: Send + 'static>(
        &self,
        id: &str,
        op: impl FnOnce(keyring::Entry) -> Result<T, keyring::Error> + Send + 'static,
    ) -> Result<T, KeyringError> {
        let (service, user) = (self.service.clone(), id.to_owned());
        let call = tauri::async_runtime::spawn_blocking(move || {
            op(keyring::Entry::new(&service, &user)?).map_err(KeyringError::from)
        });
        match tokio::time::timeout(KEYRING_TIMEOUT, call).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(KeyringError::Failed(format!("keyring call failed: {e}"))),
            Err(_) => Err(KeyringError::Timeout),
        }
    }

    /// Store (or replace) the passphrase of room `id`.
    pub async fn set(&self, id: &str, passphrase: &str) -> Result<(), KeyringError> {
        let passphrase = passphrase.to_owned();
        self.run(id, move |entry| entry.set_password(&passphrase))
            .await
    }

    /// The passphrase of room `id`, if one is stored.
    pub async fn get(&self, id: &str) -> Result<Option<String>, KeyringError> {
        self.run(id, |entry| match entry.get_password() {
            Ok(p) => Ok(Some(p)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Remove the passphrase of room `id`; nothing stored is not an error.
    pub async fn delete(&self, id: &str) -> Result<(), KeyringError> {
        self.run(id, |entry| match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }
}

// ---- the state ----

/// What to do with the keyring once a join succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remember {
    /// Store (or replace) this passphrase.
    Store(String),
    /// Delete any stored passphrase.
    Forget,
    /// Leave the keyring as it is (rejoined with the stored passphrase).
    Keep,
}

/// A join waiting for its connection: saved on the session's first `connected`.
#[derive(Debug)]
struct Pending {
    addr: String,
    host: String,
    port: u16,
    remember: Remember,
    /// This session's `connecting` (for `addr`) has been seen: its events are flowing, any
    /// earlier ones were the previous session's.
    armed: bool,
    listener: Option<EventId>,
}

/// The saved rooms: the file, the keyring, and the join waiting to be saved.
pub struct SavedRooms {
    store: OnceLock<RoomsFileStore>,
    keyring: Keyring,
    /// One change of the file at a time.
    lock: tokio::sync::Mutex<()>,
    pending: Arc<Mutex<Option<Pending>>>,
}

impl Default for SavedRooms {
    fn default() -> Self {
        Self {
            store: OnceLock::new(),
            keyring: Keyring::default(),
            lock: tokio::sync::Mutex::new(()),
            pending: Arc::new(Mutex::new(None)),
        }
    }
}

impl SavedRooms {
    /// Keep the list at `path` instead of the app's data directory (tests); only before the
    /// first use. Returns false when the place was already decided.
    pub fn use_file(&self, path: PathBuf) -> bool {
        self.store.set(RoomsFileStore::new(path)).is_ok()
    }

    fn store<R: Runtime>(&self, app: &AppHandle<R>) -> Result<&RoomsFileStore, RoomsError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let dir = app
            .path()
            .app_data_dir()
            .map_err(|e| RoomsError::NoDataDir(e.to_string()))?;
        Ok(self
            .store
            .get_or_init(|| RoomsFileStore::new(dir.join(ROOMS_FILE))))
    }

    /// The saved rooms, most recent first.
    pub async fn list<R: Runtime>(&self, app: &AppHandle<R>) -> Result<Vec<SavedRoom>, RoomsError> {
        let store = self.store(app)?;
        let _guard = self.lock.lock().await;
        store.load()
    }

    /// A join is starting (`connect`): save it once its session is in the room. Replaces any
    /// join still waiting.
    pub fn expect_join<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        host: &str,
        port: u16,
        remember: Remember,
    ) {
        let addr = client::join_host_port(host, port);
        let old = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.replace(Pending {
                addr,
                host: host.to_owned(),
                port,
                remember,
                armed: false,
                listener: None,
            })
        };
        if let Some(id) = old.and_then(|p| p.listener) {
            app.unlisten(id);
        }
        let pending = Arc::clone(&self.pending);
        let handle = app.clone();
        let id = app.listen(CHAT_EVENT, move |event| {
            on_chat_event(&handle, &pending, event.payload());
        });
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.as_mut() {
            Some(p) if p.listener.is_none() => p.listener = Some(id),
            // Already settled (or replaced) while the listener was being registered.
            _ => app.unlisten(id),
        }
    }

    /// The join waiting to be saved will not be: its session was ended by the user or
    /// replaced by hosting. Without this, a session ended before its `disconnected` arrived
    /// would leave the join armed, and the next session's `connected` (another room) would
    /// save it — with a passphrase no room ever accepted.
    pub fn cancel_join<R: Runtime>(&self, app: &AppHandle<R>) {
        let old = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(id) = old.and_then(|p| p.listener) {
            app.unlisten(id);
        }
    }

    /// Save the room a session got into, and apply `remember` to the keyring; the window is
    /// told the outcome.
    async fn joined<R: Runtime>(&self, app: &AppHandle<R>, join: Pending, nick: String) {
        let update = self.record(app, join, nick).await;
        if let Some(problem) = &update.problem {
            tracing::warn!(?problem, "saved rooms");
        }
        if let Err(e) = app.emit(SAVED_ROOMS_EVENT, &update) {
            tracing::warn!(error = %e, "saved rooms update not sent to the window");
        }
    }

    async fn record<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        join: Pending,
        nick: String,
    ) -> RoomsUpdate {
        let id = join.addr.clone();
        let mut problem = None;
        let _guard = self.lock.lock().await;
        let store = match self.store(app) {
            Ok(store) => store,
            Err(e) => {
                return RoomsUpdate {
                    rooms: Vec::new(),
                    problem: Some(Problem::NotSaved {
                        detail: e.to_string(),
                    }),
                }
            }
        };
        let mut rooms = match store.load() {
            Ok(rooms) => rooms,
            Err(e) => {
                problem = Some(Problem::SetAside {
                    detail: e.to_string(),
                });
                Vec::new()
            }
        };
        let previous = rooms
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.passphrase_saved);
        let passphrase_saved = match &join.remember {
            Remember::Store(passphrase) => match self.keyring.set(&id, passphrase).await {
                Ok(()) => {
                    tracing::info!(room = %id, "passphrase remembered in the keyring");
                    true
                }
                Err(e) => {
                    problem = Some(Problem::NotRemembered {
                        detail: e.to_string(),
                    });
                    false
                }
            },
            Remember::Forget => {
                if let Err(e) = self.keyring.delete(&id).await {
                    // Only worth saying when one was stored; otherwise the keyring being
                    // unavailable changes nothing.
                    if previous == Some(true) {
                        problem = Some(Problem::NotRemoved {
                            detail: e.to_string(),
                        });
                    } else {
                        tracing::debug!(room = %id, error = %e, "keyring not reachable to delete");
                    }
                }
                false
            }
            Remember::Keep => previous.unwrap_or(false),
        };
        let room = SavedRoom {
            id: id.clone(),
            name: id.clone(),
            host: join.host,
            port: join.port,
            nick,
            last_used_ms: now_ms(),
            passphrase_saved,
        };
        let dropped = upsert(&mut rooms, room);
        for old in dropped.iter().filter(|r| r.passphrase_saved) {
            if let Err(e) = self.keyring.delete(&old.id).await {
                tracing::warn!(room = %old.id, error = %e, "dropped room's passphrase not removed");
            }
        }
        if let Err(e) = store.save(&rooms) {
            problem = Some(Problem::NotSaved {
                detail: e.to_string(),
            });
        }
        RoomsUpdate { rooms, problem }
    }

    /// Remove room `id` from the list and its passphrase from the keyring.
    pub async fn forget<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        id: &str,
    ) -> Result<RoomsUpdate, RoomsError> {
        let store = self.store(app)?;
        let _guard = self.lock.lock().await;
        let mut rooms = store.load()?;
        let Some(i) = rooms.iter().position(|r| r.id == id) else {
            return Err(RoomsError::NotFound(id.to_owned()));
        };
        let room = rooms.remove(i);
        store.save(&rooms)?;
        let mut problem = None;
        if let Err(e) = self.keyring.delete(id).await {
            if room.passphrase_saved {
                problem = Some(Problem::NotRemoved {
                    detail: e.to_string(),
                });
            }
        }
        tracing::info!(room = %id, "saved room forgotten");
        Ok(RoomsUpdate { rooms, problem })
    }

    async fn find<R: Runtime>(
        &self,
        app: &AppHandle<R>,
        id: &str,
    ) -> Result<SavedRoom, RoomsError> {
        self.list(app)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| RoomsError::NotFound(id.to_owned()))
    }

    /// The list says a passphrase is stored for `id` but the keyring has none (removed by
    /// another program): say so in the list.
    async fn mark_not_saved<R: Runtime>(&self, app: &AppHandle<R>, id: &str) {
        let Ok(store) = self.store(app) else { return };
        let _guard = self.lock.lock().await;
        let Ok(mut rooms) = store.load() else { return };
        for room in rooms.iter_mut().filter(|r| r.id == id) {
            room.passphrase_saved = false;
        }
        if let Err(e) = store.save(&rooms) {
            tracing::warn!(error = %e, "saved rooms not updated");
        }
    }
}

/// A chat event while a join waits to be saved: arm on its session's `connecting`, save on
/// the first `connected`, give up on `disconnected`.
fn on_chat_event<R: Runtime>(app: &AppHandle<R>, pending: &Mutex<Option<Pending>>, payload: &str) {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: String,
        addr: Option<String>,
        nick: Option<String>,
    }
    let Ok(event) = serde_json::from_str::<Probe>(payload) else {
        return;
    };
    let mut slot = pending.lock().unwrap_or_else(|e| e.into_inner());
    let Some(join) = slot.as_mut() else { return };
    match event.kind.as_str() {
        "connecting" if event.addr.as_deref() == Some(join.addr.as_str()) => join.armed = true,
        "connected" if join.armed => {
            let Some(join) = slot.take() else { return };
            drop(slot);
            if let Some(id) = join.listener {
                app.unlisten(id);
            }
            let nick = event.nick.unwrap_or_default();
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let rooms = app.state::<SavedRooms>();
                rooms.joined(&app, join, nick).await;
            });
        }
        "disconnected" if join.armed => {
            if let Some(id) = slot.take().and_then(|j| j.listener) {
                drop(slot);
                app.unlisten(id);
            }
        }
        _ => {}
    }
}

// ---- commands ----

/// How a rejoin went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Rejoin {
    /// The session is starting (its events follow as usual).
    Joining,
    /// No passphrase to rejoin with: the window asks for it. `detail`: why the keyring could
    /// not give one, when it failed.
    NeedsPassphrase { detail: Option<String> },
}

/// The saved rooms, most recent first.
#[tauri::command]
pub async fn list_saved_rooms<R: Runtime>(
    app: AppHandle<R>,
    rooms: State<'_, SavedRooms>,
) -> Result<Vec<SavedRoom>, RoomsError> {
    rooms.list(&app).await
}

/// Forget room `id`: off the list, and its passphrase out of the keyring.
#[tauri::command]
pub async fn forget_saved_room<R: Runtime>(
    app: AppHandle<R>,
    rooms: State<'_, SavedRooms>,
    id: String,
) -> Result<RoomsUpdate, RoomsError> {
    let update = rooms.forget(&app, &id).await?;
    let _ = app.emit(SAVED_ROOMS_EVENT, &update);
    Ok(update)
}

/// Rejoin saved room `id` with its nickname: with `passphrase` when given (stored or not as
/// `remember` says), else with the one in the keyring; with neither, nothing starts and the
/// window asks for it.
#[tauri::command]
pub async fn rejoin_saved_room<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    rooms: State<'_, SavedRooms>,
    id: String,
    passphrase: Option<String>,
    remember: Option<bool>,
) -> Result<Rejoin, RoomsError> {
    let room = rooms.find(&app, &id).await?;
    let (passphrase, remember) = match passphrase {
        Some(p) => (p, Some(remember.unwrap_or(false))),
        None if !room.passphrase_saved => return Ok(Rejoin::NeedsPassphrase { detail: None }),
        None => match rooms.keyring.get(&room.id).await {
            Ok(Some(p)) => (p, None),
            Ok(None) => {
                tracing::info!(room = %room.id, "remembered passphrase no longer in the keyring");
                rooms.mark_not_saved(&app, &room.id).await;
                return Ok(Rejoin::NeedsPassphrase { detail: None });
            }
            Err(e) => {
                tracing::warn!(room = %room.id, error = %e, "remembered passphrase not readable");
                return Ok(Rejoin::NeedsPassphrase {
                    detail: Some(e.to_string()),
                });
            }
        },
    };
    let join = commands::Join {
        host: &room.host,
        port: room.port,
        passphrase: &passphrase,
        nick: &room.nick,
        remember,
        expected_host: None,
        accept_new_host: None,
    };
    commands::join(&app, &state, &rooms, join).await?;
    Ok(Rejoin::Joining)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(port: u16, last_used_ms: u64) -> SavedRoom {
        let id = client::join_host_port("10.0.0.1", port);
        SavedRoom {
            name: id.clone(),
            id,
            host: "10.0.0.1".into(),
            port,
            nick: "ana".into(),
            last_used_ms,
            passphrase_saved: false,
        }
    }

    #[test]
    fn upsert_puts_the_room_first_keeps_its_name_and_bounds_the_list() {
        let mut rooms = vec![room(1, 3), room(2, 2)];
        rooms[1].name = "Book club".into();
        assert!(upsert(&mut rooms, room(2, 9)).is_empty());
        assert_eq!(rooms.len(), 2);
        assert_eq!((rooms[0].port, rooms[0].name.as_str()), (2, "Book club"));
        for port in 10..40 {
            upsert(&mut rooms, room(port, u64::from(port)));
        }
        assert_eq!(rooms.len(), MAX_ROOMS);
        assert_eq!(rooms[0].port, 39);
        let dropped = upsert(&mut rooms, room(40, 40));
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].port, 20, "the least recently used falls off");
    }

    #[test]
    fn tidy_drops_bad_entries_and_duplicates_and_sorts() {
        let mut bad_host = room(3, 5);
        bad_host.host = "bad host".into();
        let mut wrong_id = room(4, 5);
        wrong_id.id = "10.0.0.1:9".into();
        let rooms = tidy(vec![
            room(1, 1),
            room(2, 7),
            room(1, 0),
            bad_host,
            wrong_id,
            room(0, 1),
        ]);
        let ports: Vec<u16> = rooms.iter().map(|r| r.port).collect();
        assert_eq!(ports, vec![2, 1]);
        assert_eq!(
            rooms[1].last_used_ms, 1,
            "the most recent of a duplicate is kept"
        );
    }

    #[test]
    fn the_file_round_trips_and_a_damaged_one_is_set_aside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RoomsFileStore::new(dir.path().join("sub").join(ROOMS_FILE));
        assert_eq!(store.load().expect("no file: no rooms"), Vec::new());
        let rooms = vec![room(2, 9), room(1, 3)];
        store.save(&rooms).expect("saved");
        assert_eq!(store.load().expect("loaded"), rooms);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from(ROOMS_FILE)],
            "no temporary file left"
        );

        std::fs::write(store.path(), b"{\"version\":1,\"rooms\":[{\"id\":").expect("write");
        let err = store.load().expect_err("damaged");
        let RoomsError::Corrupt { aside, .. } = &err else {
            panic!("{err}")
        };
        assert!(err.to_string().contains("set aside"), "{err}");
        assert_eq!(
            std::fs::read(aside).expect("kept aside"),
            b"{\"version\":1,\"rooms\":[{\"id\":"
        );
        assert_eq!(store.load().expect("a new list"), Vec::new());
    }
}
