// The log read as a conversation: consecutive messages from one person share one name line
// (class "continued" on the later ones), a day separator goes where a new day begins, and
// each message's time shows its full date and time on hover. The rules are conversation.js's;
// log.js calls arrange() for every node it places, live, backlog or an older page above.
import { el } from "./dom.js";
import { clock, onLanguageChange } from "./i18n.js";
import { sameGroup, dayBreak, dayLabel, fullTime } from "./conversation.js";

// A room time of 0 means "now", as clock() reads it.
const when = (ms) => ms || Date.now();

function setTime(time, ms) {
  time.textContent = clock(ms);
  time.dateTime = new Date(when(ms)).toISOString();
  time.title = fullTime(when(ms));
}

// A message's <time>: hours and minutes, the full timestamp as its title.
export function timeNode(ms) {
  const time = el("time", "time");
  setTime(time, ms);
  return time;
}

// Marks a log node with the time of its room event (what grouping and days go by).
export function stamp(node, ms) {
  node.dataset.time = String(when(ms));
  return node;
}

// An own message settled with the room's time (and maybe moved into room order): its time,
// its place in the conversation, and that of what followed it before (formerNext).
export function retime(node, ms, formerNext) {
  stamp(node, ms);
  const time = node.querySelector("time");
  if (time) setTime(time, ms);
  if (node.isConnected) arrangeFrom(node);
  if (formerNext?.isConnected && formerNext !== node.nextElementSibling) arrangeFrom(formerNext);
}

const isDay = (n) => n?.classList.contains("day");
const timeOf = (n) => Number(n.dataset.time);

function previousTimed(node) {
  let p = node.previousElementSibling;
  while (p && (!p.dataset.time || isDay(p))) p = p.previousElementSibling;
  return p;
}

function previousShown(node) {
  let p = node.previousElementSibling;
  while (isDay(p)) p = p.previousElementSibling;
  return p;
}

const sender = (n) => n?.classList.contains("msg")
  ? { from: n.querySelector(".from")?.textContent, own: n.classList.contains("own"), time_ms: timeOf(n) }
  : null;

function daySeparator(ms) {
  const day = el("div", "day");
  day.dataset.time = String(ms);
  day.append(el("span", "", dayLabel(ms)));
  return day;
}

// Rewrites every day separator (a language switch, or a new day since they were written).
function relabel(root) {
  for (const day of root.querySelectorAll(".day")) day.firstChild.textContent = dayLabel(timeOf(day));
}

// Places `node`'s day separator (if any) right above it and says whether it continues the
// message group above, from what is before it in the log now.
export function arrange(node) {
  if (!node?.dataset?.time || isDay(node)) return;
  if (isDay(node.previousElementSibling)) node.previousElementSibling.remove();
  const prev = previousTimed(node);
  if (dayBreak(prev ? timeOf(prev) : null, timeOf(node))) {
    node.before(daySeparator(timeOf(node)));
    relabel(node.parentElement);
  }
  if (node.classList.contains("msg")) node.classList.toggle("continued", sameGroup(sender(previousShown(node)), sender(node)));
}

// Arranges `node` and what follows it up to the next event with a time, whose place may have
// changed (the first of the earlier ones after an older page is inserted above it).
export function arrangeFrom(node) {
  arrange(node);
  for (let next = node.nextElementSibling; next; next = next.nextElementSibling) {
    if (isDay(next)) continue;
    arrange(next);
    if (next.dataset.time) break;
  }
}

// Times and day separators follow a language switch.
export function initThread(log) {
  onLanguageChange(() => {
    relabel(log);
    for (const node of log.querySelectorAll("[data-time]")) {
      const time = node.querySelector("time");
      if (time) setTime(time, timeOf(node));
    }
  });
  window.addEventListener("focus", () => relabel(log));
}
