//! Rooms on this network (docs/PROTOCOL.md §14), for the window: the hosted room's
//! announcement while it is hosted, and the Join form's live list while the start screen
//! shows. `tertulia_core::discovery` does the mDNS; this module decides when, and what the
//! window sees.
//!
//! - Announcing: [`announce`] when hosting starts (on unless the host unticked "Show this
//!   room on the network"; never for "this computer only", which nobody else can join), and
//!   withdrawn with goodbye packets when hosting stops or the app exits ([`withdraw_on_exit`]).
//!   A room that cannot be announced is still hosted: the host panel says why.
//! - Browsing: [`browse_rooms`] starts a browser (or answers with the current list if one
//!   runs), [`stop_browsing`] ends it. Every change reaches the window as the whole list, the
//!   [`ROOMS_EVENT`] event ([`RoomsUpdate`]), at most [`MAX_LISTED`] rooms.
//!
//! `TERTULIA_DISCOVERY=off` in the environment turns both off (no multicast at all: for
//! sandboxes and for the tests that run in the machine's own network).
//!
//! What a browser reports comes from anyone on the network: names arrive already bounded
//! and stripped of control and bidi characters (core), and the advertised identity is only
//! shown; the window never takes it as the identity to expect.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, Runtime, State};
use tertulia_core::client::join_host_port;
use tertulia_core::discovery::{Advert, Announcer, Browser, DiscoveryEvent, FoundRoom};
use tertulia_core::hello::PROTOCOL_VERSION;
use tokio::sync::Mutex;

use crate::commands::CommandError;
use crate::reach::Reach;
use crate::session::AppState;

/// The event carrying the rooms found (the whole list on every change).
pub const ROOMS_EVENT: &str = "rooms-found";
/// The most rooms the window lists; more are left out until one goes.
pub const MAX_LISTED: usize = 64;
/// The longest room name an announcement carries (the TXT value `room`, in UTF-8 bytes).
pub const ROOM_NAME_MAX_BYTES: usize = 63;
/// The environment variable that turns announcing and browsing off (`off`).
pub const DISCOVERY_ENV: &str = "TERTULIA_DISCOVERY";
/// The cause of a discovery failure when the environment turned discovery off.
const TURNED_OFF: &str = "turned_off";

fn turned_off() -> bool {
    std::env::var(DISCOVERY_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off"))
}

/// Why a room name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("at most {ROOM_NAME_MAX_BYTES} bytes")]
    TooLong,
    #[error("no control or invisible characters")]
    Invisible,
}

/// The room name the host typed (trimmed), or `NICK's room` when blank (the nickname
/// shortened to fit).
pub fn room_name(raw: Option<&str>, nick: &str) -> Result<String, RoomNameError> {
    let typed = raw.map(str::trim).unwrap_or_default();
    if typed.is_empty() {
        let mut nick: Vec<char> = nick.chars().collect();
        loop {
            let name = format!("{}'s room", nick.iter().collect::<String>());
            if name.len() <= ROOM_NAME_MAX_BYTES || nick.pop().is_none() {
                return Ok(name);
            }
        }
    }
    if typed.chars().any(invisible) {
        return Err(RoomNameError::Invisible);
    }
    if typed.len() > ROOM_NAME_MAX_BYTES {
        return Err(RoomNameError::TooLong);
    }
    Ok(typed.to_owned())
}

/// Control, format and bidi characters (the ones ui/validate.js refuses too).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Whether the hosted room is shown on this network, for the host panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AnnounceState {
    On {
        name: String,
    },
    Off,
    /// `cause`: a stable name the window translates ([`DiscoveryError::cause`], or
    /// `turned_off`); `reason`: the same in English, with any detail.
    Failed {
        cause: &'static str,
        reason: String,
    },
}

/// Announce the hosted room as `name` if the host wants it and others can reach it, on the
/// interfaces of `listen` (the address the room's listener is bound to: one LAN address, or
/// all of them for `[::]` / `0.0.0.0`). The announcer (kept with the hosting) withdraws it
/// when stopped or dropped.
pub fn announce(
    wanted: bool,
    reach: Reach,
    listen: IpAddr,
    name: &str,
    port: u16,
    fingerprint: &str,
) -> (AnnounceState, Option<Announcer>) {
    if !wanted || reach == Reach::Computer {
        return (AnnounceState::Off, None);
    }
    if turned_off() {
        return (
            AnnounceState::Failed {
                cause: TURNED_OFF,
                reason: format!("turned off by {DISCOVERY_ENV}=off"),
            },
            None,
        );
    }
    let advert = Advert {
        room_name: name.to_owned(),
        port,
        fingerprint: fingerprint.to_owned(),
        version: PROTOCOL_VERSION,
    };
    match Announcer::start_for(advert, listen) {
        Ok(announcer) => (
            AnnounceState::On {
                name: announcer.room_name().to_owned(),
            },
            Some(announcer),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "the room could not be shown on this network");
            (
                AnnounceState::Failed {
                    cause: e.cause(),
                    reason: e.to_string(),
                },
                None,
            )
        }
    }
}

/// Withdraw the hosted room's announcement (goodbye packets, waited for: a few seconds at
/// most) when the app exits; the room itself ends with the process.
pub fn withdraw_on_exit<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let announcer = tauri::async_runtime::block_on(async {
        state
            .hosting
            .lock()
            .await
            .as_mut()
            .and_then(|h| h.announcer.take())
    });
    if let Some(announcer) = announcer {
        announcer.stop();
    }
}

/// Withdraw the hosted room (goodbye packets) off the async threads: it takes a moment.
pub async fn withdraw(announcer: Announcer) {
    if let Err(e) = tauri::async_runtime::spawn_blocking(move || announcer.stop()).await {
        tracing::warn!(error = %e, "withdrawing the room from the network failed");
    }
}

/// A room found, as the window lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomView {
    /// The DNS-SD instance name: unique on the network, the list's key.
    pub id: String,
    pub name: String,
    /// The host's name on the network (`lanA.local`).
    pub host: String,
    /// `IP:PORT` of [`join_host`](Self::join_host), as shown; `None` when there is none.
    pub address: Option<String>,
    /// What picking the room puts in the address field: its first IPv4 address, else an
    /// IPv6 one that is not link-local (a link-local one needs its interface, which an
    /// address field cannot hold); `None`: nothing this app can join.
    pub join_host: Option<String>,
    pub port: u16,
    pub fingerprint: String,
    /// It speaks this app's protocol version.
    pub compatible: bool,
}

impl RoomView {
    pub fn new(room: &FoundRoom) -> Self {
        let joinable = room
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| room.addresses.iter().find(|a| !link_local(a)));
        let join_host = joinable.map(ToString::to_string);
        Self {
            id: room.instance.clone(),
            name: room.room_name.clone(),
            host: room.host.clone(),
            address: join_host.as_deref().map(|h| join_host_port(h, room.port)),
            join_host,
            port: room.port,
            fingerprint: room.fingerprint.clone(),
            compatible: room.version == PROTOCOL_VERSION,
        }
    }
}

fn link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The rooms found so far, at most [`MAX_LISTED`] (pure: the browser's events in, the list
/// out).
#[derive(Debug, Default)]
pub struct Rooms {
    by_id: BTreeMap<String, RoomView>,
}

impl Rooms {
    /// Apply one event; whether the list changed.
    pub fn apply(&mut self, event: &DiscoveryEvent) -> bool {
        match event {
            DiscoveryEvent::Found(room) | DiscoveryEvent::Updated(room) => {
                let view = RoomView::new(room);
                if !self.by_id.contains_key(&view.id) && self.by_id.len() >= MAX_LISTED {
                    return false;
                }
                self.by_id.insert(view.id.clone(), view.clone()) != Some(view)
            }
            DiscoveryEvent::Lost { instance } => self.by_id.remove(instance).is_some(),
        }
    }

    /// By name (case-insensitively), then instance: a stable order while rooms come and go.
    pub fn list(&self) -> Vec<RoomView> {
        let mut rooms: Vec<RoomView> = self.by_id.values().cloned().collect();
        rooms.sort_by(|a, b| (a.name.to_lowercase(), &a.id).cmp(&(b.name.to_lowercase(), &b.id)));
        rooms
    }
}

/// What the window gets: the rooms, and why the list stopped if it did (a
/// [`CommandError`] as the window receives one). `seq` grows with every list the app hands
/// out (events and `browse_rooms` answers alike, across browsing sessions): events and a
/// command's answer reach the window by different ways, so it keeps the highest it has seen.
#[derive(Debug, Clone, Serialize)]
pub struct RoomsUpdate {
    pub seq: u64,
    pub rooms: Vec<RoomView>,
    pub problem: Option<serde_json::Value>,
}

/// The next [`RoomsUpdate::seq`].
static UPDATE_SEQ: AtomicU64 = AtomicU64::new(1);

struct Browsing {
    browser: Browser,
    rooms: Arc<StdMutex<Rooms>>,
    task: tauri::async_runtime::JoinHandle<()>,
}

/// The Join form's browser, while the start screen shows.
#[derive(Default)]
pub struct Discovery {
    browsing: Mutex<Option<Browsing>>,
}

/// The list now, numbered under the list's lock: a higher `seq` is always a later list.
fn listed(rooms: &StdMutex<Rooms>) -> (u64, Vec<RoomView>) {
    let rooms = rooms.lock().unwrap_or_else(|p| p.into_inner());
    (UPDATE_SEQ.fetch_add(1, Ordering::Relaxed), rooms.list())
}

/// Start looking for rooms on this network (or, already looking, the rooms found so far).
#[tauri::command]
pub async fn browse_rooms<R: Runtime>(
    app: AppHandle<R>,
    discovery: State<'_, Discovery>,
) -> Result<RoomsUpdate, CommandError> {
    let mut browsing = discovery.browsing.lock().await;
    if let Some(current) = browsing.as_ref() {
        let (seq, rooms) = listed(&current.rooms);
        return Ok(RoomsUpdate {
            seq,
            rooms,
            problem: None,
        });
    }
    if turned_off() {
        return Err(CommandError::Discovery {
            cause: TURNED_OFF,
            reason: format!("turned off by {DISCOVERY_ENV}=off"),
        });
    }
    let (browser, mut events) = Browser::start().map_err(|e| CommandError::Discovery {
        cause: e.cause(),
        reason: e.to_string(),
    })?;
    let rooms = Arc::new(StdMutex::new(Rooms::default()));
    let shared = rooms.clone();
    let task = tauri::async_runtime::spawn(async move {
        while let Some(event) = events.recv().await {
            let mut changed = shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply(&event);
            // A burst (a browser's first answers) is one update.
            while let Ok(event) = events.try_recv() {
                changed |= shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .apply(&event);
            }
            if changed {
                emit(&app, listed(&shared), None);
            }
        }
        tracing::warn!("the browser for rooms on this network stopped");
        emit(
            &app,
            (UPDATE_SEQ.fetch_add(1, Ordering::Relaxed), Vec::new()),
            Some(CommandError::Discovery {
                cause: "stopped",
                reason: "the search stopped".into(),
            }),
        );
    });
    // Numbered after the task started: an event it sends before this answer arrives has a
    // higher number, so the window keeps it over this (then stale) list.
    let (seq, listed_now) = listed(&rooms);
    *browsing = Some(Browsing {
        browser,
        rooms,
        task,
    });
    Ok(RoomsUpdate {
        seq,
        rooms: listed_now,
        problem: None,
    })
}

/// Stop looking for rooms (the start screen is hidden).
#[tauri::command]
pub async fn stop_browsing(discovery: State<'_, Discovery>) -> Result<(), CommandError> {
    if let Some(browsing) = discovery.browsing.lock().await.take() {
        // The forwarding task is over before the browser stops: its "the search stopped"
        // can never reach the window after this (nor during the next browse).
        browsing.task.abort();
        let _ = browsing.task.await;
        browsing.browser.stop();
    }
    Ok(())
}

fn emit<R: Runtime>(
    app: &AppHandle<R>,
    (seq, rooms): (u64, Vec<RoomView>),
    problem: Option<CommandError>,
) {
    let problem = problem.and_then(|p| serde_json::to_value(p).ok());
    if let Err(e) = app.emit(
        ROOMS_EVENT,
        RoomsUpdate {
            seq,
            rooms,
            problem,
        },
    ) {
        tracing::warn!(error = %e, "the rooms found could not reach the window");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn found(instance: &str, name: &str, addresses: Vec<IpAddr>) -> FoundRoom {
        FoundRoom {
            instance: instance.into(),
            room_name: name.into(),
            host: "lanA.local".into(),
            addresses,
            port: 5555,
            version: PROTOCOL_VERSION,
            fingerprint: "3f2a-91c0-5b7e-0d44-a1c9-77e2".into(),
        }
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
    const ULA: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3));
    const LINK: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));

    #[test]
    fn a_room_is_joined_at_its_ipv4_address_else_a_routable_ipv6_one() {
        let view = RoomView::new(&found("a", "Sala", vec![LINK, ULA, V4]));
        assert_eq!(view.join_host.as_deref(), Some("10.77.0.2"));
        assert_eq!(view.address.as_deref(), Some("10.77.0.2:5555"));
        assert_eq!(view.host, "lanA.local");
        assert!(view.compatible);
        let view = RoomView::new(&found("a", "Sala", vec![LINK, ULA]));
        assert_eq!(view.address.as_deref(), Some("[fd00::3]:5555"));
        let view = RoomView::new(&found("a", "Sala", vec![LINK]));
        assert_eq!(
            view.join_host, None,
            "link-local needs an interface an address field cannot hold"
        );
        assert_eq!(view.address, None);
    }

    #[test]
    fn another_protocol_version_is_listed_as_not_compatible() {
        let mut room = found("a", "Sala", vec![V4]);
        room.version = PROTOCOL_VERSION.wrapping_add(1);
        assert!(!RoomView::new(&room).compatible);
    }

    #[test]
    fn rooms_come_go_and_change_sorted_by_name_and_bounded() {
        let mut rooms = Rooms::default();
        assert!(rooms.apply(&DiscoveryEvent::Found(found("b", "bea", vec![V4]))));
        assert!(rooms.apply(&DiscoveryEvent::Found(found("a", "Ana", vec![V4]))));
        assert!(
            !rooms.apply(&DiscoveryEvent::Found(found("a", "Ana", vec![V4]))),
            "the same again is no change"
        );
        let names = |r: &Rooms| r.list().into_iter().map(|v| v.name).collect::<Vec<_>>();
        assert_eq!(names(&rooms), ["Ana", "bea"]);
        assert!(rooms.apply(&DiscoveryEvent::Updated(found("a", "Zoe", vec![V4]))));
        assert_eq!(names(&rooms), ["bea", "Zoe"]);
        assert!(rooms.apply(&DiscoveryEvent::Lost {
            instance: "b".into()
        }));
        assert!(!rooms.apply(&DiscoveryEvent::Lost {
            instance: "b".into()
        }));
        assert_eq!(names(&rooms), ["Zoe"]);
        for i in 0..2 * MAX_LISTED {
            rooms.apply(&DiscoveryEvent::Found(found(
                &format!("r{i}"),
                "x",
                vec![V4],
            )));
        }
        assert_eq!(rooms.list().len(), MAX_LISTED);
        assert!(
            rooms.apply(&DiscoveryEvent::Updated(found("a", "Zoe again", vec![V4]))),
            "a listed room still changes"
        );
    }

    #[test]
    fn room_names_are_bounded_visible_and_default_to_the_nickname() {
        assert_eq!(room_name(None, "ana"), Ok("ana's room".into()));
        assert_eq!(room_name(Some("   "), "ana"), Ok("ana's room".into()));
        assert_eq!(
            room_name(Some(" Book club "), "ana"),
            Ok("Book club".into())
        );
        assert_eq!(
            room_name(Some(&"ñ".repeat(31)), "ana").map(|n| n.len()),
            Ok(62)
        );
        assert_eq!(
            room_name(Some(&"ñ".repeat(32)), "ana"),
            Err(RoomNameError::TooLong)
        );
        assert_eq!(
            room_name(Some("a\u{202e}b"), "ana"),
            Err(RoomNameError::Invisible)
        );
        assert_eq!(
            room_name(Some("a\nb"), "ana"),
            Err(RoomNameError::Invisible)
        );
        // A long nickname is shortened, at a character boundary, to fit the default.
        let long = room_name(None, &"😀".repeat(16)).expect("a default");
        assert_eq!(long, format!("{}'s room", "😀".repeat(14)));
    }
}
