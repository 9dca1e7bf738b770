// Mentions: does a message name the reader? Whole-word, case-insensitive, with or without a
// leading '@'. Pure: no DOM, unit-tested with node --test.

export function mentions(text, nick) {
  if (!nick) return false;
  const escaped = nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp("(^|[^\\p{L}\\p{N}_])@?" + escaped + "($|[^\\p{L}\\p{N}_])", "iu").test(text);
}
