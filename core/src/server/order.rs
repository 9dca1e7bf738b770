//! The order a member's connection sends in — the room's order: before each private item,
//! the broadcasts that precede its position in the log; then the item; acks coalesced (of
//! several due together only the last goes out, and always before whatever follows it).
//!
//! Pure: the writer (and the room's tests, playing a member) offer it the private queue's
//! items one at a time and the log's end, and it says what goes out next.

use std::ops::Range;
use std::sync::Arc;

use super::link::{DownloadJob, Outgoing};
use super::recent::ReplayPin;
use super::roster::Roster;
use crate::message::ServerMessage;

/// A private item due now.
#[derive(Debug)]
pub enum Private {
    /// A message for this member only.
    Message(Box<ServerMessage>),
    /// The welcome, whose online list is filled in from `roster` as it is sent.
    Welcome {
        welcome: Box<ServerMessage>,
        roster: Arc<Roster>,
    },
    /// Replay the room events `from_seq..=through_seq` from the recent history.
    Replay { pin: ReplayPin, through_seq: u64 },
    /// Send `begin`, then stream the file of `job` when nothing else is due.
    Download {
        begin: Box<ServerMessage>,
        job: DownloadJob,
    },
    /// Close once what came before is written; nothing follows.
    Close,
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Send the broadcasts in this range of the log (after [`SendOrder::take_ack`], if they
    /// are there), then report how far with [`SendOrder::sent_through`].
    Broadcasts(Range<u64>),
    /// Send this item, after [`SendOrder::take_ack`].
    Private(Private),
    /// An item was bookkept (an attach or an ack): offer the next one and ask again.
    Again,
    /// Nothing is due until the log grows or another item is queued.
    Idle,
}

/// A member connection's place in the room's order; see the module documentation.
#[derive(Debug, Default)]
pub struct SendOrder {
    /// Where this member is in the broadcast log (`None` until it has joined, or once the
    /// log has let go of it).
    cursor: Option<u64>,
    /// The next private item, taken from the queue but not yet due.
    next: Option<Outgoing>,
    /// The newest ack due, not yet sent.
    ack: Option<u64>,
    /// The end of the last broadcasts handed out, while not all of them have gone out: a
    /// range always ends on a frame boundary (the log's end or an item's position), so
    /// nothing private goes out before the cursor is back on one — never inside a frame,
    /// even when a write ended part-way through a broadcast.
    owed: Option<u64>,
    /// `Close` went out: nothing follows it.
    closed: bool,
}

impl SendOrder {
    /// Can it take the next queued item? (It holds one at a time.)
    pub fn wants_item(&self) -> bool {
        self.next.is_none()
    }

    /// The next item of the private queue (only when [`wants_item`](Self::wants_item)).
    pub fn offer(&mut self, item: Outgoing) {
        debug_assert!(self.next.is_none(), "one item at a time");
        self.next = Some(item);
    }

    /// Does it send broadcasts (so a growing log matters)?
    pub fn is_attached(&self) -> bool {
        self.cursor.is_some()
    }

    /// What goes out next, with the log ending at `log_end`.
    pub fn step(&mut self, log_end: u64) -> Step {
        if self.closed {
            return Step::Idle;
        }
        if let (Some(at), Some(owed)) = (self.cursor, self.owed) {
            if at < owed {
                return Step::Broadcasts(at..owed);
            }
        }
        let until = self.next.as_ref().map_or(u64::MAX, Outgoing::after);
        if let Some(at) = self.cursor {
            let end = until.min(log_end);
            if at < end {
                self.owed = Some(end);
                return Step::Broadcasts(at..end);
            }
        }
        let due = match (&self.next, self.cursor) {
            (Some(item), Some(at)) => item.after() <= at,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !due {
            return Step::Idle;
        }
        match self.next.take() {
            Some(Outgoing::Attach(at)) => {
                self.cursor = Some(at);
                Step::Again
            }
            Some(Outgoing::Session { message, .. }) => match *message {
                ServerMessage::Ack { up_to } => {
                    self.ack = Some(up_to);
                    Step::Again
                }
                message => Step::Private(Private::Message(Box::new(message))),
            },
            Some(Outgoing::Welcome {
                welcome, roster, ..
            }) => Step::Private(Private::Welcome { welcome, roster }),
            Some(Outgoing::Replay {
                pin, through_seq, ..
            }) => Step::Private(Private::Replay { pin, through_seq }),
            Some(Outgoing::Download { begin, job, .. }) => {
                Step::Private(Private::Download { begin, job })
            }
            Some(Outgoing::Close { .. }) => {
                self.closed = true;
                Step::Private(Private::Close)
            }
            None => Step::Idle,
        }
    }

    /// The broadcasts before log position `to` have gone out.
    pub fn sent_through(&mut self, to: u64) {
        if let Some(at) = &mut self.cursor {
            *at = (*at).max(to);
            if self.owed.is_some_and(|owed| owed <= *at) {
                self.owed = None;
            }
        }
    }

    /// Where it is in the log (`None` when not attached).
    pub fn position(&self) -> Option<u64> {
        self.cursor
    }

    /// The log no longer holds this member's place: the room has let go of the connection
    /// (cut off or replaced). No more broadcasts; its private items (why it is closed) still
    /// go out as they come.
    pub fn detach(&mut self) {
        self.cursor = None;
        self.owed = None;
    }

    /// The ack due, to be sent before whatever goes out next (and at the end of a write).
    pub fn take_ack(&mut self) -> Option<ServerMessage> {
        self.ack.take().map(|up_to| ServerMessage::Ack { up_to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(after: u64, message: ServerMessage) -> Outgoing {
        Outgoing::Session {
            after,
            message: Box::new(message),
        }
    }

    /// Play the order against a log `log_end` long and a queue, recording what goes out:
    /// `B(from, to)` broadcasts, `A(n)` an ack, `P` a pong, `C` close.
    fn play(queue: Vec<Outgoing>, log_end: u64) -> Vec<String> {
        let mut queue = std::collections::VecDeque::from(queue);
        let mut order = SendOrder::default();
        let mut out = Vec::new();
        loop {
            if order.wants_item() {
                if let Some(item) = queue.pop_front() {
                    order.offer(item);
                }
            }
            match order.step(log_end) {
                Step::Broadcasts(range) => {
                    if let Some(ServerMessage::Ack { up_to }) = order.take_ack() {
                        out.push(format!("A{up_to}"));
                    }
                    out.push(format!("B{}-{}", range.start, range.end));
                    order.sent_through(range.end);
                }
                Step::Private(item) => {
                    if let Some(ServerMessage::Ack { up_to }) = order.take_ack() {
                        out.push(format!("A{up_to}"));
                    }
                    out.push(match item {
                        Private::Message(m) if matches!(*m, ServerMessage::Pong { .. }) => {
                            "P".into()
                        }
                        Private::Message(m) => match *m {
                            ServerMessage::RoomKey { from_broadcast, .. } => {
                                format!("K{from_broadcast}")
                            }
                            m => format!("{m:?}"),
                        },
                        Private::Welcome { .. } => "W".into(),
                        Private::Replay { pin, through_seq } => {
                            format!("R{}-{through_seq}", pin.next())
                        }
                        Private::Download { .. } => "D".into(),
                        Private::Close => "C".into(),
                    });
                }
                Step::Again => {}
                Step::Idle => break,
            }
        }
        if let Some(ServerMessage::Ack { up_to }) = order.take_ack() {
            out.push(format!("A{up_to}"));
        }
        out
    }

    #[test]
    fn private_items_follow_the_broadcasts_before_them_and_acks_coalesce() {
        let out = play(
            vec![
                Outgoing::Attach(10),
                session(20, ServerMessage::Ack { up_to: 1 }),
                session(20, ServerMessage::Ack { up_to: 2 }),
                session(30, ServerMessage::Pong { broadcast_next: 0 }),
                session(30, ServerMessage::Ack { up_to: 3 }),
                Outgoing::Close { after: 40 },
            ],
            50,
        );
        assert_eq!(out, ["B10-20", "A2", "B20-30", "P", "A3", "B30-40", "C"]);
    }

    #[test]
    fn nothing_is_broadcast_before_attaching_and_items_wait_for_the_log() {
        // Not yet attached: private items go out as they come.
        assert_eq!(
            play(
                vec![session(99, ServerMessage::Pong { broadcast_next: 0 })],
                0
            ),
            ["P"]
        );
        // Attached, with an item positioned beyond what the log holds yet: it waits.
        assert_eq!(
            play(
                vec![
                    Outgoing::Attach(0),
                    session(80, ServerMessage::Pong { broadcast_next: 0 })
                ],
                50
            ),
            ["B0-50"]
        );
        // A trailing ack goes out at the end.
        assert_eq!(
            play(
                vec![
                    Outgoing::Attach(5),
                    session(5, ServerMessage::Ack { up_to: 9 })
                ],
                5
            ),
            ["A9"]
        );
    }

    #[test]
    fn a_detached_member_gets_no_broadcasts_but_its_private_items() {
        let mut order = SendOrder::default();
        order.offer(Outgoing::Attach(0));
        assert!(matches!(order.step(100), Step::Again));
        assert!(order.is_attached());
        order.detach();
        order.offer(session(
            100,
            ServerMessage::Error {
                code: crate::message::ErrorCode::Replaced,
                message: "replaced".into(),
            },
        ));
        assert!(matches!(
            order.step(100),
            Step::Private(Private::Message(_))
        ));
        assert!(matches!(order.step(200), Step::Idle));
    }

    /// A write may end part-way through a broadcast frame; an item queued meanwhile (its
    /// position already behind the cursor) waits until that frame is finished.
    #[test]
    fn nothing_private_goes_out_inside_a_broadcast_frame() {
        let mut order = SendOrder::default();
        order.offer(Outgoing::Attach(0));
        assert!(matches!(order.step(100), Step::Again));
        let Step::Broadcasts(range) = order.step(100) else {
            panic!("broadcasts first");
        };
        assert_eq!(range, 0..100);
        order.sent_through(50); // the batch was full half-way through a frame
        order.offer(session(40, ServerMessage::Pong { broadcast_next: 0 }));
        match order.step(100) {
            Step::Broadcasts(range) => assert_eq!(range, 50..100, "finish the frame"),
            other => panic!("sent {other:?} inside a frame"),
        }
        order.sent_through(70);
        assert!(matches!(order.step(100), Step::Broadcasts(r) if r == (70..100)));
        order.sent_through(100);
        assert!(matches!(
            order.step(100),
            Step::Private(Private::Message(_))
        ));
    }
}
