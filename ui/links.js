// Links in message text: the http(s) URLs in it, and what exactly a click may ask the backend
// to open. Pure: no DOM, unit-tested with node --test (tests/conversation.test.mjs). The
// backend checks the URL again before anything is opened (src-tauri/src/links.rs).

// Where a URL may start: "http://" or "https://" not glued to a preceding letter or digit;
// it runs to the next space or character that cannot be in a URL written in text.
const CANDIDATE = /(?<![\p{L}\p{N}_])https?:\/\/[^\s<>"`{}|\\^\p{Cc}\p{Cf}]+/giu;
// Written after a URL, these usually end the sentence rather than the URL.
const TRAILING = ".,;:!?'…";
const CLOSERS = { ")": "(", "]": "[" };

const count = (s, c) => s.split(c).length - 1;

// A URL as written in text, without the punctuation that follows it: a final ")" or "]" stays
// only when it closes one opened inside the URL (Wikipedia's "Tertulia_(reunión)").
function trimEnd(s) {
  for (;;) {
    const last = s.at(-1);
    if (TRAILING.includes(last)) s = s.slice(0, -1);
    else if (CLOSERS[last] && count(s, last) > count(s, CLOSERS[last])) s = s.slice(0, -1);
    else return s;
  }
}

// The URL to open for a link written as `raw`, in its normal form (host in punycode, spaces
// escaped): what the dialog shows and the backend gets. Null for anything but a plain
// http(s) URL with a host: no other scheme, no user name or password before the host
// ("https://bank.example@evil.example"), no control or invisible characters.
export function linkTarget(raw) {
  if (typeof raw !== "string" || !/^https?:\/\//i.test(raw) || /[\s\p{Cc}\p{Cf}]/u.test(raw)) return null;
  let url;
  try { url = new URL(raw); } catch (_) { return null; }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (url.username || url.password || !url.hostname) return null;
  return url.href;
}

// A message's text in pieces, in order: {text} for plain text and {text, url} for a link
// (text as written, url to open). Joined, the pieces' text is the message.
export function linkify(text) {
  const parts = [];
  const plain = (s) => {
    if (!s) return;
    if (parts.length && !parts.at(-1).url) parts.at(-1).text += s;
    else parts.push({ text: s });
  };
  let at = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    const raw = trimEnd(match[0]);
    const url = linkTarget(raw);
    if (!url) continue;
    plain(text.slice(at, match.index));
    parts.push({ text: raw, url });
    at = match.index + raw.length;
  }
  plain(text.slice(at));
  return parts;
}
