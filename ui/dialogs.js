// The modal dialogs: "Pick another nickname" when the core rejects ours, the yes/no
// confirmation before the host stops the room, "Start a new room?" when the room stored
// on this computer has another passphrase, and "The host's identity changed".
import { $, showError } from "./dom.js";
import { checkNick } from "./validate.js";
import { nickRejectedText, errorText } from "./text.js";
import { session } from "./session.js";
import { invoke } from "./tauri.js";

// Asked again while already open (the connection timed out waiting for the new nickname and
// the reconnect's join was refused again): only the reason changes, what is typed stays.
export function openNickDialog(nick, reason) {
  $("nick-reason").textContent = nickRejectedText(nick, reason);
  const dialog = $("nick-dialog");
  if (dialog.open) return;
  $("nick-input").value = nick;
  showError("nick-error", "");
  dialog.showModal();
  $("nick-input").select();
}

export function closeNickDialog() {
  if ($("nick-dialog").open) $("nick-dialog").close();
}

async function onNickSubmit(event) {
  event.preventDefault();
  const nick = $("nick-input").value;
  const problem = checkNick(nick);
  if (problem) return showError("nick-error", problem);
  try {
    await invoke("set_nick", { nick: nick.trim() });
    session.nick = nick.trim();
    $("nick-dialog").close();
  } catch (e) {
    showError("nick-error", errorText(e));
  }
}

// Resolves to true when the user confirms.
export function confirmDialog(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  // Escape closes a dialog without setting returnValue: clear the previous answer first, so
  // Escape always means "no" (WebKit kept "ok" from an earlier confirmed stop).
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// "Start a new room?": resolves to "keep" or "delete" (the previous room's history), or null
// (Cancel, Escape). Focus starts on the choice that loses nothing.
export function askPreviousRoom() {
  const dialog = $("previous-room-dialog");
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const v = dialog.returnValue;
      resolve(v === "keep" || v === "delete" ? v : null);
    }, { once: true });
    dialog.showModal();
    $("previous-room-keep").focus();
  });
}

// "The host's identity changed": both fingerprints shown; resolves to "trust" only when
// the user clicks "Trust the new identity", else (Cancel, Escape, a click outside the
// dialog) to null. Focus starts on Cancel, so Enter or Space right away cancels too.
export function askHostChanged(pinned, presented) {
  const dialog = $("identity-dialog");
  $("identity-pinned").textContent = pinned;
  $("identity-presented").textContent = presented;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "trust" ? "trust" : null), { once: true });
    if (!dialog.open) dialog.showModal();
    $("identity-cancel").focus();
  });
}

// A click on the backdrop (outside the dialog's box) cancels it.
function closeOnClickOutside(dialog) {
  dialog.addEventListener("click", (event) => {
    if (event.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
    if (!inside) { dialog.returnValue = "cancel"; dialog.close(); }
  });
}

// onNickCancel: giving up on a nickname leaves the room.
// Escape in the nickname dialog means what its Cancel button means: give up and leave, never
// a closed dialog with the room half-joined under a refused name.
export function initDialogs({ onNickCancel }) {
  $("nick-form").addEventListener("submit", onNickSubmit);
  const cancel = async () => {
    $("nick-dialog").close();
    await onNickCancel();
  };
  $("nick-cancel").addEventListener("click", cancel);
  $("nick-dialog").addEventListener("cancel", (event) => {
    event.preventDefault();
    cancel();
  });
  closeOnClickOutside($("identity-dialog"));
}
