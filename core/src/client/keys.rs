//! A member's room broadcast keys (`docs/PROTOCOL.md` §5): the key for the next broadcast
//! counter and at most one announced in a `room_key` whose first broadcast has not come yet;
//! broadcasts open in strict counter order, and a pong's `broadcast_next` must be exactly the
//! next counter expected (§7, bound streams). Pure: no I/O.

use thiserror::Error;

use crate::cipher::{CryptoError, Key};
use crate::sealed::{BroadcastOpener, SealError};
use crate::secret::SecretKey;

/// The broadcast stream does not agree with what the server says about it: frames were
/// dropped (or injected) on the way. An integrity failure: the client reconnects and resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamError {
    #[error(
        "broadcasts are being dropped on the way: the server has sent up to broadcast {server}, \
         this client has only {expected}"
    )]
    Dropped { expected: u64, server: u64 },
    #[error(
        "the server says broadcast {server} comes next, but this client already opened up to \
         {expected}"
    )]
    Ahead { expected: u64, server: u64 },
    #[error("a room key for broadcast {from} arrived when broadcast {expected} was next")]
    StaleKey { from: u64, expected: u64 },
    #[error("a room key for broadcast {second} arrived while one for {first} was still waiting")]
    SecondPendingKey { first: u64, second: u64 },
}

/// See the module documentation.
pub struct BroadcastKeys {
    opener: BroadcastOpener,
    /// The counter of the next broadcast.
    expected: u64,
    /// A key announced for broadcasts from this counter on, not yet in use.
    pending: Option<(SecretKey, u64)>,
}

impl BroadcastKeys {
    /// The key from the welcome, the next broadcast numbered `next`.
    pub fn new(key: &Key, next: u64) -> Self {
        Self {
            opener: BroadcastOpener::new(key, next),
            expected: next,
            pending: None,
        }
    }

    /// The counter of the next broadcast this member expects.
    #[cfg(test)]
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// A `room_key`: broadcasts from counter `from` on are sealed with `key`. The server
    /// sends it just before the first of them, so `from` is normally the next counter; one
    /// for a counter already passed, or a second one for another counter while one waits,
    /// does not fit the stream.
    pub fn add(&mut self, key: Key, from: u64) -> Result<(), StreamError> {
        if from < self.expected {
            return Err(StreamError::StaleKey {
                from,
                expected: self.expected,
            });
        }
        match &self.pending {
            // The same starting point again (a rotation with no broadcast after it): the
            // newer key replaces the unused one.
            Some((_, first)) if *first != from => Err(StreamError::SecondPendingKey {
                first: *first,
                second: from,
            }),
            _ => {
                self.pending = Some((SecretKey::new(key), from));
                Ok(())
            }
        }
    }

    /// Open the body of a `Broadcast` frame and decode it: the next counter, under the key
    /// for it.
    #[cfg(test)]
    pub fn open<T: serde::de::DeserializeOwned>(&mut self, body: &[u8]) -> Result<T, SealError> {
        crate::sealed::decode(&self.open_plaintext(body)?)
    }

    /// Open the body of a `Broadcast` frame, leaving its plaintext undecoded: the next
    /// counter, under the key for it.
    pub fn open_plaintext(&mut self, body: &[u8]) -> Result<Vec<u8>, SealError> {
        if let Some((key, from)) = &self.pending {
            if *from == self.expected {
                self.opener = BroadcastOpener::new(key, self.expected);
                self.pending = None;
            }
        }
        let plaintext = self.opener.open_plaintext(body)?;
        self.expected = self
            .expected
            .checked_add(1)
            .ok_or(CryptoError::NonceExhausted)?;
        Ok(plaintext)
    }

    /// A pong said the next broadcast after it is `broadcast_next`: everything before the pong
    /// has been processed (the stream is ordered), so it must be the one expected.
    pub fn check_position(&self, broadcast_next: u64) -> Result<(), StreamError> {
        let (expected, server) = (self.expected, broadcast_next);
        match expected.cmp(&server) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(StreamError::Dropped { expected, server }),
            std::cmp::Ordering::Greater => Err(StreamError::Ahead { expected, server }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::HEADER_LEN;
    use crate::sealed::BroadcastSealer;

    fn body(frame: &[u8]) -> &[u8] {
        &frame[HEADER_LEN..]
    }

    /// A rotation as the server does it: same counters, a fresh key from `from` on. The
    /// member switches exactly there; the old key does not open what follows, nor the new
    /// key what came before.
    #[test]
    fn the_key_changes_exactly_at_its_first_broadcast() {
        let (k0, k1) = ([1u8; 32], [2u8; 32]);
        let mut sealer = BroadcastSealer::new(&k0, 10);
        let before: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                sealer
                    .seal(&crate::message::encode(&(i as u64)).unwrap())
                    .unwrap()
            })
            .collect();
        let mut sealer = BroadcastSealer::new(&k1, sealer.next_counter());
        let after: Vec<Vec<u8>> = (3..6)
            .map(|i| {
                sealer
                    .seal(&crate::message::encode(&(i as u64)).unwrap())
                    .unwrap()
            })
            .collect();

        let mut member = BroadcastKeys::new(&k0, 10);
        assert_eq!(member.open::<u64>(body(&before[0])).unwrap(), 0);
        assert_eq!(member.open::<u64>(body(&before[1])).unwrap(), 1);
        assert_eq!(member.open::<u64>(body(&before[2])).unwrap(), 2);
        member.add(k1, 13).unwrap();
        member.check_position(13).unwrap();
        for (i, frame) in after.iter().enumerate() {
            assert_eq!(member.open::<u64>(body(frame)).unwrap(), 3 + i as u64);
        }
        assert_eq!(member.expected(), 16);

        // Without the room key the member cannot go on; with only the later key, nothing
        // sealed before the rotation opens.
        let mut stuck = BroadcastKeys::new(&k0, 13);
        assert!(matches!(
            stuck.open::<u64>(body(&after[0])),
            Err(SealError::Crypto(CryptoError::Integrity))
        ));
        for (i, frame) in before.iter().enumerate() {
            let mut late = BroadcastKeys::new(&k1, 10 + i as u64);
            assert!(late.open::<u64>(body(frame)).is_err(), "broadcast {i}");
        }
    }

    /// A key announced ahead waits for its counter; one for a counter already passed, or a
    /// second one for another counter, is refused; the same counter again replaces it.
    #[test]
    fn at_most_one_key_waits_and_only_for_a_counter_to_come() {
        let (k0, k1, k2) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut s0 = BroadcastSealer::new(&k0, 0);
        let f0 = s0.seal(&crate::message::encode(&0u64).unwrap()).unwrap();
        let f1 = s0.seal(&crate::message::encode(&1u64).unwrap()).unwrap();
        let f2 = BroadcastSealer::new(&k2, 2)
            .seal(&crate::message::encode(&2u64).unwrap())
            .unwrap();
        let mut member = BroadcastKeys::new(&k0, 0);
        member.add(k1, 2).unwrap();
        member.add(k2, 2).unwrap(); // replaces k1, unused
        assert_eq!(
            member.add(k1, 3),
            Err(StreamError::SecondPendingKey {
                first: 2,
                second: 3
            })
        );
        assert_eq!(member.open::<u64>(body(&f0)).unwrap(), 0);
        assert_eq!(
            member.open::<u64>(body(&f1)).unwrap(),
            1,
            "still the old key"
        );
        assert_eq!(
            member.open::<u64>(body(&f2)).unwrap(),
            2,
            "the new one from 2"
        );
        assert_eq!(
            member.add(k1, 1),
            Err(StreamError::StaleKey {
                from: 1,
                expected: 3
            })
        );
    }

    /// The pong check: equal is fine; a server ahead of the member means broadcasts were
    /// dropped on the way; behind, something was injected.
    #[test]
    fn a_pong_position_must_be_the_next_expected_broadcast() {
        let key = [4u8; 32];
        let mut sealer = BroadcastSealer::new(&key, 5);
        let member = BroadcastKeys::new(&key, 5);
        member.check_position(5).unwrap();
        let _dropped = sealer
            .seal(&crate::message::encode(&1u64).unwrap())
            .unwrap();
        assert_eq!(
            member.check_position(6),
            Err(StreamError::Dropped {
                expected: 5,
                server: 6
            })
        );
        assert!(StreamError::Dropped {
            expected: 5,
            server: 6
        }
        .to_string()
        .contains("broadcasts are being dropped on the way"));
        assert_eq!(
            member.check_position(4),
            Err(StreamError::Ahead {
                expected: 5,
                server: 4
            })
        );
    }
}
