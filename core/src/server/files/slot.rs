//! An unfinished upload's write side (`docs/PROTOCOL.md` §13, "One writer at a time"): which
//! connection may store its chunks, how much of it is stored, and the SHA-256 of what is.
//!
//! Every connection that takes the upload up shares one [`UploadSlot`]. Whether a chunk is
//! stored is decided under the slot's lock, with its place and before it is sealed, and the
//! seal and the write happen under it too: a connection that lost the upload to another (a
//! reconnect racing the old connection) can never seal a chunk at an offset the new one
//! also seals, and the digest kept here is always that of what is on disk, whichever
//! connection stored it. A takeover reads `have` and opens the stored file under the same
//! lock, so nothing is written between the answer and the file it is written to.
//!
//! A chunk is stored through a [`Claim`]: [`FileHost::store_chunk`] claims the offset, charges
//! the quota for the chunk (the oldest finished files may give way, and are recorded and
//! deleted), then seals, writes and hashes it, all under the slot's lock. A chunk refused
//! for space drops its claim: nothing of it was sealed, and the upload is as it was.
//!
//! Blocking, and first in the lock order: the lock is held across a chunk's charge, seal and
//! write (one upload's chunks only, on a blocking thread), and the files lock and the
//! database's are taken under it, never the other way round (see [`super`]).
//!
//! [`FileHost::store_chunk`]: super::FileHost::store_chunk

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::Digest;

/// The write side of one unfinished upload; see the module documentation.
#[derive(Debug)]
pub struct UploadSlot {
    state: Mutex<SlotState>,
    /// Set when the upload is dropped (cancelled, expired, discarded, a write failed): nothing
    /// is stored any more. Outside the lock, so dropping never waits for a write.
    closed: AtomicBool,
}

#[derive(Debug)]
struct SlotState {
    /// The connection the upload is active on.
    owner: Option<u64>,
    /// Content bytes stored (whole chunks, or the whole size).
    have: u64,
    /// The SHA-256 of the content `[0, have)`, when this process stored all of it; `None` for
    /// an upload resumed after a restart (then the finished file is read back).
    hasher: Option<sha2::Sha256>,
}

/// The right to store the chunk at one offset of an upload: the slot's lock, held from the
/// decision ([`UploadSlot::claim`]) to the write. Dropped without [`stored`](Self::stored) or
/// [`failed`](Self::failed) (the chunk was refused before it was sealed: no space), the
/// upload is as it was.
#[derive(Debug)]
pub struct Claim<'a> {
    slot: &'a UploadSlot,
    state: MutexGuard<'a, SlotState>,
    offset: u64,
}

impl Claim<'_> {
    /// The chunk `data` was sealed and written at its offset: it is hashed, and the upload
    /// now holds (returned) the bytes up to its end.
    pub fn stored(mut self, data: &[u8]) -> u64 {
        if let Some(hasher) = &mut self.state.hasher {
            hasher.update(data);
        }
        self.state.have = self.offset + data.len() as u64;
        self.state.have
    }

    /// Sealing or writing it failed: what reached the disk of it is unknown, so nothing is
    /// sealed at this offset again — the slot is closed.
    pub fn failed(mut self) {
        self.slot.closed.store(true, Ordering::Release);
        self.state.owner = None;
    }
}

impl UploadSlot {
    /// An upload holding `have` bytes (0 for a new one), active nowhere yet. Its digest is
    /// kept only from 0.
    pub fn new(have: u64) -> Self {
        Self {
            state: Mutex::new(SlotState {
                owner: None,
                have,
                hasher: (have == 0).then(sha2::Sha256::default),
            }),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make connection `conn` the only one that stores chunks of the upload; under the lock,
    /// `open` is given `have` (to open the stored file cut to it). Returns `have` and what
    /// `open` returned.
    pub fn take_over<T>(&self, conn: u64, open: impl FnOnce(u64) -> T) -> (u64, T) {
        let mut state = self.lock();
        state.owner = Some(conn);
        let have = state.have;
        (have, open(have))
    }

    /// The right to store the chunk at content `offset`, if `conn` owns the upload and it is
    /// the next chunk; `None` (nothing may be sealed) if not. Decided under the lock, which
    /// the [`Claim`] holds until the chunk is written (or refused).
    pub fn claim(&self, conn: u64, offset: u64) -> Option<Claim<'_>> {
        let state = self.lock();
        if self.closed.load(Ordering::Acquire) || state.owner != Some(conn) || state.have != offset
        {
            return None;
        }
        Some(Claim {
            slot: self,
            state,
            offset,
        })
    }

    /// The SHA-256 of the stored content if it is all there (`size` bytes) and was hashed as
    /// it was stored; `None` means: read it back (or, dropped, it is no file any more).
    pub fn digest(&self, size: u64) -> Option<[u8; 32]> {
        let state = self.lock();
        if state.have != size || self.closed.load(Ordering::Acquire) {
            return None;
        }
        state.hasher.clone().map(|hasher| hasher.finalize().into())
    }

    /// The upload was dropped: nothing more is stored.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::CHUNK_BYTES;

    const C: usize = CHUNK_BYTES as usize;

    fn ok(_: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    /// What became of a chunk offered to [`store`].
    #[derive(Debug)]
    enum StoreOutcome {
        Stored { have: u64 },
        NotActive,
        Failed,
    }

    /// Store `data` as [`super::super::FileHost::store_chunk`] does: claimed, then `write`
    /// (seal and write) under the claim.
    fn store(
        slot: &UploadSlot,
        conn: u64,
        offset: u64,
        data: &[u8],
        write: impl FnOnce(&[u8]) -> std::io::Result<()>,
    ) -> StoreOutcome {
        let Some(claim) = slot.claim(conn, offset) else {
            return StoreOutcome::NotActive;
        };
        match write(data) {
            Ok(()) => StoreOutcome::Stored {
                have: claim.stored(data),
            },
            Err(_) => {
                claim.failed();
                StoreOutcome::Failed
            }
        }
    }

    /// A takeover moves the right to store at once: the old connection's next chunk is
    /// neither sealed nor written (its `write` never runs), and the digest goes on over what
    /// either stored, in order.
    #[test]
    fn a_taken_over_upload_is_stored_only_by_its_new_connection_and_hashed_across_both() {
        let content: Vec<u8> = (0..3 * C).map(|i| (i % 251) as u8).collect();
        let size = content.len() as u64;
        let slot = UploadSlot::new(0);
        assert_eq!(slot.take_over(1, |have| have), (0, 0));
        assert!(matches!(
            store(&slot, 1, 0, &content[..C], ok),
            StoreOutcome::Stored { have } if have == CHUNK_BYTES
        ));
        let (have, ()) = slot.take_over(2, |_| ());
        assert_eq!(have, CHUNK_BYTES);
        let mut sealed_by_old = false;
        assert!(matches!(
            store(&slot, 1, CHUNK_BYTES, &[9; C], |_| {
                sealed_by_old = true;
                Ok(())
            }),
            StoreOutcome::NotActive
        ));
        assert!(
            !sealed_by_old,
            "nothing sealed for a connection that lost it"
        );
        // Not at its place (a resend, or a chunk ahead): nothing sealed either.
        assert!(matches!(
            store(&slot, 2, 0, &content[..C], ok),
            StoreOutcome::NotActive
        ));
        assert!(matches!(
            store(&slot, 2, 2 * CHUNK_BYTES, &content[2 * C..], ok),
            StoreOutcome::NotActive
        ));
        assert_eq!(slot.digest(size), None, "not all there yet");
        for at in [CHUNK_BYTES, 2 * CHUNK_BYTES] {
            let range = at as usize..(at as usize + C);
            assert!(matches!(
                store(&slot, 2, at, &content[range], ok),
                StoreOutcome::Stored { .. }
            ));
        }
        let expected: [u8; 32] = sha2::Sha256::digest(&content).into();
        assert_eq!(slot.digest(size), Some(expected));
    }

    #[test]
    fn a_resumed_upload_has_no_digest_and_a_failed_or_dropped_one_stores_nothing_more() {
        let resumed = UploadSlot::new(CHUNK_BYTES);
        resumed.take_over(1, |_| ());
        assert!(matches!(
            store(&resumed, 1, CHUNK_BYTES, &[1; 10], ok),
            StoreOutcome::Stored { have } if have == CHUNK_BYTES + 10
        ));
        assert_eq!(
            resumed.digest(CHUNK_BYTES + 10),
            None,
            "read back from disk"
        );

        let failing = UploadSlot::new(0);
        failing.take_over(1, |_| ());
        assert!(matches!(
            store(&failing, 1, 0, &[1; C], |_| Err(std::io::Error::other(
                "disk full"
            ))),
            StoreOutcome::Failed
        ));
        failing.take_over(2, |_| ());
        assert!(matches!(
            store(&failing, 2, 0, &[1; C], ok),
            StoreOutcome::NotActive
        ));

        // A chunk refused before it was sealed (no space) leaves the upload as it was: the
        // same connection stores it at the same offset later.
        let refused = UploadSlot::new(0);
        refused.take_over(1, |_| ());
        drop(refused.claim(1, 0).expect("its next chunk"));
        assert!(refused.claim(1, CHUNK_BYTES).is_none(), "nothing advanced");
        assert!(matches!(
            store(&refused, 1, 0, &[1; C], ok),
            StoreOutcome::Stored { have } if have == CHUNK_BYTES
        ));

        let dropped = UploadSlot::new(0);
        dropped.take_over(1, |_| ());
        dropped.close();
        assert!(matches!(
            store(&dropped, 1, 0, &[1; C], ok),
            StoreOutcome::NotActive
        ));
        assert_eq!(dropped.digest(0), None, "a dropped upload is no file");
    }
}
