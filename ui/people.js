// The online list (a button opens it on narrow windows) and the member count. "me" is the
// nickname of the latest "connected" event: the core's canonical form, exactly as the online
// list spells it.
import { $, el } from "./dom.js";
import { translate } from "./i18n.js";

let members = [];
let me = "";

function render() {
  const ul = $("online");
  ul.replaceChildren();
  for (const name of members) ul.append(el("li", name === me ? "me" : "", name));
  $("online-count").textContent = String(members.length);
  translate($("member-count"), "chat.members", { n: members.length });
}

export function setOnline(list) { members = list; render(); }
export function setMe(nick) { me = nick; render(); }
export function clearOnline() { members = []; me = ""; render(); }
export const onlineCount = () => members.length;

// The narrow-window overlay opens with its button and closes with it, with Escape or with a
// click anywhere outside it.
function setOverlay(open) {
  $("people").classList.toggle("open", open);
  $("toggle-people").setAttribute("aria-expanded", String(open));
}
const overlayOpen = () => $("people").classList.contains("open");

export function initPeople() {
  $("toggle-people").addEventListener("click", () => setOverlay(!overlayOpen()));
  document.addEventListener("keydown", (e) => {
    // An open dialog is above the overlay: its Escape is its own (cancel), not ours.
    if (e.key === "Escape" && overlayOpen() && !e.defaultPrevented && !document.querySelector("dialog[open]")) { e.preventDefault(); setOverlay(false); $("toggle-people").focus(); }
  });
  document.addEventListener("pointerdown", (e) => {
    if (overlayOpen() && !$("people").contains(e.target) && !$("toggle-people").contains(e.target)) setOverlay(false);
  });
}
