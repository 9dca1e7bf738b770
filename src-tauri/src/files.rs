//! Files and images in the room, as the window asks for them (`docs/PROTOCOL.md` §13).
//!
//! The window never names a path. Attach opens the native open dialog from here
//! ([`attach_files`]); a drop on the window arrives as Tauri's native drag-drop event
//! ([`files_dropped`], from `lib.rs`); Save opens the native save dialog from here
//! ([`save_file`]). Only a pasted image comes from the window, as bytes in a raw IPC body
//! ([`paste_file`]), bounded by the host's per-file limit ([`MAX_PASTE_BYTES`]).
//!
//! Previews: every image offered in the room ([`crate::preview::wants_preview`]) is fetched
//! into memory by the forwarder (`forward.rs`), validated ([`crate::preview::check_image`])
//! off the async runtime, kept in [`crate::preview::Previews`], and announced to the window
//! as [`PREVIEW_EVENT`]; the window then pulls the bytes with [`preview`] (a raw IPC
//! response) and shows them through a `blob:` URL of the sniffed MIME type.

use std::path::PathBuf;

use serde::Serialize;
use tauri::ipc::{InvokeBody, Request, Response};
use tauri::{AppHandle, Emitter, Manager, Runtime, State};
use tauri_plugin_dialog::DialogExt;
use tertulia_core::client::{ClientHandle, FetchTarget};
use tertulia_core::files::{mime_hint, safe_name};
use tokio::sync::oneshot;

use crate::commands::CommandError;
use crate::forward::FileId;
use crate::preview::Previews;
use crate::session::AppState;

/// The largest pasted image sent, in bytes: the host's default per-file limit (100 MiB).
pub const MAX_PASTE_BYTES: usize = 100 * 1024 * 1024;
/// The request header carrying a pasted file's name, percent-encoded (headers are ASCII).
pub const PASTE_NAME_HEADER: &str = "x-file-name";
/// The Tauri event telling the window which uploads were queued (by a drop on the window).
pub const FILES_QUEUED_EVENT: &str = "files-queued";
/// The Tauri event telling the window about a preview: loading, ready, not an image, …
pub const PREVIEW_EVENT: &str = "file-preview";
/// The longest pasted file name read, in bytes (the safe name is shorter still).
const MAX_NAME_HEADER_BYTES: usize = 4096;

type Result<T> = std::result::Result<T, CommandError>;

/// An upload the client queued, as the window shows it until its `file_offered` arrives.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct QueuedUpload {
    pub upload_id: u64,
    /// The safe name the room will show.
    pub name: String,
    pub size: u64,
    /// What its name and first bytes say it is (a hint, as the room's).
    pub mime: String,
}

/// A file that could not be queued, and why (in English; the window shows it with the name).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotQueued {
    pub name: String,
    pub message: String,
}

/// What became of the files picked or dropped.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Queued {
    pub queued: Vec<QueuedUpload>,
    pub failed: Vec<NotQueued>,
}

/// The first bytes of a file, enough to tell an image's format.
fn first_bytes(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    match std::fs::File::open(path).and_then(|mut f| f.read(&mut buf)) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Queue `paths` for upload, in order; files that cannot be sent are reported, not fatal.
pub async fn queue_paths(handle: &ClientHandle, paths: Vec<PathBuf>) -> Queued {
    let mut out = Queued::default();
    for path in paths {
        let raw_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = safe_name(&raw_name);
        let size = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => {
                out.failed.push(NotQueued {
                    name,
                    message: "not a regular file".into(),
                });
                continue;
            }
            Err(e) => {
                out.failed.push(NotQueued {
                    name,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let mime = mime_hint(&name, &first_bytes(&path)).to_owned();
        match handle.send_file(path).await {
            Ok(upload_id) => out.queued.push(QueuedUpload {
                upload_id,
                name,
                size,
                mime,
            }),
            Err(e) => out.failed.push(NotQueued {
                name,
                message: e.to_string(),
            }),
        }
    }
    out
}

/// Attach: the native open dialog (several files at once), then each picked file queued.
/// Nothing picked: nothing queued.
#[tauri::command]
pub async fn attach_files<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    title: Option<String>,
) -> Result<Queued> {
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    let (tx, rx) = oneshot::channel();
    let mut dialog = app.dialog().file();
    if let Some(title) = title.filter(|t| t.len() <= 200) {
        dialog = dialog.set_title(title);
    }
    if let Some(window) = app.get_webview_window("main") {
        dialog = dialog.set_parent(&window);
    }
    dialog.pick_files(move |picked| {
        let _ = tx.send(picked);
    });
    let picked = rx.await.ok().flatten().unwrap_or_default();
    let paths: Vec<PathBuf> = picked
        .into_iter()
        .filter_map(|p| p.into_path().ok())
        .collect();
    Ok(queue_paths(&handle, paths).await)
}

/// Files dropped on the window (Tauri's native drag-drop event): queued as if attached, and
/// the window told through [`FILES_QUEUED_EVENT`].
pub fn files_dropped<R: Runtime>(app: &AppHandle<R>, paths: Vec<PathBuf>) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let Some(state) = app.try_state::<AppState>() else {
            return;
        };
        let queued = match state.client().await {
            Some(handle) => queue_paths(&handle, paths).await,
            None => Queued {
                queued: Vec::new(),
                failed: paths
                    .iter()
                    .map(|p| NotQueued {
                        name: safe_name(&p.file_name().unwrap_or_default().to_string_lossy()),
                        message: CommandError::NotConnected.to_string(),
                    })
                    .collect(),
            },
        };
        let _ = app.emit(FILES_QUEUED_EVENT, &queued);
    });
}

/// Undo the percent-encoding of the pasted file's name header (`encodeURIComponent`).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Paste: the bytes of a pasted image (a raw IPC body, at most [`MAX_PASTE_BYTES`]) sent
/// under the name in the [`PASTE_NAME_HEADER`] header (made safe here).
#[tauri::command]
pub async fn paste_file(state: State<'_, AppState>, request: Request<'_>) -> Result<QueuedUpload> {
    let InvokeBody::Raw(bytes) = request.body() else {
        return Err(CommandError::Invalid(
            "paste: expected the file's bytes".into(),
        ));
    };
    if bytes.is_empty() {
        return Err(CommandError::Invalid("paste: the file is empty".into()));
    }
    if bytes.len() > MAX_PASTE_BYTES {
        return Err(CommandError::FileTooLarge {
            max_bytes: MAX_PASTE_BYTES as u64,
        });
    }
    let raw_name = request
        .headers()
        .get(PASTE_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_NAME_HEADER_BYTES)
        .map(percent_decode)
        .unwrap_or_default();
    let name = safe_name(&raw_name);
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    let mime = mime_hint(&name, bytes).to_owned();
    let size = bytes.len() as u64;
    let upload_id = handle.send_file_bytes(name.clone(), bytes.to_vec()).await?;
    Ok(QueuedUpload {
        upload_id,
        name,
        size,
        mime,
    })
}

/// Save: the native save dialog, its default name the file's safe name; then the file
/// fetched to exactly the chosen path (written beside it under a hidden name, renamed once its
/// SHA-256 matched). Resolves to the chosen path, or `null` when the user cancelled. An image
/// whose preview is still downloading is saved too: the core queues the save behind the
/// preview's fetch (the same file into another target is not "already being fetched").
#[tauri::command]
pub async fn save_file<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    file_id: FileId,
    name: String,
) -> Result<Option<String>> {
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    let (tx, rx) = oneshot::channel();
    let mut dialog = app.dialog().file().set_file_name(safe_name(&name));
    if let Some(window) = app.get_webview_window("main") {
        dialog = dialog.set_parent(&window);
    }
    if let Ok(downloads) = app.path().download_dir() {
        dialog = dialog.set_directory(downloads);
    }
    dialog.save_file(move |chosen| {
        let _ = tx.send(chosen);
    });
    let Some(path) = rx.await.ok().flatten().and_then(|p| p.into_path().ok()) else {
        return Ok(None);
    };
    handle
        .fetch_file(file_id.0, FetchTarget::Path(path.clone()))
        .await?;
    Ok(Some(path.display().to_string()))
}

/// Stop an upload (queued or in progress): the core reports `file_failed: cancelled`.
#[tauri::command]
pub async fn cancel_upload(state: State<'_, AppState>, upload_id: u64) -> Result<()> {
    if let Some(handle) = state.client().await {
        handle.cancel_upload(upload_id).await;
    }
    Ok(())
}

/// Stop a download (a preview or a save; a partial file is removed).
#[tauri::command]
pub async fn cancel_download(state: State<'_, AppState>, file_id: FileId) -> Result<()> {
    if let Some(handle) = state.client().await {
        handle.cancel_fetch(file_id.0).await;
    }
    Ok(())
}

/// Fetch a preview again (after it gave way to newer ones, or failed): as when the file
/// was offered.
#[tauri::command]
pub async fn load_preview<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    file_id: FileId,
    mime: String,
    size: u64,
) -> Result<bool> {
    let handle = state.client().await.ok_or(CommandError::NotConnected)?;
    Ok(crate::forward::fetch_preview(&app, &handle, file_id.0, &mime, size).await)
}

/// The bytes of an accepted preview, as a raw IPC response (an `ArrayBuffer` in the window),
/// which makes them a `blob:` URL of the MIME type [`PREVIEW_EVENT`] named.
#[tauri::command]
pub fn preview(previews: State<'_, Previews>, file_id: FileId) -> Result<Response> {
    let kept = previews
        .get(file_id.0)
        .ok_or(CommandError::Invalid("no preview for this file".into()))?;
    Ok(Response::new(kept.bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_names_are_percent_decoded() {
        assert_eq!(percent_decode("foto%20de%20ana.png"), "foto de ana.png");
        assert_eq!(percent_decode("%C3%B1and%C3%BA.png"), "ñandú.png");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(
            safe_name(&percent_decode("..%2F..%2Fetc%2Fpasswd")),
            "passwd"
        );
    }
}
