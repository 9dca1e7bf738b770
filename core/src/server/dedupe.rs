//! The server's half of exactly-once delivery: per client id, the highest message id already
//! put in the room. A message resent after a reconnect at or below it is acked again, not
//! repeated. Bounded: the clients heard from least recently are forgotten first (never a
//! member that keeps chatting, however many new client ids others make up).

use std::collections::{BTreeMap, HashMap};

use crate::message::ClientId;

/// Client ids whose dedupe state the server keeps (the least recently heard from are
/// forgotten first).
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
    /// Client → (highest id accepted, when last heard from).
    highest: HashMap<ClientId, (u64, u64)>,
    /// When last heard from → client, for forgetting the least recently heard from first.
    order: BTreeMap<u64, ClientId>,
    /// Counts checks: the "when" above.
    clock: u64,
}

impl Dedupe {
    /// Record `id` from `client` if it is new.
    pub fn check(&mut self, client: &ClientId, id: u64) -> Seen {
        self.clock += 1;
        let now = self.clock;
        match self.highest.get_mut(client) {
            Some((highest, touched)) => {
                let seen = if id <= *highest {
                    Seen::Duplicate
                } else {
                    *highest = id;
                    Seen::Fresh
                };
                let before = std::mem::replace(touched, now);
                if let Some(key) = self.order.remove(&before) {
                    self.order.insert(now, key);
                }
                seen
            }
            None => {
                if self.highest.len() >= MAX_DEDUPE_CLIENTS {
                    if let Some((_, oldest)) = self.order.pop_first() {
                        self.highest.remove(&oldest);
                    }
                }
                self.order.insert(now, client.clone());
                self.highest.insert(client.clone(), (id, now));
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
        self.highest.get(client).map_or(0, |&(highest, _)| highest)
    }

    /// How many client ids are remembered (at most [`MAX_DEDUPE_CLIENTS`]).
    pub fn len(&self) -> usize {
        self.highest.len()
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
        assert_eq!(dedupe.order.len(), MAX_DEDUPE_CLIENTS);
    }

    /// Made-up client ids (a member with the passphrase joining under many) push out the
    /// clients heard from least recently, not a member that keeps chatting: its resent
    /// messages are still recognised, and exactly-once holds for it.
    #[test]
    fn new_client_ids_do_not_push_out_a_member_that_keeps_chatting() {
        let mut dedupe = Dedupe::default();
        let ana: ClientId = "ana-client-id-0001".into();
        let mut sent = 0;
        for i in 0..2 * MAX_DEDUPE_CLIENTS {
            if i % 1000 == 0 {
                if sent > 0 {
                    // Its connection dropped before the ack: the last message comes again.
                    assert_eq!(dedupe.check(&ana, sent), Seen::Duplicate, "after {i} ids");
                }
                sent += 1;
                assert_eq!(dedupe.check(&ana, sent), Seen::Fresh);
            }
            dedupe.check(&format!("made-up-{i}"), 1);
        }
        assert_eq!(dedupe.highest(&ana), sent);
        assert_eq!(
            dedupe.check(&ana, sent),
            Seen::Duplicate,
            "a resend is not repeated"
        );
        assert_eq!(dedupe.highest.len(), MAX_DEDUPE_CLIENTS);
        assert_eq!(dedupe.order.len(), MAX_DEDUPE_CLIENTS);
        assert_eq!(dedupe.highest(&"made-up-0".into()), 0, "the idle ones go");
    }
}
