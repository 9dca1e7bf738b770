// The Host form as the host uses it, against the mocked backend: a generated passphrase by
// default, the weak-passphrase warning (once, then hosting goes ahead), where the room is
// reachable (sent to host_server, said on the chat screen), and "Start a new room?" when the
// room stored on this computer has another passphrase (keep, delete, or Cancel/Escape),
// and the history limits the host may change.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useBrowser, openPage, calls } from "./harness.mjs";

useBrowser();

const hostCalls = async (page) => (await calls(page)).filter((c) => c.cmd === "host_server");
const changed = { kind: "room_passphrase_changed", message: "this passphrase is not the one of the room hosted before on this computer" };

test("the host form starts with a generated passphrase, shown", async () => {
  const page = await openPage();
  await page.waitForFunction(() => document.getElementById("host-pass").value !== "");
  assert.equal(await page.inputValue("#host-pass"), "abcde-fghij-kmnpq-rstuv-wxyz2");
  assert.equal(await page.getAttribute("#host-pass", "type"), "text");
  assert.equal(await page.isVisible("#host-pass-warning"), false);
  await page.fill("#host-nick", "ana");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  const [call] = await hostCalls(page);
  assert.equal(call.args.passphrase, "abcde-fghij-kmnpq-rstuv-wxyz2");
  assert.deepEqual(page.errors, []);
});

test("a weak passphrase is warned about with its reason, in both languages, and hosting it again goes ahead", async () => {
  const page = await openPage();
  await page.evaluate(() => { window.__responses.passphrase_strength = { weak: true, reason: "common_password" }; });
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "password");
  await page.click("#host-submit");
  await page.waitForSelector("#host-pass-warning:not([hidden])");
  assert.match(await page.textContent("#host-pass-warning"), /easy to guess: it is a very common password\./);
  assert.equal((await hostCalls(page)).length, 0, "the first submit only warns");
  const asked = (await calls(page)).find((c) => c.cmd === "passphrase_strength");
  assert.deepEqual(asked.args, { passphrase: "password", nick: "ana" }, "the nickname is a guesser's first try");
  await page.selectOption("#language", "es");
  assert.match(await page.textContent("#host-pass-warning"), /fácil de adivinar: es una contraseña muy común\./);
  await page.selectOption("#language", "en");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  const hosted = await hostCalls(page);
  assert.equal(hosted.length, 1, "not blocking: the host may still use it");
  assert.equal(hosted[0].args.passphrase, "password");
  assert.deepEqual(page.errors, []);
});

test("typing a weak passphrase warns as it is typed; a strong one or Generate clears the warning", async () => {
  const page = await openPage();
  await page.evaluate(() => {
    window.__responses.passphrase_strength = null;
    const real = window.__TAURI__.core.invoke;
    window.__TAURI__.core.invoke = async (cmd, args) => cmd === "passphrase_strength"
      ? (window.__calls.push({ cmd, args }), args.passphrase.length < 12 ? { weak: true, reason: "sequence" } : { weak: false, reason: null })
      : real(cmd, args);
  });
  await page.fill("#host-pass", "abc123");
  await page.waitForSelector("#host-pass-warning:not([hidden])");
  assert.match(await page.textContent("#host-pass-warning"), /sequences like/);
  await page.fill("#host-pass", "tortuga azul come fresas");
  await page.waitForSelector("#host-pass-warning", { state: "hidden" });
  await page.fill("#host-pass", "abc123");
  await page.waitForSelector("#host-pass-warning:not([hidden])");
  await page.click("#host-generate");
  await page.waitForSelector("#host-pass-warning", { state: "hidden" });
  assert.deepEqual(page.errors, []);
});

test("where the room is reachable: the choice goes to host_server, is said on the chat screen, and is remembered", async () => {
  const page = await openPage();
  assert.equal(await page.isChecked("#host-reach-network"), true, "this network by default");
  await page.evaluate(() => { window.__responses.host_server = { port: 5555, reach: "computer", addresses: ["127.0.0.1:5555"], invite: "tertulia://127.0.0.1:5555#x" }; });
  await page.fill("#host-nick", "ana");
  await page.check("#host-reach-computer");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  assert.equal((await hostCalls(page))[0].args.reach, "computer");
  assert.equal(await page.textContent("#host-reach"), "Reachable from this computer only: nobody else can join.");
  assert.deepEqual(await page.$$eval("#host-addresses button", (bs) => bs.map((b) => b.textContent)), ["127.0.0.1:5555"]);
  // Connected: the choice is remembered for the next time.
  await page.evaluate(() => window.__emit({ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 }));
  await page.reload();
  assert.equal(await page.isChecked("#host-reach-computer"), true);
  assert.deepEqual(page.errors, []);
});

test("\"Start a new room?\": keep or delete retries host_server with the choice; Cancel and Escape host nothing", async () => {
  const page = await openPage();
  await page.evaluate((e) => { window.__fail = { host_server: e }; }, changed);
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "a new passphrase for a new group");
  const ask = async () => { await page.click("#host-submit"); await page.waitForSelector("#previous-room-dialog[open]"); };

  await ask();
  assert.equal(await page.textContent("#previous-room-title"), "Start a new room?");
  assert.match(await page.textContent("#previous-room-text"), /not the one of the room hosted before on this computer/);
  assert.equal(await page.evaluate(() => document.activeElement.id), "previous-room-keep", "focus on the choice that loses nothing");
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !document.getElementById("previous-room-dialog").open);
  assert.equal(await page.isVisible("#start"), true, "back on the start screen");
  assert.equal(await page.textContent("#host-error"), "");
  assert.equal((await hostCalls(page)).length, 1, "Escape: no retry");

  await ask();
  await page.click("#previous-room-cancel");
  await page.waitForFunction(() => !document.getElementById("previous-room-dialog").open);
  assert.equal((await hostCalls(page)).length, 2, "Cancel: no retry");

  // Keyboard only: Tab to "delete", Enter; the backend now starts the new room.
  await ask();
  await page.evaluate(() => { window.__fail = {}; });
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "previous-room-delete");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#host-panel:not([hidden])");
  const tries = await hostCalls(page);
  assert.equal(tries.length, 4);
  assert.equal(tries[2].args.previousRoom, undefined, "the first try never deletes anything");
  assert.equal(tries[3].args.previousRoom, "delete");
  assert.equal(tries[3].args.passphrase, "a new passphrase for a new group");
  assert.deepEqual(page.errors, []);
});

test("\"Start a new room?\" in Spanish, and keeping the previous room's history", async () => {
  const page = await openPage();
  await page.selectOption("#language", "es");
  await page.evaluate((e) => {
    let first = true;
    const real = window.__TAURI__.core.invoke;
    window.__TAURI__.core.invoke = async (cmd, args) => {
      if (cmd === "host_server" && first) { first = false; window.__calls.push({ cmd, args }); throw e; }
      return real(cmd, args);
    };
  }, changed);
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "otra contraseña para otro grupo");
  await page.click("#host-submit");
  await page.waitForSelector("#previous-room-dialog[open]");
  assert.equal(await page.textContent("#previous-room-title"), "¿Abrir una sala nueva?");
  assert.match(await page.textContent("#previous-room-keep"), /conservar el historial/);
  await page.click("#previous-room-keep");
  await page.waitForSelector("#host-panel:not([hidden])");
  const tries = await hostCalls(page);
  assert.equal(tries.length, 2);
  assert.equal(tries[1].args.previousRoom, "keep");
  assert.equal(await page.textContent("#host-reach"), "Accesible desde todas las redes de este equipo.", "the reach as the backend reports it");
  assert.deepEqual(page.errors, []);
});

test("history limits: the defaults as placeholders, blank keeps them, a change goes to host_server, nonsense is refused", async () => {
  const page = await openPage();
  await page.click("#host-history summary");
  assert.equal(await page.getAttribute("#host-keep-messages", "placeholder"), "Default: 100000");
  assert.equal(await page.getAttribute("#host-keep-days", "placeholder"), "Default: no limit");
  await page.fill("#host-nick", "ana");
  await page.fill("#host-keep-days", "0");
  await page.click("#host-submit");
  assert.equal(await page.textContent("#host-error"), "History: keep it between 1 and 3650 days.");
  assert.equal((await hostCalls(page)).length, 0);
  await page.selectOption("#language", "es");
  assert.equal(await page.getAttribute("#host-keep-days", "placeholder"), "Predeterminado: sin límite");
  await page.selectOption("#language", "en");
  await page.fill("#host-keep-days", "");
  await page.fill("#host-keep-messages", " 500 ");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  assert.deepEqual((await hostCalls(page))[0].args.history, { maxMessages: 500 }, "only what the host changed");
  assert.deepEqual(page.errors, []);
});
