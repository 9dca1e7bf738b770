// Invite codes: tertulia://HOST:PORT#PASSPHRASE, as the app shows them when hosting (an IPv6
// host in brackets). Pasting one into the Join form fills in address, port and passphrase.
// Pure: no DOM, unit-tested with node --test.

// The host without brackets, the port as typed (digits) and the passphrase after '#',
// percent-decoded; null when the text is not an invite code. A '%' not followed by two hex
// digits makes decodeURIComponent throw (URIError): today's behaviour, kept until the issue
// that fixes '%' handling.
export function parseInvite(text) {
  const m = /^tertulia:\/\/(\[[^\]]+\]|[^:\/#]+):(\d+)#(.+)$/.exec(text.trim());
  if (!m) return null;
  return { host: m[1].replace(/^\[|\]$/g, ""), port: m[2], passphrase: decodeURIComponent(m[3]) };
}
