// The message log: room events in room order, own messages pending until the server has
// them, the unread marker, the "New messages" jump (instead of yanking a reader down) and
// the "Show earlier messages" pager, which inserts older events above the shown ones.
import { $, el } from "./dom.js";
import { noticeNode, messageNode } from "./items.js";
import { oldestAfter, earlierAvailable } from "./paging.js";
import { errorText } from "./text.js";
import { translate } from "./i18n.js";
import { isConnected } from "./connection.js";
import { invoke } from "./tauri.js";
import { arrange, arrangeFrom, retime, initThread } from "./thread.js";

// Own messages, matched by id in whatever order things arrive. The backend's answer to
// "send" (the id) and the core's events about that id (echo, ack, rejection) travel
// separately, and concurrent answers need not come back in order: every own message whose id
// is known stays in `ownById` for the session (an ack may come before its echo, and a replay
// after a reconnect may bring an echo for a message acked long ago); events about ids not
// known yet wait in `unclaimed` while any send still awaits its id, and are applied when that
// id arrives — or, once no send awaits one, an echo nobody claimed is shown as a message.
const ownById = new Map();   // message id -> {node, text, onRefused}
const unclaimed = new Map(); // message id -> {echo, acked, rejected}
let awaitingIds = 0;
// Whether own messages in a replay can be this window's: after a reconnect of this session,
// yes; in the backlog of a first join (or after a room reset) they are earlier sessions'.
let everJoined = false;
let replayMayBeOurs = false;
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
  ownById.clear();
  unclaimed.clear();
  awaitingIds = 0;
  everJoined = false;
  replayMayBeOurs = false;
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
// id "send" returned) or sendFailed. `onRefused(text)` runs if the core refuses it.
export function appendPending(node, text = "", onRefused = () => {}) {
  awaitingIds += 1;
  setStatus(node, "pending");
  append(node, { live: false });
  $("log").scrollTop = $("log").scrollHeight;
  return { node, text, onRefused };
}

// "send" returned `id` for the message appendPending gave `mine` for.
export function trackPending(id, mine) {
  awaitingIds = Math.max(0, awaitingIds - 1);
  ownById.set(id, mine);
  const got = unclaimed.get(id);
  unclaimed.delete(id);
  if (got?.echo) settle(mine.node, got.echo);
  else if (got?.acked) setStatus(mine.node, null);
  if (got?.rejected && !got.echo && !got.acked) refuse(mine);
  if (!awaitingIds) showUnclaimed();
}

// "send" failed: the message never reached the core.
export function sendFailed(mine) {
  awaitingIds = Math.max(0, awaitingIds - 1);
  refuse(mine);
  if (!awaitingIds) showUnclaimed();
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

function refuse(mine) {
  setStatus(mine.node, "failed");
  mine.onRefused(mine.text);
}

// The room's time and sequence number on an own message, which then sits in room order.
function settle(node, ev) {
  setStatus(node, null);
  const follower = node.nextElementSibling;
  node.dataset.seq = ev.seq;
  placeBySeq(node);
  retime(node, ev.time_ms, follower);
}

// Moves a node with a sequence number after every shown event with a lower one and before
// every one with a higher one (an own message typed before others' messages came in can end
// up after them in the room). Nodes without a number (pending, notices) stay where they are.
function placeBySeq(node) {
  const seq = Number(node.dataset.seq);
  let prev = null;
  let next = null;
  for (const other of $("log").querySelectorAll("[data-seq]")) {
    if (other === node) continue;
    const s = Number(other.dataset.seq);
    if (s < seq) prev = other;
    else if (s > seq && !next) next = other;
  }
  const before = (a, b) => Boolean(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
  if ((!prev || before(prev, node)) && (!next || before(node, next))) return;
  if (next && (!prev || before(prev, next))) next.before(node);
  else if (prev) prev.after(node);
}

// Keeps what happened to an own message whose id has not come back yet; false when no send
// awaits an id (so it cannot be one of the messages being sent).
function holdUnclaimed(id, what) {
  if (!awaitingIds) return false;
  unclaimed.set(id, { ...unclaimed.get(id), ...what });
  return true;
}

// No send awaits an id any more: an echo still unclaimed is nobody's pending message here,
// so it is shown like any message; acks and rejections of unknown ids mean nothing.
function showUnclaimed() {
  const echoes = [...unclaimed.values()].map((got) => got.echo).filter(Boolean);
  unclaimed.clear();
  for (const ev of echoes.sort((a, b) => a.seq - b.seq)) {
    const node = messageNode(ev);
    append(node, { live: true });
    placeBySeq(node);
    arrangeFrom(node);
    shown(ev.seq);
  }
}

// A (re)connection into the room: a replay after it can carry this session's own messages,
// unless it is the first join or the room was reset.
// After a room reset the server numbers from 1 again: what is shown from before keeps its
// place but loses its (now void) sequence number, so new events are not slotted among it.
function joinedRoom(roomReset) {
  replayMayBeOurs = everJoined && !roomReset;
  everJoined = true;
  if (roomReset) for (const node of $("log").querySelectorAll("[data-seq]")) delete node.dataset.seq;
}

// The session is over for good ("disconnected"): an own message still "sending…" will not be
// delivered by it; it is marked so and its text offered back to the composer.
export function sessionEnded() {
  for (const mine of ownById.values()) if (mine.node.classList.contains("pending")) refuse(mine);
}

// The echo of an own message settles its node (room time and sequence number, room order);
// true when `ev` was handled so (or is held until its id arrives), false when it is to be
// shown as a message: an echo of an id the window never sent or no longer knows, a second
// echo of an id already settled at another sequence number (someone else under our
// nickname), or an own message in a first join's backlog.
export function settleEcho(ev) {
  if (!ev.own || ev.msg_id == null) return false;
  if (ev.history && !replayMayBeOurs) return false;
  const mine = ownById.get(ev.msg_id);
  if (!mine) return holdUnclaimed(ev.msg_id, { echo: ev });
  if (mine.node.dataset.seq != null) return mine.node.dataset.seq === String(ev.seq);
  settle(mine.node, ev);
  return true;
}
export function acked(ids) {
  for (const id of ids) {
    const mine = ownById.get(id);
    if (mine) { if (mine.node.classList.contains("pending")) setStatus(mine.node, null); } else holdUnclaimed(id, { acked: true });
  }
}
export function rejected(id) {
  const mine = ownById.get(id);
  if (mine) { if (mine.node.dataset.seq == null) refuse(mine); } else holdUnclaimed(id, { rejected: true });
}

// ---------- older history ----------

// A room event with sequence number `seq` is now shown.
export function shown(seq) {
  oldestShown = oldestAfter(oldestShown, seq);
  updateOlderButton();
}

// A (re)connection: what the room keeps; after a room reset, earlier sequence numbers are void.
export function roomKeepsFrom(oldestSeq, roomReset) {
  joinedRoom(roomReset);
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
