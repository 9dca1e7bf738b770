// The host's identity in the window, against the mocked backend: the hosted room's
// fingerprint on the host panel (copied by its button) and in its invite code; an invite
// code's fingerprint sent with the join; the host's fingerprint in the chat header once
// connected; and "The host's identity changed" — both fingerprints shown, Cancel the
// default (focused, Escape, a click outside: back to the Join form with the reason, no
// trust_host), "Trust the new identity" calling trust_host with the presented fingerprint.
// Both languages; AA contrast and 360 px in both themes.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, emit, calls, joinRoom, shots, contrastProblems } from "./harness.mjs";

useBrowser();

const PINNED = "3f2a-91c0-5b7e-0d44-a1c9-77e2";
const PRESENTED = "b7d1-0e55-c2a8-9f36-41aa-e07c";
const connected = (fp = PINNED) => ({ type: "connected", nick: "ana", host_fingerprint: fp, epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 });
const changed = {
  type: "error", kind: "host_identity_changed",
  message: `the host's identity changed — if the host did not reset the room, someone may be intercepting (pinned ${PINNED}, presented ${PRESENTED})`,
  pinned_fingerprint: PINNED, presented_fingerprint: PRESENTED,
};
const stopped = { type: "disconnected", reason: "fatal", message: changed.message };
const cmds = async (page, name) => (await calls(page)).filter((c) => c.cmd === name);

test("hosting: the room identity is on the host panel, copied by its button, and in the invite code", async () => {
  const page = await openPage();
  await page.fill("#host-nick", "ana");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  assert.equal(await page.textContent("#host-panel .identity-row"), `Room identity: ${PINNED}`);
  assert.equal(await page.getAttribute("#copy-fingerprint", "title"), "Copy the room identity (members can compare it)");
  await page.click("#copy-fingerprint");
  await page.waitForFunction(() => document.getElementById("copy-status").textContent !== "");
  const status = await page.textContent("#copy-status");
  assert.ok(status === "Room identity copied" || status.includes(PINNED), status);
  await page.evaluate(async () => (await import("./i18n.js")).setLanguage("es"));
  assert.equal(await page.textContent("#host-panel .identity-row"), `Identidad de la sala: ${PINNED}`);
  const invite = await page.evaluate(() => import("./session.js").then((m) => m.session.hosting.invite));
  assert.ok(invite.includes(`/${PINNED}#`), invite);
  // The host's own connection reports the same identity in the header.
  await emit(page, [connected()]);
  assert.equal(await page.textContent("#room-identity"), `Identidad de la sala: ${PINNED}`);
  assert.deepEqual(page.errors, []);
});

test("joining with an invite code sends its fingerprint; the header shows the host's once connected", async () => {
  const page = await openPage();
  await page.fill("#join-nick", "ben");
  await page.fill("#join-host", `tertulia://192.168.1.20:5555/${PINNED.replaceAll("-", "").toUpperCase()}#open%20sesame`);
  assert.equal(await page.inputValue("#join-host"), "192.168.1.20");
  assert.equal(await page.inputValue("#join-pass"), "open sesame");
  assert.match(await page.textContent("#join-identity"), new RegExp(`room's identity: ${PINNED}\\.`));
  assert.deepEqual(await contrastProblems(page), [], "the Join form with the invite's identity");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  const [join] = await cmds(page, "connect");
  assert.equal(join.args.fingerprint, PINNED, "the invite's identity is the one expected");
  assert.equal(await page.isVisible("#room-identity"), false, "no identity before the handshake proves one");
  await emit(page, [connected()]);
  assert.equal(await page.textContent("#room-identity"), `Room identity: ${PINNED}`);
  const selectable = await page.$eval("#room-identity", (n) => getComputedStyle(n).userSelect);
  assert.notEqual(selectable, "none");

  // A damaged fingerprint is refused on the form; editing the address forgets the code's.
  await page.click("#leave");
  await page.waitForSelector("#start:not([hidden])");
  await page.fill("#join-host", "tertulia://192.168.1.20:5555/3f2a-91c0#open%20sesame");
  assert.match(await page.textContent("#join-error"), /host fingerprint after '\/' is not 24 hex digits/);
  await page.fill("#join-host", "192.168.1.21");
  assert.equal(await page.isVisible("#join-identity"), false);
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
  const second = (await cmds(page, "connect"))[1];
  assert.equal(second.args.fingerprint, undefined, "a typed address: the pin or first use decides");
  assert.deepEqual(page.errors, []);
});

for (const how of ["Escape", "Enter on the focused default", "the Cancel button", "a click outside"]) {
  test(`"The host's identity changed": ${how} cancels — back on the Join form with the reason, nothing trusted`, async () => {
    const page = await openPage();
    await joinRoom(page);
    await emit(page, [changed, stopped]);
    await page.waitForSelector("#identity-dialog[open]");
    assert.equal(await page.textContent("#identity-title"), "The host's identity changed");
    assert.match(await page.textContent("#identity-text"), /someone may be intercepting your connection\. Compare the new fingerprint with the host by another channel\./);
    assert.equal(await page.textContent("#identity-pinned"), PINNED);
    assert.equal(await page.textContent("#identity-presented"), PRESENTED);
    const labels = await page.$$eval("#identity-dialog dt", (ns) => ns.map((n) => n.textContent));
    assert.deepEqual(labels, ["Pinned (trusted until now)", "Presented by the host now"]);
    assert.equal(await page.evaluate(() => document.activeElement.id), "identity-cancel", "Cancel is the default");
    // Modal: nothing behind it can be used (no chat before a choice).
    assert.equal(await page.evaluate(() => document.querySelector("#identity-dialog").matches(":modal")), true);
    if (how === "Escape") await page.keyboard.press("Escape");
    else if (how === "Enter on the focused default") await page.keyboard.press("Enter");
    else if (how === "the Cancel button") await page.click("#identity-cancel");
    else await page.mouse.click(5, 5);
    await page.waitForFunction(() => !document.getElementById("identity-dialog").open, null, { timeout: 5000 });
    await page.waitForSelector("#start:not([hidden])");
    await page.waitForFunction(() => document.getElementById("join-error").textContent !== "", null, { timeout: 5000 });
    const error = await page.textContent("#join-error");
    assert.match(error, /^Not joined: the host presented another identity/);
    assert.ok(error.includes(PINNED) && error.includes(PRESENTED), error);
    assert.deepEqual(await cmds(page, "trust_host"), [], "nothing trusted");
    assert.equal((await cmds(page, "disconnect")).length, 1, "the session is ended");
    assert.deepEqual(page.errors, []);
  });
}

test("\"Trust the new identity\" joins again expecting exactly the presented fingerprint", async () => {
  const page = await openPage();
  await joinRoom(page);
  await emit(page, [changed, stopped]);
  await page.waitForSelector("#identity-dialog[open]");
  await page.screenshot({ path: path.join(shots, "identity-changed.png") });
  // Trust is a deliberate second step: one Tab away from the focused Cancel.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "identity-trust");
  await page.click("#identity-trust");
  await page.waitForFunction(() => !document.getElementById("identity-dialog").open, null, { timeout: 5000 });
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "trust_host"), null, { timeout: 5000 });
  const trusted = await cmds(page, "trust_host");
  assert.deepEqual(trusted.map((c) => c.args), [{ fingerprint: PRESENTED }]);
  assert.equal(await page.isVisible("#chat"), true, "still on the chat screen, connecting");
  assert.equal(await page.textContent("#conn-state"), "Connecting…");
  await emit(page, [connected(PRESENTED)]);
  assert.equal(await page.textContent("#room-identity"), `Room identity: ${PRESENTED}`);
  assert.equal(await page.textContent("#conn-state"), "Connected as ana");
  assert.deepEqual(page.errors, []);
});

test("the dialog in Spanish; a version mismatch shows the core's text verbatim", async () => {
  const page = await openPage({ locale: "es-ES" });
  await joinRoom(page);
  await emit(page, [changed, stopped]);
  await page.waitForSelector("#identity-dialog[open]");
  assert.equal(await page.textContent("#identity-title"), "La identidad del anfitrión ha cambiado");
  assert.equal(
    await page.textContent("#conn-state"),
    "Desconectado: La identidad del anfitrión ha cambiado; no se le ha enviado nada.",
    "the status line in the window's language, not the core's English",
  );
  assert.equal(await page.textContent("#identity-trust"), "Confiar en la nueva identidad");
  assert.equal(await page.textContent("#identity-cancel"), "Cancelar");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#start:not([hidden])");
  assert.match(await page.textContent("#join-error"), /^No has entrado/);

  await joinRoom(page);
  const newer = "this room needs a newer Tertulia (it speaks protocol 3–4; this program speaks 2)";
  await emit(page, [{ type: "error", kind: "needs_newer", message: newer }]);
  assert.equal(await page.textContent("#log .notice"), `No se puede entrar: ${newer}`);
  await emit(page, [{ type: "disconnected", reason: "fatal", message: newer }]);
  assert.ok((await page.textContent("#conn-state")).includes(newer));
  const outdated = "the host runs an older Tertulia (protocol 1); ask them to update";
  await page.evaluate(async () => (await import("./i18n.js")).setLanguage("en"));
  await page.click("#leave");
  await joinRoom(page);
  await emit(page, [{ type: "error", kind: "host_outdated", message: outdated }]);
  assert.equal(await page.textContent("#log .notice"), `Cannot join: ${outdated}`);
  assert.deepEqual(page.errors, []);
});

test("the dialog, the host panel and the header: AA contrast and nothing spills at 360 px, both themes", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ colorScheme, viewport: { width: 360, height: 700 } });
    await page.fill("#host-nick", "ana");
    await page.click("#host-submit");
    await page.waitForSelector("#host-panel:not([hidden])");
    await emit(page, [connected()]);
    const spills = () => page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(await spills(), false, "the host panel and header fit 360 px");
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} host panel and header`);
    await page.screenshot({ path: path.join(shots, `identity-host-360-${colorScheme}.png`) });
    await emit(page, [changed]);
    await page.waitForSelector("#identity-dialog[open]");
    const fits = await page.$eval("#identity-dialog", (d) => d.getBoundingClientRect().right <= window.innerWidth && d.scrollWidth <= d.clientWidth);
    assert.ok(fits, "the dialog fits 360 px");
    assert.equal(await spills(), false);
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} identity dialog`);
    await page.screenshot({ path: path.join(shots, `identity-changed-360-${colorScheme}.png`) });
    await page.keyboard.press("Escape");
    assert.deepEqual(page.errors, []);
  }
});
