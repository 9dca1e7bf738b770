//! "Reachable from the internet" for the hosted room (an explicit choice, off by default): the
//! router is asked to forward the room's port (`core::portmap`: UPnP-IGD, then PCP / NAT-PMP),
//! the lease is renewed while hosting, and the mapping is deleted when hosting stops or the app
//! exits. What happened is the window's [`INTERNET_EVENT`] (and `HostInfo.internet`): where the
//! room is reachable, with an invite code naming that address, or why not and what to forward
//! by hand. A mapping failure never stops hosting on the LAN.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tertulia_core::identity::Fingerprint;
use tertulia_core::invite::Invite;
use tertulia_core::portmap::{
    self, Check, Failure, Mapper, MapperConfig, Method, Status, Update, Via,
};

/// The window's event with the room's reach from the internet (an [`InternetStatus`]).
pub const INTERNET_EVENT: &str = "internet-status";

/// Where the mapping stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Asking the router.
    Asking,
    /// Reachable at `external`.
    Reachable,
    /// Not reachable, for `reason`.
    Unreachable,
    /// The router stopped honouring the mapping; asking again.
    Lost,
    /// Deleted: hosting stopped.
    Removed,
}

/// Why not, for the window to word in its language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NoAnswer,
    NoGateway,
    Refused,
    Network,
    NotPublic,
    /// A device that is not the router answered UPnP (ignored); `detail` is its address.
    NotTheRouter,
}

/// The self-check's finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checked {
    Confirmed,
    CouldNotConfirm,
}

/// What the window shows about the room's reach from the internet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InternetStatus {
    pub state: State,
    /// The room's port (what to forward by hand).
    pub port: u16,
    /// `IP:PORT` on the router's internet side, while reachable (or last, when lost).
    pub external: Option<String>,
    /// `"upnp" | "pcp" | "nat_pmp"`: how the mapping was made.
    pub method: Option<&'static str>,
    /// The self-check at `external` (absent until it is done).
    pub check: Option<Checked>,
    pub reason: Option<Reason>,
    /// The router's own words for a refusal (English, as the router said it).
    pub detail: Option<String>,
    /// This computer's address facing the router: where to forward the port by hand.
    pub lan: Option<String>,
    /// `tertulia://EXTERNAL/FINGERPRINT#PASSPHRASE` while reachable.
    pub invite: Option<String>,
}

impl InternetStatus {
    fn asking(port: u16) -> Self {
        Self {
            state: State::Asking,
            port,
            external: None,
            method: None,
            check: None,
            reason: None,
            detail: None,
            lan: None,
            invite: None,
        }
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Upnp => "upnp",
        Method::Pcp => "pcp",
        Method::NatPmp => "nat_pmp",
    }
}

fn reason(failure: &Failure) -> (Reason, Option<String>) {
    match failure {
        Failure::NoAnswer => (Reason::NoAnswer, None),
        Failure::NoGateway => (Reason::NoGateway, None),
        Failure::Refused { reason, .. } => (Reason::Refused, Some(reason.clone())),
        Failure::Network(detail) => (Reason::Network, Some(detail.clone())),
        Failure::NotPublic { external } => (Reason::NotPublic, Some(external.to_string())),
        Failure::NotTheRouter { answered, .. } => {
            (Reason::NotTheRouter, Some(answered.to_string()))
        }
    }
}

/// The status after `update`, given the one before. `invite`: the invite code for an external
/// address. Pure.
pub fn apply(
    before: &InternetStatus,
    update: &Update,
    invite: impl Fn(SocketAddr) -> String,
) -> InternetStatus {
    let mut next = before.clone();
    if let Some(internal) = update.internal {
        next.lan = Some(internal.ip().to_string());
    }
    let reachable = |next: &mut InternetStatus, external: SocketAddr| {
        if next.external.as_deref() != Some(external.to_string().as_str()) {
            next.check = None;
        }
        next.state = State::Reachable;
        next.external = Some(external.to_string());
        next.invite = Some(invite(external));
        next.reason = None;
        next.detail = None;
    };
    match &update.status {
        Status::Asking => {
            // Asking again after a failure keeps saying why until the router answers.
            if next.state != State::Unreachable && next.state != State::Lost {
                next.state = State::Asking;
            }
        }
        Status::Reachable {
            external, method, ..
        } => {
            reachable(&mut next, *external);
            next.method = Some(method_name(*method));
        }
        Status::Renewed { external, .. } => reachable(&mut next, *external),
        Status::Checked { external, check } => {
            if next.external.as_deref() == Some(external.to_string().as_str()) {
                next.check = Some(match check {
                    Check::Confirmed => Checked::Confirmed,
                    Check::CouldNotConfirm => Checked::CouldNotConfirm,
                });
            }
        }
        Status::Unreachable(failure) => {
            let (why, detail) = reason(failure);
            next.state = State::Unreachable;
            next.reason = Some(why);
            next.detail = detail;
            next.external = None;
            next.method = None;
            next.check = None;
            next.invite = None;
        }
        Status::Lost { failure, .. } => {
            let (why, detail) = reason(failure);
            next.state = State::Lost;
            next.reason = Some(why);
            next.detail = detail;
            next.check = None;
            next.invite = None;
        }
        Status::Removed => {
            next.state = State::Removed;
            next.invite = None;
            next.check = None;
        }
    }
    next
}

/// The hosted room's mapping, while hosting.
pub struct InternetReach {
    mapper: Mapper,
    forwarder: tauri::async_runtime::JoinHandle<()>,
    current: Arc<Mutex<InternetStatus>>,
}

/// How long stopping waits for the last status to reach the window.
const LAST_STATUS_WAIT: Duration = Duration::from_secs(1);

impl InternetReach {
    /// Ask the router to forward `port` to the listener on `listen_ip`; each change is emitted
    /// to the window.
    pub fn start<R: Runtime>(
        app: &AppHandle<R>,
        port: u16,
        listen_ip: IpAddr,
        passphrase: String,
        fingerprint: Fingerprint,
        record: Option<std::path::PathBuf>,
    ) -> Self {
        let (mapper, mut updates) = Mapper::start(MapperConfig {
            port,
            listen_ip,
            via: Via::Auto,
            lease: portmap::LeaseConfig::default(),
            record,
        });
        let current = Arc::new(Mutex::new(InternetStatus::asking(port)));
        let shared = current.clone();
        let app = app.clone();
        let forwarder = tauri::async_runtime::spawn(async move {
            let invite = |external: SocketAddr| {
                Invite::new(
                    external.ip().to_string(),
                    external.port(),
                    passphrase.clone(),
                )
                .with_fingerprint(fingerprint)
                .to_string()
            };
            while let Some(update) = updates.recv().await {
                let next = {
                    let Ok(mut status) = shared.lock() else { break };
                    *status = apply(&status, &update, invite);
                    status.clone()
                };
                if let Err(e) = app.emit(INTERNET_EVENT, &next) {
                    tracing::warn!(error = %e, "could not tell the window about the port mapping");
                }
            }
        });
        Self {
            mapper,
            forwarder,
            current,
        }
    }

    /// Where the mapping stands now.
    pub fn status(&self) -> Option<InternetStatus> {
        self.current.lock().ok().map(|s| s.clone())
    }

    /// Delete the mapping (the router is told; bounded by `portmap::STOP_TIMEOUT`).
    pub async fn stop(self) {
        self.mapper.stop().await;
        let mut forwarder = self.forwarder;
        if tokio::time::timeout(LAST_STATUS_WAIT, &mut forwarder)
            .await
            .is_err()
        {
            forwarder.abort();
        }
    }
}

/// The app is exiting (its window closed): delete a mapping still held, so the router does not
/// forward to a room that is gone.
pub fn stop_on_exit<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<crate::session::AppState>() else {
        return;
    };
    tauri::async_runtime::block_on(async {
        let reach = state
            .hosting
            .lock()
            .await
            .as_mut()
            .and_then(|h| h.internet.take());
        if let Some(reach) = reach {
            reach.stop().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(status: Status) -> Update {
        Update {
            status,
            internal: Some("10.77.0.2:5555".parse().unwrap()),
        }
    }

    fn invite(external: SocketAddr) -> String {
        format!("tertulia://{external}/fp#pass")
    }

    fn external() -> SocketAddr {
        "203.0.113.1:5555".parse().unwrap()
    }

    #[test]
    fn reachable_names_the_external_address_with_its_invite_then_the_check() {
        let start = InternetStatus::asking(5555);
        let s = apply(&start, &update(Status::Asking), invite);
        assert_eq!(s.state, State::Asking);
        assert_eq!(s.lan.as_deref(), Some("10.77.0.2"));
        let s = apply(
            &s,
            &update(Status::Reachable {
                external: external(),
                method: Method::Upnp,
                lifetime: Some(Duration::from_secs(3600)),
            }),
            invite,
        );
        assert_eq!(s.state, State::Reachable);
        assert_eq!(s.external.as_deref(), Some("203.0.113.1:5555"));
        assert_eq!(s.method, Some("upnp"));
        assert_eq!(
            s.invite.as_deref(),
            Some("tertulia://203.0.113.1:5555/fp#pass")
        );
        assert_eq!(s.check, None);
        let s = apply(
            &s,
            &update(Status::Checked {
                external: external(),
                check: Check::CouldNotConfirm,
            }),
            invite,
        );
        assert_eq!(s.check, Some(Checked::CouldNotConfirm));
        let s = apply(
            &s,
            &update(Status::Renewed {
                external: external(),
                lifetime: None,
            }),
            invite,
        );
        assert_eq!(
            s.check,
            Some(Checked::CouldNotConfirm),
            "same address: the check stands"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "reachable");
        assert_eq!(json["check"], "could_not_confirm");
        assert_eq!(json["port"], 5555);
    }

    #[test]
    fn why_not_is_a_reason_the_window_words_and_asking_again_keeps_it() {
        let s = apply(
            &InternetStatus::asking(5555),
            &update(Status::Unreachable(Failure::NoAnswer)),
            invite,
        );
        assert_eq!(s.state, State::Unreachable);
        assert_eq!(s.reason, Some(Reason::NoAnswer));
        assert_eq!(s.lan.as_deref(), Some("10.77.0.2"));
        assert_eq!(s.invite, None);
        let again = apply(&s, &update(Status::Asking), invite);
        assert_eq!(
            again.state,
            State::Unreachable,
            "still says why while asking again"
        );
        let refused = apply(
            &s,
            &update(Status::Unreachable(Failure::Refused {
                method: Method::Upnp,
                reason: "ActionNotAuthorized".into(),
            })),
            invite,
        );
        assert_eq!(refused.reason, Some(Reason::Refused));
        assert_eq!(refused.detail.as_deref(), Some("ActionNotAuthorized"));
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["reason"], "refused");
    }

    #[test]
    fn a_check_of_another_address_is_ignored_and_removal_drops_the_invite() {
        let s = apply(
            &InternetStatus::asking(5555),
            &update(Status::Reachable {
                external: external(),
                method: Method::Pcp,
                lifetime: None,
            }),
            invite,
        );
        let stale = apply(
            &s,
            &update(Status::Checked {
                external: "198.51.100.9:5555".parse().unwrap(),
                check: Check::Confirmed,
            }),
            invite,
        );
        assert_eq!(stale.check, None);
        let gone = apply(&s, &update(Status::Removed), invite);
        assert_eq!(gone.state, State::Removed);
        assert_eq!(gone.invite, None);
    }
}
