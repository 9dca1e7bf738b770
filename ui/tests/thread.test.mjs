// The conversation in the real page (headless Chromium, fake backend: harness.mjs): messages
// grouped under one name, day separators, full timestamps on hover, links that ask before
// opening, the unread count in the title and the remembered "Mute" toggle.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, calls, emit, joinRoom, shots } from "./harness.mjs";

useBrowser();

const MIN = 60 * 1000;
// Times relative to the local midnight that began today (the page and node share the clock
// and the time zone).
const midnight = () => { const d = new Date(); d.setHours(0, 0, 0, 0); return d.getTime(); };
let seq = 0;
const msg = (from, time_ms, text, extra = {}) => ({ type: "message", seq: ++seq, time_ms, from, text, own: false, msg_id: null, history: true, ...extra });
const connected = { type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 };

// The log as lines: "[day label]" for a separator, "name: text" for a message that starts a
// group, "  text" for one that continues it, "* notice" for a notice.
const layout = (page) => page.$$eval("#log > :not(#load-older)", (nodes) => nodes.map((n) => {
  if (n.classList.contains("day")) return `[${n.textContent}]`;
  if (n.classList.contains("msg")) {
    const text = n.querySelector(".text").textContent;
    return n.classList.contains("continued") ? `  ${text}` : `${n.querySelector(".from").textContent}: ${text}`;
  }
  return `* ${n.textContent.replace(/^.*· /, "")}`;
}));

test("messages group under one name within five minutes; day separators between days; older pages regroup at their edge", async () => {
  const page = await openPage({ locale: "en-US" });
  await joinRoom(page);
  const today = midnight(), yesterday = today - 24 * 60 * MIN;
  await emit(page, [
    connected,
    msg("ben", yesterday + 10 * 60 * MIN, "y1"),
    msg("ben", yesterday + 10 * 60 * MIN + 2 * MIN, "y2"),
    msg("ben", yesterday + 10 * 60 * MIN + 8 * MIN, "y3, six minutes later"),
    msg("ana", yesterday + 10 * 60 * MIN + 9 * MIN, "mine", { own: true, msg_id: 1 }),
    msg("ben", yesterday + 23 * 60 * MIN + 58 * MIN, "before midnight"),
    msg("ben", today + 1 * MIN, "after midnight"),
    { type: "join", seq: ++seq, time_ms: today + 2 * MIN, nick: "carol", history: true },
    msg("carol", today + 3 * MIN, "hi"),
    msg("carol", today + 4 * MIN, "again"),
  ]);
  assert.deepEqual(await layout(page), [
    "[Yesterday]", "ben: y1", "  y2", "ben: y3, six minutes later", "ana: mine", "ben: before midnight",
    "[Today]", "ben: after midnight", "* carol joined", "carol: hi", "  again",
  ]);
  // Live: a message from carol a minute later joins her group; the name line shows once.
  await emit(page, [msg("carol", today + 5 * MIN, "live one", { history: false })]);
  assert.equal(await page.$$eval("#log .msg:not(.continued)", (ns) => ns.length), 6, "groups");
  assert.equal(await page.$$eval("#log .msg.continued", (ns) => ns.length), 3);
  assert.equal(await page.$$eval("#log .day", (ns) => ns.length), 2, "separators");
  assert.equal(await page.isVisible("#log .msg.continued .from"), false, "a continued message shows no name");

  // An older page: two days ago, then ben at 09:59 yesterday, a minute before "y1": "y1"
  // now continues that group, and the separators move to the page's days.
  const twoDaysAgo = yesterday - 24 * 60 * MIN;
  await emit(page, [{ type: "older", more: false, events: [
    msg("dan", twoDaysAgo + 15 * 60 * MIN, "long ago"),
    msg("ben", yesterday + 9 * 60 * MIN + 59 * MIN, "y0"),
  ] }]);
  const dayBefore = new Date(twoDaysAgo).toLocaleDateString("en-US", { weekday: "long", day: "numeric", month: "long" });
  assert.deepEqual((await layout(page)).slice(0, 5), [`[${dayBefore}]`, "dan: long ago", "[Yesterday]", "ben: y0", "  y1"]);
  assert.equal(await page.$$eval("#log .day", (ns) => ns.length), 3, "one separator per day, none doubled at the page's edge");

  // The full timestamp on hover, a machine-readable datetime.
  const time = await page.$eval("#log .msg:last-of-type time", (t) => ({ title: t.title, datetime: t.dateTime, text: t.textContent }));
  assert.equal(time.datetime, new Date(today + 5 * MIN).toISOString());
  assert.equal(time.title, new Date(today + 5 * MIN).toLocaleString("en-US", { dateStyle: "full", timeStyle: "medium" }));
  assert.match(time.title, /\d{4}/, "with the year");
  await page.hover("#log .msg:last-of-type");
  assert.equal(await page.isVisible("#log .msg:last-of-type time"), true, "a continued message's time shows on hover");
  await page.screenshot({ path: path.join(shots, "conversation-groups.png") });

  // Spanish: "Hoy", "Ayer", the weekday and date, 24-hour times, rewritten on a switch.
  await page.evaluate(async () => (await import("./i18n.js")).setLanguage("es"));
  const labels = await page.$$eval("#log .day", (ns) => ns.map((n) => n.textContent));
  assert.deepEqual(labels.slice(1), ["Ayer", "Hoy"]);
  assert.equal(labels[0], new Date(twoDaysAgo).toLocaleDateString("es", { weekday: "long", day: "numeric", month: "long" }));
  assert.match(await page.$eval("#log .msg:last-of-type time", (t) => t.title), / de \d{4}, 0?0:05:00$/);
  assert.deepEqual(page.errors, []);
});

test("an own message sent now joins the group of the previous own one", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected, msg("ana", Date.now() - MIN, "first", { own: true, msg_id: 7 })]);
  await page.fill("#message", "second");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 2);
  assert.deepEqual(await layout(page), ["ana: first", "  second"]);
  assert.equal(await page.isVisible("#log .msg.continued .status"), true, "the pending status still shows");
});

const withLink = "mira https://example.org/tertulia?q=1&lang=es#abajo, no javascript:alert(1) ni file:///etc/passwd ni https://ana:pw@evil.example/";

test("an http(s) URL is a link that asks first: Cancel and Escape open nothing, Open asks the backend", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected, msg("ben", Date.now(), withLink, { history: false })]);
  const links = await page.$$eval("#log .msg a", (as) => as.map((a) => [a.textContent, a.dataset.url, a.getAttribute("href")]));
  assert.deepEqual(links, [["https://example.org/tertulia?q=1&lang=es#abajo", "https://example.org/tertulia?q=1&lang=es#abajo", null]],
    "only the plain https URL is a link, and it has no href: no context menu or middle click can follow it");
  assert.equal(await page.textContent("#log .msg .text"), withLink, "the text is whole");
  const opened = async () => (await calls(page)).filter((c) => c.cmd === "open_link");
  const start = page.url();

  await page.click("#log a.link");
  await page.waitForSelector("#link-dialog[open]");
  assert.equal(await page.textContent("#link-url"), "https://example.org/tertulia?q=1&lang=es#abajo");
  assert.equal(await page.textContent("#link-question"), "Open this link in your browser?");
  assert.equal(await page.evaluate(() => document.activeElement.id), "link-cancel", "the safe answer has the focus");
  await page.click("#link-cancel");
  assert.equal(await page.isVisible("#link-dialog"), false);
  assert.deepEqual(await opened(), []);

  await page.focus("#log a.link");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#link-dialog[open]");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#link-dialog:not([open])", { state: "attached" });
  assert.deepEqual(await opened(), [], "Escape means no");

  await page.click("#log a.link");
  await page.click("#link-open");
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "open_link"));
  assert.deepEqual((await opened()).map((c) => c.args), [{ url: "https://example.org/tertulia?q=1&lang=es#abajo" }]);

  // Escape after an earlier "Open" still means no (the dialog's answer is not kept).
  await page.click("#log a.link");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#link-dialog:not([open])", { state: "attached" });
  assert.equal((await opened()).length, 1);
  assert.equal(page.url(), start, "the window itself never navigated");

  // A backend refusal is said in the log.
  await page.evaluate(() => { window.__fail = { open_link: "only http and https links are opened" }; });
  await page.click("#log a.link");
  await page.click("#link-open");
  await page.waitForFunction(() => [...document.querySelectorAll("#log .notice")].some((n) => n.textContent.includes("only http and https")));
  assert.deepEqual(page.errors, []);
});

test("the link dialog shows a very long URL whole at 360 px, light and dark", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ viewport: { width: 360, height: 640 }, colorScheme, locale: "es-ES" });
    await joinRoom(page);
    const url = "https://example.org/" + "un-camino-muy-largo/".repeat(30) + "?fin=1";
    await emit(page, [connected, msg("ben", Date.now(), "mira " + url, { history: false })]);
    await page.click("#log a.link");
    await page.waitForSelector("#link-dialog[open]");
    assert.equal(await page.textContent("#link-url"), url);
    assert.equal(await page.textContent("#link-question"), "¿Abrir este enlace en el navegador?");
    const fits = await page.$eval("#link-dialog", (d) => d.getBoundingClientRect().right <= window.innerWidth && d.scrollWidth <= d.clientWidth);
    assert.ok(fits, "the dialog fits the window");
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)) <= 0);
    await page.screenshot({ path: path.join(shots, `link-dialog-360-${colorScheme}.png`) });
  }
});

test("messages from others arriving in the background count in the title until the window has the focus", async () => {
  const page = await openPage();
  await page.evaluate(() => {
    window.__titles = [];
    window.__TAURI__.window = { getCurrentWindow: () => ({ setTitle: async (title) => { window.__titles.push(title); } }) };
  });
  await joinRoom(page);
  await emit(page, [connected, msg("ben", Date.now(), "seen", { history: false })]);
  assert.equal(await page.title(), "Tertulia");
  await page.evaluate(() => { document.hasFocus = () => false; window.dispatchEvent(new Event("blur")); });
  await emit(page, [
    msg("ben", Date.now(), "one", { history: false }),
    msg("ana", Date.now(), "mine", { own: true, history: false }),
    msg("ben", Date.now(), "backlog is not news", { history: true }),
    msg("carol", Date.now(), "two", { history: false }),
    msg("ben", Date.now(), "three", { history: false }),
  ]);
  assert.equal(await page.title(), "(3) Tertulia");
  assert.equal(await page.evaluate(() => window.__titles.at(-1)), "(3) Tertulia", "the native window title too");
  await page.evaluate(() => { document.hasFocus = () => true; window.dispatchEvent(new Event("focus")); });
  assert.equal(await page.title(), "Tertulia");
  assert.equal(await page.evaluate(() => window.__titles.at(-1)), "Tertulia");
  assert.deepEqual(page.errors, []);
});

test("Mute is a remembered toggle that tells the backend", async () => {
  const page = await openPage();
  const muteCalls = async () => (await calls(page)).filter((c) => c.cmd === "set_notifications_muted").map((c) => c.args.muted);
  assert.deepEqual(await muteCalls(), [false], "the backend learns the setting at start");
  await joinRoom(page);
  assert.equal(await page.getAttribute("#mute", "aria-pressed"), "false");
  assert.equal(await page.textContent("#mute"), "Mute");
  assert.match(await page.getAttribute("#mute", "title"), /mentions your nickname/);
  await page.focus("#mute");
  await page.keyboard.press("Enter");
  assert.equal(await page.getAttribute("#mute", "aria-pressed"), "true");
  assert.deepEqual(await muteCalls(), [false, true]);
  await page.reload();
  assert.deepEqual(await muteCalls(), [true], "remembered across a restart");
  await joinRoom(page);
  assert.equal(await page.getAttribute("#mute", "aria-pressed"), "true");
  await page.click("#mute");
  assert.equal(await page.getAttribute("#mute", "aria-pressed"), "false");
  assert.deepEqual(await muteCalls(), [true, false]);
});
