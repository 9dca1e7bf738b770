// Own messages on screen: nothing lost, nothing doubled, none left "sending…", in room order —
// whatever order send's answers, echoes and acks arrive in, across a reconnect, next to an
// earlier session's backlog. A refused message goes back into the composer. Reconnecting is
// one status line (attempt, countdown, then a hint), not a notice per failed attempt.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, calls, emit, joinRoom, shots } from "./harness.mjs";

useBrowser();

const connected = (extra = {}) => ({ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1, ...extra });
const own = (id, seq, text, history = false) => ({ type: "message", seq, time_ms: 1795604686046 + seq, from: "ana", text, own: true, msg_id: id, history });
const ben = (seq, text) => ({ type: "message", seq, time_ms: 1795604686046 + seq, from: "ben", text, own: false, msg_id: null, history: false });

// A small seeded generator, so a failing order can be replayed.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// What the window shows: every message bubble (text, own, pending, failed, seq) in order.
const bubbles = (page) => page.$$eval("#log .msg", (ns) => ns.map((n) => ({
  text: n.querySelector(".text").textContent,
  own: n.classList.contains("own"),
  pending: n.classList.contains("pending"),
  failed: n.classList.contains("failed"),
  seq: n.dataset.seq == null ? null : Number(n.dataset.seq),
})));
const sendCalls = async (page) => (await calls(page)).filter((c) => c.cmd === "send");
// Answers one held send (the i-th of those still held), as Tauri may answer any of them first.
const releaseHeld = (page, i) => page.evaluate((k) => { const [held] = window.__held.splice(k, 1); held.release(); }, i);
const heldCount = (page) => page.evaluate(() => (window.__held || []).length);

function assertOnScreen(list, ownTexts, others) {
  const mine = list.filter((b) => b.own).map((b) => b.text);
  for (const text of ownTexts) assert.equal(mine.filter((m) => m === text).length, 1, `exactly one bubble for ${JSON.stringify(text)}: ${JSON.stringify(mine)}`);
  assert.equal(mine.length, ownTexts.length, "no extra own bubbles");
  assert.deepEqual(mine, ownTexts, "own messages in the order typed (and sent)");
  assert.equal(list.filter((b) => !b.own).length, others, "every other message once");
  assert.deepEqual(list.filter((b) => b.pending), [], "none left sending…");
  assert.deepEqual(list.filter((b) => b.failed), [], "none marked not delivered");
  const seqs = list.map((b) => b.seq);
  assert.ok(seqs.every((s) => s != null), "every bubble has its room sequence number");
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "bubbles in room order");
}

// Plays the room: the core numbers sends in the order they reach it; the server echoes them
// in that order (interleaved with ben's messages) and acks; send's answers come back in a
// random order — before, between or after the echoes and acks.
async function playRoom(page, total, rnd, firstSeq = 10) {
  let seq = firstSeq;
  let delivered = 0;
  let ackedTo = 0;
  let others = 0;
  for (let guard = 0; guard < 5000; guard += 1) {
    const sent = (await sendCalls(page)).length;
    const held = await heldCount(page);
    if (delivered === total && ackedTo === total && held === 0 && sent === total) break;
    const moves = [];
    if (delivered < sent) moves.push("echo", "echo");
    if (ackedTo < delivered) moves.push("ack");
    if (held) moves.push("release", "release");
    if (others < 10) moves.push("ben");
    if (!moves.length) { await page.waitForTimeout(5); continue; }
    const move = moves[Math.floor(rnd() * moves.length)];
    if (move === "echo") {
      const call = (await sendCalls(page))[delivered];
      delivered += 1;
      seq += 1;
      await emit(page, [own(delivered, seq, call.args.text)]);
    } else if (move === "ack") {
      const upTo = ackedTo + 1 + Math.floor(rnd() * (delivered - ackedTo));
      const ids = Array.from({ length: upTo - ackedTo }, (_, i) => ackedTo + 1 + i);
      ackedTo = upTo;
      await emit(page, [{ type: "acked", ids }]);
    } else if (move === "release") {
      await releaseHeld(page, Math.floor(rnd() * held));
    } else {
      others += 1;
      seq += 1;
      await emit(page, [ben(seq, `ben ${others}`)]);
    }
  }
  return others;
}

test("a burst of 30 messages sent as fast as Enter goes: one bubble each, none pending, room order — any answer order", async () => {
  for (const seed of [1, 7, 2026]) {
    const page = await openPage();
    await joinRoom(page);
    await emit(page, [connected()]);
    await page.evaluate(() => { window.__holdSend = true; });
    const texts = Array.from({ length: 30 }, (_, i) => `burst ${seed}/${i + 1}`);
    // All 30 in one go, faster than any answer can come back.
    await page.evaluate((list) => {
      const box = document.getElementById("message");
      for (const text of list) {
        box.value = text;
        box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
      }
    }, texts);
    assert.equal(await page.inputValue("#message"), "");
    assert.equal((await bubbles(page)).filter((b) => b.pending).length, 30, "all 30 show at once as sending…");
    const others = await playRoom(page, 30, random(seed));
    await page.waitForFunction(() => document.querySelectorAll("#log .msg.pending").length === 0, null, { timeout: 5000 }).catch(() => {});
    assertOnScreen(await bubbles(page), texts, others);
    assert.deepEqual((await sendCalls(page)).map((c) => c.args.text), texts, "sent to the core in the order typed");
    if (seed === 1) await page.screenshot({ path: path.join(shots, "burst.png") });
    assert.deepEqual(page.errors, []);
    await page.context().close();
  }
});

test("typed with the keyboard while answers are held, then a reconnect: acks before echoes, replayed and resent messages, still one each", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected(), ben(1, "hi")]);
  await page.evaluate(() => { window.__holdSend = true; });
  await page.click("#message");
  const texts = ["uno", "dos", "tres", "cuatro", "cinco", "seis"];
  for (const text of texts) { await page.keyboard.type(text); await page.keyboard.press("Enter"); }
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length >= 1);
  // 1 and 2 land before the connection breaks; their answers are still held.
  await emit(page, [own(1, 2, "uno"), own(2, 3, "dos"), { type: "acked", ids: [1, 2] }]);
  await releaseHeld(page, 0);
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length >= 2);
  await releaseHeld(page, 0);
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length >= 3);
  await releaseHeld(page, 0);
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length >= 4);
  await releaseHeld(page, 0);
  // 3 and 4 reached the room, but their echoes were lost with the connection.
  await emit(page, [
    { type: "error", kind: "network", message: "the server closed the connection" },
    { type: "reconnecting", attempt: 1, delay_ms: 200, reason: "the server closed the connection" },
    { type: "connecting", attempt: 1, addr: "192.168.1.20:5555" },
    connected({ resumed: true }),
    { type: "online", members: ["ana", "ben"] },
    { type: "acked", ids: [3, 4] }, // the welcome's ack comes before the replay
    own(3, 4, "tres", true),
    ben(5, "welcome back"),
    own(4, 6, "cuatro", true),
    own(2, 3, "dos", true), // a replay overlapping what was shown: nothing new
  ]);
  assert.equal((await bubbles(page)).filter((b) => b.text === "tres").length, 1);
  // 5 and 6 are resent from the outbox; their echoes overtake send's answers.
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length >= 5);
  await emit(page, [own(5, 7, "cinco")]);
  await releaseHeld(page, 0);
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length >= 6);
  await emit(page, [own(6, 8, "seis"), { type: "acked", ids: [5, 6] }]);
  await releaseHeld(page, 0);
  await page.waitForFunction(() => document.querySelectorAll("#log .msg.pending").length === 0, null, { timeout: 3000 }).catch(() => {});
  assertOnScreen(await bubbles(page), texts, 2);
  assert.deepEqual(page.errors, []);
});

test("an earlier session's own messages in the backlog are not taken for this session's pending ones", async () => {
  const page = await openPage();
  await joinRoom(page);
  // Typed while still connecting: the core queues it as id 1.
  await page.fill("#message", "typed while connecting");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("#log .msg").length === 1);
  await emit(page, [
    connected(),
    own(1, 5, "from yesterday", true), // an earlier session's message 1, under the same nickname
    ben(6, "morning"),
  ]);
  assert.deepEqual((await bubbles(page)).map((b) => [b.text, b.pending]), [
    ["typed while connecting", true], ["from yesterday", false], ["morning", false],
  ]);
  await emit(page, [own(1, 7, "typed while connecting"), { type: "acked", ids: [1] }]);
  const list = await bubbles(page);
  assert.deepEqual(list.map((b) => [b.text, b.seq, b.pending]), [
    ["from yesterday", 5, false], ["morning", 6, false], ["typed while connecting", 7, false],
  ], "each once, in room order");
  assert.deepEqual(page.errors, []);
});

test("a refused message goes back into the composer to be edited, unless something new was typed", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected()]);
  // The server refuses it (message_rejected).
  await page.fill("#message", "too long for this room");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "send"));
  assert.equal(await page.inputValue("#message"), "");
  await emit(page, [{ type: "message_rejected", id: 1, reason: "too_long", message: "the message is longer than the room allows" }]);
  assert.equal(await page.inputValue("#message"), "too long for this room");
  assert.equal((await bubbles(page))[0].failed, true, "the bubble says it was not delivered");
  assert.match(await page.textContent("#log"), /not delivered: the message is longer than the room allows/);
  // Something new typed meanwhile stays.
  await page.press("#message", "Enter"); // sends it again as id 2
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length === 2);
  await page.fill("#message", "a new draft");
  await emit(page, [{ type: "message_rejected", id: 2, reason: "too_long", message: "the message is longer than the room allows" }]);
  assert.equal(await page.inputValue("#message"), "a new draft", "not overwritten");
  // The rejection may come before send's answer.
  await page.fill("#message", "refused early");
  await page.evaluate(() => { window.__holdSend = true; });
  await page.press("#message", "Enter");
  await page.waitForFunction(() => (window.__held || []).length === 1);
  await emit(page, [{ type: "message_rejected", id: 3, reason: "invisible_characters", message: "the message contains control or invisible characters" }]);
  assert.equal(await page.inputValue("#message"), "");
  await releaseHeld(page, 0);
  await page.waitForFunction(() => document.getElementById("message").value === "refused early");
  // send itself fails (not connected, invalid text…).
  await page.evaluate(() => { window.__holdSend = false; window.__fail = { send: "not connected to a room" }; });
  await page.fill("#message", "line one\nline two");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => document.getElementById("message").value === "line one\nline two");
  assert.match(await page.textContent("#log"), /Not sent: not connected to a room/);
  const list = await bubbles(page);
  assert.deepEqual(list.map((b) => [b.failed, b.pending]), [[true, false], [true, false], [true, false], [true, false]]);
  assert.deepEqual(page.errors, []);
});

test("reconnecting is one status line with the attempt and, after a few failures, what to check — not a notice per retry", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected(), ben(1, "hi")]);
  const notices = () => page.$$eval("#log .notice", (ns) => ns.map((n) => n.textContent));
  const addr = "192.168.1.20:5555";
  const refused = `cannot reach ${addr}: Connection refused (os error 111)`;
  await emit(page, [
    { type: "error", kind: "network", message: "the server closed the connection" },
    { type: "reconnecting", attempt: 1, delay_ms: 200, reason: "the server closed the connection" },
  ]);
  for (let attempt = 1; attempt <= 6; attempt += 1) {
    await emit(page, [
      { type: "connecting", attempt, addr },
      { type: "error", kind: "network", message: refused },
      { type: "reconnecting", attempt: attempt + 1, delay_ms: 4000, reason: refused },
    ]);
    if (attempt === 2) assert.equal(await page.isHidden("#conn-hint"), true, "no hint after two failures");
  }
  assert.deepEqual(await notices(), [], "no notice per failed attempt");
  assert.match(await page.textContent("#conn-state"), /^Reconnecting in [34] s \(attempt 7\)$/);
  assert.equal(await page.isVisible("#reconnect-now"), true);
  assert.equal(await page.isVisible("#conn-hint"), true);
  const hint = await page.textContent("#conn-hint");
  assert.match(hint, /192\.168\.1\.20:5555/);
  assert.match(hint, /address and port/);
  assert.match(hint, /firewall/);
  assert.match(hint, /still running/);
  assert.doesNotMatch(await page.textContent("#chat"), /os error/, "no raw OS error anywhere");
  await page.screenshot({ path: path.join(shots, "reconnecting-hint.png") });
  // The next attempt is shown as it starts; the hint stays.
  await emit(page, [{ type: "connecting", attempt: 7, addr }]);
  assert.match(await page.textContent("#conn-state"), /attempt 7/);
  assert.equal(await page.isVisible("#conn-hint"), true);
  // In Spanish too (the language switch is on the start screen; the same switch here).
  const switchTo = (lang) => page.evaluate(async (l) => (await import("/i18n.js")).setLanguage(l), lang);
  await switchTo("es");
  assert.match(await page.textContent("#conn-hint"), /192\.168\.1\.20:5555 todavía no responde.*cortafuegos/);
  await emit(page, [{ type: "error", kind: "network", message: refused }, { type: "reconnecting", attempt: 8, delay_ms: 4000, reason: refused }]);
  assert.match(await page.textContent("#conn-state"), /Reconectando en [34] s \(intento 8\)/);
  await switchTo("en");
  // A real problem is told once, however often it repeats.
  for (let attempt = 8; attempt <= 10; attempt += 1) {
    await emit(page, [
      { type: "connecting", attempt, addr },
      { type: "error", kind: "integrity", message: "data from the server failed its integrity check; reconnecting" },
      { type: "reconnecting", attempt: attempt + 1, delay_ms: 4000, reason: "integrity" },
    ]);
  }
  assert.equal((await notices()).length, 1, "one integrity notice");
  assert.match((await notices())[0], /integrity check/);
  assert.equal(await page.isHidden("#conn-hint"), true, "the network hint is not for an integrity failure");
  // Back in the room: the hint goes; a new outage starts counting afresh.
  await emit(page, [{ type: "connecting", attempt: 11, addr }, connected({ resumed: true })]);
  assert.match(await page.textContent("#conn-state"), /Connected as ana/);
  assert.equal(await page.isHidden("#conn-hint"), true);
  assert.equal(await page.isHidden("#reconnect-now"), true);
  await emit(page, [
    { type: "error", kind: "network", message: "the server closed the connection" },
    { type: "reconnecting", attempt: 1, delay_ms: 200, reason: "x" },
    { type: "connecting", attempt: 1, addr },
    { type: "error", kind: "network", message: refused },
    { type: "reconnecting", attempt: 2, delay_ms: 400, reason: refused },
  ]);
  assert.equal(await page.isHidden("#conn-hint"), true);
  assert.equal((await notices()).length, 1, "still one notice");
  assert.deepEqual(page.errors, []);
});
