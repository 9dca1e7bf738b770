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
  meta.append(el("span", "from", ev.from), timeNode(ev.time_ms), el("span", "status"));
  // http(s) URLs in the text are links that ask before opening (opener.js).
  const text = el("div", "text");
  text.append(...linkedText(ev.text));
  node.append(meta, text);
  if (!ev.own && mentions(ev.text, session.nick)) node.classList.add("mention");
  return withSeq(stamp(node, ev.time_ms), ev.seq);
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
