//! Exactly-once delivery bookkeeping: the client's [`Outbox`] and the server's [`Dedupe`].
//!
//! The client numbers its messages 1, 2, 3… and keeps each in the outbox until the server's
//! cumulative ack covers it; after a reconnect it sends everything still in the outbox again,
//! in order. The server remembers, per client id, the highest message id it has put in the room
//! and drops anything at or below it. Both structures are bounded.

use std::collections::{HashMap, VecDeque};

use thiserror::Error;

use crate::message::ClientId;

/// Messages a client may have waiting for an ack before `send` refuses more.
pub const MAX_OUTBOX: usize = 1000;
/// Client ids whose dedupe state the server keeps (the oldest are forgotten first).
pub const MAX_DEDUPE_CLIENTS: usize = 65_536;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum OutboxError {
    #[error("{MAX_OUTBOX} messages are already waiting to be sent; wait for the connection to come back")]
    Full,
}

/// A message waiting for its ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: u64,
    pub text: String,
}

/// Unacknowledged outgoing messages, oldest first.
#[derive(Debug)]
pub struct Outbox {
    next_id: u64,
    pending: VecDeque<Pending>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            next_id: 1,
            pending: VecDeque::new(),
        }
    }
}

impl Outbox {
    /// Queue `text`; returns its message id.
    pub fn push(&mut self, text: String) -> Result<u64, OutboxError> {
        if self.pending.len() >= MAX_OUTBOX {
            return Err(OutboxError::Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back(Pending { id, text });
        Ok(id)
    }

    /// Forget everything up to and including `up_to`; returns the ids that were acked now.
    pub fn ack(&mut self, up_to: u64) -> Vec<u64> {
        let mut acked = Vec::new();
        while self.pending.front().is_some_and(|p| p.id <= up_to) {
            if let Some(p) = self.pending.pop_front() {
                acked.push(p.id);
            }
        }
        acked
    }

    /// Drop one message the server refused outright (it will never be acked).
    pub fn reject(&mut self, id: u64) {
        self.pending.retain(|p| p.id != id);
    }

    /// What must be (re)sent after connecting, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Pending> {
        self.pending.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

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
    fn outbox_numbers_acks_and_resends_in_order() {
        let mut outbox = Outbox::default();
        assert_eq!(outbox.push("a".into()), Ok(1));
        assert_eq!(outbox.push("b".into()), Ok(2));
        assert_eq!(outbox.push("c".into()), Ok(3));
        assert_eq!(outbox.ack(1), vec![1]);
        assert_eq!(
            outbox.pending().map(|p| p.id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(
            outbox.ack(1),
            Vec::<u64>::new(),
            "a repeated ack changes nothing"
        );
        assert_eq!(outbox.ack(3), vec![2, 3]);
        assert!(outbox.is_empty());
        assert_eq!(outbox.push("d".into()), Ok(4), "ids are never reused");
    }

    #[test]
    fn outbox_is_bounded() {
        let mut outbox = Outbox::default();
        for i in 0..MAX_OUTBOX {
            outbox.push(i.to_string()).unwrap();
        }
        assert_eq!(outbox.push("more".into()), Err(OutboxError::Full));
        outbox.ack(1);
        assert!(outbox.push("more".into()).is_ok());
    }

    #[test]
    fn outbox_reject_drops_one() {
        let mut outbox = Outbox::default();
        outbox.push("a".into()).unwrap();
        outbox.push("b".into()).unwrap();
        outbox.reject(1);
        assert_eq!(outbox.pending().map(|p| p.id).collect::<Vec<_>>(), vec![2]);
    }

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
    fn outbox_and_dedupe_together_deliver_exactly_once() {
        // Simulate a lossy link: the server processes a prefix, acks get lost, the client resends.
        let mut outbox = Outbox::default();
        let mut dedupe = Dedupe::default();
        let me: ClientId = "me".into();
        let mut room = Vec::new();
        for i in 0..10 {
            outbox.push(format!("m{i}")).unwrap();
        }
        for attempt in 0..4 {
            let batch: Vec<Pending> = outbox.pending().cloned().collect();
            // Only the first three of each attempt get through; the ack of the last is lost.
            for p in batch.iter().take(3) {
                if dedupe.check(&me, p.id) == Seen::Fresh {
                    room.push(p.text.clone());
                }
            }
            if attempt % 2 == 0 {
                outbox.ack(dedupe.highest(&me));
            }
        }
        outbox.ack(dedupe.highest(&me));
        for p in outbox.pending().cloned().collect::<Vec<_>>() {
            if dedupe.check(&me, p.id) == Seen::Fresh {
                room.push(p.text);
            }
        }
        let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(room, expected);
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
