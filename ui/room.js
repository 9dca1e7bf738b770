// The chat screen's life: entering it (empty log, connecting), the host panel (addresses to
// copy, the room identity, invite code), leaving or stopping hosting (asking first), the
// host's identity once connected — and when it changed, the choice the user makes — and back
// to the start.
import { $, el, showError } from "./dom.js";
import { resetLog, notice } from "./log.js";
import { resetFiles } from "./files.js";
import { clearOnline, onlineCount } from "./people.js";
import { setConnState, clearCountdown } from "./connection.js";
import { clearTyping } from "./typing.js";
import { confirmDialog, askHostChanged } from "./dialogs.js";
import { errorText, stopHostingQuestion, discoveryReason } from "./text.js";
import { t, translate } from "./i18n.js";
import { session } from "./session.js";
import { forgetUnjoined } from "./prefs.js";
import { invoke } from "./tauri.js";
import { showInternet, resetInternet, initInternet } from "./internet.js";

export function enterChat() {
  resetLog();
  resetFiles();
  clearOnline();
  $("start").hidden = true;
  $("chat").hidden = false;
  translate($("room-title"), "app.name");
  showRoomIdentity("");
  setConnState("connecting", "conn.connecting");
  $("message").focus();
}

// Back to the start screen: old errors are gone (the caller shows a new one if that is why).
export function leaveChat() {
  clearCountdown();
  forgetUnjoined();
  showError("host-error", "");
  showError("join-error", "");
  session.hosting = null;
  clearTyping();
  resetInternet();
  $("host-panel").hidden = true;
  showRoomIdentity("");
  $("stop-hosting").hidden = true;
  $("leave").hidden = false;
  $("chat").hidden = true;
  $("start").hidden = false;
}

// The host's fingerprint in the chat header once the handshake proved it ("" hides it).
export function showRoomIdentity(fingerprint) {
  const node = $("room-identity");
  node.hidden = !fingerprint;
  if (fingerprint) translate(node, "chat.identity", { fingerprint });
  else { node.textContent = ""; delete node.dataset.i18n; delete node.dataset.i18nVars; }
}

// The host presented another identity than the trusted one (the core's
// host_identity_changed error: nothing was sent, the session stopped). Nothing else happens
// until the user chooses: trusting joins again accepting exactly the presented identity
// (which re-pins it); anything else leaves for the start screen with the reason on the Join
// form.
let askingIdentity = false;
export async function hostIdentityChanged(pinned, presented) {
  if (askingIdentity) return;
  askingIdentity = true;
  let choice;
  try { choice = await askHostChanged(pinned, presented); } finally { askingIdentity = false; }
  if (choice === "trust") {
    enterChat();
    try {
      await invoke("trust_host", { fingerprint: presented });
      return;
    } catch (e) {
      leaveChat();
      showError("join-error", errorText(e));
      return;
    }
  }
  await invoke(session.hosting ? "stop_hosting" : "disconnect").catch(() => {});
  leaveChat();
  showError("join-error", t("identity.cancelled", { pinned, presented }));
  $("join-submit").focus();
}

// info: the backend's HostInfo ({port, addresses, fingerprint, invite}).
export function showHosting(info) {
  session.hosting = info;
  $("host-panel").hidden = false;
  const fp = $("copy-fingerprint");
  fp.textContent = info.fingerprint || "";
  fp.parentElement.hidden = !info.fingerprint;
  // Where the room is reachable from, as the host chose it (backend's HostInfo.reach).
  translate($("host-reach"), "reach.now." + (info.reach || "network"));
  // Whether the room is shown on this network (backend's HostInfo.announce).
  const announced = $("host-announced"), announce = info.announce || { status: "off" };
  announced.hidden = announce.status === "off";
  if (announce.status === "on") translate(announced, "announce.now", { name: announce.name });
  else if (announce.status === "failed") translate(announced, "announce.failed", { reason: discoveryReason(announce.cause, announce.reason) });
  showInternet(info.internet || null);
  $("stop-hosting").hidden = false;
  $("leave").hidden = true;
  const list = $("host-addresses");
  list.replaceChildren();
  const addrs = info.addresses.length ? info.addresses : ["127.0.0.1:" + info.port];
  for (const addr of addrs) {
    const li = el("li");
    const b = el("button", "secondary small", addr);
    b.type = "button";
    b.dataset.i18nTitle = "chat.copy_address";
    b.dataset.i18nVars = JSON.stringify({ address: addr }); // for the title: the text is the address itself
    b.title = t("chat.copy_address", { address: addr });
    b.addEventListener("click", () => copy(addr, "chat.address_copied"));
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
  $("copy-status").textContent = ok ? t(done) : t("chat.copy_failed", { text });
  setTimeout(() => { $("copy-status").textContent = ""; }, 4000);
}

async function leaveRoom() {
  try {
    if (session.hosting) {
      if (!(await confirmDialog(stopHostingQuestion(onlineCount() - 1)))) return;
      clearCountdown();
      await invoke("stop_hosting");
    } else {
      await invoke("disconnect");
    }
  } catch (e) { notice(errorText(e), false); }
  leaveChat();
}

// Giving up in the nickname dialog: leave (or stop hosting) without asking.
export async function abandonRoom() {
  await invoke(session.hosting ? "stop_hosting" : "disconnect").catch(() => {});
  leaveChat();
}

export function initRoom() {
  initInternet(copy);
  $("leave").addEventListener("click", leaveRoom);
  $("stop-hosting").addEventListener("click", leaveRoom);
  $("copy-invite").addEventListener("click", () => session.hosting && copy(session.hosting.invite, "chat.invite_copied"));
  $("copy-fingerprint").addEventListener("click", () => session.hosting && copy(session.hosting.fingerprint, "chat.fingerprint_copied"));
  $("reconnect-now").addEventListener("click", () => invoke("reconnect_now").catch((e) => notice(errorText(e), false)));
}
