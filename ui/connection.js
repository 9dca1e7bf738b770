// The connection bar: connecting, connected, "reconnecting in 3 s" counting down on its own
// (with "Reconnect now"), or why it failed. Also the one place that knows whether we are
// connected.
import { $ } from "./dom.js";
import { reconnectingText, secondsLeft } from "./text.js";
import { t, translate } from "./i18n.js";

let connected = false;
let countdownTimer = null;

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
}

export function clearCountdown() {
  if (countdownTimer) clearInterval(countdownTimer);
  countdownTimer = null;
}

export function startCountdown(delayMs, attempt) {
  clearCountdown();
  const until = Date.now() + delayMs;
  const tick = () => {
    const left = secondsLeft(until, Date.now());
    setConnState("reconnecting", null, reconnectingText(left, attempt));
    if (left <= 0) clearCountdown();
  };
  tick();
  countdownTimer = setInterval(tick, 250);
}
