// Unit tests of the UI's pure modules (validation, invite codes, mentions, wording, history
// paging), imported directly into node: no browser, no DOM. Views are tested in ui.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkNick, checkPort, checkPassphrase, checkHost, checkKeep, checkRoomName, fitRoomName } from "../validate.js";
import { readFileSync } from "node:fs";
import { parseInvite, formatInvite, InviteError } from "../invite.js";
import { mentions } from "../mention.js";
import {
  clock, errorText, joinNotice, leaveNotice, typingText, memberCount, connectingText,
  secondsLeft, reconnectingText, disconnectedText, nickRejectedText, stopHostingQuestion,
  nickErrorText, clientErrorText,
} from "../text.js";
import { t, setLanguage, pickLanguage, localeFor, LANGUAGES } from "../i18n.js";
import en from "../locales/en.js";
import es from "../locales/es.js";
import { oldestAfter, earlierAvailable } from "../paging.js";

test("checkNick accepts ordinary nicknames, trimmed, up to 32 characters", () => {
  for (const ok of ["ana", "  ana  ", "Ana María", "ñandú", "x".repeat(32), "👋".repeat(32), "a-b_c.d"]) {
    assert.equal(checkNick(ok), null, JSON.stringify(ok));
  }
});

test("checkNick accepts emoji, selectors and joiners included (the core checks where they sit)", () => {
  for (const ok of ["ana ❤️", "ben ✌️", "👩‍💻 cat", "🏳️‍🌈", "1️⃣ dan", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 eve"]) {
    assert.equal(checkNick(ok), null, JSON.stringify(ok));
  }
});

test("checkNick says what is wrong with a nickname", () => {
  assert.equal(checkNick(""), "Nickname: please choose a nickname.");
  assert.equal(checkNick("   "), "Nickname: please choose a nickname.");
  assert.equal(checkNick("x".repeat(33)), "Nickname: at most 32 characters.");
  assert.equal(checkNick("👋".repeat(33)), "Nickname: at most 32 characters.", "counts characters, not UTF-16 units");
  for (const hidden of ["a\u0007b", "a\u200bb", "a\u00adb", "a\u202eb", "a\ufeffb", "a\u2060b", "a\u0085b"]) {
    assert.equal(checkNick(hidden), "Nickname: no control or invisible characters.", JSON.stringify(hidden));
  }
  assert.equal(checkNick("ana  maria"), "Nickname: only single spaces between words.");
  assert.equal(checkNick("ana\u00a0maria"), "Nickname: only single spaces between words.");
  assert.equal(checkNick("ana\u3000maria"), "Nickname: only single spaces between words.");
});

test("checkPort accepts 1 to 65535 written as digits", () => {
  for (const ok of ["1", "5555", " 80 ", "65535", "005555"]) assert.equal(checkPort(ok), null, ok);
  for (const bad of ["", " ", "0", "65536", "70000", "-1", "12a", "1e3", "55.5", "0x10"]) {
    assert.equal(checkPort(bad), "Port: a number from 1 to 65535.", JSON.stringify(bad));
  }
});

test("checkPassphrase wants something other than spaces", () => {
  assert.equal(checkPassphrase("open sesame"), null);
  assert.equal(checkPassphrase(" x "), null);
  assert.equal(checkPassphrase(""), "Passphrase: please enter the room passphrase.");
  assert.equal(checkPassphrase("   "), "Passphrase: please enter the room passphrase.");
});

test("checkHost accepts IPv4, IPv6 (bracketed or not) and host names", () => {
  for (const ok of ["192.168.1.20", " 10.0.0.7 ", "localhost", "my-box.lan", "fd00::2", "[fd00::2]", "::1"]) {
    assert.equal(checkHost(ok), null, ok);
  }
  assert.equal(checkHost(""), "Address: enter the host's IP address or name.");
  assert.equal(checkHost("[]"), "Address: enter the host's IP address or name.");
  for (const bad of ["bad host!", "a..b", ".lan", "box.", "under_score", "ana@box"]) {
    assert.equal(checkHost(bad), "Address: not an IP address or host name.", bad);
  }
});

test("checkHost takes anything with a ':' for an IPv6 address and leaves it to the backend", () => {
  assert.equal(checkHost("fd00::zz"), null);
  assert.equal(checkHost("tertulia://x"), null);
});

// The invite vectors core/src/invite.rs checks too: the two implementations cannot drift.
const INVITES = JSON.parse(readFileSync(new URL("../../docs/vectors/invite.json", import.meta.url), "utf8"));

test("parseInvite reads every valid vector; formatInvite writes it back as listed", () => {
  assert.ok(INVITES.valid.length >= 6);
  for (const v of INVITES.valid) {
    const invite = parseInvite(v.invite);
    const expected = { host: v.host, port: v.port, passphrase: v.passphrase };
    if (v.fingerprint) expected.fingerprint = v.fingerprint;
    assert.deepEqual(invite, expected, JSON.stringify(v.invite));
    assert.equal(formatInvite(invite), v.formatted, JSON.stringify(v.invite));
    assert.deepEqual(parseInvite(formatInvite(invite)), invite, "what is formatted reads back");
  }
});

test("parseInvite: null for what is not an invite code, an InviteError naming the damage otherwise", () => {
  assert.ok(INVITES.invalid.length >= 10);
  for (const v of INVITES.invalid) {
    if (v.error === "not_an_invite") {
      assert.equal(parseInvite(v.invite), null, JSON.stringify(v.invite));
    } else {
      assert.throws(() => parseInvite(v.invite), (e) => e instanceof InviteError && e.reason === v.error && e.message.length > 0,
        `${JSON.stringify(v.invite)}: ${v.error}`);
    }
  }
});

test("formatInvite: any passphrase survives the round trip", () => {
  for (const passphrase of ["%", "%%25", "#", "a b", "ñ", "❤️", "🏳️‍🌈", "x".repeat(1024)]) {
    const invite = { host: "::1", port: 1, passphrase };
    assert.deepEqual(parseInvite(formatInvite(invite)), invite);
  }
});

test("mentions: the nickname as a whole word, any case, with or without '@'", () => {
  for (const text of ["ana", "hello ana", "hello Ana!", "ANA, look", "@ana hi", "hi @Ana.", "(ana)", "ana\nhi", "«ana»"]) {
    assert.equal(mentions(text, "ana"), true, JSON.stringify(text));
  }
  for (const text of ["banana", "anabel", "ana_b", "ana2", "ñana", "anaé", "hello", "a n a", ""]) {
    assert.equal(mentions(text, "ana"), false, JSON.stringify(text));
  }
});

test("mentions: nicknames with spaces, punctuation or regex characters match literally", () => {
  assert.equal(mentions("hi Ana María!", "Ana María"), true);
  assert.equal(mentions("hi Ana", "Ana María"), false);
  assert.equal(mentions("ping a.b", "a.b"), true);
  assert.equal(mentions("ping axb", "a.b"), false);
  assert.equal(mentions("c++ rocks", "c++"), true);
  assert.equal(mentions("what? (x)", "(x)"), true);
  assert.equal(mentions("ÑANDÚ was here", "ñandú"), true, "case folding beyond ASCII");
});

test("mentions: no nickname yet, no mention", () => {
  assert.equal(mentions("anything", ""), false);
  assert.equal(mentions("", ""), false);
});

test("join and leave notices: what happened, by leave reason, after the local time", () => {
  const time_ms = Date.UTC(2026, 11, 2, 6, 41);
  const line = (notice) => t(...notice);
  assert.equal(line(joinNotice({ nick: "carol", time_ms })), `${clock(time_ms)} · carol joined`);
  assert.equal(line(leaveNotice({ nick: "ben", reason: "quit", time_ms })), `${clock(time_ms)} · ben left`);
  assert.equal(line(leaveNotice({ nick: "ben", reason: "connection_lost", time_ms })), `${clock(time_ms)} · ben lost connection`);
  assert.equal(line(leaveNotice({ nick: "ben", reason: "renamed", time_ms })), `${clock(time_ms)} · ben changed nickname`);
  assert.equal(line(leaveNotice({ nick: "ben", reason: "kicked", time_ms })), `${clock(time_ms)} · ben left`, "an unknown reason reads 'left'");
  assert.match(clock(time_ms), /^\d\d:\d\d/);
  assert.equal(clock(0), clock(Date.now()), "no room time: now");
});

test("typingText names one or two people, then says several", () => {
  assert.equal(typingText([]), "");
  assert.equal(typingText(["ben"]), "ben is typing…");
  assert.equal(typingText(["ben", "carol"]), "ben and carol are typing…");
  assert.equal(typingText(["ben", "carol", "dan"]), "Several people are typing…");
});

test("memberCount: singular and plural", () => {
  assert.equal(memberCount(0), "0 members");
  assert.equal(memberCount(1), "1 member");
  assert.equal(memberCount(2), "2 members");
});

test("connection bar lines: connecting, the reconnect countdown, disconnected", () => {
  assert.equal(connectingText(1), "Connecting…");
  assert.equal(connectingText(0), "Connecting…");
  assert.equal(connectingText(3), "Connecting (attempt 3)…");
  assert.equal(secondsLeft(10_000, 7_000), 3);
  assert.equal(secondsLeft(10_000, 7_001), 3, "rounds up");
  assert.equal(secondsLeft(10_000, 9_999), 1);
  assert.equal(secondsLeft(10_000, 10_000), 0);
  assert.equal(secondsLeft(10_000, 12_000), 0, "never negative");
  assert.equal(reconnectingText(3, 2), "Reconnecting in 3 s (attempt 2)");
  assert.equal(reconnectingText(0, 2), "Reconnecting (attempt 2)…");
  assert.equal(disconnectedText("quit", "left the room"), "Left the room");
  assert.equal(disconnectedText("gave_up", "gave up after 5 attempts"), "Disconnected: gave up after 5 attempts");
});

test("nickname dialog and stop-hosting question", () => {
  assert.equal(nickRejectedText("Ben", "that nickname is already taken"), '"Ben" can\'t be used: that nickname is already taken');
  assert.equal(stopHostingQuestion(0), "Stop hosting this room? Nobody else is in the room.");
  assert.equal(stopHostingQuestion(-1), "Stop hosting this room? Nobody else is in the room.");
  assert.equal(stopHostingQuestion(1), "Stop hosting this room? The other member will be told the room is closing.");
  assert.equal(stopHostingQuestion(3), "Stop hosting this room? The 3 other members will be told the room is closing.");
});

test("errorText: a rejected command's string, an exception's message, anything else as text", () => {
  assert.equal(errorText("address in use"), "address in use");
  assert.equal(errorText(new Error("boom")), "boom");
  assert.equal(errorText({ message: "from an object" }), "from an object");
  assert.equal(errorText(42), "42");
  assert.equal(errorText(null), "null");
});

test("errorText: a command error by its kind, in the window's language, else its message", () => {
  const busy = { kind: "port_in_use", port: 5555, message: "port 5555 is already in use on this computer; choose another" };
  assert.equal(errorText(busy), "Port 5555 is already in use on this computer; choose another.");
  assert.equal(errorText({ kind: "send_refused", reason: "too_long", message: "the message is longer…" }), "the message is longer than the room allows");
  assert.equal(errorText({ kind: "invalid", message: "Address: 'x y' is not an IP address or host name" }), "Address: 'x y' is not an IP address or host name");
  assert.equal(errorText({ kind: "invalid_nick", reason: "mixed_scripts", message: "Nickname: …" }), "Nickname: a word of the nickname mixes alphabets (for example Latin and Cyrillic letters).");
  assert.equal(errorText({ kind: "invalid_nick", reason: "from_a_newer_core", message: "Nickname: the core's words" }), "Nickname: the core's words", "an unknown reason keeps the core's message");
  assert.equal(errorText({ kind: "something_new", message: "as the backend words it" }), "as the backend words it");
  setLanguage("es");
  try {
    assert.equal(errorText(busy), "El puerto 5555 ya está en uso en este equipo; elige otro.");
    assert.equal(errorText({ kind: "host_failed", port: 80, reason: "no data directory" }), "No se pudo abrir la sala en el puerto 80: no data directory");
    assert.equal(errorText({ kind: "invalid_nick", reason: "no_letter_or_digit", message: "Nickname: …" }), "Apodo: el apodo necesita al menos una letra o un número.");
  } finally {
    setLanguage("en");
  }
});

test("oldestAfter keeps the lowest sequence number shown", () => {
  assert.equal(oldestAfter(null, 50), 50);
  assert.equal(oldestAfter(50, 48), 48);
  assert.equal(oldestAfter(48, 51), 48);
  assert.equal(oldestAfter(48, null), 48, "events without a sequence number change nothing");
  assert.equal(oldestAfter(null, undefined), null);
  assert.equal(oldestAfter(5, 0), 0);
});

test("earlierAvailable: the last page's 'more' decides, else the room's oldest against the oldest shown", () => {
  assert.equal(earlierAvailable(true, null, null), true);
  assert.equal(earlierAvailable(false, 1, 50), false, "the page said nothing is older");
  assert.equal(earlierAvailable(undefined, 1, 50), true);
  assert.equal(earlierAvailable(undefined, 50, 50), false);
  assert.equal(earlierAvailable(undefined, null, 50), false, "room's oldest not known yet");
  assert.equal(earlierAvailable(undefined, 1, null), false, "nothing shown yet");
  assert.equal(earlierAvailable(undefined, 0, 1), true);
});

// ---------- translations ----------

test("pickLanguage: the saved choice, else the first supported system language, else English", () => {
  assert.equal(pickLanguage("es", ["en-US"]), "es");
  assert.equal(pickLanguage("", ["es-AR", "en"]), "es");
  assert.equal(pickLanguage(null, ["fr-FR", "es-ES"]), "es");
  assert.equal(pickLanguage("", ["en_GB"]), "en");
  assert.equal(pickLanguage("", ["fr", "de"]), "en");
  assert.equal(pickLanguage("klingon", []), "en");
  assert.equal(localeFor("es", ["en-US", "es-MX"]), "es-MX", "the system's own variant of the language");
  assert.equal(localeFor("es", ["en-US"]), "es");
});

test("every string exists in English and Spanish, with the same placeholders, and Spanish is translated", () => {
  assert.deepEqual(LANGUAGES.sort(), ["en", "es"]);
  assert.deepEqual(Object.keys(es).sort(), Object.keys(en).sort());
  const forms = (v) => (typeof v === "string" ? [v] : Object.values(v));
  const holes = (v) => [...new Set(forms(v).flatMap((s) => s.match(/\{\w+\}/g) || []))].sort();
  const same = [];
  for (const key of Object.keys(en)) {
    assert.deepEqual(holes(es[key]), holes(en[key]), key);
    if (JSON.stringify(es[key]) === JSON.stringify(en[key])) same.push(key);
  }
  assert.deepEqual(same, ["app.name"], "only the name stays the same in Spanish");
});

test("Spanish: the window's lines, plurals and 24-hour times", () => {
  setLanguage("es");
  try {
    const time_ms = new Date(2026, 11, 2, 17, 5).getTime();
    assert.equal(clock(time_ms), "17:05");
    assert.equal(t(...joinNotice({ nick: "carol", time_ms })), "17:05 · carol se ha unido");
    assert.equal(typingText(["ben"]), "ben está escribiendo…");
    assert.equal(memberCount(1), "1 miembro");
    assert.equal(memberCount(3), "3 miembros");
    assert.equal(reconnectingText(3, 2), "Reconectando en 3 s (intento 2)");
    assert.equal(stopHostingQuestion(2), "¿Cerrar esta sala? Se avisará a los otros 2 miembros de que la sala se cierra.");
    assert.equal(checkNick(""), "Apodo: elige un apodo.");
    assert.equal(nickErrorText("taken", "that nickname is already taken"), "ese apodo, u otro que se ve igual, ya está en uso en esta sala; elige otro");
    assert.equal(clientErrorText("wrong_passphrase", "wrong passphrase"), "La contraseña de la sala no es correcta.");
    assert.equal(clientErrorText("some_new_kind", "the core's words"), "the core's words", "an unknown kind keeps the core's message");
    assert.equal(clientErrorText("too_many_failed_attempts", "retry in 42 s", 42), "Demasiados intentos fallidos desde tu red; se reintentará en 42 s.");
  } finally {
    setLanguage("en");
  }
});

test("checkKeep: blank keeps the default; a whole number from 1 to max, else what to fix", () => {
  assert.equal(checkKeep("", 3650, "check.keep_days"), null);
  assert.equal(checkKeep("  ", 3650, "check.keep_days"), null);
  assert.equal(checkKeep(" 30 ", 3650, "check.keep_days"), null);
  assert.equal(checkKeep("3650", 3650, "check.keep_days"), null);
  for (const bad of ["0", "3651", "-1", "1.5", "1e3", "ten"]) {
    assert.match(checkKeep(bad, 3650, "check.keep_days"), /between 1 and 3650 days/, bad);
  }
});

// ---------- files (filemeta.js) ----------
import { humanSize, fileKind, percent, pasteName, MAX_PASTE_BYTES } from "../filemeta.js";

test("file sizes read in the locale: decimal units, one decimal at most, nonsense as 0", () => {
  assert.equal(humanSize(0, "en"), "0 bytes");
  assert.equal(humanSize(980, "en"), "980 bytes");
  assert.equal(humanSize(1_234_567, "en"), "1.2 MB");
  assert.equal(humanSize(1_234_567, "es"), "1,2 MB");
  assert.equal(humanSize(512_000, "en"), "512 kB");
  assert.equal(humanSize(104_857_600, "en"), "105 MB");
  assert.equal(humanSize(3.5e12, "en"), "3.5 TB");
  assert.equal(humanSize(-5, "en"), "0 bytes");
  assert.equal(humanSize("lots", "en"), "0 bytes");
  assert.equal(MAX_PASTE_BYTES, 100 * 1024 * 1024, "the host's per-file limit");
});

test("a file's type by its MIME hint, else its extension; no markup or long junk from a hostile name", () => {
  setLanguage("en");
  assert.equal(t(...fileKind("a.png", "image/png")), "PNG image");
  assert.equal(t(...fileKind("logo.svg", "image/svg+xml")), "SVG image");
  assert.equal(t(...fileKind("informe.pdf", "application/pdf")), "PDF document");
  assert.equal(t(...fileKind("datos.tar.gz", "application/octet-stream")), "GZ file");
  assert.equal(t(...fileKind("README", "application/octet-stream")), "File");
  assert.equal(t(...fileKind("x.<b>bold</b>", "application/octet-stream")), "File");
  assert.equal(t(...fileKind(".bashrc", "")), "File");
  setLanguage("es");
  assert.equal(t(...fileKind("a.png", "image/png")), "Imagen PNG");
  setLanguage("en");
});

test("transfer progress is whole percent, 100 only when done, sane with nonsense", () => {
  assert.equal(percent(0, 1000), 0);
  assert.equal(percent(999, 1000), 99);
  assert.equal(percent(1000, 1000), 100);
  assert.equal(percent(5000, 1000), 100);
  assert.equal(percent(-3, 1000), 0);
  assert.equal(percent(0, 0), 100, "an empty file is done");
});

test("a pasted image is named by the time, with its type's extension, unless it has a real name", () => {
  setLanguage("en");
  const at = new Date(2026, 11, 3, 9, 5);
  assert.equal(pasteName({ name: "image.png", type: "image/png" }, at), "pasted image 2026-12-03 09.05.png");
  assert.equal(pasteName({ name: "", type: "image/jpeg" }, at), "pasted image 2026-12-03 09.05.jpg");
  assert.equal(pasteName({ name: "captura.webp", type: "image/webp" }, at), "captura.webp");
  setLanguage("es");
  assert.equal(pasteName({ name: "image.gif", type: "image/gif" }, at), "imagen pegada 2026-12-03 09.05.gif");
  setLanguage("en");
});

test("room names: at most 63 bytes of UTF-8, nothing invisible; a default shortens the nickname to fit", () => {
  assert.equal(checkRoomName("  Book club  "), null);
  assert.equal(checkRoomName(""), null, "blank: the default");
  assert.equal(checkRoomName("a".repeat(63)), null);
  assert.match(checkRoomName("a".repeat(64)), /Room name: at most 63 bytes/);
  assert.match(checkRoomName("ñ".repeat(32)), /at most 63 bytes/, "64 bytes in 32 letters");
  assert.match(checkRoomName("Sala\u202e"), /no control or invisible/);
  assert.match(checkRoomName("a\tb"), /no control or invisible/);
  const make = (nick) => `${nick}'s room`;
  assert.deepEqual(fitRoomName(make, "ana"), { name: "ana's room", nick: "ana" });
  assert.deepEqual(fitRoomName(make, "😀".repeat(16)), { name: "😀".repeat(14) + "'s room", nick: "😀".repeat(14) });
});
