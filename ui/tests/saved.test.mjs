// Saved rooms on the start screen (saved.js) with the fake backend of harness.mjs: the list,
// one-click Rejoin, the inline passphrase prompt, Forget, "Remember passphrase" in the Join
// form, a list that fails to load, and the layout at 360 px in the dark theme.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, calls, shots } from "./harness.mjs";

useBrowser();

const now = Date.now();
const ROOMS = [
  { id: "192.168.1.20:5555", name: "192.168.1.20:5555", host: "192.168.1.20", port: 5555, nick: "ana", last_used_ms: now, passphrase_saved: true },
  { id: "[fd00::2]:6000", name: "<b>Book club</b> with a very long name that has to wrap somewhere", host: "fd00::2", port: 6000, nick: "Ana María", last_used_ms: now - 86_400_000 * 3, passphrase_saved: false },
];

async function withRooms(page, rooms = ROOMS) {
  await page.evaluate((list) => {
    window.__responses.list_saved_rooms = list;
    window.__responses.rejoin_saved_room = { status: "joining" };
    window.__responses.forget_saved_room = { rooms: list.slice(1), problem: null };
  }, rooms);
  await page.evaluate(() => import("./saved.js").then((m) => m.refreshSaved()));
  await page.waitForSelector("#saved-rooms:not([hidden]) li");
}

const items = (page) => page.$$eval("#saved-list li", (lis) => lis.map((li) => li.textContent));

test("saved rooms are listed safely; Rejoin is one click; without a passphrase it is asked for inline", async () => {
  const page = await openPage();
  assert.equal(await page.isHidden("#saved-rooms"), true, "no rooms: no section");
  await withRooms(page);
  const texts = await items(page);
  assert.equal(texts.length, 2);
  assert.match(texts[0], /192\.168\.1\.20:5555.*as ana.*last used today at.*passphrase remembered/);
  assert.match(texts[1], /<b>Book club<\/b>.*\[fd00::2\]:6000.*as Ana María/);
  assert.equal(await page.$$eval("#saved-list b", (b) => b.length), 0, "names are text, not markup");
  assert.equal(await page.getAttribute("#saved-list li:first-child .saved-rejoin", "aria-label"), "Rejoin 192.168.1.20:5555");

  await page.click("#saved-list li:first-child .saved-rejoin");
  await page.waitForSelector("#chat:not([hidden])");
  assert.deepEqual((await calls(page)).filter((c) => c.cmd === "rejoin_saved_room").map((c) => c.args), [{ id: "192.168.1.20:5555" }]);
  await page.click("#leave");
  await page.waitForSelector("#start:not([hidden])");

  // No passphrase stored: asked inline, keyboard only; Escape closes the prompt.
  await page.focus("#saved-list li:nth-child(2) .saved-rejoin");
  await page.keyboard.press("Enter");
  await page.waitForSelector(".saved-ask input[type=password]:focus");
  await page.keyboard.press("Escape");
  assert.equal(await page.$(".saved-ask"), null);
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains("saved-rejoin")), true);
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  assert.match(await page.textContent(".saved-ask .error"), /Passphrase/);
  await page.keyboard.type("open sesame");
  await page.check(".saved-ask input[type=checkbox]");
  await page.focus(".saved-ask input[type=password]");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#chat:not([hidden])");
  const rejoin = (await calls(page)).filter((c) => c.cmd === "rejoin_saved_room").at(-1);
  assert.deepEqual(rejoin.args, { id: "[fd00::2]:6000", passphrase: "open sesame", remember: true });
  assert.deepEqual(page.errors, []);
});

test("Forget removes the room and keeps the keyboard in the list", async () => {
  const page = await openPage();
  await withRooms(page);
  await page.click("#saved-list li:first-child .saved-forget");
  await page.waitForFunction(() => document.querySelectorAll("#saved-list li").length === 1);
  assert.deepEqual((await calls(page)).filter((c) => c.cmd === "forget_saved_room").map((c) => c.args), [{ id: "192.168.1.20:5555" }]);
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains("saved-rejoin")), true);
});

test("\"Remember passphrase\" goes with the join; a list that cannot load says so; Spanish", async () => {
  const page = await openPage();
  await page.fill("#join-nick", "ana");
  await page.fill("#join-host", "192.168.1.20");
  await page.fill("#join-pass", "open sesame");
  await page.check("#join-remember");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  const connect = (await calls(page)).find((c) => c.cmd === "connect");
  assert.equal(connect.args.remember, true);

  const failing = await openPage();
  await failing.evaluate(() => { window.__fail = { list_saved_rooms: "the saved rooms list was damaged (EOF); it was set aside as /x/rooms.json.damaged-1" }; });
  await failing.evaluate(() => import("./saved.js").then((m) => m.refreshSaved()));
  await failing.waitForSelector("#saved-rooms:not([hidden])");
  assert.match(await failing.textContent("#saved-error"), /could not be loaded: the saved rooms list was damaged.*set aside/);

  const es = await openPage({ locale: "es-ES" });
  await withRooms(es);
  await es.selectOption("#language", "es");
  assert.match((await items(es))[0], /como ana.*último uso: hoy a las.*contraseña recordada/);
  assert.equal(await es.textContent("#saved-list li:first-child .saved-rejoin"), "Volver a entrar");
});

test("at 360 px in the dark theme nothing spills sideways", async () => {
  const page = await openPage({ viewport: { width: 360, height: 740 }, colorScheme: "dark" });
  await withRooms(page);
  await page.click("#saved-list li:nth-child(2) .saved-rejoin");
  await page.waitForSelector(".saved-ask");
  const overflow = await page.evaluate(() => {
    const start = document.querySelector("#start");
    const wide = [...document.querySelectorAll("#saved-rooms *, #join-form *")].filter((n) => n.getBoundingClientRect().right > window.innerWidth + 1);
    return { scroll: start.scrollWidth - start.clientWidth, wide: wide.map((n) => n.className || n.tagName) };
  });
  assert.deepEqual(overflow, { scroll: 0, wide: [] });
  await page.screenshot({ path: path.join(shots, "saved-rooms-360-dark.png"), fullPage: true });
});
