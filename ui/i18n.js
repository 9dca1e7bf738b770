// Translations: every string the window shows comes from a dictionary (locales/en.js,
// locales/es.js) by key, never from the markup or the code. The language follows the
// system's (navigator.languages) until the user picks one, which is remembered.
//
// - t(key, vars): the text of `key` in the current language; "{name}" is replaced by
//   vars.name. A value {one, other, …} is chosen by Intl.PluralRules on vars.n. A var given
//   as { ms } is a room time, written as the locale's hours and minutes.
// - Markup: data-i18n="key" (text), data-i18n-placeholder/-title/-aria-label (attributes);
//   translate(node, key, vars) sets a node's text and keeps key and vars on it
//   (data-i18n-vars), so applyTranslations() rewrites everything on a language switch.
// Pure apart from applyTranslations/setLanguage (which touch `document`): node unit tests
// import it directly.
import en from "./locales/en.js";
import es from "./locales/es.js";

const DICTIONARIES = { en, es };
export const LANGUAGES = Object.keys(DICTIONARIES);

let lang = "en";
let locale = "en";
const listeners = [];

// The dictionary for `code` ("es-AR" -> "es"); null when there is none.
function supported(code) {
  const base = String(code || "").toLowerCase().split(/[-_]/)[0];
  return Object.hasOwn(DICTIONARIES, base) ? base : null;
}

// The language to use: the saved choice if there is one, else the first supported system
// language, else English.
export function pickLanguage(saved, preferred = []) {
  return supported(saved) || preferred.map(supported).find(Boolean) || "en";
}

// The locale tag for dates and numbers: the system's own tag when it is in the chosen
// language (keeps "es-AR" or "en-GB" conventions), else the language itself.
export function localeFor(language, preferred = []) {
  return preferred.find((tag) => supported(tag) === language) || language;
}

export const language = () => lang;
export const currentLocale = () => locale;

function systemLanguages() {
  if (typeof navigator === "undefined") return [];
  return navigator.languages?.length ? [...navigator.languages] : [navigator.language].filter(Boolean);
}

// Switches the language (without touching the page when there is none: unit tests).
export function setLanguage(code) {
  lang = supported(code) || "en";
  locale = localeFor(lang, systemLanguages());
  if (typeof document !== "undefined") {
    document.documentElement.lang = lang;
    applyTranslations(document);
  }
  for (const cb of listeners) cb(lang);
}

export function onLanguageChange(cb) { listeners.push(cb); }

// Hours and minutes of a room time (ms since the epoch; 0 or missing: now) in the locale.
export function clock(ms) {
  const d = ms ? new Date(ms) : new Date();
  return d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
}

function pick(value, vars) {
  if (typeof value === "string") return value;
  const form = new Intl.PluralRules(locale).select(Number(vars.n));
  return value[form] ?? value.other;
}

function varText(value) {
  if (value && typeof value === "object" && "ms" in value) return clock(value.ms);
  // A translatable part ({key, fallback}): its text now, else the fallback (e.g. the English
  // detail of a cause this window has no words for).
  if (value && typeof value === "object" && typeof value.key === "string") {
    const text = t(value.key);
    return text === value.key ? String(value.fallback ?? "") : text;
  }
  return String(value);
}

export function t(key, vars = {}) {
  const value = DICTIONARIES[lang][key] ?? en[key];
  if (value === undefined) return key;
  return pick(value, vars).replace(/\{(\w+)\}/g, (m, name) => (Object.hasOwn(vars, name) ? varText(vars[name]) : m));
}

// Sets `node`'s text to t(key, vars) and remembers both for the next language switch.
export function translate(node, key, vars) {
  node.dataset.i18n = key;
  if (vars && Object.keys(vars).length) node.dataset.i18nVars = JSON.stringify(vars);
  else delete node.dataset.i18nVars;
  node.textContent = t(key, vars);
  return node;
}

const ATTRIBUTES = ["placeholder", "title", "aria-label"];

// The vars kept on a translated node (translate(), data-i18n-vars); none when absent or unreadable.
function varsOf(node) {
  try { return node.dataset.i18nVars ? JSON.parse(node.dataset.i18nVars) : {}; } catch (_) { return {}; }
}

// Rewrites every translated text and attribute under `root` in the current language.
export function applyTranslations(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n, varsOf(node));
  for (const attr of ATTRIBUTES) {
    for (const node of root.querySelectorAll(`[data-i18n-${attr}]`)) node.setAttribute(attr, t(node.getAttribute(`data-i18n-${attr}`), varsOf(node)));
  }
}

// The language at start-up: the saved choice or the system's.
export function initLanguage(saved) {
  setLanguage(pickLanguage(saved, systemLanguages()));
}
