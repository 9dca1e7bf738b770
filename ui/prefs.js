// Form values remembered between runs (localStorage): nickname, address and ports, never
// the passphrase. Storage that is unavailable (private mode) remembers nothing.

export function remember(key, value) { try { localStorage.setItem("tertulia." + key, value); } catch (_) { /* private mode */ } }
export function recall(key) { try { return localStorage.getItem("tertulia." + key) || ""; } catch (_) { return ""; } }
