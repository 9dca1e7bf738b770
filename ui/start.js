// The start screen: the Host and Join forms, checked on submit with a message saying what to
// fix; a pasted invite code fills in the Join form (its room identity, when it names one, is
// the only one the join accepts); the values used last are remembered.
// The Host form starts with a generated passphrase and warns, once, when the one typed is
// easy to guess (the backend's passphrase_strength); hosting again uses it anyway.
import { $, showError } from "./dom.js";
import { checkNick, checkPort, checkPassphrase, checkHost, checkKeep, checkRoomName, fitRoomName } from "./validate.js";
import { parseInvite } from "./invite.js";
import { remember, recall, rememberWhenJoined } from "./prefs.js";
import { errorText } from "./text.js";
import { t, setLanguage, language, translate, onLanguageChange } from "./i18n.js";
import { enterChat, leaveChat, showHosting } from "./room.js";
import { session } from "./session.js";
import { invoke, hasBackend } from "./tauri.js";
import { initSaved } from "./saved.js";
import { initDiscovered } from "./discovered.js";
import { askPreviousRoom } from "./dialogs.js";

function fillRemembered() {
  $("host-nick").value = recall("nick");
  $("join-nick").value = recall("nick");
  $("join-host").value = recall("host");
  if (recall("port")) $("join-port").value = recall("port");
  if (recall("hostPort")) $("host-port").value = recall("hostPort");
  const reach = document.querySelector(`input[name=reach][value="${recall("hostReach")}"]`);
  if (reach) reach.checked = true;
  if (recall("hostRoomName")) { $("host-room-name").value = recall("hostRoomName"); roomNameEdited = true; }
  if (recall("hostAnnounce") === "off") $("host-announce").checked = false;
}

// The room name follows the nickname ("Ana's room") until the host types one of their own;
// emptied, the field shows that default as its placeholder, and hosting uses it.
let roomNameEdited = false;
const defaultRoomNick = () => {
  const nick = $("host-nick").value.trim();
  return nick && fitRoomName((n) => t("host.room_name_default", { nick: n }), nick).nick;
};
const defaultRoomName = () => {
  const nick = defaultRoomNick();
  return nick ? t("host.room_name_default", { nick }) : "";
};
function followNick() {
  const input = $("host-room-name"), nick = defaultRoomNick();
  if (!roomNameEdited) input.value = defaultRoomName();
  if (nick) {
    input.dataset.i18nPlaceholder = "host.room_name_default";
    input.dataset.i18nVars = JSON.stringify({ nick });
    input.placeholder = defaultRoomName();
  } else {
    delete input.dataset.i18nPlaceholder;
    input.removeAttribute("placeholder");
  }
}

const chosenReach = () => document.querySelector("input[name=reach]:checked")?.value || "network";

// "Reachable from the internet" forwards to this computer's network address: not offered for
// "this computer only".
function syncInternetOption() {
  const box = $("host-internet");
  box.disabled = chosenReach() === "computer";
  if (box.disabled) box.checked = false;
}

// The passphrase the weak-passphrase warning was shown for: submitting it again hosts.
let warnedFor = null;

// The backend's verdict on the Host form's passphrase ({weak, reason}); never weak when it
// cannot say.
async function judgePassphrase() {
  try {
    return (await invoke("passphrase_strength", { passphrase: $("host-pass").value, nick: $("host-nick").value.trim() })) || { weak: false };
  } catch (_) { return { weak: false }; }
}

// The warning is three translated pieces (lead, reason, what to do), so a language switch
// rewrites each of them.
function showStrength(verdict) {
  const box = $("host-pass-warning");
  box.hidden = !verdict.weak;
  if (!verdict.weak) { box.replaceChildren(); return; }
  const reason = "strength." + (verdict.reason || "easy_to_guess");
  const piece = (key) => translate(document.createElement("span"), t(key) === key ? "strength.easy_to_guess" : key);
  box.replaceChildren(piece("strength.lead"), " ", piece(reason), " ", piece("strength.why"));
}

let judging = null;
function onPassphraseInput() {
  clearTimeout(judging);
  judging = setTimeout(async () => {
    const pass = $("host-pass").value;
    const verdict = await judgePassphrase();
    if ($("host-pass").value === pass) { showStrength(verdict); if (verdict.weak) warnedFor = pass; }
  }, 250);
}

// The room identity the last invite code pasted named (until the address or port is
// edited: then it is another room), shown under the address.
let inviteFingerprint = null;
// `key`: where it comes from (an invite code, or a room picked from those on this network).
function setInviteFingerprint(fingerprint, key = "join.identity") {
  inviteFingerprint = fingerprint || null;
  const hint = $("join-identity");
  hint.hidden = !inviteFingerprint;
  if (inviteFingerprint) translate(hint, key, { fingerprint: inviteFingerprint });
}

// An invite code in the address field is spread over address, port and passphrase (and its
// room identity kept); a damaged one is said so on the form (false).
function fillFromInvite() {
  let invite;
  try { invite = parseInvite($("join-host").value); } catch (e) { showError("join-error", errorText(e)); setInviteFingerprint(null); return false; }
  if (invite) {
    $("join-host").value = invite.host; $("join-port").value = invite.port; $("join-pass").value = invite.passphrase;
    setInviteFingerprint(invite.fingerprint);
    showError("join-error", "");
  }
  return true;
}

// Typing in the address: an invite code fills the form, anything else is another room than
// the last code's.
function onAddressInput() {
  setInviteFingerprint(null);
  fillFromInvite();
}

async function onHost(event) {
  event.preventDefault();
  const nick = $("host-nick").value, port = $("host-port").value, pass = $("host-pass").value;
  const keepMessages = $("host-keep-messages").value, keepDays = $("host-keep-days").value;
  const roomName = $("host-room-name").value.trim() || defaultRoomName(), announce = $("host-announce").checked;
  const problem = checkNick(nick) || checkRoomName(roomName) || checkPort(port) || checkPassphrase(pass)
    || checkKeep(keepMessages, 10_000_000, "check.keep_messages") || checkKeep(keepDays, 3650, "check.keep_days");
  if (problem) return showError("host-error", problem);
  showError("host-error", "");
  $("host-submit").disabled = true;
  try {
    // A weak passphrase is warned about once; the same one submitted again is used.
    if (warnedFor !== pass) {
      clearTimeout(judging);
      const verdict = await judgePassphrase();
      showStrength(verdict);
      if (verdict.weak) { warnedFor = pass; $("host-pass").focus(); return; }
    }
    const reach = chosenReach();
    const args = { port: Number(port), passphrase: pass, nick: nick.trim(), reach, roomName, announce };
    // Explicit each time (never remembered), and never for "this computer only".
    if ($("host-internet").checked && reach !== "computer") args.internet = true;
    // History limits the host changed; blank ones keep the room's defaults.
    const history = {};
    if (keepMessages.trim()) history.maxMessages = Number(keepMessages.trim());
    if (keepDays.trim()) history.maxDays = Number(keepDays.trim());
    if (Object.keys(history).length) args.history = history;
    for (;;) {
      rememberWhenJoined({ hostPort: port.trim(), hostReach: reach, hostRoomName: roomNameEdited ? roomName : "", hostAnnounce: announce ? "on" : "off" });
      session.nick = nick.trim();
      enterChat();
      try {
        showHosting(await invoke("host_server", { ...args }));
        return;
      } catch (e) {
        leaveChat();
        // The room stored here has another passphrase: the host decides what becomes of it.
        if (e && e.kind === "room_passphrase_changed" && !args.previousRoom) {
          // The dialog is modal: the form waits under it, not greyed out.
          $("host-submit").disabled = false;
          const choice = await askPreviousRoom();
          $("host-submit").disabled = true;
          if (choice) { args.previousRoom = choice; continue; }
          $("host-pass").focus();
          return;
        }
        throw e;
      }
    }
  } catch (e) {
    showError("host-error", errorText(e));
  } finally {
    $("host-submit").disabled = false;
  }
}

async function onJoin(event) {
  event.preventDefault();
  if (!fillFromInvite()) return;
  const nick = $("join-nick").value, host = $("join-host").value, port = $("join-port").value, pass = $("join-pass").value;
  const problem = checkNick(nick) || checkHost(host) || checkPort(port) || checkPassphrase(pass);
  if (problem) return showError("join-error", problem);
  showError("join-error", "");
  $("join-submit").disabled = true;
  try {
    rememberWhenJoined({ host: host.trim(), port: port.trim() });
    session.nick = nick.trim();
    enterChat();
    // "Remember passphrase": stored in the system keyring once in the room; unticked
    // (absent) deletes a stored one.
    const keyring = $("join-remember").checked ? { remember: true } : {};
    const identity = inviteFingerprint ? { fingerprint: inviteFingerprint } : {};
    await invoke("connect", { host: host.trim(), port: Number(port), passphrase: pass, nick: nick.trim(), ...keyring, ...identity });
  } catch (e) {
    leaveChat();
    showError("join-error", errorText(e));
  } finally {
    $("join-submit").disabled = false;
  }
}

export function initStart() {
  fillRemembered();
  followNick();
  $("host-nick").addEventListener("input", followNick);
  // Emptied, the name follows the nickname again.
  $("host-room-name").addEventListener("input", () => { roomNameEdited = $("host-room-name").value.trim() !== ""; });
  onLanguageChange(followNick);
  syncInternetOption();
  for (const radio of document.querySelectorAll("input[name=reach]")) radio.addEventListener("change", syncInternetOption);
  $("host-form").addEventListener("submit", onHost);
  $("join-form").addEventListener("submit", onJoin);
  $("join-host").addEventListener("input", onAddressInput);
  $("join-port").addEventListener("input", () => setInviteFingerprint(null));
  // An error is about what was submitted: editing the form clears it (capturing, so that a
  // field's own check, such as a damaged invite code, can still say something new).
  $("host-form").addEventListener("input", () => showError("host-error", ""), true);
  $("join-form").addEventListener("input", () => showError("join-error", ""), true);
  $("host-generate").addEventListener("click", generatePassphrase);
  showHistoryDefaults();
  $("host-pass").addEventListener("input", onPassphraseInput);
  // A new room starts with a strong passphrase; the host may type another.
  if (hasBackend() && !$("host-pass").value) generatePassphrase();
  for (const b of document.querySelectorAll(".reveal")) {
    b.addEventListener("click", () => { const input = $(b.dataset.for); setRevealed(input, input.type === "password"); });
  }
  initLanguagePicker();
  initSaved();
  initDiscovered({ expect: (fingerprint) => setInviteFingerprint(fingerprint, "join.identity_announced") });
}

// The history fields show the room's defaults as placeholders ("no limit" when none).
async function showHistoryDefaults() {
  if (!hasBackend()) return;
  let defaults = null;
  try { defaults = await invoke("history_defaults"); } catch (_) { /* placeholders stay generic */ }
  const show = (id, value) => {
    const input = $(id);
    input.dataset.i18nPlaceholder = value == null ? "history.no_limit" : "history.default";
    input.dataset.i18nVars = JSON.stringify(value == null ? {} : { n: value });
    input.placeholder = value == null ? t("history.no_limit") : t("history.default", { n: value });
  };
  show("host-keep-messages", defaults?.maxMessages);
  show("host-keep-days", defaults?.maxDays);
}

async function generatePassphrase() {
  try {
    $("host-pass").value = await invoke("generate_passphrase");
    setRevealed($("host-pass"), true);
    showStrength({ weak: false });
  } catch (e) { showError("host-error", errorText(e)); }
}

// Shows or hides a passphrase field, its toggle saying what a click will do.
function setRevealed(input, revealed) {
  input.type = revealed ? "text" : "password";
  const toggle = document.querySelector(`.reveal[data-for="${input.id}"]`);
  if (!toggle) return;
  toggle.dataset.i18n = revealed ? "reveal.hide" : "reveal.show";
  toggle.dataset.i18nAriaLabel = revealed ? "reveal.hide_label" : "reveal.show_label";
  toggle.textContent = t(toggle.dataset.i18n);
  toggle.setAttribute("aria-label", t(toggle.dataset.i18nAriaLabel));
  toggle.setAttribute("aria-pressed", String(revealed));
}

// The language menu: each language named in itself; the choice is remembered.
function initLanguagePicker() {
  const select = $("language");
  select.value = language();
  select.addEventListener("change", () => { setLanguage(select.value); remember("lang", select.value); wordNotifications(); });
  wordNotifications();
}

// The desktop's "N new messages from …" in the window's language.
function wordNotifications() {
  if (hasBackend()) invoke("set_notification_summary", { text: t("notification.summary"), photo: t("notification.shared_photo"), file: t("notification.shared_file") }).catch(() => {});
}
