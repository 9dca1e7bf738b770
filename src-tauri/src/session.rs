//! The app's live state: at most one hosted room and one chat session.

use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Runtime};
use tertulia_core::client::{self, ClientConfig, ClientHandle};
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
    /// `tertulia://ADDRESS#PASSPHRASE` for the first address (the LAN one, not a VPN or
    /// container bridge); pasting it into Join fills the form.
    pub invite: String,
}

pub struct Hosting {
    pub info: HostInfo,
    pub stop: CancellationToken,
    pub task: tauri::async_runtime::JoinHandle<()>,
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

#[derive(Default)]
pub struct AppState {
    pub hosting: Mutex<Option<Hosting>>,
    pub session: Mutex<Option<Session>>,
}

impl AppState {
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
        let (handle, events) = client::spawn(config);
        let forwarder = crate::forward::spawn(app.clone(), events);
        *session = Some(Session { handle, forwarder });
    }
}
