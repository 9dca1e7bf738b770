// Away from the window: live messages from others that arrive while the window is in the
// background are counted in its title ("(3) Tertulia") until it has the focus again; the
// "Mute" toggle (remembered) tells the backend, which then raises a desktop notification
// only for a message that mentions our nickname (the rule: src-tauri/src/forward.rs).
import { $ } from "./dom.js";
import { t, onLanguageChange } from "./i18n.js";
import { remember, recall } from "./prefs.js";
import { invoke, hasBackend } from "./tauri.js";

let unread = 0;

const away = () => !document.hasFocus() || document.hidden;

// The title of the page and of the native window (Tauri does not follow document.title).
function showTitle() {
  const title = unread > 0 ? `(${unread}) ${t("app.name")}` : t("app.name");
  if (document.title === title) return;
  document.title = title;
  const win = hasBackend() && window.__TAURI__.window?.getCurrentWindow?.();
  win?.setTitle(title).catch(() => {});
}

// A live message from someone else has arrived.
export function incoming() {
  if (!away()) return;
  unread += 1;
  showTitle();
}

function seen() {
  if (!unread || away()) return;
  unread = 0;
  showTitle();
}

const muted = () => recall("muted") === "1";

function setMuted(on) {
  remember("muted", on ? "1" : "0");
  $("mute").setAttribute("aria-pressed", String(on));
  if (hasBackend()) invoke("set_notifications_muted", { muted: on }).catch(() => {});
}

export function initAway() {
  window.addEventListener("focus", seen);
  document.addEventListener("visibilitychange", seen);
  onLanguageChange(showTitle);
  $("mute").addEventListener("click", () => setMuted(!muted()));
  setMuted(muted());
}
