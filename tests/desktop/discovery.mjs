// Desktop end-to-end test of rooms on this network (#15): the real app under Xvfb, driven
// through tauri-driver and WebKitWebDriver, all inside the netlab namespace lanB, with real
// rooms announced from lanA: a tertulia-server --announce, and a room published by an
// independent DNS-SD stack (python-zeroconf, tests/netlab/netlab.py) beside a real server.
// The Join form lists both, live; picking the Tertulia one fills the form, the app joins it
// over the lab's LAN; a room whose server stops (SIGTERM: goodbye packets) leaves the list;
// and a room the app hosts is seen from lanA by python-zeroconf, and withdrawn when hosting
// stops. Screenshots go to artifacts/desktop/ (discovery-*.png); the Join form listing the
// rooms is the README's docs/join-discovered.png (copied there with UPDATE_README_SCREENSHOT=1).
//
// mDNS must never reach the machine's real network, so nothing here runs in the host's
// namespace: the script re-runs itself with `ip netns exec lanB`. Xvfb, D-Bus and
// tauri-driver are started in there too (Xvfb's /tmp/.X11-unix socket is a file, not
// bound to a network namespace). Where the lab cannot run (not root, no ip netns, no
// python3-zeroconf) the test says SKIPPED and why, and fails instead with NETLAB_REQUIRED=1.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { createInterface } from "node:readline";
import { connect } from "node:net";
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
const PASS = "discovery end to end passphrase";
// lanA's address in the lab (tests/netlab/netlab.sh: fixed addresses).
const LAN_A = "10.77.0.2";
// tests/src/netlab.rs's locks: holding `users` shared keeps a Rust lab test that finishes
// meanwhile from taking the lab down under this one; `admin` serialises bringing it up. This
// script never takes the lab down (it lives in its own namespaces only).
const LOCK_USERS = "/run/tertulia-netlab.users";
const LOCK_ADMIN = "/run/tertulia-netlab.admin";
const children = [];
const tempDirs = [];

function log(msg) { console.log(`[desktop-discovery] ${msg}`); }

// Why the lab cannot run here, or null.
function labProblem() {
  if (process.getuid?.() !== 0) return "needs root for network namespaces";
  for (const file of [NETLAB, NETLAB_PY]) if (!existsSync(file)) return `${path.relative(root, file)} is missing`;
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

// A process whose stdout is JSON lines, waited on by predicate.
function jsonLines(child, name) {
  const events = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    let event;
    try { event = JSON.parse(line); } catch (_) { return; }
    events.push(event);
    for (const w of [...waiters]) if (w.pred(event)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(event); }
  });
  return {
    events,
    wait(what, pred, ms = 30_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name}: timed out waiting for ${what}; saw ${JSON.stringify(events)}`)), ms);
        waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e); } });
      });
    },
  };
}

async function waitPort(host, port, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, host, () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${host}:${port} never opened`);
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
  // WebKitGTK paints asynchronously under Xvfb, and a new window's first text only once its
  // fonts are in: wait for them, then let the last DOM changes reach the screen.
  await session.waitFor("the fonts", "return document.fonts.status === 'loaded';");
  await new Promise((r) => setTimeout(r, 1500));
  step += 1;
  const file = path.join(shots, `discovery-${String(step).padStart(2, "0")}-${name}.png`);
  writeFileSync(file, await session.screenshot());
  log(`screenshot ${path.relative(root, file)}`);
  return file;
}

// The names listed in the Join form, as the window shows them.
const LISTED = "return [...document.querySelectorAll('#discovered-list .discovered-name')].map((n) => n.textContent);";
const listed = (session) => session.run(LISTED);
const waitListed = (session, what, pred) => session.waitFor(what, `const names = (() => { ${LISTED} })(); return (${pred})(names) ? names : null;`);

async function inside() {
  for (const b of ["tertulia-app", "tertulia-server"]) {
    if (!existsSync(bin(b))) throw new Error(`${bin(b)} is missing: build first (make test does)`);
  }
  mkdirSync(shots, { recursive: true });
  const home = mkdtempSync(path.join(tmpdir(), "tertulia-discovery-"));
  tempDirs.push(home);
  // Names unique to this run (every room on the lab's LAN is listed), except for the
  // README's picture.
  const token = Math.random().toString(36).slice(2, 8);
  const tag = process.env.UPDATE_README_SCREENSHOT ? "" : ` ${token}`;
  const salaName = `Sala de Ana${tag}`;
  const clubName = `Club de lectura${tag}`;
  const [salaPort, clubPort] = [20_000 + Math.floor(Math.random() * 20_000), 40_000 + Math.floor(Math.random() * 20_000)];

  // In lanA: a room announced by tertulia-server itself, and a real room announced by
  // python-zeroconf (another DNS-SD stack) with the TXT records of docs/PROTOCOL.md §14.
  const sala = start("ip", ["netns", "exec", "lanA", bin("tertulia-server"), "--listen", `${LAN_A}:${salaPort}`, "--in-memory",
    "--host-key", path.join(home, "sala.key"), "--announce", "--room-name", salaName], { TERTULIA_PASSPHRASE: PASS });
  const salaExit = new Promise((resolve) => sala.on("exit", (code, signal) => resolve({ code, signal })));
  start("ip", ["netns", "exec", "lanA", bin("tertulia-server"), "--listen", `${LAN_A}:${clubPort}`, "--in-memory",
    "--host-key", path.join(home, "club.key")], { TERTULIA_PASSPHRASE: PASS });
  const club = start("ip", ["netns", "exec", "lanA", PYTHON, NETLAB_PY, "mdns-publish", "--name", `club-${token}`, "--host", `luis-pc-${token}`,
    "--address", LAN_A, "--port", String(clubPort), "--txt", `room=${clubName}`, "--txt", "v=2", "--txt", "fp=0d44-a1c9-77e2-3f2a-91c0-5b7e", "--lifetime", "240"]);
  const clubEvents = jsonLines(club, "python publisher");
  await clubEvents.wait("the python room registered", (e) => e.event === "registered");

  // The app, in lanB.
  const display = `:${500 + Math.floor(Math.random() * 400)}`;
  start("Xvfb", [display, "-screen", "0", "1100x760x24", "-nolisten", "tcp"]);
  await new Promise((r) => setTimeout(r, 800));
  const bus = start("dbus-daemon", ["--session", "--nofork", "--print-address"]);
  const busAddress = await new Promise((resolve, reject) => {
    bus.stdout.once("data", (d) => resolve(String(d).trim().split("\n")[0]));
    bus.on("exit", (code) => reject(new Error(`dbus-daemon exited ${code}`)));
  });
  const wdPort = 4444 + Math.floor(Math.random() * 1000);
  start(process.env.TAURI_DRIVER || "tauri-driver", ["--port", String(wdPort), "--native-port", String(wdPort + 1)], {
    DISPLAY: display,
    DBUS_SESSION_BUS_ADDRESS: busAddress,
    XDG_DATA_HOME: path.join(home, "data"),
    XDG_CONFIG_HOME: path.join(home, "config"),
    XDG_CACHE_HOME: path.join(home, "cache"),
    LANGUAGE: "en_US:en",
    LANG: "en_US.UTF-8",
  });
  const base = `http://127.0.0.1:${wdPort}`;
  await waitHttp(`${base}/status`, 20_000);
  const session = await Session.start(base, bin("tertulia-app"));
  try {
    await session.waitFor("the start screen", "return !document.querySelector('#start').hidden;");
    // 1. Both rooms appear by themselves.
    await waitListed(session, "both rooms listed", `(n) => n.includes(${JSON.stringify(salaName)}) && n.includes(${JSON.stringify(clubName)})`);
    const item = await session.run(`const li = [...document.querySelectorAll('#discovered-list li')].find((l) => l.textContent.includes(arguments[0])); return li && li.textContent;`, salaName);
    if (!item.includes(`${LAN_A}:${salaPort}`)) throw new Error(`the Tertulia room's address is not shown: ${item}`);
    await session.fill("#join-nick", "bea");
    const readme = await shot(session, "rooms-on-this-network");
    // As run.mjs does for docs/screenshot.png: the README's picture only when asked.
    if (process.env.UPDATE_README_SCREENSHOT) copyFileSync(readme, path.join(root, "docs/join-discovered.png"));

    // 2. Picking one fills address and port and asks for the passphrase; the app joins it.
    await session.run(`[...document.querySelectorAll('#discovered-list li')].find((l) => l.textContent.includes(arguments[0])).querySelector('button').click();`, salaName);
    const form = await session.run("return [document.querySelector('#join-host').value, document.querySelector('#join-port').value, document.activeElement.id];");
    if (JSON.stringify(form) !== JSON.stringify([LAN_A, String(salaPort), "join-pass"])) throw new Error(`picking the room filled ${JSON.stringify(form)}`);
    await session.type("#join-pass", PASS);
    await session.click("#join-submit");
    await session.waitFor("joined the discovered room", "return document.querySelector('#conn-state').textContent.includes('Connected as bea');");
    await shot(session, "joined");
    await session.click("#leave");
    await session.waitFor("the start screen again", "return !document.querySelector('#start').hidden;");
    await waitListed(session, "the rooms listed again after leaving", `(n) => n.includes(${JSON.stringify(salaName)})`);

    // 3. A server stopped with SIGTERM withdraws its room: it leaves the list, live.
    sala.kill("SIGTERM");
    const exit = await salaExit;
    log(`tertulia-server stopped: ${JSON.stringify(exit)}`);
    await waitListed(session, "the stopped room gone", `(n) => !n.includes(${JSON.stringify(salaName)}) && n.includes(${JSON.stringify(clubName)})`);
    await shot(session, "room-gone");

    // 4. The app hosts: python-zeroconf in lanA sees the room's name, port and identity, and
    // sees it go when hosting stops.
    const browser = start("ip", ["netns", "exec", "lanA", PYTHON, NETLAB_PY, "mdns-browse", "--lifetime", "120"]);
    const seen = jsonLines(browser, "python browser");
    await seen.wait("browsing", (e) => e.event === "browsing");
    const hostName = `Bea's room ${token}`;
    const hostPort = 20_000 + Math.floor(Math.random() * 40_000);
    await session.fill("#host-nick", "bea");
    await session.fill("#host-room-name", hostName);
    await session.fill("#host-port", String(hostPort));
    await session.fill("#host-pass", PASS);
    await session.click("#host-reach-all");
    await session.click("#host-submit");
    await session.waitFor("hosting, shown on the network", "return document.querySelector('#host-announced').textContent.includes(arguments[0]);", hostName);
    const fingerprint = await session.text("#copy-fingerprint");
    const added = await seen.wait("the app's room", (e) => e.event === "added" && e.txt?.room === hostName);
    log(`python-zeroconf in lanA: ${JSON.stringify(added)}`);
    if (added.port !== hostPort || added.txt.fp !== fingerprint || !added.addresses.includes("10.77.0.3")) {
      throw new Error(`the app's announcement is not the room: ${JSON.stringify(added)} (port ${hostPort}, identity ${fingerprint})`);
    }
    if (JSON.stringify(added.txt).includes(PASS)) throw new Error("the passphrase is in the announcement");
    await shot(session, "hosting-announced");
    await session.click("#stop-hosting");
    await session.waitFor("the confirm dialog", "return document.querySelector('#confirm-dialog').open;");
    await session.click("#confirm-ok");
    await session.waitFor("the start screen after hosting", "return !document.querySelector('#start').hidden;");
    await seen.wait("the app's room withdrawn", (e) => e.event === "removed" && e.name === added.name);
    log("the app's room was withdrawn when hosting stopped");
  } finally {
    await session.close();
  }
}

function cleanup() {
  for (const c of children.reverse()) { try { c.kill("SIGTERM"); } catch (_) { /* gone */ } }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}

function outside() {
  const problem = labProblem();
  if (problem) {
    if (process.env.NETLAB_REQUIRED === "1") { console.error(`[desktop-discovery] FAILED: NETLAB_REQUIRED=1 but ${problem}`); process.exit(1); }
    log(`SKIPPED: ${problem}`);
    process.exit(0);
  }
  // `flock -s` holds the shared lock for as long as the test inside lanB runs.
  const child = spawn("flock", ["--close", "-s", LOCK_USERS, "ip", "netns", "exec", "lanB", process.execPath, fileURLToPath(import.meta.url), "--inside-lanB"], { stdio: "inherit" });
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

if (process.argv.includes("--inside-lanB")) {
  const timeout = setTimeout(() => { console.error("[desktop-discovery] overall timeout"); cleanup(); process.exit(1); }, 240_000);
  inside()
    .then(() => { clearTimeout(timeout); log("passed"); cleanup(); process.exit(0); })
    .catch((e) => { console.error("[desktop-discovery] FAILED:", e.message); clearTimeout(timeout); cleanup(); process.exit(1); });
} else {
  outside();
}
