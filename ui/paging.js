// Paging in older history: which room sequence numbers the log shows, and whether the room
// keeps anything earlier. Pure: no DOM, unit-tested with node --test.

// The lowest sequence number shown once `seq` is shown too (null: nothing shown yet).
export function oldestAfter(oldestShown, seq) {
  return seq != null && (oldestShown == null || seq < oldestShown) ? seq : oldestShown;
}

// Whether "Show earlier messages" is offered: the `more` flag of the last page when given,
// else whether the room's oldest kept event (from "connected") is older than the oldest shown.
export function earlierAvailable(more, roomOldest, oldestShown) {
  const known = roomOldest != null && oldestShown != null;
  return more ?? (known && roomOldest < oldestShown);
}
