//! The client's outbox: its half of exactly-once delivery (the server's half is
//! `server::dedupe`).
//!
//! The client numbers its messages 1, 2, 3… and keeps each in the outbox until the server's
//! cumulative ack covers it; after a reconnect it sends everything still in the outbox again,
//! in order. The server drops anything at or below the highest id it has put in the room, so
//! each message lands once. Bounded.

use std::collections::VecDeque;

use thiserror::Error;

/// Messages a client may have waiting for an ack before `send` refuses more.
pub const MAX_OUTBOX: usize = 1000;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ClientId;
    use crate::server::dedupe::{Dedupe, Seen};
    use proptest::prelude::*;

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

    /// What can happen on the simulated link between one client and the server.
    #[derive(Debug, Clone)]
    enum Step {
        /// The user types a message.
        Type,
        /// The next message in flight reaches the server (and its ack may come back).
        Deliver { ack_lost: bool },
        /// The connection breaks: everything in flight is lost (TCP loses a suffix, never a
        /// message in the middle); the client reconnects and resends its outbox.
        Break,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Type),
            4 => any::<bool>().prop_map(|ack_lost| Step::Deliver { ack_lost }),
            1 => Just(Step::Break),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the link does, once it behaves, the room holds every typed message exactly
        /// once, in typing order, and the client's outbox is empty.
        #[test]
        fn outbox_ack_and_dedupe_deliver_exactly_once_in_order(steps in prop::collection::vec(step(), 0..300)) {
            let client = "0123456789abcdef0123456789abcdef".to_string();
            let mut outbox = Outbox::default();
            let mut dedupe = Dedupe::default();
            let mut room: Vec<String> = Vec::new();
            let mut typed: Vec<String> = Vec::new();
            let mut in_flight: std::collections::VecDeque<(u64, String)> = Default::default();

            let receive = |id: u64, text: String, dedupe: &mut Dedupe, room: &mut Vec<String>| {
                if dedupe.check(&client, id) == Seen::Fresh {
                    room.push(text);
                }
                dedupe.highest(&client)
            };
            for step in steps {
                match step {
                    Step::Type => {
                        let text = format!("message {}", typed.len());
                        if let Ok(id) = outbox.push(text.clone()) {
                            typed.push(text.clone());
                            in_flight.push_back((id, text));
                        }
                    }
                    Step::Deliver { ack_lost } => {
                        if let Some((id, text)) = in_flight.pop_front() {
                            let up_to = receive(id, text, &mut dedupe, &mut room);
                            if !ack_lost {
                                outbox.ack(up_to);
                            }
                        }
                    }
                    Step::Break => {
                        // The welcome tells the client what the room already has, then it resends.
                        outbox.ack(dedupe.highest(&client));
                        in_flight = outbox.pending().map(|p| (p.id, p.text.clone())).collect();
                    }
                }
            }
            // The link heals: reconnect and deliver everything.
            outbox.ack(dedupe.highest(&client));
            for pending in outbox.pending().map(|p| (p.id, p.text.clone())).collect::<Vec<_>>() {
                let up_to = receive(pending.0, pending.1, &mut dedupe, &mut room);
                outbox.ack(up_to);
            }
            prop_assert!(outbox.is_empty());
            prop_assert_eq!(room, typed);
        }
    }
}
