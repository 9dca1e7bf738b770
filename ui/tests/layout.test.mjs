// What a person sees, measured in the real page: WCAG AA contrast in both themes, nothing
// spilling out of the log or the online list, very long messages collapsed, right-to-left
// text laid out right to left, and the start screen and overlays without dead ends.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, emit, joinRoom, shots, calls, contrastProblems } from "./harness.mjs";

useBrowser();

const msg = (seq, from, text, extra = {}) => ({ type: "message", seq, time_ms: 0, from, text, own: false, msg_id: null, history: false, ...extra });
const connected = (nick = "ana") => ({ type: "connected", nick, epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 });

test("WCAG AA contrast in both themes: start screen, chat with every kind of line, dialog", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ colorScheme, viewport: { width: 1280, height: 800 } });
    await page.click("#join-submit"); // an error line on the form
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} start screen`);
    await page.fill("#host-nick", "ana");
    await page.fill("#host-pass", "open sesame");
    await page.click("#host-submit");
    await page.waitForSelector("#host-panel:not([hidden])");
    await emit(page, [connected(), { type: "online", members: ["ana", "ben"] },
      { type: "join", seq: 1, time_ms: 0, nick: "ben", history: false },
      msg(2, "ben", "hola ana, ¿qué tal?"), { type: "typing", nick: "ben" }]);
    await page.fill("#message", "sending this one");
    await page.press("#message", "Enter");
    await page.fill("#message", "and a refused one");
    await page.press("#message", "Enter");
    await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "send").length === 2);
    await page.waitForTimeout(100);
    await emit(page, [{ type: "message_rejected", id: 2, reason: "too_long", message: "too long" }]);
    await page.waitForSelector(".msg.pending");
    await page.waitForSelector(".msg.failed");
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} chat`);
    await page.screenshot({ path: path.join(shots, `contrast-${colorScheme}.png`) });
    await page.click("#stop-hosting");
    await page.waitForSelector("#confirm-dialog[open]");
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} stop-hosting dialog`);
    await page.keyboard.press("Escape");
    assert.deepEqual(page.errors, []);
  }
});

test("the host form's warning, reach choice and history limits, and \"Start a new room?\": AA contrast, nothing spills, at 360 px in both themes", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ colorScheme, viewport: { width: 360, height: 740 } });
    await page.evaluate(() => {
      window.__responses.passphrase_strength = { weak: true, reason: "repeated_pattern" };
      window.__fail = { host_server: { kind: "room_passphrase_changed", message: "changed" } };
    });
    await page.fill("#host-nick", "ana");
    await page.fill("#host-pass", "abcabcabc");
    await page.click("#host-submit");
    await page.waitForSelector("#host-pass-warning:not([hidden])");
    await page.waitForSelector("#host-submit:not([disabled])");
    await page.click("#host-history summary"); // the history limits, open
    await page.locator("#host-pass-warning").scrollIntoViewIfNeeded();
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} weak-passphrase warning`);
    const spills = () => page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(await spills(), false, "the start screen fits 360 px");
    await page.screenshot({ path: path.join(shots, `host-warning-360-${colorScheme}.png`), fullPage: true });
    await page.click("#host-submit");
    await page.waitForSelector("#previous-room-dialog[open]");
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} "Start a new room?"`);
    const fits = await page.$eval("#previous-room-dialog", (d) => d.getBoundingClientRect().right <= window.innerWidth && d.scrollWidth <= d.clientWidth);
    assert.ok(fits, "the dialog fits 360 px");
    await page.screenshot({ path: path.join(shots, `previous-room-360-${colorScheme}.png`) });
    await page.keyboard.press("Escape");
    assert.deepEqual(page.errors, []);
  }
});

test("nothing spills sideways: long nicknames, a letter piled with combining marks, at 360 and 1280 px", async () => {
  for (const width of [360, 1280]) {
    const page = await openPage({ viewport: { width, height: 700 } });
    await joinRoom(page);
    const longNick = "Maximiliano_de_la_Santísima_Trin";
    const wideNick = "絵文字と漢字のとても長いニックネームです絵文字と漢字のとても長いニ";
    const zalgo = "a" + "\u0301\u0316\u0327\u0350".repeat(150) + " and more";
    await emit(page, [connected(), { type: "online", members: ["ana", longNick, wideNick] }, msg(1, longNick, zalgo), msg(2, wideNick, "x".repeat(3000))]);
    if (width === 360) await page.click("#toggle-people");
    const spills = await page.evaluate(() => {
      const out = [];
      for (const box of [document.getElementById("log"), document.getElementById("people")]) {
        if (box.scrollWidth > box.clientWidth) out.push(`${box.id} scrolls sideways (${box.scrollWidth} > ${box.clientWidth})`);
        const edge = box.getBoundingClientRect();
        for (const n of box.querySelectorAll("li, .msg")) {
          const r = n.getBoundingClientRect();
          if (r.right > edge.right + 1 || r.left < edge.left - 1) out.push(`${n.className || n.tagName} leaves ${box.id}`);
        }
      }
      if (document.documentElement.scrollWidth > window.innerWidth) out.push("the page scrolls sideways");
      return out;
    });
    assert.deepEqual(spills, [], `${width} px`);
    await page.screenshot({ path: path.join(shots, `overflow-${width}.png`) });
  }
});

test("a message of 5 000 lines is collapsed behind Show more; short ones are not", async () => {
  const page = await openPage({ viewport: { width: 900, height: 700 } });
  await joinRoom(page);
  await emit(page, [connected(), msg(1, "ben", "\n".repeat(5000) + "the end"), msg(2, "ben", "short\nmessage"), msg(3, "ben", "line\n".repeat(8))]);
  await page.waitForTimeout(100); // one frame: collapsed messages that fit lose the button
  const height = () => page.$eval(".msg[data-seq='1']", (n) => n.getBoundingClientRect().height);
  assert.ok((await height()) < 400, `collapsed: ${await height()} px`);
  assert.equal(await page.$$eval(".msg .more", (bs) => bs.length), 1, "only the long one has the button");
  assert.equal(await page.textContent(".msg .more"), "Show more");
  await page.click(".msg .more");
  assert.ok((await height()) > 5000, "expanded: all of it");
  assert.equal(await page.textContent(".msg .more"), "Show less");
  assert.equal(await page.getAttribute(".msg .more", "aria-expanded"), "true");
  await page.click(".msg .more");
  assert.ok((await height()) < 400);
});

test("Arabic and Hebrew messages are laid out right to left, each message on its own", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected(), msg(1, "ليلى", "مرحبا بالجميع، كيف حالكم؟"), msg(2, "דנה", "שלום לכולם"), msg(3, "ben", "hello everyone")]);
  const dirs = await page.$$eval(".msg .text", (ns) => ns.map((n) => getComputedStyle(n).direction));
  assert.deepEqual(dirs, ["rtl", "rtl", "ltr"]);
  assert.equal(await page.$eval(".msg .from", (n) => getComputedStyle(n).direction), "rtl");
  assert.equal(await page.getAttribute("#message", "dir"), "auto", "the composer follows what is typed");
});

test("a refused nickname is not remembered; old errors leave the start screen", async () => {
  const page = await openPage();
  await joinRoom(page, "ben");
  await emit(page, [{ type: "nick_rejected", nick: "ben", reason: "taken", message: "taken" }]);
  await page.fill("#nick-input", "ana");
  await page.click("#nick-submit");
  assert.equal((await calls(page)).filter((c) => c.cmd === "set_nick").length, 1);
  await page.reload();
  assert.equal(await page.inputValue("#join-nick"), "", "neither the refused nor the not-yet-accepted name");
  await joinRoom(page, "ana");
  await emit(page, [connected("ana")]);
  await page.reload();
  assert.equal(await page.inputValue("#join-nick"), "ana", "the accepted one is");
  // An old error: shown, then gone when the user edits the form or comes back from a room.
  await page.fill("#join-port", "99999");
  await page.click("#join-submit");
  assert.match(await page.textContent("#join-error"), /Port/);
  await page.fill("#join-port", "5555");
  assert.equal(await page.textContent("#join-error"), "");
  await page.evaluate(() => { window.__fail = { host_server: "could not start the room on port 5555: address in use" }; });
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "x");
  await page.click("#host-submit");
  await page.waitForFunction(() => document.getElementById("host-error").textContent.includes("address in use"));
  await page.evaluate(() => { window.__fail = {}; });
  await page.fill("#join-pass", "open sesame");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  await page.click("#leave");
  await page.waitForSelector("#start:not([hidden])");
  assert.equal(await page.textContent("#host-error"), "", "back on the start screen, no error from before");
  assert.equal(await page.textContent("#join-error"), "");
});

test("the narrow online overlay closes with Escape and with a click outside it", async () => {
  const page = await openPage({ viewport: { width: 360, height: 640 } });
  await joinRoom(page);
  await emit(page, [connected(), { type: "online", members: ["ana", "ben"] }]);
  await page.click("#toggle-people");
  assert.equal(await page.isVisible("#people"), true);
  await page.keyboard.press("Escape");
  assert.equal(await page.isVisible("#people"), false, "Escape closes it");
  assert.equal(await page.getAttribute("#toggle-people", "aria-expanded"), "false");
  assert.equal(await page.evaluate(() => document.activeElement.id), "toggle-people", "focus goes back to its button");
  await page.click("#toggle-people");
  await page.click("#people li");
  assert.equal(await page.isVisible("#people"), true, "a click inside keeps it open");
  await page.mouse.click(20, 300);
  assert.equal(await page.isVisible("#people"), false, "a click outside closes it");
});

test("found in review: a final disconnect fails what is still sending; a room reset keeps new messages below it", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected(), msg(1, "ben", "one"), msg(2, "ben", "two"), msg(3, "ben", "three")]);
  // The server restarted without its history: it numbers from 1 again.
  await emit(page, [{ ...connected(), room_reset: true, resumed: false }]);
  await page.fill("#message", "lost in the restart?");
  await page.press("#message", "Enter");
  await page.waitForSelector(".msg.pending");
  await page.waitForTimeout(100);
  await emit(page, [{ type: "message", seq: 2, time_ms: 0, from: "ana", text: "lost in the restart?", own: true, msg_id: 1, history: false }]);
  const order = await page.$$eval("#log .msg .text, #log .notice", (ns) => ns.map((n) => n.textContent));
  assert.deepEqual(order.slice(-2), [order.at(-2), "lost in the restart?"], "the own message stays at the bottom");
  assert.match(order.at(-2), /restarted/);
  // A message still sending when the session ends for good is marked, and its text is back.
  await page.fill("#message", "never sent");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => [...document.querySelectorAll(".msg.pending")].some((n) => n.textContent.includes("never sent")));
  await emit(page, [{ type: "disconnected", reason: "fatal", message: "the server is shutting down" }]);
  assert.equal(await page.$$eval(".msg.pending", (ns) => ns.length), 0, "nothing left 'sending…'");
  assert.equal(await page.$$eval(".msg.failed", (ns) => ns.filter((n) => n.textContent.includes("never sent")).length), 1);
  assert.equal(await page.inputValue("#message"), "never sent", "the text is back in the composer");
  assert.deepEqual(page.errors, []);
});

test("found in review: Escape in a dialog over the open overlay cancels the dialog; attribute texts keep their values on a language switch", async () => {
  const page = await openPage({ viewport: { width: 360, height: 640 } });
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "open sesame");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  await emit(page, [connected(), { type: "online", members: ["ana", "ben"] }]);
  await page.click("#toggle-people");
  await page.click("#stop-hosting");
  await page.waitForSelector("#confirm-dialog[open]");
  await page.keyboard.press("Escape");
  assert.equal(await page.$eval("#confirm-dialog", (d) => d.open), false, "the dialog is cancelled by the first Escape");
  assert.equal((await calls(page)).some((c) => c.cmd === "stop_hosting"), false);
  assert.equal(await page.getAttribute("#host-addresses button", "title"), "Copy 192.168.1.20:5555");
  await page.evaluate(async () => (await import("./i18n.js")).setLanguage("es"));
  assert.equal(await page.getAttribute("#host-addresses button", "title"), "Copiar 192.168.1.20:5555");
});

test("found in review: a room time no Date can hold is shown as now, not dropped", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [connected(), msg(1, "ben", "from the far future", { time_ms: 9e18 }), msg(2, "ben", "and after it")]);
  assert.deepEqual(await page.$$eval("#log .msg .text", (ns) => ns.map((n) => n.textContent)), ["from the far future", "and after it"]);
  assert.deepEqual(page.errors, []);
});

test("found in review: the saved room's passphrase prompt survives a list refresh and a failed join", async () => {
  const page = await openPage();
  const room = { id: "192.168.1.20:5555", name: "192.168.1.20:5555", host: "192.168.1.20", port: 5555, nick: "ana", last_used_ms: Date.now(), passphrase_saved: false };
  await page.evaluate((r) => { window.__responses.list_saved_rooms = [r]; }, room);
  await page.evaluate(() => import("./saved.js").then((m) => m.refreshSaved()));
  await page.click("#saved-list .saved-rejoin");
  await page.waitForSelector(".saved-ask input[type=password]");
  await page.fill(".saved-ask input[type=password]", "half typed");
  await page.evaluate(() => import("./saved.js").then((m) => m.refreshSaved()));
  assert.equal(await page.inputValue(".saved-ask input[type=password]"), "half typed", "a refresh keeps the prompt and what was typed");
  assert.equal(await page.evaluate(() => document.activeElement.type), "password", "and the focus in it");
  await page.evaluate(() => { window.__fail = { rejoin_saved_room: { kind: "not_connected", message: "not connected to a room" } }; });
  await page.click(".saved-ask button[type=submit]");
  await page.waitForSelector("#start:not([hidden])");
  await page.waitForFunction(() => document.querySelector(".saved-ask .error")?.textContent);
  assert.equal(await page.textContent(".saved-ask .error"), "Not connected to a room.", "the failure is said where it was asked");
  await page.keyboard.press("Escape");
  assert.equal(await page.$$eval(".saved-ask", (f) => f.length), 0, "Escape closes it");
  assert.deepEqual(page.errors, []);
});
