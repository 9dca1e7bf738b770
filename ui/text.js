// What the window says, worked out from event data: notices, the typing line, status lines,
// counts. Pure: no DOM, unit-tested with node --test. (Translations come in a later issue.)

// How a leave notice ends, by the core's leave reason; any other reason reads "left".
export const LEAVE_TEXT = { quit: "left", connection_lost: "lost connection", renamed: "changed nickname" };

// Local hours and minutes of a room time (ms since the epoch); 0 or missing means now.
export function clock(ms) {
  const d = ms ? new Date(ms) : new Date();
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// The message of a rejected command (Tauri rejects with the error's text) or exception.
export function errorText(e) { return typeof e === "string" ? e : (e && e.message) || String(e); }

export function joinText(nick) { return `${nick} joined`; }
export function leaveText(nick, reason) { return `${nick} ${LEAVE_TEXT[reason] || "left"}`; }
// A join or leave notice as the log shows it: time, then what happened.
export function noticeLine(timeMs, text) { return `${clock(timeMs)} · ${text}`; }

// The line under the log while others type; "" when nobody does.
export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length > 2) return "Several people are typing…";
  return "";
}

export function memberCount(n) { return n === 1 ? "1 member" : `${n} members`; }

export function connectingText(attempt) {
  return attempt <= 1 ? "Connecting…" : `Connecting (attempt ${attempt})…`;
}

// Whole seconds from now until `until` (both ms), never negative.
export function secondsLeft(until, now) { return Math.max(0, Math.ceil((until - now) / 1000)); }

export function reconnectingText(left, attempt) {
  return left > 0 ? `Reconnecting in ${left} s (attempt ${attempt})` : `Reconnecting (attempt ${attempt})…`;
}

export function disconnectedText(reason, message) {
  return reason === "quit" ? "Left the room" : "Disconnected: " + message;
}

export function nickRejectedText(nick, reason) { return `"${nick}" can't be used: ${reason}`; }

// The question before the host stops the room; `others` is everyone online but the host.
export function stopHostingQuestion(others) {
  const who = others > 0 ? `The ${others === 1 ? "other member" : others + " other members"} will be told the room is closing.` : "Nobody else is in the room.";
  return "Stop hosting this room? " + who;
}
