// The composer: Enter sends, Shift+Enter adds a line, the box grows with its text. A sent
// message shows at once as "sending…" until the server has it. Every keystroke while
// connected tells the room we are typing; the core sends at most one notice per interval.
import { $ } from "./dom.js";
import { messageNode } from "./items.js";
import { appendPending, trackPending, sendFailed, notice } from "./log.js";
import { isConnected } from "./connection.js";
import { errorText } from "./text.js";
import { t } from "./i18n.js";
import { session } from "./session.js";
import { invoke } from "./tauri.js";

async function sendMessage() {
  const box = $("message");
  const text = box.value;
  if (!text.trim()) return;
  box.value = "";
  autosize();
  const node = messageNode({ from: session.nick, text: text.trim(), time_ms: Date.now(), own: true });
  appendPending(node);
  try {
    const id = await invoke("send", { text });
    trackPending(id, node);
  } catch (e) {
    sendFailed(node);
    notice(t("composer.not_sent", { error: errorText(e) }), false);
  }
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
