//! The app's live state: at most one hosted room and one chat session, the last join (to
//! repeat it when the user trusts a host's new identity) and where the pins are kept.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime};
use tertulia_core::client::{self, ClientConfig, ClientHandle};
use tertulia_core::secret::SecretString;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// What the window needs to show about a room this app hosts.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub port: u16,
    /// Where the room is reachable from, as the host chose.
    pub reach: crate::reach::Reach,
    /// `IP:PORT` for every address the room listens on (only `127.0.0.1` for "this computer
    /// only"), best first; others join with one of these.
    pub addresses: Vec<String>,
    /// The room's identity (its host key's fingerprint, e.g. `3f2a-91c0-5b7e-0d44-a1c9-77e2`),
    /// the same every time this app hosts: members compare it and their apps pin it.
    pub fingerprint: String,
    /// Whether the room is shown on this network, as which name, or why not.
    pub announce: crate::discovery::AnnounceState,
    /// `tertulia://ADDRESS/FINGERPRINT#PASSPHRASE` for the first address (the LAN one, not a
    /// VPN or container bridge); pasting it into Join fills the form, and joining with it
    /// accepts only this room's identity.
    pub invite: String,
    /// "Reachable from the internet", when the host asked for it: where it stands now.
    pub internet: Option<crate::internet::InternetStatus>,
}

pub struct Hosting {
    pub info: HostInfo,
    pub stop: CancellationToken,
    pub task: tauri::async_runtime::JoinHandle<()>,
    /// The room's announcement on this network, withdrawn when hosting stops.
    pub announcer: Option<tertulia_core::discovery::Announcer>,
    /// The router's port mapping, deleted when hosting stops.
    pub internet: Option<crate::internet::InternetReach>,
}

pub struct Session {
    pub handle: ClientHandle,
    /// Ends the task that forwards this session's events to the window.
    pub forwarder: tauri::async_runtime::JoinHandle<()>,
}

/// How long leaving waits for a session's last events (its `disconnected`) to reach the window.
const LAST_EVENTS_WAIT: Duration = Duration::from_secs(3);

impl Session {
    /// Leave the room and end the session: its last events reach the window before this
    /// returns, and none after (the forwarder is stopped), so nothing of this session can
    /// show up in the next one.
    pub async fn end(mut self) {
        self.handle.disconnect().await;
        if tokio::time::timeout(LAST_EVENTS_WAIT, &mut self.forwarder)
            .await
            .is_err()
        {
            self.forwarder.abort();
        }
    }
}

/// A join as the window asked for it (form or saved room), kept while its session lasts so
/// that "Trust the new identity" can repeat it with that identity expected.
#[derive(Clone)]
pub struct LastJoin {
    pub host: String,
    pub port: u16,
    pub passphrase: SecretString,
    pub nick: String,
    pub remember: Option<bool>,
}

/// The file of pinned host identities, in the app's data directory.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";
/// The hosted room's identity key, in the app's data directory.
pub const HOST_KEY_FILE: &str = "host.key";

#[derive(Default)]
pub struct AppState {
    pub hosting: Mutex<Option<Hosting>>,
    pub session: Mutex<Option<Session>>,
    /// The join of the current (or just ended) session; `None` while hosting or after leaving.
    pub last_join: Mutex<Option<LastJoin>>,
    known_hosts: OnceLock<PathBuf>,
}

impl AppState {
    /// Keep the pins at `path` instead of the app's data directory (tests); only before the
    /// first join. Returns false when the place was already decided.
    pub fn use_known_hosts(&self, path: PathBuf) -> bool {
        self.known_hosts.set(path).is_ok()
    }

    /// Where the pins are kept: `known_hosts` in the app's data directory (`None`: there is
    /// no data directory, so pins last as long as the session).
    pub fn known_hosts<R: Runtime>(&self, app: &AppHandle<R>) -> Option<PathBuf> {
        if let Some(path) = self.known_hosts.get() {
            return Some(path.clone());
        }
        match app.path().app_data_dir() {
            Ok(dir) => Some(
                self.known_hosts
                    .get_or_init(|| dir.join(KNOWN_HOSTS_FILE))
                    .clone(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "no data directory: host identities pinned for this session only");
                None
            }
        }
    }

    /// The active session's client handle, if any (the lock is released at once).
    pub async fn client(&self) -> Option<ClientHandle> {
        self.session.lock().await.as_ref().map(|s| s.handle.clone())
    }

    /// Start a chat session and forward its events to the window, replacing any previous
    /// session (which leaves the room first).
    pub async fn start_session<R: Runtime>(&self, app: &AppHandle<R>, config: ClientConfig) {
        let mut session = self.session.lock().await;
        if let Some(old) = session.take() {
            old.end().await;
        }
        if let Some(previews) = app.try_state::<crate::preview::Previews>() {
            previews.clear();
        }
        let (handle, events) = client::spawn(config);
        let forwarder = crate::forward::spawn(app.clone(), handle.clone(), events);
        *session = Some(Session { handle, forwarder });
    }
}
