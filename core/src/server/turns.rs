//! Turns to be answered: at most [`MAX_IN_FLIGHT`] handshakes per [`Source`] answered and not
//! yet settled (confirmed by the client's first session frame, or failed) at once.
//!
//! Version 2 learns whether a guess was right only when the client's first session frame
//! opens, and a guesser learns it from the handshake response at once; so a guesser with many
//! connections could hold many answers before any counts. A further init from the source
//! waits for its turn — its answer is held back — until fewer than [`MAX_IN_FLIGHT`] are in
//! flight, or the handshake timeout closes it. It is not refused: members behind one NAT
//! reconnecting together wait milliseconds (each confirms right after its response).
//!
//! Waiting is first come, first served (a [`Semaphore`] per source) and bounded: an entry
//! exists only while a connection holds or waits for a turn, so there are at most as many as
//! open connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::source::Source;

/// Handshakes from one source answered and not yet settled, at most.
pub const MAX_IN_FLIGHT: usize = 2;

struct Gate {
    turns: Arc<Semaphore>,
    /// Connections holding or waiting for a turn.
    users: usize,
}

/// The turns of every source; see the module documentation.
#[derive(Default)]
pub struct HandshakeTurns {
    gates: Mutex<HashMap<Source, Gate>>,
}

impl HandshakeTurns {
    /// Wait for a turn for `source`; it is given back when the [`Turn`] is dropped (also when
    /// this wait is cancelled).
    pub async fn wait(&self, source: Source) -> Turn<'_> {
        let turns = {
            let mut gates = self.lock();
            let gate = gates.entry(source).or_insert_with(|| Gate {
                turns: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                users: 0,
            });
            gate.users += 1;
            gate.turns.clone()
        };
        let mut turn = Turn {
            owner: self,
            source,
            permit: None,
        };
        // The semaphore is never closed, so this is always a permit.
        turn.permit = turns.acquire_owned().await.ok();
        turn
    }

    /// Sources with a connection holding or waiting for a turn.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Gate>> {
        self.gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's turn (or its place in the queue for one); see [`HandshakeTurns::wait`].
pub struct Turn<'a> {
    owner: &'a HandshakeTurns,
    source: Source,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Give the turn back first: the next waiter may go on.
        drop(self.permit.take());
        let mut gates = self.owner.lock();
        if let Some(gate) = gates.get_mut(&self.source) {
            gate.users = gate.users.saturating_sub(1);
            if gate.users == 0 {
                gates.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(text: &str) -> Source {
        Source::of(text.parse().unwrap())
    }

    #[tokio::test]
    async fn two_turns_per_source_then_waiting_in_order_and_others_unaffected() {
        let turns = HandshakeTurns::default();
        let (a, b) = (source("192.0.2.1"), source("192.0.2.2"));
        let first = turns.wait(a).await;
        let second = turns.wait(a).await;
        let short = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(short, turns.wait(a)).await.is_err(),
            "a third waits"
        );
        // Another source is not held up.
        let other = tokio::time::timeout(short, turns.wait(b)).await.expect("b");
        drop(first);
        let third = tokio::time::timeout(short, turns.wait(a))
            .await
            .expect("a turn came free");
        drop((second, third, other));
        assert_eq!(turns.len(), 0, "nothing kept once nobody holds or waits");
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_behind() {
        let turns = HandshakeTurns::default();
        let a = source("2001:db8::1");
        let held = (turns.wait(a).await, turns.wait(a).await);
        for _ in 0..10 {
            let waited = tokio::time::timeout(Duration::from_millis(1), turns.wait(a)).await;
            assert!(waited.is_err());
        }
        drop(held);
        assert_eq!(turns.len(), 0);
    }
}
