// What a shared file's line says about it, worked out from event data: its size in the
// locale's words ("1.2 MB", "1,2 MB"), its type ("PNG image", "PDF document", "ZIP file"),
// how far a transfer is, and the name a pasted image is sent under. Pure: no DOM,
// unit-tested with node --test (tests/unit.test.mjs).
import { t, currentLocale } from "./i18n.js";

// The most bytes a pasted file may have: the host's per-file limit (src-tauri MAX_PASTE_BYTES).
export const MAX_PASTE_BYTES = 100 * 1024 * 1024;

const UNITS = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"];

// A size in bytes as people read it, in the locale: decimal units, at most one decimal
// ("980 bytes", "1.2 MB"); nonsense (negative, not a number) reads as 0.
export function humanSize(bytes, locale = currentLocale()) {
  let value = Number.isFinite(Number(bytes)) && Number(bytes) > 0 ? Number(bytes) : 0;
  let unit = 0;
  while (value >= 1000 && unit < UNITS.length - 1) { value /= 1000; unit += 1; }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return new Intl.NumberFormat(locale, {
    style: "unit", unit: UNITS[unit], unitDisplay: unit === 0 ? "long" : "short", maximumFractionDigits: digits,
  }).format(value);
}

// Formats shown by name, from the sender's MIME hint.
const KINDS = {
  "image/png": ["file.kind.image", "PNG"], "image/jpeg": ["file.kind.image", "JPEG"],
  "image/gif": ["file.kind.image", "GIF"], "image/webp": ["file.kind.image", "WebP"],
  "image/svg+xml": ["file.kind.image", "SVG"], "application/pdf": ["file.kind.document", "PDF"],
  "text/plain": ["file.kind.text"], "application/zip": ["file.kind.archive", "ZIP"],
  "audio/mpeg": ["file.kind.audio", "MP3"], "video/mp4": ["file.kind.video", "MP4"],
};

// The extension of a name, upper case, if it is a short plain one ("tar.gz" -> "GZ").
function extension(name) {
  const dot = String(name).lastIndexOf(".");
  const ext = dot > 0 ? String(name).slice(dot + 1) : "";
  return /^[A-Za-z0-9]{1,8}$/.test(ext) ? ext.toUpperCase() : "";
}

// The type of a file as [translation key, vars]: by its MIME hint, else its extension.
export function fileKind(name, mime) {
  const known = KINDS[String(mime || "").toLowerCase()];
  if (known) return [known[0], { format: known[1] ?? extension(name) }];
  const ext = extension(name);
  return ext ? ["file.kind.other", { format: ext }] : ["file.kind.unknown", {}];
}

// How far a transfer is, 0 to 100 (whole numbers; 100 only when done).
export function percent(done, size) {
  const d = Number(done), s = Number(size);
  if (!(s > 0)) return d >= 0 ? 100 : 0;
  const p = Math.floor((Math.min(Math.max(d, 0), s) / s) * 100);
  return d >= s ? 100 : Math.min(p, 99);
}

const PASTE_EXT = { "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp" };

// The name a pasted file is sent under: its own if the clipboard gave a real one, else
// "pasted image 2026-12-03 09.31.png" (local time; the extension from its type).
export function pasteName(file, now = new Date()) {
  const own = String(file?.name || "");
  if (own && !/^image\.(png|jpe?g|gif|webp)$/i.test(own)) return own;
  const pad = (n) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())} ${pad(now.getHours())}.${pad(now.getMinutes())}`;
  const ext = PASTE_EXT[String(file?.type || "").toLowerCase()] || extension(own).toLowerCase() || "png";
  return `${t("file.pasted_name")} ${stamp}.${ext}`;
}
