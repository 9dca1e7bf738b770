// Form validation: one check per field, each returning what to fix (a sentence naming the
// field) or null. Mirrors the core's rules so mistakes are caught as the form is submitted;
// the backend checks again. Pure: no DOM, unit-tested with node --test.

export function checkNick(raw) {
  const nick = raw.trim();
  if (!nick) return "Nickname: please choose a nickname.";
  if ([...nick].length > 32) return "Nickname: at most 32 characters.";
  if (/[\u0000-\u001f\u007f-\u009f\u00ad\u200b\u200c\u200e\u200f\u2028-\u202e\u2060-\u206f\ufeff]/.test(nick)) return "Nickname: no control or invisible characters.";
  if (/\s\s/.test(nick) || /[^\S ]/.test(nick)) return "Nickname: only single spaces between words.";
  return null;
}

export function checkPort(raw) {
  const n = Number(raw.trim());
  if (!/^\d+$/.test(raw.trim()) || n < 1 || n > 65535) return "Port: a number from 1 to 65535.";
  return null;
}

export function checkPassphrase(raw) {
  if (!raw.trim()) return "Passphrase: please enter the room passphrase.";
  return null;
}

export function checkHost(raw) {
  const host = raw.trim().replace(/^\[|\]$/g, "");
  if (!host) return "Address: enter the host's IP address or name.";
  const ipv6 = host.includes(":");
  if (!ipv6 && !/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(host)) return "Address: not an IP address or host name.";
  return null;
}
