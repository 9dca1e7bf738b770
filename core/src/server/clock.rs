//! What the room takes from outside instead of reading it itself: the time ([`Now`]) and
//! the randomness of a new room epoch ([`RoomIdentity`]). The server passes the real ones;
//! tests pass any, so the room's tests are deterministic and never sleep. New broadcast keys
//! after a rotation come from [`fresh_room_key`].

#[cfg(test)]
use std::time::Duration;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::message::Epoch;
use crate::secret::SecretKey;

/// A moment as the room needs it: monotonic time for grace periods and stalls, wall-clock
/// time for event timestamps. The server passes the current one in; tests pass any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

impl Now {
    /// This moment.
    pub fn current() -> Self {
        Self {
            at: Instant::now(),
            wall_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }

    /// `elapsed` later.
    #[cfg(test)]
    pub fn after(self, elapsed: Duration) -> Self {
        Self {
            at: self.at + elapsed,
            wall_ms: self.wall_ms + elapsed.as_millis() as u64,
        }
    }
}

/// What makes a room epoch unique: its id and its broadcast key, both random.
#[derive(Debug, Clone)]
pub struct RoomIdentity {
    pub epoch: Epoch,
    pub room_key: SecretKey,
}

impl RoomIdentity {
    pub fn generate(rng: &mut impl rand::Rng) -> Self {
        Self {
            epoch: hex::encode(rng.gen::<[u8; 16]>()),
            room_key: SecretKey::new(rng.gen()),
        }
    }
}

/// A new room broadcast key: 32 bytes from the operating system's generator, unrelated to
/// every earlier key (a key handed out after a rotation says nothing about the ones before).
pub fn fresh_room_key() -> SecretKey {
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut *bytes);
    SecretKey::new(*bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_identity_never_shows_its_key() {
        let identity = RoomIdentity {
            epoch: "e".repeat(32),
            room_key: SecretKey::new([0x9C; 32]),
        };
        let shown = format!("{identity:?}");
        assert!(shown.contains(&"e".repeat(32)), "{shown}");
        assert!(
            !shown.contains("9c9c") && !shown.contains("156, 156"),
            "{shown}"
        );
    }
}
