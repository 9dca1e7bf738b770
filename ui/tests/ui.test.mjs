// UI logic tests: the window in headless Chromium with a fake backend (harness.mjs) that
// replays core events recorded from a real session (fixtures/session.jsonl, printed by
// `tertulia-chat --json`).
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, calls, emit, joinRoom, shots, recorded } from "./harness.mjs";

useBrowser();

test("join form validates every field with a clear message and calls nothing", async () => {
  const page = await openPage();
  await page.click("#join-submit");
  assert.match(await page.textContent("#join-error"), /Nickname/);
  await page.fill("#join-nick", "ana");
  await page.fill("#join-host", "bad host!");
  await page.click("#join-submit");
  assert.match(await page.textContent("#join-error"), /Address/);
  await page.fill("#join-host", "192.168.1.20");
  await page.fill("#join-port", "70000");
  await page.click("#join-submit");
  assert.match(await page.textContent("#join-error"), /Port/);
  await page.fill("#join-port", "5555");
  await page.click("#join-submit");
  assert.match(await page.textContent("#join-error"), /Passphrase/);
  assert.deepEqual((await calls(page)).filter((c) => c.cmd === "connect"), []);
  await page.fill("#join-pass", "open sesame");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  const connect = (await calls(page)).find((c) => c.cmd === "connect");
  assert.deepEqual(connect.args, { host: "192.168.1.20", port: 5555, passphrase: "open sesame", nick: "ana" });
  assert.deepEqual(page.errors, []);
});

test("pasting an invite code fills the join form; last values are remembered", async () => {
  const page = await openPage();
  await page.fill("#join-host", "tertulia://10.0.0.7:6000#correct horse");
  assert.equal(await page.inputValue("#join-host"), "10.0.0.7");
  assert.equal(await page.inputValue("#join-port"), "6000");
  assert.equal(await page.inputValue("#join-pass"), "correct horse");
  await page.fill("#join-nick", "Ana");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  await emit(page, [{ type: "connected", nick: "Ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 }]);
  await page.reload();
  assert.equal(await page.inputValue("#join-nick"), "Ana");
  assert.equal(await page.inputValue("#join-host"), "10.0.0.7");
  assert.equal(await page.inputValue("#join-port"), "6000");
  assert.equal(await page.inputValue("#join-pass"), "", "the passphrase is not stored");
});

test("hosting shows the addresses, the member count and an invite code", async () => {
  const page = await openPage();
  await page.fill("#host-nick", "ana");
  await page.click("#host-generate");
  assert.equal(await page.inputValue("#host-pass"), "abcde-fghij-kmnpq-rstuv-wxyz2");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  const host = (await calls(page)).find((c) => c.cmd === "host_server");
  assert.deepEqual(host.args, { port: 5555, passphrase: "abcde-fghij-kmnpq-rstuv-wxyz2", nick: "ana", reach: "network", roomName: "ana's room", announce: true });
  assert.deepEqual(await page.$$eval("#host-addresses button", (bs) => bs.map((b) => b.textContent)), ["192.168.1.20:5555", "[fd00::2]:5555"]);
  await emit(page, [{ type: "online", members: ["ana", "ben"] }]);
  assert.equal(await page.textContent("#member-count"), "2 members");
  assert.equal(await page.isHidden("#leave"), true);
  await page.click("#stop-hosting");
  assert.match(await page.textContent("#confirm-text"), /other member will be told/);
  await page.click("#confirm-cancel");
  assert.equal((await calls(page)).some((c) => c.cmd === "stop_hosting"), false);
  await page.click("#stop-hosting");
  await page.click("#confirm-ok");
  await page.waitForSelector("#start:not([hidden])");
  assert.equal((await calls(page)).some((c) => c.cmd === "stop_hosting"), true);
});

test("Escape on \"Stop hosting?\" always cancels, also after an earlier confirmed stop", async () => {
  const page = await openPage();
  const host = async () => {
    await page.fill("#host-nick", "ana");
    await page.click("#host-generate");
    await page.click("#host-submit");
    await page.waitForSelector("#host-panel:not([hidden])");
  };
  const stops = async () => (await calls(page)).filter((c) => c.cmd === "stop_hosting").length;
  await host();
  await page.click("#stop-hosting");
  await page.click("#confirm-ok");
  await page.waitForSelector("#start:not([hidden])");
  assert.equal(await stops(), 1);
  await host();
  await page.click("#stop-hosting");
  await page.waitForSelector("#confirm-dialog[open]");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#confirm-dialog:not([open])", { state: "attached" });
  assert.equal(await stops(), 1, "Escape did not stop the room");
  assert.equal(await page.isVisible("#chat"), true, "still in the room");
});

test("Escape on the nickname dialog is no dead end: it leaves the room like Cancel", async () => {
  const page = await openPage();
  await joinRoom(page, "Ben");
  await emit(page, [{ type: "nick_rejected", nick: "Ben", reason: "taken", message: "that nickname is already taken in this room; pick another" }]);
  await page.waitForSelector("#nick-dialog[open]");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#start:not([hidden])");
  assert.equal((await calls(page)).some((c) => c.cmd === "disconnect"), true, "the half-joined session is ended");
  assert.equal(await page.isVisible("#nick-dialog"), false);
});

test("a recorded session renders safely: text, notices, online list, own and mentioned messages", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, recorded.slice(0, recorded.length - 1)); // all but the final "disconnected"
  const texts = await page.$$eval("#log .msg .text", (ns) => ns.map((n) => n.textContent));
  assert.deepEqual(texts, ["hi ben 👋", "hola a todos", 'hello ana — <b>bold?</b> | a:b "q"', "line one\\nline two"]);
  assert.equal(await page.$$eval("#log b", (bs) => bs.length), 0, "markup from peers is never parsed");
  const notices = await page.$$eval("#log .notice", (ns) => ns.map((n) => n.textContent));
  assert.ok(notices.some((n) => n.endsWith("carol joined")));
  assert.ok(notices.some((n) => n.endsWith("ben left")));
  assert.deepEqual(await page.$$eval("#online li", (ls) => ls.map((l) => l.textContent)), ["ana"]);
  assert.deepEqual(await page.$$eval("#online li.me", (ls) => ls.map((l) => l.textContent)), ["ana"], "our own nickname, as the core confirmed it");
  assert.equal(await page.$eval("#log .msg.own .text", (n) => n.textContent), "hola a todos");
  assert.equal(await page.$eval("#log .msg.mention .text", (n) => n.textContent), 'hello ana — <b>bold?</b> | a:b "q"');
  assert.match(await page.textContent("#conn-state"), /Connected as ana/);
  await page.screenshot({ path: path.join(shots, "recorded-session.png") });
  await emit(page, recorded.slice(-1));
  assert.match(await page.textContent("#conn-state"), /Left the room/);
  assert.deepEqual(page.errors, []);
});

test("Enter sends, Shift+Enter adds a line; a message stays pending until acked", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [{ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false }]);
  await page.click("#message");
  await page.keyboard.type("first line");
  await page.keyboard.press("Shift+Enter");
  await page.keyboard.type("second line");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "send"));
  const send = (await calls(page)).find((c) => c.cmd === "send");
  assert.equal(send.args.text, "first line\nsecond line");
  assert.equal(await page.inputValue("#message"), "");
  assert.equal(await page.$$eval("#log .msg.pending", (ns) => ns.length), 1);
  await emit(page, [{ type: "message", seq: 3, time_ms: Date.now(), from: "ana", text: "first line\nsecond line", own: true, msg_id: 1, history: false }]);
  assert.equal(await page.$$eval("#log .msg", (ns) => ns.length), 1, "the echo replaces the pending copy");
  assert.equal(await page.$$eval("#log .msg.pending", (ns) => ns.length), 0);
});

test("an own message's echo and ack may arrive before send returns its id: still one message", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [{ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false }]);
  await page.evaluate(() => { window.__holdSend = true; });
  await page.fill("#message", "quick one");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => typeof window.__releaseSend === "function");
  await emit(page, [
    { type: "message", seq: 7, time_ms: 1795604686046, from: "ana", text: "quick one", own: true, msg_id: 1, history: false },
    { type: "acked", ids: [1] },
  ]);
  assert.equal(await page.$$eval("#log .msg", (ns) => ns.length), 1, "the early echo is not shown twice");
  await page.evaluate(() => window.__releaseSend());
  await page.waitForFunction(() => document.querySelectorAll("#log .msg.pending").length === 0);
  assert.deepEqual(await page.$$eval("#log .msg", (ns) => ns.map((n) => [n.querySelector(".text").textContent, n.dataset.seq])), [["quick one", "7"]]);
  await page.evaluate(() => { window.__holdSend = false; });
  await emit(page, [{ type: "message", seq: 8, time_ms: 0, from: "ana", text: "not awaited", own: true, msg_id: 1, history: false }]);
  assert.equal(await page.$$eval("#log .msg", (ns) => ns.length), 2, "an own echo no send awaits is shown, as before");
  assert.deepEqual(page.errors, []);
});

test("a taken nickname opens the dialog, which says why and lets you pick another", async () => {
  const page = await openPage();
  await joinRoom(page, "Ben");
  await emit(page, [{ type: "nick_rejected", nick: "Ben", reason: "taken", message: "that nickname is already taken in this room; pick another" }]);
  await page.waitForSelector("#nick-dialog[open]");
  assert.match(await page.textContent("#nick-reason"), /already taken/);
  await page.fill("#nick-input", "");
  await page.click("#nick-submit");
  assert.match(await page.textContent("#nick-error"), /Nickname/);
  await page.fill("#nick-input", "Ben2");
  await page.click("#nick-submit");
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "set_nick"));
  assert.deepEqual((await calls(page)).find((c) => c.cmd === "set_nick").args, { nick: "Ben2" });
  assert.equal(await page.isVisible("#nick-dialog"), false);
});

test("refused again while choosing (the join deadline passed, the reconnect was refused): what is typed stays", async () => {
  const page = await openPage();
  await joinRoom(page, "Ben");
  const refused = { type: "nick_rejected", nick: "Ben", reason: "taken", message: "that nickname is already taken in this room; pick another" };
  await emit(page, [refused]);
  await page.waitForSelector("#nick-dialog[open]");
  await page.fill("#nick-input", "Benjam");
  await emit(page, [{ type: "connecting", attempt: 2, addr: "127.0.0.1:5555" }, refused]);
  assert.equal(await page.inputValue("#nick-input"), "Benjam");
  assert.match(await page.textContent("#nick-reason"), /already taken/);
  assert.deepEqual(page.errors, []);
});

test("connection state: reconnect countdown with a reconnect-now action", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [
    { type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false },
    { type: "error", kind: "network", message: "the server closed the connection" },
    { type: "reconnecting", attempt: 2, delay_ms: 3000, reason: "the server closed the connection" },
  ]);
  assert.match(await page.textContent("#conn-state"), /Reconnecting in 3 s \(attempt 2\)/);
  assert.equal(await page.getAttribute("#conn-state", "class"), "state reconnecting");
  await page.click("#reconnect-now");
  assert.equal((await calls(page)).some((c) => c.cmd === "reconnect_now"), true);
  await emit(page, [{ type: "connected", nick: "ana", epoch: "e", resumed: true, room_reset: false, gap: false }]);
  assert.equal(await page.isHidden("#reconnect-now"), true);
  assert.match(await page.textContent("#conn-state"), /Connected/);
});

test("auto-scroll follows new messages but not while reading older ones", async () => {
  const page = await openPage({ viewport: { width: 900, height: 400 } });
  await joinRoom(page);
  const many = Array.from({ length: 60 }, (_, i) => ({ type: "message", seq: i + 1, time_ms: 0, from: "ben", text: "message " + i, own: false, msg_id: null, history: true }));
  await emit(page, many);
  const atBottom = () => page.$eval("#log", (l) => l.scrollHeight - l.scrollTop - l.clientHeight < 60);
  assert.equal(await atBottom(), true);
  await page.$eval("#log", (l) => { l.scrollTop = 0; });
  await emit(page, [{ type: "message", seq: 61, time_ms: 0, from: "ben", text: "while reading", own: false, msg_id: null, history: false }]);
  assert.equal(await page.$eval("#log", (l) => l.scrollTop), 0, "not yanked down");
  assert.equal(await page.isVisible("#new-messages"), true);
  await page.click("#new-messages");
  assert.equal(await atBottom(), true);
});

test("typing indicator shows who is typing and clears when their message arrives", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [{ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false }, { type: "typing", nick: "ben" }]);
  assert.equal(await page.textContent("#typing"), "ben is typing…");
  await emit(page, [{ type: "typing", nick: "carol" }]);
  assert.equal(await page.textContent("#typing"), "ben and carol are typing…");
  await emit(page, [{ type: "message", seq: 5, time_ms: 0, from: "ben", text: "done", own: false, msg_id: null, history: false }]);
  assert.equal(await page.textContent("#typing"), "carol is typing…");
  await page.click("#message");
  await page.keyboard.type("x");
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "typing"));
});

test("every keystroke while connected tells the core we are typing (the core throttles)", async () => {
  const page = await openPage();
  await joinRoom(page);
  const typingCalls = async () => (await calls(page)).filter((c) => c.cmd === "typing").length;
  await page.click("#message");
  await page.keyboard.type("a");
  assert.equal(await typingCalls(), 0, "not while connecting");
  await page.fill("#message", "");
  await emit(page, [{ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false }]);
  await page.keyboard.type("  ");
  assert.equal(await typingCalls(), 0, "not while the composer is blank");
  await page.fill("#message", "");
  await page.keyboard.type("abc");
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "typing").length === 3);
});

test("works at 360 px wide and follows the dark colour scheme", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ viewport: { width: 360, height: 640 }, colorScheme });
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok((await overflow()) <= 0, "start screen fits");
    await page.screenshot({ path: path.join(shots, `start-360-${colorScheme}.png`) });
    await joinRoom(page);
    await emit(page, recorded.slice(0, -1));
    await emit(page, [{ type: "message", seq: 99, time_ms: 0, from: "ben", text: "a-very-long-word-".repeat(20), own: false, msg_id: null, history: false }]);
    assert.ok((await overflow()) <= 0, "chat fits, long words wrap");
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    const light = (r + g + b) / 3 > 128;
    assert.equal(light, colorScheme === "light", `${colorScheme} background ${bg}`);
    await page.screenshot({ path: path.join(shots, `chat-360-${colorScheme}.png`) });
    await page.click("#toggle-people");
    assert.equal(await page.isVisible("#people"), true, "online list reachable on narrow screens");
  }
});

test("at 1280 px, light and dark: host panel above the log, online list beside it", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ viewport: { width: 1280, height: 800 }, colorScheme });
    await page.screenshot({ path: path.join(shots, `start-1280-${colorScheme}.png`) });
    await page.fill("#host-nick", "ana");
    await page.fill("#host-pass", "open sesame");
    await page.click("#host-submit");
    await page.waitForSelector("#host-panel:not([hidden])");
    await emit(page, [...recorded.slice(0, -2), { type: "online", members: ["ana", "ben"] }, { type: "typing", nick: "ben" }]);
    assert.equal(await page.isVisible("#people"), true, "the online list shows without the toggle");
    assert.equal(await page.isHidden("#toggle-people"), true);
    assert.deepEqual(await page.$$eval("#online li.me", (ls) => ls.map((l) => l.textContent)), ["ana"]);
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)) <= 0);
    await page.screenshot({ path: path.join(shots, `chat-1280-${colorScheme}.png`) });
    assert.deepEqual(page.errors, []);
  }
});

test("messages arriving while the window is in the background get an unread marker", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [{ type: "message", seq: 1, time_ms: 0, from: "ben", text: "seen", own: false, msg_id: null, history: false }]);
  assert.equal(await page.$$eval(".unread-marker", (m) => m.length), 0);
  await page.evaluate(() => { document.hasFocus = () => false; window.dispatchEvent(new Event("blur")); });
  await emit(page, [
    { type: "message", seq: 2, time_ms: 0, from: "ben", text: "unseen 1", own: false, msg_id: null, history: false },
    { type: "message", seq: 3, time_ms: 0, from: "ben", text: "unseen 2", own: false, msg_id: null, history: false },
  ]);
  const order = await page.$$eval("#log > :not(#load-older)", (ns) => ns.map((n) => (n.classList.contains("unread-marker") ? "MARKER" : n.querySelector(".text")?.textContent)));
  assert.deepEqual(order, ["seen", "MARKER", "unseen 1", "unseen 2"], "one marker before the first unread message");
});

test("earlier messages are paged in above the shown ones, in order, rendered like live ones", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [
    { type: "connected", nick: "ana", epoch: "e1", resumed: false, room_reset: false, gap: false, oldest_seq: 1 },
    { type: "message", seq: 50, time_ms: 1795604682866, from: "ben", text: "fifty", own: false, msg_id: null, history: true },
    { type: "message", seq: 51, time_ms: 1795604682867, from: "ana", text: "fifty-one", own: true, msg_id: 3, history: true },
  ]);
  assert.equal(await page.isVisible("#load-older"), true, "older history exists, so the button shows");
  await page.click("#load-older");
  assert.equal((await calls(page)).filter((c) => c.cmd === "load_older").length, 1);
  assert.equal(await page.isDisabled("#load-older"), true, "no second request while one is running");
  await emit(page, [{
    type: "older", more: false, events: [
      { type: "message", seq: 46, time_ms: 1795604599000, from: "ana", text: "mine, from before", own: true, msg_id: null, history: true },
      { type: "message", seq: 47, time_ms: 1795604600000, from: "ben", text: "<img src=x onerror=alert(1)> hi ana", own: false, msg_id: null, history: true },
      { type: "join", seq: 48, time_ms: 1795604600001, nick: "carol", history: true },
      { type: "leave", seq: 49, time_ms: 1795604600002, nick: "carol", reason: "connection_lost", history: true },
    ],
  }]);
  const seqs = await page.$$eval("#log [data-seq]", (nodes) => nodes.map((n) => Number(n.dataset.seq)));
  assert.deepEqual(seqs, [46, 47, 48, 49, 50, 51]);
  assert.equal(await page.$$eval("#log img", (n) => n.length), 0, "markup stays text");
  assert.match(await page.textContent("#log"), /<img src=x onerror=alert\(1\)>/);
  assert.deepEqual(await page.$$eval("#log .msg.own .text", (ns) => ns.map((n) => n.textContent)), ["mine, from before", "fifty-one"], "own comes from the event");
  assert.equal(await page.$eval("#log .msg.mention .text", (n) => n.textContent), "<img src=x onerror=alert(1)> hi ana");
  const notices = await page.$$eval("#log .notice", (ns) => ns.map((n) => n.textContent));
  assert.equal(notices.length, 2);
  assert.match(notices[0], /^\d\d:\d\d( [AP]M)? · carol joined$/, "the same notice as a live join");
  assert.match(notices[1], /^\d\d:\d\d( [AP]M)? · carol lost connection$/, "the same notice as a live leave");
  assert.equal(await page.isHidden("#load-older"), true, "nothing earlier is kept");
  assert.deepEqual(page.errors, []);
});
