// The online list (a button opens it on narrow windows) and the member count, our own
// nickname highlighted.
import { $, el } from "./dom.js";
import { memberCount } from "./text.js";
import { session } from "./session.js";

let members = [];

function render() {
  const ul = $("online");
  ul.replaceChildren();
  for (const name of members) ul.append(el("li", name.toLowerCase() === session.nick.toLowerCase() ? "me" : "", name));
  $("online-count").textContent = String(members.length);
  $("member-count").textContent = memberCount(members.length);
}

export function setOnline(list) { members = list; render(); }
export function clearOnline() { members = []; render(); }
export const onlineCount = () => members.length;

export function initPeople() {
  $("toggle-people").addEventListener("click", () => {
    const open = $("people").classList.toggle("open");
    $("toggle-people").setAttribute("aria-expanded", String(open));
  });
}
