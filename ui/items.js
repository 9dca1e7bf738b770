// One log node per room event kind (message, join, leave), built the same way whether the
// event is live, part of the backlog or a page of older history. Peer text via textContent.
import { el } from "./dom.js";
import { joinNotice, leaveNotice } from "./text.js";
import { translate } from "./i18n.js";
import { mentions } from "./mention.js";
import { session } from "./session.js";
import { timeNode, stamp } from "./thread.js";
import { linkedText } from "./opener.js";

function withSeq(node, seq) {
  if (seq != null) node.dataset.seq = seq;
  return node;
}

// A message event ({from, text, time_ms, own, seq}); a mention of our nickname by someone
// else is highlighted. Without seq for an own message not yet sent.
export function messageNode(ev) {
  const node = el("article", "msg" + (ev.own ? " own" : ""));
  const meta = el("div", "meta");
  const from = el("span", "from", ev.from);
  from.dir = "auto";
  meta.append(from, timeNode(ev.time_ms), el("span", "status"));
  // dir=auto: an Arabic or Hebrew message is laid out right to left, each on its own.
  // http(s) URLs in it are links that ask before opening (opener.js).
  const text = el("div", "text");
  text.append(...linkedText(ev.text));
  text.dir = "auto";
  node.append(meta, text);
  if (!ev.own && mentions(ev.text, session.nick)) node.classList.add("mention");
  if (mayBeLong(ev.text)) collapseIfLong(node, text);
  return withSeq(stamp(node, ev.time_ms), ev.seq);
}

// A message that may be taller than LONG_LINES lines (by its characters and line breaks).
const LONG_LINES = 12;
function mayBeLong(text) { return text.length > 600 || text.split("\n", LONG_LINES + 1).length > LONG_LINES; }

// A very long message shows its start and a "Show more" button (then "Show less"), so a
// message of thousands of lines never makes a bubble thousands of pixels tall. Once laid out,
// one that turns out to fit loses the button.
function collapseIfLong(node, text) {
  node.classList.add("long");
  const more = translate(el("button", "secondary small more"), "msg.show_more");
  more.type = "button";
  more.setAttribute("aria-expanded", "false");
  more.addEventListener("click", () => {
    const expanded = node.classList.toggle("expanded");
    translate(more, expanded ? "msg.show_less" : "msg.show_more");
    more.setAttribute("aria-expanded", String(expanded));
  });
  node.append(more);
  requestAnimationFrame(() => {
    if (node.isConnected && text.scrollHeight <= text.clientHeight + 1) { node.classList.remove("long"); more.remove(); }
  });
}

export function joinNode(ev) {
  return withSeq(stamp(translate(el("div", "notice"), ...joinNotice(ev)), ev.time_ms), ev.seq);
}

export function leaveNode(ev) {
  return withSeq(stamp(translate(el("div", "notice"), ...leaveNotice(ev)), ev.time_ms), ev.seq);
}

// A notice that is not a room event (errors, "the server was restarted"…): a translation
// key and its vars (rewritten on a language switch), or ready text (e.g. a backend error).
export function noticeNode(text, vars) {
  return vars ? translate(el("div", "notice"), text, vars) : el("div", "notice", text);
}
