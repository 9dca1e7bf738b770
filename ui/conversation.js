// How the log reads as a conversation: which messages go under one name, where a new day
// begins, and how a day and a full timestamp are written in the current locale. Pure: no
// DOM, unit-tested with node --test (tests/conversation.test.mjs). Times are ms since the
// epoch, days are the reader's local calendar days.
import { t, currentLocale } from "./i18n.js";

// Consecutive messages from the same person at most this far apart share one name line.
export const GROUP_GAP_MS = 5 * 60 * 1000;

// The local calendar day of a time, as a number that compares (20261130).
export function localDay(ms) {
  const d = new Date(ms);
  return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
}

// Does message `next` continue the group of `prev` ({from, own, time_ms} each; prev null
// when what comes before is not a message)? Same sender, same day, a few minutes apart (either
// way: an own message not yet sent carries the local clock, not the room's).
export function sameGroup(prev, next, gap = GROUP_GAP_MS) {
  if (!prev || !next) return false;
  if (prev.from !== next.from || Boolean(prev.own) !== Boolean(next.own)) return false;
  if (localDay(prev.time_ms) !== localDay(next.time_ms)) return false;
  return Math.abs(next.time_ms - prev.time_ms) <= gap;
}

// Is there a day separator before an event at `ms`, after one at `prevMs`? Between events of
// different days; above the first event shown (prevMs null) only when it is not from today.
export function dayBreak(prevMs, ms, now = Date.now()) {
  if (prevMs == null) return localDay(ms) !== localDay(now);
  return localDay(prevMs) !== localDay(ms);
}

// What a day separator says: "Today", "Yesterday", else the locale's weekday and date
// ("lunes, 30 de noviembre"), with the year when it is not this year's.
export function dayLabel(ms, now = Date.now(), locale = currentLocale()) {
  const day = localDay(ms);
  if (day === localDay(now)) return t("day.today");
  const yesterday = new Date(now);
  yesterday.setDate(yesterday.getDate() - 1);
  if (day === localDay(yesterday.getTime())) return t("day.yesterday");
  const thisYear = new Date(ms).getFullYear() === new Date(now).getFullYear();
  const options = { weekday: "long", day: "numeric", month: "long" };
  if (!thisYear) options.year = "numeric";
  return new Date(ms).toLocaleDateString(locale, options);
}

// The full date and time of a message, for hovering over its time.
export function fullTime(ms, locale = currentLocale()) {
  return new Date(ms).toLocaleString(locale, { dateStyle: "full", timeStyle: "medium" });
}
