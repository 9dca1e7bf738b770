// What the window says, worked out from event data: notices, the typing line, status lines,
// counts — each through t() in the current language (i18n.js). Pure: no DOM, unit-tested
// with node --test.
import { t } from "./i18n.js";
export { clock } from "./i18n.js";

// The log key of a leave notice, by the core's leave reason; any other reason reads "left".
const LEAVE_KEY = { quit: "log.left", connection_lost: "log.lost", renamed: "log.renamed" };

// What went wrong, in the window's language: a rejected command ({kind, message, …vars},
// src-tauri's CommandError) by its kind, else its message; an exception's message; a string.
export function errorText(e) {
  if (e && typeof e === "object" && typeof e.kind === "string") {
    if (e.kind === "send_refused" && e.reason) return textErrorText(e.reason, e.message);
    if (e.kind === "invalid_nick" && e.reason) {
      const reason = knownOr("nick_error." + e.reason, null);
      return reason ? t("command_error.invalid_nick", { reason }) : e.message;
    }
    if (e.kind === "discovery_failed") return t("command_error.discovery_failed", { reason: discoveryReason(e.cause, e.reason) });
    const text = knownOr("command_error." + e.kind, null, e);
    if (text) return text;
  }
  return typeof e === "string" ? e : (e && e.message) || String(e);
}

// A join or leave notice as key and vars for translate() (so a language switch rewrites it).
export function joinNotice(ev) { return ["log.joined", { time: { ms: ev.time_ms }, nick: ev.nick }]; }
export function leaveNotice(ev) { return [LEAVE_KEY[ev.reason] || "log.left", { time: { ms: ev.time_ms }, nick: ev.nick }]; }

// The line under the log while others type; "" when nobody does.
export function typingText(names) {
  if (names.length === 1) return t("typing.one", { a: names[0] });
  if (names.length === 2) return t("typing.two", { a: names[0], b: names[1] });
  if (names.length > 2) return t("typing.many");
  return "";
}

export function memberCount(n) { return t("chat.members", { n }); }

export function connectingText(attempt) {
  return attempt <= 1 ? t("conn.connecting") : t("conn.connecting_attempt", { attempt });
}

// Whole seconds from now until `until` (both ms), never negative.
export function secondsLeft(until, now) { return Math.max(0, Math.ceil((until - now) / 1000)); }

export function reconnectingText(left, attempt) {
  return left > 0 ? t("conn.reconnecting_in", { seconds: left, attempt }) : t("conn.reconnecting", { attempt });
}

// The core's reason for a refused nickname or message, in the current language; the core's
// own (English) message when the reason is one this window does not know.
export function nickErrorText(reason, message) { return knownOr("nick_error." + reason, message); }
export function textErrorText(reason, message) { return knownOr("text_error." + reason, message); }
// `retryAfter`: the seconds the server asked to wait (with too_many_failed_attempts). Some
// kinds show the core's message verbatim after a translated prefix (needs_newer,
// host_outdated: the versions it names).
export function clientErrorText(kind, message, retryAfter) {
  const vars = { message: message ?? "" };
  if (retryAfter !== undefined) vars.seconds = retryAfter;
  return knownOr("error." + kind, message, vars);
}

// Why rooms on this network cannot be looked for or shown, as a translatable part for t()
// and translate(): by the backend's stable cause (DiscoveryError::cause, "turned_off",
// "stopped"), falling back to its English reason for a cause this window does not know.
export function discoveryReason(cause, reason) {
  return { key: "discovery_cause." + (cause || "unknown"), fallback: reason || "" };
}

function knownOr(key, fallback, vars) {
  const text = t(key, vars);
  return text === key ? fallback : text;
}

export function disconnectedText(reason, message) {
  if (reason === "quit") return t("conn.left");
  if (reason === "wrong_passphrase") return t("conn.disconnected", { message: t("error.wrong_passphrase") });
  return t("conn.disconnected", { message });
}

export function nickRejectedText(nick, reason) { return t("nick.rejected", { nick, reason }); }

// The question before the host stops the room; `others` is everyone online but the host.
export function stopHostingQuestion(others) {
  return others > 0 ? t("confirm.stop_question", { n: others }) : t("confirm.stop_question_alone");
}
