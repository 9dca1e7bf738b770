//! The server's half of exactly-once delivery: per client id, the highest message id already
//! put in the room. A message resent after a reconnect at or below it is acked again, not
//! repeated. Bounded: the oldest clients are forgotten first.

use std::collections::{HashMap, VecDeque};

use crate::message::ClientId;

/// Client ids whose dedupe state the server keeps (the oldest are forgotten first).
pub const MAX_DEDUPE_CLIENTS: usize = 65_536;

/// Verdict on an incoming client message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not delivered before: put it in the room.
    Fresh,
    /// Already in the room: only ack it again.
    Duplicate,
}

/// The server's memory of the highest message id it accepted from each client id.
#[derive(Debug, Default)]
pub struct Dedupe {
    highest: HashMap<ClientId, u64>,
    /// Insertion order, for forgetting the oldest clients first.
    order: VecDeque<ClientId>,
}

impl Dedupe {
    /// Record `id` from `client` if it is new.
    pub fn check(&mut self, client: &ClientId, id: u64) -> Seen {
        match self.highest.get_mut(client) {
            Some(highest) if id <= *highest => Seen::Duplicate,
            Some(highest) => {
                *highest = id;
                Seen::Fresh
            }
            None => {
                if self.order.len() >= MAX_DEDUPE_CLIENTS {
                    if let Some(oldest) = self.order.pop_front() {
                        self.highest.remove(&oldest);
                    }
                }
                self.order.push_back(client.clone());
                self.highest.insert(client.clone(), id);
                Seen::Fresh
            }
        }
    }

    /// Would `id` from `client` be fresh? Does not record it (see [`record`](Self::record)).
    pub fn peek(&self, client: &ClientId, id: u64) -> Seen {
        if id <= self.highest(client) {
            Seen::Duplicate
        } else {
            Seen::Fresh
        }
    }

    /// Record `id` as accepted from `client` (after it was stored).
    pub fn record(&mut self, client: &ClientId, id: u64) {
        self.check(client, id);
    }

    /// The highest id accepted from `client` (0 when none).
    pub fn highest(&self, client: &ClientId) -> u64 {
        self.highest.get(client).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_drops_resent_messages() {
        let mut dedupe = Dedupe::default();
        let alice: ClientId = "a".into();
        let bob: ClientId = "b".into();
        assert_eq!(dedupe.check(&alice, 1), Seen::Fresh);
        assert_eq!(dedupe.check(&alice, 2), Seen::Fresh);
        assert_eq!(dedupe.check(&bob, 1), Seen::Fresh, "ids are per client");
        // Reconnect: alice resends 1, 2 (unacked) and then 3.
        assert_eq!(dedupe.check(&alice, 1), Seen::Duplicate);
        assert_eq!(dedupe.check(&alice, 2), Seen::Duplicate);
        assert_eq!(dedupe.check(&alice, 3), Seen::Fresh);
        assert_eq!(dedupe.highest(&alice), 3);
        assert_eq!(dedupe.highest(&"nobody".into()), 0);
    }

    #[test]
    fn dedupe_is_bounded() {
        let mut dedupe = Dedupe::default();
        for i in 0..MAX_DEDUPE_CLIENTS + 10 {
            dedupe.check(&i.to_string(), 1);
        }
        assert_eq!(dedupe.highest.len(), MAX_DEDUPE_CLIENTS);
        assert_eq!(dedupe.highest(&"0".into()), 0, "oldest forgotten");
    }
}
