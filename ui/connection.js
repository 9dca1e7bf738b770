// The connection bar: connecting, connected, "reconnecting in 3 s" counting down on its own
// (with "Reconnect now"), or why it failed. Also the one place that knows whether we are
// connected, and what the current outage has been like: one status line that updates per
// attempt instead of a notice per failure, and after a few failed attempts to reach the
// address a hint of what to check.
import { $ } from "./dom.js";
import { connectingText, reconnectingText, secondsLeft } from "./text.js";
import { translate } from "./i18n.js";

// Failed attempts in a row to reach the address before the hint shows.
export const HINT_AFTER_FAILURES = 3;

let connected = false;
let countdownTimer = null;
// Since the last time in the room: the address tried, whether the last failure was the
// network's (the address did not answer or the connection broke), the kinds of other
// failures already told in the log (each once), and the failed attempts.
const outage = { addr: "", network: false, told: new Set(), failures: 0 };

export const isConnected = () => connected;

// kind: "connecting" | "connected" | "reconnecting" | "failed" (also the CSS class); then a
// translation key with its vars (rewritten on a language switch), or (key null) ready text.
export function setConnState(kind, key, vars) {
  const s = $("conn-state");
  s.className = "state " + kind;
  if (key) translate(s, key, vars);
  else { delete s.dataset.i18n; delete s.dataset.i18nVars; s.textContent = vars; }
  $("reconnect-now").hidden = kind !== "reconnecting";
  connected = kind === "connected";
  if (kind === "connected" || kind === "failed") resetOutage();
}

function resetOutage() {
  outage.network = false;
  outage.told.clear();
  outage.failures = 0;
  $("conn-hint").hidden = true;
}

function stopTimer() {
  if (countdownTimer) clearInterval(countdownTimer);
  countdownTimer = null;
}

// No countdown and no outage any more (connected, stopped, or the room left).
export function clearCountdown() {
  stopTimer();
  resetOutage();
}

// Connection attempt `attempt` to `addr` (1: the first since starting or since the room was
// last reached, so a new outage).
export function connectionAttempt(attempt, addr) {
  if (attempt <= 1) resetOutage();
  outage.addr = addr || outage.addr;
  setConnState("connecting", null, connectingText(attempt));
}

// The core reported an error of `kind` while (re)connecting: true when it belongs in the log.
// Network failures never do (the status line and its hint say it); any other kind once per
// outage (an integrity failure stays visible, but not once per retry).
export function connectionError(kind) {
  outage.network = kind === "network";
  if (outage.network || outage.told.has(kind)) return false;
  outage.told.add(kind);
  return true;
}

// Waiting `delayMs` before attempt `attempt`: the status line counts down, and after
// HINT_AFTER_FAILURES failed attempts to reach the address, the hint says what to check.
export function startCountdown(delayMs, attempt) {
  stopTimer();
  outage.failures = Math.max(outage.failures, attempt - 1);
  const hint = $("conn-hint");
  hint.hidden = !(outage.network && outage.failures >= HINT_AFTER_FAILURES);
  if (!hint.hidden) translate(hint, "conn.hint_unreachable", { address: outage.addr });
  const until = Date.now() + delayMs;
  const tick = () => {
    const left = secondsLeft(until, Date.now());
    setConnState("reconnecting", null, reconnectingText(left, attempt));
    if (left <= 0) stopTimer();
  };
  tick();
  countdownTimer = setInterval(tick, 250);
}
