// Core client events -> view updates: one handler per event kind (the "type" tag of the
// core's ClientEvent, which the app forwards unchanged as "chat-event"). Room events render
// through the same per-kind node builders (items.js) whether live, backlog or older history.
import { messageNode, joinNode, leaveNode } from "./items.js";
import { append, notice, settleEcho, acked, rejected, shown, roomKeepsFrom, prependOlder, sessionEnded } from "./log.js";
import { setOnline, setMe } from "./people.js";
import { setConnState, clearCountdown, startCountdown, connectionAttempt, connectionError } from "./connection.js";
import { someoneTyping, stoppedTyping } from "./typing.js";
import { openNickDialog, closeNickDialog } from "./dialogs.js";
import { disconnectedText, nickErrorText, textErrorText, clientErrorText } from "./text.js";
import { t } from "./i18n.js";
import { session } from "./session.js";
import { incoming } from "./away.js";
import { joined } from "./prefs.js";
import { showRoomIdentity, hostIdentityChanged } from "./room.js";
import { fileNode, fileOffered, fileProgress, fileSent, fileReceived, fileFailed } from "./files.js";

// Errors after which the client does not retry: the bar says why it failed.
const FATAL_ERRORS = new Set(["wrong_passphrase", "not_tertulia", "bad_passphrase", "host_identity_changed"]);
// The words of the last fatal error, in the window's language: the `disconnected` that
// follows it says the same, not the core's English message.
let fatalText = null;

// The log node of a room event, by kind; older pages carry these same events.
const roomEventNode = { message: messageNode, join: joinNode, leave: leaveNode, file_offered: fileNode };

// A room event shown live or from the backlog, at the bottom of the log.
function showRoomEvent(ev) {
  append(roomEventNode[ev.type](ev), { live: !ev.history });
  shown(ev.seq);
}

const handlers = {
  connecting(ev) {
    fatalText = null;
    connectionAttempt(ev.attempt, ev.addr);
  },
  connected(ev) {
    clearCountdown();
    session.nick = ev.nick;
    joined(ev.nick);
    setMe(ev.nick);
    setConnState("connected", "conn.connected", { nick: ev.nick });
    showRoomIdentity(ev.host_fingerprint || "");
    roomKeepsFrom(ev.oldest_seq, ev.room_reset);
    if (ev.room_reset) notice("log.room_reset", false, {});
    else if (ev.gap) notice("log.gap", false, {});
    closeNickDialog();
  },
  nick_rejected(ev) {
    setConnState("connecting", "conn.choose_nick");
    openNickDialog(ev.nick, nickErrorText(ev.reason, ev.message));
  },
  online(ev) {
    setOnline(ev.members);
  },
  message(ev) {
    if (settleEcho(ev)) return;
    showRoomEvent(ev);
    if (!ev.history) stoppedTyping(ev.from);
    if (!ev.history && !ev.own) incoming();
  },
  join: showRoomEvent,
  leave: showRoomEvent,
  file_offered(ev) {
    fileOffered(ev);
    if (!ev.history && !ev.own) incoming();
  },
  file_progress: fileProgress,
  file_sent: fileSent,
  file_received: fileReceived,
  file_failed: fileFailed,
  older(ev) {
    const items = ev.events
      .filter((item) => Object.hasOwn(roomEventNode, item.type))
      .map((item) => ({ node: roomEventNode[item.type](item), seq: item.seq }));
    prependOlder(items, ev.more);
  },
  acked(ev) {
    acked(ev.ids);
  },
  message_rejected(ev) {
    rejected(ev.id);
    notice(t("log.not_delivered", { reason: textErrorText(ev.reason, ev.message) }), false);
  },
  error(ev) {
    // A failure to reach the room is the status line's (one line, updated per attempt); any
    // other problem is told in the log once per outage, a fatal one also in the bar.
    const text = clientErrorText(ev.kind, ev.message, ev.retry_after_secs);
    const fatal = FATAL_ERRORS.has(ev.kind);
    if (connectionError(ev.kind) || fatal) notice(text, false);
    if (fatal) {
      fatalText = text;
      setConnState("failed", null, text);
    }
    // Not in the room, nothing sent: the user decides, in a dialog, before anything else.
    if (ev.kind === "host_identity_changed" && ev.pinned_fingerprint && ev.presented_fingerprint) {
      hostIdentityChanged(ev.pinned_fingerprint, ev.presented_fingerprint);
    }
  },
  reconnecting(ev) {
    startCountdown(ev.delay_ms, ev.attempt);
  },
  typing(ev) {
    someoneTyping(ev.nick);
  },
  countdown() {
    // the window counts down on its own from "reconnecting"
  },
  disconnected(ev) {
    clearCountdown();
    sessionEnded();
    const message = ev.reason === "fatal" && fatalText ? fatalText : ev.message;
    fatalText = null;
    setConnState("failed", null, disconnectedText(ev.reason, message));
  },
};

// A room time a Date can hold (ms since the epoch, at most ±8.64e15); anything else (a
// hostile host's nonsense) reads as "now" instead of making date formatting throw and the
// event vanish.
const MAX_TIME_MS = 8.64e15;
function saneTimes(ev) {
  if ("time_ms" in ev && !(Number.isFinite(ev.time_ms) && Math.abs(ev.time_ms) <= MAX_TIME_MS)) ev.time_ms = 0;
  if (Array.isArray(ev.events)) ev.events.forEach(saneTimes);
}

export function onChatEvent(ev) {
  saneTimes(ev);
  if (Object.hasOwn(handlers, ev.type)) handlers[ev.type](ev);
}
