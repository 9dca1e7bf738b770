//! The client's session: a pure state machine over everything that outlives one connection —
//! the outbox and its send window, the resume point, the online list, the oldest event shown,
//! the nickname — and the reconnect decisions.
//!
//! It does no I/O. The client task feeds it what happened (a connection is up, a server
//! message or an opened broadcast arrived, the user called a [`ClientHandle`] method, the
//! connection ended) and then takes the resulting [`Action`]s in order with
//! [`Session::next_action`] — emit this event, send this message, open the room's broadcasts
//! with this key, end the connection — like rustls' `Output`. Time and randomness come in as
//! arguments, so the tests below drive it directly, without sockets or sleeps.
//!
//! **What it believes before a handshake completes.** Nothing before the handshake is
//! authenticated, so no verdict from then may stop the client on its own: a `Reject(1)` (wrong
//! passphrase) stops it only after [`PASSPHRASE_VERDICTS`] fresh connections in a row say so
//! with no successful handshake between them; a handshake reply that fails its check counts the
//! same way (the client cannot tell a wrong passphrase from someone in the middle) unless a
//! handshake under this passphrase and salt already completed at the address in this process,
//! when it can only be interference ([`ErrorKind::HandshakeTampered`]); either way such failures
//! are throttled per address ([`throttle`](super::throttle)), as each one can be an on-path
//! attacker's passphrase guess. The room's salt is remembered once a handshake has authenticated it,
//! and a different one is reported ([`ErrorKind::RoomChanged`]) and then tried: if the
//! handshake with it succeeds, the server really did start a new room (an in-memory server
//! does on every restart), and the new salt is the room's from then on.
//!
//! [`ClientHandle`]: super::ClientHandle

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;

use super::backoff;
use super::event::{ClientEvent, DisconnectReason, ErrorKind, SendError};
use super::outbox::Outbox;
use super::throttle::{KeyTag, SharedThrottle};
use crate::author::author_tag;
use crate::cipher::Key;
use crate::conn::ConnError;
use crate::handshake::HandshakeError;
use crate::hello::{HelloError, RejectCode};
use crate::identity::{check_host, Fingerprint, HostPublicKey, HostVerdict};
use crate::message::{
    BroadcastMessage, ClientId, ClientMessage, ErrorCode, Resume, RoomEvent, RoomEventKind,
    ServerMessage, MAX_SEND_WINDOW, TYPING_NOTICE_INTERVAL,
};
use crate::passphrase::Salt;
use crate::text::nick_key;

/// Unauthenticated verdicts (`Reject(1)`, "not a Tertulia server") on fresh connections in a
/// row (no handshake completing between them) after which the client believes them and stops.
/// With the reconnect backoff, a forger would have to answer every connection for about a
/// second.
pub const PASSPHRASE_VERDICTS: u32 = 3;
/// What a refused passphrase is reported as: the client cannot tell a wrong passphrase from
/// an active attacker in the middle.
pub const PASSPHRASE_REFUSED: &str =
    "the room did not accept the passphrase (or someone interfered)";
/// What a failing handshake answer is reported as once this passphrase has completed a
/// handshake with this salt at the address: the passphrase is right, so someone interfered.
pub const HANDSHAKE_TAMPERED: &str =
    "the room's answer did not check out — someone may be interfering";
/// The longest a `Reject(6)` makes the client wait before it asks again. The frame is
/// unauthenticated, so whatever it says, one forged packet buys at most this much outage; a
/// real lockout costs the server nothing to repeat (`Reject(6)` comes before any handshake
/// work, with the seconds left), so asking again early is harmless.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The wait after a `Reject(6)` that does not say how long.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Events asked for per page of older history.
pub const OLDER_PAGE: usize = 100;

/// Something the client task must do, in the order the session asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Report this event to the user.
    Emit(ClientEvent),
    /// Seal this message with the session key and send it on the current connection.
    Send(ClientMessage),
    /// From now on open the room's broadcast frames with `key`, the next one numbered
    /// `next_counter` (from the welcome).
    OpenBroadcasts { key: Key, next_counter: u64 },
    /// A `room_key`: broadcasts from counter `from` on are sealed with `key`.
    NextRoomKey { key: Key, from: u64 },
    /// A pong: the next broadcast after it must be `next` (broadcasts dropped on the way
    /// otherwise: an integrity failure).
    CheckBroadcasts { next: u64 },
    /// End the current connection (or, while offline, the wait before the next attempt).
    End(Ending),
}

/// How a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The user left.
    Quit,
    /// The handshake answer (message 2) failed its check: the SPAKE2 keys differ. A refused
    /// passphrase ([`Ending::Verdict`]-like) or, under a key proven at the address,
    /// interference; throttled either way (see [`Session::connection_ended`]).
    AnswerFailed,
    /// Stop for good.
    Fatal {
        kind: ErrorKind,
        reason: DisconnectReason,
        message: String,
    },
    /// A verdict that would stop the client but arrived before a handshake completed, so an
    /// attacker could have forged it: reported as `meanwhile` and retried, and believed —
    /// ending like [`Ending::Fatal`] with `kind` and `reason` — only on the
    /// [`PASSPHRASE_VERDICTS`]th in a row with no completed handshake between.
    Verdict {
        kind: ErrorKind,
        reason: DisconnectReason,
        meanwhile: ErrorKind,
        message: String,
    },
    /// The handshake completed but the host presented another identity than the trusted
    /// one: reported with both fingerprints, and the client stops (nothing was sent).
    HostChanged {
        pinned: Fingerprint,
        presented: Fingerprint,
    },
    /// Try again; `report`: tell the user why; `wait`: at least this long first (the
    /// server said so), plus the usual backoff.
    Retry {
        kind: ErrorKind,
        message: String,
        report: bool,
        wait: Option<Duration>,
    },
}

impl Ending {
    fn retry(kind: ErrorKind, message: impl ToString) -> Self {
        Ending::Retry {
            kind,
            message: message.to_string(),
            report: true,
            wait: None,
        }
    }
}

/// What the task does after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait `delay`, then make connection attempt `attempt` (sooner if the user asks).
    Reconnect { attempt: u32, delay: Duration },
    /// The client has stopped (its `disconnected` event is queued).
    Stop,
}

/// One connection's part of the state: reset on every connection.
#[derive(Debug, Clone, Copy)]
struct Connection {
    /// In the room: the welcome arrived.
    joined: bool,
    /// The highest outbox id sent on this connection.
    sent_through: u64,
    /// Messages that may be in flight unacknowledged (from the welcome).
    window: usize,
}

/// The state machine; see the module documentation.
pub struct Session {
    addr: String,
    give_up_after: Option<u32>,
    nick: String,
    client_id: ClientId,
    /// This client's author tag: message events carrying it are its own.
    author: String,
    /// Own messages are only those after this point (epoch, room sequence): the room as it
    /// was at this session's first welcome in that epoch. Older events with our tag are from
    /// another process that used the same id, and their ids are not this outbox's.
    own_after: Option<Resume>,
    outbox: Outbox,
    resume: Option<Resume>,
    /// Folded nickname → display nickname.
    online: BTreeMap<String, String>,
    /// The room sequence the online list is current as of; older join/leave events do not
    /// change it.
    online_as_of: u64,
    /// The oldest room event reported in this room epoch (live, backlog or paged).
    oldest_seen: Option<u64>,
    quit_when_flushed: bool,
    /// When the last typing notice went out.
    last_typing: Option<Instant>,
    /// Connection attempts since the last one that made it into the room.
    attempt: u32,
    /// `None` while offline.
    connection: Option<Connection>,
    actions: VecDeque<Action>,
    /// Unauthenticated verdicts ([`Ending::Verdict`]) since the last completed handshake.
    verdicts: u32,
    /// The salt the last completed handshake authenticated: the room's, as far as we know.
    room_salt: Option<Salt>,
    /// The salt offered on the current connection attempt.
    offered_salt: Option<Salt>,
    /// The key (passphrase and offered salt) the current attempt's handshake uses.
    offered_key: Option<KeyTag>,
    /// Failing handshake answers and proven keys at this address (shared process-wide by
    /// [`super::spawn`]; private to the session otherwise).
    answers: SharedThrottle,
    /// The last different salt reported as a changed room (reported once, not per attempt).
    reported_salt: Option<Salt>,
    /// The server refused the nickname on this connection and the user is choosing another.
    choosing_nick: bool,
    /// The identity the current connection's host presented and this client trusts.
    host_fingerprint: Option<Fingerprint>,
}

impl Session {
    /// A session for `nick` at `addr` (shown in events), with this client's secret id.
    pub fn new(
        addr: impl Into<String>,
        nick: impl Into<String>,
        client_id: ClientId,
        give_up_after: Option<u32>,
    ) -> Self {
        Self {
            addr: addr.into(),
            give_up_after,
            nick: nick.into(),
            author: author_tag(&client_id),
            own_after: None,
            client_id,
            outbox: Outbox::default(),
            resume: None,
            online: BTreeMap::new(),
            online_as_of: 0,
            oldest_seen: None,
            quit_when_flushed: false,
            last_typing: None,
            attempt: 0,
            connection: None,
            actions: VecDeque::new(),
            verdicts: 0,
            room_salt: None,
            offered_salt: None,
            offered_key: None,
            answers: SharedThrottle::default(),
            reported_salt: None,
            choosing_nick: false,
            host_fingerprint: None,
        }
    }

    /// Count failing handshake answers and proven keys in `answers` (the address's
    /// process-wide throttle, [`throttle::for_address`](super::throttle::for_address)).
    pub fn sharing_answers(mut self, answers: SharedThrottle) -> Self {
        self.answers = answers;
        self
    }

    /// The next thing to do, oldest first.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn emit(&mut self, event: ClientEvent) {
        self.actions.push_back(Action::Emit(event));
    }

    fn send_message(&mut self, message: ClientMessage) {
        self.actions.push_back(Action::Send(message));
    }

    fn end(&mut self, ending: Ending) {
        self.actions.push_back(Action::End(ending));
    }

    fn joined(&self) -> bool {
        self.connection.is_some_and(|c| c.joined)
    }

    /// Is `nick` this client's own nickname (the room's folding, the one place it is decided)?
    /// Only for typing notices: messages are matched by author tag ([`Self::is_own_message`]).
    fn is_own(&self, nick: &str) -> bool {
        nick_key(nick) == nick_key(&self.nick)
    }

    /// Is the message event `seq` with tag `author` one this session sent: our tag, and
    /// after this session's first welcome in the current epoch (live, or replayed to us)?
    fn is_own_message(&self, seq: u64, author: &str) -> bool {
        author == self.author
            && self.own_after.as_ref().is_some_and(|after| {
                self.resume.as_ref().is_some_and(|r| r.epoch == after.epoch) && seq > after.last_seq
            })
    }

    // ---- connections ----

    /// A connection attempt starts.
    pub fn connecting(&mut self) {
        self.attempt += 1;
        self.emit(ClientEvent::Connecting {
            attempt: self.attempt,
            addr: self.addr.clone(),
        });
    }

    /// The server's hello offered `salt`. A salt other than the one the last handshake
    /// authenticated is reported (once per new salt); the handshake then goes ahead with it.
    pub fn hello(&mut self, salt: Salt) {
        self.offered_salt = Some(salt);
        let changed = self.room_salt.is_some_and(|known| known != salt);
        if changed && self.reported_salt != Some(salt) {
            self.reported_salt = Some(salt);
            self.emit(ClientEvent::Error {
                kind: ErrorKind::RoomChanged,
                message: "the room at this address changed: its server offers a different salt \
                          than before (a new room after a restart, or someone on the network \
                          altering it); trying the passphrase with it"
                    .into(),
                retry_after_secs: None,
                pinned_fingerprint: None,
                presented_fingerprint: None,
            });
        }
    }

    /// The key for the offered salt is ready; `key` names it (this passphrase with that salt).
    pub fn key_ready(&mut self, key: KeyTag) {
        self.offered_key = Some(key);
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, super::throttle::AnswerThrottle> {
        self.answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handshake completed (the host proved it knows the passphrase) and the host
    /// presented `presented`; `pinned` is the pin for this address, `expected` an invite
    /// code's identity and `accepted` one the user accepted deliberately
    /// ([`check_host`]). Trusted: joins
    /// (and the caller pins it if the verdict says so). Changed: ends the connection with
    /// [`Ending::HostChanged`] without sending anything.
    pub fn handshake_completed(
        &mut self,
        presented: HostPublicKey,
        pinned: Option<HostPublicKey>,
        expected: Option<Fingerprint>,
        accepted: Option<Fingerprint>,
    ) -> HostVerdict {
        let verdict = check_host(presented, pinned, expected, accepted);
        match verdict {
            HostVerdict::Trusted { .. } => {
                self.host_fingerprint = Some(presented.fingerprint());
                self.connected();
            }
            HostVerdict::Changed { pinned, presented } => {
                self.end(Ending::HostChanged { pinned, presented })
            }
        }
        verdict
    }

    /// The handshake succeeded: ask to join (resuming where this client left off).
    pub fn connected(&mut self) {
        // The handshake authenticated the hello, salt included, and the passphrase.
        if let Some(salt) = self.offered_salt.take() {
            self.room_salt = Some(salt);
        }
        // This passphrase is right with this salt here: a later failing answer under the
        // same key is interference, not a refusal.
        if let Some(key) = self.offered_key.take() {
            self.answers().prove(key);
        }
        self.reported_salt = None;
        self.verdicts = 0;
        self.choosing_nick = false;
        self.connection = Some(Connection {
            joined: false,
            sent_through: 0,
            window: 1,
        });
        self.send_join();
    }

    fn send_join(&mut self) {
        self.send_message(ClientMessage::Join {
            nick: self.nick.clone(),
            client_id: self.client_id.clone(),
            resume: self.resume.clone(),
        });
    }

    /// The connection (or the attempt) ended as `ending` at `now`: report it and decide what
    /// next. `jitter` spreads reconnects out (see [`backoff::delay`]).
    ///
    /// A failing handshake answer ([`Ending::AnswerFailed`]) is counted in the address's
    /// throttle: after the first few, the next attempt waits an extra delay
    /// ([`throttle::extra_wait`](super::throttle::extra_wait)), shown as `retry_after_secs` and
    /// included in the `reconnecting` delay. Under a key that completed a handshake here it is
    /// [`ErrorKind::HandshakeTampered`] and does not count towards the wrong-passphrase stop;
    /// otherwise it is a refusal like a `Reject(1)`.
    pub fn connection_ended(
        &mut self,
        ending: Ending,
        now: Instant,
        jitter: &mut impl Rng,
    ) -> Next {
        let joined = self.joined();
        self.connection = None;
        self.offered_salt = None;
        let offered_key = self.offered_key.take();
        // What was queued for the connection that is gone is void; events stay.
        self.actions.retain(|a| matches!(a, Action::Emit(_)));
        let (kind, message, report, wait) = match ending {
            Ending::Quit => {
                self.stop(DisconnectReason::Quit, "left the room".into());
                return Next::Stop;
            }
            Ending::Fatal {
                kind,
                reason,
                message,
            } => return self.stop_with_error(kind, reason, message),
            Ending::HostChanged { pinned, presented } => {
                let message = format!(
                    "the host's identity changed — if the host did not reset the room, someone \
                     may be intercepting (pinned {pinned}, presented {presented})"
                );
                self.emit(ClientEvent::Error {
                    kind: ErrorKind::HostIdentityChanged,
                    message: message.clone(),
                    retry_after_secs: None,
                    pinned_fingerprint: Some(pinned.to_string()),
                    presented_fingerprint: Some(presented.to_string()),
                });
                self.stop(DisconnectReason::Fatal, message);
                return Next::Stop;
            }
            Ending::AnswerFailed => {
                let (proven, extra, failures) = {
                    let mut answers = self.answers();
                    let proven = offered_key.is_some_and(|key| answers.is_proven(&key));
                    let extra = answers.failed(now);
                    (proven, extra, answers.failures(now))
                };
                tracing::warn!(
                    addr = %self.addr,
                    proven,
                    failures,
                    extra_wait_secs = extra.as_secs(),
                    "the handshake answer failed its check"
                );
                let wait = (!extra.is_zero()).then_some(extra);
                let slowed = match wait {
                    Some(w) => format!(
                        "; failed answers from this address are slowed down: retrying in {} s",
                        w.as_secs()
                    ),
                    None => String::new(),
                };
                if proven {
                    let message = format!(
                        "{HANDSHAKE_TAMPERED} (this passphrase was accepted here before){slowed}"
                    );
                    (ErrorKind::HandshakeTampered, message, true, wait)
                } else if self.verdicts + 1 >= PASSPHRASE_VERDICTS {
                    return self.believe(
                        ErrorKind::WrongPassphrase,
                        DisconnectReason::WrongPassphrase,
                        PASSPHRASE_REFUSED,
                    );
                } else {
                    self.verdicts += 1;
                    (
                        ErrorKind::PassphraseRefused,
                        Self::checking_again(PASSPHRASE_REFUSED) + &slowed,
                        true,
                        wait,
                    )
                }
            }
            Ending::Verdict {
                kind,
                reason,
                message,
                ..
            } if self.verdicts + 1 >= PASSPHRASE_VERDICTS => {
                return self.believe(kind, reason, &message);
            }
            Ending::Verdict {
                meanwhile, message, ..
            } => {
                self.verdicts += 1;
                (meanwhile, Self::checking_again(&message), true, None)
            }
            Ending::Retry {
                kind,
                message,
                report,
                wait,
            } => (kind, message, report, wait),
        };
        if joined {
            self.attempt = 0;
        }
        if report {
            self.emit(ClientEvent::Error {
                kind,
                message: message.clone(),
                retry_after_secs: wait.map(|w| w.as_secs()),
                pinned_fingerprint: None,
                presented_fingerprint: None,
            });
        }
        if self
            .give_up_after
            .is_some_and(|limit| self.attempt >= limit)
        {
            let message = format!("gave up after {} failed attempts: {message}", self.attempt);
            self.stop(DisconnectReason::GaveUp, message);
            return Next::Stop;
        }
        let attempt = self.attempt + 1;
        let delay = wait.unwrap_or_default() + backoff::delay(attempt, jitter);
        self.emit(ClientEvent::Reconnecting {
            attempt,
            delay_ms: delay.as_millis() as u64,
            reason: message,
        });
        Next::Reconnect { attempt, delay }
    }

    /// An unauthenticated verdict reported while it is not yet believed.
    fn checking_again(message: &str) -> String {
        format!(
            "{message}; checking again (believed after {PASSPHRASE_VERDICTS} in a row, as it \
             could be forged)"
        )
    }

    /// The [`PASSPHRASE_VERDICTS`]th unauthenticated verdict in a row: believed, the client
    /// stops.
    fn believe(&mut self, kind: ErrorKind, reason: DisconnectReason, message: &str) -> Next {
        let message = format!("{message} (on {PASSPHRASE_VERDICTS} connections in a row)");
        self.stop_with_error(kind, reason, message)
    }

    /// A final error: say it, then stop for `reason`.
    fn stop_with_error(
        &mut self,
        kind: ErrorKind,
        reason: DisconnectReason,
        message: String,
    ) -> Next {
        self.emit(ClientEvent::Error {
            kind,
            message: message.clone(),
            retry_after_secs: None,
            pinned_fingerprint: None,
            presented_fingerprint: None,
        });
        self.stop(reason, message);
        Next::Stop
    }

    /// The user left while offline (or the handle went away).
    pub fn stop_offline(&mut self) {
        self.stop(DisconnectReason::Quit, "left the room".into());
    }

    fn stop(&mut self, reason: DisconnectReason, message: String) {
        self.emit(ClientEvent::Disconnected { reason, message });
    }

    // ---- the user's calls ----

    /// Queue a chat message (already validated); it goes out now if the window allows.
    pub fn send(&mut self, text: String) -> Result<u64, SendError> {
        let id = self.outbox.push(text)?;
        self.fill_window();
        Ok(id)
    }

    /// Try another nickname: sent at once on a connection waiting for a nickname, used for
    /// the next connection otherwise.
    pub fn set_nick(&mut self, nick: String) -> Result<(), SendError> {
        if self.joined() {
            return Err(SendError::AlreadyJoined);
        }
        self.nick = nick;
        if self.connection.is_some() {
            self.send_join();
        }
        Ok(())
    }

    /// The user is typing: a notice at most once per [`TYPING_NOTICE_INTERVAL`], only in
    /// the room.
    pub fn typing(&mut self, now: Instant) {
        let due = self
            .last_typing
            .is_none_or(|t| now.saturating_duration_since(t) >= TYPING_NOTICE_INTERVAL);
        if self.joined() && due {
            self.last_typing = Some(now);
            self.send_message(ClientMessage::Typing);
        }
    }

    /// Ask for the page of history before the oldest event reported so far (in the room only).
    pub fn load_older(&mut self) {
        let Some(resume) = self.resume.as_ref().filter(|_| self.joined()) else {
            return;
        };
        let before_seq = self
            .oldest_seen
            .unwrap_or(resume.last_seq.saturating_add(1));
        self.send_message(ClientMessage::Older {
            before_seq,
            limit: OLDER_PAGE as u32,
        });
    }

    /// Leave now; unacknowledged messages are dropped.
    pub fn disconnect(&mut self) {
        if self.connection.is_some() {
            self.send_message(ClientMessage::Leave);
        }
        self.end(Ending::Quit);
    }

    /// Leave once every queued message has been acknowledged.
    pub fn disconnect_when_flushed(&mut self) {
        self.quit_when_flushed = true;
        self.leave_if_flushed();
    }

    /// If the user asked to leave once flushed and the outbox is empty: leave (saying goodbye
    /// when in the room; at once when offline).
    fn leave_if_flushed(&mut self) {
        if !self.quit_when_flushed || !self.outbox.is_empty() {
            return;
        }
        match self.connection {
            None => self.end(Ending::Quit),
            Some(c) if c.joined => self.disconnect(),
            Some(_) => {} // waiting for the welcome (or a nickname): leave once in
        }
    }

    // ---- what the server says ----

    /// An opened broadcast frame.
    pub fn on_broadcast(&mut self, message: BroadcastMessage) {
        match message {
            BroadcastMessage::Event(event) => self.on_event(event, false),
            BroadcastMessage::Typing { nick } => {
                if !self.is_own(&nick) {
                    self.emit(ClientEvent::Typing { nick });
                }
            }
            BroadcastMessage::Unknown => {
                tracing::debug!("ignoring a broadcast of a type this client does not know")
            }
        }
    }

    /// An opened session message.
    pub fn on_server_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome {
                nick,
                epoch,
                room_key,
                next_broadcast,
                head_seq,
                online,
                acked_up_to,
                resync,
                gap,
                resumed,
                oldest_seq,
                send_window,
            } => {
                self.actions.push_back(Action::OpenBroadcasts {
                    key: Key::from(room_key),
                    next_counter: next_broadcast,
                });
                let room_reset = resync || self.resume.as_ref().is_some_and(|r| r.epoch != epoch);
                let last_seq = match &self.resume {
                    Some(r) if !room_reset => r.last_seq,
                    _ => 0,
                };
                self.resume = Some(Resume {
                    epoch: epoch.clone(),
                    last_seq,
                });
                if room_reset {
                    self.oldest_seen = None;
                }
                // From the first welcome, and again whenever the room's numbering starts over
                // (a new epoch, or a resync: sequence numbers from before mean nothing).
                if room_reset || self.own_after.as_ref().is_none_or(|a| a.epoch != epoch) {
                    self.own_after = Some(Resume {
                        epoch: epoch.clone(),
                        last_seq: head_seq,
                    });
                }
                self.nick = nick.clone();
                self.online = online.into_iter().map(|n| (nick_key(&n), n)).collect();
                self.online_as_of = head_seq;
                let window = send_window.clamp(1, MAX_SEND_WINDOW) as usize;
                self.connection = Some(Connection {
                    joined: true,
                    sent_through: 0,
                    window,
                });
                self.emit(ClientEvent::Connected {
                    host_fingerprint: self
                        .host_fingerprint
                        .map(|fp| fp.to_string())
                        .unwrap_or_default(),
                    nick,
                    epoch,
                    resumed,
                    room_reset,
                    gap,
                    oldest_seq,
                });
                self.emit_online();
                self.on_acked(acked_up_to);
                self.fill_window();
                self.leave_if_flushed();
            }
            ServerMessage::MoreOnline { online } => {
                self.online
                    .extend(online.into_iter().map(|n| (nick_key(&n), n)));
                self.emit_online();
            }
            ServerMessage::History { events } => {
                for event in events {
                    self.on_event(event, true);
                }
            }
            ServerMessage::Older {
                before_seq,
                mut events,
                more,
            } => {
                // Only what is older than everything reported so far (a stale answer from
                // before a reconnect is filtered the same way).
                let limit = self.oldest_seen.unwrap_or(u64::MAX).min(before_seq);
                events.retain(|e| e.seq < limit);
                if let Some(first) = events.first() {
                    self.oldest_seen = Some(first.seq);
                }
                let events = events
                    .into_iter()
                    .filter_map(|e| self.describe(e, true))
                    .collect();
                self.emit(ClientEvent::Older { events, more });
            }
            ServerMessage::Ack { up_to } => {
                self.on_acked(up_to);
                self.fill_window();
                self.leave_if_flushed();
            }
            ServerMessage::NickRejected { nick, reason } => {
                self.choosing_nick = true;
                self.emit(ClientEvent::NickRejected {
                    nick,
                    reason,
                    message: reason.to_string(),
                });
            }
            ServerMessage::MessageRejected { id, reason } => {
                self.outbox.reject(id);
                self.emit(ClientEvent::MessageRejected {
                    id,
                    reason,
                    message: reason.to_string(),
                });
                self.fill_window();
                self.leave_if_flushed();
            }
            // Before the welcome there is no broadcast position to check (the server sends 0).
            ServerMessage::Pong { broadcast_next } => {
                if self.joined() {
                    self.actions.push_back(Action::CheckBroadcasts {
                        next: broadcast_next,
                    });
                }
            }
            ServerMessage::RoomKey {
                room_key,
                from_broadcast,
            } => {
                if self.joined() {
                    self.actions.push_back(Action::NextRoomKey {
                        key: room_key,
                        from: from_broadcast,
                    });
                } else {
                    self.end(Ending::retry(
                        ErrorKind::Protocol,
                        "the server sent a room key before the welcome",
                    ));
                }
            }
            ServerMessage::Unsupported { what } => {
                tracing::warn!(
                    what,
                    "the server does not support a message type this client sent"
                )
            }
            ServerMessage::Unknown => {
                tracing::debug!("ignoring a server message of a type this client does not know")
            }
            // Transfers (docs/PROTOCOL.md §13): the task hands these to its upload and download
            // state machines (`uploads`, `downloads`) before the session sees a message.
            ServerMessage::FileAccepted { .. }
            | ServerMessage::FileStored { .. }
            | ServerMessage::FileRefused { .. }
            | ServerMessage::FileDone { .. }
            | ServerMessage::FileBegin { .. }
            | ServerMessage::FileMissing { .. } => {
                tracing::debug!("ignoring a file transfer message")
            }
            ServerMessage::Error { code, message } => {
                let (kind, report) = match code {
                    ErrorCode::Integrity => (ErrorKind::IntegrityReportedByServer, true),
                    ErrorCode::SlowConsumer => (ErrorKind::SlowConsumer, true),
                    ErrorCode::ShuttingDown => (ErrorKind::ServerShuttingDown, true),
                    ErrorCode::Storage => (ErrorKind::ServerStorage, true),
                    ErrorCode::Flood => (ErrorKind::Flood, true),
                    ErrorCode::Replaced => (ErrorKind::Protocol, false),
                    // The join deadline (the handshake timeout) passed while the user chose
                    // another nickname: expected, not worth an error; the next connection
                    // joins with whatever nickname is set by then.
                    ErrorCode::Timeout if self.choosing_nick && !self.joined() => {
                        (ErrorKind::Protocol, false)
                    }
                    // A code from a newer server: its message says what happened.
                    ErrorCode::Protocol | ErrorCode::Timeout | ErrorCode::Other => {
                        (ErrorKind::Protocol, true)
                    }
                };
                self.end(Ending::Retry {
                    kind,
                    message: format!("server: {message}"),
                    report,
                    wait: None,
                });
            }
        }
    }

    /// Send outbox messages not yet sent on this connection, oldest first, keeping at most
    /// the window the server allows unacknowledged. Only in the room.
    fn fill_window(&mut self) {
        let Some(connection) = self.connection.as_mut().filter(|c| c.joined) else {
            return;
        };
        let sent_through = connection.sent_through;
        let in_flight = self
            .outbox
            .pending()
            .take_while(|p| p.id <= sent_through)
            .count();
        let room = connection.window.saturating_sub(in_flight);
        let due: Vec<ClientMessage> = self
            .outbox
            .pending()
            .skip(in_flight)
            .take(room)
            .map(|p| ClientMessage::Say {
                id: p.id,
                text: p.text.clone(),
            })
            .collect();
        if let Some(ClientMessage::Say { id, .. }) = due.last() {
            connection.sent_through = *id;
        }
        for say in due {
            self.send_message(say);
        }
    }

    fn on_acked(&mut self, up_to: u64) {
        let ids = self.outbox.ack(up_to);
        if !ids.is_empty() {
            self.emit(ClientEvent::Acked { ids });
        }
    }

    fn emit_online(&mut self) {
        let members = self.online.values().cloned().collect();
        self.emit(ClientEvent::Online { members });
    }

    /// A room event as the user sees it: the one place that decides what is `own`. `None`
    /// for a kind of event this version does not know (a newer server's): not shown.
    fn describe(&self, event: RoomEvent, history: bool) -> Option<ClientEvent> {
        let RoomEvent { seq, time_ms, kind } = event;
        Some(match kind {
            RoomEventKind::Message {
                from,
                text,
                msg_id,
                author,
            } => {
                let own = self.is_own_message(seq, &author);
                ClientEvent::Message {
                    seq,
                    time_ms,
                    from,
                    text,
                    own,
                    msg_id: own.then_some(msg_id),
                    history,
                }
            }
            RoomEventKind::Join { nick } => ClientEvent::Join {
                seq,
                time_ms,
                nick,
                history,
            },
            RoomEventKind::Leave { nick, reason } => ClientEvent::Leave {
                seq,
                time_ms,
                nick,
                reason,
                history,
            },
            RoomEventKind::File {
                from,
                file_id,
                name,
                size,
                mime,
                sha256,
                upload_id,
                author,
            } => {
                let own = self.is_own_message(seq, &author);
                ClientEvent::FileOffered {
                    seq,
                    time_ms,
                    from,
                    file_id,
                    name: crate::files::safe_name(&name),
                    size,
                    mime: crate::files::kept_mime(&mime),
                    sha256: hex::encode(sha256),
                    own,
                    upload_id: own.then_some(upload_id),
                    history,
                }
            }
            RoomEventKind::Other => {
                tracing::debug!(
                    seq,
                    "not showing a kind of room event this client does not know"
                );
                return None;
            }
        })
    }

    /// A live or replayed room event: shown once (by sequence number), and applied to the
    /// online list if it is newer than the list.
    fn on_event(&mut self, event: RoomEvent, history: bool) {
        let Some(resume) = &mut self.resume else {
            return;
        };
        if event.seq <= resume.last_seq {
            return; // already shown
        }
        resume.last_seq = event.seq;
        if self.oldest_seen.is_none() {
            self.oldest_seen = Some(event.seq);
        }
        let live_presence = event.seq > self.online_as_of;
        // The welcome's list may already hold a member who joins (it is taken when sent):
        // the list is announced again only if it changed.
        let changed = live_presence
            && match &event.kind {
                RoomEventKind::Join { nick } => {
                    self.online.insert(nick_key(nick), nick.clone()).as_ref() != Some(nick)
                }
                RoomEventKind::Leave { nick, .. } => self.online.remove(&nick_key(nick)).is_some(),
                RoomEventKind::Message { .. }
                | RoomEventKind::File { .. }
                | RoomEventKind::Other => false,
            };
        if let Some(shown) = self.describe(event, history) {
            self.emit(shown);
        }
        if changed {
            self.emit_online();
        }
    }
}

/// How a connection error ends the connection.
pub fn classify(error: ConnError) -> Ending {
    if error.is_integrity_failure() {
        return Ending::retry(
            ErrorKind::Integrity,
            format!("data from the server failed its integrity check ({error}); reconnecting"),
        );
    }
    match error {
        // The Hello is not authenticated either: believed only when it repeats.
        ConnError::Hello(HelloError::NotTertulia) => Ending::Verdict {
            kind: ErrorKind::NotTertulia,
            reason: DisconnectReason::Fatal,
            meanwhile: ErrorKind::Protocol,
            message: error.to_string(),
        },
        // Version verdicts, counted like the others; their text is shown as it is.
        ConnError::Hello(HelloError::NeedsNewer { .. }) => Ending::Verdict {
            kind: ErrorKind::NeedsNewer,
            reason: DisconnectReason::Fatal,
            meanwhile: ErrorKind::NeedsNewer,
            message: error.to_string(),
        },
        ConnError::Hello(HelloError::HostOutdated { .. }) | ConnError::BadVersion(_) => {
            Ending::Verdict {
                kind: ErrorKind::HostOutdated,
                reason: DisconnectReason::Fatal,
                meanwhile: ErrorKind::HostOutdated,
                message: error.to_string(),
            }
        }
        ConnError::Passphrase(_) => Ending::Fatal {
            kind: ErrorKind::BadPassphrase,
            reason: DisconnectReason::Fatal,
            message: error.to_string(),
        },
        ConnError::Rejected(Some(RejectCode::ServerFull)) => {
            Ending::retry(ErrorKind::ServerFull, "the server is full")
        }
        ConnError::Rejected(Some(RejectCode::TooManyFromAddress)) => Ending::retry(
            ErrorKind::ServerFull,
            "the server allows no more connections from your address",
        ),
        // A response that fails its check means the SPAKE2 keys differ: a wrong passphrase
        // or someone in the middle, which the client cannot tell apart (unless the passphrase
        // was proven with this salt here), and possibly an on-path attacker's guess: counted
        // and throttled by `Session::connection_ended`.
        ConnError::Handshake(HandshakeError::AuthenticationFailed) => Ending::AnswerFailed,
        // A `Reject(1)` is unauthenticated: believed only when it repeats. (It tests no
        // guess: an attacker that sends it made none.)
        ConnError::Rejected(Some(RejectCode::AuthenticationFailed)) => Ending::Verdict {
            kind: ErrorKind::WrongPassphrase,
            reason: DisconnectReason::WrongPassphrase,
            meanwhile: ErrorKind::PassphraseRefused,
            message: PASSPHRASE_REFUSED.into(),
        },
        ConnError::Throttled { retry_after_secs } => {
            let wait = retry_after_secs
                .map(|secs| Duration::from_secs(secs.into()))
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(MAX_RETRY_AFTER);
            Ending::Retry {
                kind: ErrorKind::TooManyFailedAttempts,
                message: format!(
                    "too many failed attempts from your network; retry in {} s",
                    wait.as_secs()
                ),
                report: true,
                wait: Some(wait),
            }
        }
        // A key derivation that did not finish is retried like a connection that did not.
        ConnError::Io(_) | ConnError::Closed | ConnError::Timeout | ConnError::KeyDerivation(_) => {
            Ending::retry(ErrorKind::Network, error)
        }
        other => Ending::retry(ErrorKind::Protocol, other),
    }
}

/// How a connection whose broadcast stream does not fit what the server says about it ends
/// (broadcasts dropped on the way, a room key out of place): like any integrity failure.
pub fn integrity_failure(error: impl std::fmt::Display) -> Ending {
    Ending::retry(
        ErrorKind::Integrity,
        format!("data from the server failed its integrity check ({error}); reconnecting"),
    )
}

/// How a connection that could not be opened, or that went quiet, ends.
pub fn network_failure(message: impl ToString) -> Ending {
    Ending::retry(ErrorKind::Network, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::LeaveReason;
    use crate::text::NickError;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const EPOCH: &str = "0123456789abcdef0123456789abcdef";

    fn session() -> Session {
        Session::new("127.0.0.1:5555", "Ana", "c".repeat(32), None)
    }

    fn drain(s: &mut Session) -> Vec<Action> {
        std::iter::from_fn(|| s.next_action()).collect()
    }

    fn sent(actions: &[Action]) -> Vec<ClientMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<ClientEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn said_ids(actions: &[Action]) -> Vec<u64> {
        sent(actions)
            .iter()
            .filter_map(|m| match m {
                ClientMessage::Say { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }

    struct Welcome {
        epoch: &'static str,
        head_seq: u64,
        online: Vec<&'static str>,
        acked_up_to: u64,
        resync: bool,
        send_window: u32,
    }

    impl Default for Welcome {
        fn default() -> Self {
            Self {
                epoch: EPOCH,
                head_seq: 0,
                online: vec!["Ana"],
                acked_up_to: 0,
                resync: false,
                send_window: 32,
            }
        }
    }

    impl Welcome {
        fn message(self) -> ServerMessage {
            ServerMessage::Welcome {
                nick: "Ana".into(),
                epoch: self.epoch.into(),
                room_key: [7u8; 32],
                next_broadcast: 3,
                head_seq: self.head_seq,
                online: self.online.into_iter().map(String::from).collect(),
                acked_up_to: self.acked_up_to,
                resync: self.resync,
                gap: false,
                resumed: false,
                oldest_seq: 1,
                send_window: self.send_window,
            }
        }
    }

    /// A message event from `from`; the server tags "Ana"'s (ours, in any case) with our id.
    fn message(seq: u64, from: &str, msg_id: u64) -> RoomEvent {
        let client = if nick_key(from) == nick_key("Ana") {
            "c".repeat(32)
        } else {
            format!("{from:x>32}")
        };
        tagged(seq, from, msg_id, &author_tag(&client))
    }

    fn tagged(seq: u64, from: &str, msg_id: u64, author: &str) -> RoomEvent {
        RoomEvent {
            seq,
            time_ms: 1000 + seq,
            kind: RoomEventKind::Message {
                from: from.into(),
                text: format!("m{seq}"),
                msg_id,
                author: author.into(),
            },
        }
    }

    fn join(seq: u64, nick: &str) -> RoomEvent {
        RoomEvent {
            seq,
            time_ms: 0,
            kind: RoomEventKind::Join { nick: nick.into() },
        }
    }

    fn leave(seq: u64, nick: &str) -> RoomEvent {
        RoomEvent {
            seq,
            time_ms: 0,
            kind: RoomEventKind::Leave {
                nick: nick.into(),
                reason: LeaveReason::Quit,
            },
        }
    }

    /// Connect and take the welcome; returns what that produced.
    fn join_room(s: &mut Session, welcome: Welcome) -> Vec<Action> {
        s.connecting();
        s.connected();
        s.on_server_message(welcome.message());
        drain(s)
    }

    fn shown_seqs(actions: &[Action]) -> Vec<u64> {
        events(actions)
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { seq, .. }
                | ClientEvent::Join { seq, .. }
                | ClientEvent::Leave { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    fn lose_connection(s: &mut Session) -> Next {
        s.connection_ended(
            network_failure("the server closed the connection"),
            Instant::now(),
            &mut StdRng::seed_from_u64(1),
        )
    }

    #[test]
    fn joining_sends_join_then_reports_connected_online_and_opens_broadcasts() {
        let mut s = session();
        s.connecting();
        s.connected();
        let actions = drain(&mut s);
        assert!(matches!(
            &actions[0],
            Action::Emit(ClientEvent::Connecting { attempt: 1, .. })
        ));
        assert_eq!(
            sent(&actions),
            vec![ClientMessage::Join {
                nick: "Ana".into(),
                client_id: "c".repeat(32),
                resume: None
            }]
        );
        s.on_server_message(Welcome::default().message());
        let actions = drain(&mut s);
        assert_eq!(
            actions[0],
            Action::OpenBroadcasts {
                key: [7u8; 32],
                next_counter: 3
            }
        );
        let events = events(&actions);
        assert!(matches!(
            &events[0],
            ClientEvent::Connected {
                room_reset: false,
                ..
            }
        ));
        assert_eq!(
            events[1],
            ClientEvent::Online {
                members: vec!["Ana".into()]
            }
        );
    }

    #[test]
    fn resume_without_gap_shows_only_what_was_missed() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        s.on_server_message(ServerMessage::History {
            events: vec![message(1, "ben", 1), message(2, "ben", 2)],
        });
        assert_eq!(shown_seqs(&drain(&mut s)), vec![1, 2]);
        lose_connection(&mut s);
        drain(&mut s);
        s.connecting();
        s.connected();
        let actions = drain(&mut s);
        assert_eq!(
            sent(&actions),
            vec![ClientMessage::Join {
                nick: "Ana".into(),
                client_id: "c".repeat(32),
                resume: Some(Resume {
                    epoch: EPOCH.into(),
                    last_seq: 2
                })
            }],
            "resumes after the last event shown"
        );
        s.on_server_message(
            Welcome {
                head_seq: 3,
                ..Welcome::default()
            }
            .message(),
        );
        // The replay overlaps what was shown (a replay may start earlier): only seq 3 is new.
        s.on_server_message(ServerMessage::History {
            events: vec![message(2, "ben", 2), message(3, "ben", 3)],
        });
        let actions = drain(&mut s);
        assert!(events(&actions).iter().any(|e| matches!(
            e,
            ClientEvent::Connected {
                room_reset: false,
                gap: false,
                ..
            }
        )));
        assert_eq!(shown_seqs(&actions), vec![3]);
    }

    #[test]
    fn resume_with_a_gap_is_reported() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        s.on_broadcast(BroadcastMessage::Event(message(1, "ben", 1)));
        lose_connection(&mut s);
        drain(&mut s);
        let mut welcome = Welcome {
            head_seq: 900,
            ..Welcome::default()
        }
        .message();
        if let ServerMessage::Welcome {
            gap, oldest_seq, ..
        } = &mut welcome
        {
            *gap = true;
            *oldest_seq = 500;
        }
        s.connecting();
        s.connected();
        s.on_server_message(welcome);
        s.on_server_message(ServerMessage::History {
            events: vec![message(500, "ben", 500)],
        });
        let actions = drain(&mut s);
        assert!(events(&actions).iter().any(|e| matches!(
            e,
            ClientEvent::Connected {
                gap: true,
                oldest_seq: 500,
                ..
            }
        )));
        assert_eq!(shown_seqs(&actions), vec![500]);
    }

    #[test]
    fn resync_after_a_server_restart_forgets_old_sequence_numbers() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        s.on_server_message(ServerMessage::History {
            events: (1..=5).map(|i| message(i, "ben", i)).collect(),
        });
        drain(&mut s);
        lose_connection(&mut s);
        // The server restarted without its history: a new epoch, sequence numbers from 1.
        let actions = join_room(
            &mut s,
            Welcome {
                epoch: "ffffffffffffffffffffffffffffffff",
                resync: true,
                ..Welcome::default()
            },
        );
        assert!(events(&actions).iter().any(|e| matches!(
            e,
            ClientEvent::Connected {
                room_reset: true,
                ..
            }
        )));
        s.on_broadcast(BroadcastMessage::Event(message(1, "ben", 1)));
        assert_eq!(
            shown_seqs(&drain(&mut s)),
            vec![1],
            "seq 1 of the new epoch is new"
        );
        // A different epoch without the resync flag is a reset too.
        lose_connection(&mut s);
        let actions = join_room(&mut s, Welcome::default());
        assert!(events(&actions).iter().any(|e| matches!(
            e,
            ClientEvent::Connected {
                room_reset: true,
                ..
            }
        )));
    }

    #[test]
    fn the_send_window_refills_as_acks_arrive() {
        let mut s = session();
        for i in 0..10 {
            assert_eq!(s.send(format!("t{i}")), Ok(i + 1), "queued while offline");
        }
        assert!(sent(&drain(&mut s)).is_empty(), "nothing goes out offline");
        let actions = join_room(
            &mut s,
            Welcome {
                send_window: 4,
                ..Welcome::default()
            },
        );
        assert_eq!(said_ids(&actions), vec![1, 2, 3, 4], "a window's worth");
        s.on_server_message(ServerMessage::Ack { up_to: 2 });
        let actions = drain(&mut s);
        assert_eq!(
            events(&actions),
            vec![ClientEvent::Acked { ids: vec![1, 2] }]
        );
        assert_eq!(said_ids(&actions), vec![5, 6]);
        assert_eq!(s.send("t10".into()), Ok(11));
        assert!(said_ids(&drain(&mut s)).is_empty(), "the window is full");
        s.on_server_message(ServerMessage::Ack { up_to: 6 });
        assert_eq!(said_ids(&drain(&mut s)), vec![7, 8, 9, 10]);
        // A reconnect resends everything unacknowledged, within the new window.
        lose_connection(&mut s);
        let actions = join_room(
            &mut s,
            Welcome {
                acked_up_to: 7,
                send_window: 500, // more than any server may allow: capped
                ..Welcome::default()
            },
        );
        assert_eq!(said_ids(&actions), vec![8, 9, 10, 11]);
        assert!(events(&actions).contains(&ClientEvent::Acked { ids: vec![7] }));
        // A refused message leaves the window.
        s.on_server_message(ServerMessage::MessageRejected {
            id: 8,
            reason: crate::text::MessageTextError::TooLong,
        });
        assert!(said_ids(&drain(&mut s)).is_empty());
    }

    #[test]
    fn the_window_is_capped_by_the_protocol_maximum() {
        let mut s = session();
        for i in 0..200 {
            s.send(format!("t{i}")).unwrap();
        }
        let actions = join_room(
            &mut s,
            Welcome {
                send_window: u32::MAX,
                ..Welcome::default()
            },
        );
        assert_eq!(said_ids(&actions).len(), MAX_SEND_WINDOW as usize);
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        s.on_broadcast(BroadcastMessage::Event(message(1, "ben", 1)));
        s.on_broadcast(BroadcastMessage::Event(message(1, "ben", 1)));
        s.on_server_message(ServerMessage::History {
            events: vec![message(1, "ben", 1), message(2, "ben", 2)],
        });
        s.on_broadcast(BroadcastMessage::Event(message(2, "ben", 2)));
        assert_eq!(shown_seqs(&drain(&mut s)), vec![1, 2]);
    }

    #[test]
    fn the_online_list_changes_only_with_events_after_head_seq() {
        let mut s = session();
        let actions = join_room(
            &mut s,
            Welcome {
                head_seq: 10,
                online: vec!["Ana", "ben"],
                ..Welcome::default()
            },
        );
        assert!(events(&actions).contains(&ClientEvent::Online {
            members: vec!["Ana".into(), "ben".into()]
        }));
        // Backlog from before head_seq: shown, but the list (as of head_seq) stands.
        s.on_server_message(ServerMessage::History {
            events: vec![join(9, "cat"), leave(10, "ben")],
        });
        let actions = drain(&mut s);
        assert_eq!(shown_seqs(&actions), vec![9, 10]);
        assert!(!events(&actions)
            .iter()
            .any(|e| matches!(e, ClientEvent::Online { .. })));
        // Live presence after head_seq changes it, and it is announced.
        s.on_broadcast(BroadcastMessage::Event(join(11, "Dan")));
        s.on_broadcast(BroadcastMessage::Event(leave(12, "BEN")));
        let online: Vec<ClientEvent> = events(&drain(&mut s))
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Online { .. }))
            .collect();
        assert_eq!(
            online,
            vec![
                ClientEvent::Online {
                    members: vec!["Ana".into(), "ben".into(), "Dan".into()]
                },
                ClientEvent::Online {
                    members: vec!["Ana".into(), "Dan".into()]
                },
            ]
        );
        // A join the welcome's list already held is shown, but the list is not repeated.
        s.on_broadcast(BroadcastMessage::Event(join(13, "Dan")));
        let actions = drain(&mut s);
        assert_eq!(shown_seqs(&actions), vec![13]);
        assert!(!events(&actions)
            .iter()
            .any(|e| matches!(e, ClientEvent::Online { .. })));
        // The rest of a long list.
        s.on_server_message(ServerMessage::MoreOnline {
            online: vec!["eve".into()],
        });
        assert_eq!(
            events(&drain(&mut s)),
            vec![ClientEvent::Online {
                members: vec!["Ana".into(), "Dan".into(), "eve".into()]
            }]
        );
    }

    /// Own messages are matched by author tag, not by nickname, and only among events after
    /// this session's first welcome (live or replayed on a resume).
    #[test]
    fn own_messages_are_this_sessions_by_tag_not_by_nickname() {
        let ours = author_tag(&"c".repeat(32));
        let mut s = session();
        join_room(
            &mut s,
            Welcome {
                head_seq: 5,
                ..Welcome::default()
            },
        );
        s.on_server_message(ServerMessage::History {
            // A previous process of the same client: our tag, but before this session.
            events: vec![tagged(5, "Ana", 1, &ours)],
        });
        s.on_broadcast(BroadcastMessage::Event(tagged(
            6,
            "Ana",
            1,
            "0123456789abcdef",
        )));
        s.on_broadcast(BroadcastMessage::Event(tagged(7, "Ana", 1, &ours)));
        let owns: Vec<_> = events(&drain(&mut s))
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Message {
                    seq, own, msg_id, ..
                } => Some((seq, own, msg_id)),
                _ => None,
            })
            .collect();
        assert_eq!(
            owns,
            [(5, false, None), (6, false, None), (7, true, Some(1))],
            "backlog before we joined and a namesake of another client are not ours"
        );

        // After a reconnect, the replay of what we sent during this session is still ours.
        lose_connection(&mut s);
        drain(&mut s);
        join_room(
            &mut s,
            Welcome {
                head_seq: 9,
                ..Welcome::default()
            },
        );
        s.on_server_message(ServerMessage::History {
            events: vec![tagged(8, "Ana", 2, &ours)],
        });
        let replayed = events(&drain(&mut s));
        assert!(
            replayed.iter().any(|e| matches!(
                e,
                ClientEvent::Message {
                    seq: 8,
                    own: true,
                    msg_id: Some(2),
                    ..
                }
            )),
            "{replayed:?}"
        );

        // The room was restored from an older copy (same epoch, resync): numbering starts
        // over from its head, and what we send next is ours even at a seq we saw before.
        lose_connection(&mut s);
        drain(&mut s);
        join_room(
            &mut s,
            Welcome {
                head_seq: 3,
                resync: true,
                ..Welcome::default()
            },
        );
        s.on_broadcast(BroadcastMessage::Event(tagged(4, "Ana", 3, &ours)));
        let after = events(&drain(&mut s));
        assert!(
            after.iter().any(|e| matches!(
                e,
                ClientEvent::Message {
                    seq: 4,
                    own: true,
                    msg_id: Some(3),
                    ..
                }
            )),
            "{after:?}"
        );
    }

    #[test]
    fn own_is_decided_in_one_place_for_live_replayed_and_older_events() {
        let mut s = session();
        join_room(
            &mut s,
            Welcome {
                head_seq: 20,
                ..Welcome::default()
            },
        );
        // The room folds nicknames: "ANA" is us, whatever the case.
        s.on_broadcast(BroadcastMessage::Event(message(21, "ANA", 4)));
        s.on_broadcast(BroadcastMessage::Event(message(22, "ben", 4)));
        s.on_server_message(ServerMessage::Older {
            before_seq: 21,
            events: vec![
                message(18, "ana", 2),
                message(19, "ben", 9),
                join(20, "ben"),
            ],
            more: false,
        });
        s.on_broadcast(BroadcastMessage::Typing { nick: "aNa".into() });
        s.on_broadcast(BroadcastMessage::Typing { nick: "ben".into() });
        let events = events(&drain(&mut s));
        let owns = |e: &ClientEvent| match e {
            ClientEvent::Message { own, msg_id, .. } => Some((*own, *msg_id)),
            _ => None,
        };
        assert_eq!(owns(&events[0]), Some((true, Some(4))));
        assert_eq!(
            owns(&events[1]),
            Some((false, None)),
            "others' ids are not ours"
        );
        let ClientEvent::Older {
            events: older,
            more,
        } = &events[2]
        else {
            panic!("expected older: {:?}", events[2]);
        };
        assert!(!more);
        assert_eq!(
            older.iter().map(owns).collect::<Vec<_>>(),
            vec![Some((false, None)), Some((false, None)), None],
            "ours, but from before this session joined: another process's ids"
        );
        assert!(older.iter().all(|e| matches!(
            e,
            ClientEvent::Message { history: true, .. } | ClientEvent::Join { history: true, .. }
        )));
        assert_eq!(
            events[3..],
            [ClientEvent::Typing { nick: "ben".into() }],
            "our own typing is not reported"
        );
    }

    #[test]
    fn older_pages_go_back_from_the_oldest_shown_and_never_repeat() {
        let mut s = session();
        s.load_older();
        assert!(drain(&mut s).is_empty(), "not in a room yet");
        join_room(&mut s, Welcome::default());
        s.load_older();
        assert_eq!(
            sent(&drain(&mut s)),
            vec![ClientMessage::Older {
                before_seq: 1,
                limit: OLDER_PAGE as u32
            }],
            "nothing shown yet: before the resume point"
        );
        s.on_server_message(ServerMessage::History {
            events: vec![message(50, "ben", 1), message(51, "ben", 2)],
        });
        drain(&mut s);
        s.load_older();
        assert_eq!(
            sent(&drain(&mut s)),
            vec![ClientMessage::Older {
                before_seq: 50,
                limit: OLDER_PAGE as u32
            }]
        );
        // An answer reaching past what is shown (stale) keeps only the older part.
        s.on_server_message(ServerMessage::Older {
            before_seq: 52,
            events: vec![
                message(48, "ben", 0),
                message(49, "ben", 0),
                message(50, "ben", 1),
            ],
            more: true,
        });
        let ClientEvent::Older { events, more: true } = &events(&drain(&mut s))[0] else {
            panic!("expected a page");
        };
        assert_eq!(events.len(), 2);
        s.load_older();
        assert_eq!(
            sent(&drain(&mut s)),
            vec![ClientMessage::Older {
                before_seq: 48,
                limit: OLDER_PAGE as u32
            }]
        );
    }

    #[test]
    fn typing_notices_are_throttled_by_time() {
        let mut s = session();
        let t0 = Instant::now();
        s.typing(t0);
        assert!(drain(&mut s).is_empty(), "offline: nothing");
        join_room(&mut s, Welcome::default());
        let typing_sent = |s: &mut Session, at: Instant| {
            s.typing(at);
            sent(&drain(s)) == vec![ClientMessage::Typing]
        };
        assert!(typing_sent(&mut s, t0));
        assert!(!typing_sent(&mut s, t0 + TYPING_NOTICE_INTERVAL / 2));
        assert!(typing_sent(&mut s, t0 + TYPING_NOTICE_INTERVAL));
    }

    #[test]
    fn a_refused_nickname_can_be_replaced_until_joined() {
        let mut s = session();
        s.connecting();
        s.connected();
        drain(&mut s);
        s.on_server_message(ServerMessage::NickRejected {
            nick: "Ana".into(),
            reason: NickError::Taken,
        });
        assert!(matches!(
            &events(&drain(&mut s))[0],
            ClientEvent::NickRejected {
                reason: NickError::Taken,
                ..
            }
        ));
        assert_eq!(s.set_nick("Ana2".into()), Ok(()));
        assert!(matches!(
            &sent(&drain(&mut s))[..],
            [ClientMessage::Join { nick, .. }] if nick == "Ana2"
        ));
        s.on_server_message(Welcome::default().message());
        drain(&mut s);
        assert_eq!(s.set_nick("Other".into()), Err(SendError::AlreadyJoined));
        // Offline, a new nickname is kept for the next connection.
        lose_connection(&mut s);
        assert_eq!(s.set_nick("Later".into()), Ok(()));
        s.connecting();
        s.connected();
        assert!(matches!(
            &sent(&drain(&mut s))[..],
            [ClientMessage::Join { nick, .. }] if nick == "Later"
        ));
    }

    #[test]
    fn the_join_deadline_passing_while_choosing_a_nickname_is_no_error() {
        let mut s = session();
        let timeout = || ServerMessage::Error {
            code: ErrorCode::Timeout,
            message: "no nickname chosen in time".into(),
        };
        s.connecting();
        s.connected();
        s.on_server_message(ServerMessage::NickRejected {
            nick: "Ana".into(),
            reason: NickError::Taken,
        });
        drain(&mut s);
        s.on_server_message(timeout());
        assert!(matches!(
            &drain(&mut s)[..],
            [Action::End(Ending::Retry { report: false, .. })]
        ));
        // Without a refused nickname a timeout is worth reporting.
        let mut s = session();
        s.connecting();
        s.connected();
        drain(&mut s);
        s.on_server_message(timeout());
        assert!(matches!(
            &drain(&mut s)[..],
            [Action::End(Ending::Retry { report: true, .. })]
        ));
    }

    #[test]
    fn leaving_when_flushed_waits_for_the_last_ack() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        s.send("last words".into()).unwrap();
        drain(&mut s);
        s.disconnect_when_flushed();
        assert!(drain(&mut s).is_empty(), "one message still unacknowledged");
        s.on_server_message(ServerMessage::Ack { up_to: 1 });
        let actions = drain(&mut s);
        assert_eq!(sent(&actions), vec![ClientMessage::Leave]);
        assert_eq!(actions.last(), Some(&Action::End(Ending::Quit)));
        // Offline with nothing queued: at once, without a goodbye.
        let mut s = session();
        s.disconnect_when_flushed();
        assert_eq!(drain(&mut s), vec![Action::End(Ending::Quit)]);
        // Offline with messages queued: after they are delivered on the next connection.
        let mut s = session();
        s.send("x".into()).unwrap();
        s.disconnect_when_flushed();
        assert!(drain(&mut s).is_empty());
        join_room(&mut s, Welcome::default());
        s.on_server_message(ServerMessage::Ack { up_to: 1 });
        assert_eq!(drain(&mut s).last(), Some(&Action::End(Ending::Quit)));
    }

    #[test]
    fn reconnect_backs_off_gives_up_and_resets_after_joining() {
        let mut s = Session::new("h:1", "Ana", "c".repeat(32), Some(3));
        let mut rng = StdRng::seed_from_u64(7);
        let mut delays = Vec::new();
        for expected in 2..=3 {
            s.connecting();
            match s.connection_ended(network_failure("refused"), Instant::now(), &mut rng) {
                Next::Reconnect { attempt, delay } => {
                    assert_eq!(attempt, expected);
                    delays.push(delay);
                }
                Next::Stop => panic!("stopped early"),
            }
        }
        assert!(delays[0] <= delays[1], "backs off: {delays:?}");
        s.connecting();
        assert_eq!(
            s.connection_ended(network_failure("refused"), Instant::now(), &mut rng),
            Next::Stop
        );
        let last = events(&drain(&mut s)).pop();
        assert!(matches!(
            last,
            Some(ClientEvent::Disconnected {
                reason: DisconnectReason::GaveUp,
                ..
            })
        ));
        // Two failures, then a connection that gets in: the count starts over.
        let mut s = Session::new("h:1", "Ana", "c".repeat(32), Some(3));
        for _ in 0..2 {
            s.connecting();
            s.connection_ended(network_failure("refused"), Instant::now(), &mut rng);
        }
        join_room(&mut s, Welcome::default());
        assert!(matches!(
            s.connection_ended(network_failure("cut"), Instant::now(), &mut rng),
            Next::Reconnect { attempt: 1, .. }
        ));
    }

    #[test]
    fn an_ended_connection_voids_what_was_queued_for_it_but_not_the_events() {
        let mut s = session();
        s.send("a".into()).unwrap();
        s.connecting();
        s.connected();
        s.on_server_message(Welcome::default().message());
        // The task fails on the first send: the rest of the sends are void, events stay.
        lose_connection(&mut s);
        let actions = drain(&mut s);
        assert!(sent(&actions).is_empty());
        assert!(events(&actions)
            .iter()
            .any(|e| matches!(e, ClientEvent::Connected { .. })));
        assert!(matches!(
            events(&actions).last(),
            Some(ClientEvent::Reconnecting { attempt: 1, .. })
        ));
    }

    #[test]
    fn server_errors_end_the_connection_as_the_code_says() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        s.on_server_message(ServerMessage::Error {
            code: ErrorCode::Replaced,
            message: "replaced".into(),
        });
        assert_eq!(
            drain(&mut s),
            vec![Action::End(Ending::Retry {
                kind: ErrorKind::Protocol,
                message: "server: replaced".into(),
                report: false,
                wait: None,
            })],
            "a replaced connection reconnects quietly"
        );
        s.on_server_message(ServerMessage::Error {
            code: ErrorCode::Flood,
            message: "slow down".into(),
        });
        assert!(matches!(
            &drain(&mut s)[..],
            [Action::End(Ending::Retry {
                kind: ErrorKind::Flood,
                report: true,
                ..
            })]
        ));
        // A code from a newer server: reported with its message, and the client reconnects.
        s.on_server_message(ServerMessage::Error {
            code: ErrorCode::Other,
            message: "something new".into(),
        });
        assert_eq!(
            drain(&mut s),
            vec![Action::End(Ending::Retry {
                kind: ErrorKind::Protocol,
                message: "server: something new".into(),
                report: true,
                wait: None,
            })]
        );
    }

    /// What a newer server sends that this version does not know is skipped or shown plainly,
    /// never the end of the connection: an unknown event kind takes its place in the
    /// numbering unshown, an unknown leave reason is a leave, unknown messages are ignored.
    #[test]
    fn unknown_kinds_and_values_from_a_newer_server_are_skipped_or_shown_plainly() {
        let mut s = session();
        join_room(&mut s, Welcome::default());
        let other = RoomEvent {
            seq: 1,
            time_ms: 0,
            kind: RoomEventKind::Other,
        };
        s.on_broadcast(BroadcastMessage::Event(other.clone()));
        s.on_broadcast(BroadcastMessage::Unknown);
        s.on_server_message(ServerMessage::Unknown);
        assert_eq!(drain(&mut s), vec![], "nothing shown, nothing ended");
        s.on_broadcast(BroadcastMessage::Event(other));
        s.on_broadcast(BroadcastMessage::Event(RoomEvent {
            seq: 2,
            time_ms: 0,
            kind: RoomEventKind::Leave {
                nick: "Ana".into(),
                reason: LeaveReason::Other,
            },
        }));
        assert_eq!(
            shown_seqs(&drain(&mut s)),
            vec![2],
            "seq 1 was counted as seen"
        );
        s.on_server_message(ServerMessage::Older {
            before_seq: 2,
            events: vec![RoomEvent {
                seq: 0,
                time_ms: 0,
                kind: RoomEventKind::Other,
            }],
            more: false,
        });
        assert_eq!(
            events(&drain(&mut s)),
            vec![ClientEvent::Older {
                events: vec![],
                more: false
            }]
        );
    }

    #[test]
    fn connection_errors_are_classified() {
        assert!(matches!(
            classify(ConnError::Hello(HelloError::NotTertulia)),
            Ending::Verdict {
                kind: ErrorKind::NotTertulia,
                meanwhile: ErrorKind::Protocol,
                ..
            }
        ));
        assert!(matches!(
            classify(ConnError::Rejected(Some(RejectCode::AuthenticationFailed))),
            Ending::Verdict {
                kind: ErrorKind::WrongPassphrase,
                meanwhile: ErrorKind::PassphraseRefused,
                ..
            }
        ));
        // Version 2: a response that fails its check is a refused passphrase or someone in
        // the middle; the session decides which it can tell, and throttles it.
        assert_eq!(
            classify(ConnError::Handshake(HandshakeError::AuthenticationFailed)),
            Ending::AnswerFailed
        );
        for (error, kind) in [
            (
                ConnError::Hello(HelloError::NeedsNewer { min: 3, max: 3 }),
                ErrorKind::NeedsNewer,
            ),
            (
                ConnError::Hello(HelloError::HostOutdated { max: 1 }),
                ErrorKind::HostOutdated,
            ),
            (ConnError::BadVersion("old".into()), ErrorKind::HostOutdated),
        ] {
            let text = error.to_string();
            match classify(error) {
                Ending::Verdict {
                    kind: k,
                    meanwhile,
                    message,
                    ..
                } => {
                    assert_eq!((k, meanwhile), (kind, kind));
                    assert_eq!(message, text, "shown verbatim");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            classify(ConnError::Throttled { retry_after_secs: Some(42) }),
            Ending::Retry {
                kind: ErrorKind::TooManyFailedAttempts,
                wait: Some(w),
                ..
            } if w == Duration::from_secs(42)
        ));
        assert!(
            matches!(
                classify(ConnError::Throttled { retry_after_secs: Some(u16::MAX) }),
                Ending::Retry { wait: Some(w), .. } if w == Duration::from_secs(60)
            ),
            "one forged Reject(6) keeps the client away a minute at most"
        );
        assert!(matches!(
            classify(ConnError::Rejected(Some(RejectCode::ServerFull))),
            Ending::Retry {
                kind: ErrorKind::ServerFull,
                ..
            }
        ));
        assert!(matches!(
            classify(ConnError::Closed),
            Ending::Retry {
                kind: ErrorKind::Network,
                ..
            }
        ));
    }

    fn refused() -> Ending {
        classify(ConnError::Rejected(Some(RejectCode::AuthenticationFailed)))
    }

    fn kinds(actions: &[Action]) -> Vec<ErrorKind> {
        events(actions)
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Error { kind, .. } => Some(kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_refused_passphrase_is_believed_only_when_it_repeats_without_a_handshake_between() {
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(1);
        // Two refusals, then a handshake that succeeds: the count starts over.
        for _ in 0..PASSPHRASE_VERDICTS - 1 {
            s.connecting();
            assert!(matches!(
                s.connection_ended(refused(), Instant::now(), &mut rng),
                Next::Reconnect { .. }
            ));
        }
        s.connecting();
        s.connected();
        s.connection_ended(network_failure("cut"), Instant::now(), &mut rng);
        drain(&mut s);
        // A network failure between refusals does not reset it.
        for i in 1..=PASSPHRASE_VERDICTS {
            s.connecting();
            let next = s.connection_ended(refused(), Instant::now(), &mut rng);
            if i < PASSPHRASE_VERDICTS {
                assert!(matches!(next, Next::Reconnect { .. }), "refusal {i}");
                s.connecting();
                s.connection_ended(network_failure("cut"), Instant::now(), &mut rng);
            } else {
                assert_eq!(next, Next::Stop);
            }
        }
        let actions = drain(&mut s);
        assert_eq!(
            kinds(&actions)
                .iter()
                .filter(|k| **k == ErrorKind::PassphraseRefused)
                .count(),
            PASSPHRASE_VERDICTS as usize - 1
        );
        assert_eq!(kinds(&actions).last(), Some(&ErrorKind::WrongPassphrase));
        assert!(matches!(
            events(&actions).last(),
            Some(ClientEvent::Disconnected {
                reason: DisconnectReason::WrongPassphrase,
                ..
            })
        ));
    }

    fn answer_failed() -> Ending {
        classify(ConnError::Handshake(HandshakeError::AuthenticationFailed))
    }

    /// The error reported for the attempt that just ended and the wait before the next one.
    fn reported(actions: &[Action]) -> (ErrorKind, String, Option<u64>, Option<Duration>) {
        let events = events(actions);
        let (kind, message, retry) = events
            .iter()
            .find_map(|e| match e {
                ClientEvent::Error {
                    kind,
                    message,
                    retry_after_secs,
                    ..
                } => Some((*kind, message.clone(), *retry_after_secs)),
                _ => None,
            })
            .expect("an error");
        let delay = events.iter().find_map(|e| match e {
            ClientEvent::Reconnecting { delay_ms, .. } => Some(Duration::from_millis(*delay_ms)),
            _ => None,
        });
        (kind, message, retry, delay)
    }

    /// One attempt whose handshake answer fails at `now` under key `key`.
    fn fail_answer(
        s: &mut Session,
        key: KeyTag,
        now: Instant,
        rng: &mut StdRng,
    ) -> (Next, (ErrorKind, String, Option<u64>, Option<Duration>)) {
        s.connecting();
        s.hello([1; 16]);
        s.key_ready(key);
        let next = s.connection_ended(answer_failed(), now, rng);
        (next, reported(&drain(s)))
    }

    /// One attempt whose handshake completes under `key`, then the connection is cut.
    fn complete(s: &mut Session, key: KeyTag, now: Instant, rng: &mut StdRng) {
        s.connecting();
        s.hello([1; 16]);
        s.key_ready(key);
        s.connected();
        s.connection_ended(network_failure("cut"), now, rng);
        drain(s);
    }

    /// An attacker on the path guesses twice, lets one connection through to the real server
    /// (which used to reset everything), and goes on: from the 4th failing answer each retry
    /// waits 1 s, 2 s, 4 s, … up to 60 s more, and says so.
    #[test]
    fn failing_answers_are_slowed_down_after_three_and_a_handshake_does_not_reset_that() {
        use crate::client::throttle::extra_wait;
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(7);
        let (room, guess) = (KeyTag::of(&[1; 32]), KeyTag::of(&[2; 32]));
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for failure in 1..=12u32 {
            if failure % 2 == 1 {
                complete(&mut s, room, now, &mut rng);
            }
            let (next, (kind, message, retry, delay)) = fail_answer(&mut s, guess, now, &mut rng);
            assert!(matches!(next, Next::Reconnect { .. }), "failure {failure}");
            assert_eq!(
                kind,
                ErrorKind::PassphraseRefused,
                "another salt: not proven"
            );
            let extra = extra_wait(failure);
            let delay = delay.expect("reconnecting");
            assert!(
                delay >= extra && delay <= extra + backoff::MAX_DELAY,
                "failure {failure}: {delay:?}"
            );
            if extra.is_zero() {
                assert_eq!(retry, None);
            } else {
                assert_eq!(retry, Some(extra.as_secs()), "the countdown shows the wait");
                assert!(
                    message.contains(&format!("retrying in {} s", extra.as_secs())),
                    "{message}"
                );
            }
            waits.push(retry.unwrap_or_default());
            now += delay;
        }
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn failing_answers_are_forgotten_after_fifteen_minutes_without_one() {
        use crate::client::throttle::FORGET_AFTER;
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(8);
        let (room, guess) = (KeyTag::of(&[1; 32]), KeyTag::of(&[2; 32]));
        let start = Instant::now();
        let mut now = start;
        for _ in 0..5 {
            complete(&mut s, room, now, &mut rng);
            now += Duration::from_secs(1);
            fail_answer(&mut s, guess, now, &mut rng);
        }
        complete(&mut s, room, now, &mut rng);
        let (_, (_, _, retry, _)) = fail_answer(
            &mut s,
            guess,
            now + FORGET_AFTER - Duration::from_secs(1),
            &mut rng,
        );
        assert_eq!(retry, Some(4), "still counted: the 6th");
        now += FORGET_AFTER - Duration::from_secs(1);
        complete(&mut s, room, now, &mut rng);
        let (_, (_, _, retry, _)) = fail_answer(&mut s, guess, now + FORGET_AFTER, &mut rng);
        assert_eq!(retry, None, "15 minutes without a failure: starts over");
    }

    /// Once this passphrase completed a handshake with this salt at the address, a failing
    /// answer under the same key cannot be a wrong passphrase: it is reported as tampering,
    /// never stops the client, and is still slowed down. Clients of the address in one process
    /// share that knowledge (and the count).
    #[test]
    fn a_failing_answer_under_a_proven_key_is_tampering_not_a_refusal() {
        use crate::client::throttle::{extra_wait, SharedThrottle};
        let shared = SharedThrottle::default();
        let mut s = session().sharing_answers(shared.clone());
        let mut rng = StdRng::seed_from_u64(9);
        let (room, other) = (KeyTag::of(&[1; 32]), KeyTag::of(&[3; 32]));
        let now = Instant::now();
        // Before any completed handshake it is a refusal.
        let (_, (kind, ..)) = fail_answer(&mut s, room, now, &mut rng);
        assert_eq!(kind, ErrorKind::PassphraseRefused);
        let mut failures = 1;
        complete(&mut s, room, now, &mut rng);
        for _ in 0..PASSPHRASE_VERDICTS + 3 {
            failures += 1;
            let (next, (kind, message, retry, _)) = fail_answer(&mut s, room, now, &mut rng);
            assert!(matches!(next, Next::Reconnect { .. }), "failure {failures}");
            assert_eq!(kind, ErrorKind::HandshakeTampered);
            assert!(
                message.starts_with(
                    "the room's answer did not check out — someone may be interfering"
                ),
                "{message}"
            );
            let extra = extra_wait(failures);
            assert_eq!(retry, (!extra.is_zero()).then_some(extra.as_secs()));
        }
        // Another key (another salt, or passphrase) is not proven: refusals, counted towards
        // the stop again.
        for _ in 1..PASSPHRASE_VERDICTS {
            let (next, (kind, ..)) = fail_answer(&mut s, other, now, &mut rng);
            assert!(matches!(next, Next::Reconnect { .. }));
            assert_eq!(kind, ErrorKind::PassphraseRefused);
        }
        let (next, (kind, ..)) = fail_answer(&mut s, other, now, &mut rng);
        assert_eq!((next, kind), (Next::Stop, ErrorKind::WrongPassphrase));
        failures += PASSPHRASE_VERDICTS;
        // A new client of the address in this process knows the key, and the count.
        let mut later = session().sharing_answers(shared);
        let (_, (kind, _, retry, _)) = fail_answer(&mut later, room, now, &mut rng);
        assert_eq!(kind, ErrorKind::HandshakeTampered);
        assert_eq!(retry, Some(extra_wait(failures + 1).as_secs()));
        // One that does not share the throttle knows neither.
        let mut apart = session();
        let (_, (kind, _, retry, _)) = fail_answer(&mut apart, room, now, &mut rng);
        assert_eq!((kind, retry), (ErrorKind::PassphraseRefused, None));
    }

    #[test]
    fn an_answer_that_is_not_tertulia_is_believed_only_when_it_repeats() {
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 1..PASSPHRASE_VERDICTS {
            s.connecting();
            let next = s.connection_ended(
                classify(ConnError::Hello(HelloError::NotTertulia)),
                Instant::now(),
                &mut rng,
            );
            assert!(matches!(next, Next::Reconnect { .. }));
        }
        assert_eq!(
            kinds(&drain(&mut s)),
            [ErrorKind::Protocol, ErrorKind::Protocol]
        );
        s.connecting();
        let ending = classify(ConnError::Hello(HelloError::NotTertulia));
        assert_eq!(
            s.connection_ended(ending, Instant::now(), &mut rng),
            Next::Stop
        );
        let actions = drain(&mut s);
        assert_eq!(kinds(&actions), [ErrorKind::NotTertulia]);
        assert!(matches!(
            events(&actions).last(),
            Some(ClientEvent::Disconnected {
                reason: DisconnectReason::Fatal,
                ..
            })
        ));
    }

    #[test]
    fn a_room_that_needs_a_newer_tertulia_is_believed_on_the_third_and_shown_verbatim() {
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(5);
        let needs_newer = || classify(ConnError::Hello(HelloError::NeedsNewer { min: 3, max: 4 }));
        for _ in 1..PASSPHRASE_VERDICTS {
            s.connecting();
            assert!(matches!(
                s.connection_ended(needs_newer(), Instant::now(), &mut rng),
                Next::Reconnect { .. }
            ));
        }
        s.connecting();
        assert_eq!(
            s.connection_ended(needs_newer(), Instant::now(), &mut rng),
            Next::Stop
        );
        let errors: Vec<(ErrorKind, String)> = events(&drain(&mut s))
            .into_iter()
            .filter_map(|e| match e {
                ClientEvent::Error { kind, message, .. } => Some((kind, message)),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), PASSPHRASE_VERDICTS as usize);
        for (kind, message) in errors {
            assert_eq!(kind, ErrorKind::NeedsNewer);
            assert!(
                message.starts_with(
                    "this room needs a newer Tertulia (it speaks protocol 3–4; this program speaks 2)"
                ),
                "{message}"
            );
        }
    }

    #[test]
    fn a_changed_host_identity_stops_the_client_before_it_joins() {
        use crate::identity::HostKey;
        let (a, b) = (
            HostKey::from_bytes([1; 32]).public(),
            HostKey::from_bytes([2; 32]).public(),
        );
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(6);
        s.connecting();
        assert_eq!(
            s.handshake_completed(b, Some(a), None, None),
            HostVerdict::Changed {
                pinned: a.fingerprint(),
                presented: b.fingerprint()
            }
        );
        let actions = drain(&mut s);
        assert!(sent(&actions).is_empty(), "no join to an unknown host");
        let ending = actions
            .iter()
            .find_map(|a| match a {
                Action::End(e) => Some(e.clone()),
                _ => None,
            })
            .expect("ends the connection");
        assert_eq!(
            s.connection_ended(ending, Instant::now(), &mut rng),
            Next::Stop
        );
        let reported = events(&drain(&mut s));
        match &reported[0] {
            ClientEvent::Error {
                kind: ErrorKind::HostIdentityChanged,
                message,
                pinned_fingerprint: Some(pinned),
                presented_fingerprint: Some(presented),
                ..
            } => {
                assert_eq!(pinned, &a.fingerprint().to_string());
                assert_eq!(presented, &b.fingerprint().to_string());
                assert!(message.starts_with("the host's identity changed — if the host did not reset the room, someone may be intercepting"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reported.last(),
            Some(ClientEvent::Disconnected {
                reason: DisconnectReason::Fatal,
                ..
            })
        ));
        // The trusted identity joins and is shown in `connected`.
        let mut s = session();
        s.connecting();
        assert_eq!(
            s.handshake_completed(a, None, Some(a.fingerprint()), None),
            HostVerdict::Trusted { pin: true }
        );
        assert!(matches!(
            sent(&drain(&mut s))[..],
            [ClientMessage::Join { .. }]
        ));
        s.on_server_message(Welcome::default().message());
        let joined = drain(&mut s);
        assert!(events(&joined).iter().any(|e| matches!(e,
            ClientEvent::Connected { host_fingerprint, .. } if *host_fingerprint == a.fingerprint().to_string())));
    }

    #[test]
    fn a_changed_salt_is_reported_once_and_adopted_when_a_handshake_proves_it() {
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(2);
        let (first, other) = ([1u8; 16], [2u8; 16]);
        s.connecting();
        s.hello(first);
        s.connected();
        s.connection_ended(network_failure("cut"), Instant::now(), &mut rng);
        assert!(kinds(&drain(&mut s))
            .iter()
            .all(|k| *k == ErrorKind::Network));
        // A different salt: reported once however many attempts see it.
        for _ in 0..2 {
            s.connecting();
            s.hello(other);
            s.connection_ended(refused(), Instant::now(), &mut rng);
        }
        let reported = kinds(&drain(&mut s));
        assert_eq!(
            reported
                .iter()
                .filter(|k| **k == ErrorKind::RoomChanged)
                .count(),
            1,
            "{reported:?}"
        );
        // The known salt again: nothing to report; it connects.
        s.connecting();
        s.hello(first);
        s.connected();
        s.connection_ended(network_failure("cut"), Instant::now(), &mut rng);
        assert!(!kinds(&drain(&mut s)).contains(&ErrorKind::RoomChanged));
        // A handshake that succeeds with a new salt makes it the room's.
        s.connecting();
        s.hello(other);
        s.connected();
        s.connection_ended(network_failure("cut"), Instant::now(), &mut rng);
        assert!(kinds(&drain(&mut s)).contains(&ErrorKind::RoomChanged));
        s.connecting();
        s.hello(other);
        assert!(!kinds(&drain(&mut s)).contains(&ErrorKind::RoomChanged));
    }

    #[test]
    fn too_many_failed_attempts_waits_what_the_server_says_plus_backoff() {
        let mut s = session();
        let mut rng = StdRng::seed_from_u64(3);
        s.connecting();
        let ending = classify(ConnError::Throttled {
            retry_after_secs: Some(7),
        });
        match s.connection_ended(ending, Instant::now(), &mut rng) {
            Next::Reconnect { delay, .. } => {
                assert!(delay >= Duration::from_secs(7) && delay < Duration::from_secs(8))
            }
            Next::Stop => panic!("a throttled client must not stop"),
        }
        let error = events(&drain(&mut s))
            .into_iter()
            .find(|e| matches!(e, ClientEvent::Error { .. }));
        assert!(matches!(
            error,
            Some(ClientEvent::Error {
                kind: ErrorKind::TooManyFailedAttempts,
                retry_after_secs: Some(7),
                ..
            })
        ));
    }

    /// Do the broadcast-key actions as the client task does; `Err` ends the connection.
    fn apply_keys(
        actions: &[Action],
        keys: &mut Option<crate::client::keys::BroadcastKeys>,
    ) -> Result<(), Ending> {
        use crate::client::keys::BroadcastKeys;
        for action in actions {
            let checked = match action {
                Action::OpenBroadcasts { key, next_counter } => {
                    *keys = Some(BroadcastKeys::new(key, *next_counter));
                    Ok(())
                }
                Action::NextRoomKey { key, from } => keys.as_mut().unwrap().add(*key, *from),
                Action::CheckBroadcasts { next } => keys.as_ref().unwrap().check_position(*next),
                Action::End(ending) => return Err(ending.clone()),
                _ => Ok(()),
            };
            checked.map_err(integrity_failure)?;
        }
        Ok(())
    }

    /// A `room_key` and a pong reach the broadcast keys only once joined (a pong before the
    /// welcome carries no position; a room key before it is a protocol error); through a
    /// rotation the stream opens and the pongs agree; a dropped broadcast shows at the next
    /// pong as an integrity failure, and the client reconnects.
    #[test]
    fn room_keys_and_pong_positions_follow_the_broadcast_stream() {
        use crate::sealed::BroadcastSealer;
        let mut s = session();
        s.connecting();
        s.connected();
        drain(&mut s);
        s.on_server_message(ServerMessage::Pong { broadcast_next: 0 });
        assert!(drain(&mut s).is_empty(), "not joined: nothing to check");
        let mut keys = None;
        apply_keys(&join_room(&mut s, Welcome::default()), &mut keys).unwrap();
        let (k0, k1) = ([7u8; 32], [8u8; 32]);
        let mut sealer = BroadcastSealer::new(&k0, 3);
        let frame = |sealer: &mut BroadcastSealer, seq: u64| {
            let plaintext =
                crate::message::encode(&BroadcastMessage::Event(message(seq, "ben", seq))).unwrap();
            sealer.seal(&plaintext).unwrap()[crate::frame::HEADER_LEN..].to_vec()
        };
        let open = |s: &mut Session, keys: &mut Option<_>, body: Vec<u8>| {
            let keys: &mut crate::client::keys::BroadcastKeys = keys.as_mut().unwrap();
            s.on_broadcast(keys.open(&body).unwrap());
        };
        open(&mut s, &mut keys, frame(&mut sealer, 1));
        s.on_server_message(ServerMessage::Pong { broadcast_next: 4 });
        s.on_server_message(ServerMessage::RoomKey {
            room_key: k1,
            from_broadcast: 4,
        });
        let actions = drain(&mut s);
        let mut shown = shown_seqs(&actions);
        let actions: Vec<Action> = actions
            .into_iter()
            .filter(|a| !matches!(a, Action::Emit(_)))
            .collect();
        assert_eq!(
            actions,
            [
                Action::CheckBroadcasts { next: 4 },
                Action::NextRoomKey { key: k1, from: 4 }
            ]
        );
        apply_keys(&actions, &mut keys).unwrap();
        let mut sealer = BroadcastSealer::new(&k1, sealer.next_counter());
        open(&mut s, &mut keys, frame(&mut sealer, 2));
        open(&mut s, &mut keys, frame(&mut sealer, 3));
        shown.extend(shown_seqs(&drain(&mut s)));
        assert_eq!(shown, [1, 2, 3]);

        let _dropped_on_the_way = frame(&mut sealer, 4);
        s.on_server_message(ServerMessage::Pong { broadcast_next: 7 });
        let Err(Ending::Retry { kind, message, .. }) = apply_keys(&drain(&mut s), &mut keys) else {
            panic!("a dropped broadcast went unnoticed");
        };
        assert_eq!(kind, ErrorKind::Integrity);
        assert!(
            message.contains("broadcasts are being dropped on the way"),
            "{message}"
        );

        // A room key before any welcome ends the connection.
        let mut s = session();
        s.connecting();
        s.connected();
        drain(&mut s);
        s.on_server_message(ServerMessage::RoomKey {
            room_key: k1,
            from_broadcast: 0,
        });
        assert!(matches!(
            &drain(&mut s)[..],
            [Action::End(Ending::Retry {
                kind: ErrorKind::Protocol,
                ..
            })]
        ));
    }
}
