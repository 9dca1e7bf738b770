// Desktop end-to-end test of "Reachable from the internet" (#15): the real app under Xvfb,
// driven through tauri-driver and WebKitWebDriver, inside the netlab namespace lanA (10.77.0.2),
// whose router (10.77.0.1 / 203.0.113.1) runs the real miniupnpd; a friend on the internet is a
// tertulia-chat in the `wan` namespace (203.0.113.2).
//
// 1. The app hosts with "Reachable from the internet" checked: the window says where (read from
//    the screen) and offers the internet invite code; the router lists the mapping (upnpc).
// 2. The WAN member joins with the code the copy button copies (pasted back from the clipboard),
//    shows in the online list, and a message each way is exactly one bubble / one line.
// 3. Stop hosting (confirm dialog): the router no longer lists the mapping and the WAN member
//    can no longer connect (it gives up; the router refuses the port even with a listener there).
// 4. A router that does not answer (this test's own nft rule in the router namespace drops
//    lanA's UPnP, PCP and NAT-PMP, for this step only): the window, in Spanish, dark, at 360 px,
//    gives the advice to forward the port to 10.77.0.2 by hand or use a VPN.
// Screenshots go to artifacts/desktop/internet-*.png.
//
// As discovery.mjs: the script re-runs itself with `ip netns exec lanA`, under the lab's shared
// lock; Xvfb, D-Bus and tauri-driver are started in there. Where the lab cannot run (not root,
// no ip netns, no miniupnpc) it says SKIPPED and why, and fails instead with NETLAB_REQUIRED=1.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Session } from "./webdriver.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const bin = (name) => path.join(root, "target/debug", name);
const shots = path.join(root, "artifacts/desktop");
const NETLAB = path.join(root, "tests/netlab/netlab.sh");
const NETLAB_PY = path.join(root, "tests/netlab/netlab.py");
const PYTHON = process.env.NETLAB_PYTHON || "/usr/bin/python3";
const PASS = "internet end to end passphrase";
// The lab's fixed addresses (tests/netlab/netlab.sh).
const LAN_A = "10.77.0.2";
const ROUTER_WAN = "203.0.113.1";
// The router's UPnP description: upnpc -u skips its 2 s discovery (netlab_reach.rs upnp_root).
const UPNP_ROOT = "http://10.77.0.1:5000/rootDesc.xml";
// tests/src/netlab.rs's locks (see discovery.mjs). `admin` is also held while step 4's rule
// makes the router ignore lanA, so that no lab test binary starts its trials meanwhile.
const LOCK_USERS = "/run/tertulia-netlab.users";
const LOCK_ADMIN = "/run/tertulia-netlab.admin";
// This run's own nft table in the router namespace (step 4); removed in every exit path.
const DEAF_TABLE = `tertulia_desk_deaf_${process.pid}`;
const ENTER = "\uE007";
const CONTROL = "\uE009";
const children = [];
const tempDirs = [];
let deafInstalled = false;

function log(msg) { console.log(`[desktop-internet] ${msg}`); }

const onPath = (program) => spawnSync("sh", ["-c", 'command -v "$1"', "sh", program], { stdio: "ignore" }).status === 0;

// Why the lab cannot run here, or null.
function labProblem() {
  if (process.getuid?.() !== 0) return "needs root for network namespaces";
  for (const file of [NETLAB, NETLAB_PY]) if (!existsSync(file)) return `${path.relative(root, file)} is missing`;
  for (const program of ["ip", "nft", "miniupnpd", "upnpc", "flock"]) {
    if (!onPath(program)) return `${program} is missing (make deps-test installs the lab's packages)`;
  }
  const zeroconf = spawnSync(PYTHON, ["-c", "import zeroconf"], { stdio: "ignore" });
  if (zeroconf.status !== 0) return `${PYTHON} cannot import zeroconf (apt-get install python3-zeroconf)`;
  // Brought up (idempotent) under the lock the Rust lab tests use (tests/src/netlab.rs).
  const up = spawnSync("flock", ["--close", LOCK_ADMIN, "bash", NETLAB, "up"], { encoding: "utf8" });
  if (up.status !== 0) return `the lab does not come up: ${(up.stderr || up.stdout || "").trim().slice(-400)}`;
  return null;
}

function start(cmd, args, env = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  child.stderr.on("data", (d) => { if (process.env.E2E_VERBOSE) process.stderr.write(d); });
  return child;
}

// A `tertulia-chat --json` in the `wan` namespace, joining with `invite`: its JSON lines, its
// exit code.
function wanMember(invite, nick, home) {
  const child = start("ip", ["netns", "exec", "wan", bin("tertulia-chat"), invite, "--nick", nick, "--json",
    "--give-up-after", "3", "--known-hosts", path.join(home, `known_hosts-${nick}`),
    "--download-dir", mkdtempSync(path.join(home, `downloads-${nick}-`))], { XDG_DATA_HOME: path.join(home, `data-${nick}`) });
  const lines = [];
  const events = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    let event;
    try { event = JSON.parse(line.replace(/"(file_id|id)":(\d{16,})/g, '"$1":"$2"')); } catch (_) { return; }
    events.push(event);
    for (const w of [...waiters]) if (w.pred(event)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(event); }
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
  return {
    lines, events, exited,
    say: (text) => child.stdin.write(text + "\n"),
    wait(what, pred, ms = 30_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${nick} in wan: timed out waiting for ${what}; saw ${lines.join("\n")}`)), ms);
        waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e); } });
      });
    },
  };
}

// The router's port mappings as `upnpc -l` lists them (from lanA, where this runs).
function upnpList() {
  const out = spawnSync("upnpc", ["-i", "-u", UPNP_ROOT, "-l"], { encoding: "utf8", timeout: 20_000 });
  return out.stdout || "";
}
// upnpc pads the port to a width: "TCP  5711->…", "TCP 24531->…".
// A mapping this run's app left on the shared router when a step failed (the app is ended
// without stopping hosting then): deleted, so the router does not forward a dead port for an hour.
function unmap(port) {
  if (!upnpList().includes(`${port}->`)) return;
  spawnSync("upnpc", ["-i", "-u", UPNP_ROOT, "-d", String(port), "TCP"], { stdio: "ignore", timeout: 20_000 });
  log(`router: deleted the mapping of port ${port} left by a failed step`);
}
const mapped = (listing, port) => new RegExp(`TCP +${port}->${LAN_A.replaceAll(".", "\\.")}:${port} +'Tertulia'`).test(listing);

// What a TCP client in `wan` gets at the router's external address (netlab.py probe-tcp).
function probeFromWan(port) {
  const out = spawnSync("ip", ["netns", "exec", "wan", PYTHON, NETLAB_PY, "probe-tcp", "--host", ROUTER_WAN, "--port", String(port)], { encoding: "utf8", timeout: 20_000 });
  const last = (out.stdout || "").trim().split("\n").pop();
  try { return JSON.parse(last); } catch (_) { throw new Error(`probe-tcp printed ${JSON.stringify(out.stdout)} ${out.stderr}`); }
}

async function until(what, fn, ms = 20_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function waitHttp(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try { const r = await fetch(url, { signal: AbortSignal.timeout(1000) }); if (r.ok) return; } catch (_) { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

let step = 0;
async function shot(session, name) {
  // As discovery.mjs: the fonts first, then let the last DOM changes reach the screen.
  await session.waitFor("the fonts", "return document.fonts.status === 'loaded';");
  await new Promise((r) => setTimeout(r, 1500));
  // A new window's first screenshot can be a stale frame (the start screen, without its text,
  // while the chat screen shows): one to throw away first.
  await session.screenshot();
  await new Promise((r) => setTimeout(r, 500));
  step += 1;
  const file = path.join(shots, `internet-${String(step).padStart(2, "0")}-${name}.png`);
  writeFileSync(file, await session.screenshot());
  log(`screenshot ${path.relative(root, file)}`);
  return file;
}

// Exactly how many bubbles of the conversation show `text`.
const BUBBLES = "return [...document.querySelectorAll('#log .msg .text')].filter((n) => n.textContent === arguments[0]).length;";
// Nothing on the page is wider than the window, and the internet box stays inside the panel.
const FITS = `const w = window.innerWidth;
  if (document.documentElement.scrollWidth > w) return "the page scrolls sideways: " + document.documentElement.scrollWidth + " > " + w;
  const panel = document.querySelector('#host-panel').getBoundingClientRect();
  for (const n of document.querySelectorAll('#internet-now, #internet-now *, #host-panel button')) {
    if (n.hidden || n.offsetParent === null) continue;
    const r = n.getBoundingClientRect();
    if (r.left < panel.left - 1 || r.right > panel.right + 1 || r.right > w) return (n.id || n.className) + " overflows: " + JSON.stringify([r.left, r.right, panel.left, panel.right, w]);
    if (n.scrollWidth > n.clientWidth + 1 && getComputedStyle(n).overflowX !== 'visible') return (n.id || n.className) + " clips its text";
  }
  return null;`;

// Xvfb, a private D-Bus session bus and tauri-driver, then a WebDriver session on the app, with
// `env` (language, theme) for the app.
async function app(home, env) {
  const display = `:${500 + Math.floor(Math.random() * 400)}`;
  start("Xvfb", [display, "-screen", "0", "1100x760x24", "-nolisten", "tcp"]);
  await new Promise((r) => setTimeout(r, 800));
  const bus = start("dbus-daemon", ["--session", "--nofork", "--print-address"]);
  const busAddress = await new Promise((resolve, reject) => {
    bus.stdout.once("data", (d) => resolve(String(d).trim().split("\n")[0]));
    bus.on("exit", (code) => reject(new Error(`dbus-daemon exited ${code}`)));
  });
  const wdPort = 4444 + Math.floor(Math.random() * 1000);
  const driver = start(process.env.TAURI_DRIVER || "tauri-driver", ["--port", String(wdPort), "--native-port", String(wdPort + 1)], {
    DISPLAY: display,
    DBUS_SESSION_BUS_ADDRESS: busAddress,
    XDG_DATA_HOME: path.join(home, "data"),
    XDG_CONFIG_HOME: path.join(home, "config"),
    XDG_CACHE_HOME: path.join(home, "cache"),
    ...env,
  });
  const base = `http://127.0.0.1:${wdPort}`;
  await waitHttp(`${base}/status`, 20_000);
  const session = await Session.start(base, bin("tertulia-app"));
  await session.waitFor("the start screen", "return !!document.querySelector('#host-form') && !document.querySelector('#start').hidden;");
  return { session, driver };
}

async function host(session, { nick, port, reach }) {
  await session.fill("#host-nick", nick);
  await session.fill("#host-port", String(port));
  await session.fill("#host-pass", PASS);
  await session.click(reach);
  await session.click("#host-internet");
  if (!(await session.run("return document.querySelector('#host-internet').checked;"))) throw new Error("the internet option did not check");
  await session.click("#host-submit");
  await session.waitFor("hosting", "return !document.querySelector('#host-panel').hidden && !document.querySelector('#internet-now').hidden;");
}

async function stopHosting(session) {
  await session.click("#stop-hosting");
  await session.waitFor("the confirm dialog", "return document.querySelector('#confirm-dialog').open;");
  await shot(session, "stop-confirm");
  await session.click("#confirm-ok");
  await session.waitFor("the start screen after hosting", "return !document.querySelector('#start').hidden;");
}

// Step 4's router: drops lanA's SSDP, UPnP HTTP and NAT-PMP/PCP, as netlab_reach.rs's
// DeafRouterForLanB does for lanB.
function installDeafRouter() {
  const rules = `table inet ${DEAF_TABLE} {
  chain input {
    type filter hook input priority -10; policy accept;
    ip saddr ${LAN_A} udp dport { 1900, 5351 } drop
    ip saddr ${LAN_A} tcp dport 5000 drop
  }
}
`;
  deafInstalled = true;
  const out = spawnSync("ip", ["netns", "exec", "router", "nft", "-f", "-"], { input: rules, encoding: "utf8" });
  if (out.status !== 0) throw new Error(`nft -f in router: ${out.stderr}`);
  log(`router: nft table ${DEAF_TABLE} drops lanA's UPnP, PCP and NAT-PMP`);
}

function removeDeafRouter() {
  if (!deafInstalled) return;
  const out = spawnSync("ip", ["netns", "exec", "router", "nft", "delete", "table", "inet", DEAF_TABLE], { encoding: "utf8" });
  if (out.status === 0) log(`router: nft table ${DEAF_TABLE} removed`);
  else if (!/No such file|does not exist/i.test(out.stderr || "")) console.error(`[desktop-internet] could not remove nft table ${DEAF_TABLE}: ${out.stderr}`);
  deafInstalled = false;
}

// Holds `admin` (exclusive) until release() is called: no lab test binary starts meanwhile.
async function holdAdmin() {
  const holder = start("flock", ["--close", LOCK_ADMIN, "sh", "-c", "echo locked; exec cat"]);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${LOCK_ADMIN} not taken in 60 s`)), 60_000);
    holder.stdout.once("data", () => { clearTimeout(timer); resolve(); });
  });
  return { release: () => holder.stdin.end() };
}

async function reachable(home) {
  const port = 20_000 + Math.floor(Math.random() * 40_000);
  const token = Math.random().toString(36).slice(2, 8);
  if (upnpList().includes(`${port}->`)) throw new Error(`port ${port} is already mapped on the router`);
  const { session, driver } = await app(home, { LANGUAGE: "en_US:en", LANG: "en_US.UTF-8" });
  try {
    // 1. Hosting on this network, reachable from the internet: where, from the screen.
    await host(session, { nick: "ana", port, reach: "#host-reach-network" });
    const status = await session.waitFor("reachable from the internet",
      "const s = document.querySelector('#internet-status').textContent; return /^Reachable from the internet at /.test(s) && s;");
    const shown = /^Reachable from the internet at (\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(status);
    if (!shown || shown[1] !== ROUTER_WAN || shown[2] !== String(port)) throw new Error(`the window says ${JSON.stringify(status)}, not ${ROUTER_WAN}:${port}`);
    const button = await session.run("const b = document.querySelector('#copy-internet-invite'); const r = b.getBoundingClientRect(); return !b.hidden && r.width > 0 && r.height > 0 && b.textContent;");
    if (button !== "Copy the internet invite code") throw new Error(`the internet invite button: ${JSON.stringify(button)}`);
    await session.waitFor("the self-check's finding", "return document.querySelector('#internet-more').textContent.startsWith('Could not confirm it from inside this network');");
    const listed = upnpList();
    if (!mapped(listed, port)) throw new Error(`the router does not list ${port}->${LAN_A}:${port} 'Tertulia':\n${listed}`);
    log(`the window: ${status}; the router lists ${port}->${LAN_A}:${port} 'Tertulia'`);
    const fits = await session.run(FITS);
    if (fits) throw new Error(`hosting, reachable: ${fits}`);
    await shot(session, "reachable");

    // 2. What the copy button copies, pasted back from the clipboard into the composer.
    await session.click("#copy-internet-invite");
    await session.waitFor("the copied notice", "return document.querySelector('#copy-status').textContent === 'Internet invite code copied';");
    await session.click("#message");
    await session.run("document.querySelector('#message').value = ''; return true;");
    await session.actions([{ type: "key", id: "keyboard", actions: [
      { type: "keyDown", value: CONTROL }, { type: "keyDown", value: "v" }, { type: "keyUp", value: "v" }, { type: "keyUp", value: CONTROL }] }]);
    const invite = await session.waitFor("the pasted invite code", "return document.querySelector('#message').value;");
    await session.run("const m = document.querySelector('#message'); m.value = ''; m.dispatchEvent(new Event('input')); return true;");
    const fingerprint = await session.text("#copy-fingerprint");
    const expected = `tertulia://${ROUTER_WAN}:${port}/${fingerprint}#${encodeURIComponent(PASS)}`;
    if (invite !== expected) throw new Error(`the copy button copied ${JSON.stringify(invite)}, not ${expected}`);
    log(`copied: ${invite.replace(/#.*/, "#…")}`);

    const remota = wanMember(invite, "remota", home);
    await remota.wait("connected through the router", (e) => e.type === "connected");
    await remota.wait("the online list", (e) => e.type === "online" && e.members.includes("ana") && e.members.includes("remota"));
    await session.waitFor("remota in the app's online list", "return [...document.querySelectorAll('#online li')].some((n) => n.textContent.includes('remota'));");
    const fromWan = `hola desde fuera ${token}`;
    remota.say(fromWan);
    await session.waitFor("the WAN member's bubble", `${BUBBLES}`, fromWan);
    const fromApp = `hola remota, desde la app ${token}`;
    await session.click("#message");
    await session.type("#message", fromApp);
    await session.type("#message", ENTER);
    await remota.wait("the app's message", (e) => e.type === "message" && e.from === "ana" && e.text === fromApp);
    await session.waitFor("own message acked", "return [...document.querySelectorAll('#log .msg.own')].some((n) => !n.classList.contains('pending') && n.textContent.includes(arguments[0]));", fromApp);
    await remota.wait("its own message acked", (e) => e.type === "acked");
    // Time for a duplicate to arrive, then count: once on each side.
    await new Promise((r) => setTimeout(r, 2000));
    const counts = {
      wanInApp: await session.run(BUBBLES, fromWan),
      appInApp: await session.run(BUBBLES, fromApp),
      appOnCli: remota.events.filter((e) => e.type === "message" && e.text === fromApp).length,
      wanOnCli: remota.events.filter((e) => e.type === "message" && e.text === fromWan).length,
    };
    if (counts.wanInApp !== 1 || counts.appInApp !== 1 || counts.appOnCli !== 1 || counts.wanOnCli > 1) {
      throw new Error(`each message once on each side: ${JSON.stringify(counts)}\n${remota.lines.join("\n")}`);
    }
    log(`messages each way, once each: ${JSON.stringify(counts)}`);
    await shot(session, "wan-member-chats");

    // 3. Stop hosting: the mapping goes from the router, and the WAN can no longer connect.
    await stopHosting(session);
    await until("the mapping gone from the router", () => !upnpList().includes(`${port}->`), 20_000);
    const code = await Promise.race([remota.exited, new Promise((r) => setTimeout(() => r("still running"), 90_000))]);
    const reconnected = remota.events.filter((e) => e.type === "connected").length;
    if (code !== 5 || reconnected !== 1) throw new Error(`the WAN member after hosting stopped: exit ${code}, connected ${reconnected} times (5 and 1 expected)\n${remota.lines.join("\n")}`);
    // Something listens on lanA at the port again: the router still refuses it from the WAN.
    const listener = start(PYTHON, [NETLAB_PY, "serve-token", "--bind", LAN_A, "--port", String(port), "--token", `lanA-${token}`, "--lifetime", "30"]);
    await until("the lanA listener", () => new Promise((resolve) => {
      const probe = spawnSync(PYTHON, [NETLAB_PY, "probe-tcp", "--host", LAN_A, "--port", String(port)], { encoding: "utf8" });
      resolve((probe.stdout || "").includes(`lanA-${token}`));
    }), 10_000);
    const probe = probeFromWan(port);
    listener.kill("SIGTERM");
    if (probe.event !== "failed") throw new Error(`the WAN still reaches ${ROUTER_WAN}:${port} after hosting stopped: ${JSON.stringify(probe)}`);
    log(`after stopping: not listed, the WAN member gave up (exit 5), the WAN is refused (${probe.error})`);
    await shot(session, "stopped");
  } finally {
    await session.close();
    driver.kill("SIGTERM");
    unmap(port);
  }
}

async function routerSilent(home) {
  const port = 20_000 + Math.floor(Math.random() * 40_000);
  // Spanish from the system (LANGUAGE=es), the dark theme, a phone's width. WebKitGTK takes
  // the window's language from the C locale, so es_ES.UTF-8 must exist: compiled into this
  // run's own directory (LOCPATH) where the machine has not generated it.
  const locales = { LANGUAGE: "es", LANG: "es_ES.UTF-8" };
  if (spawnSync("locale", ["-a"], { encoding: "utf8" }).stdout?.split("\n").every((l) => !/^es_ES\.utf-?8$/i.test(l))) {
    const dir = path.join(home, "locale");
    mkdirSync(dir, { recursive: true });
    const made = spawnSync("localedef", ["-i", "es_ES", "-f", "UTF-8", path.join(dir, "es_ES.UTF-8")], { encoding: "utf8" });
    if (made.status !== 0) throw new Error(`localedef es_ES.UTF-8: ${made.stderr}`);
    locales.LOCPATH = dir;
  }
  const { session, driver } = await app(home, { ...locales, GTK_THEME: "Adwaita:dark" });
  let admin = null;
  try {
    const dark = await session.run("return matchMedia('(prefers-color-scheme: dark)').matches;");
    if (!dark) throw new Error("the window is not in the dark theme (GTK_THEME=Adwaita:dark)");
    const rect = await session.windowRect();
    await session.setWindowRect({ width: 360, height: rect.height });
    await session.waitFor("360 px wide", "return window.innerWidth <= 360;");
    await session.waitFor("the start screen in Spanish", "return (document.documentElement.lang === 'es' && document.querySelector('#host-submit').textContent === 'Abrir la sala') || (Date.now() > arguments[0] && JSON.stringify([navigator.languages, document.documentElement.lang]).replace(/^/, 'X'));", Date.now() + 15000).then((r) => { if (typeof r === "string" && r.startsWith("X")) throw new Error(`not in Spanish: ${r}`); });

    // 4. The router ignores lanA for this step only.
    admin = await holdAdmin();
    installDeafRouter();
    await host(session, { nick: "ana", port, reach: "#host-reach-all" });
    const advice = `No accesible desde internet: el router no respondió a UPnP, PCP ni NAT-PMP. Redirige a mano el puerto ${port} a ${LAN_A}, o usa una VPN como Tailscale.`;
    const said = await session.waitFor("the advice", "const s = document.querySelector('#internet-status').textContent; return !s.startsWith('Pidiendo') && s;");
    removeDeafRouter();
    admin.release();
    admin = null;
    if (said !== advice) throw new Error(`the window says ${JSON.stringify(said)}, not ${JSON.stringify(advice)}`);
    const more = await session.text("#internet-more");
    if (more !== "La sala sigue funcionando en esta red.") throw new Error(`under the advice: ${JSON.stringify(more)}`);
    if (!(await session.run("return document.querySelector('#copy-internet-invite').hidden;"))) throw new Error("an internet invite code is offered without a mapping");
    if (upnpList().includes(`${port}->`)) throw new Error(`port ${port} is mapped although the router did not answer`);
    log(`the window (es, dark, 360 px): ${said}`);
    const fits = await session.run(FITS);
    await session.run("document.querySelector('#internet-now').scrollIntoView({ block: 'center' }); return true;");
    await shot(session, "router-silent-es-360-dark");
    if (fits) throw new Error(`at 360 px: ${fits}`);
    await stopHosting(session);
  } finally {
    removeDeafRouter();
    admin?.release();
    await session.close();
    driver.kill("SIGTERM");
    unmap(port);
  }
}

async function inside() {
  for (const b of ["tertulia-app", "tertulia-chat"]) {
    if (!existsSync(bin(b))) throw new Error(`${bin(b)} is missing: build first (make test does)`);
  }
  mkdirSync(shots, { recursive: true });
  const home = mkdtempSync(path.join(tmpdir(), "tertulia-internet-"));
  tempDirs.push(home);
  await reachable(path.join(home, "en"));
  await routerSilent(path.join(home, "es"));
}

function cleanup() {
  removeDeafRouter();
  for (const c of children.reverse()) { try { c.kill("SIGTERM"); } catch (_) { /* gone */ } }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

function outside() {
  const problem = labProblem();
  if (problem) {
    if (process.env.NETLAB_REQUIRED === "1") { console.error(`[desktop-internet] FAILED: NETLAB_REQUIRED=1 but ${problem}`); process.exit(1); }
    log(`SKIPPED: ${problem}`);
    process.exit(0);
  }
  // `flock -s` holds the shared lock for as long as the test inside lanA runs.
  const child = spawn("flock", ["--close", "-s", LOCK_USERS, "ip", "netns", "exec", "lanA", process.execPath, fileURLToPath(import.meta.url), "--inside-lanA"], { stdio: "inherit" });
  // Interrupted: the child gets the signal too (same process group) and cleans up.
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => {});
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

if (process.argv.includes("--inside-lanA")) {
  // The router's rule goes in every exit path: failure, overall timeout, a signal.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => { console.error(`[desktop-internet] ${sig}`); cleanup(); process.exit(1); });
  process.on("exit", removeDeafRouter);
  const timeout = setTimeout(() => { console.error("[desktop-internet] overall timeout"); cleanup(); process.exit(1); }, 300_000);
  inside()
    .then(() => { clearTimeout(timeout); log("passed"); cleanup(); process.exit(0); })
    .catch((e) => { console.error("[desktop-internet] FAILED:", e.message); clearTimeout(timeout); cleanup(); process.exit(1); });
} else {
  outside();
}
