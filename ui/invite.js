// Invite codes: tertulia://HOST:PORT#PASSPHRASE (docs/PROTOCOL.md, "Invite codes"), as the
// app shows them when hosting. Pasting one into the Join form fills in address, port and
// passphrase. The passphrase is percent-encoded as UTF-8 (encodeURIComponent); an IPv6 host
// is in brackets. core/src/invite.rs is the other implementation: both check the vectors in
// docs/vectors/invite.json. Pure: no DOM, unit-tested with node --test.

import { t } from "./i18n.js";

const SCHEME = "tertulia://";

// A text that starts like an invite code but cannot be used. `reason`: "bad_host",
// "bad_port", "bad_fingerprint", "damaged_encoding" or "empty_passphrase" (the vectors' names).
export class InviteError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = "InviteError";
    this.reason = reason;
  }
}

// The message, in the window's language: locales' "invite_error.<reason>".
const fail = (reason) => { throw new InviteError(reason, t("invite_error." + reason)); };

// { host (IPv6 without brackets), port (number), passphrase (decoded) }; null when the text
// is not an invite code at all (does not start with tertulia://); throws InviteError when it
// is one but damaged.
export function parseInvite(text) {
  const trimmed = String(text ?? "").trim();
  if (!trimmed.startsWith(SCHEME)) return null;
  const rest = trimmed.slice(SCHEME.length);
  const hash = rest.indexOf("#");
  const beforeHash = hash < 0 ? rest : rest.slice(0, hash);
  const encoded = hash < 0 ? "" : rest.slice(hash + 1);
  const slash = beforeHash.indexOf("/");
  const authority = slash < 0 ? beforeHash : beforeHash.slice(0, slash);
  let fingerprint = null;
  if (slash >= 0) fingerprint = parseFingerprint(beforeHash.slice(slash + 1));
  let host, port;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) fail("bad_host");
    host = authority.slice(1, close);
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || !host.includes(":")) fail("bad_host");
    const after = authority.slice(close + 1);
    if (!after.startsWith(":")) fail("bad_port");
    port = after.slice(1);
  } else {
    const colon = authority.lastIndexOf(":");
    if (colon < 0) fail("bad_port");
    host = authority.slice(0, colon);
    port = authority.slice(colon + 1);
    if (!/^[A-Za-z0-9.-]+$/.test(host)) fail("bad_host");
  }
  if (!/^[0-9]+$/.test(port) || Number(port) < 1 || Number(port) > 65535) fail("bad_port");
  let passphrase;
  try { passphrase = decodeURIComponent(encoded); } catch (_) { fail("damaged_encoding"); }
  if (passphrase === "") fail("empty_passphrase");
  const invite = { host, port: Number(port), passphrase };
  if (fingerprint !== null) invite.fingerprint = fingerprint;
  return invite;
}

// A host fingerprint: 24 hex digits, any case, dashes allowed between them; returned in the
// canonical form (6 groups of 4 lowercase digits joined by "-"). Damaged: InviteError.
function parseFingerprint(text) {
  if (/^-|-$|--/.test(text)) fail("bad_fingerprint");
  const digits = text.replace(/-/g, "");
  if (!/^[0-9A-Fa-f]{24}$/.test(digits)) fail("bad_fingerprint");
  return digits.toLowerCase().match(/.{4}/g).join("-");
}

// The invite code for { host, port, passphrase }.
export function formatInvite({ host, port, passphrase, fingerprint }) {
  const shown = host.includes(":") ? `[${host}]` : host;
  const fp = fingerprint ? `/${fingerprint}` : "";
  return `${SCHEME}${shown}:${port}${fp}#${encodeURIComponent(passphrase)}`;
}
