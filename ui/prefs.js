// Form values remembered between runs (localStorage): nickname, address and ports, never
// the passphrase. Storage that is unavailable (private mode) remembers nothing.

export function remember(key, value) { try { localStorage.setItem("tertulia." + key, value); } catch (_) { /* private mode */ } }
// Form values to remember once the room has taken us in ("connected"), so that a refused
// nickname or an address that never answered is not what the form offers next time.
let untilJoined = null;
export function rememberWhenJoined(values) { untilJoined = values; }
export function joined(nick) {
  if (!untilJoined) return;
  for (const [key, value] of Object.entries(untilJoined)) remember(key, value);
  remember("nick", nick);
  untilJoined = null;
}
export function forgetUnjoined() { untilJoined = null; }

export function recall(key) { try { return localStorage.getItem("tertulia." + key) || ""; } catch (_) { return ""; } }
