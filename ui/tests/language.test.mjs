// Spanish and English in the real page: the language follows the system's, every visible
// string is translated (nothing left in the markup), switching rewrites what is on screen —
// notices already in the log included — and the choice is remembered.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, emit, joinRoom, shots } from "./harness.mjs";

useBrowser();

// Every non-blank text node and text-bearing attribute of the page that no translation key
// covers: dynamic containers (peer text, addresses) and language names are left out.
const untranslated = (page) => page.evaluate(() => {
  const dynamic = "#log, #online, #host-addresses, #typing, #online-count, #copy-status, #copy-fingerprint, #identity-pinned, #identity-presented, #nick-reason, #confirm-text, .error, option, title";
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const owner = n.parentElement;
    if (owner.closest(dynamic) || owner.closest("[data-i18n]")) continue;
    found.push(n.textContent.trim());
  }
  for (const node of document.querySelectorAll("[placeholder], [title], [aria-label]")) {
    for (const attr of ["placeholder", "title", "aria-label"]) {
      if (node.hasAttribute(attr) && !node.hasAttribute("data-i18n-" + attr) && !node.closest(dynamic)) found.push(`${attr}=${node.getAttribute(attr)}`);
    }
  }
  return found;
});
// Keys shown as themselves: a key missing from the dictionary.
const rawKeys = (page) => page.$$eval("[data-i18n]", (ns) => ns.filter((n) => n.textContent === n.dataset.i18n).map((n) => n.dataset.i18n));

test("the window follows a Spanish system: every string in Spanish, 24-hour times", async () => {
  const page = await openPage({ locale: "es-ES" });
  assert.equal(await page.getAttribute("html", "lang"), "es");
  assert.equal(await page.textContent("#host-submit"), "Abrir la sala");
  assert.equal(await page.textContent("#join-form h2"), "Unirse a una sala");
  assert.equal(await page.getAttribute("#join-host", "placeholder"), "192.168.1.20 o tertulia://…");
  assert.equal(await page.inputValue("#language"), "es");
  assert.deepEqual(await untranslated(page), [], "nothing hard-coded in the markup");
  assert.deepEqual(await rawKeys(page), []);
  await page.screenshot({ path: path.join(shots, "start-es.png") });
  await joinRoom(page);
  const at1705 = new Date(2026, 11, 2, 17, 5).getTime();
  await emit(page, [
    { type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 },
    { type: "online", members: ["ana", "ben"] },
    { type: "join", seq: 1, time_ms: at1705, nick: "ben", history: false },
    { type: "message", seq: 2, time_ms: at1705, from: "ben", text: "¡Hola!", own: false, msg_id: null, history: false },
  ]);
  assert.equal(await page.textContent("#conn-state"), "Conectado como ana");
  assert.equal(await page.textContent("#log .notice"), "17:05 · ben se ha unido");
  assert.equal(await page.textContent("#log .msg time"), "17:05");
  assert.equal(await page.textContent("#send"), "Enviar");
  assert.deepEqual(await untranslated(page), []);
  assert.deepEqual(await rawKeys(page), []);
  await page.screenshot({ path: path.join(shots, "chat-es.png") });
  assert.deepEqual(page.errors, []);
});

test("an English system gets English; switching to Spanish rewrites the screen and is remembered", async () => {
  const page = await openPage({ locale: "en-US" });
  assert.equal(await page.getAttribute("html", "lang"), "en");
  assert.equal(await page.textContent("#host-submit"), "Host a room");
  assert.deepEqual(await untranslated(page), []);
  await page.selectOption("#language", "es");
  assert.equal(await page.textContent("#host-submit"), "Abrir la sala");
  assert.equal(await page.getAttribute(".reveal[data-for=join-pass]", "aria-label"), "Mostrar la contraseña");
  await page.click("#join-submit");
  assert.equal(await page.textContent("#join-error"), "Apodo: elige un apodo.");
  await page.reload();
  assert.equal(await page.inputValue("#language"), "es", "the choice outlives a restart");
  assert.equal(await page.textContent("#host-submit"), "Abrir la sala");
  await page.selectOption("#language", "en");
  await joinRoom(page);
  await emit(page, [
    { type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: true, gap: false, oldest_seq: 1 },
    { type: "online", members: ["ana", "ben", "cy"] },
    { type: "leave", seq: 3, time_ms: 0, nick: "ben", reason: "connection_lost", history: false },
  ]);
  assert.match(await page.textContent("#log .notice"), /earlier history is gone/);
  // Switching while in the room (the language menu is on the start screen; the setting is
  // global) rewrites notices already shown and the status line.
  await page.evaluate(async () => (await import("./i18n.js")).setLanguage("es"));
  assert.match(await page.textContent("#log .notice"), /el historial anterior ya no está/);
  assert.match(await page.textContent("#log .notice:nth-of-type(2)"), /ben perdió la conexión/);
  assert.equal(await page.textContent("#conn-state"), "Conectado como ana");
  assert.equal(await page.textContent("#member-count"), "3 miembros");
  assert.deepEqual(await rawKeys(page), []);
  assert.deepEqual(page.errors, []);
});

test("the passphrase toggle says what it will do, also after Generate", async () => {
  for (const locale of ["en-US", "es-ES"]) {
    const page = await openPage({ locale, viewport: { width: 360, height: 700 } });
    const toggle = ".reveal[data-for=host-pass]";
    const show = locale === "es-ES" ? "Mostrar" : "Show", hide = locale === "es-ES" ? "Ocultar" : "Hide";
    // A new room starts with a generated passphrase, shown.
    await page.waitForFunction(() => document.getElementById("host-pass").value !== "");
    assert.equal(await page.textContent(toggle), hide);
    await page.click(toggle);
    assert.equal(await page.textContent(toggle), show);
    await page.click("#host-generate");
    assert.equal(await page.getAttribute("#host-pass", "type"), "text");
    assert.equal(await page.textContent(toggle), hide, "shown passphrase: the toggle offers to hide it");
    assert.equal(await page.getAttribute(toggle, "aria-pressed"), "true");
    const fits = await page.$eval("#host-pass", (i) => i.scrollWidth <= i.clientWidth);
    assert.ok(fits, "the generated passphrase is readable whole at 360 px");
    await page.click(toggle);
    assert.equal(await page.getAttribute("#host-pass", "type"), "password");
    assert.equal(await page.textContent(toggle), show);
  }
});
