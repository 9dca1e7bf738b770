// "ben is typing…": who is typing, each shown for TYPING_SHOW_MS after their last notice or
// until their message arrives. (Sending our own notices is the composer's job; the core
// throttles them.)
import { $ } from "./dom.js";
import { typingText } from "./text.js";

const TYPING_SHOW_MS = 4000;
const typing = new Map(); // nick -> time (ms) until which "is typing" shows
let timer = null;

function render() {
  const now = Date.now();
  for (const [nick, until] of typing) if (until <= now) typing.delete(nick);
  const names = [...typing.keys()];
  $("typing").textContent = typingText(names);
  if (!names.length && timer) { clearInterval(timer); timer = null; }
}

export function someoneTyping(nick) {
  typing.set(nick, Date.now() + TYPING_SHOW_MS);
  if (!timer) timer = setInterval(render, 500);
  render();
}

export function stoppedTyping(nick) {
  if (typing.delete(nick)) render();
}

export function clearTyping() {
  typing.clear();
  render();
}
