// Links in messages: http(s) URLs in a message become links (DOM nodes, text via
// textContent); a click — or Enter on a focused link — never navigates the window: it asks
// first, showing the URL in full, and only on "Open link" asks the backend (open_link, which
// checks the URL again) to open it in the system browser. Cancel or Escape opens nothing.
import { $, el } from "./dom.js";
import { linkify } from "./links.js";
import { t } from "./i18n.js";
import { errorText } from "./text.js";
import { invoke } from "./tauri.js";

// A message's text as nodes: text, and a link per URL (its URL kept to be asked about). The
// link has no href on purpose: nothing the web view offers by itself (a context menu's "Open
// Link", a middle click, dragging it out) can follow it; only the click and Enter below, which
// ask first. (The backend also refuses any navigation away from the app: links.rs.)
export function linkedText(text) {
  return linkify(text).map((part) => {
    if (!part.url) return document.createTextNode(part.text);
    const a = el("a", "link", part.text);
    a.dataset.url = part.url;
    a.setAttribute("role", "link");
    a.tabIndex = 0;
    a.title = part.url;
    a.dir = "ltr";
    return a;
  });
}

// Resolves to true when the user confirms opening `url`.
function askToOpen(url) {
  const dialog = $("link-dialog");
  $("link-url").textContent = url;
  dialog.returnValue = ""; // Escape closes without a value: it must mean "no"
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "open"), { once: true });
    dialog.showModal();
    $("link-cancel").focus();
  });
}

let asking = false;

async function onLink(url, onError) {
  if (asking) return;
  asking = true;
  try {
    if (await askToOpen(url)) await invoke("open_link", { url });
  } catch (e) {
    onError(t("link.failed", { error: errorText(e) }));
  } finally {
    asking = false;
  }
}

// onError(text): where a failure to open is said (a notice in the log).
export function initLinks(log, onError) {
  log.addEventListener("click", (event) => {
    const a = event.target.closest?.("a.link");
    if (!a || !log.contains(a)) return;
    event.preventDefault();
    onLink(a.dataset.url, onError);
  });
  log.addEventListener("keydown", (event) => {
    const a = event.target.closest?.("a.link");
    if (!a || event.key !== "Enter") return;
    event.preventDefault();
    onLink(a.dataset.url, onError);
  });
  // A middle click or the context menu would offer to open the link elsewhere: never.
  for (const kind of ["auxclick", "contextmenu"]) {
    log.addEventListener(kind, (event) => { if (event.target.closest?.("a.link")) event.preventDefault(); });
  }
}
