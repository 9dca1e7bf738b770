// Form validation: one check per field, each returning what to fix (a sentence naming the
// field) or null. Mirrors the core's rules so mistakes are caught as the form is submitted;
// the backend checks again. Pure: no DOM, unit-tested with node --test.
import { t } from "./i18n.js";

export function checkNick(raw) {
  const nick = raw.trim();
  if (!nick) return t("check.nick_empty");
  if ([...nick].length > 32) return t("check.nick_long");
  if (/[\u0000-\u001f\u007f-\u009f\u00ad\u200b\u200c\u200e\u200f\u2028-\u202e\u2060-\u206f\ufeff]/.test(nick)) return t("check.nick_invisible");
  if (/\s\s/.test(nick) || /[^\S ]/.test(nick)) return t("check.nick_spaces");
  return null;
}

export function checkPort(raw) {
  const n = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || n < 1 || n > 65535) return t("check.port");
  return null;
}

// A history limit on the Host form: blank (the default) or a whole number from 1 to max.
export function checkKeep(raw, max, key) {
  const text = raw.trim();
  if (!text) return null;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max) return t(key, { max });
  return null;
}

export function checkPassphrase(raw) {
  if (!raw.trim()) return t("check.passphrase");
  return null;
}

export function checkHost(raw) {
  const host = raw.trim().replace(/^\[|\]$/g, "");
  if (!host) return t("check.host_empty");
  const ipv6 = host.includes(":");
  if (!ipv6 && !/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(host)) return t("check.host_bad");
  return null;
}

// The longest room name the network announcement carries (docs/PROTOCOL.md §14: the TXT
// value `room`, in UTF-8 bytes).
export const ROOM_NAME_MAX_BYTES = 63;
const utf8Length = (text) => new TextEncoder().encode(text).length;

// The Host form's room name: blank means the default; at most 63 bytes of UTF-8, no
// control or invisible characters.
export function checkRoomName(raw) {
  const name = raw.trim();
  if (utf8Length(name) > ROOM_NAME_MAX_BYTES || /[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/.test(name)) return t("check.room_name");
  return null;
}

// The default room name, `make(nick)`, with the nickname shortened (at a character
// boundary) until it fits the announcement: {name, nick} (the nickname used).
export function fitRoomName(make, nick) {
  const chars = [...nick];
  while (chars.length && utf8Length(make(chars.join(""))) > ROOM_NAME_MAX_BYTES) chars.pop();
  return { name: make(chars.join("")), nick: chars.join("") };
}
