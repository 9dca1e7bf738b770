//! Who is in the room: members' nicknames in the order the room lists them (by folded
//! nickname). The room changes it; a member's writer copies it into a welcome only when it
//! sends one, so welcomes waiting in queues during a burst of joins hold no copies of a long
//! list.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The room's list of members, shared with the writers that send it.
#[derive(Debug, Default)]
pub struct Roster {
    /// Folded nickname → nickname as chosen.
    names: Mutex<BTreeMap<String, String>>,
}

impl Roster {
    pub fn insert(&self, key: &str, nick: &str) {
        self.lock().insert(key.to_owned(), nick.to_owned());
    }

    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The nicknames, sorted by folded nickname.
    #[cfg(test)]
    pub fn names(&self) -> Vec<String> {
        self.lock().values().cloned().collect()
    }

    /// The nicknames after the folded nickname `after` (from the first if `None`), in
    /// order, as many as fit `max_bytes` encoded (at least one), and the folded
    /// nickname of the last one given (`None`: the list is done). A writer sends a long list
    /// a piece at a time, so it never holds a copy of all of it.
    pub fn piece(&self, after: Option<&str>, max_bytes: usize) -> (Vec<String>, Option<String>) {
        use std::ops::Bound;
        let names = self.lock();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut piece = Vec::new();
        let mut size = 0;
        let mut last = None;
        for (key, nick) in names.range::<str, _>((start, Bound::Unbounded)) {
            let len = super::link::wire_len(nick);
            if !piece.is_empty() && size + len > max_bytes {
                return (piece, last);
            }
            size += len;
            piece.push(nick.clone());
            last = Some(key.clone());
        }
        (piece, None)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        // The map is valid after any panic (each change is one insert or remove).
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_by_folded_nickname_and_forgets_on_remove() {
        let roster = Roster::default();
        roster.insert("zoe", "Zoe");
        roster.insert("ana", "ana");
        roster.insert("ben", "BEN");
        roster.remove("zoe");
        assert_eq!(roster.names(), vec!["ana", "BEN"]);
    }
}
