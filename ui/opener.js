// Links in messages: http(s) URLs in a message become links (DOM nodes, text via
// textContent); a click — or Enter on a focused link — never navigates the window: it asks
// first, showing the URL in full, and only on "Open link" asks the backend (open_link, which
// checks the URL again) to open it in the system browser. Cancel or Escape opens nothing.
import { $, el } from "./dom.js";
import { linkify } from "./links.js";
import { t } from "./i18n.js";
import { errorText } from "./text.js";
import { invoke } from "./tauri.js";

// A message's text as nodes: text, and an <a> per link (its URL kept to be asked about).
export function linkedText(text) {
  return linkify(text).map((part) => {
    if (!part.url) return document.createTextNode(part.text);
    const a = el("a", "link", part.text);
    a.href = part.url;
    a.dataset.url = part.url;
    a.rel = "noopener noreferrer";
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
  // A middle click would open the link in a new webview window: never.
  log.addEventListener("auxclick", (event) => { if (event.target.closest?.("a.link")) event.preventDefault(); });
}
