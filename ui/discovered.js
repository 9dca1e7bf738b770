// Rooms on this network, listed live in the Join form while the start screen shows: the
// backend browses for them (src-tauri/src/discovery.rs: browse_rooms when the screen shows,
// stop_browsing when it hides) and sends the whole list on every change as the
// "rooms-found" event ({rooms, problem}). Picking one fills in its address and port and
// moves to the passphrase; Escape there undoes the choice, Escape in the list goes back to
// the address field; arrow keys, Home and End move through the list.
//
// Everything in a room comes from the network: names and host names only via textContent
// (core already strips control and bidi characters and bounds them). The identity a room
// announces is the one the join then insists on, as with an invite code (docs/PROTOCOL.md
// §14); it can only refuse more: a pin already held for the address must still match.
import { $, el } from "./dom.js";
import { t, translate, onLanguageChange } from "./i18n.js";
import { errorText } from "./text.js";
import { hasBackend, invoke, listen } from "./tauri.js";

let rooms = [];
let problem = null;
let browsing = false;
// The room picked last and what the form said before it ({id, name, host, port}).
let picked = null;
// start.js: the identity the join insists on (null: none), said under the address.
let expectIdentity = () => {};
// Why the "rooms-found" events cannot be received, if they cannot.
let listenProblem = null;
// The highest `seq` shown: events and browse_rooms answers reach the window by different
// ways, so an older list arriving late is left out (src-tauri's RoomsUpdate).
let shownSeq = -Infinity;
// browse_rooms and stop_browsing, one after the other in the order asked: a quick leave and
// come back must not stop the browsing it has just started.
let calls = Promise.resolve();
function inOrder(cmd) {
  const call = calls.then(() => invoke(cmd));
  calls = call.catch(() => { /* its caller sees the error */ });
  return call;
}

// Shows the rooms of one "rooms-found" update (or browse_rooms answer).
export function applyRooms(update) {
  if (!browsing || !update) return;
  if (typeof update.seq === "number") {
    if (update.seq < shownSeq) return;
    shownSeq = update.seq;
  }
  rooms = Array.isArray(update.rooms) ? update.rooms : [];
  problem = update.problem || null;
  render();
}

// The line above the list, as a key and its values (translate() keeps them for a language
// switch; render() runs again on one anyway, for the error's own words).
function showStatus() {
  const [key, vars] = problem ? ["discovered.failed", { error: errorText(problem) }]
    : picked && rooms.some((r) => r.id === picked.id) ? ["discovered.picked", { name: picked.name }]
    : !rooms.length ? ["discovered.looking", {}]
    : ["discovered.found", { n: rooms.length }];
  translate($("discovered-status"), key, vars);
}

// Rebuilds the list; the keyboard stays on the same room when it is still listed.
function render() {
  const list = $("discovered-list");
  const focused = document.activeElement?.closest?.("#discovered-list li")?.dataset.id;
  list.replaceChildren(...rooms.map(item));
  list.hidden = rooms.length === 0;
  showStatus();
  if (focused) {
    const same = [...list.children].find((li) => li.dataset.id === focused);
    (same?.querySelector("button") || list.querySelector("button") || $("join-host")).focus();
  }
}

// Why a room cannot be picked (null: it can).
function unusable(room) {
  if (!room.compatible) return "discovered.incompatible";
  if (!room.join_host) return "discovered.no_address";
  return null;
}

function item(room) {
  const li = el("li", "discovered-room");
  li.dataset.id = room.id;
  const button = el("button", "discovered-pick secondary");
  button.type = "button";
  const name = el("span", "discovered-name", room.name);
  name.dir = "auto";
  const meta = el("span", "discovered-meta");
  meta.append(el("span", "discovered-where", t("discovered.where", { host: room.host, address: room.address || "—" })));
  if (room.fingerprint) meta.append(el("span", "discovered-identity", t("discovered.identity", { fingerprint: room.fingerprint })));
  const why = unusable(room);
  if (why) {
    meta.append(el("span", "discovered-why", t(why)));
    button.setAttribute("aria-disabled", "true");
  }
  button.append(name, meta);
  button.addEventListener("click", () => { if (!unusable(room)) pick(room); });
  li.append(button);
  return li;
}

// Fills the Join form with `room` and asks for its passphrase. The fields are set as if
// typed (an input event), so the form forgets an invite code's identity and its error.
function pick(room) {
  if (!picked) picked = { host: $("join-host").value, port: $("join-port").value };
  picked = { ...picked, id: room.id, name: room.name };
  setField("join-host", room.join_host);
  setField("join-port", String(room.port));
  expectIdentity(room.fingerprint || null);
  showStatus();
  $("join-pass").focus();
}

// Puts the form back as it was before the pick and the keyboard on the room picked.
function undoPick() {
  const { id, host, port } = picked;
  picked = null;
  setField("join-host", host);
  setField("join-port", port);
  showStatus();
  const li = [...$("discovered-list").children].find((n) => n.dataset.id === id);
  (li?.querySelector("button") || $("join-host")).focus();
}

function setField(id, value) {
  const input = $(id);
  input.value = value;
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

function onListKey(event) {
  const buttons = [...$("discovered-list").querySelectorAll("button")];
  const at = buttons.indexOf(document.activeElement);
  if (at < 0) return;
  const go = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: buttons.length - 1 }[event.key];
  if (event.key === "Escape") { event.preventDefault(); $("join-host").focus(); return; }
  if (go === undefined) return;
  event.preventDefault();
  buttons[Math.max(0, Math.min(buttons.length - 1, go))].focus();
}

async function start() {
  if (browsing) return;
  browsing = true;
  rooms = []; problem = listenProblem; picked = null;
  render();
  try {
    applyRooms(await inOrder("browse_rooms"));
  } catch (e) {
    applyRooms({ rooms: [], problem: e });
  }
}

function stop() {
  if (!browsing) return;
  browsing = false;
  rooms = []; problem = null; picked = null;
  render();
  inOrder("stop_browsing").catch(() => { /* nothing is browsing then */ });
}

export async function initDiscovered({ expect } = {}) {
  if (expect) expectIdentity = expect;
  if (!hasBackend()) { $("discovered").hidden = true; return; }
  $("discovered-list").addEventListener("keydown", onListKey);
  // A user edit of the address or port is their own choice: nothing to undo any more.
  for (const id of ["join-host", "join-port"]) $(id).addEventListener("input", (e) => { if (e.isTrusted) picked = null; });
  $("join-pass").addEventListener("keydown", (e) => { if (e.key === "Escape" && picked) { e.preventDefault(); undoPick(); } });
  onLanguageChange(render);
  try {
    await listen("rooms-found", (e) => applyRooms(e.payload));
  } catch (e) {
    listenProblem = e;
  }
  // Browsing only while the start screen shows: it stops in a room and starts again after.
  const follow = () => ($("start").hidden ? stop() : start());
  new MutationObserver(follow).observe($("start"), { attributes: true, attributeFilter: ["hidden"] });
  follow();
}
