// Files and images in the window: a file's line (name, size, type, Save), image previews
// shown through blob: URLs of the backend's checked bytes and opened full size, progress
// and Cancel for uploads and downloads, pasted images sent as raw bytes, drops, hostile
// names shown inertly, SVG as a file, "no longer available", both languages, 360 px and
// dark mode contrast. The backend is harness.mjs's fake; the bytes are real PNGs.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { deflateSync, crc32 } from "node:zlib";
import { createHash } from "node:crypto";
import { useBrowser, openPage, calls, emit, emitTo, joinRoom, shots, contrastProblems } from "./harness.mjs";

useBrowser();

// A real RGB PNG of width × height, a colour gradient (so it is visibly an image).
function png(width, height) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x += 1) row.set([(x * 255) / width, (y * 255) / height, 160], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([Buffer.from("89504e470d0a1a0a", "hex"), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}

const connected = () => ({ type: "connected", nick: "ana", epoch: "e", resumed: false, room_reset: false, gap: false, oldest_seq: 1 });
const offered = (seq, extra = {}) => ({
  type: "file_offered", seq, time_ms: 1795604686046 + seq, from: "ben", file_id: String(1000 + seq), name: "informe.pdf",
  size: 1_234_567, mime: "application/pdf", sha256: "ab".repeat(32), own: false, upload_id: null, history: false, ...extra,
});

async function inRoom(options = {}) {
  const page = await openPage(options);
  await joinRoom(page);
  await emit(page, [connected()]);
  return page;
}

// Makes file `fileId`'s preview ready with these bytes, as the backend does once checked.
async function previewReady(page, fileId, bytes, width, height) {
  await page.evaluate(([id, b]) => { window.__previews[id] = b; }, [fileId, [...bytes]]);
  await emitTo(page, "file-preview", { state: "ready", file_id: fileId, mime: "image/png", width, height });
  await page.waitForFunction((id) => {
    const img = document.querySelector(`[data-file-id="${id}"] .preview img`);
    return img && img.complete && img.naturalWidth > 0;
  }, fileId);
}

test("a file's line: name, size and type in the locale, Save through the backend's dialog, then download progress and where it was saved", async () => {
  const page = await inRoom();
  await emit(page, [offered(5)]);
  const line = page.locator('[data-file-id="1005"]');
  assert.equal(await line.locator(".file-name").textContent(), "informe.pdf");
  assert.equal(await line.locator(".file-details").textContent(), "1.2 MB · PDF document");
  assert.equal(await line.locator(".preview").isVisible(), false, "a PDF has no preview");
  await page.evaluate(() => { window.__responses.save_file = "/home/ana/Descargas/informe.pdf"; });
  await line.locator(".save").click();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "save_file"));
  const save = (await calls(page)).find((c) => c.cmd === "save_file");
  assert.deepEqual(save.args, { fileId: "1005", name: "informe.pdf" }, "file ids travel as text");
  await emit(page, [{ type: "file_progress", direction: "download", id: "1005", name: "informe.pdf", done: 614_400, size: 1_234_567 }]);
  assert.equal(await line.locator(".transfer").isVisible(), true);
  assert.equal(await line.locator(".bar").evaluate((b) => b.value), 49);
  assert.equal(await line.locator(".transfer-text").textContent(), "49 % · 614 kB of 1.2 MB");
  await emit(page, [{ type: "file_received", file_id: "1005", name: "informe.pdf", size: 1_234_567, sha256: "ab".repeat(32), path: "/home/ana/Descargas/informe.pdf" }]);
  assert.equal(await line.locator(".transfer").isVisible(), false);
  assert.equal(await line.locator(".file-state").textContent(), "Saved to /home/ana/Descargas/informe.pdf");
  // Cancelling the save dialog writes nothing and shows nothing.
  await page.evaluate(() => { window.__responses.save_file = null; });
  await emit(page, [offered(6, { name: "notas.txt", size: 980, mime: "text/plain" })]);
  await page.locator('[data-file-id="1006"] .save').click();
  await page.waitForFunction(() => window.__calls.filter((c) => c.cmd === "save_file").length === 2);
  assert.equal(await page.locator('[data-file-id="1006"] .transfer').isVisible(), false);
  assert.equal(await page.locator('[data-file-id="1006"] .file-details').textContent(), "980 bytes · Text");

  // In Spanish: the words and the number format follow.
  await page.evaluate(() => { const s = document.querySelector("#language"); s.value = "es"; s.dispatchEvent(new Event("change")); });
  await emit(page, [offered(7)]);
  const es = page.locator('[data-file-id="1007"]');
  assert.equal(await es.locator(".file-details").textContent(), "1,2 MB · Documento PDF");
  assert.equal(await es.locator(".save").textContent(), "Guardar");
  assert.equal(await es.locator(".save").getAttribute("aria-label"), "Guardar informe.pdf");
  assert.equal(await line.locator(".save").textContent(), "Guardar", "lines shown before switch language too");
  assert.deepEqual(page.errors, []);
});

test("Save while the preview is still downloading: the save goes through, \"Saving…\" and its progress stay past the preview, then where it was saved", async () => {
  const page = await inRoom();
  const bytes = png(64, 48);
  await emit(page, [offered(30, { name: "gato.png", size: bytes.length, mime: "image/png" })]);
  await emitTo(page, "file-preview", { state: "loading", file_id: "1030" });
  const line = page.locator('[data-file-id="1030"]');
  await emit(page, [{ type: "file_progress", direction: "download", id: "1030", name: "gato.png", done: 10, size: bytes.length }]);
  await page.evaluate(() => { window.__responses.save_file = "/home/ana/gato.png"; });
  await line.locator(".save").click();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "save_file"));
  assert.deepEqual((await calls(page)).find((c) => c.cmd === "save_file").args, { fileId: "1030", name: "gato.png" });
  await page.waitForFunction(() => document.querySelector('[data-file-id="1030"] .file-state').textContent === "Saving…");
  assert.equal(await page.locator("#log .notice").count(), 0, "no \"already being fetched\" notice");
  // The preview's fetch ends first (in memory: no path), and the preview shows.
  await emit(page, [{ type: "file_received", file_id: "1030", name: "gato.png", size: bytes.length, sha256: "00", path: null }]);
  await previewReady(page, "1030", bytes, 64, 48);
  assert.equal(await line.locator(".file-state").textContent(), "Saving…", "the save is still on its way");
  assert.equal(await line.locator(".transfer").isVisible(), true);
  // Then the save's own fetch.
  await emit(page, [{ type: "file_progress", direction: "download", id: "1030", name: "gato.png", done: bytes.length / 2, size: bytes.length }]);
  assert.equal(await line.locator(".bar").evaluate((b) => b.value), 50);
  await emit(page, [{ type: "file_received", file_id: "1030", name: "gato.png", size: bytes.length, sha256: "00", path: "/home/ana/gato.png" }]);
  assert.equal(await line.locator(".file-state").textContent(), "Saved to /home/ana/gato.png");
  assert.equal(await line.locator(".transfer").isVisible(), false);
  assert.equal(await line.locator(".preview img").isVisible(), true);
  // A save refused for want of free space says so, in words.
  await emit(page, [offered(31, { name: "big.iso", size: 5_000_000, mime: "application/octet-stream" })]);
  await page.evaluate(() => { window.__responses.save_file = "/home/ana/big.iso"; });
  await page.locator('[data-file-id="1031"] .save').click();
  await page.waitForFunction(() => document.querySelector('[data-file-id="1031"] .file-state').textContent === "Saving…");
  await emit(page, [{ type: "file_failed", direction: "download", id: "1031", name: "big.iso", reason: "local_space", message: "not enough free space in /home/ana" }]);
  assert.equal(await page.locator('[data-file-id="1031"] .file-state').textContent(), "Not saved: this computer is short of free space there (not enough free space in /home/ana)");
  assert.deepEqual(page.errors, []);
});

test("an image preview: the backend's checked bytes through a blob: URL of the sniffed type, fitted to 360 px, full size on click, Escape closes and the focus returns", async () => {
  const page = await inRoom();
  const bytes = png(800, 500);
  await emit(page, [offered(8, { name: "playa.png", size: bytes.length, mime: "image/png" })]);
  await emitTo(page, "file-preview", { state: "loading", file_id: "1008" });
  const line = page.locator('[data-file-id="1008"]');
  assert.equal(await line.locator(".transfer").isVisible(), true, "the download of the preview shows its progress");
  await emit(page, [{ type: "file_progress", direction: "download", id: "1008", name: "playa.png", done: bytes.length / 2, size: bytes.length }]);
  await emit(page, [{ type: "file_received", file_id: "1008", name: "playa.png", size: bytes.length, sha256: "00", path: null }]);
  await previewReady(page, "1008", bytes, 800, 500);
  const img = line.locator(".preview img");
  const seen = await img.evaluate(async (n) => {
    const blob = await (await fetch(n.src)).blob();
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return { src: n.src, type: blob.type, sha: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""), width: n.getBoundingClientRect().width, natural: n.naturalWidth };
  });
  assert.match(seen.src, /^blob:/);
  assert.equal(seen.type, "image/png");
  assert.equal(seen.sha, createHash("sha256").update(bytes).digest("hex"), "the bytes shown are the backend's");
  assert.equal(seen.natural, 800);
  assert.ok(seen.width <= 360 && seen.width > 300, `fits the conversation: ${seen.width} px`);
  assert.equal(await line.locator(".transfer").isVisible(), false);
  await line.locator(".save").isVisible();

  await line.locator(".preview").click();
  await page.waitForSelector("#image-dialog[open]");
  assert.equal(await page.locator("#image-full").evaluate((n) => n.src), seen.src);
  assert.equal(await page.locator("#image-name").textContent(), "playa.png");
  await page.screenshot({ path: path.join(shots, "image-full-size.png") });
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !document.querySelector("#image-dialog").open);
  assert.equal(await page.evaluate(() => document.activeElement.classList.contains("preview")), true, "the focus is back on the preview");
  // A click outside the image closes it too; keyboard users get there with Enter.
  await page.keyboard.press("Enter");
  await page.waitForSelector("#image-dialog[open]");
  await page.mouse.click(5, 5);
  await page.waitForFunction(() => !document.querySelector("#image-dialog").open);
  await page.screenshot({ path: path.join(shots, "image-preview.png") });
  assert.deepEqual(page.errors, []);
});

test("an SVG, or a file announced as an image that is not one, stays a file: no image, no blob", async () => {
  const page = await inRoom();
  await emit(page, [offered(9, { name: "logo.svg", size: 2048, mime: "image/svg+xml" }),
    offered(10, { name: "foto.png", size: 40, mime: "image/png" })]);
  await emitTo(page, "file-preview", { state: "loading", file_id: "1010" });
  await emitTo(page, "file-preview", { state: "not_image", file_id: "1010", reason: "its bytes are not a PNG, JPEG, GIF or WebP image" });
  assert.equal(await page.locator("#log img").count(), 0);
  assert.equal(await page.locator('[data-file-id="1009"] .file-details').textContent(), "2 kB · SVG image");
  assert.equal(await page.locator('[data-file-id="1010"] .transfer').isVisible(), false);
  assert.equal(await page.locator('[data-file-id="1010"] .save').isVisible(), true);
  assert.equal(await page.evaluate(() => [...document.querySelectorAll("#log [src]")].length), 0);
  assert.deepEqual(page.errors, []);
});

test("a pasted image is sent as raw bytes under a name; its line shows upload progress, Cancel stops it, and its own file_offered settles it once", async () => {
  const page = await inRoom();
  const bytes = png(40, 30);
  const paste = (name) => page.evaluate(([b, n]) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(b)], n, { type: "image/png" }));
    const box = document.querySelector("#message");
    box.focus();
    box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  }, [[...bytes], name]);
  await paste("image.png");
  await page.waitForSelector("#log .msg.file.pending");
  const sent = (await calls(page)).find((c) => c.cmd === "paste_file");
  assert.deepEqual(Buffer.from(sent.args.bytes), bytes, "the exact bytes");
  assert.match(sent.args.name, /^pasted image \d{4}-\d\d-\d\d \d\d\.\d\d\.png$/);
  assert.equal(await page.locator("#message").inputValue(), "", "nothing pasted as text");
  const pending = page.locator('[data-upload-id="1"]');
  assert.equal(await pending.locator(".status").textContent(), "sending…");
  await emit(page, [{ type: "file_progress", direction: "upload", id: 1, name: sent.args.name, done: 300, size: bytes.length }]);
  assert.ok(Number(await pending.locator(".bar").evaluate((b) => b.value)) > 0);
  await pending.locator(".cancel").click();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "cancel_upload"));
  assert.deepEqual((await calls(page)).find((c) => c.cmd === "cancel_upload").args, { uploadId: 1 });
  await emit(page, [{ type: "file_failed", direction: "upload", id: 1, name: sent.args.name, reason: "cancelled", message: "" }]);
  assert.equal(await pending.locator(".file-state").textContent(), "Cancelled.");
  assert.equal(await pending.locator(".transfer").isVisible(), false);

  // The second one goes through: progress continues across a reconnect, then the room has it.
  await paste("captura.png");
  const second = page.locator('[data-upload-id="2"]');
  await second.waitFor();
  assert.equal(await second.locator(".file-name").textContent(), "captura.png");
  await emit(page, [{ type: "file_progress", direction: "upload", id: 2, name: "captura.png", done: 200, size: bytes.length },
    { type: "reconnecting", attempt: 1, delay_ms: 500, reason: "network" }, connected(),
    { type: "file_progress", direction: "upload", id: 2, name: "captura.png", done: 300, size: bytes.length }]);
  assert.equal(await second.locator(".bar").evaluate((b) => b.value), Math.floor((300 / bytes.length) * 100), "the bar continues");
  await emit(page, [{ type: "file_sent", upload_id: 2, file_id: "18446744073709551557", seq: 12 },
    { ...offered(12, { from: "ana", own: true, upload_id: 2, file_id: "18446744073709551557", name: "captura.png", size: bytes.length, mime: "image/png" }) }]);
  assert.equal(await page.locator('#log .msg.file[data-file-id="18446744073709551557"]').count(), 1, "one line for the file");
  assert.equal(await second.evaluate((n) => n.classList.contains("pending")), false);
  assert.equal(await second.locator(".status").textContent(), "");
  await previewReady(page, "18446744073709551557", bytes, 40, 30);
  assert.deepEqual(page.errors, []);
});

test("dragging files over the window shows the drop overlay; what the backend queued shows as pending lines, what it refused as a notice", async () => {
  const page = await inRoom();
  await emitTo(page, "tauri://drag-enter", { paths: ["/home/ana/a.zip"], position: { x: 10, y: 10 } });
  assert.equal(await page.locator("#drop-overlay").isVisible(), true);
  assert.equal(await page.locator("#drop-overlay").textContent(), "Drop files to send them to the room");
  await page.screenshot({ path: path.join(shots, "drop-overlay.png") });
  await emitTo(page, "tauri://drag-leave", null);
  assert.equal(await page.locator("#drop-overlay").isVisible(), false);
  await emitTo(page, "tauri://drag-enter", { paths: [], position: { x: 1, y: 1 } });
  await emitTo(page, "tauri://drag-drop", { paths: ["/home/ana/a.zip"], position: { x: 1, y: 1 } });
  assert.equal(await page.locator("#drop-overlay").isVisible(), false);
  await emitTo(page, "files-queued", { queued: [{ upload_id: 4, name: "a.zip", size: 5_000_000, mime: "application/zip" }], failed: [{ name: "fotos", message: "not a regular file" }] });
  assert.equal(await page.locator('[data-upload-id="4"] .file-details').textContent(), "5 MB · ZIP archive");
  assert.ok((await page.locator("#log .notice").allTextContents()).includes("fotos was not sent: not a regular file"));
  // Attach: the backend opens the dialog and answers with what it queued.
  await page.evaluate(() => { window.__responses.attach_files = { queued: [{ upload_id: 5, name: "b.pdf", size: 10, mime: "application/pdf" }], failed: [] }; });
  await page.click("#attach");
  await page.locator('[data-upload-id="5"]').waitFor();
  assert.equal((await calls(page)).find((c) => c.cmd === "attach_files").args.title, "Send files to the room");
  assert.deepEqual(page.errors, []);
});

const HOSTILE = [
  '<img src=x onerror="window.__pwned=1">.png',
  "../../etc/passwd",
  "factura\u202Egnp.exe",
  "x".repeat(10_000) + ".pdf",
];

test("hostile names are shown inertly: no element injected, bidi controls isolated, 10 000 characters elided without spilling at 360 px", async () => {
  const page = await inRoom({ viewport: { width: 360, height: 700 } });
  await emit(page, HOSTILE.map((name, i) => offered(20 + i, { name, mime: "application/octet-stream" })));
  const names = await page.$$eval("#log .file-name", (ns) => ns.map((n) => n.textContent));
  assert.deepEqual(names, HOSTILE, "the names as text, exactly");
  assert.equal(await page.locator("#log img").count(), 0, "no element from a name");
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  const layout = await page.evaluate(() => ({
    page: document.documentElement.scrollWidth <= window.innerWidth,
    log: document.querySelector("#log").scrollWidth <= document.querySelector("#log").clientWidth,
    lines: [...document.querySelectorAll("#log .msg.file")].map((n) => n.getBoundingClientRect().right <= document.querySelector("#log").getBoundingClientRect().right + 0.5),
    isolated: [...document.querySelectorAll("#log .file-name")].every((n) => n.dir === "auto" && getComputedStyle(n).unicodeBidi === "isolate"),
    tall: Math.max(...[...document.querySelectorAll("#log .file-name")].map((n) => n.getBoundingClientRect().height)),
  }));
  assert.ok(layout.page && layout.log, "nothing scrolls sideways");
  assert.deepEqual(layout.lines, HOSTILE.map(() => true));
  assert.ok(layout.isolated, "each name is isolated from the text around it");
  assert.ok(layout.tall < 40, `a long name stays on one line, elided: ${layout.tall} px`);
  // The bidi override does not reorder what follows the name.
  const details = await page.locator('[data-file-id="1022"] .file-details').textContent();
  assert.match(details, /^\d/);
  await page.screenshot({ path: path.join(shots, "hostile-file-names-360.png") });
  assert.deepEqual(page.errors, []);
});

test("files in history and older pages can be previewed and saved; one the host no longer keeps says so", async () => {
  const page = await inRoom();
  await emit(page, [{ ...connected(), oldest_seq: 1 }, offered(40, { history: true })]);
  await page.evaluate(() => { window.__responses.save_file = "/tmp/x"; });
  await emit(page, [{ type: "older", more: false, events: [offered(3, { history: true, name: "viejo.pdf" })] }]);
  const old = page.locator('[data-file-id="1003"]');
  assert.equal(await old.locator(".file-name").textContent(), "viejo.pdf");
  await old.locator(".save").click();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "save_file" && c.args.fileId === "1003"));
  await emit(page, [{ type: "file_failed", direction: "download", id: "1003", name: "viejo.pdf", reason: "gone", message: "gone" }]);
  assert.equal(await old.locator(".file-state").textContent(), "No longer available: the host no longer keeps this file.");
  assert.equal(await old.locator(".save").isVisible(), false);
  // A preview dropped to save memory: its blob: URL is revoked, "Show preview" fetches it again.
  const bytes = png(20, 20);
  await emit(page, [offered(41, { name: "a.png", mime: "image/png", size: bytes.length })]);
  await previewReady(page, "1041", bytes, 20, 20);
  const url = await page.locator('[data-file-id="1041"] img').getAttribute("src");
  await emitTo(page, "file-preview", { state: "dropped", file_id: "1041" });
  assert.equal(await page.locator('[data-file-id="1041"] img').count(), 0);
  const revoked = await page.evaluate((u) => fetch(u).then(() => false, () => true), url);
  assert.equal(revoked, true, "the blob: URL is revoked");
  await page.locator('[data-file-id="1041"] .show-preview').click();
  await page.waitForFunction(() => window.__calls.some((c) => c.cmd === "load_preview"));
  assert.deepEqual((await calls(page)).find((c) => c.cmd === "load_preview").args, { fileId: "1041", mime: "image/png", size: bytes.length });
  assert.deepEqual(page.errors, []);
});

test("WCAG AA contrast with file lines, progress, failures, a preview and the full-size overlay, in both themes; 360 px screenshots", async () => {
  for (const colorScheme of ["light", "dark"]) {
    for (const width of [1280, 360]) {
      const page = await inRoom({ colorScheme, viewport: { width, height: 760 } });
      const bytes = png(640, 400);
      await emit(page, [{ type: "message", seq: 2, time_ms: 1795604686046, from: "ben", text: "mira la foto", own: false, msg_id: null, history: false },
        offered(3, { name: "playa.png", mime: "image/png", size: bytes.length }), offered(4),
        offered(5, { name: "viejo.zip", mime: "application/zip" })]);
      await previewReady(page, "1003", bytes, 640, 400);
      await emit(page, [{ type: "file_progress", direction: "download", id: "1004", name: "informe.pdf", done: 400_000, size: 1_234_567 },
        { type: "file_failed", direction: "download", id: "1005", name: "viejo.zip", reason: "gone", message: "" }]);
      await page.evaluate(() => { window.__responses.paste_file = null; });
      await emitTo(page, "files-queued", { queued: [{ upload_id: 9, name: "notas.txt", size: 3000, mime: "text/plain" }], failed: [] });
      await emit(page, [{ type: "file_progress", direction: "upload", id: 9, name: "notas.txt", done: 1000, size: 3000 }]);
      assert.deepEqual(await contrastProblems(page), [], `${colorScheme} ${width} px files`);
      assert.equal(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true, "nothing spills");
      await page.screenshot({ path: path.join(shots, `files-${colorScheme}-${width}.png`) });
      await page.locator('[data-file-id="1003"] .preview').click();
      await page.waitForSelector("#image-dialog[open]");
      assert.deepEqual(await contrastProblems(page), [], `${colorScheme} ${width} px full-size overlay`);
      await page.keyboard.press("Escape");
      await emitTo(page, "tauri://drag-enter", { paths: [], position: { x: 0, y: 0 } });
      assert.deepEqual(await contrastProblems(page), [], `${colorScheme} ${width} px drop overlay`);
      assert.deepEqual(page.errors, []);
      await page.context().close();
    }
  }
});
