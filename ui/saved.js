// Saved rooms on the start screen: the rooms joined before (src-tauri/src/rooms.rs keeps
// them), each with one-click "Rejoin" and "Forget". A room whose passphrase is not in the
// system keyring asks for it inline. The backend tells of every change with the
// "saved-rooms" event ({rooms, problem}); a problem (the keyring could not store the
// passphrase, the list file was damaged…) is said in words, on the chat screen while in a
// room. Room names and nicknames only via textContent.
import { $, el } from "./dom.js";
import { t, currentLocale, onLanguageChange } from "./i18n.js";
import { checkPassphrase } from "./validate.js";
import { errorText } from "./text.js";
import { enterChat, leaveChat } from "./room.js";
import { session } from "./session.js";
import { hasBackend, invoke, listen } from "./tauri.js";

let rooms = [];

// "Last used …" in the current locale: the time alone today, else date and time.
export function lastUsedText(ms, now = Date.now()) {
  const d = new Date(ms), today = new Date(now);
  const sameDay = d.toDateString() === today.toDateString();
  const when = sameDay
    ? t("saved.today", { time: d.toLocaleTimeString(currentLocale(), { hour: "2-digit", minute: "2-digit" }) })
    : d.toLocaleString(currentLocale(), { dateStyle: "medium", timeStyle: "short" });
  return t("saved.last_used", { when });
}

// A backend problem ({kind, detail}) in words.
export function problemText(problem) {
  return t("saved.problem." + problem.kind, { detail: problem.detail });
}

// Says `text` where the user is: the notice on the chat screen, else the list's error line.
function say(text) {
  if (!$("chat").hidden) {
    $("saved-notice-text").textContent = text;
    $("saved-notice").hidden = !text;
  } else {
    $("saved-error").textContent = text;
    render();
  }
}

function clearProblem() {
  $("saved-error").textContent = "";
  $("saved-notice").hidden = true;
}

// Rebuilds the list. An open passphrase prompt survives it (what was typed, its error and
// the focus in it), as long as its room is still listed.
function render() {
  const list = $("saved-list");
  const active = document.activeElement;
  const focused = active?.closest?.("#saved-list li")?.dataset.id;
  const asking = list.querySelector(".saved-ask");
  const askingId = asking?.closest("li")?.dataset.id;
  const typingInPrompt = asking?.contains(active) ? active : null;
  list.replaceChildren(...rooms.map(item));
  const owner = askingId && list.querySelector(`li[data-id="${CSS.escape(askingId)}"]`);
  if (owner) owner.append(asking);
  $("saved-rooms").hidden = rooms.length === 0 && !$("saved-error").textContent;
  if (owner && typingInPrompt) typingInPrompt.focus();
  else if (focused) list.querySelector(`li[data-id="${CSS.escape(focused)}"] .saved-rejoin`)?.focus();
}

function item(room) {
  const li = el("li", "saved-room");
  li.dataset.id = room.id;
  const info = el("div", "saved-info");
  info.append(el("span", "saved-name", room.name));
  const meta = el("span", "saved-meta");
  if (room.name !== room.id) meta.append(el("span", "saved-address", room.id));
  meta.append(el("span", "", t("saved.as", { nick: room.nick })), el("span", "", lastUsedText(room.last_used_ms)));
  if (room.passphrase_saved) meta.append(el("span", "saved-key", t("saved.remembered")));
  info.append(meta);

  const actions = el("div", "saved-actions");
  const rejoinButton = el("button", "saved-rejoin small", t("saved.rejoin"));
  rejoinButton.type = "button";
  rejoinButton.setAttribute("aria-label", t("saved.rejoin_label", { name: room.name }));
  rejoinButton.addEventListener("click", () => rejoin(room, li));
  const forgetButton = el("button", "saved-forget secondary small", t("saved.forget"));
  forgetButton.type = "button";
  forgetButton.setAttribute("aria-label", t("saved.forget_label", { name: room.name }));
  forgetButton.addEventListener("click", () => forget(room, li));
  actions.append(rejoinButton, forgetButton);
  li.append(info, actions);
  return li;
}

// Rejoin with the remembered passphrase in one click; without one, ask for it.
async function rejoin(room, li) {
  clearProblem();
  if (!room.passphrase_saved) return ask(room, li, null);
  session.nick = room.nick;
  enterChat();
  try {
    const result = await invoke("rejoin_saved_room", { id: room.id });
    if (result && result.status === "needs_passphrase") {
      leaveChat();
      ask(room, li, result.detail);
    }
  } catch (e) {
    leaveChat();
    say(errorText(e));
  }
}

// The inline passphrase prompt of a saved room (Escape or Cancel closes it).
function ask(room, li, detail) {
  li.querySelector(".saved-ask")?.remove();
  const form = el("form", "saved-ask");
  form.noValidate = true;
  const why = el("p", "saved-why", detail ? t("saved.keyring_unreadable", { detail }) : t("saved.ask"));
  const label = el("label");
  const input = el("input");
  input.type = "password";
  input.autocomplete = "current-password";
  input.spellcheck = false;
  input.required = true;
  label.append(el("span", "", t("field.passphrase")), input);
  const check = el("label", "check");
  const box = el("input");
  box.type = "checkbox";
  check.append(box, el("span", "", t("saved.remember")));
  const error = el("p", "error");
  error.setAttribute("role", "alert");
  const buttons = el("div", "row end");
  const cancel = el("button", "secondary small", t("saved.cancel"));
  cancel.type = "button";
  const submit = el("button", "small", t("saved.join"));
  submit.type = "submit";
  buttons.append(cancel, submit);
  form.append(why, label, check, error, buttons);
  // The prompt may have moved to a rebuilt item of the same room (render).
  const close = () => { const owner = form.closest("li"); form.remove(); owner?.querySelector(".saved-rejoin")?.focus(); };
  cancel.addEventListener("click", close);
  form.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.preventDefault(); close(); } });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const problem = checkPassphrase(input.value);
    if (problem) { error.textContent = problem; input.focus(); return; }
    session.nick = room.nick;
    enterChat();
    try {
      await invoke("rejoin_saved_room", { id: room.id, passphrase: input.value, remember: box.checked });
      form.remove();
    } catch (err) {
      leaveChat();
      error.textContent = errorText(err);
      input.focus();
    }
  });
  (li.isConnected ? li : $("saved-list").querySelector(`li[data-id="${CSS.escape(room.id)}"]`) || li).append(form);
  input.focus();
}

async function forget(room, li) {
  clearProblem();
  const next = li.nextElementSibling || li.previousElementSibling;
  try {
    const update = await invoke("forget_saved_room", { id: room.id });
    applyUpdate(update);
  } catch (e) {
    say(errorText(e));
  }
  // Keep the keyboard in the list: the neighbour's Rejoin, else the Join form.
  const target = next && $("saved-list").querySelector(`li[data-id="${CSS.escape(next.dataset.id)}"] .saved-rejoin`);
  (target || $("join-nick")).focus();
}

function applyUpdate(update) {
  if (!update) return;
  rooms = Array.isArray(update.rooms) ? update.rooms : [];
  render();
  if (update.problem) say(problemText(update.problem));
}

// Reload the list from the backend (at start, and each time the start screen shows again).
export async function refreshSaved() {
  try {
    const list = await invoke("list_saved_rooms");
    rooms = Array.isArray(list) ? list : [];
    render();
  } catch (e) {
    rooms = [];
    $("saved-error").textContent = t("saved.list_failed", { error: errorText(e) });
    render();
  }
}

export async function initSaved() {
  $("saved-notice-close").addEventListener("click", () => { $("saved-notice").hidden = true; });
  onLanguageChange(render);
  if (!hasBackend()) return;
  // Back at the start screen: the list may have changed (the room just left is first now).
  new MutationObserver(() => { if (!$("start").hidden) refreshSaved(); })
    .observe($("start"), { attributes: true, attributeFilter: ["hidden"] });
  try {
    await listen("saved-rooms", (e) => applyUpdate(e.payload));
  } catch (e) {
    $("saved-error").textContent = errorText(e);
  }
  await refreshSaved();
}
