//! Commands the window invokes. Inputs are validated here with messages meant for the user;
//! everything else is delegated to `tertulia-core`.

use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Manager, Runtime, State};
use tertulia_core::client::{self, ClientConfig};
use tertulia_core::identity::{Fingerprint, HostKey};
use tertulia_core::invite::Invite;
use tertulia_core::passphrase;
use tertulia_core::portmap;
use tertulia_core::server::{self, PreviousRoom, Server, ServerConfig};
use tertulia_core::text::{validate_nick, NickError};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::discovery;
use crate::internet::InternetReach;
use crate::reach::{self, Reach, ReachError};
use crate::retention::{self, HistoryChoice};
use crate::rooms::{Remember, SavedRooms};
use crate::session::{AppState, HostInfo, Hosting, LastJoin, HOST_KEY_FILE};
use crate::strength::{self, Strength};

/// Errors shown to the user. Serialized as `{"kind": …, "message": …}` plus the values the
/// message names (`port`, `reason`): the window words each kind in its own language
/// (ui/locales, `command_error.<kind>`) and falls back to `message` (English).
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("{0}")]
    Invalid(String),
    /// A nickname the core refuses; the window words `reason` in its language.
    #[error("Nickname: {0}")]
    InvalidNick(NickError),
    #[error("port {port} is already in use on this computer; choose another")]
    PortInUse { port: u16 },
    #[error("this computer does not allow a room on port {port}; choose a port above 1023")]
    PortNotAllowed { port: u16 },
    #[error("could not start the room on port {port}: {reason}")]
    HostFailed { port: u16, reason: String },
    /// The room's identity key (`host.key` in the app's data directory) cannot be read or
    /// made: the room does not start under another identity.
    #[error("the room's identity key could not be used: {reason}")]
    HostKey { reason: String },
    #[error("you are already hosting a room; stop it first")]
    AlreadyHosting,
    /// "This network" chosen on a computer with no local network address.
    #[error("this computer has no address on a local network; choose \"this computer only\" or \"all networks\"")]
    NoNetwork,
    /// "Reachable from the internet" with "this computer only": nothing to forward to.
    #[error("\"reachable from the internet\" needs \"this network\" or \"all networks\"")]
    InternetNeedsNetwork,
    /// The stored room was created with another passphrase: the host decides what becomes
    /// of it (`previousRoom`: keep or delete) and hosts again.
    #[error("this passphrase is not the one of the room hosted before on this computer")]
    RoomPassphraseChanged,
    #[error("not connected to a room")]
    NotConnected,
    /// A pasted file over the host's per-file limit.
    #[error("the file is larger than {max_bytes} bytes, the most a room takes")]
    FileTooLarge { max_bytes: u64 },
    /// The room name on the Host form cannot be announced as it is.
    #[error("Room name: {0}")]
    InvalidRoomName(crate::discovery::RoomNameError),
    /// Rooms on this network cannot be looked for (no multicast, turned off…).
    #[error("rooms on this network cannot be looked for: {reason}")]
    /// `cause`: a stable name the window translates (`DiscoveryError::cause`, `turned_off`,
    /// `stopped`).
    Discovery { cause: &'static str, reason: String },
    #[error("{0}")]
    Client(#[from] client::SendError),
}

impl CommandError {
    /// The stable name of this error for the window (`snake_case`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::InvalidNick(_) => "invalid_nick",
            Self::PortInUse { .. } => "port_in_use",
            Self::PortNotAllowed { .. } => "port_not_allowed",
            Self::HostFailed { .. } => "host_failed",
            Self::HostKey { .. } => "host_key",
            Self::AlreadyHosting => "already_hosting",
            Self::NoNetwork => "no_network",
            Self::InternetNeedsNetwork => "internet_needs_network",
            Self::RoomPassphraseChanged => "room_passphrase_changed",
            Self::NotConnected | Self::Client(client::SendError::Stopped) => "not_connected",
            Self::FileTooLarge { .. } => "file_too_large",
            Self::InvalidRoomName(_) => "invalid_room_name",
            Self::Discovery { .. } => "discovery_failed",
            Self::Client(client::SendError::File(_)) => "file_refused",
            Self::Client(client::SendError::OutboxFull(_)) => "outbox_full",
            Self::Client(_) => "send_refused",
        }
    }

    /// Why the room could not start on `port`, told apart where the user can act on it.
    fn host_failed(port: u16, error: &server::ServerError) -> Self {
        if let server::ServerError::RoomPassphraseChanged { .. } = error {
            return Self::RoomPassphraseChanged;
        }
        if let server::ServerError::Io(io) = error {
            match io.kind() {
                std::io::ErrorKind::AddrInUse => return Self::PortInUse { port },
                std::io::ErrorKind::PermissionDenied => return Self::PortNotAllowed { port },
                _ => {}
            }
        }
        Self::HostFailed {
            port,
            reason: error.to_string(),
        }
    }
}

impl Serialize for CommandError {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.kind())?;
        map.serialize_entry("message", &self.to_string())?;
        match self {
            Self::PortInUse { port } | Self::PortNotAllowed { port } => {
                map.serialize_entry("port", port)?;
            }
            Self::HostFailed { port, reason } => {
                map.serialize_entry("port", port)?;
                map.serialize_entry("reason", reason)?;
            }
            Self::HostKey { reason } => map.serialize_entry("reason", reason)?,
            Self::Discovery { cause, reason } => {
                map.serialize_entry("cause", cause)?;
                map.serialize_entry("reason", reason)?;
            }
            Self::FileTooLarge { max_bytes } => map.serialize_entry("max_bytes", max_bytes)?,
            Self::Client(client::SendError::InvalidText(reason)) => {
                map.serialize_entry("reason", reason)?;
            }
            Self::InvalidNick(reason) => map.serialize_entry("reason", reason)?,
            _ => {}
        }
        map.end()
    }
}

type Result<T> = std::result::Result<T, CommandError>;

pub(crate) fn check_passphrase(raw: &str) -> Result<String> {
    passphrase::normalize(raw).map_err(|e| CommandError::Invalid(format!("Passphrase: {e}")))
}

fn check_nick(raw: &str) -> Result<String> {
    validate_nick(raw).map_err(CommandError::InvalidNick)
}

fn check_host(raw: &str) -> Result<String> {
    let host = raw.trim().trim_start_matches('[').trim_end_matches(']');
    if !client::is_valid_host(host) {
        return Err(CommandError::Invalid(format!(
            "Address: '{}' is not an IP address or host name",
            raw.trim()
        )));
    }
    Ok(host.to_owned())
}

fn check_fingerprint(raw: &str) -> Result<Fingerprint> {
    raw.parse()
        .map_err(|e| CommandError::Invalid(format!("Room identity: {e}")))
}

/// Host a room on `port`, reachable as `reach` says (absent: this network), and join it as
/// `nick`. `previousRoom` (`"keep" | "delete"`) answers a `room_passphrase_changed` refusal:
/// the room stored before with another passphrase is set aside or deleted, and a new one
/// starts; absent, such a room is never opened. `history` (`{maxMessages?, maxDays?}`):
/// how much history the room keeps, where the host changed the defaults. `roomName`: what
/// the room is called on this network (blank: "NICK's room"); `announce` (default true):
/// show it there (discovery.rs), never for "this computer only". `internet` (default
/// false): ask the router to forward the port (internet.rs); its outcome follows as
/// `internet-status` events.
#[tauri::command]
#[allow(clippy::too_many_arguments)]
pub async fn host_server<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    rooms: State<'_, SavedRooms>,
    port: u16,
    passphrase: String,
    nick: String,
    reach: Option<Reach>,
    previous_room: Option<PreviousRoom>,
    history: Option<HistoryChoice>,
    room_name: Option<String>,
    announce: Option<bool>,
    internet: Option<bool>,
) -> Result<HostInfo> {
    let passphrase = check_passphrase(&passphrase)?;
    let nick = check_nick(&nick)?;
    let room_name =
        discovery::room_name(room_name.as_deref(), &nick).map_err(CommandError::InvalidRoomName)?;
    let internet = internet.unwrap_or(false);
    if internet && reach == Some(Reach::Computer) {
        return Err(CommandError::InternetNeedsNetwork);
    }
    let mut config = ServerConfig::default();
    config.room.retention = retention::apply(config.room.retention, history.unwrap_or_default())
        .map_err(CommandError::Invalid)?;
    let reach = reach.unwrap_or_default();
    raise_open_file_limit();
    // A join still waiting to be saved is not this session's: hosted rooms are not saved.
    rooms.cancel_join(&app);
    let mut hosting = state.hosting.lock().await;
    if hosting.is_some() {
        return Err(CommandError::AlreadyHosting);
    }
    // The hosted room lives in the app's data directory: hosting again with the same
    // passphrase continues it (another one is refused unless `previous_room` says otherwise),
    // under the same identity (its host key beside it).
    let app_dir = app
        .path()
        .app_data_dir()
        .map_err(|e| CommandError::HostFailed {
            port,
            reason: format!("no data directory: {e}"),
        })?;
    let host_key = HostKey::load_or_create(&app_dir.join(HOST_KEY_FILE)).map_err(|e| {
        CommandError::HostKey {
            reason: e.to_string(),
        }
    })?;
    let fingerprint = host_key.public().fingerprint();
    let config = ServerConfig {
        data_dir: Some(app_dir.join("room")),
        previous_room: previous_room.unwrap_or(PreviousRoom::Refuse),
        host_key: Some(host_key),
        ..config
    };
    let interfaces = server::addresses::interface_addrs();
    let listening = reach::listen(reach, port, &interfaces).map_err(|e| match e {
        ReachError::NoNetwork => CommandError::NoNetwork,
        ReachError::Io(io) => CommandError::host_failed(port, &io.into()),
    })?;
    let invite_ip = reach::invite_ip(&listening);
    let bound = listening
        .listener
        .local_addr()
        .map_err(|e| CommandError::host_failed(port, &e.into()))?
        .ip();
    let listener = tokio::net::TcpListener::from_std(listening.listener)
        .map_err(|e| CommandError::host_failed(port, &e.into()))?;
    let server = Server::with_listener(listener, &passphrase, config)
        .await
        .map_err(|e| CommandError::host_failed(port, &e))?;
    let port = listening.own.port();
    let stop = CancellationToken::new();
    let task = tauri::async_runtime::spawn(server.run(stop.clone().cancelled_owned()));
    let (announce, announcer) = discovery::announce(
        announce.unwrap_or(true),
        reach,
        bound,
        &room_name,
        port,
        &fingerprint.to_string(),
    );
    // The host's own window connects to loopback only when the room listens on every
    // interface: then the router forwards to this computer's address facing it.
    let listen_ip = match listening.own.ip() {
        ip if ip.is_loopback() => std::net::Ipv4Addr::UNSPECIFIED.into(),
        ip => ip,
    };
    // The mapping is recorded in the hosted room's data directory, so that one left behind by
    // a crash is deleted when hosting from it again (with internet reach or without).
    let record = portmap::record::path_in(&app_dir.join("room"));
    let internet = if internet {
        Some(InternetReach::start(
            &app,
            port,
            listen_ip,
            passphrase.clone(),
            fingerprint,
            Some(record),
        ))
    } else {
        tauri::async_runtime::spawn(async move { portmap::record::clear_stale(&record).await });
        None
    };
    // The invite names the best shared address and the room's identity; its passphrase is
    // percent-encoded (docs/PROTOCOL.md, "Invite codes"), so '%', '#' or spaces survive.
    let info = HostInfo {
        port,
        reach,
        addresses: listening.shared.iter().map(ToString::to_string).collect(),
        fingerprint: fingerprint.to_string(),
        announce,
        invite: Invite::new(invite_ip.to_string(), port, passphrase.clone())
            .with_fingerprint(fingerprint)
            .to_string(),
        internet: internet.as_ref().and_then(InternetReach::status),
    };
    *hosting = Some(Hosting {
        info: info.clone(),
        stop,
        task,
        announcer,
        internet,
    });
    drop(hosting);
    *state.last_join.lock().await = None;
    // The host's own window knows its room's identity: it expects exactly that one, and
    // pins nothing (its loopback address may be another room's another day).
    let own = ClientConfig {
        expected_host: Some(fingerprint),
        known_hosts: None,
        ..ClientConfig::new(listening.own.to_string(), nick, passphrase)
    };
    state.start_session(&app, own).await;
    Ok(info)
}

/// Each connection is a file descriptor and a room serves up to 1024: use all the operating
/// system allows, as tertulia-server does.
fn raise_open_file_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
}

/// How much history a hosted room keeps unless the host changes it (`null`: no limit).
#[tauri::command]
pub fn history_defaults() -> HistoryChoice {
    retention::defaults()
}

/// Whether `passphrase` is easy to guess offline, and why (the host form warns; it does not
/// refuse). `nick`: the host's nickname, a guesser's first try. Async: the estimate takes
/// milliseconds, off the window's main thread.
#[tauri::command]
pub async fn passphrase_strength(passphrase: String, nick: Option<String>) -> Strength {
    let nick = nick.unwrap_or_default();
    let context: Vec<&str> = [nick.trim()]
        .into_iter()
        .filter(|n| !n.is_empty())
        .collect();
    strength::judge(&passphrase, &context)
}

/// What is being hosted, if anything.
#[tauri::command]
pub async fn hosting_info(state: State<'_, AppState>) -> Result<Option<HostInfo>> {
    Ok(state.hosting.lock().await.as_ref().map(|h| HostInfo {
        internet: h.internet.as_ref().and_then(InternetReach::status),
        ..h.info.clone()
    }))
}

/// Stop the hosted room: members are told the server is going away.
#[tauri::command]
pub async fn stop_hosting(state: State<'_, AppState>) -> Result<()> {
    let hosting = state.hosting.lock().await.take();
    let session = state.session.lock().await.take();
    *state.last_join.lock().await = None;
    if let Some(session) = session {
        // Leave the room before it stops, so the host's nickname is free when it hosts again.
        session.end().await;
    }
    if let Some(mut hosting) = hosting {
        // Withdrawn first: browsers drop the room before it stops answering.
        if let Some(announcer) = hosting.announcer.take() {
            discovery::withdraw(announcer).await;
        }
        // Then the router stops forwarding: nobody outside reaches a room that is closing.
        if let Some(internet) = hosting.internet.take() {
            internet.stop().await;
        }
        hosting.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), hosting.task).await;
    }
    Ok(())
}

/// A join of the room at `host`:`port`, from the Join form or a saved room.
pub(crate) struct Join<'a> {
    pub host: &'a str,
    pub port: u16,
    pub passphrase: &'a str,
    pub nick: &'a str,
    /// Once in the room: `Some(true)` stores the passphrase in the keyring, `Some(false)`
    /// deletes any stored one, `None` leaves the keyring as it is.
    pub remember: Option<bool>,
    /// An invite code's host identity: no other is admitted, and it never replaces another
    /// pin; `None`: the one pinned for the address, or trust on first use.
    pub expected_host: Option<Fingerprint>,
    /// The new identity the user chose to trust in the "identity changed" dialog: it
    /// replaces the pin.
    pub accept_new_host: Option<Fingerprint>,
}

/// Check a join's fields and start its session; the room is saved when it connects. The
/// host's identity is checked against the pins in the app's data directory.
pub(crate) async fn join<R: Runtime>(
    app: &AppHandle<R>,
    state: &AppState,
    rooms: &SavedRooms,
    join: Join<'_>,
) -> Result<()> {
    let host = check_host(join.host)?;
    if join.port == 0 {
        return Err(CommandError::Invalid(
            "Port: choose a port between 1 and 65535".into(),
        ));
    }
    let passphrase = check_passphrase(join.passphrase)?;
    let nick = check_nick(join.nick)?;
    *state.last_join.lock().await = Some(LastJoin {
        host: host.clone(),
        port: join.port,
        passphrase: passphrase.clone().into(),
        nick: nick.clone(),
        remember: join.remember,
    });
    let remember = match join.remember {
        Some(true) => Remember::Store(passphrase.clone()),
        Some(false) => Remember::Forget,
        None => Remember::Keep,
    };
    rooms.expect_join(app, &host, join.port, remember);
    let config = ClientConfig {
        known_hosts: state.known_hosts(app),
        expected_host: join.expected_host,
        accept_new_host: join.accept_new_host,
        ..ClientConfig::new(client::join_host_port(&host, join.port), nick, passphrase)
    };
    state.start_session(app, config).await;
    Ok(())
}

/// Join the room at `host`:`port`. `remember` ("Remember passphrase"; unticked when absent):
/// once in the room, store the passphrase in the keyring, or delete any stored one.
/// `fingerprint`: the room identity an invite code named; only that one is accepted.
#[tauri::command]
#[allow(clippy::too_many_arguments)]
pub async fn connect<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    rooms: State<'_, SavedRooms>,
    host: String,
    port: u16,
    passphrase: String,
    nick: String,
    remember: Option<bool>,
    fingerprint: Option<String>,
) -> Result<()> {
    let expected_host = fingerprint.as_deref().map(check_fingerprint).transpose()?;
    let request = Join {
        host: &host,
        port,
        passphrase: &passphrase,
        nick: &nick,
        remember: Some(remember.unwrap_or(false)),
        expected_host,
        accept_new_host: None,
    };
    join(&app, &state, &rooms, request).await
}

/// "Trust the new identity", after a `host_identity_changed` error: the last join again,
/// accepting only the identity `fingerprint` (the presented one the user saw), which
/// replaces the old pin once the handshake proves it. Nothing else is trusted by this.
#[tauri::command]
pub async fn trust_host<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    rooms: State<'_, SavedRooms>,
    fingerprint: String,
) -> Result<()> {
    let expected = check_fingerprint(&fingerprint)?;
    let last = state
        .last_join
        .lock()
        .await
        .clone()
        .ok_or(CommandError::NotConnected)?;
    let request = Join {
        host: &last.host,
        port: last.port,
        passphrase: &last.passphrase,
        nick: &last.nick,
        remember: last.remember,
        expected_host: None,
        accept_new_host: Some(expected),
    };
    join(&app, &state, &rooms, request).await
}

/// Send a chat message; returns its id (matched by later `message`/`acked` events).
#[tauri::command]
pub async fn send(state: State<'_, AppState>, text: String) -> Result<u64> {
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    Ok(handle.send(&text).await?)
}

/// Try another nickname after a `nick_rejected` event.
#[tauri::command]
pub async fn set_nick(state: State<'_, AppState>, nick: String) -> Result<()> {
    let nick = check_nick(&nick)?;
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    Ok(handle.set_nick(&nick).await?)
}

/// The user is typing (throttled in the core; cheap to call on every keystroke).
#[tauri::command]
pub async fn typing(state: State<'_, AppState>) -> Result<()> {
    if let Some(handle) = state.client().await {
        handle.typing().await;
    }
    Ok(())
}

/// Ask for the page of history before the oldest event shown; it arrives as an `older` event.
#[tauri::command]
pub async fn load_older(state: State<'_, AppState>) -> Result<()> {
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    handle.load_older().await;
    Ok(())
}

/// Skip the reconnect countdown.
#[tauri::command]
pub async fn reconnect_now(state: State<'_, AppState>) -> Result<()> {
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    handle.reconnect_now().await;
    Ok(())
}

/// Leave the room (the hosted server, if any, keeps running).
#[tauri::command]
pub async fn disconnect<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    rooms: State<'_, SavedRooms>,
) -> Result<()> {
    rooms.cancel_join(&app);
    let session = state.session.lock().await.take();
    *state.last_join.lock().await = None;
    if let Some(session) = session {
        session.end().await;
    }
    Ok(())
}

/// A strong random passphrase for a new room.
#[tauri::command]
pub fn generate_passphrase() -> String {
    passphrase::generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_validation() {
        assert_eq!(check_host(" 192.168.1.2 ").unwrap(), "192.168.1.2");
        assert_eq!(check_host("::1").unwrap(), "::1");
        assert_eq!(check_host("[::1]").unwrap(), "::1");
        assert_eq!(check_host("chat.example.org").unwrap(), "chat.example.org");
        assert!(check_host("").is_err());
        assert!(check_host("bad host").is_err());
        assert!(check_host("a..b").is_err());
    }

    #[test]
    fn a_busy_or_forbidden_port_is_told_apart_for_the_window() {
        use std::io::{Error, ErrorKind};
        let busy = CommandError::host_failed(5555, &Error::from(ErrorKind::AddrInUse).into());
        assert_eq!(
            serde_json::to_value(&busy).unwrap(),
            serde_json::json!({
                "kind": "port_in_use",
                "port": 5555,
                "message": "port 5555 is already in use on this computer; choose another"
            })
        );
        let low = CommandError::host_failed(80, &Error::from(ErrorKind::PermissionDenied).into());
        assert_eq!(low.kind(), "port_not_allowed");
        let other = CommandError::host_failed(5555, &Error::other("disk on fire").into());
        let value = serde_json::to_value(&other).unwrap();
        assert_eq!(value["kind"], "host_failed");
        assert_eq!(value["port"], 5555);
        assert!(value["reason"].as_str().unwrap().contains("disk on fire"));
    }

    #[test]
    fn a_room_bound_to_another_passphrase_is_a_kind_of_its_own() {
        let changed = server::ServerError::RoomPassphraseChanged {
            data_dir: "/home/ana/.local/share/tertulia/room".into(),
        };
        let value = serde_json::to_value(CommandError::host_failed(5555, &changed)).unwrap();
        assert_eq!(value["kind"], "room_passphrase_changed");
        assert!(
            !value.to_string().contains("/home/ana"),
            "no path to word: {value}"
        );
        assert_eq!(
            serde_json::from_str::<PreviousRoom>("\"keep\"").unwrap(),
            PreviousRoom::Keep
        );
    }

    #[test]
    fn a_real_busy_port_is_reported_as_in_use() {
        let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(Server::bind(
                &format!("0.0.0.0:{port}"),
                "a room passphrase",
                ServerConfig::default(),
            ))
            .err()
            .expect("the port is taken");
        assert_eq!(
            CommandError::host_failed(port, &error).kind(),
            "port_in_use"
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        assert!(check_nick("")
            .unwrap_err()
            .to_string()
            .starts_with("Nickname:"));
        assert!(check_passphrase("  ")
            .unwrap_err()
            .to_string()
            .starts_with("Passphrase:"));
    }
}
