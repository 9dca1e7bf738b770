// Rooms on this network (discovered.js) and the Host form's room name and "Show this room
// on the network", with the fake backend of harness.mjs: browsing only while the start
// screen shows, rooms appearing and disappearing live as "rooms-found" updates, hostile
// names kept as text, picking by mouse and keyboard (the form filled, the passphrase asked
// for, Escape undoing it), rooms that cannot be picked, a browser that fails, both
// languages, and the layout at 360 px in the dark theme with AA contrast.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, calls, emitTo, shots, contrastProblems } from "./harness.mjs";

useBrowser();

const SALA = { id: "Sala de Ana._tertulia._tcp.local.", name: "Sala de Ana", host: "lanA.local", address: "10.77.0.2:5555", join_host: "10.77.0.2", port: 5555, fingerprint: "3f2a-91c0-5b7e-0d44-a1c9-77e2", compatible: true };
const HOSTILE = { id: "x._tertulia._tcp.local.", name: "<img src=x onerror=alert(1)> Book club", host: "bea-laptop.local", address: "[fd00::3]:6000", join_host: "fd00::3", port: 6000, fingerprint: "0d44-a1c9-77e2-3f2a-91c0-5b7e", compatible: true };
const OLD = { id: "old._tertulia._tcp.local.", name: "Old room", host: "old.local", address: "10.77.0.9:5555", join_host: "10.77.0.9", port: 5555, fingerprint: "", compatible: false };

const browseCalls = async (page) => (await calls(page)).filter((c) => c.cmd === "browse_rooms" || c.cmd === "stop_browsing").map((c) => c.cmd);
const names = (page) => page.$$eval("#discovered-list .discovered-name", (n) => n.map((x) => x.textContent));
const status = (page) => page.textContent("#discovered-status");

test("rooms on this network appear and disappear live, as text; browsing stops in a room and starts again after", async () => {
  const page = await openPage();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "browse_rooms"));
  assert.match(await status(page), /Looking for rooms on this network/);
  assert.equal(await page.isHidden("#discovered-list"), true, "nothing found: no empty list");

  await emitTo(page, "rooms-found", { rooms: [SALA], problem: null });
  assert.deepEqual(await names(page), ["Sala de Ana"]);
  assert.match(await page.textContent("#discovered-list li"), /10\.77\.0\.2:5555 on lanA\.local.*identity 3f2a-91c0-5b7e-0d44-a1c9-77e2/);
  assert.match(await status(page), /One room found: pick it/);

  await emitTo(page, "rooms-found", { rooms: [SALA, HOSTILE], problem: null });
  assert.deepEqual(await names(page), ["Sala de Ana", "<img src=x onerror=alert(1)> Book club"]);
  assert.equal(await page.$$eval("#discovered-list img", (n) => n.length), 0, "names are text, not markup");
  assert.match(await status(page), /2 rooms found/);

  await emitTo(page, "rooms-found", { rooms: [HOSTILE], problem: null });
  assert.deepEqual(await names(page), ["<img src=x onerror=alert(1)> Book club"], "a room gone from the network is gone from the list");

  await page.fill("#join-nick", "ana");
  await page.click("#discovered-list li:first-child button");
  await page.fill("#join-pass", "open sesame");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  const connect = (await calls(page)).find((c) => c.cmd === "connect");
  assert.deepEqual(connect.args, { host: "fd00::3", port: 6000, passphrase: "open sesame", nick: "ana", fingerprint: HOSTILE.fingerprint },
    "the announced identity is insisted on, as an invite code's");
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "stop_browsing"));
  assert.equal(await page.$$eval("#discovered-list li", (n) => n.length), 0, "the list of before is not kept");
  // Rooms announced while in a room are not listed.
  await emitTo(page, "rooms-found", { rooms: [SALA], problem: null });
  assert.equal(await page.$$eval("#discovered-list li", (n) => n.length), 0);

  await page.click("#leave");
  await page.waitForSelector("#start:not([hidden])");
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "browse_rooms").length === 2);
  assert.deepEqual(await browseCalls(page), ["browse_rooms", "stop_browsing", "browse_rooms"]);
  await emitTo(page, "rooms-found", { rooms: [SALA], problem: null });
  assert.deepEqual(await names(page), ["Sala de Ana"]);
  assert.deepEqual(page.errors, []);
});

test("picking a room by keyboard fills address and port and asks for the passphrase; Escape undoes it", async () => {
  const page = await openPage();
  await page.fill("#join-host", "192.168.1.50");
  await page.fill("#join-port", "7000");
  await emitTo(page, "rooms-found", { rooms: [SALA, HOSTILE, OLD], problem: null });
  await page.focus("#discovered-list li:first-child button");
  await page.keyboard.press("ArrowDown");
  assert.equal(await page.evaluate(() => document.activeElement.closest("li").dataset.id), HOSTILE.id);
  await page.keyboard.press("End");
  assert.equal(await page.evaluate(() => document.activeElement.closest("li").dataset.id), OLD.id);
  assert.match(await page.textContent("#discovered-list li:nth-child(3)"), /needs another version of Tertulia/);
  assert.equal(await page.getAttribute("#discovered-list li:nth-child(3) button", "aria-disabled"), "true");
  await page.keyboard.press("Enter");
  assert.equal(await page.inputValue("#join-host"), "192.168.1.50", "a room of another version cannot be picked");

  await page.keyboard.press("Home");
  await page.keyboard.press("Enter");
  assert.equal(await page.inputValue("#join-host"), "10.77.0.2");
  assert.equal(await page.inputValue("#join-port"), "5555");
  assert.equal(await page.evaluate(() => document.activeElement.id), "join-pass");
  assert.match(await status(page), /“Sala de Ana”: enter its passphrase to join \(Escape undoes the choice\)/);

  // The list changes while the passphrase is typed: the form and the focus stay.
  await page.keyboard.type("open");
  await emitTo(page, "rooms-found", { rooms: [HOSTILE, SALA], problem: null });
  assert.equal(await page.evaluate(() => document.activeElement.id), "join-pass");
  assert.equal(await page.inputValue("#join-pass"), "open");

  await page.keyboard.press("Escape");
  assert.equal(await page.inputValue("#join-host"), "192.168.1.50", "Escape puts back what the form said before");
  assert.equal(await page.inputValue("#join-port"), "7000");
  assert.equal(await page.evaluate(() => document.activeElement.closest("li")?.dataset.id), SALA.id, "and the keyboard on the room");
  assert.match(await status(page), /2 rooms found/);

  // Escape in the list goes to the address field.
  await page.keyboard.press("Escape");
  assert.equal(await page.evaluate(() => document.activeElement.id), "join-host");

  // A picked room's identity replaces an invite code's; one without any expects none, and
  // an edited address is another room.
  await page.fill("#join-host", "tertulia://192.168.1.20:5555/aaaa-bbbb-cccc-dddd-eeee-ffff#open%20sesame");
  assert.match(await page.textContent("#join-identity"), /The invite code names the room's identity: aaaa-bbbb/);
  await page.click("#discovered-list li:first-child button");
  assert.equal(await page.inputValue("#join-host"), "fd00::3");
  assert.equal(await page.textContent("#join-identity"), `The room announces its identity: ${HOSTILE.fingerprint}. Only that room is joined.`);
  await emitTo(page, "rooms-found", { rooms: [{ ...SALA, fingerprint: "" }], problem: null });
  await page.click("#discovered-list li:first-child button");
  assert.equal(await page.isVisible("#join-identity"), false, "no identity announced: none expected");
  await emitTo(page, "rooms-found", { rooms: [SALA], problem: null });
  await page.click("#discovered-list li:first-child button");
  assert.equal(await page.isVisible("#join-identity"), true);
  await page.fill("#join-host", "10.77.0.2 ");
  assert.equal(await page.isVisible("#join-identity"), false, "edited: another room");
  assert.deepEqual(page.errors, []);
});

test("a list that arrives late (a browse_rooms answer after a newer event) does not hide the rooms found", async () => {
  const page = await openPage();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "browse_rooms"));
  await emitTo(page, "rooms-found", { seq: 7, rooms: [SALA], problem: null });
  assert.deepEqual(await names(page), ["Sala de Ana"]);
  await emitTo(page, "rooms-found", { seq: 6, rooms: [], problem: null });
  assert.deepEqual(await names(page), ["Sala de Ana"], "the older, empty list is left out");
  await emitTo(page, "rooms-found", { seq: 8, rooms: [], problem: null });
  assert.deepEqual(await names(page), [], "a newer one is shown");
  assert.deepEqual(page.errors, []);
});

test("a browser that cannot start says so, and the form still works; Spanish", async () => {
  const page = await openPage({ locale: "es-ES" });
  await page.evaluate(() => {
    window.__fail = { browse_rooms: { kind: "discovery_failed", cause: "turned_off", message: "x", reason: "turned off by TERTULIA_DISCOVERY=off" } };
    document.getElementById("start").hidden = true;
  });
  await page.evaluate(() => { document.getElementById("start").hidden = false; });
  await page.waitForFunction(() => document.getElementById("discovered-status").textContent.includes("TERTULIA_DISCOVERY"));
  // The backend's cause in the window's language, not its English reason.
  assert.equal(await status(page), "No se pueden buscar salas en esta red: desactivado en este ordenador con TERTULIA_DISCOVERY=off. Puedes escribir la dirección abajo.");
  await page.selectOption("#language", "en");
  assert.equal(await status(page), "Rooms on this network cannot be looked for: turned off on this computer with TERTULIA_DISCOVERY=off. You can still type the address below.");
  // A cause this window has no words for keeps the backend's reason.
  const other = await openPage({ locale: "es-ES" });
  await other.evaluate(() => {
    window.__fail = { browse_rooms: { kind: "discovery_failed", cause: "from_the_future", message: "x", reason: "no multicast interface" } };
    document.getElementById("start").hidden = true;
  });
  await other.evaluate(() => { document.getElementById("start").hidden = false; });
  await other.waitForFunction(() => document.getElementById("discovered-status").textContent.includes("multicast"));
  assert.equal(await status(other), "No se pueden buscar salas en esta red: no multicast interface. Puedes escribir la dirección abajo.");

  const es = await openPage({ locale: "es-ES" });
  await emitTo(es, "rooms-found", { rooms: [SALA, HOSTILE], problem: null });
  assert.match(await status(es), /Hay 2 salas: elige una/);
  assert.equal(await es.textContent("#discovered-title"), "Salas en esta red");
  assert.match(await es.textContent("#discovered-list li"), /identidad 3f2a/);
  assert.deepEqual(page.errors, []);
});

test("the host names the room (it follows the nickname until edited) and chooses whether it is shown", async () => {
  const page = await openPage();
  await page.fill("#host-nick", "ana");
  assert.equal(await page.inputValue("#host-room-name"), "ana's room");
  await page.selectOption("#language", "es");
  assert.equal(await page.inputValue("#host-room-name"), "Sala de ana");
  assert.equal(await page.textContent("label:has(#host-announce)"), " Mostrar esta sala en la red");
  await page.selectOption("#language", "en");
  assert.equal(await page.isChecked("#host-announce"), true, "shown on the network unless the host says not");

  // Too long for the announcement (63 bytes of UTF-8: 32 × "ñ" is 64).
  await page.fill("#host-room-name", "ñ".repeat(32));
  await page.click("#host-submit");
  assert.match(await page.textContent("#host-error"), /Room name: at most 63 bytes/);
  await page.fill("#host-room-name", "Book club");
  await page.fill("#host-nick", "ana maría");
  assert.equal(await page.inputValue("#host-room-name"), "Book club", "a name of the host's own stays");
  await page.evaluate(() => { window.__responses.host_server = { ...window.__responses.host_server, announce: { status: "on", name: "Book club" } }; });
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  const [hosted] = (await calls(page)).filter((c) => c.cmd === "host_server");
  assert.equal(hosted.args.roomName, "Book club");
  assert.equal(hosted.args.announce, true);
  assert.equal(await page.textContent("#host-announced"), "Shown on this network as “Book club”.");

  // Not shown: said so by leaving it out; a failed announcement is said with its reason.
  const quiet = await openPage();
  await quiet.fill("#host-nick", "bea");
  await quiet.uncheck("#host-announce");
  await quiet.evaluate(() => { window.__responses.host_server = { ...window.__responses.host_server, announce: { status: "off" } }; });
  await quiet.click("#host-submit");
  await quiet.waitForSelector("#host-panel:not([hidden])");
  const [quietCall] = (await calls(quiet)).filter((c) => c.cmd === "host_server");
  assert.equal(quietCall.args.announce, false);
  assert.equal(quietCall.args.roomName, "bea's room");
  // Emptied, the field shows the default, which is what hosting uses.
  await quiet.click("#stop-hosting");
  await quiet.click("#confirm-ok");
  await quiet.waitForSelector("#start:not([hidden])");
  await quiet.fill("#host-room-name", "");
  assert.equal(await quiet.getAttribute("#host-room-name", "placeholder"), "bea's room");
  await quiet.fill("#host-nick", "bea2");
  assert.equal(await quiet.inputValue("#host-room-name"), "bea2's room", "emptied, it follows the nickname again");
  assert.equal(await quiet.isHidden("#host-announced"), true);

  const failed = await openPage();
  await failed.fill("#host-nick", "eva");
  await failed.evaluate(() => { window.__responses.host_server = { ...window.__responses.host_server, announce: { status: "failed", reason: "no multicast interface" } }; });
  await failed.click("#host-submit");
  await failed.waitForSelector("#host-panel:not([hidden])");
  assert.equal(await failed.textContent("#host-announced"), "Not shown on this network (no multicast interface); others can still join by address.");
  // A known cause is said in the window's language, and again after a language switch.
  const spanish = await openPage({ locale: "es-ES" });
  await spanish.fill("#host-nick", "eva");
  await spanish.evaluate(() => { window.__responses.host_server = { ...window.__responses.host_server, announce: { status: "failed", cause: "no_network", reason: "no network interface other than loopback is up" } }; });
  await spanish.click("#host-submit");
  await spanish.waitForSelector("#host-panel:not([hidden])");
  assert.equal(await spanish.textContent("#host-announced"), "No se ve en esta red (este ordenador no está conectado a ninguna red); se puede entrar igualmente por la dirección.");
  await spanish.evaluate(async () => (await import("./i18n.js")).setLanguage("en"));
  assert.equal(await spanish.textContent("#host-announced"), "Not shown on this network (this computer is not connected to a network); others can still join by address.");
  assert.deepEqual([...page.errors, ...quiet.errors, ...failed.errors, ...spanish.errors], []);
});

test("a long nickname is shortened to fit the default room name, at a character boundary", async () => {
  const page = await openPage();
  await page.fill("#host-nick", "😀".repeat(16)); // 32 UTF-16 units, the field's most
  assert.equal(await page.inputValue("#host-room-name"), "😀".repeat(14) + "'s room", "63 bytes at most: 14 × 4 + 7");
  await page.selectOption("#language", "es");
  assert.equal(await page.inputValue("#host-room-name"), "Sala de " + "😀".repeat(13));
});

test("at 360 px in the dark theme the list fits, and every text keeps AA contrast", async () => {
  for (const colorScheme of ["dark", "light"]) {
    const page = await openPage({ viewport: { width: 360, height: 740 }, colorScheme });
    await page.fill("#join-nick", "ana");
    await emitTo(page, "rooms-found", { rooms: [SALA, { ...HOSTILE, name: "A room with a very long name that has to wrap somewhere sensible" }, OLD], problem: null });
    await page.click("#discovered-list li:first-child button");
    const overflow = await page.evaluate(() => {
      const start = document.querySelector("#start");
      const wide = [...document.querySelectorAll("#join-form *, #host-form *")].filter((n) => n.getBoundingClientRect().right > window.innerWidth + 1);
      return { scroll: start.scrollWidth - start.clientWidth, wide: wide.map((n) => n.id || n.className || n.tagName) };
    });
    assert.deepEqual(overflow, { scroll: 0, wide: [] }, colorScheme);
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} 360 px start screen`);
    await page.locator("#join-form").screenshot({ path: path.join(shots, `discovered-360-${colorScheme}.png`) });
  }
});
