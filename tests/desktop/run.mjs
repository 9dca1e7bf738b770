// Desktop end-to-end test: the real Tertulia app under Xvfb, driven through tauri-driver and
// WebKitWebDriver, talking to real tertulia-chat / tertulia-server processes on 127.0.0.1.
// Screenshots of every step go to artifacts/desktop/.
import { spawn } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import { deflateSync, crc32 } from "node:zlib";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync, copyFileSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Session } from "./webdriver.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = (name) => path.join(root, "target/debug", name);
const shots = path.join(root, "artifacts/desktop");
mkdirSync(shots, { recursive: true });
const PASS = "desktop end to end passphrase";
const ESCAPE = "\uE00C"; // the WebDriver key code
const children = [];
const tempDirs = [];
let step = 0;
// Host identities: tertulia-server keeps its identity in --host-key (default
// DATA_DIR/host.key) and tertulia-chat pins hosts in --known-hosts. The terminal clients'
// pins go to a throw-away directory (never the user's), and a server restarted --in-memory
// keeps one identity through a --host-key file there.
const pinsDir = mkdtempSync(path.join(tmpdir(), "tertulia-e2e-pins-"));
tempDirs.push(pinsDir);

function log(msg) { console.log(`[desktop-e2e] ${msg}`); }

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on("error", reject);
  });
}

function start(cmd, args, env = {}) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  children.push(child);
  child.stderr.on("data", (d) => { if (process.env.E2E_VERBOSE) process.stderr.write(d); });
  return child;
}

/** A tertulia-chat --json process with an event log. */
function chat(port, nick, passphrase = PASS, extra = []) {
  const pins = ["--known-hosts", path.join(pinsDir, `known_hosts-${nick}`)];
  // Files shared live are fetched on their own: into a throw-away folder, never the
  // current directory or the user's downloads (unless the step gives its own).
  const downloads = extra.includes("--download-dir") ? [] : ["--download-dir", mkdtempSync(path.join(pinsDir, `downloads-${nick}-`))];
  const child = start(bin("tertulia-chat"), [`127.0.0.1:${port}`, "--nick", nick, "--json", ...pins, ...downloads, ...extra], { TERTULIA_PASSPHRASE: passphrase });
  const events = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    // File ids are random u64s, more than a JavaScript number holds: kept exact, as text
    // (as the app's window has them).
    const event = JSON.parse(line.replace(/"(file_id|id)":(\d{16,})/g, '"$1":"$2"'));
    events.push(event);
    for (const w of [...waiters]) if (w.pred(event)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(event); }
  });
  const exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    events, exited,
    say: (text) => child.stdin.write(text + "\n"),
    quit: () => child.stdin.end(),
    wait(what, pred, ms = 20_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${nick}: timed out waiting for ${what}; saw ${JSON.stringify(events)}`)), ms);
        waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e); } });
      });
    },
  };
}

async function waitHttp(url, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try { const r = await fetch(url, { signal: AbortSignal.timeout(1000) }); if (r.ok) return; } catch (_) { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

async function shot(session, name) {
  // WebKitGTK paints asynchronously under Xvfb: let the last DOM changes reach the screen.
  await new Promise((r) => setTimeout(r, 700));
  step += 1;
  const file = path.join(shots, `${String(step).padStart(2, "0")}-${name}.png`);
  writeFileSync(file, await session.screenshot());
  log(`screenshot ${path.relative(root, file)}`);
  return file;
}

const has = (sel, text) => [
  "return [...document.querySelectorAll(arguments[0])].some((n) => n.textContent.includes(arguments[1]));", sel, text];

async function main() {
  for (const b of ["tertulia-app", "tertulia-chat", "tertulia-server"]) {
    if (!existsSync(bin(b))) throw new Error(`${bin(b)} is missing: build first (make test does)`);
  }
  const display = `:${90 + Math.floor(Math.random() * 400)}`;
  start("Xvfb", [display, "-screen", "0", "1100x760x24", "-nolisten", "tcp"]);
  await new Promise((r) => setTimeout(r, 800));
  // A private D-Bus session bus, watched for desktop notifications (org.freedesktop.Notifications.Notify).
  const bus = await dbusSession();
  const [wdPort, nativePort] = [await freePort(), await freePort()];
  const driver = process.env.TAURI_DRIVER || "tauri-driver";
  // The app's web storage (remembered form values) goes to a throw-away home, not the user's.
  const home = mkdtempSync(path.join(tmpdir(), "tertulia-e2e-"));
  tempDirs.push(home);
  const opener = fakeOpener(home);
  // Saved rooms: an unlocked gnome-keyring (the Secret Service) on the same private bus.
  const keyring = await startKeyring(bus.address, home);
  start(driver, ["--port", String(wdPort), "--native-port", String(nativePort)], {
    DISPLAY: display,
    DBUS_SESSION_BUS_ADDRESS: bus.address,
    XDG_DATA_HOME: path.join(home, "data"),
    XDG_CONFIG_HOME: path.join(home, "config"),
    XDG_CACHE_HOME: path.join(home, "cache"),
    PATH: `${opener.dir}:${process.env.PATH}`,
    // The window follows the system language: the steps start in English whatever this
    // machine's locale is, and step 9 switches to Spanish in the app.
    LANGUAGE: "en_US:en",
    LANG: "en_US.UTF-8",
    // This machine's own network: the app neither announces rooms nor looks for them here
    // (mDNS would reach the real network). discovery.mjs tests that in the lab's namespaces.
    TERTULIA_DISCOVERY: "off",
  });
  const base = `http://127.0.0.1:${wdPort}`;
  await waitHttp(`${base}/status`, 20_000);
  log(`Xvfb ${display}, tauri-driver on ${wdPort}`);

  const session = await Session.start(base, bin("tertulia-app"));
  try {
    await session.waitFor("the start screen", "return !!document.querySelector('#host-form') && !document.querySelector('#start').hidden;");
    await shot(session, "start");

    // 0. The Host form offers a generated passphrase; each reachability choice listens
    // where the screen says, and nowhere else.
    await hostForm(session);
    await reachability(session);

    // 1. The app hosts a room (on all networks: the terminal clients come over loopback).
    const port = await freePort();
    await session.fill("#host-nick", "ana");
    await session.fill("#host-port", String(port));
    await session.fill("#host-pass", PASS);
    await session.click("#host-reach-all");
    await session.click("#host-submit");
    await session.waitFor("hosting", "return !document.querySelector('#host-panel').hidden && document.querySelector('#conn-state').textContent.includes('Connected as ana');");
    await hostIdentity(session, home, port);
    await shot(session, "hosting");

    // 2. A terminal client joins; both see each other online.
    const ben = chat(port, "ben");
    await ben.wait("connected", (e) => e.type === "connected");
    await ben.wait("online list with ana", (e) => e.type === "online" && e.members.includes("ana") && e.members.includes("ben"));
    await session.waitFor("ben in the online list", ...has("#online li", "ben"));
    await session.waitFor("ana in the online list", ...has("#online li", "ana"));
    await session.waitFor("member count", "return document.querySelector('#member-count').textContent === '2 members';");

    // 3. Messages both ways.
    const fromTerminal = "hola ana, <b>desde</b> la terminal | a:b";
    ben.say(fromTerminal);
    await session.waitFor("ben's message in the window", ...has("#log .msg .text", fromTerminal));
    const rendered = await session.run("return document.querySelectorAll('#log .msg b').length;");
    if (rendered !== 0) throw new Error("peer markup was rendered as HTML");
    await session.click("#message");
    await session.type("#message", "hi ben, from the app");
    await session.type("#message", "\uE007"); // Enter
    await ben.wait("ana's message", (e) => e.type === "message" && e.from === "ana" && e.text === "hi ben, from the app");
    await session.waitFor("own message acked", "return [...document.querySelectorAll('#log .msg.own')].some((n) => !n.classList.contains('pending'));");
    await shot(session, "conversation");
    await burst(session, ben, "ana", "host");

    // 3b. No notification while the window had the focus; with the window in the
    // background, a message raises one.
    if (bus.output().includes("member=Notify")) throw new Error("notified while the window was focused");
    const appWindow = await xdotool(display, ["search", "--name", "^Tertulia$"]);
    start("xmessage", ["-geometry", "300x80+700+600", "-name", "tertulia-e2e-other", "another window"], { DISPLAY: display });
    let other = "";
    for (let i = 0; i < 50 && !other; i += 1) {
      other = await xdotool(display, ["search", "--classname", "tertulia-e2e-other"]).catch(() => "");
      if (!other) await new Promise((r) => setTimeout(r, 100));
    }
    await xdotool(display, ["windowfocus", other.split("\n")[0]]);
    await new Promise((r) => setTimeout(r, 300));
    ben.say("are you there, ana?");
    await session.waitFor("the background message in the window", ...has("#log .msg .text", "are you there, ana?"));
    await bus.waitFor("a desktop notification", (out) => out.includes("member=Notify") && out.includes("ben — Tertulia") && out.includes("are you there, ana?"));
    log("desktop notification seen on D-Bus");
    // 3c. A flood while in the background is one more popup, not ten: "N new messages from
    // ben", with the latest text's markup escaped for the notification body.
    const notifyCount = () => bus.output().split("member=Notify").length - 1;
    const beforeFlood = notifyCount();
    for (let i = 1; i < 10; i += 1) ben.say(`spam ${i}`);
    ben.say("<b>fuerte</b> & <a href='x'>co</a>");
    await session.waitFor("the flood in the window", ...has("#log .msg .text", "<b>fuerte</b> & <a href='x'>co</a>"));
    await bus.waitFor("one coalesced notification", (out) => out.includes("11 new messages from ben"), 15_000);
    await new Promise((r) => setTimeout(r, 1000));
    const popups = notifyCount() - beforeFlood;
    if (popups !== 1) throw new Error(`10 messages in the background raised ${popups} notifications, not 1`);
    if (!bus.output().includes("ben: &lt;b&gt;fuerte&lt;/b&gt; &amp; &lt;a href='x'&gt;co&lt;/a&gt;")) throw new Error("the notification body is not escaped: " + bus.output().slice(-1500));
    log("10 background messages: 1 coalesced notification, markup escaped");
    await xdotool(display, ["windowfocus", appWindow.split("\n")[0]]);
    await linksAndAway(session, { ben, display, bus, opener });
    await filesBothWays(session, port, ben);

    // 4. The terminal client quits; the window shows the leave notice.
    ben.quit();
    const code = await ben.exited;
    if (code !== 0) throw new Error(`tertulia-chat exited with ${code}`);
    await session.waitFor("ben's leave notice", ...has("#log .notice", "ben left"));
    await session.waitFor("online list without ben", "return ![...document.querySelectorAll('#online li')].some((n) => n.textContent === 'ben');");
    await shot(session, "leave-notice");

    // 5. Stop hosting.
    await session.click("#stop-hosting");
    await session.waitFor("confirmation", "return document.querySelector('#confirm-dialog').open;");
    await session.click("#confirm-ok");
    await session.waitFor("back at the start screen", "return !document.querySelector('#start').hidden;");

    // 6. Join another room where the nickname is taken: the dialog says why; pick another.
    const otherPort = await freePort();
    // Restarted below: one identity throughout (the app pinned it), as a host's would be.
    const keyFlag = ["--host-key", path.join(pinsDir, "other-room.key")];
    const otherServer = () => start(bin("tertulia-server"), ["--listen", `127.0.0.1:${otherPort}`, "--in-memory", ...keyFlag], { TERTULIA_PASSPHRASE: PASS });
    const firstServer = otherServer();
    await waitPort(otherPort);
    const carol = chat(otherPort, "carol");
    await carol.wait("connected", (e) => e.type === "connected");
    await session.fill("#join-nick", "Carol");
    await session.fill("#join-host", "127.0.0.1");
    await session.fill("#join-port", String(otherPort));
    await session.fill("#join-pass", PASS);
    await session.click("#join-submit");
    await session.waitFor("the nickname dialog", "return document.querySelector('#nick-dialog').open;");
    const reason = await session.text("#nick-reason");
    if (!/already taken/.test(reason)) throw new Error(`dialog reason: ${reason}`);
    await shot(session, "nickname-taken");
    // Escape means Cancel: back at the start screen, not a closed dialog in a half-joined room.
    await session.press(ESCAPE);
    await session.waitFor("Escape leaves to the start screen", "return !document.querySelector('#start').hidden && !document.querySelector('#nick-dialog').open;");
    await session.click("#join-submit");
    await session.waitFor("the nickname dialog again", "return document.querySelector('#nick-dialog').open;");
    await session.fill("#nick-input", "Carol2");
    await session.click("#nick-submit");
    await session.waitFor("joined as Carol2", "return document.querySelector('#conn-state').textContent.includes('Connected as Carol2');");
    await carol.wait("Carol2 joined", (e) => e.type === "join" && e.nick === "Carol2");
    await shot(session, "joined-after-rename");
    await burst(session, carol, "Carol2", "joined");
    await serverGone(session, { server: firstServer, restart: otherServer, port: otherPort, nick: "Carol2" });

    // 7. Hosting again continues the same room: the earlier conversation is there.
    await session.click("#leave");
    await session.waitFor("back at the start screen", "return !document.querySelector('#start').hidden;");
    await session.fill("#host-nick", "ana");
    await session.fill("#host-port", String(port));
    await session.fill("#host-pass", PASS);
    await session.click("#host-submit");
    await session.waitFor("hosting again", "return document.querySelector('#conn-state').textContent.includes('Connected as ana');");
    await session.waitFor("the earlier conversation", ...has("#log .msg .text", "hi ben, from the app"));
    await shot(session, "hosting-again-history");

    // 8. Escape on "Stop hosting?" cancels, even after the stop confirmed in step 5.
    await session.click("#stop-hosting");
    await session.waitFor("confirmation", "return document.querySelector('#confirm-dialog').open;");
    await session.press(ESCAPE);
    await session.waitFor("the confirmation closed", "return !document.querySelector('#confirm-dialog').open;");
    await new Promise((r) => setTimeout(r, 500));
    const stillHosting = await session.run("return !document.querySelector('#chat').hidden && !document.querySelector('#host-panel').hidden && document.querySelector('#conn-state').textContent.includes('Connected as ana');");
    if (!stillHosting) {
      const state = await session.run("return JSON.stringify({rv: document.querySelector('#confirm-dialog').returnValue, start: !document.querySelector('#start').hidden, chat: !document.querySelector('#chat').hidden, conn: document.querySelector('#conn-state').textContent, panel: !document.querySelector('#host-panel').hidden});");
      throw new Error("Escape on 'Stop hosting?' stopped the room: " + state);
    }
    await emojiAndSpanish(session, port);
    await newRoom(session, port, home);
    await savedRoom(session, keyring, home);
    await identityChanged(session);
    log("all steps passed");
  } finally {
    await session.close();
  }
}

// A real RGB PNG of width × height, a gradient with a disc, made here (not by the app or
// the core).
function png(width, height, hue = 0) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2;
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x += 1) row.set(pixel(x, y, width, height, hue), 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([Buffer.from("89504e470d0a1a0a", "hex"), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}

// The colour of pixel (x, y) of png(width, height, hue).
function pixel(x, y, width, height, hue) {
  const disc = (x - width * 0.62) ** 2 + (y - height * 0.4) ** 2 < (height * 0.22) ** 2;
  const px = disc ? [250, 200 - hue, 60] : [40 + (x * 120) / width, 110 + hue + (y * 60) / height, 190 - (y * 90) / height];
  return px.map((v) => Math.max(0, Math.min(255, Math.round(v))));
}

// The pixels of png(width, height, hue) as a canvas holds them (RGBA, opaque).
function rgba(width, height, hue = 0) {
  const out = Buffer.alloc(width * height * 4, 255);
  for (let y = 0; y < height; y += 1) for (let x = 0; x < width; x += 1) out.set(pixel(x, y, width, height, hue), (y * width + x) * 4);
  return out;
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

// 3d. Files both ways with a terminal member (`fil`, --download-dir a temp dir). An image
// pasted into the app's composer (a real paste event carrying a File built in the page from
// bytes made here) shows as a preview in the app and arrives byte-identical at the terminal
// member; the terminal member /sends a PNG and the app shows it as a preview whose pixels
// and bytes in the page are the file's. Screenshots of the
// conversation with images at normal width and at 360 px (the README's).
async function filesBothWays(session, port, ben) {
  const downloads = mkdtempSync(path.join(tmpdir(), "tertulia-e2e-downloads-"));
  tempDirs.push(downloads);
  const fil = chat(port, "fil", PASS, ["--download-dir", downloads]);
  await fil.wait("fil connected", (e) => e.type === "connected");
  ben.say("¿alguien tiene las fotos de la playa?");
  await session.waitFor("ben's question", ...has("#log .msg .text", "¿alguien tiene las fotos de la playa?"));

  const pasted = png(480, 300);
  const pastedSha = sha256(pasted);
  await session.run(`
    const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], "image.png", { type: "image/png" }));
    const box = document.querySelector("#message");
    box.focus();
    box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
    return true;`, pasted.toString("base64"));
  const offered = await fil.wait("the pasted image offered", (e) => e.type === "file_offered" && e.from === "ana", 30_000);
  if (offered.sha256 !== pastedSha) throw new Error(`the room announces ${offered.sha256}, the pasted bytes are ${pastedSha}`);
  const received = await fil.wait("the pasted image received", (e) => e.type === "file_received" && e.file_id === offered.file_id, 30_000);
  if (!received.path || !received.path.startsWith(downloads)) throw new Error(`saved at ${received.path}, not under ${downloads}`);
  const onDisk = readFileSync(received.path);
  if (!onDisk.equals(pasted)) throw new Error(`the terminal member's file (${onDisk.length} bytes, ${sha256(onDisk)}) is not the pasted image (${pasted.length} bytes, ${pastedSha})`);
  if (!/^pasted image \d{4}-\d\d-\d\d \d\d\.\d\d\.png$/.test(path.basename(received.path))) throw new Error(`saved as ${path.basename(received.path)}`);
  const ownPreview = `#log .msg.file.own[data-file-id="${offered.file_id}"] .preview img`;
  await session.waitFor("the pasted image as a preview in the app", "const i = document.querySelector(arguments[0]); return !!i && i.complete && i.naturalWidth === 480;", ownPreview)
    .catch(async (e) => {
      await session.run("window.__probe = null; const n = document.querySelector('#log .msg.file.own'); const i = n && n.querySelector('img'); window.__TAURI__.core.invoke('preview', { fileId: n.dataset.fileId }).then((b) => { window.__probe = { type: Object.prototype.toString.call(b), len: b.byteLength ?? b.length, complete: i && i.complete, w: i && i.naturalWidth }; }, (x) => { window.__probe = { error: JSON.stringify(x) }; }); return true;");
      const probe = await session.waitFor("the probe", "return window.__probe;").catch(() => null);
      throw new Error(`${e.message}; probe ${JSON.stringify(probe)}`);
    });
  log(`pasted PNG: a preview in the app, byte-identical at the terminal member (${pasted.length} bytes, sha256 ${pastedSha.slice(0, 16)}…)`);

  const sent = png(360, 420, 60);
  const sentFile = path.join(downloads, "..", `${path.basename(downloads)}-atardecer.png`);
  writeFileSync(sentFile, sent);
  tempDirs.push(sentFile);
  fil.say(`/send ${sentFile}`);
  const name = path.basename(sentFile);
  const line = `#log .msg.file:not(.own)[data-name="${name}"]`;
  await session.waitFor("the terminal member's image as a preview", "const i = document.querySelector(arguments[0] + ' .preview img'); return !!i && i.complete && i.naturalWidth === 360 && i.naturalHeight === 420;", line);
  // What the page shows: the preview's pixels, drawn on a canvas, are the file's exactly
  // (PNG is lossless), and the bytes the page got for its blob: URL hash to the file's
  // SHA-256. The blob: URL itself cannot be fetched: the CSP allows blob: for images only
  // (connect-src has no blob:), which this checks too.
  await session.run(`
    window.__digest = null;
    const img = document.querySelector(arguments[0] + " .preview img");
    const line = document.querySelector(arguments[0]);
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const g = canvas.getContext("2d");
    g.drawImage(img, 0, 0);
    const shown = g.getImageData(0, 0, canvas.width, canvas.height).data;
    const expected = Uint8Array.from(atob(arguments[1]), (c) => c.charCodeAt(0));
    let differ = shown.length === expected.length ? 0 : -1;
    for (let i = 0; differ >= 0 && i < shown.length; i += 1) if (shown[i] !== expected[i]) differ += 1;
    const hex = (d) => [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, "0")).join("");
    const blobFetch = fetch(img.src).then(() => "fetched", () => "refused");
    window.__TAURI__.core.invoke("preview", { fileId: line.dataset.fileId })
      .then((b) => crypto.subtle.digest("SHA-256", b))
      .then(async (d) => { window.__digest = { src: img.src, differ, sha: hex(d), blobFetch: await blobFetch }; },
        (e) => { window.__digest = { error: String(e) }; });
    return true;`, line, rgba(360, 420, 60).toString("base64"));
  const digest = await session.waitFor("the preview's pixels and bytes checked in the page", "return window.__digest;");
  if (digest.error) throw new Error(`the page could not get the preview's bytes: ${digest.error}`);
  if (!digest.src.startsWith("blob:")) throw new Error(`the preview is not a blob: URL: ${digest.src}`);
  if (digest.differ !== 0) throw new Error(`the preview's pixels differ from the file's in ${digest.differ} bytes`);
  if (digest.sha !== sha256(sent)) throw new Error(`the page's preview bytes have sha256 ${digest.sha}, the file's is ${sha256(sent)}`);
  if (digest.blobFetch !== "refused") throw new Error("the page could fetch a blob: URL: the CSP's connect-src allows blob:");
  const kind = await session.text(`${line} .file-details`);
  if (!/PNG image$/.test(kind || "")) throw new Error(`the file's line says ${kind}`);
  log(`the terminal member's PNG: a preview in the app with the file's exact bytes (sha256 ${digest.sha.slice(0, 16)}…)`);
  ben.say("¡qué bonitas! 😍");
  await session.waitFor("ben's reply", ...has("#log .msg .text", "¡qué bonitas! 😍"));
  await session.run("const l = document.querySelector('#log'); l.scrollTop = l.scrollHeight; return true;");
  const withImages = await shot(session, "conversation-images");
  if (process.env.UPDATE_README_SCREENSHOT) copyFileSync(withImages, path.join(root, "docs/screenshot.png"));
  const wide = await session.windowRect();
  await session.setWindowRect({ width: 360, height: wide.height });
  await session.run("const l = document.querySelector('#log'); l.scrollTop = l.scrollHeight; return true;");
  await shot(session, "conversation-images-360");
  const spills = await session.run("return document.documentElement.scrollWidth > window.innerWidth || [...document.querySelectorAll('#log .preview img')].some((i) => i.getBoundingClientRect().right > document.querySelector('#log').getBoundingClientRect().right + 1);");
  await session.setWindowRect({ width: wide.width, height: wide.height });
  if (spills) throw new Error("an image spills out of the conversation at 360 px");
  fil.quit();
  await fil.exited;
}

// 3a/6a. A burst from the app window (hosting, then joined to another room): 20 messages
// typed in one go, Enter after each, faster than any answer comes back. The window shows one
// bubble per message, none left "sending…", in room order, and the terminal member (`member`,
// a tertulia-chat --json) received each exactly once, in the order typed.
async function burst(session, member, nick, label) {
  const texts = Array.from({ length: 20 }, (_, i) => `${label} burst ${i + 1}/20`);
  await session.click("#message");
  await session.type("#message", texts.map((t) => t + "\uE007").join(""));
  for (const text of texts) await member.wait(`${nick}'s "${text}"`, (e) => e.type === "message" && e.from === nick && e.text === text);
  const settled = `return (() => {
    const own = [...document.querySelectorAll('#log .msg.own')].filter((n) => n.querySelector('.text').textContent.startsWith(arguments[0]));
    return own.length >= 20 && !document.querySelector('#log .msg.pending');
  })();`;
  await session.waitFor(`${label}: the burst settled in the window`, settled, `${label} burst `).catch(() => {});
  const seen = await session.run(`return (() => {
    const msgs = [...document.querySelectorAll('#log .msg')];
    return {
      own: msgs.filter((n) => n.classList.contains('own')).map((n) => n.querySelector('.text').textContent).filter((t) => t.startsWith(arguments[0])),
      pending: document.querySelectorAll('#log .msg.pending').length,
      failed: document.querySelectorAll('#log .msg.failed').length,
      seqs: msgs.map((n) => n.dataset.seq == null ? null : Number(n.dataset.seq)),
    };
  })();`, `${label} burst `);
  await shot(session, `burst-${label}`);
  for (const text of texts) {
    const n = seen.own.filter((t) => t === text).length;
    if (n !== 1) throw new Error(`${label}: ${n} bubbles for "${text}" in the window: ${JSON.stringify(seen.own)}`);
  }
  if (JSON.stringify(seen.own) !== JSON.stringify(texts)) throw new Error(`${label}: window order ${JSON.stringify(seen.own)}`);
  if (seen.pending || seen.failed) throw new Error(`${label}: ${seen.pending} bubbles still sending…, ${seen.failed} not delivered`);
  if (seen.seqs.some((s) => s == null) || seen.seqs.some((s, i) => i && s < seen.seqs[i - 1])) throw new Error(`${label}: bubbles not in room order: ${JSON.stringify(seen.seqs)}`);
  const received = member.events.filter((e) => e.type === "message" && e.from === nick && e.text.startsWith(`${label} burst `)).map((e) => e.text);
  if (JSON.stringify(received) !== JSON.stringify(texts)) throw new Error(`${label}: the terminal member received ${JSON.stringify(received)}`);
  log(`${label}: 20 messages, one bubble each, none pending; the terminal member got each once`);
}

// 6b. The room's server stops while the window is in it: one status line that counts the
// attempts, then a hint of what to check (with the address) — no notice per failed attempt,
// no raw OS error — and back in the room once the server is up again, the hint gone.
async function serverGone(session, { server, restart, port, nick }) {
  const notices = "return [...document.querySelectorAll('#log .notice')].map((n) => n.textContent);";
  const before = (await session.run(notices)).length;
  server.kill("SIGKILL");
  await session.waitFor("the hint after a few failed attempts", "return !document.querySelector('#conn-hint').hidden && /attempt [4-9]/.test(document.querySelector('#conn-state').textContent);");
  const hint = await session.text("#conn-hint");
  if (!hint.includes(`127.0.0.1:${port}`) || !/firewall/.test(hint) || !/still running/.test(hint)) throw new Error(`the hint says: ${hint}`);
  await new Promise((r) => setTimeout(r, 3000)); // a few more attempts
  const state = await session.text("#conn-state");
  if (!/^(Reconnecting in \d+ s|Reconnecting|Connecting) \(attempt \d+\)/.test(state)) throw new Error(`the status line says: ${state}`);
  const added = (await session.run(notices)).slice(before);
  if (added.length > 1) throw new Error(`notices while reconnecting: ${JSON.stringify(added)}`);
  const text = await session.text("#chat");
  if (/os error|cannot reach/.test(text)) throw new Error("a raw OS error is on screen");
  await shot(session, "reconnecting-hint");
  restart();
  await session.waitFor("back in the room", `return document.querySelector('#conn-state').textContent.includes('Connected as ${nick}') && document.querySelector('#conn-hint').hidden;`);
  log(`server gone: one status line (${state}), ${added.length} notice(s), the hint; back in the room after the restart`);
}

// 9. An emoji-only conversation with a terminal member (drawn in colour, not as boxes), then
// the window switched to Spanish: the start screen, the status line and the room's notices.
// Ends with the room stopped and the window back in English.
async function emojiAndSpanish(session, port) {
  // The window never leaves the app: a navigation elsewhere (as a context menu's "Open Link"
  // would start) is refused by the backend's guard.
  await session.run("setTimeout(() => { location.href = 'https://example.org/phishing'; }, 0); return true;");
  await new Promise((r) => setTimeout(r, 1500));
  const where = await session.run("return location.protocol + '//' + location.host + ' ' + !!document.querySelector('#chat:not([hidden])');");
  if (where !== "tauri://localhost true") throw new Error(`the window navigated away from the app: ${where}`);
  const dan = chat(port, "dan");
  await dan.wait("connected", (e) => e.type === "connected");
  const fromTerminal = "❤️ 👍🏽 🏳️‍🌈 1️⃣ ✌️ 👩‍💻";
  dan.say(fromTerminal);
  await session.waitFor("dan's emoji", ...has("#log .msg .text", fromTerminal));
  const fromApp = "🎉🥳 ☺️ 🇪🇸";
  // WebDriver's key synthesis cannot type astral characters: put them in as an input method would.
  await session.run("const m = document.querySelector('#message'); m.focus(); m.value = arguments[0]; m.dispatchEvent(new Event('input'));", fromApp);
  await session.type("#message", "\uE007"); // Enter
  await dan.wait("ana's emoji", (e) => e.type === "message" && e.from === "ana" && e.text === fromApp);
  await session.waitFor("the emoji message delivered once", "const own = [...document.querySelectorAll('#log .msg.own')].filter((n) => n.querySelector('.text').textContent === arguments[0]); return own.length === 1 && !own[0].classList.contains('pending');", fromApp);
  // Colour emoji font present: a heart drawn with the page's font has saturated pixels.
  const colourful = await session.run(`
    const c = document.createElement("canvas"); c.width = 64; c.height = 64;
    const g = c.getContext("2d"); g.font = "48px " + getComputedStyle(document.body).fontFamily; g.fillStyle = "#000";
    g.fillText("\u2764\ufe0f", 4, 52);
    const d = g.getImageData(0, 0, 64, 64).data; let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] - Math.max(d[i + 1], d[i + 2]) > 80) n += 1;
    return n;`);
  if (colourful < 50) throw new Error(`❤️ is not drawn in colour (${colourful} red pixels): is fonts-noto-color-emoji installed?`);
  await shot(session, "emoji-conversation");

  await session.click("#stop-hosting");
  await session.waitFor("confirmation", "return document.querySelector('#confirm-dialog').open;");
  await session.click("#confirm-ok");
  await session.waitFor("back at the start screen", "return !document.querySelector('#start').hidden;");
  await dan.wait("the room closing", (e) => e.type === "error" || e.type === "reconnecting" || e.type === "disconnected");
  dan.quit();
  await dan.exited;
  const pick = "const s = document.querySelector('#language'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));";
  await session.run(pick, "es");
  await session.waitFor("the start screen in Spanish", "return document.querySelector('#host-submit').textContent === 'Abrir la sala' && document.documentElement.lang === 'es';");
  await shot(session, "start-spanish");
  await session.fill("#host-pass", PASS);
  await session.click("#host-submit");
  await session.waitFor("hosting, in Spanish", "return document.querySelector('#conn-state').textContent === 'Conectado como ana';");
  const eva = chat(port, "eva");
  await eva.wait("connected", (e) => e.type === "connected");
  await session.waitFor("the join notice in Spanish", ...has("#log .notice", "eva se ha unido"));
  eva.say("¡hola a todos!");
  await session.waitFor("eva's message", ...has("#log .msg .text", "¡hola a todos!"));
  const time = await session.text("#log .msg:last-of-type time");
  if (!/^\d\d:\d\d$/.test(time || "")) throw new Error(`Spanish times are 24-hour hh:mm, got ${time}`);
  await session.waitFor("member count in Spanish", "return document.querySelector('#member-count').textContent === '2 miembros';");
  await shot(session, "chat-spanish");
  eva.quit();
  await eva.exited;
  await session.waitFor("the leave notice in Spanish", ...has("#log .notice", "eva se ha ido"));
  await session.click("#stop-hosting");
  await session.waitFor("confirmation in Spanish", "return document.querySelector('#confirm-dialog').open && document.querySelector('#confirm-ok').textContent === 'Cerrar la sala';");
  await session.click("#confirm-ok");
  await session.waitFor("back at the start screen", "return !document.querySelector('#start').hidden;");
  await session.run(pick, "en");
  await session.waitFor("the start screen in English again", "return document.querySelector('#host-submit').textContent === 'Host a room';");
}

// 10. Hosting again with another passphrase: the stored room is bound to the one it was made
// with, so the app asks "Start a new room?" (Escape cancels and nothing is hosted). Keeping
// the previous room's history starts an empty room — the new group sees none of the previous
// group's messages, in the window or from the terminal — and the old room's files stay set
// aside in the app's data directory.
async function newRoom(session, port, home) {
  const other = "another group, another passphrase";
  const roomDir = path.join(home, "data", "chat.tertulia.app", "room");
  const dialogOpen = "return document.querySelector('#previous-room-dialog').open;";
  const onStart = "return !document.querySelector('#start').hidden;";
  await session.fill("#host-pass", other);
  await session.click("#host-submit");
  await session.waitFor("the 'Start a new room?' dialog", dialogOpen);
  await shot(session, "start-new-room");
  await session.press(ESCAPE);
  await session.waitFor("the dialog cancelled by Escape", "return !document.querySelector('#previous-room-dialog').open;");
  if (!(await session.run(onStart))) throw new Error("Escape on 'Start a new room?' did not stay on the start screen");
  await session.click("#host-submit");
  await session.waitFor("the dialog again", dialogOpen);
  await session.click("#previous-room-keep");
  await session.waitFor("hosting the new room", "return document.querySelector('#conn-state').textContent.includes('Connected as ana');");
  const fay = chat(port, "fay", other);
  await fay.wait("connected", (e) => e.type === "connected");
  await session.waitFor("fay's join notice", ...has("#log .notice", "fay joined"));
  const oldText = ["¡hola a todos!", "dan", "eva"];
  const shown = await session.run("return [...document.querySelectorAll('#log .msg .text, #log .notice')].map((n) => n.textContent).join('\\n');");
  if (oldText.some((t) => shown.includes(t))) throw new Error(`the new room shows the previous room's history:\n${shown}`);
  const fromOld = fay.events.filter((e) => e.type === "message" || (e.type === "join" && e.nick !== "fay" && e.nick !== "ana"));
  if (fromOld.length) throw new Error(`the new member got the previous room's history: ${JSON.stringify(fromOld)}`);
  const kept = readdirSync(path.join(roomDir, "previous-rooms"));
  if (kept.length !== 1) throw new Error(`expected the previous room set aside once, found ${JSON.stringify(kept)}`);
  await shot(session, "new-room-hosted");
  fay.quit();
  await fay.exited;
  await session.click("#stop-hosting");
  await session.waitFor("confirmation", "return document.querySelector('#confirm-dialog').open;");
  await session.click("#confirm-ok");
  await session.waitFor("back at the start screen", onStart);
}

// The Secret Service for the saved-rooms step: gnome-keyring-daemon on the test's private
// bus, its login keyring created unlocked from a password on stdin, its files in `home`.
// null (the step is skipped, saying why) when it is not installed, unless
// TERTULIA_REQUIRE_KEYRING=1 (make test), where that is a failure.
async function startKeyring(address, home) {
  const unavailable = (why) => {
    if (process.env.TERTULIA_REQUIRE_KEYRING === "1") throw new Error(`no Secret Service: ${why}`);
    log(`SKIPPED: the saved-rooms step: ${why}`);
    return null;
  };
  const run = (cmd, args, env = {}) => new Promise((resolve) => {
    const child = spawn(cmd, args, { env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: address, ...env } });
    let out = "";
    child.stdout.on("data", (d) => { out += d; });
    child.on("error", () => resolve({ code: -1, out }));
    child.on("exit", (code) => resolve({ code, out }));
  });
  for (const tool of ["gnome-keyring-daemon", "secret-tool", "dbus-send"]) {
    if ((await run(tool, ["--version"])).code === -1) return unavailable(`${tool} is not installed (make deps-test: gnome-keyring, libsecret-tools, dbus-bin)`);
  }
  const dir = path.join(home, "keyring");
  for (const d of ["data", "config", "run"]) mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  const daemon = start("gnome-keyring-daemon", ["--foreground", "--unlock", "--components=secrets"], {
    DBUS_SESSION_BUS_ADDRESS: address, HOME: dir, XDG_DATA_HOME: path.join(dir, "data"),
    XDG_CONFIG_HOME: path.join(dir, "config"), XDG_RUNTIME_DIR: path.join(dir, "run"),
  });
  daemon.stdin.end("tertulia-e2e-keyring");
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const owner = await run("dbus-send", [`--bus=${address}`, "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
      "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.secrets"]);
    if (owner.out.includes("boolean true")) {
      return { dir, lookup: async (room) => {
        const r = await run("secret-tool", ["lookup", "service", "chat.tertulia.app", "username", room]);
        return r.code === 0 ? r.out : null;
      } };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return unavailable("gnome-keyring-daemon did not take org.freedesktop.secrets within 10 s");
}

// 10. Saved rooms: join a room with "Remember passphrase" ticked, leave, and rejoin it with ONE
// click on the saved room. The passphrase is then in the keyring, and in no file of the app's
// and not in its localStorage.
async function savedRoom(session, keyring, home) {
  if (!keyring) return;
  const onStart = "return !document.querySelector('#start').hidden;";
  const connected = "return document.querySelector('#conn-state').classList.contains('connected');";
  if (!(await session.run(onStart))) {
    if (await session.run("return !document.querySelector('#stop-hosting').hidden;")) {
      await session.click("#stop-hosting");
      await session.waitFor("confirmation", "return document.querySelector('#confirm-dialog').open;");
      await session.click("#confirm-ok");
    } else {
      await session.click("#leave");
    }
    await session.waitFor("the start screen", onStart);
  }
  const secret = "saved room e2e passphrase 7f3q";
  const port = await freePort();
  const room = `127.0.0.1:${port}`;
  start(bin("tertulia-server"), ["--listen", room, "--in-memory"], { TERTULIA_PASSPHRASE: secret });
  await waitPort(port);
  await session.fill("#join-nick", "dora");
  await session.fill("#join-host", "127.0.0.1");
  await session.fill("#join-port", String(port));
  await session.fill("#join-pass", secret);
  await session.click("#join-remember");
  if (!(await session.run("return document.querySelector('#join-remember').checked;"))) throw new Error("Remember passphrase did not tick");
  await session.click("#join-submit");
  await session.waitFor("joined with Remember passphrase", connected);
  const deadline = Date.now() + 15_000;
  while ((await keyring.lookup(room)) !== secret) {
    if (Date.now() > deadline) throw new Error(`the passphrase of ${room} never reached the keyring`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await session.click("#leave");
  await session.waitFor("the start screen", onStart);
  const entry = `#saved-list li[data-id="${room}"]`;
  await session.waitFor("the saved room", "const li = document.querySelector(arguments[0]); return !!li && li.querySelector('.saved-key') !== null;", entry);
  await shot(session, "saved-rooms");
  await session.click(`${entry} .saved-rejoin`);
  await session.waitFor("rejoined with one click", connected);
  await session.waitFor("rejoined as dora", "return document.querySelector('#conn-state').textContent.includes('dora');");
  await shot(session, "saved-room-rejoined");
  if ((await keyring.lookup(room)) !== secret) throw new Error("the passphrase left the keyring");
  // Nowhere else: no file of the app (data, config, cache: its rooms list, web storage), not
  // localStorage.
  const files = [];
  const walk = (d) => { for (const e of readdirSync(d, { withFileTypes: true })) { const p = path.join(d, e.name); if (e.isDirectory()) { if (p !== keyring.dir) walk(p); } else if (e.isFile()) files.push(p); } };
  walk(home);
  const leaked = files.filter((f) => readFileSync(f).includes(secret));
  if (leaked.length) throw new Error(`the passphrase is in ${leaked.join(", ")}`);
  if (!files.some((f) => f.endsWith(path.join("chat.tertulia.app", "rooms.json")))) throw new Error(`no rooms.json under ${home}`);
  const inStorage = await session.run("return Object.keys(localStorage).some((k) => (localStorage.getItem(k) || '').includes(arguments[0]));", secret);
  if (inStorage) throw new Error("the passphrase is in localStorage");
  log(`saved room rejoined with one click; passphrase only in the keyring (${files.length} files checked)`);
  await session.click("#leave");
  await session.waitFor("the start screen", onStart);
}

// A host fingerprint computed here, independently of the app and the core, from a host key
// file (`tertulia-host-key-v1 <64 hex>`): X25519 public key of the secret, then
// SHA-256("tertulia host identity v2" ‖ 0x00 ‖ public key), first 12 bytes, 6 groups of 4.
function fingerprintOf(keyFile) {
  const hex = readFileSync(keyFile, "utf8").trim().split(/\s+/)[1];
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), Buffer.from(hex, "hex")]);
  const spki = createPublicKey(createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" })).export({ format: "der", type: "spki" });
  const digest = createHash("sha256").update(Buffer.concat([Buffer.from("tertulia host identity v2"), Buffer.from([0]), spki.subarray(-32)])).digest("hex");
  return digest.slice(0, 24).match(/.{4}/g).join("-");
}

// 1a. The host screen shows the room's identity (the fingerprint of host.key in the app's
// data directory) with a copy button, and the invite code carries it.
async function hostIdentity(session, home, port) {
  const keyFile = path.join(home, "data", "chat.tertulia.app", "host.key");
  if (!existsSync(keyFile)) throw new Error(`hosting made no ${keyFile}`);
  const fp = fingerprintOf(keyFile);
  const shown = await session.text("#copy-fingerprint");
  if (shown !== fp) throw new Error(`the host screen shows room identity ${JSON.stringify(shown)}, host.key's is ${fp}`);
  if (!(await session.text("#host-panel .identity-row")).startsWith("Room identity:")) throw new Error("the identity is not labelled");
  await session.run("window.__info = null; window.__TAURI__.core.invoke('hosting_info').then((i) => { window.__info = i; }); return true;");
  const info = await session.waitFor("hosting_info", "return window.__info;");
  if (!info.invite.startsWith(`tertulia://`) || !info.invite.includes(`:${port}/${fp}#`)) throw new Error(`the invite code does not carry the identity: ${info.invite}`);
  await session.waitFor("the identity in the header", ...has("#room-identity", fp));
  log(`host screen: room identity ${fp}, in the invite code`);
}

// 11. The host's identity changes under a pinned address: tertulia-server A (its own
// --data-dir) is joined and pinned; A stops, and B (another --data-dir: the same
// passphrase, another identity) listens on the same port. Joining again shows "The host's
// identity changed" with both fingerprints and nothing reaches B; Escape cancels (back on
// the Join form, the reason said); joining again and trusting the new identity gets in, and
// chat works both ways.
async function identityChanged(session) {
  const port = await freePort();
  const dirA = mkdtempSync(path.join(tmpdir(), "tertulia-e2e-room-a-"));
  const dirB = mkdtempSync(path.join(tmpdir(), "tertulia-e2e-room-b-"));
  tempDirs.push(dirA, dirB);
  const server = (dir) => {
    const child = start(bin("tertulia-server"), ["--listen", `127.0.0.1:${port}`, "--data-dir", dir], { TERTULIA_PASSPHRASE: PASS });
    return { child, exited: new Promise((resolve) => child.on("exit", resolve)) };
  };
  const onStart = "return !document.querySelector('#start').hidden;";
  const dialogOpen = "return document.querySelector('#identity-dialog').open;";
  const joinAs = async () => {
    await session.fill("#join-nick", "gil");
    await session.fill("#join-host", "127.0.0.1");
    await session.fill("#join-port", String(port));
    await session.fill("#join-pass", PASS);
    await session.click("#join-submit");
  };

  const a = server(dirA);
  await waitPort(port);
  const fpA = fingerprintOf(path.join(dirA, "host.key"));
  await joinAs();
  await session.waitFor("joined A", "return document.querySelector('#conn-state').textContent.includes('Connected as gil');");
  await session.waitFor("A's identity in the header", ...has("#room-identity", fpA));
  await session.click("#leave");
  await session.waitFor("the start screen", onStart);
  a.child.kill("SIGTERM");
  await a.exited;

  const b = server(dirB);
  await waitPort(port);
  const fpB = fingerprintOf(path.join(dirB, "host.key"));
  if (fpA === fpB) throw new Error("the two rooms have one identity");
  const hal = chat(port, "hal");
  await hal.wait("hal in B", (e) => e.type === "connected");
  await joinAs();
  await session.waitFor("the identity dialog", dialogOpen);
  const pinned = await session.text("#identity-pinned"), presented = await session.text("#identity-presented");
  if (pinned !== fpA || presented !== fpB) throw new Error(`the dialog shows pinned ${pinned}, presented ${presented}; expected ${fpA}, ${fpB}`);
  if (!(await session.text("#identity-dialog")).includes("someone may be intercepting your connection")) throw new Error("the dialog does not explain");
  await shot(session, "host-identity-changed");
  const focused = await session.run("return document.activeElement && document.activeElement.id;");
  if (focused !== "identity-cancel") throw new Error(`the default is ${focused}, not Cancel`);
  await session.press(ESCAPE);
  await session.waitFor("Escape cancels, back on the Join form", "return !document.querySelector('#identity-dialog').open && !document.querySelector('#start').hidden;");
  const reason = await session.waitFor("the reason on the Join form", "return document.querySelector('#join-error').textContent;");
  if (!reason.includes(fpA) || !reason.includes(fpB)) throw new Error(`the Join form says: ${reason}`);
  await shot(session, "host-identity-cancelled");
  await new Promise((r) => setTimeout(r, 1000));
  if (hal.events.some((e) => e.type === "join" && e.nick === "gil")) throw new Error("the refused join reached the other host");

  await joinAs();
  await session.waitFor("the identity dialog again", dialogOpen);
  await session.click("#identity-trust");
  await session.waitFor("joined B after trusting it", "return document.querySelector('#conn-state').textContent.includes('Connected as gil');");
  await session.waitFor("B's identity in the header", ...has("#room-identity", fpB));
  await hal.wait("gil joined B", (e) => e.type === "join" && e.nick === "gil");
  hal.say("bienvenido, gil");
  await session.waitFor("hal's message in the window", ...has("#log .msg .text", "bienvenido, gil"));
  await session.click("#message");
  await session.type("#message", "gracias, hal\uE007");
  await hal.wait("gil's message", (e) => e.type === "message" && e.from === "gil" && e.text === "gracias, hal");
  await shot(session, "host-identity-trusted");
  hal.quit();
  await hal.exited;
  await session.click("#leave");
  await session.waitFor("the start screen", onStart);
  b.child.kill("SIGTERM");
  await b.exited;
  log(`identity changed: pinned ${fpA}, presented ${fpB}; Escape cancelled, trusting it joined and chat works`);
}

// 3c. Links and being away. A member sends a URL: clicking the link in the real window asks
// first, showing the URL in full; Cancel and Escape open nothing; "Open link" hands exactly
// that URL to the system opener (a recording xdg-open on PATH: fakeOpener). Then, with
// "Mute" on and the window in the background, the title counts the unread messages, a plain
// message raises no notification and a mention of "ana" still does; the focus clears the count.
async function linksAndAway(session, { ben, display, bus, opener }) {
  const url = "https://example.org/tertulia?q=1&lang=es#abajo";
  ben.say(`mira ${url} (y no javascript:alert(1) ni file:///etc/passwd)`);
  const link = `#log a.link[data-url="${url}"]`;
  await session.waitFor("the link in the window", `return !!document.querySelector(${JSON.stringify(link)});`);
  const links = await session.run("return [...document.querySelectorAll('#log a')].map((a) => a.dataset.url);");
  if (JSON.stringify(links) !== JSON.stringify([url])) throw new Error(`links in the log: ${JSON.stringify(links)}`);
  const dialogOpen = "return document.querySelector('#link-dialog').open;";
  const dialogClosed = "return !document.querySelector('#link-dialog').open;";
  await session.click(link);
  await session.waitFor("the link dialog", dialogOpen);
  const shown = await session.text("#link-url");
  if (shown !== url) throw new Error(`the dialog shows ${JSON.stringify(shown)}, not the URL in full`);
  await shot(session, "link-dialog");
  await session.click("#link-cancel");
  await session.waitFor("the dialog closed by Cancel", dialogClosed);
  await session.click(link);
  await session.waitFor("the link dialog again", dialogOpen);
  await session.press(ESCAPE);
  await session.waitFor("the dialog closed by Escape", dialogClosed);
  await new Promise((r) => setTimeout(r, 1000));
  if (opener.opened().length) throw new Error(`opened without confirmation: ${opener.opened()}`);
  await session.click(link);
  await session.waitFor("the link dialog, to confirm", dialogOpen);
  await session.click("#link-open");
  const deadline = Date.now() + 10_000;
  while (!opener.opened().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (JSON.stringify(opener.opened()) !== JSON.stringify([url])) throw new Error(`the opener got ${JSON.stringify(opener.opened())}, not ${url}`);
  log("the confirmed link reached the system opener");

  await session.click("#mute");
  await session.waitFor("Mute on", "return document.querySelector('#mute').getAttribute('aria-pressed') === 'true';");
  const appWindow = (await xdotool(display, ["search", "--name", "^Tertulia$"])).split("\n")[0];
  const other = (await xdotool(display, ["search", "--classname", "tertulia-e2e-other"])).split("\n")[0];
  await xdotool(display, ["windowfocus", other]);
  await new Promise((r) => setTimeout(r, 300));
  const notifies = () => bus.output().split("member=Notify").length - 1;
  const before = notifies();
  ben.say("nada importante");
  await session.waitFor("the muted message in the window", ...has("#log .msg .text", "nada importante"));
  await xdotool(display, ["search", "--name", "^\\(1\\) Tertulia$"]).catch(() => { throw new Error("the window title does not say (1) Tertulia"); });
  await new Promise((r) => setTimeout(r, 1000));
  if (notifies() !== before) throw new Error("muted, a message that does not mention ana raised a notification");
  ben.say("ana, ¿lo viste?");
  await bus.waitFor("a notification for the mention", (out) => out.split("member=Notify").length - 1 > before && out.includes("ana, ¿lo viste?"));
  await xdotool(display, ["search", "--name", "^\\(2\\) Tertulia$"]).catch(() => { throw new Error("the window title does not say (2) Tertulia"); });
  await shot(session, "away-unread");
  await xdotool(display, ["windowfocus", appWindow]);
  const titleDeadline = Date.now() + 10_000;
  while (!(await xdotool(display, ["search", "--name", "^Tertulia$"]).catch(() => ""))) {
    if (Date.now() > titleDeadline) throw new Error("the unread count stayed in the title after the window got the focus");
    await new Promise((r) => setTimeout(r, 200));
  }
  await session.click("#mute");
  await session.waitFor("Mute off", "return document.querySelector('#mute').getAttribute('aria-pressed') === 'false';");
  log("title count cleared on focus; muted, only the mention notified");
}

// A stand-in for the system browser: xdg-open (what the opener plugin runs first on Linux)
// on the app's PATH, recording each URL it is given, one per line.
function fakeOpener(home) {
  const dir = path.join(home, "opener-bin");
  const file = path.join(home, "opened.txt");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "xdg-open"), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${file}'\n`, { mode: 0o755 });
  return { dir, opened: () => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []) };
}

function xdotool(display, args) {
  return new Promise((resolve, reject) => {
    const child = spawn("xdotool", args, { env: { ...process.env, DISPLAY: display } });
    let out = "";
    child.stdout.on("data", (d) => { out += d; });
    child.on("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`xdotool ${args.join(" ")} exited ${code}`))));
  });
}

/** Start a private session bus and a dbus-monitor on it; returns its address and a waiter. */
async function dbusSession() {
  const daemon = start("dbus-daemon", ["--session", "--nofork", "--print-address"]);
  const address = await new Promise((resolve, reject) => {
    daemon.stdout.once("data", (d) => resolve(String(d).trim().split("\n")[0]));
    daemon.on("exit", (code) => reject(new Error(`dbus-daemon exited ${code}`)));
  });
  const monitor = start("dbus-monitor", ["--address", address, "interface='org.freedesktop.Notifications'"]);
  let out = "";
  monitor.stdout.on("data", (d) => { out += d; });
  return {
    address,
    output: () => out,
    async waitFor(what, pred, ms = 20_000) {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (pred(out)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`timed out waiting for ${what}; dbus-monitor saw: ${out.slice(-2000)}`);
    },
  };
}

/** Whether a TCP connection to `host`:`port` is accepted. */
async function accepts(host, port) {
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const s = connect({ port, host, timeout: 2000 }, () => { s.destroy(); resolve(true); });
    s.on("error", () => resolve(false));
    s.on("timeout", () => { s.destroy(); resolve(false); });
  });
}

// 0a. A generated passphrase by default; a weak one typed is warned about with a reason.
async function hostForm(session) {
  await session.waitFor("a generated passphrase", "return /^([a-z2-9]{5}-){4}[a-z2-9]{5}$/.test(document.querySelector('#host-pass').value);");
  await session.fill("#host-nick", "ana");
  await session.fill("#host-pass", "password1");
  await session.waitFor("the weak-passphrase warning", "return !document.querySelector('#host-pass-warning').hidden && document.querySelector('#host-pass-warning').textContent.includes('very common password');");
  await shot(session, "weak-passphrase-warning");
  // The same at a phone's width.
  const wide = await session.windowRect();
  await session.setWindowRect({ width: 360, height: wide.height });
  await session.run("document.querySelector('#host-reach-all').scrollIntoView({ block: 'end' });");
  await shot(session, "weak-passphrase-warning-360");
  const spills = await session.run("return document.documentElement.scrollWidth > window.innerWidth;");
  await session.setWindowRect({ width: wide.width, height: wide.height });
  if (spills) throw new Error("the host form scrolls sideways at 360 px");
  await session.click("#host-generate");
  await session.waitFor("the warning gone with a generated passphrase", "return document.querySelector('#host-pass-warning').hidden;");
}

// 0b. Each reachability choice: the addresses shown are the ones the room accepts on, and
// a connection to any other address of this computer is refused.
async function reachability(session) {
  const { networkInterfaces } = await import("node:os");
  const own = Object.values(networkInterfaces()).flat()
    .filter((a) => !a.internal && !(a.family === "IPv6" && a.address.startsWith("fe80")))
    .map((a) => a.address);
  const shown = () => session.run("return [...document.querySelectorAll('#host-addresses button')].map((b) => b.textContent);");
  const split = (addr) => { const m = addr.match(/^\[?([^\]]+?)\]?:(\d+)$/); return [m[1], Number(m[2])]; };
  const hostWith = async (reach, port) => {
    await session.fill("#host-nick", "ana");
    await session.fill("#host-port", String(port));
    await session.fill("#host-pass", PASS);
    await session.click(`#host-reach-${reach}`);
    await session.click("#host-submit");
    return session.waitFor(`hosting (${reach}) or its error`, "return document.querySelector('#conn-state').textContent.includes('Connected as ana') ? 'hosting' : document.querySelector('#host-error').textContent;");
  };
  const stop = async () => {
    await session.click("#stop-hosting");
    await session.waitFor("confirmation", "return document.querySelector('#confirm-dialog').open;");
    await session.click("#confirm-ok");
    await session.waitFor("back at the start screen", "return !document.querySelector('#start').hidden;");
  };

  // This computer only: 127.0.0.1 and nothing else.
  let port = await freePort();
  if ((await hostWith("computer", port)) !== "hosting") throw new Error("could not host for this computer only");
  const local = await shown();
  if (JSON.stringify(local) !== JSON.stringify([`127.0.0.1:${port}`])) throw new Error(`this computer only shows ${JSON.stringify(local)}`);
  if (!(await session.text("#host-reach")).includes("this computer only")) throw new Error("the screen does not say this computer only");
  if (!(await accepts("127.0.0.1", port))) throw new Error("loopback refused for this computer only");
  for (const ip of own) if (await accepts(ip, port)) throw new Error(`${ip} accepted a connection for this computer only`);
  await shot(session, "reach-this-computer");
  await stop();

  // This network: the LAN address only (not loopback, not a bridge or VPN).
  port = await freePort();
  const result = await hostWith("network", port);
  if (result === "hosting") {
    const lan = await shown();
    if (lan.length !== 1) throw new Error(`this network shows ${JSON.stringify(lan)}`);
    const [ip, shownPort] = split(lan[0]);
    if (shownPort !== port || !own.includes(ip)) throw new Error(`${lan[0]} is not an address of this computer`);
    if (!(await accepts(ip, port))) throw new Error(`${ip} refused for this network`);
    if (await accepts("127.0.0.1", port)) throw new Error("loopback accepted for this network");
    for (const other of own.filter((a) => a !== ip)) if (await accepts(other, port)) throw new Error(`${other} accepted for this network`);
    log(`this network: ${lan[0]}`);
    await shot(session, "reach-this-network");
    await stop();
  } else {
    if (!/no address on a local network/.test(result)) throw new Error(`this network failed: ${result}`);
    log("this network: no LAN address on this machine, told so");
    await session.waitFor("back at the start screen", "return !document.querySelector('#start').hidden;");
  }

  // All networks: every address shown accepts; IPv6 only if the room listens on IPv6.
  port = await freePort();
  if ((await hostWith("all", port)) !== "hosting") throw new Error("could not host on all networks");
  const all = await shown();
  for (const addr of all) {
    const [ip, p] = split(addr);
    if (!(await accepts(ip, p))) throw new Error(`${addr} is shown but refused`);
  }
  if (!(await accepts("127.0.0.1", port))) throw new Error("loopback refused on all networks");
  log(`all networks: ${all.join(", ")}`);
  await shot(session, "reach-all-networks");
  await stop();
}

async function waitPort(port) {
  const { connect } = await import("node:net");
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`port ${port} never opened`);
}

const timeout = setTimeout(() => { console.error("[desktop-e2e] overall timeout"); cleanup(); process.exit(1); }, 300_000);
function cleanup() {
  for (const c of children.reverse()) { try { c.kill("SIGTERM"); } catch (_) { /* gone */ } }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}
// Then, in the lab's namespaces (each skipped, saying why, where it cannot run): rooms on this
// network (discovery.mjs) and "Reachable from the internet" through the lab's router
// (internet.mjs). Both run; the desktop run fails if either does.
const labStep = (file) => new Promise((resolve) => {
  spawn(process.execPath, [path.join(root, "tests/desktop", file)], { stdio: "inherit" })
    .on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
});
const labSteps = async () => {
  const codes = [];
  for (const file of ["discovery.mjs", "internet.mjs"]) codes.push(await labStep(file));
  return codes.find((c) => c !== 0) ?? 0;
};
main()
  .then(async () => { clearTimeout(timeout); cleanup(); process.exit(await labSteps()); })
  .catch((e) => { console.error("[desktop-e2e] FAILED:", e.message); clearTimeout(timeout); cleanup(); process.exit(1); });
