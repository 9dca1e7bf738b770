// "Reachable from the internet" on the chat screen: the backend's InternetStatus (internet.rs),
// first from host_server's answer, then from each "internet-status" event. Where the room is
// reachable (with the self-check and an invite code naming that address), or why not and
// what to forward by hand. Every text by key; values (addresses) only through translate().
import { $ } from "./dom.js";
import { t, translate } from "./i18n.js";
import { listen } from "./tauri.js";

// The last status an event brought for the room hosted now (events can come before
// host_server has answered: then they are newer than its answer).
let latest = null;

function render(status) {
  const box = $("internet-now");
  box.hidden = !status || status.state === "removed";
  if (box.hidden) return;
  const line = $("internet-status"), more = $("internet-more"), copy = $("copy-internet-invite");
  const lan = status.lan || t("internet.lan_unknown");
  const vars = { port: status.port, lan, detail: status.detail || "", address: status.external || "" };
  more.hidden = true;
  copy.hidden = true;
  box.dataset.state = status.state;
  if (status.state === "asking") translate(line, "internet.asking", vars);
  else if (status.state === "reachable") {
    translate(line, "internet.reachable", vars);
    if (status.check) { translate(more, "internet.check." + status.check); more.hidden = false; }
    copy.hidden = !status.invite;
    copy.dataset.invite = status.invite || "";
  } else if (status.state === "lost") translate(line, "internet.lost", vars);
  else {
    const key = "internet.unreachable." + (status.reason || "no_answer");
    translate(line, t(key) === key ? "internet.unreachable.no_answer" : key, vars);
    translate(more, "internet.still_lan");
    more.hidden = false;
  }
}

// The hosted room's status as host_server returned it (null: not asked for).
export function showInternet(status) {
  render(status && latest ? latest : status);
}

// Leaving the room: nothing shown, nothing kept.
export function resetInternet() {
  latest = null;
  render(null);
}

export function initInternet(copyText) {
  $("copy-internet-invite").addEventListener("click", (e) => {
    const invite = e.currentTarget.dataset.invite;
    if (invite) copyText(invite, "internet.invite_copied");
  });
}

export async function listenInternet() {
  await listen("internet-status", (e) => {
    if (!e.payload || e.payload.state === "removed") return;
    latest = e.payload;
    if (!$("host-panel").hidden) render(latest);
  });
}
