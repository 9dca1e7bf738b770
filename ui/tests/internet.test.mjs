// "Reachable from the internet" as the host uses it, against the mocked backend: an explicit
// choice (off by default, never remembered, not offered for "this computer only") sent to
// host_server; then what the backend's internet-status events say (internet.rs): asking,
// reachable at the router's address with the self-check and a copyable invite code, or why
// not and what to forward by hand, in English and Spanish; router text only as text; the
// panel fits 360 px in both themes with AA contrast.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { useBrowser, openPage, calls, emitTo, shots, contrastProblems } from "./harness.mjs";

useBrowser();

const hostCalls = async (page) => (await calls(page)).filter((c) => c.cmd === "host_server");
const base = { port: 5555, lan: "10.77.0.2", external: null, method: null, check: null, reason: null, detail: null, invite: null };
const asking = { ...base, state: "asking" };
const reachable = {
  ...base, state: "reachable", external: "203.0.113.1:5555", method: "upnp",
  invite: "tertulia://203.0.113.1:5555/3f2a-91c0-5b7e-0d44-a1c9-77e2#open%20sesame",
};

async function hostWithInternet(page, internet = asking) {
  await page.evaluate((internet) => { window.__responses.host_server = { ...window.__responses.host_server, internet }; }, internet);
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "open sesame for the whole group");
  await page.check("#host-internet");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
}

test("the option is off by default, sent only when chosen, never for this computer only, and not remembered", async () => {
  const page = await openPage();
  assert.equal(await page.isChecked("#host-internet"), false, "off by default");
  assert.match(await page.textContent("fieldset.reach"), /Reachable from the internet \(asks your router to forward the port\)/);
  await page.check("#host-reach-computer");
  assert.equal(await page.isDisabled("#host-internet"), true, "nothing to forward to");
  await page.check("#host-reach-network");
  assert.equal(await page.isDisabled("#host-internet"), false);
  await page.fill("#host-nick", "ana");
  await page.fill("#host-pass", "open sesame for the whole group");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  assert.equal((await hostCalls(page))[0].args.internet, undefined, "not asked for");
  assert.equal(await page.isVisible("#internet-now"), false, "nothing said about the internet");

  const again = await openPage();
  await hostWithInternet(again);
  assert.equal((await hostCalls(again))[0].args.internet, true);
  await again.evaluate(() => window.__emit({ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 }));
  await again.reload();
  assert.equal(await again.isChecked("#host-internet"), false, "chosen again each time");
  assert.deepEqual([...page.errors, ...again.errors], []);
});

test("asking, then reachable at the router's address with the self-check and its invite code, in both languages", async () => {
  const page = await openPage();
  await hostWithInternet(page);
  assert.equal(await page.textContent("#internet-status"), "Asking your router to forward port 5555…");
  assert.equal(await page.isVisible("#copy-internet-invite"), false);
  await emitTo(page, "internet-status", reachable);
  assert.equal(await page.textContent("#internet-status"), "Reachable from the internet at 203.0.113.1:5555");
  assert.equal(await page.isVisible("#internet-more"), false, "no verdict before the check");
  await emitTo(page, "internet-status", { ...reachable, check: "could_not_confirm" });
  assert.match(await page.textContent("#internet-more"), /^Could not confirm it from inside this network/);
  await emitTo(page, "internet-status", { ...reachable, check: "confirmed" });
  assert.equal(await page.textContent("#internet-more"), "Checked: the room answers at that address.");
  // The LAN addresses are still there: the internet is one more way in.
  assert.deepEqual(await page.$$eval("#host-addresses button", (bs) => bs.map((b) => b.textContent)), ["192.168.1.20:5555", "[fd00::2]:5555"]);

  await page.evaluate(() => {
    window.__copied = [];
    navigator.clipboard.writeText = async (text) => { window.__copied.push(text); };
  });
  await page.click("#copy-internet-invite");
  await page.waitForFunction(() => document.getElementById("copy-status").textContent !== "");
  assert.deepEqual(await page.evaluate(() => window.__copied), [reachable.invite]);
  assert.equal(await page.textContent("#copy-status"), "Internet invite code copied");

  // In Spanish (the language is chosen on the start screen).
  const es = await openPage();
  await es.selectOption("#language", "es");
  assert.match(await es.textContent("fieldset.reach"), /Accesible desde internet \(pide al router que redirija el puerto\)/);
  await hostWithInternet(es);
  assert.equal(await es.textContent("#internet-status"), "Pidiendo al router que redirija el puerto 5555…");
  await emitTo(es, "internet-status", { ...reachable, check: "confirmed" });
  assert.equal(await es.textContent("#internet-status"), "Accesible desde internet en 203.0.113.1:5555");
  assert.equal(await es.textContent("#internet-more"), "Comprobado: la sala responde en esa dirección.");
  assert.equal(await es.textContent("#copy-internet-invite"), "Copiar el código de invitación por internet");
  assert.deepEqual([...page.errors, ...es.errors], []);
});

test("no answer from the router: what to forward by hand, and the room still works here; each reason worded", async () => {
  const page = await openPage();
  await hostWithInternet(page);
  await emitTo(page, "internet-status", { ...base, state: "unreachable", reason: "no_answer" });
  assert.equal(await page.textContent("#internet-status"),
    "Not reachable from the internet: your router did not answer UPnP, PCP or NAT-PMP. Forward port 5555 to 10.77.0.2 by hand, or use a VPN such as Tailscale.");
  assert.equal(await page.textContent("#internet-more"), "The room still works on this network.");
  assert.equal(await page.isVisible("#copy-internet-invite"), false, "no internet invite without a mapping");
  const es = await openPage();
  await es.selectOption("#language", "es");
  await hostWithInternet(es);
  await emitTo(es, "internet-status", { ...base, state: "unreachable", reason: "no_answer" });
  assert.equal(await es.textContent("#internet-status"),
    "No accesible desde internet: el router no respondió a UPnP, PCP ni NAT-PMP. Redirige a mano el puerto 5555 a 10.77.0.2, o usa una VPN como Tailscale.");
  assert.equal(await es.textContent("#internet-more"), "La sala sigue funcionando en esta red.");
  assert.deepEqual(es.errors, []);
  await emitTo(page, "internet-status", { ...base, state: "unreachable", reason: "not_public", detail: "100.64.7.1" });
  assert.match(await page.textContent("#internet-status"), /internet address 100\.64\.7\.1 is not public/);
  await emitTo(page, "internet-status", { ...base, state: "lost", external: "203.0.113.1:5555", reason: "no_answer" });
  assert.equal(await page.textContent("#internet-status"), "Your router stopped forwarding 203.0.113.1:5555; asking it again…");
  // A router's own words are shown as text, never as markup.
  await emitTo(page, "internet-status", { ...base, state: "unreachable", reason: "refused", detail: "<img src=x onerror=window.__pwned=1>" });
  assert.match(await page.textContent("#internet-status"), /refused to forward the port \(<img src=x onerror=window\.__pwned=1>\)/);
  assert.equal(await page.$$eval("#internet-now img", (imgs) => imgs.length), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(page.errors, []);
});

test("an answer from the router that comes before host_server's is kept; leaving forgets it", async () => {
  const page = await openPage();
  await page.evaluate((reachable) => {
    const real = window.__TAURI__.core.invoke;
    window.__TAURI__.core.invoke = async (cmd, args) => {
      if (cmd === "host_server" && args.internet) window.__emitTo("internet-status", reachable);
      return real(cmd, args);
    };
  }, reachable);
  await hostWithInternet(page);
  assert.equal(await page.textContent("#internet-status"), "Reachable from the internet at 203.0.113.1:5555", "not overwritten by the older 'asking'");
  await page.click("#stop-hosting");
  await page.waitForSelector("#confirm-dialog[open]");
  await page.click("#confirm-ok");
  await page.waitForSelector("#start:not([hidden])");
  assert.equal(await page.isVisible("#internet-now"), false);
  // Hosting again without the option: nothing of the last room's mapping shows.
  await page.evaluate(() => { window.__responses.host_server = { ...window.__responses.host_server, internet: null }; });
  await page.uncheck("#host-internet");
  await page.click("#host-submit");
  await page.waitForSelector("#host-panel:not([hidden])");
  assert.equal(await page.isVisible("#internet-now"), false);
  assert.deepEqual(page.errors, []);
});

test("the internet panel fits 360 px with AA contrast in both themes", async () => {
  for (const colorScheme of ["light", "dark"]) {
    const page = await openPage({ colorScheme, viewport: { width: 360, height: 740 } });
    await hostWithInternet(page);
    await emitTo(page, "internet-status", { ...base, state: "unreachable", reason: "no_answer" });
    const spills = await page.evaluate(() => {
      const box = document.getElementById("internet-now");
      return box.scrollWidth > box.clientWidth || box.getBoundingClientRect().right > window.innerWidth;
    });
    assert.equal(spills, false, `${colorScheme}: nothing spills`);
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} contrast`);
    await emitTo(page, "internet-status", { ...reachable, check: "could_not_confirm" });
    assert.deepEqual(await contrastProblems(page), [], `${colorScheme} contrast, reachable`);
    await page.screenshot({ path: path.join(shots, `internet-360-${colorScheme}.png`), fullPage: true });
    assert.deepEqual(page.errors, []);
  }
});
