// Tertulia window logic. Plain JS, no framework: the backend (src-tauri) forwards every core
// client event as "chat-event"; this file turns them into DOM. Peer text only ever goes
// through textContent.
"use strict";

const tauri = window.__TAURI__;
const invoke = (cmd, args) => tauri.core.invoke(cmd, args);
const $ = (id) => document.getElementById(id);

const state = {
  nick: "",
  hosting: null,       // HostInfo while hosting
  online: [],
  pending: new Map(),  // message id -> element, until acked
  unreadMarker: null,
  countdownTimer: null,
  connected: false,
  typing: new Map(),   // nick -> time (ms) until which "is typing" shows
  typingTimer: null,
  lastTypingSent: 0,
  oldestShown: null,   // lowest room sequence number shown
  roomOldest: null,    // oldest event the room keeps (from "connected")
  loadingOlder: false,
};

const TYPING_SHOW_MS = 4000;

// ---------- small helpers ----------
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
function clock(ms) {
  const d = ms ? new Date(ms) : new Date();
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function remember(key, value) { try { localStorage.setItem("tertulia." + key, value); } catch (_) { /* private mode */ } }
function recall(key) { try { return localStorage.getItem("tertulia." + key) || ""; } catch (_) { return ""; } }
function errorText(e) { return typeof e === "string" ? e : (e && e.message) || String(e); }

// ---------- validation (mirrors the core rules; the backend checks again) ----------
function checkNick(raw) {
  const nick = raw.trim();
  if (!nick) return "Nickname: please choose a nickname.";
  if ([...nick].length > 32) return "Nickname: at most 32 characters.";
  if (/[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/.test(nick)) return "Nickname: no control or invisible characters.";
  if (/\s\s/.test(nick) || /[^\S ]/.test(nick)) return "Nickname: only single spaces between words.";
  return null;
}
function checkPort(raw) {
  const n = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || n < 1 || n > 65535) return "Port: a number from 1 to 65535.";
  return null;
}
function checkPassphrase(raw) {
  if (!raw.trim()) return "Passphrase: please enter the room passphrase.";
  return null;
}
function checkHost(raw) {
  const host = raw.trim().replace(/^\[|\]$/g, "");
  if (!host) return "Address: enter the host's IP address or name.";
  const ipv6 = host.includes(":");
  if (!ipv6 && !/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(host)) return "Address: not an IP address or host name.";
  return null;
}

// Invite codes look like tertulia://HOST:PORT#PASSPHRASE
function parseInvite(text) {
  const m = /^tertulia:\/\/(\[[^\]]+\]|[^:\/#]+):(\d+)#(.+)$/.exec(text.trim());
  if (!m) return null;
  return { host: m[1].replace(/^\[|\]$/g, ""), port: m[2], passphrase: decodeURIComponent(m[3]) };
}

// ---------- start screen ----------
function showError(id, message) { $(id).textContent = message || ""; }

function fillRemembered() {
  $("host-nick").value = recall("nick");
  $("join-nick").value = recall("nick");
  $("join-host").value = recall("host");
  if (recall("port")) $("join-port").value = recall("port");
  if (recall("hostPort")) $("host-port").value = recall("hostPort");
}

async function onHost(event) {
  event.preventDefault();
  const nick = $("host-nick").value, port = $("host-port").value, pass = $("host-pass").value;
  const problem = checkNick(nick) || checkPort(port) || checkPassphrase(pass);
  if (problem) return showError("host-error", problem);
  showError("host-error", "");
  $("host-submit").disabled = true;
  try {
    remember("nick", nick.trim()); remember("hostPort", port.trim());
    state.nick = nick.trim();
    enterChat();
    const info = await invoke("host_server", { port: Number(port), passphrase: pass, nick: nick.trim() });
    showHosting(info);
  } catch (e) {
    leaveChat();
    showError("host-error", errorText(e));
  } finally {
    $("host-submit").disabled = false;
  }
}

async function onJoin(event) {
  event.preventDefault();
  const invite = parseInvite($("join-host").value);
  if (invite) {
    $("join-host").value = invite.host; $("join-port").value = invite.port; $("join-pass").value = invite.passphrase;
  }
  const nick = $("join-nick").value, host = $("join-host").value, port = $("join-port").value, pass = $("join-pass").value;
  const problem = checkNick(nick) || checkHost(host) || checkPort(port) || checkPassphrase(pass);
  if (problem) return showError("join-error", problem);
  showError("join-error", "");
  $("join-submit").disabled = true;
  try {
    remember("nick", nick.trim()); remember("host", host.trim()); remember("port", port.trim());
    state.nick = nick.trim();
    enterChat();
    await invoke("connect", { host: host.trim(), port: Number(port), passphrase: pass, nick: nick.trim() });
  } catch (e) {
    leaveChat();
    showError("join-error", errorText(e));
  } finally {
    $("join-submit").disabled = false;
  }
}

// ---------- chat screen ----------
function enterChat() {
  $("log").replaceChildren($("load-older"));
  $("load-older").hidden = true;
  state.oldestShown = null;
  state.roomOldest = null;
  state.loadingOlder = false;
  state.pending.clear();
  state.online = [];
  renderOnline();
  state.unreadMarker = null;
  $("start").hidden = true;
  $("chat").hidden = false;
  $("room-title").textContent = "Tertulia";
  setConnState("connecting", "Connecting…");
  $("message").focus();
}

function leaveChat() {
  clearCountdown();
  state.hosting = null;
  state.typing.clear();
  renderTyping();
  $("host-panel").hidden = true;
  $("stop-hosting").hidden = true;
  $("leave").hidden = false;
  $("chat").hidden = true;
  $("start").hidden = false;
}

function showHosting(info) {
  state.hosting = info;
  $("host-panel").hidden = false;
  $("stop-hosting").hidden = false;
  $("leave").hidden = true;
  const list = $("host-addresses");
  list.replaceChildren();
  const addrs = info.addresses.length ? info.addresses : ["127.0.0.1:" + info.port];
  for (const addr of addrs) {
    const li = el("li");
    const b = el("button", "secondary small", addr);
    b.type = "button";
    b.title = "Copy " + addr;
    b.addEventListener("click", () => copy(addr, "Address copied"));
    li.append(b);
    list.append(li);
  }
}

async function copy(text, done) {
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch (_) {
    const area = el("textarea"); area.value = text; document.body.append(area); area.select();
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    area.remove();
  }
  $("copy-status").textContent = ok ? done : "Copy failed — select and copy: " + text;
  setTimeout(() => { $("copy-status").textContent = ""; }, 4000);
}

function setConnState(kind, text) {
  const s = $("conn-state");
  s.className = "state " + kind;
  s.textContent = text;
  $("reconnect-now").hidden = kind !== "reconnecting";
  state.connected = kind === "connected";
}

function clearCountdown() {
  if (state.countdownTimer) clearInterval(state.countdownTimer);
  state.countdownTimer = null;
}

function startCountdown(delayMs, attempt) {
  clearCountdown();
  const until = Date.now() + delayMs;
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    setConnState("reconnecting", left > 0 ? `Reconnecting in ${left} s (attempt ${attempt})` : `Reconnecting (attempt ${attempt})…`);
    if (left <= 0) clearCountdown();
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

function nearBottom() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 60;
}

function append(node, { live = true } = {}) {
  const log = $("log");
  const stick = nearBottom();
  const away = !document.hasFocus() || document.hidden;
  if (live && away && !state.unreadMarker && node.classList.contains("msg") && !node.classList.contains("own")) {
    state.unreadMarker = el("div", "unread-marker", "New");
    log.append(state.unreadMarker);
  }
  log.append(node);
  if (stick) log.scrollTop = log.scrollHeight;
  else if (live) $("new-messages").hidden = false;
}

function mentions(text) {
  if (!state.nick) return false;
  const escaped = state.nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp("(^|[^\\p{L}\\p{N}_])@?" + escaped + "($|[^\\p{L}\\p{N}_])", "iu").test(text);
}

function messageNode(from, text, timeMs, own) {
  const node = el("article", "msg" + (own ? " own" : ""));
  const meta = el("div", "meta");
  meta.append(el("span", "from", from), el("time", "time", clock(timeMs)));
  node.append(meta, el("div", "text", text));
  if (!own && mentions(text)) node.classList.add("mention");
  return node;
}

function notice(text, live) { append(el("div", "notice", text), { live }); }

// ---------- older history ----------
function shownSeq(seq) {
  if (seq != null && (state.oldestShown == null || seq < state.oldestShown)) state.oldestShown = seq;
}
function updateOlderButton(more) {
  const known = state.roomOldest != null && state.oldestShown != null;
  const button = $("load-older");
  button.hidden = !(more ?? (known && state.roomOldest < state.oldestShown));
  button.disabled = state.loadingOlder;
  button.textContent = state.loadingOlder ? "Loading…" : "Show earlier messages";
}
function olderNode(ev) {
  if (ev.kind === "message") {
    const own = !!state.nick && ev.from.toLowerCase() === state.nick.toLowerCase();
    const node = messageNode(ev.from, ev.text, ev.time_ms, own);
    node.dataset.seq = ev.seq;
    return node;
  }
  const text = ev.kind === "join" ? `${ev.nick} joined` : `${ev.nick} ${LEAVE_TEXT[ev.reason] || "left"}`;
  const node = el("div", "notice", `${clock(ev.time_ms)} · ${text}`);
  node.dataset.seq = ev.seq;
  return node;
}
function loadOlder() {
  if (state.loadingOlder || !state.connected) return;
  state.loadingOlder = true;
  updateOlderButton(true);
  invoke("load_older").catch((e) => { state.loadingOlder = false; updateOlderButton(); notice(errorText(e), false); });
}
function onOlder(ev) {
  state.loadingOlder = false;
  const log = $("log");
  const before = log.scrollHeight - log.scrollTop;
  const anchor = $("load-older").nextSibling;
  for (const item of ev.events) {
    log.insertBefore(olderNode(item), anchor);
    shownSeq(item.seq);
  }
  log.scrollTop = log.scrollHeight - before; // keep what the reader was looking at in place
  updateOlderButton(ev.more);
}

function renderOnline() {
  const ul = $("online");
  ul.replaceChildren();
  for (const name of state.online) {
    const li = el("li", name.toLowerCase() === state.nick.toLowerCase() ? "me" : "", name);
    ul.append(li);
  }
  $("online-count").textContent = String(state.online.length);
  $("member-count").textContent = state.online.length === 1 ? "1 member" : `${state.online.length} members`;
}

// ---------- typing indicator ----------
function renderTyping() {
  const now = Date.now();
  for (const [nick, until] of state.typing) if (until <= now) state.typing.delete(nick);
  const names = [...state.typing.keys()];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  $("typing").textContent = text;
  if (!names.length && state.typingTimer) { clearInterval(state.typingTimer); state.typingTimer = null; }
}
function someoneTyping(nick) {
  state.typing.set(nick, Date.now() + TYPING_SHOW_MS);
  if (!state.typingTimer) state.typingTimer = setInterval(renderTyping, 500);
  renderTyping();
}
function stoppedTyping(nick) {
  if (state.typing.delete(nick)) renderTyping();
}
function userTyped() {
  const now = Date.now();
  if (!state.connected || !$("message").value.trim() || now - state.lastTypingSent < 1000) return;
  state.lastTypingSent = now;
  invoke("typing").catch(() => {});
}

const LEAVE_TEXT = { quit: "left", connection_lost: "lost connection", renamed: "changed nickname" };

function onChatEvent(ev) {
  switch (ev.type) {
    case "connecting":
      if (ev.attempt <= 1) setConnState("connecting", "Connecting…");
      else setConnState("connecting", `Connecting (attempt ${ev.attempt})…`);
      break;
    case "connected":
      clearCountdown();
      state.nick = ev.nick;
      setConnState("connected", "Connected as " + ev.nick);
      state.roomOldest = ev.oldest_seq;
      state.loadingOlder = false;
      if (ev.room_reset) state.oldestShown = null;
      updateOlderButton();
      if (ev.room_reset) notice("The server was restarted; earlier history is gone.", false);
      else if (ev.gap) notice("Some older messages you missed are no longer available.", false);
      $("nick-dialog").open && $("nick-dialog").close();
      break;
    case "nick_rejected":
      setConnState("connecting", "Choose another nickname");
      openNickDialog(ev.nick, ev.message);
      break;
    case "online":
      state.online = ev.members;
      renderOnline();
      break;
    case "message": {
      if (ev.own && ev.msg_id != null && state.pending.has(ev.msg_id)) {
        const node = state.pending.get(ev.msg_id);
        node.classList.remove("pending");
        node.querySelector("time").textContent = clock(ev.time_ms);
        node.dataset.seq = ev.seq;
        state.pending.delete(ev.msg_id);
        break;
      }
      const node = messageNode(ev.from, ev.text, ev.time_ms, ev.own);
      node.dataset.seq = ev.seq;
      append(node, { live: !ev.history });
      shownSeq(ev.seq);
      updateOlderButton();
      if (!ev.history) stoppedTyping(ev.from);
      break;
    }
    case "join":
      notice(`${clock(ev.time_ms)} · ${ev.nick} joined`, !ev.history);
      shownSeq(ev.seq);
      updateOlderButton();
      break;
    case "leave":
      notice(`${clock(ev.time_ms)} · ${ev.nick} ${LEAVE_TEXT[ev.reason] || "left"}`, !ev.history);
      shownSeq(ev.seq);
      updateOlderButton();
      break;
    case "older":
      onOlder(ev);
      break;
    case "acked":
      for (const id of ev.ids) {
        const node = state.pending.get(id);
        if (node) { node.classList.remove("pending"); state.pending.delete(id); }
      }
      break;
    case "message_rejected": {
      const node = state.pending.get(ev.id);
      if (node) { node.classList.remove("pending"); node.classList.add("failed"); state.pending.delete(ev.id); }
      notice("A message was not delivered: " + ev.message, false);
      break;
    }
    case "error":
      notice(ev.message, false);
      if (ev.kind === "wrong_passphrase" || ev.kind === "not_tertulia" || ev.kind === "bad_passphrase") setConnState("failed", ev.message);
      break;
    case "reconnecting":
      startCountdown(ev.delay_ms, ev.attempt);
      break;
    case "typing":
      someoneTyping(ev.nick);
      break;
    case "countdown":
      break; // the window counts down on its own from "reconnecting"
    case "disconnected":
      clearCountdown();
      if (ev.reason === "quit") setConnState("failed", "Left the room");
      else setConnState("failed", "Disconnected: " + ev.message);
      break;
  }
}

// ---------- composer ----------
async function sendMessage() {
  const box = $("message");
  const text = box.value;
  if (!text.trim()) return;
  box.value = "";
  autosize();
  const node = messageNode(state.nick, text.trim(), Date.now(), true);
  node.classList.add("pending");
  append(node, { live: false });
  $("log").scrollTop = $("log").scrollHeight;
  try {
    const id = await invoke("send", { text });
    state.pending.set(id, node);
  } catch (e) {
    node.classList.remove("pending");
    node.classList.add("failed");
    notice("Not sent: " + errorText(e), false);
  }
}
function autosize() {
  const box = $("message");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight, 160) + "px";
}

// ---------- nickname dialog ----------
function openNickDialog(nick, reason) {
  $("nick-reason").textContent = `"${nick}" can't be used: ${reason}`;
  $("nick-input").value = nick;
  showError("nick-error", "");
  const dialog = $("nick-dialog");
  if (!dialog.open) dialog.showModal();
  $("nick-input").select();
}

async function onNickSubmit(event) {
  event.preventDefault();
  const nick = $("nick-input").value;
  const problem = checkNick(nick);
  if (problem) return showError("nick-error", problem);
  try {
    await invoke("set_nick", { nick: nick.trim() });
    state.nick = nick.trim();
    remember("nick", state.nick);
    $("nick-dialog").close();
  } catch (e) {
    showError("nick-error", errorText(e));
  }
}

function confirmDialog(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

async function leaveRoom() {
  try {
    if (state.hosting) {
      const others = state.online.length - 1;
      const who = others > 0 ? `The ${others === 1 ? "other member" : others + " other members"} will be told the room is closing.` : "Nobody else is in the room.";
      if (!(await confirmDialog("Stop hosting this room? " + who))) return;
      clearCountdown();
      await invoke("stop_hosting");
    } else {
      await invoke("disconnect");
    }
  } catch (e) { notice(errorText(e), false); }
  leaveChat();
}

// ---------- wiring ----------
function wire() {
  fillRemembered();
  $("host-form").addEventListener("submit", onHost);
  $("join-form").addEventListener("submit", onJoin);
  $("join-host").addEventListener("input", () => {
    const invite = parseInvite($("join-host").value);
    if (invite) { $("join-host").value = invite.host; $("join-port").value = invite.port; $("join-pass").value = invite.passphrase; }
  });
  $("host-generate").addEventListener("click", async () => {
    try { $("host-pass").value = await invoke("generate_passphrase"); $("host-pass").type = "text"; } catch (e) { showError("host-error", errorText(e)); }
  });
  for (const b of document.querySelectorAll(".reveal")) {
    b.addEventListener("click", () => {
      const input = $(b.dataset.for);
      input.type = input.type === "password" ? "text" : "password";
      b.textContent = input.type === "password" ? "Show" : "Hide";
    });
  }
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); sendMessage(); });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendMessage(); }
  });
  $("message").addEventListener("input", () => { autosize(); userTyped(); });
  $("log").addEventListener("scroll", () => { if (nearBottom()) $("new-messages").hidden = true; });
  $("load-older").addEventListener("click", loadOlder);
  $("new-messages").addEventListener("click", () => { $("log").scrollTop = $("log").scrollHeight; $("new-messages").hidden = true; });
  window.addEventListener("focus", () => { if (state.unreadMarker && nearBottom()) { /* keep marker visible until next blur */ } });
  window.addEventListener("blur", () => { if (state.unreadMarker) { state.unreadMarker.remove(); state.unreadMarker = null; } });
  $("reconnect-now").addEventListener("click", () => invoke("reconnect_now").catch((e) => notice(errorText(e), false)));
  $("leave").addEventListener("click", leaveRoom);
  $("stop-hosting").addEventListener("click", leaveRoom);
  $("copy-invite").addEventListener("click", () => state.hosting && copy(state.hosting.invite, "Invite code copied — paste it into Join"));
  $("toggle-people").addEventListener("click", () => {
    const open = $("people").classList.toggle("open");
    $("toggle-people").setAttribute("aria-expanded", String(open));
  });
  $("nick-form").addEventListener("submit", onNickSubmit);
  $("nick-cancel").addEventListener("click", async () => {
    $("nick-dialog").close();
    await invoke(state.hosting ? "stop_hosting" : "disconnect").catch(() => {});
    leaveChat();
  });
}

async function main() {
  wire();
  if (!tauri) { showError("join-error", "This page must run inside the Tertulia app."); return; }
  try {
    await tauri.event.listen("chat-event", (e) => onChatEvent(e.payload));
  } catch (e) {
    showError("join-error", "Cannot receive chat events: " + errorText(e));
  }
  $("host-nick").focus();
}

main();
