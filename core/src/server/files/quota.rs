//! The room's file quota (`docs/PROTOCOL.md` §8, stored files): what an offer needs to make
//! room for itself. Pure: sizes in, a plan out.
//!
//! Unfinished uploads count with their whole offered size (a member cannot reserve the quota
//! with offers it never sends); finished files give way oldest first (their events stay, and
//! `file_get` then says `gone`); unfinished ones never give way to an offer — they expire.

/// What the room's files take now, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Content bytes of the files kept (finished).
    pub finished: u64,
    /// Offered bytes of the uploads under way or stopped part-way.
    pub unfinished: u64,
    /// The room's limit on both together.
    pub quota: u64,
}

/// Room for an offer of `size` bytes cannot be made even if every finished file gave way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSpace;

/// The finished files (`(id, size)`, oldest first) that must give way for an offer of `size`
/// bytes to fit, or [`NoSpace`] if it cannot fit even then (nothing is to be removed then).
pub fn make_room(
    usage: Usage,
    size: u64,
    oldest_first: impl IntoIterator<Item = (u64, u64)>,
) -> Result<Vec<u64>, NoSpace> {
    let need = |finished: u64| {
        finished
            .saturating_add(usage.unfinished)
            .saturating_add(size)
    };
    if usage.unfinished.saturating_add(size) > usage.quota {
        return Err(NoSpace);
    }
    let mut finished = usage.finished;
    let mut give_way = Vec::new();
    let mut files = oldest_first.into_iter();
    while need(finished) > usage.quota {
        match files.next() {
            Some((id, bytes)) => {
                finished = finished.saturating_sub(bytes);
                give_way.push(id);
            }
            None => return Err(NoSpace),
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
        }
    }

    #[test]
    fn an_offer_that_fits_removes_nothing() {
        assert_eq!(make_room(usage(50, 10), 40, [(1, 50)]), Ok(vec![]));
        assert_eq!(make_room(usage(0, 0), 100, []), Ok(vec![]));
    }

    #[test]
    fn the_oldest_files_give_way_until_it_fits() {
        let files = [(1, 30), (2, 30), (3, 30)];
        assert_eq!(make_room(usage(90, 0), 20, files), Ok(vec![1]));
        assert_eq!(make_room(usage(90, 0), 50, files), Ok(vec![1, 2]));
        assert_eq!(make_room(usage(90, 10), 90, files), Ok(vec![1, 2, 3]));
    }

    #[test]
    fn unfinished_uploads_count_and_never_give_way() {
        assert_eq!(make_room(usage(0, 60), 50, []), Err(NoSpace));
        assert_eq!(make_room(usage(30, 60), 50, [(1, 30)]), Err(NoSpace));
        assert_eq!(make_room(usage(0, 0), 101, []), Err(NoSpace));
    }
}
