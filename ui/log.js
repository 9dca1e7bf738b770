// The message log: room events in room order, own messages pending until the server has
// them, the unread marker, the "New messages" jump (instead of yanking a reader down) and
// the "Show earlier messages" pager, which inserts older events above the shown ones.
import { $, el } from "./dom.js";
import { noticeNode } from "./items.js";
import { oldestAfter, earlierAvailable } from "./paging.js";
import { errorText } from "./text.js";
import { translate } from "./i18n.js";
import { isConnected } from "./connection.js";
import { invoke } from "./tauri.js";
import { arrange, arrangeFrom, retime, initThread } from "./thread.js";

const pending = new Map(); // message id -> element, until acked
// The backend's answer to "send" (the id) and the core's events travel separately, so an
// own message's echo, ack or rejection can arrive before its id does. While sends await
// their ids, events about ids above any returned so far (the core numbers messages in
// order) wait here (message id -> {echo, acked, rejected}) for their node.
const early = new Map();
let awaitingIds = 0;
let highestId = 0;
let unreadMarker = null;
let oldestShown = null;     // lowest room sequence number shown
let roomOldest = null;      // oldest event the room keeps (from "connected")
let loadingOlder = false;

// Empty log for a new room.
export function resetLog() {
  $("log").replaceChildren($("load-older"));
  $("load-older").hidden = true;
  oldestShown = null;
  roomOldest = null;
  loadingOlder = false;
  pending.clear();
  early.clear();
  awaitingIds = 0;
  highestId = 0;
  unreadMarker = null;
}

function nearBottom() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 60;
}

// Adds a node at the bottom. Live nodes arriving while the window is in the background get
// an unread marker before the first message from someone else; a reader scrolled up stays
// where they are and gets the "New messages" button.
export function append(node, { live = true } = {}) {
  const log = $("log");
  const stick = nearBottom();
  const away = !document.hasFocus() || document.hidden;
  if (live && away && !unreadMarker && node.classList.contains("msg") && !node.classList.contains("own")) {
    unreadMarker = translate(el("div", "unread-marker"), "chat.unread");
    log.append(unreadMarker);
  }
  log.append(node);
  arrange(node);
  if (stick) log.scrollTop = log.scrollHeight;
  else if (live) $("new-messages").hidden = false;
}

// A notice line: a translation key with its vars, or ready text when vars is null.
export function notice(text, live, vars = null) { append(noticeNode(text, vars), { live }); }

// ---------- own messages until the server has them ----------

// Shows an own message as "sending…" and scrolls to it; then either trackPending (with the
// id "send" returned) or sendFailed.
export function appendPending(node) {
  awaitingIds += 1;
  setStatus(node, "pending");
  append(node, { live: false });
  $("log").scrollTop = $("log").scrollHeight;
}

function idArrived() { awaitingIds = Math.max(0, awaitingIds - 1); }

export function trackPending(id, node) {
  idArrived();
  highestId = Math.max(highestId, id);
  const got = early.get(id);
  early.delete(id);
  if (got?.echo) settle(node, got.echo);
  else if (got?.acked) setStatus(node, null);
  else if (got?.rejected) markFailed(node);
  else pending.set(id, node);
}

export function sendFailed(node) {
  idArrived();
  markFailed(node);
}

// An own message's state: "pending" (sending…), "failed" (not delivered) or null (in the
// room). The words are a translated status span, the look a class of the same name.
function setStatus(node, state) {
  node.classList.toggle("pending", state === "pending");
  node.classList.toggle("failed", state === "failed");
  const status = node.querySelector(".status");
  if (!status) return;
  if (state) translate(status, state === "pending" ? "msg.sending" : "msg.failed");
  else { delete status.dataset.i18n; status.textContent = ""; }
}

function markFailed(node) { setStatus(node, "failed"); }

function settle(node, ev) {
  setStatus(node, null);
  retime(node, ev.time_ms);
  node.dataset.seq = ev.seq;
}

// Keeps what happened to an own message whose id has not come back yet; false when it
// cannot be one (no send awaits its id, or the id was returned already).
function holdEarly(id, what) {
  if (!awaitingIds || id <= highestId) return false;
  early.set(id, { ...early.get(id), ...what });
  return true;
}

// The echo of an own pending message settles it in place (room time and sequence number);
// true when `ev` was such an echo.
export function settleEcho(ev) {
  if (!ev.own || ev.msg_id == null) return false;
  const node = pending.get(ev.msg_id);
  if (!node) return !ev.history && holdEarly(ev.msg_id, { echo: ev });
  settle(node, ev);
  pending.delete(ev.msg_id);
  return true;
}
export function acked(ids) {
  for (const id of ids) {
    const node = pending.get(id);
    if (node) { setStatus(node, null); pending.delete(id); } else holdEarly(id, { acked: true });
  }
}
export function rejected(id) {
  const node = pending.get(id);
  if (node) { markFailed(node); pending.delete(id); } else holdEarly(id, { rejected: true });
}

// ---------- older history ----------

// A room event with sequence number `seq` is now shown.
export function shown(seq) {
  oldestShown = oldestAfter(oldestShown, seq);
  updateOlderButton();
}

// A (re)connection: what the room keeps; after a room reset, earlier sequence numbers are void.
export function roomKeepsFrom(oldestSeq, roomReset) {
  roomOldest = oldestSeq;
  loadingOlder = false;
  if (roomReset) oldestShown = null;
  updateOlderButton();
}

function updateOlderButton(more) {
  const button = $("load-older");
  button.hidden = !earlierAvailable(more, roomOldest, oldestShown);
  button.disabled = loadingOlder;
  translate(button, loadingOlder ? "chat.older_loading" : "chat.older");
}

// Asks for the page before the oldest shown event (one request at a time, only connected).
function loadOlder() {
  if (loadingOlder || !isConnected()) return;
  loadingOlder = true;
  updateOlderButton(true);
  invoke("load_older").catch((e) => { loadingOlder = false; updateOlderButton(); notice(errorText(e), false); });
}

// Inserts a page of older events' nodes (oldest first) above everything shown, keeping what
// the reader was looking at in place.
export function prependOlder(items, more) {
  loadingOlder = false;
  const log = $("log");
  const before = log.scrollHeight - log.scrollTop;
  const anchor = $("load-older").nextSibling;
  for (const { node, seq } of items) {
    log.insertBefore(node, anchor);
    arrange(node);
    oldestShown = oldestAfter(oldestShown, seq);
  }
  if (items.length) arrangeFrom(items.at(-1).node);
  log.scrollTop = log.scrollHeight - before;
  updateOlderButton(more);
}

export function initLog() {
  initThread($("log"));
  $("log").addEventListener("scroll", () => { if (nearBottom()) $("new-messages").hidden = true; });
  $("load-older").addEventListener("click", loadOlder);
  $("new-messages").addEventListener("click", () => { $("log").scrollTop = $("log").scrollHeight; $("new-messages").hidden = true; });
  window.addEventListener("blur", () => { if (unreadMarker) { unreadMarker.remove(); unreadMarker = null; } });
}
