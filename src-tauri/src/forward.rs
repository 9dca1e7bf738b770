//! The event forwarder: every core [`ClientEvent`] of a session goes to the window unchanged
//! as the [`CHAT_EVENT`] event, and a live message from someone else raises a desktop
//! notification while the window is not focused — when notifications are muted (the
//! window's "Mute" toggle, [`set_notifications_muted`]), only a message that mentions our
//! nickname does ([`wants_notification`]). Those messages are escaped, coalesced and
//! rate-limited ([`notifications::Coalescer`]): one notification "N new messages from …",
//! replaced as more arrive (on Linux and the BSDs, by its server id), at most one popup per
//! [`notifications::MIN_INTERVAL`]. The forwarder ends after `Disconnected`.
//!
//! Files: an image offered in the room (live, in the backlog or in an older page) is fetched
//! into memory for its preview ([`fetch_preview`]) and validated off the async runtime
//! before the window hears of it ([`files::PREVIEW_EVENT`]); a file or photo shared by
//! someone else notifies like a message ("ana shared a photo"), unless muted.
//!
//! The rule lives here, not in the window: the backend sees every event as it arrives and
//! knows our nickname as the core confirmed it (`Connected`), whether the webview is
//! throttled in the background or not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, Runtime, State};
use tertulia_core::client::{ClientEvent, ClientHandle, FetchTarget, TransferDirection};
use tokio::sync::mpsc;

use crate::files;
use crate::notifications::{self, Coalescer, Popup};
use crate::preview::{self, Preview, Previews};

/// The Tauri event carrying every core client event to the window.
pub const CHAT_EVENT: &str = "chat-event";

/// Forward `events` to the window until the session is over (or the task is aborted);
/// `handle` fetches the previews of the images offered.
pub fn spawn<R: Runtime>(
    app: AppHandle<R>,
    handle: ClientHandle,
    mut events: mpsc::Receiver<ClientEvent>,
) -> tauri::async_runtime::JoinHandle<()> {
    tauri::async_runtime::spawn(async move {
        // Our nickname in this session, as the core confirmed it.
        let mut nick = String::new();
        let mut desktop = Desktop::default();
        loop {
            let due = desktop.unread.due();
            let event = tokio::select! {
                event = events.recv() => event,
                () = sleep_until(due) => {
                    if desktop.caught_up(&app) {
                        continue;
                    }
                    let summary = summary_text(&app);
                    if let Some(popup) = desktop.unread.tick(Instant::now(), &summary) {
                        desktop.show(&app, popup);
                    }
                    continue;
                }
            };
            let Some(event) = event else { break };
            let _ = app.emit(CHAT_EVENT, for_window(&event));
            on_file_event(&app, &handle, &event).await;
            if let ClientEvent::Connected {
                nick: confirmed, ..
            } = &event
            {
                nick.clone_from(confirmed);
            }
            desktop.on_event(&app, &event, &nick);
            if matches!(event, ClientEvent::Disconnected { .. }) {
                break;
            }
        }
    })
}

/// A client event as the window gets it: as the core serializes it, but with file ids as
/// decimal strings ([`ClientEvent::to_json`]): the window keeps them as text and sends them
/// back as text ([`FileId`]). Upload ids (the client's own small counter) stay numbers.
pub fn for_window(event: &ClientEvent) -> serde_json::Value {
    event.to_json()
}

/// A file id from the window: the decimal text [`for_window`] gave it (a plain number is
/// taken too, for small ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(pub u64);

impl<'de> serde::Deserialize<'de> for FileId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Self(n)),
            Either::Text(t) => t
                .parse()
                .map(Self)
                .map_err(|_| serde::de::Error::custom("a file id is a decimal number")),
        }
    }
}

fn id_text<S: serde::Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// What the window hears about an image's preview ([`files::PREVIEW_EVENT`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PreviewState {
    /// Being fetched (progress comes as the download's `file_progress`).
    Loading {
        #[serde(serialize_with = "id_text")]
        file_id: u64,
    },
    /// Checked and kept: `preview` gives its bytes, to be shown as `mime` (the sniffed one).
    Ready {
        #[serde(serialize_with = "id_text")]
        file_id: u64,
        mime: &'static str,
        width: u32,
        height: u32,
    },
    /// Its bytes are not an image the window may show: it is a file.
    NotImage {
        #[serde(serialize_with = "id_text")]
        file_id: u64,
        reason: String,
    },
    /// The fetch did not complete (the download's `file_failed` says why).
    Failed {
        #[serde(serialize_with = "id_text")]
        file_id: u64,
    },
    /// Dropped to make room for newer previews: the window lets it go too.
    Dropped {
        #[serde(serialize_with = "id_text")]
        file_id: u64,
    },
}

fn tell_preview<R: Runtime>(app: &AppHandle<R>, state: PreviewState) {
    let _ = app.emit(files::PREVIEW_EVENT, &state);
}

/// Queue the fetch of a preview for an offered file, if it is announced as an image of a
/// preview's size; true if it is (or already was) on its way or kept.
pub async fn fetch_preview<R: Runtime>(
    app: &AppHandle<R>,
    handle: &ClientHandle,
    file_id: u64,
    mime: &str,
    size: u64,
) -> bool {
    if !preview::wants_preview(mime, size) {
        return false;
    }
    let Some(previews) = app.try_state::<Previews>() else {
        return false;
    };
    if let Some(kept) = previews.get(file_id) {
        tell_preview(app, ready(file_id, &kept));
        return true;
    }
    if !previews.start_fetch(file_id) {
        return true;
    }
    let target = FetchTarget::Memory {
        max_bytes: preview::MAX_PREVIEW_FILE_BYTES,
    };
    match handle.fetch_file(file_id, target).await {
        Ok(()) => {
            tell_preview(app, PreviewState::Loading { file_id });
            true
        }
        Err(e) => {
            previews.end_fetch(file_id);
            tracing::debug!(file_id, error = %e, "preview not fetched");
            tell_preview(app, PreviewState::Failed { file_id });
            false
        }
    }
}

fn ready(file_id: u64, kept: &Preview) -> PreviewState {
    PreviewState::Ready {
        file_id,
        mime: kept.image.mime(),
        width: kept.image.width,
        height: kept.image.height,
    }
}

/// The preview side of a client event: fetch offered images, check what arrived.
async fn on_file_event<R: Runtime>(app: &AppHandle<R>, handle: &ClientHandle, event: &ClientEvent) {
    match event {
        ClientEvent::FileOffered {
            file_id,
            mime,
            size,
            ..
        } => {
            fetch_preview(app, handle, *file_id, mime, *size).await;
        }
        ClientEvent::Older { events, .. } => {
            for older in events {
                if let ClientEvent::FileOffered {
                    file_id,
                    mime,
                    size,
                    ..
                } = older
                {
                    fetch_preview(app, handle, *file_id, mime, *size).await;
                }
            }
        }
        ClientEvent::FileReceived {
            file_id,
            bytes: Some(bytes),
            ..
        } => {
            let Some(previews) = app.try_state::<Previews>() else {
                return;
            };
            if previews.end_fetch(*file_id) {
                check_preview(app.clone(), *file_id, bytes.clone());
            }
        }
        ClientEvent::FileFailed {
            direction: TransferDirection::Download,
            id,
            ..
        } if app
            .try_state::<Previews>()
            .is_some_and(|p| p.end_fetch(*id)) =>
        {
            tell_preview(app, PreviewState::Failed { file_id: *id });
        }
        _ => {}
    }
}

/// Validate a fetched preview off the async runtime, one at a time, then keep it and tell
/// the window (or tell it the file is not an image).
fn check_preview<R: Runtime>(app: AppHandle<R>, file_id: u64, bytes: std::sync::Arc<[u8]>) {
    tauri::async_runtime::spawn(async move {
        let Some(previews) = app.try_state::<Previews>() else {
            return;
        };
        let Ok(_slot) = previews.decode_slot.acquire().await else {
            return;
        };
        let checked = {
            let bytes = bytes.clone();
            tauri::async_runtime::spawn_blocking(move || preview::check_image(&bytes)).await
        };
        match checked {
            Ok(Ok(image)) => {
                let kept = Preview { bytes, image };
                let state = ready(file_id, &kept);
                let dropped = previews.insert(file_id, kept);
                for old in dropped.iter().filter(|id| **id != file_id) {
                    tell_preview(&app, PreviewState::Dropped { file_id: *old });
                }
                if dropped.contains(&file_id) {
                    tell_preview(&app, PreviewState::Failed { file_id });
                } else {
                    tell_preview(&app, state);
                }
            }
            Ok(Err(not_image)) => {
                tracing::info!(file_id, reason = %not_image, "offered as an image, shown as a file");
                tell_preview(
                    &app,
                    PreviewState::NotImage {
                        file_id,
                        reason: not_image.to_string(),
                    },
                );
            }
            Err(e) => {
                tracing::warn!(file_id, error = %e, "preview check did not finish");
                tell_preview(&app, PreviewState::Failed { file_id });
            }
        }
    });
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn summary_text<R: Runtime>(app: &AppHandle<R>) -> String {
    app.try_state::<NotifySettings>().map_or_else(
        || notifications::DEFAULT_SUMMARY.to_owned(),
        |s| s.summary(),
    )
}

/// Whether desktop notifications are muted (all but mentions of our nickname); the window
/// sets it from its remembered "Mute" toggle at start and on every change.
#[derive(Debug, Default)]
pub struct NotifySettings {
    muted: AtomicBool,
    /// Times the window got the focus: an unread run ends when it changes.
    focus_count: AtomicU64,
    /// The coalesced notification's wording in the window's language (`{n}`, `{names}`).
    summary: Mutex<Option<String>>,
    /// "{from} shared a photo" / "… a file", in the window's language.
    shared: Mutex<Option<(String, String)>>,
}

impl NotifySettings {
    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// The window got the focus (lib.rs, window events).
    pub fn focused(&self) {
        self.focus_count.fetch_add(1, Ordering::Relaxed);
    }

    fn focus_count(&self) -> u64 {
        self.focus_count.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        self.summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| notifications::DEFAULT_SUMMARY.to_owned())
    }

    /// What a notification says for a file `from` shared (`photo`: announced as an image).
    pub fn shared_text(&self, from: &str, photo: bool) -> String {
        let words = self
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (photo_words, file_words) = words.unwrap_or_else(|| {
            (
                notifications::DEFAULT_SHARED_PHOTO.to_owned(),
                notifications::DEFAULT_SHARED_FILE.to_owned(),
            )
        });
        let words = if photo { photo_words } else { file_words };
        words.replace("{from}", from)
    }
}

#[tauri::command]
pub fn set_notifications_muted(settings: State<'_, NotifySettings>, muted: bool) {
    settings.muted.store(muted, Ordering::Relaxed);
}

/// Longest summary wording the window may set, in bytes.
const MAX_SUMMARY_BYTES: usize = 200;

/// The window's wording for "N new messages from …" (`{n}`, `{names}`), in its language;
/// `photo` and `file`: "{from} shared a photo" / "… a file".
#[tauri::command]
pub fn set_notification_summary(
    settings: State<'_, NotifySettings>,
    text: String,
    photo: Option<String>,
    file: Option<String>,
) {
    if text.len() <= MAX_SUMMARY_BYTES {
        *settings.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
    if let (Some(photo), Some(file)) = (photo, file) {
        if photo.len() <= MAX_SUMMARY_BYTES && file.len() <= MAX_SUMMARY_BYTES {
            *settings.shared.lock().unwrap_or_else(|p| p.into_inner()) = Some((photo, file));
        }
    }
}

/// The notification rule: a live message from someone else while the window is not focused;
/// when muted, only one that mentions `nick`.
pub fn wants_notification(event: &ClientEvent, focused: bool, muted: bool, nick: &str) -> bool {
    let ClientEvent::Message {
        text,
        own: false,
        history: false,
        ..
    } = event
    else {
        return false;
    };
    !focused && (!muted || mentions(text, nick))
}

/// The rule for files: one shared live by someone else while the window is not focused,
/// not while muted (only mentions notify then, and a file mentions nobody).
pub fn wants_file_notification(event: &ClientEvent, focused: bool, muted: bool) -> bool {
    matches!(
        event,
        ClientEvent::FileOffered {
            own: false,
            history: false,
            ..
        }
    ) && !focused
        && !muted
}

/// Does `text` name `nick`? As the window highlights mentions (ui/mention.js): the nickname
/// as a whole word (not inside a longer word, letters, digits and '_' counting as word
/// characters), any case, with or without a leading '@'.
pub fn mentions(text: &str, nick: &str) -> bool {
    if nick.is_empty() {
        return false;
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let text = text.to_lowercase();
    let nick = nick.to_lowercase();
    text.match_indices(&nick).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + nick.len()..].chars().next();
        !word(before) && !word(after)
    })
}

/// The session's desktop notifications: the unread run and the popup showing it.
#[derive(Default)]
struct Desktop {
    unread: Coalescer,
    /// The notification server's id of the popup shown for the unread run.
    shown: std::sync::Arc<Mutex<Option<u32>>>,
    /// [`NotifySettings`]' focus count when the unread run was last checked.
    focus_seen: u64,
}

impl Desktop {
    /// Ends the unread run if the window has the focus, or had it since the last check
    /// (held-back messages then raise no popup); returns whether it has it now.
    fn caught_up<R: Runtime>(&mut self, app: &AppHandle<R>) -> bool {
        let focus_count = app
            .try_state::<NotifySettings>()
            .map_or(0, |s| s.focus_count());
        let focused = app
            .get_webview_window("main")
            .and_then(|w| w.is_focused().ok())
            .unwrap_or(false);
        let caught_up = focused || focus_count != self.focus_seen;
        self.focus_seen = focus_count;
        if caught_up {
            self.unread.read();
        }
        focused
    }

    /// A message counts towards a popup if [`wants_notification`] says so; one seen while
    /// focused ends the unread run.
    fn on_event<R: Runtime>(&mut self, app: &AppHandle<R>, event: &ClientEvent, nick: &str) {
        if let ClientEvent::FileOffered {
            from, mime, size, ..
        } = event
        {
            let focused = self.caught_up(app);
            let muted = app.try_state::<NotifySettings>().is_some_and(|s| s.muted());
            if !wants_file_notification(event, focused, muted) {
                return;
            }
            let photo = preview::wants_preview(mime, *size);
            let text = app
                .try_state::<NotifySettings>()
                .map(|s| s.shared_text(from, photo))
                .unwrap_or_default();
            if let Some(popup) =
                self.unread
                    .message(from, &text, Instant::now(), &summary_text(app))
            {
                self.show(app, popup);
            }
            return;
        }
        let ClientEvent::Message { from, text, .. } = event else {
            return;
        };
        let focused = self.caught_up(app);
        if focused {
            return;
        }
        let muted = app.try_state::<NotifySettings>().is_some_and(|s| s.muted());
        if !wants_notification(event, focused, muted, nick) {
            return;
        }
        if let Some(popup) = self
            .unread
            .message(from, text, Instant::now(), &summary_text(app))
        {
            self.show(app, popup);
        }
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    fn show<R: Runtime>(&mut self, _app: &AppHandle<R>, popup: Popup) {
        // The freedesktop server replaces a notification given its id: one popup per run.
        let shown = self.shown.clone();
        tauri::async_runtime::spawn_blocking(move || {
            let mut id = shown.lock().unwrap_or_else(|p| p.into_inner());
            let mut notification = notify_rust::Notification::new();
            notification
                .appname("Tertulia")
                .summary(&popup.title)
                .body(&popup.body);
            if let (true, Some(previous)) = (popup.replace, *id) {
                notification.id(previous);
            }
            match notification.show() {
                Ok(handle) => {
                    *id = Some(handle.id());
                    tracing::debug!(replace = popup.replace, "desktop notification shown");
                }
                Err(e) => tracing::debug!(error = %e, "desktop notification not shown"),
            }
        });
    }

    #[cfg(not(all(unix, not(target_os = "macos"))))]
    fn show<R: Runtime>(&mut self, app: &AppHandle<R>, popup: Popup) {
        // Never let a missing plugin take the event forwarding down with it.
        let Some(notifications) = app.try_state::<tauri_plugin_notification::Notification<R>>()
        else {
            tracing::warn!("notification plugin not registered; no desktop notification");
            return;
        };
        if let Err(e) = notifications
            .builder()
            .title(popup.title)
            .body(popup.body)
            .show()
        {
            tracing::debug!(error = %e, "desktop notification not shown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, text: &str, own: bool, history: bool) -> ClientEvent {
        ClientEvent::Message {
            seq: 1,
            time_ms: 0,
            from: from.into(),
            text: text.into(),
            own,
            msg_id: None,
            history,
        }
    }

    #[test]
    fn a_live_message_from_someone_else_notifies_only_while_unfocused() {
        let hi = message("ben", "hola a todos", false, false);
        assert!(wants_notification(&hi, false, false, "ana"));
        assert!(!wants_notification(&hi, true, false, "ana"), "focused");
        let own = message("ana", "hola", true, false);
        assert!(!wants_notification(&own, false, false, "ana"), "our own");
        let backlog = message("ben", "ana?", false, true);
        assert!(
            !wants_notification(&backlog, false, false, "ana"),
            "history"
        );
        assert!(!wants_notification(
            &ClientEvent::Typing { nick: "ben".into() },
            false,
            false,
            "ana"
        ));
    }

    fn file(file_id: u64, own: bool, history: bool) -> ClientEvent {
        ClientEvent::FileOffered {
            seq: 9,
            time_ms: 0,
            from: "ben".into(),
            file_id,
            name: "playa.png".into(),
            size: 1000,
            mime: "image/png".into(),
            sha256: "00".into(),
            own,
            upload_id: own.then_some(3),
            history,
        }
    }

    #[test]
    fn file_ids_reach_the_window_as_text_that_a_javascript_number_cannot_round() {
        let id = 0x42f6_8bb9_7ec2_ea1a_u64; // above 2^53
        let text = serde_json::json!(id.to_string());
        assert_ne!((id as f64) as u64, id, "a double cannot hold it");
        let offered = for_window(&file(id, true, false));
        assert_eq!(offered["file_id"], text);
        assert_eq!(offered["upload_id"], 3, "upload ids stay numbers");
        let older = for_window(&ClientEvent::Older {
            events: vec![file(id, false, true)],
            more: false,
        });
        assert_eq!(older["events"][0]["file_id"], text);
        let download = for_window(&ClientEvent::FileProgress {
            direction: TransferDirection::Download,
            id,
            name: "a".into(),
            done: 1,
            size: 2,
        });
        assert_eq!(download["id"], text);
        let upload = for_window(&ClientEvent::FileProgress {
            direction: TransferDirection::Upload,
            id: 7,
            name: "a".into(),
            done: 1,
            size: 2,
        });
        assert_eq!(upload["id"], 7);
        let sent = for_window(&ClientEvent::FileSent {
            upload_id: 7,
            file_id: id,
            seq: 3,
        });
        assert_eq!(sent["file_id"], text);
        let back: FileId = serde_json::from_value(offered["file_id"].clone()).unwrap();
        assert_eq!(back, FileId(id));
        assert_eq!(serde_json::from_str::<FileId>("42").unwrap(), FileId(42));
        assert!(serde_json::from_str::<FileId>("\"4.5e18\"").is_err());
        let ready = serde_json::to_value(PreviewState::Failed { file_id: id }).unwrap();
        assert_eq!(
            ready,
            serde_json::json!({ "state": "failed", "file_id": id.to_string() })
        );
    }

    #[test]
    fn a_live_file_from_someone_else_notifies_unless_focused_or_muted() {
        assert!(wants_file_notification(
            &file(1, false, false),
            false,
            false
        ));
        assert!(!wants_file_notification(
            &file(1, false, false),
            true,
            false
        ));
        assert!(!wants_file_notification(
            &file(1, false, false),
            false,
            true
        ));
        assert!(!wants_file_notification(
            &file(1, true, false),
            false,
            false
        ));
        assert!(!wants_file_notification(
            &file(1, false, true),
            false,
            false
        ));
    }

    #[test]
    fn muted_only_a_mention_of_our_nickname_notifies() {
        let plain = message("ben", "hola a todos", false, false);
        assert!(!wants_notification(&plain, false, true, "ana"));
        for text in ["ana, ¿vienes?", "hey @Ana", "¿ANA?", "eh ana"] {
            assert!(
                wants_notification(&message("ben", text, false, false), false, true, "ana"),
                "{text:?}"
            );
        }
        let mention = message("ben", "ana?", false, false);
        assert!(
            !wants_notification(&mention, true, true, "ana"),
            "focused: no notification at all"
        );
        assert!(
            !wants_notification(&mention, false, true, ""),
            "no nickname confirmed yet: nothing is a mention"
        );
        let own = message("ana", "ana here", true, false);
        assert!(!wants_notification(&own, false, true, "ana"));
    }

    #[test]
    fn mentions_are_whole_words_like_the_window_highlights_them() {
        assert!(mentions("ana", "ana"));
        assert!(mentions("hi @ana!", "ana"));
        assert!(mentions("Hola ÁNGEL", "ángel"));
        assert!(mentions("te llamo, José María", "josé maría"));
        assert!(
            mentions("a.b? sí", "a.b"),
            "punctuation in a nickname matches literally"
        );
        assert!(!mentions("banana", "ana"));
        assert!(!mentions("ana_b", "ana"));
        assert!(!mentions("anaïs", "ana"));
        assert!(!mentions("ana2", "ana"));
        assert!(
            mentions("banana y ana", "ana"),
            "a later whole-word occurrence counts"
        );
        assert!(!mentions("anything", ""));
    }
}
