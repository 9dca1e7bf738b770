// Unit tests of the conversation's pure logic, imported directly into node: which messages
// share a name line, where day separators go and what they say (conversation.js), and which
// text becomes a link and what a link may open (links.js). The views: ui.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GROUP_GAP_MS, localDay, sameGroup, dayBreak, dayLabel, fullTime } from "../conversation.js";
import { linkify, linkTarget } from "../links.js";
import { setLanguage } from "../i18n.js";

const at = (y, mo, d, h = 12, mi = 0, s = 0) => new Date(y, mo - 1, d, h, mi, s).getTime();
const MIN = 60 * 1000;

test("sameGroup: the same person, same day, at most five minutes after the previous message", () => {
  const t0 = at(2026, 11, 30, 17, 5);
  const ben = (time_ms, own = false) => ({ from: "ben", own, time_ms });
  assert.equal(GROUP_GAP_MS, 5 * MIN);
  assert.equal(sameGroup(ben(t0), ben(t0 + 30_000)), true);
  assert.equal(sameGroup(ben(t0), ben(t0 + 5 * MIN)), true, "five minutes is still the same group");
  assert.equal(sameGroup(ben(t0), ben(t0 + 5 * MIN + 1)), false);
  assert.equal(sameGroup(ben(t0), ben(t0 - 2000)), true, "a pending own message's local clock may be a bit behind");
  assert.equal(sameGroup(ben(t0), { from: "ana", own: false, time_ms: t0 + 1000 }), false, "another sender");
  assert.equal(sameGroup(ben(t0), { from: "Ben", own: false, time_ms: t0 + 1000 }), false, "nicknames compare exactly");
  assert.equal(sameGroup(ben(t0), ben(t0 + 1000, true)), false, "own and someone else's never share a name line");
  assert.equal(sameGroup(null, ben(t0)), false, "after a notice, a marker or nothing: a new group");
  const late = at(2026, 11, 30, 23, 58);
  assert.equal(sameGroup(ben(late), ben(late + 3 * MIN)), false, "midnight starts a new group");
});

test("dayBreak: a separator between events of different local days, and above the first shown unless it is today's", () => {
  const now = at(2026, 12, 2, 9, 0);
  assert.equal(dayBreak(at(2026, 12, 1, 23, 59), at(2026, 12, 2, 0, 1), now), true);
  assert.equal(dayBreak(at(2026, 12, 2, 0, 1), at(2026, 12, 2, 23, 59), now), false);
  assert.equal(dayBreak(null, at(2026, 12, 2, 8, 0), now), false, "a log that starts today needs no label on top");
  assert.equal(dayBreak(null, at(2026, 12, 1, 8, 0), now), true, "a log that starts earlier says when");
  assert.equal(localDay(at(2026, 11, 30, 0, 0)), 20261130);
});

test("dayLabel: Today, Yesterday, else weekday and date in the locale (year only when not this one)", () => {
  const now = at(2026, 12, 2, 9, 0);
  try {
    setLanguage("en");
    assert.equal(dayLabel(at(2026, 12, 2, 0, 0), now, "en"), "Today");
    assert.equal(dayLabel(at(2026, 12, 1, 23, 59), now, "en"), "Yesterday");
    assert.equal(dayLabel(at(2026, 11, 30), now, "en"), "Monday, November 30");
    assert.equal(dayLabel(at(2025, 11, 30), now, "en"), "Sunday, November 30, 2025");
    setLanguage("es");
    assert.equal(dayLabel(at(2026, 12, 2, 23, 0), now, "es"), "Hoy");
    assert.equal(dayLabel(at(2026, 12, 1), now, "es"), "Ayer");
    assert.equal(dayLabel(at(2026, 11, 30), now, "es"), "lunes, 30 de noviembre");
    assert.equal(dayLabel(at(2025, 11, 30), now, "es"), "domingo, 30 de noviembre de 2025");
    const newYear = at(2027, 1, 1, 10, 0);
    assert.equal(dayLabel(at(2026, 12, 31, 22, 0), newYear, "es"), "Ayer", "yesterday across a new year");
  } finally {
    setLanguage("en");
  }
});

test("fullTime: date and time to the second, in the locale (24-hour in Spanish)", () => {
  const ms = at(2026, 11, 30, 17, 5, 3);
  assert.equal(fullTime(ms, "es-ES"), "lunes, 30 de noviembre de 2026, 17:05:03");
  assert.match(fullTime(ms, "en-US"), /^Monday, November 30, 2026(,| at) 5:05:03\sPM$/);
});

const links = (text) => linkify(text).filter((p) => p.url).map((p) => p.url);

test("linkify: http(s) URLs become links, the rest stays text, nothing lost", () => {
  for (const text of [
    "see https://example.org/a?b=1&c=2#d now",
    "two: http://a.example and https://b.example/x.",
    "(https://en.wikipedia.org/wiki/Tertulia_(reunión)) y más",
    "no links here, not even www.example.org or ftp://x",
    "",
  ]) {
    assert.equal(linkify(text).map((p) => p.text).join(""), text, JSON.stringify(text));
  }
  assert.deepEqual(linkify("see https://example.org/a?b=1&c=2#d now"), [
    { text: "see " }, { text: "https://example.org/a?b=1&c=2#d", url: "https://example.org/a?b=1&c=2#d" }, { text: " now" },
  ]);
  assert.deepEqual(links("two: http://a.example and https://b.example/x."), ["http://a.example/", "https://b.example/x"]);
  assert.deepEqual(links("(https://en.wikipedia.org/wiki/Tertulia_(reunión))"), ["https://en.wikipedia.org/wiki/Tertulia_(reuni%C3%B3n)"], "a closing bracket of the URL's own stays");
  assert.deepEqual(links("¿viste https://example.org/x?"), ["https://example.org/x"], "sentence punctuation is not part of it");
  assert.deepEqual(links("HTTPS://EXAMPLE.ORG/Path"), ["https://example.org/Path"]);
  assert.deepEqual(links("<https://example.org/q>"), ["https://example.org/q"]);
  assert.deepEqual(links("https://münchen.example/"), ["https://xn--mnchen-3ya.example/"], "the host as it will really be looked up");
});

test("linkify: no other scheme, no credentials before the host, nothing glued to a word", () => {
  for (const text of [
    "javascript:alert(1)", "file:///etc/passwd", "ftp://example.org", "data:text/html,<b>x</b>",
    "mailto:ana@example.org", "tertulia://127.0.0.1:5555#secret", "www.example.org",
    "https://bank.example@evil.example/login", "https://user:pass@example.org/",
    "xhttps://example.org", "https://", "http://",
  ]) {
    assert.deepEqual(links(text), [], JSON.stringify(text));
    assert.equal(linkify(text).map((p) => p.text).join(""), text);
  }
  assert.deepEqual(links("javascript:https://example.org/"), ["https://example.org/"], "only the https URL in it, as itself");
});

test("linkTarget: only a plain http(s) URL, in its normal form", () => {
  assert.equal(linkTarget("https://example.org/x y"), null, "spaces never reach the backend");
  assert.equal(linkTarget("https://exa\u200bmple.org/"), null, "invisible characters neither");
  assert.equal(linkTarget("https://example.org/\n"), null);
  assert.equal(linkTarget(" https://example.org/"), null);
  assert.equal(linkTarget("javascript://example.org/%0aalert(1)"), null);
  assert.equal(linkTarget(42), null);
  assert.equal(linkTarget("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080/a");
  assert.equal(linkTarget("https://[::1]/"), "https://[::1]/");
});
