// Files and images in the conversation. A file's line shows its name (the safe name, as
// text, elided when long), size and type, and Save; a transfer shows a progress bar with
// Cancel, which continues across reconnects (the core resumes it). Images are previews the
// backend fetched and checked in Rust (src-tauri/src/preview.rs): the window asks for the
// bytes by file id once told "ready" ("file-preview"), and shows them through a blob: URL of
// the sniffed MIME type; a click opens them full size in an overlay (Escape or a click
// outside closes it, the focus goes back). Nothing else is ever rendered from a file: an SVG
// or a file that is not the image it claims stays a file.
//
// Sending: Attach (the native open dialog, opened by the backend), a drop on the window
// (the backend sends the dropped files; this shows the overlay while dragging) or an image
// pasted into the composer (its bytes go to the backend in a raw IPC body). An upload shows
// at once as a pending line with its progress, settled by its own `file_offered`.
import { $, el } from "./dom.js";
import { append, notice, shown } from "./log.js";
import { t, translate } from "./i18n.js";
import { session } from "./session.js";
import { invoke, listen } from "./tauri.js";
import { errorText } from "./text.js";
import { timeNode, stamp } from "./thread.js";
import { humanSize, fileKind, percent, pasteName, MAX_PASTE_BYTES } from "./filemeta.js";

// File lines by file id (a file shows once), pending uploads by upload id, and the blob:
// URLs made for previews (revoked when the backend drops a preview or the room changes).
const byFile = new Map();      // file id -> node
const byUpload = new Map();    // upload id -> node
const blobs = new Map();       // file id -> blob: URL
const readyInfo = new Map();   // file id -> {mime, width, height}, waiting for its line
let overlayReturn = null;      // what had the focus before the full-size overlay opened

export function resetFiles() {
  for (const url of blobs.values()) URL.revokeObjectURL(url);
  blobs.clear();
  byFile.clear();
  byUpload.clear();
  readyInfo.clear();
}

// File ids are decimal text (random u64s, more than a JavaScript number holds: the backend
// sends them as strings and takes them back as strings); upload ids are small numbers.
const idKey = (id) => String(id);

// ---------- the file line ----------

// A button whose screen-reader label names the file ("Save foto.png"); both are rewritten on
// a language switch (applyTranslations reads the vars kept on the node).
function button(className, key, name, onClick) {
  const b = translate(el("button", className), key, { name });
  b.type = "button";
  labelled(b, key + "_named", name);
  b.addEventListener("click", onClick);
  return b;
}

function labelled(node, key, name) {
  node.dataset.i18nVars = JSON.stringify({ name });
  node.setAttribute("data-i18n-aria-label", key);
  node.setAttribute("aria-label", t(key, { name }));
}

// A file's line: {from, name, size, mime, time_ms, own, seq, file_id}. Without file_id for
// an upload not in the room yet.
export function fileNode(ev) {
  const node = el("article", "msg file" + (ev.own ? " own" : ""));
  const meta = el("div", "meta");
  const from = el("span", "from", ev.from);
  from.dir = "auto";
  meta.append(from, timeNode(ev.time_ms), el("span", "status"));

  const card = el("div", "file-card");
  const preview = el("button", "preview");
  preview.type = "button";
  preview.hidden = true;
  labelled(preview, "file.open_full_named", ev.name);
  preview.addEventListener("click", () => openFull(node));
  const info = el("div", "file-info");
  // The safe name as text, isolated from the text around it, elided by CSS when long; the
  // whole name on hover.
  const name = el("span", "file-name", ev.name);
  name.dir = "auto";
  name.title = ev.name;
  const details = el("span", "file-details");
  const size = el("span", "file-size", humanSize(ev.size));
  const kind = translate(el("span", "file-kind"), ...fileKind(ev.name, ev.mime));
  details.append(size, document.createTextNode(" · "), kind);
  info.append(name, details);

  const transfer = el("div", "transfer");
  transfer.hidden = true;
  const bar = el("progress", "bar");
  bar.max = 100;
  bar.value = 0;
  const progress = el("span", "transfer-text");
  const cancel = button("secondary small cancel", "file.cancel", ev.name, () => cancelTransfer(node));
  transfer.append(bar, progress, cancel);

  const state = el("p", "file-state");
  state.setAttribute("role", "status");
  const actions = el("div", "file-actions");
  const save = button("secondary small save", "file.save", ev.name, () => saveFile(node));
  const show = button("secondary small show-preview", "file.show_preview", ev.name, () => reloadPreview(node));
  show.hidden = true;
  actions.append(save, show);
  card.append(preview, info, transfer, state, actions);
  node.append(meta, card);

  node.dataset.name = ev.name;
  node.dataset.size = String(ev.size);
  node.dataset.mime = ev.mime || "";
  if (ev.seq != null) node.dataset.seq = ev.seq;
  if (ev.file_id != null) claim(node, ev.file_id);
  else save.hidden = true;
  return stamp(node, ev.time_ms);
}

function claim(node, fileId) {
  node.dataset.fileId = idKey(fileId);
  byFile.set(idKey(fileId), node);
  node.querySelector(".save").hidden = false;
  const ready = readyInfo.get(idKey(fileId));
  if (ready) { readyInfo.delete(idKey(fileId)); showPreview(fileId, ready); }
}

const part = (node, sel) => node.querySelector(sel);

function setState(node, key, vars) {
  const state = part(node, ".file-state");
  if (key) translate(state, key, vars); else { delete state.dataset.i18n; state.textContent = ""; }
  state.classList.toggle("error", Boolean(key) && node.classList.contains("failed"));
}

function setStatus(node, key) {
  const status = part(node, ".status");
  if (key) translate(status, key); else { delete status.dataset.i18n; status.textContent = ""; }
}

function showProgress(node, direction, done, size) {
  const transfer = part(node, ".transfer");
  transfer.hidden = false;
  transfer.dataset.direction = direction;
  const bar = part(node, ".bar");
  bar.value = percent(done, size);
  bar.setAttribute("aria-label", t(direction === "upload" ? "file.uploading" : "file.downloading", { name: node.dataset.name }));
  translate(part(node, ".transfer-text"), "file.progress", { done: humanSize(done), size: humanSize(size), percent: percent(done, size) });
}

function hideProgress(node) { part(node, ".transfer").hidden = true; }

// ---------- sending ----------

// An upload the backend queued ({upload_id, name, size, mime}): a pending line at the bottom.
function pendingUpload(up) {
  if (byUpload.has(idKey(up.upload_id))) return;
  const node = fileNode({ from: session.nick, name: up.name, size: up.size, mime: up.mime, time_ms: Date.now(), own: true });
  node.classList.add("pending");
  node.dataset.uploadId = idKey(up.upload_id);
  byUpload.set(idKey(up.upload_id), node);
  setStatus(node, "msg.sending");
  showProgress(node, "upload", 0, up.size);
  append(node, { live: false });
  $("log").scrollTop = $("log").scrollHeight;
}

// What the backend queued from a pick, a drop: pending lines, and a notice per file refused.
export function queued(result) {
  for (const up of result?.queued || []) pendingUpload(up);
  for (const no of result?.failed || []) notice(t("file.not_sent", { name: no.name, error: no.message }), false);
}

async function attach() {
  try {
    queued(await invoke("attach_files", { title: t("file.attach_title") }));
  } catch (e) {
    notice(t("file.attach_failed", { error: errorText(e) }), false);
  }
}

// A pasted image (or any file the clipboard holds): its bytes to the backend, raw.
async function pasteFiles(files) {
  for (const file of files) {
    const name = pasteName(file);
    if (file.size > MAX_PASTE_BYTES) {
      notice(t("file.too_large", { name, max: humanSize(MAX_PASTE_BYTES) }), false);
      continue;
    }
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      pendingUpload(await invoke("paste_file", bytes, { headers: { "x-file-name": encodeURIComponent(name) } }));
    } catch (e) {
      notice(t("file.not_sent", { name, error: errorText(e) }), false);
    }
  }
}

function onPaste(event) {
  const files = [...(event.clipboardData?.files || [])];
  if (!files.length) return; // text pastes as text
  event.preventDefault();
  pasteFiles(files);
}

// ---------- room events ----------

// A file in the room: the own pending upload it settles, or a new line (live or backlog).
export function fileOffered(ev) {
  if (byFile.has(idKey(ev.file_id))) return;
  const mine = ev.own && ev.upload_id != null ? byUpload.get(idKey(ev.upload_id)) : null;
  if (mine) {
    mine.classList.remove("pending");
    setStatus(mine, null);
    hideProgress(mine);
    mine.dataset.seq = ev.seq;
    claim(mine, ev.file_id);
    shown(ev.seq);
    return;
  }
  append(fileNode(ev), { live: !ev.history });
  shown(ev.seq);
}

function transferNode(direction, id) {
  return direction === "upload" ? byUpload.get(idKey(id)) : byFile.get(idKey(id));
}

export function fileProgress(ev) {
  const node = transferNode(ev.direction, ev.id);
  if (!node || (ev.direction === "upload" && !node.classList.contains("pending"))) return;
  showProgress(node, ev.direction, ev.done, ev.size);
}

export function fileSent(ev) {
  const node = byUpload.get(idKey(ev.upload_id));
  if (!node) return;
  hideProgress(node);
  node.classList.remove("pending");
  setStatus(node, null);
  if (!node.dataset.fileId) claim(node, ev.file_id);
}

// A save may be under way while the preview's own fetch ends (Save pressed while the preview
// was still downloading: the backend saves after it): the save's "Saving…" and its progress
// stay until the save's own file_received (with its path) or file_failed.
const saving = (node) => node.dataset.saving === "1";

export function fileReceived(ev) {
  const node = byFile.get(idKey(ev.file_id));
  if (!node) return;
  if (ev.path) {
    delete node.dataset.saving;
    hideProgress(node);
    setState(node, "file.saved", { path: ev.path });
  } else if (!saving(node)) {
    hideProgress(node);
  }
}

const FAILURE_KEY = {
  too_large: "file.failed.too_large", no_space: "file.failed.no_space", corrupt: "file.failed.corrupt",
  busy: "file.failed.busy", disabled: "file.failed.disabled", gone: "file.gone", cancelled: "file.cancelled",
  io: "file.failed.io", refused: "file.failed.refused", local_space: "file.failed.local_space",
};

export function fileFailed(ev) {
  const node = transferNode(ev.direction, ev.id);
  if (!node) return;
  if (ev.direction === "download") delete node.dataset.saving;
  hideProgress(node);
  if (ev.direction === "upload") {
    node.classList.remove("pending");
    node.classList.add("failed");
    translate(part(node, ".status"), "msg.failed");
  }
  if (ev.reason === "gone") {
    node.classList.add("gone");
    part(node, ".save").hidden = true;
    part(node, ".show-preview").hidden = true;
  }
  const key = FAILURE_KEY[ev.reason] || "file.failed.refused";
  setState(node, key, { message: ev.message || "" });
}

// ---------- previews ----------

function showPreview(fileId, info) {
  const node = byFile.get(idKey(fileId));
  if (!node) { readyInfo.set(idKey(fileId), info); return; }
  invoke("preview", { fileId: idKey(fileId) }).then((bytes) => {
    if (!node.isConnected && !byFile.has(idKey(fileId))) return;
    const old = blobs.get(idKey(fileId));
    if (old) URL.revokeObjectURL(old);
    // The MIME type the backend sniffed, never the sender's word.
    const url = URL.createObjectURL(new Blob([bytes], { type: info.mime }));
    blobs.set(idKey(fileId), url);
    const preview = part(node, ".preview");
    const img = el("img");
    img.alt = t("file.image_alt", { name: node.dataset.name });
    img.width = info.width;
    img.height = info.height;
    img.decoding = "async";
    img.src = url;
    preview.replaceChildren(img);
    preview.hidden = false;
    node.classList.add("image");
    part(node, ".show-preview").hidden = true;
    if (!saving(node)) { hideProgress(node); setState(node, null); }
  }).catch(() => { part(node, ".show-preview").hidden = false; });
}

function dropPreview(fileId) {
  const url = blobs.get(idKey(fileId));
  if (url) URL.revokeObjectURL(url);
  blobs.delete(idKey(fileId));
  const node = byFile.get(idKey(fileId));
  if (!node) return;
  part(node, ".preview").replaceChildren();
  part(node, ".preview").hidden = true;
  node.classList.remove("image");
  part(node, ".show-preview").hidden = false;
}

// The backend's word on a preview: {state, file_id, …}.
export function onPreview(ev) {
  const node = byFile.get(idKey(ev.file_id));
  switch (ev.state) {
    case "loading":
      if (node) showProgress(node, "download", 0, Number(node.dataset.size));
      break;
    case "ready":
      showPreview(ev.file_id, { mime: ev.mime, width: ev.width, height: ev.height });
      break;
    case "not_image":
      if (node) { if (!saving(node)) hideProgress(node); node.classList.add("not-image"); }
      break;
    case "failed":
      if (node && !node.classList.contains("gone")) {
        if (!saving(node)) hideProgress(node);
        part(node, ".show-preview").hidden = false;
      }
      break;
    case "dropped":
      dropPreview(ev.file_id);
      break;
    default:
  }
}

function reloadPreview(node) {
  const fileId = node.dataset.fileId;
  part(node, ".show-preview").hidden = true;
  invoke("load_preview", { fileId, mime: node.dataset.mime, size: Number(node.dataset.size) })
    .catch((e) => { part(node, ".show-preview").hidden = false; notice(errorText(e), false); });
}

// ---------- actions ----------

async function saveFile(node) {
  const fileId = node.dataset.fileId;
  try {
    const path = await invoke("save_file", { fileId, name: node.dataset.name });
    if (path) {
      node.dataset.saving = "1";
      node.classList.remove("failed");
      setState(node, "file.saving");
      showProgress(node, "download", 0, Number(node.dataset.size));
    }
  } catch (e) {
    notice(t("file.save_failed", { name: node.dataset.name, error: errorText(e) }), false);
  }
}

function cancelTransfer(node) {
  const direction = part(node, ".transfer").dataset.direction;
  if (direction === "upload" && node.dataset.uploadId) invoke("cancel_upload", { uploadId: Number(node.dataset.uploadId) }).catch(() => {});
  else if (node.dataset.fileId) invoke("cancel_download", { fileId: node.dataset.fileId }).catch(() => {});
}

// The full-size overlay of a preview.
function openFull(node) {
  const url = blobs.get(node.dataset.fileId);
  if (!url) return;
  overlayReturn = part(node, ".preview");
  const img = $("image-full");
  img.src = url;
  img.alt = t("file.image_alt", { name: node.dataset.name });
  $("image-name").textContent = node.dataset.name;
  $("image-dialog").showModal();
  $("image-close").focus();
}

function initOverlay() {
  const dialog = $("image-dialog");
  $("image-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    // A click anywhere but the close button and the name closes it (the image is the view).
    if (event.target === dialog || event.target === $("image-full")) dialog.close();
  });
  dialog.addEventListener("close", () => {
    $("image-full").removeAttribute("src");
    if (overlayReturn?.isConnected) overlayReturn.focus();
    overlayReturn = null;
  });
}

// Dragging files over the window: the overlay says where they go (the backend sends them).
function initDrop() {
  const overlay = $("drop-overlay");
  const inRoom = () => !$("chat").hidden;
  const show = () => { overlay.hidden = !inRoom(); };
  const hide = () => { overlay.hidden = true; };
  listen("tauri://drag-enter", show).catch(() => {});
  listen("tauri://drag-leave", hide).catch(() => {});
  listen("tauri://drag-drop", hide).catch(() => {});
  window.addEventListener("keydown", (e) => { if (e.key === "Escape") hide(); });
}

export function initFiles() {
  $("attach").addEventListener("click", attach);
  $("message").addEventListener("paste", onPaste);
  initOverlay();
}

// The backend's file events (registered once the backend is there).
export async function listenFiles() {
  initDrop();
  await listen("file-preview", (e) => onPreview(e.payload));
  await listen("files-queued", (e) => queued(e.payload));
}
