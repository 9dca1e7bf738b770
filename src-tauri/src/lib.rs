//! # Tertulia desktop app
//!
//! A thin Tauri layer over `tertulia-core`. No protocol logic lives here.
//!
//! # Layout
//!
//! - [`commands`]: what the window can call, with the checks on its inputs.
//! - [`discovery`]: rooms on this network: the hosted room announced, the Join form's list.
//! - [`session`]: the live state, at most one hosted room and one chat session.
//! - [`forward`]: every [`ClientEvent`](tertulia_core::client::ClientEvent) of the active
//!   session, forwarded unchanged to the window as the [`CHAT_EVENT`] event, and the desktop
//!   notifications.
//! - [`files`]: attach (open dialog), drop, paste, save (save dialog), cancel, previews.
//! - [`preview`]: what an image's bytes must be before the window shows it; previews kept.
//! - [`rooms`]: the saved rooms on the start screen, their passphrases in the OS keyring.
//! - [`links`]: a link from a message opened in the system browser, http(s) only.
//! - [`notifications`]: desktop notifications escaped, coalesced and rate-limited (pure).
//! - [`reach`]: where a hosted room is reachable from, and its listener.
//! - [`internet`]: "reachable from the internet": the router's port mapping while hosting.
//! - [`retention`]: how much history the hosted room keeps, as the host chose.
//! - [`strength`]: how guessable a room passphrase is, for the host form's warning.

pub mod commands;
pub mod discovery;
pub mod files;
pub mod forward;
pub mod internet;
pub mod links;
pub mod notifications;
pub mod preview;
pub mod reach;
pub mod retention;
pub mod rooms;
pub mod session;
pub mod strength;

pub use forward::CHAT_EVENT;

use tauri::{Manager, Runtime};

/// Register state and commands on a builder (generic so tests can use the mock runtime:
/// `tests/ipc.rs`).
pub fn configure<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder
        .plugin(tauri_plugin_notification::init())
        // The open and save dialogs, opened from Rust only (files.rs): no permission for
        // the window.
        .plugin(tauri_plugin_dialog::init())
        .plugin(links::navigation_guard())
        // Links are opened only through links::open_link; the plugin's own script that opens
        // clicked <a target=_blank> links without asking stays out of the window.
        .plugin(
            tauri_plugin_opener::Builder::new()
                .open_js_links_on_click(false)
                .build(),
        )
        .manage(forward::NotifySettings::default())
        .manage(session::AppState::default())
        .manage(rooms::SavedRooms::default())
        .manage(preview::Previews::default())
        .manage(discovery::Discovery::default())
        // The focus ends the unread run that desktop notifications count (forward.rs).
        // Files dropped on the window are sent from here: their paths never pass through
        // the webview's hands (it only shows the drop overlay, from Tauri's drag events).
        .on_window_event(|window, event| match event {
            tauri::WindowEvent::Focused(true) => {
                if let Some(settings) = window.try_state::<forward::NotifySettings>() {
                    settings.focused();
                }
            }
            tauri::WindowEvent::DragDrop(tauri::DragDropEvent::Drop { paths, .. }) => {
                files::files_dropped(window.app_handle(), paths.clone());
            }
            _ => {}
        })
        .invoke_handler(tauri::generate_handler![
            commands::host_server,
            commands::stop_hosting,
            commands::connect,
            commands::trust_host,
            commands::send,
            commands::set_nick,
            commands::reconnect_now,
            commands::typing,
            commands::load_older,
            commands::disconnect,
            commands::generate_passphrase,
            commands::passphrase_strength,
            commands::history_defaults,
            commands::hosting_info,
            discovery::browse_rooms,
            discovery::stop_browsing,
            rooms::list_saved_rooms,
            rooms::forget_saved_room,
            rooms::rejoin_saved_room,
            links::open_link,
            files::attach_files,
            files::paste_file,
            files::save_file,
            files::cancel_upload,
            files::cancel_download,
            files::load_preview,
            files::preview,
            forward::set_notifications_muted,
            forward::set_notification_summary,
        ])
}

pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match configure(tauri::Builder::default()).build(tauri::generate_context!()) {
        // Leaving the app (its window closed) withdraws the hosted room from the network
        // (goodbye packets) and deletes the router's port mapping.
        Ok(app) => app.run(|app, event| {
            if let tauri::RunEvent::Exit = event {
                discovery::withdraw_on_exit(app);
                internet::stop_on_exit(app);
            }
        }),
        Err(e) => {
            eprintln!("error: the Tertulia window could not start: {e}");
            std::process::exit(1);
        }
    }
}
