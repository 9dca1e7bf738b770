//! The room's file quota (`docs/PROTOCOL.md` §8, stored files; §13, Quota): what a chunk
//! needs to make room for itself. Pure: sizes in, a plan out.
//!
//! Files are charged the bytes that have **arrived**: a finished file its size (at least a
//! disk block, [`charge`]), an unfinished upload the chunks stored so far. An offer reserves
//! nothing, so offers that never send anything cannot make a kept file give way. Just before a
//! chunk is stored, finished files give way oldest first (their events stay, and `file_get`
//! then says `gone`). Unfinished uploads never give way to a chunk (they expire), and together
//! they may hold at most [`unfinished_share`] of the quota: the finished files always keep the
//! rest.

/// What a finished file counts against the quota: its content, and at least a disk block, so
/// a flood of empty files is bounded by the quota too.
pub fn charge(size: u64) -> u64 {
    size.max(4096)
}

/// The most the unfinished uploads may hold together: half the quota, or one largest file if
/// that is more (a file the host takes must be able to arrive).
pub fn unfinished_share(quota: u64, max_file: u64) -> u64 {
    (quota / 2).max(max_file).min(quota)
}

/// What the room's files take now, and the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Charged bytes of the files kept (finished).
    pub finished: u64,
    /// Stored bytes of the uploads under way or stopped part-way.
    pub unfinished: u64,
    /// The room's limit on both together.
    pub quota: u64,
    /// The most `unfinished` may reach ([`unfinished_share`]).
    pub unfinished_cap: u64,
}

/// The bytes cannot be taken: the unfinished uploads would pass their share of the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSpace;

/// The finished files (`(id, charged bytes)`, oldest first) that must give way for `bytes`
/// more of an unfinished upload to be stored, or [`NoSpace`] if they would take the
/// unfinished uploads past their share (nothing is to be removed then). Within the share they
/// always fit once enough finished files gave way.
pub fn make_room(
    usage: Usage,
    bytes: u64,
    oldest_first: impl IntoIterator<Item = (u64, u64)>,
) -> Result<Vec<u64>, NoSpace> {
    let unfinished = usage.unfinished.saturating_add(bytes);
    if unfinished > usage.unfinished_cap.min(usage.quota) {
        return Err(NoSpace);
    }
    let mut finished = usage.finished;
    let mut give_way = Vec::new();
    let mut files = oldest_first.into_iter();
    while finished.saturating_add(unfinished) > usage.quota {
        match files.next() {
            Some((id, charged)) => {
                finished = finished.saturating_sub(charged);
                give_way.push(id);
            }
            // The books say more is kept than the files listed (they cannot disagree, but
            // nothing more can give way): what is listed went, and the chunk is taken.
            None => break,
        }
    }
    Ok(give_way)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(finished: u64, unfinished: u64) -> Usage {
        Usage {
            finished,
            unfinished,
            quota: 100,
            unfinished_cap: 50,
        }
    }

    #[test]
    fn bytes_that_fit_remove_nothing() {
        assert_eq!(make_room(usage(50, 10), 40, [(1, 50)]), Ok(vec![]));
        assert_eq!(make_room(usage(0, 0), 50, []), Ok(vec![]));
        assert_eq!(
            make_room(usage(100, 0), 0, [(1, 100)]),
            Ok(vec![]),
            "nothing arriving evicts nothing"
        );
    }

    #[test]
    fn the_oldest_files_give_way_until_the_chunk_fits() {
        let files = [(1, 30), (2, 30), (3, 30)];
        assert_eq!(make_room(usage(90, 0), 20, files), Ok(vec![1]));
        assert_eq!(make_room(usage(90, 0), 40, files), Ok(vec![1]));
        assert_eq!(make_room(usage(90, 0), 41, files), Ok(vec![1, 2]));
        assert_eq!(make_room(usage(90, 10), 40, files), Ok(vec![1, 2]));
    }

    #[test]
    fn unfinished_uploads_never_pass_their_share_so_finished_files_keep_the_rest() {
        assert_eq!(make_room(usage(0, 40), 11, []), Err(NoSpace));
        assert_eq!(make_room(usage(50, 50), 1, [(1, 50)]), Err(NoSpace));
        // At its share, the unfinished uploads have evicted at most half.
        let files = [(1, 25), (2, 25), (3, 25), (4, 25)];
        assert_eq!(make_room(usage(100, 40), 10, files), Ok(vec![1, 2]));
    }

    #[test]
    fn the_share_is_half_or_one_largest_file() {
        assert_eq!(unfinished_share(100, 10), 50);
        assert_eq!(unfinished_share(100, 80), 80);
        assert_eq!(unfinished_share(100, 200), 100, "never past the quota");
        assert_eq!(
            unfinished_share(2048 << 20, 100 << 20),
            1024 << 20,
            "the defaults: 1 GiB"
        );
    }
}
