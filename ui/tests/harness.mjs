// Shared by the browser tests: ui/index.html in headless Debian Chromium (playwright-core),
// served over HTTP from 127.0.0.1 (ES modules do not load from file://), with a small fake of
// window.__TAURI__ that records commands and replays core events. Each test file calls
// useBrowser() once; openPage() then gives a fresh page (own context: own storage, locale).
import { before, after } from "node:test";
import { readFileSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./serve.mjs";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const shots = path.join(root, "artifacts/ui");
mkdirSync(shots, { recursive: true });
export const recorded = readFileSync(path.join(here, "fixtures/session.jsonl"), "utf8")
  .split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type !== "queued");

const fakeTauri = () => {
  const listeners = {};
  let nextId = 0;
  window.__calls = [];
  window.__uploads = 0;
  window.__previews = {};
  window.__responses = {
    host_server: { port: 5555, reach: "all", addresses: ["192.168.1.20:5555", "[fd00::2]:5555"], fingerprint: "3f2a-91c0-5b7e-0d44-a1c9-77e2", invite: "tertulia://192.168.1.20:5555/3f2a-91c0-5b7e-0d44-a1c9-77e2#open%20sesame" },
    generate_passphrase: "abcde-fghij-kmnpq-rstuv-wxyz2",
    history_defaults: { maxMessages: 100000, maxDays: null },
  };
  window.__TAURI__ = {
    core: {
      invoke: async (cmd, args = {}, options = {}) => {
        window.__calls.push({ cmd, args });
        if (cmd === "send") {
          if (window.__fail && window.__fail.send) throw window.__fail.send;
          const id = ++nextId;
          // __holdSend: the answer waits, as when events overtake it: __releaseSend() answers
          // the latest, and every held answer is in __held ({id, text, release}), to be
          // answered in any order (as Tauri may answer concurrent commands).
          if (window.__holdSend) {
            return new Promise((resolve) => {
              const held = { id, text: args.text, release: () => resolve(id) };
              (window.__held ||= []).push(held);
              window.__releaseSend = held.release;
            });
          }
          return id;
        }
        if (window.__fail && window.__fail[cmd]) throw window.__fail[cmd];
        // A pasted file: its raw bytes and the name header, as the backend gets them.
        if (cmd === "paste_file") {
          const name = decodeURIComponent(options.headers?.["x-file-name"] ?? "");
          window.__calls.at(-1).args = { bytes: [...args], name };
          return { upload_id: ++window.__uploads, name, size: args.length, mime: args[0] === 0x89 ? "image/png" : "application/octet-stream" };
        }
        // A preview's bytes (an ArrayBuffer, as a raw IPC response is), set by the test.
        if (cmd === "preview") {
          const bytes = window.__previews[args.fileId];
          if (!bytes) throw { kind: "invalid", message: "no preview for this file" };
          return new Uint8Array(bytes).buffer;
        }
        return window.__responses[cmd] ?? null;
      },
    },
    event: { listen: async (name, cb) => { (listeners[name] ||= []).push(cb); return () => {}; } },
  };
  window.__emit = (payload) => (listeners["chat-event"] || []).forEach((cb) => cb({ event: "chat-event", payload, id: 0 }));
  // Any other backend event ("file-preview", "files-queued", "tauri://drag-enter", …).
  window.__emitTo = (name, payload) => (listeners[name] || []).forEach((cb) => cb({ event: name, payload, id: 0 }));
};

let browser, server, pageUrl;
// Starts the page server and Chromium for this test file (stopped after its tests).
export function useBrowser() {
  before(async () => {
    server = await serve(path.join(root, "ui"));
    pageUrl = server.url + "index.html";
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"],
    });
  });
  after(async () => { await browser?.close(); await server?.close(); });
}

export async function openPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 }, ...options });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.addInitScript(fakeTauri);
  await page.goto(pageUrl);
  page.errors = errors;
  return page;
}
export const calls = (page) => page.evaluate(() => window.__calls);
export const emitTo = (page, name, payload) => page.evaluate(([n, p]) => window.__emitTo(n, p), [name, payload]);
export const emit = (page, events) => page.evaluate((evs) => evs.forEach((e) => window.__emit(e)), events);

export async function joinRoom(page, nick = "ana") {
  await page.fill("#join-nick", nick);
  await page.fill("#join-host", "192.168.1.20");
  await page.fill("#join-port", "5555");
  await page.fill("#join-pass", "open sesame");
  await page.click("#join-submit");
  await page.waitForSelector("#chat:not([hidden])");
}

// Every visible piece of text with a contrast below AA (4.5:1; 3:1 for large text), every
// field or toggle border and state dot below 3:1, and anything drawn half-transparent.
// Backgrounds are found by walking up to the first opaque one.
export const contrastProblems = (page) => page.evaluate(() => {
  const rgba = (c) => { const m = c.match(/[\d.]+/g).map(Number); return { r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1 }; };
  const lum = ({ r, g, b }) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (node) => {
    for (let n = node; n; n = n.parentElement) {
      const c = rgba(getComputedStyle(n).backgroundColor);
      if (c.a > 0.5) return c;
    }
    return rgba(getComputedStyle(document.documentElement).backgroundColor);
  };
  const visible = (n) => n.getClientRects().length > 0 && getComputedStyle(n).visibility !== "hidden";
  const name = (n) => n.id ? "#" + n.id : n.tagName.toLowerCase() + "." + [...n.classList].join(".");
  const problems = [];
  for (const n of document.querySelectorAll("body *")) {
    if (!visible(n) || ["SCRIPT", "STYLE", "OPTION"].includes(n.tagName)) continue;
    const style = getComputedStyle(n);
    if (Number(style.opacity) < 1) problems.push(`${name(n)} is drawn at opacity ${style.opacity}`);
    const ownText = [...n.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    if (ownText) {
      const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
      const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
      const r = ratio(rgba(style.color), background(n));
      if (r < need) problems.push(`${name(n)} "${n.textContent.trim().slice(0, 30)}" text ${r.toFixed(2)}:1 < ${need}`);
    }
    if (["INPUT", "TEXTAREA", "SELECT"].includes(n.tagName) || n.matches("button.secondary")) {
      const r = ratio(rgba(style.borderTopColor), background(n.parentElement));
      if (r < 3) problems.push(`${name(n)} border ${r.toFixed(2)}:1 < 3`);
    }
    if (n.matches("input, textarea") && n.placeholder) {
      const r = ratio(rgba(getComputedStyle(n, "::placeholder").color), background(n));
      if (r < 4.5) problems.push(`${name(n)} placeholder ${r.toFixed(2)}:1 < 4.5`);
    }
    if (n.matches(".state")) {
      const r = ratio(rgba(getComputedStyle(n, "::before").color), background(n));
      if (r < 3) problems.push(`${name(n)} state dot ${r.toFixed(2)}:1 < 3`);
    }
  }
  return problems;
});
