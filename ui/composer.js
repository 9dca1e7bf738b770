// The composer: Enter sends, Shift+Enter adds a line, the box grows with its text. A sent
// message shows at once as "sending…" until the server has it; sends reach the core one at a
// time, in the order typed (concurrent commands could overtake each other). A message the
// core refuses goes back into the box to be edited, unless something new was typed there.
// Every keystroke while connected tells the room we are typing; the core sends at most one
// notice per interval.
import { $ } from "./dom.js";
import { messageNode } from "./items.js";
import { appendPending, trackPending, sendFailed, notice } from "./log.js";
import { isConnected } from "./connection.js";
import { errorText } from "./text.js";
import { t } from "./i18n.js";
import { session } from "./session.js";
import { invoke } from "./tauri.js";

// The last send in the queue; the next one starts when it is answered.
let sending = Promise.resolve();

function sendMessage() {
  const box = $("message");
  const text = box.value;
  if (!text.trim()) return;
  box.value = "";
  autosize();
  const node = messageNode({ from: session.nick, text: text.trim(), time_ms: Date.now(), own: true });
  const mine = appendPending(node, text, restoreDraft);
  sending = sending.then(async () => {
    try {
      trackPending(await invoke("send", { text }), mine);
    } catch (e) {
      sendFailed(mine);
      notice(t("composer.not_sent", { error: errorText(e) }), false);
    }
  });
}

// A refused message's text back in the box (the caret at its end), if the box is empty.
function restoreDraft(text) {
  const box = $("message");
  if (box.value.trim()) return;
  box.value = text;
  autosize();
  box.setSelectionRange(text.length, text.length);
}

function autosize() {
  const box = $("message");
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight, 160) + "px";
}

function userTyped() {
  if (!isConnected() || !$("message").value.trim()) return;
  invoke("typing").catch(() => {});
}

export function initComposer() {
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); sendMessage(); });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendMessage(); }
  });
  $("message").addEventListener("input", () => { autosize(); userTyped(); });
}
