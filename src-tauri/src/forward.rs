//! The event forwarder: every core [`ClientEvent`] of a session goes to the window unchanged
//! as the [`CHAT_EVENT`] event, and a live message from someone else raises a desktop
//! notification while the window is not focused. The forwarder ends after `Disconnected`.

use tauri::{AppHandle, Emitter, Manager, Runtime};
use tertulia_core::client::ClientEvent;
use tokio::sync::mpsc;

/// The Tauri event carrying every core client event to the window.
pub const CHAT_EVENT: &str = "chat-event";

/// Forward `events` to the window until the session is over (or the task is aborted).
pub fn spawn<R: Runtime>(
    app: AppHandle<R>,
    mut events: mpsc::Receiver<ClientEvent>,
) -> tauri::async_runtime::JoinHandle<()> {
    tauri::async_runtime::spawn(async move {
        while let Some(event) = events.recv().await {
            let _ = app.emit(CHAT_EVENT, &event);
            notify_if_unfocused(&app, &event);
            if matches!(event, ClientEvent::Disconnected { .. }) {
                break;
            }
        }
    })
}

/// A desktop notification for a live message from someone else while the window is not focused.
fn notify_if_unfocused<R: Runtime>(app: &AppHandle<R>, event: &ClientEvent) {
    let ClientEvent::Message {
        from,
        text,
        own: false,
        history: false,
        ..
    } = event
    else {
        return;
    };
    let focused = app
        .get_webview_window("main")
        .and_then(|w| w.is_focused().ok())
        .unwrap_or(false);
    if focused {
        return;
    }
    // Never let a missing plugin take the event forwarding down with it.
    let Some(notifications) = app.try_state::<tauri_plugin_notification::Notification<R>>() else {
        tracing::warn!("notification plugin not registered; no desktop notification");
        return;
    };
    let body: String = text.chars().take(200).collect();
    if let Err(e) = notifications
        .builder()
        .title(format!("{from} — Tertulia"))
        .body(body)
        .show()
    {
        tracing::debug!(error = %e, "desktop notification not shown");
    } else {
        tracing::debug!(%from, "desktop notification shown");
    }
}
