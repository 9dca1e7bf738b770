//! One chat room: members, presence with a reconnect grace period, history, duplicate
//! suppression and the seal-once fan-out.
//!
//! The room is plain data behind a `std::sync::Mutex` held by the server, never across an
//! `.await`. It does not touch sockets: each member has a [`MemberLink`] to its connection's
//! writer task. A broadcast is serialized and sealed once under the room broadcast key and
//! appended once to the room's [`FanoutLog`], which every member's writer sends from; private
//! messages go through the link's bounded queue, each marked with the log position it follows.
//! A member whose queue of broadcasts passes its send-queue budget and stays there while its
//! connection takes nothing (it stopped reading), or that falls past the hard cap, is cut off
//! instead of letting the server buffer without bound; it keeps its place for the grace period
//! and catches up by replay when it returns.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::dedupe::{Dedupe, Seen};
use super::fanout::FanoutLog;
use super::roster::Roster;
use super::store::{Retention, Store, StoreError};
use crate::cipher::Key;
use crate::message::{
    BroadcastMessage, ClientId, Epoch, ErrorCode, LeaveReason, Resume, RoomEvent, RoomEventKind,
    ServerMessage, TYPING_NOTICE_INTERVAL,
};
use crate::passphrase::Salt;
use crate::sealed::{encode_json, BroadcastSealer};
use crate::text::{nick_key, validate_nick, NickError};

/// Room tuning. Defaults are documented in `docs/PROTOCOL.md` (Limits).
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Room events kept in memory for replay.
    pub history: usize,
    /// Events a brand-new member receives on join.
    pub backlog: usize,
    /// How long a dropped member keeps its nickname without a leave notice.
    pub grace: Duration,
    /// Bytes of broadcast frames that may wait in one member's send queue while its
    /// connection keeps taking data (a burst, or a replay being written first).
    pub send_queue_bytes: usize,
    /// Hard cap on one member's send queue: past it the member is cut off at once. At least
    /// `send_queue_bytes`. This bounds the broadcast log's memory.
    pub send_queue_max_bytes: usize,
    /// How long a member over `send_queue_bytes` may go without its connection taking any
    /// data before it is cut off as a slow consumer.
    pub stall_timeout: Duration,
    /// How much history the room keeps (on disk, and in memory within `history`).
    pub retention: Retention,
    /// Unacknowledged messages a member may have in flight (told in `welcome`); the server
    /// sets it to fit its flood queue.
    pub send_window: u32,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            history: 10_000,
            backlog: 200,
            grace: Duration::from_secs(10),
            send_queue_bytes: 1024 * 1024,
            send_queue_max_bytes: 4 * 1024 * 1024,
            stall_timeout: Duration::from_secs(5),
            retention: Retention::default(),
            send_window: 32,
        }
    }
}

/// An item in a member's private queue. Private messages and closing are marked with the
/// room's broadcast log position when they were queued: the writer sends the broadcasts before
/// that position first, so the member sees everything in the order the room did it.
#[derive(Debug)]
pub enum Outgoing {
    /// Start sending the room's broadcasts from this log position (queued on joining, before
    /// the welcome).
    Attach(u64),
    /// A message for this member only; its writer seals it with the session key. Boxed so a
    /// queue slot stays small.
    Session {
        after: u64,
        message: Box<ServerMessage>,
    },
    /// The welcome: the writer fills in its online list from the room's roster when it sends
    /// it (as of `head_seq` or later; the join and leave events after `head_seq` that follow
    /// change a list keyed by nickname to the same end).
    Welcome {
        after: u64,
        welcome: Box<ServerMessage>,
        roster: Arc<Roster>,
    },
    /// Close the connection once everything queued before has been written.
    Close { after: u64 },
}

impl Outgoing {
    /// The broadcast log position this item follows.
    pub fn after(&self) -> u64 {
        match self {
            Outgoing::Attach(_) => 0,
            Outgoing::Session { after, .. }
            | Outgoing::Welcome { after, .. }
            | Outgoing::Close { after } => *after,
        }
    }
}

/// The room's handle on one member connection.
#[derive(Debug, Clone)]
pub struct MemberLink {
    pub conn_id: u64,
    /// Private messages, in order.
    pub tx: mpsc::Sender<Outgoing>,
    /// The room's broadcast log the writer sends from.
    pub log: Arc<FanoutLog>,
    /// What the writer has written so far.
    pub progress: Arc<WriterProgress>,
    /// Woken when broadcasts are appended to the log.
    pub wake: Arc<Notify>,
    /// Cancelling ends the connection at once (reader and writer).
    pub cancel: CancellationToken,
}

impl MemberLink {
    pub fn new(
        conn_id: u64,
        tx: mpsc::Sender<Outgoing>,
        log: Arc<FanoutLog>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            conn_id,
            tx,
            log,
            progress: Arc::default(),
            wake: Arc::default(),
            cancel,
        }
    }

    /// Queue a private message after every broadcast so far. Private messages are few and
    /// small (the replay of history is bounded by the history size); the queue is bounded in
    /// length.
    pub fn queue(&self, message: ServerMessage) -> bool {
        self.tx
            .try_send(Outgoing::Session {
                after: self.log.end(),
                message: Box::new(message),
            })
            .is_ok()
    }

    /// Queue the welcome, whose online list the writer takes from `roster` when it sends it.
    fn queue_welcome(&self, welcome: ServerMessage, roster: &Arc<Roster>) -> bool {
        self.tx
            .try_send(Outgoing::Welcome {
                after: self.log.end(),
                welcome: Box::new(welcome),
                roster: roster.clone(),
            })
            .is_ok()
    }

    /// Close once everything queued so far has been written.
    pub fn close(&self) -> bool {
        self.tx
            .try_send(Outgoing::Close {
                after: self.log.end(),
            })
            .is_ok()
    }

    /// Send an error, then close; if the queue is full, close at once.
    pub fn close_with(&self, code: ErrorCode, message: &str) {
        let queued = self.queue(ServerMessage::Error {
            code,
            message: message.into(),
        }) && self.close();
        if !queued {
            self.cancel.cancel();
        }
    }

    /// Start receiving broadcasts from log position `at`.
    fn attach(&self, at: u64) -> bool {
        self.progress.written.store(at, Ordering::Release);
        self.tx.try_send(Outgoing::Attach(at)).is_ok()
    }

    /// Broadcast bytes appended and not yet written, with the log ending at `end`.
    fn behind(&self, end: u64) -> u64 {
        end.saturating_sub(self.progress.written.load(Ordering::Acquire))
    }
}

/// How far a member's writer has got, shared between the writer and the room.
#[derive(Debug, Default)]
pub struct WriterProgress {
    /// Log position up to which this member's broadcasts have been written.
    pub written: AtomicU64,
    /// Bytes written to the socket in all (broadcasts, replayed history, private messages):
    /// if it moves, the member is reading.
    pub sent: AtomicU64,
}

/// A member seen over its send-queue budget: how much its connection had taken then.
#[derive(Debug, Clone, Copy)]
struct OverBudget {
    sent: u64,
    since: Instant,
}

struct Member {
    nick: String,
    client_id: ClientId,
    /// `None` while the member is away within its grace period.
    link: Option<MemberLink>,
    away_since: Option<Instant>,
    /// When this member's last typing notice was relayed (rate limit).
    last_typing: Option<Instant>,
    /// Set while its send queue is over budget and its connection has taken nothing since.
    over_budget: Option<OverBudget>,
}

/// Typing notices from one member are relayed at most this often: half the interval clients
/// send them at, so network jitter never drops one.
const TYPING_RELAY_INTERVAL: Duration =
    Duration::from_millis(TYPING_NOTICE_INTERVAL.as_millis() as u64 / 2);

/// The result of a successful join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Key of the member entry (the folded nickname).
    pub key: String,
    pub nick: String,
    pub resumed: bool,
}

/// Why a room operation on behalf of a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotMember {
    /// This connection no longer holds the membership (replaced, cut off or left).
    Detached,
    /// The message could not be stored, so it was neither broadcast nor acked.
    StorageFailed,
}

pub struct Room {
    config: RoomConfig,
    epoch: Epoch,
    room_key: Key,
    sealer: BroadcastSealer,
    next_seq: u64,
    history: VecDeque<RoomEvent>,
    /// Members by folded nickname; changed only through `add_member` and `remove_member`,
    /// which keep `roster` the same.
    members: HashMap<String, Member>,
    roster: Arc<Roster>,
    dedupe: Dedupe,
    /// Durable storage; `None` for a memory-only room.
    store: Option<Store>,
    /// The oldest event still kept (on disk, or in memory for a memory-only room).
    oldest_seq: u64,
    /// Sealed broadcasts, appended once and sent from by every member's writer.
    log: Arc<FanoutLog>,
}

/// Most events one page of older history carries.
pub const MAX_PAGE_EVENTS: usize = 200;
/// Room for the page envelope inside one session frame.
const PAGE_BYTES: usize = crate::sealed::MAX_SESSION_PLAINTEXT - 256;

/// Wall-clock time in milliseconds since the Unix epoch (event timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Room {
    /// A new room epoch with a random epoch id and broadcast key.
    pub fn new(config: RoomConfig) -> Self {
        let epoch = hex::encode(rand::random::<[u8; 16]>());
        let room_key: Key = rand::random();
        Self {
            config,
            epoch,
            room_key,
            sealer: BroadcastSealer::new(&room_key, 0),
            next_seq: 1,
            history: VecDeque::new(),
            members: HashMap::new(),
            roster: Arc::default(),
            dedupe: Dedupe::default(),
            store: None,
            oldest_seq: 1,
            log: Arc::new(FanoutLog::new()),
        }
    }

    /// The broadcast log member links and writers send from.
    pub fn fanout(&self) -> Arc<FanoutLog> {
        self.log.clone()
    }

    /// A room continuing from `store`: same salt, epoch, sequence numbers, history and
    /// duplicate suppression as before the restart. Returns the room and its salt.
    pub fn with_store(
        config: RoomConfig,
        mut store: Store,
        new_salt: Salt,
    ) -> Result<(Self, Salt), StoreError> {
        let mut room = Room::new(config);
        let loaded = store.load(room.config.history, new_salt, room.epoch.clone())?;
        room.epoch = loaded.epoch;
        room.next_seq = loaded.next_seq;
        room.oldest_seq = loaded.oldest_seq;
        room.history = loaded.recent.into();
        for (client, highest) in &loaded.dedupe {
            room.dedupe.record(client, *highest);
        }
        // Whoever was in the room when the server stopped is away: they keep their nickname
        // for the grace period (and resume silently), or get a leave notice after it.
        let now = Instant::now();
        for (nick, client_id) in loaded.present {
            room.add_member(
                nick_key(&nick),
                Member {
                    nick,
                    client_id,
                    link: None,
                    away_since: Some(now),
                    last_typing: None,
                    over_budget: None,
                },
            );
        }
        room.store = Some(store);
        room.apply_retention(now_ms())?;
        Ok((room, loaded.salt))
    }

    /// Forget history the retention settings no longer keep (memory and disk).
    pub fn apply_retention(&mut self, now_ms: u64) -> Result<usize, StoreError> {
        let retention = self.config.retention;
        let too_old = |e: &RoomEvent| {
            retention
                .max_age_ms
                .is_some_and(|age| e.time_ms < now_ms.saturating_sub(age))
        };
        let max_events = retention.max_events.map_or(usize::MAX, |n| n as usize);
        while self
            .history
            .front()
            .is_some_and(|e| self.history.len() > max_events || too_old(e))
        {
            self.history.pop_front();
        }
        match &mut self.store {
            Some(store) => {
                let removed = store.prune(retention, now_ms)?;
                self.oldest_seq = store.oldest_seq()?.unwrap_or(self.next_seq);
                Ok(removed)
            }
            None => {
                self.oldest_seq = self.history.front().map_or(self.next_seq, |e| e.seq);
                Ok(0)
            }
        }
    }

    #[cfg(test)]
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Members (present or within grace), sorted case-insensitively.
    #[cfg(test)]
    pub fn online(&self) -> Vec<String> {
        self.roster.names()
    }

    fn add_member(&mut self, key: String, member: Member) {
        self.roster.insert(&key, &member.nick);
        self.members.insert(key, member);
    }

    fn remove_member(&mut self, key: &str) -> Option<Member> {
        self.roster.remove(key);
        self.members.remove(key)
    }

    /// Number of members with a live connection.
    #[cfg(test)]
    pub fn connected(&self) -> usize {
        self.members.values().filter(|m| m.link.is_some()).count()
    }

    /// Add (or re-attach) a member. On success its link has been sent `welcome` and the
    /// history it needs; every later broadcast follows in order.
    pub fn join(
        &mut self,
        raw_nick: &str,
        client_id: &ClientId,
        resume: Option<&Resume>,
        link: MemberLink,
    ) -> Result<Joined, NickError> {
        let nick = validate_nick(raw_nick)?;
        let key = nick_key(&nick);
        let resumed = match self.members.get(&key) {
            Some(member) if &member.client_id != client_id => return Err(NickError::Taken),
            Some(_) => true,
            None => false,
        };
        if !resumed {
            // The same client under another nickname: that entry is replaced by this one.
            let renamed: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| &m.client_id == client_id)
                .map(|(k, _)| k.clone())
                .collect();
            for old in renamed {
                if let Some(member) = self.remove_member(&old) {
                    if let Some(old_link) = member.link {
                        old_link.close_with(
                            ErrorCode::Replaced,
                            "this client joined again under another nickname",
                        );
                    }
                    self.announce(
                        RoomEventKind::Leave {
                            nick: member.nick,
                            reason: LeaveReason::Renamed,
                        },
                        None,
                    );
                }
            }
        }

        if !link.attach(self.log.end()) {
            link.cancel.cancel();
        }
        let is_new = !self.members.contains_key(&key);
        if is_new {
            self.add_member(
                key.clone(),
                Member {
                    nick: nick.clone(),
                    client_id: client_id.clone(),
                    link: None,
                    away_since: None,
                    last_typing: None,
                    over_budget: None,
                },
            );
        }
        // The roster holds the newcomer before its welcome is queued, so every welcome
        // lists its own member (whenever its writer copies the list).
        self.send_welcome(&nick, client_id, resume, resumed, &link);
        if let Some(member) = self.members.get_mut(&key) {
            if let Some(old) = member.link.replace(link) {
                old.close_with(
                    ErrorCode::Replaced,
                    "replaced by a newer connection of the same client",
                );
            }
            member.away_since = None;
            member.over_budget = None;
        }
        if is_new {
            self.announce(RoomEventKind::Join { nick: nick.clone() }, Some(client_id));
        }
        Ok(Joined { key, nick, resumed })
    }

    fn send_welcome(
        &self,
        nick: &str,
        client_id: &ClientId,
        resume: Option<&Resume>,
        resumed: bool,
        link: &MemberLink,
    ) {
        let head_seq = self.next_seq - 1;
        let oldest = self.history.front().map_or(self.next_seq, |e| e.seq);
        let same_epoch = resume.filter(|r| r.epoch == self.epoch);
        let (from_seq, gap) = match same_epoch {
            Some(r) => {
                let wanted = r.last_seq.saturating_add(1);
                (wanted.max(oldest), wanted < oldest)
            }
            None => (
                self.next_seq
                    .saturating_sub(self.config.backlog as u64)
                    .max(oldest),
                false,
            ),
        };
        let skip = from_seq.saturating_sub(oldest) as usize;
        let events: Vec<RoomEvent> = self.history.iter().skip(skip).cloned().collect();
        link.queue_welcome(
            ServerMessage::Welcome {
                nick: nick.to_owned(),
                epoch: self.epoch.clone(),
                room_key: hex::encode(self.room_key),
                next_broadcast: self.sealer.next_counter(),
                head_seq,
                online: Vec::new(), // filled in by the writer from the roster
                acked_up_to: self.dedupe.highest(client_id),
                resync: resume.is_some() && same_epoch.is_none(),
                gap,
                resumed,
                oldest_seq: self.oldest_seq,
                send_window: self.config.send_window,
            },
            &self.roster,
        );
        if !events.is_empty() {
            link.queue(ServerMessage::History { events });
        }
    }

    /// Check that `conn_id` is the live connection of member `key`.
    fn link_of(&self, key: &str, conn_id: u64) -> Result<&MemberLink, NotMember> {
        self.members
            .get(key)
            .and_then(|m| m.link.as_ref())
            .filter(|l| l.conn_id == conn_id)
            .ok_or(NotMember::Detached)
    }

    /// A chat message from member `key` on connection `conn_id`, already validated. Puts it in
    /// the room unless it is a duplicate, then acks it.
    pub fn say(&mut self, key: &str, conn_id: u64, id: u64, text: String) -> Result<(), NotMember> {
        let link = self.link_of(key, conn_id)?;
        let member = self.members.get(key).ok_or(NotMember::Detached)?;
        let (from, client_id) = (member.nick.clone(), member.client_id.clone());
        let link = link.clone();
        if self.dedupe.peek(&client_id, id) == Seen::Fresh {
            let kind = RoomEventKind::Message {
                from,
                text,
                msg_id: id,
            };
            if let Err(e) = self.publish(kind, Some(&client_id)) {
                tracing::error!(error = %e, "could not store a message; not acknowledged");
                return Err(NotMember::StorageFailed);
            }
            self.dedupe.record(&client_id, id);
        }
        link.queue(ServerMessage::Ack {
            up_to: self.dedupe.highest(&client_id),
        });
        Ok(())
    }

    /// Up to `limit` (at most [`MAX_PAGE_EVENTS`], and what fits one frame) events before
    /// `before_seq` for member `key`, who is scrolling back.
    pub fn older(
        &self,
        key: &str,
        conn_id: u64,
        before_seq: u64,
        limit: usize,
    ) -> Result<(), NotMember> {
        let link = self.link_of(key, conn_id)?;
        let limit = limit.clamp(1, MAX_PAGE_EVENTS);
        let (mut events, mut more) = match &self.store {
            Some(store) => match store.page(before_seq, limit) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "could not read older history");
                    (Vec::new(), false)
                }
            },
            None => {
                let older: Vec<&RoomEvent> =
                    self.history.iter().filter(|e| e.seq < before_seq).collect();
                let skip = older.len().saturating_sub(limit);
                (
                    older[skip..].iter().map(|e| (*e).clone()).collect(),
                    skip > 0,
                )
            }
        };
        // Keep the newest events that fit one frame.
        let mut size = 0;
        let mut fits = events.len();
        for (i, event) in events.iter().enumerate().rev() {
            size += serde_json::to_vec(event).map_or(PAGE_BYTES, |v| v.len() + 1);
            if size > PAGE_BYTES {
                break;
            }
            fits = i;
        }
        if fits > 0 {
            events.drain(..fits);
            more = true;
        }
        link.queue(ServerMessage::Older {
            before_seq,
            events,
            more,
        });
        Ok(())
    }

    /// A private reply to a member connection (pong, rejections).
    pub fn reply(&self, key: &str, conn_id: u64, message: ServerMessage) -> Result<(), NotMember> {
        self.link_of(key, conn_id)?.queue(message);
        Ok(())
    }

    /// Member `key` said goodbye on `conn_id`.
    pub fn leave(&mut self, key: &str, conn_id: u64) {
        if self.link_of(key, conn_id).is_ok() {
            if let Some(member) = self.remove_member(key) {
                self.announce(
                    RoomEventKind::Leave {
                        nick: member.nick,
                        reason: LeaveReason::Quit,
                    },
                    None,
                );
            }
        }
    }

    /// Connection `conn_id` of member `key` ended without a goodbye: start the grace period.
    pub fn disconnected(&mut self, key: &str, conn_id: u64, now: Instant) {
        if self.link_of(key, conn_id).is_ok() {
            if let Some(member) = self.members.get_mut(key) {
                member.link = None;
                member.away_since = Some(now);
            }
        }
    }

    /// Announce the departure of members whose grace period has run out. Returns how many.
    pub fn expire_away(&mut self, now: Instant) -> usize {
        let grace = self.config.grace;
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.away_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            if let Some(member) = self.remove_member(key) {
                self.announce(
                    RoomEventKind::Leave {
                        nick: member.nick,
                        reason: LeaveReason::ConnectionLost,
                    },
                    None,
                );
            }
        }
        expired.len()
    }

    /// Tell every connected member that the server is going away.
    pub fn shutdown(&mut self) {
        for member in self.members.values_mut() {
            if let Some(link) = member.link.take() {
                link.close_with(ErrorCode::ShuttingDown, "the server is shutting down");
            }
        }
    }

    /// A join or leave notice; a storage failure loses only the notice, never a message.
    fn announce(&mut self, kind: RoomEventKind, client: Option<&ClientId>) {
        if let Err(e) = self.publish(kind, client) {
            tracing::error!(error = %e, "could not store a presence notice; not announced");
        }
    }

    /// Store an event (with its effect on `client`'s dedupe state or presence), append it to
    /// history and fan it out: sealed once, the same bytes to every member. Nothing is sent if
    /// storing fails.
    fn publish(
        &mut self,
        kind: RoomEventKind,
        client: Option<&ClientId>,
    ) -> Result<(), StoreError> {
        let event = RoomEvent {
            seq: self.next_seq,
            time_ms: now_ms(),
            kind,
        };
        if let Some(store) = &mut self.store {
            store.append(&event, client)?;
        }
        self.next_seq += 1;
        let message = BroadcastMessage::Event(event.clone());
        self.history.push_back(event);
        let keep = self
            .config
            .retention
            .max_events
            .map_or(self.config.history, |n| self.config.history.min(n as usize));
        while self.history.len() > keep {
            self.history.pop_front();
        }
        if self.store.is_none() {
            self.oldest_seq = self.history.front().map_or(self.next_seq, |e| e.seq);
        }
        self.broadcast(&message);
        Ok(())
    }

    /// Member `key` is typing: relay an ephemeral notice (no sequence number, not kept in
    /// history), at most once per [`TYPING_RELAY_INTERVAL`] per member.
    pub fn typing(&mut self, key: &str, conn_id: u64, now: Instant) -> Result<(), NotMember> {
        self.link_of(key, conn_id)?;
        let member = self.members.get_mut(key).ok_or(NotMember::Detached)?;
        if member
            .last_typing
            .is_some_and(|t| now.saturating_duration_since(t) < TYPING_RELAY_INTERVAL)
        {
            return Ok(());
        }
        member.last_typing = Some(now);
        let nick = member.nick.clone();
        self.broadcast(&BroadcastMessage::Typing { nick });
        Ok(())
    }

    /// Seal `message` once and queue the same bytes to every connected member; cut off members
    /// whose queue is full.
    fn broadcast(&mut self, message: &BroadcastMessage) {
        let sealed = encode_json(message).and_then(|json| self.sealer.seal(&json));
        let frame = match sealed {
            Ok(frame) => frame,
            Err(e) => {
                // Only reachable if the key's nonce space ran out (2^64 broadcasts).
                tracing::error!(error = %e, "could not seal a broadcast; closing the room's connections");
                self.shutdown();
                return;
            }
        };
        let end = self.log.append(&frame);
        let start = end - frame.len() as u64;
        let budget = self.config.send_queue_bytes as u64;
        let cap = self
            .config
            .send_queue_max_bytes
            .max(self.config.send_queue_bytes) as u64;
        let now = Instant::now();
        let mut oldest = end;
        for member in self.members.values_mut() {
            let Some(link) = &member.link else { continue };
            // Bytes already waiting for this member, before this frame.
            let queued = link.behind(start);
            let behind = queued + frame.len() as u64;
            let stalled = if behind <= budget {
                member.over_budget = None;
                None
            } else {
                // Over budget: fine for a while as long as the connection keeps taking data
                // (a burst, or the replay of history written first); not past the cap.
                let sent = link.progress.sent.load(Ordering::Acquire);
                match member.over_budget {
                    Some(over) if over.sent == sent => {
                        Some(now.saturating_duration_since(over.since))
                    }
                    _ => {
                        member.over_budget = Some(OverBudget { sent, since: now });
                        Some(Duration::ZERO)
                    }
                }
            };
            let too_slow = stalled.is_some_and(|d| d >= self.config.stall_timeout);
            if behind > cap || too_slow {
                tracing::warn!(
                    nick = %member.nick,
                    conn = link.conn_id,
                    queued_bytes = queued,
                    budget,
                    cap,
                    stalled_ms = stalled.map_or(0, |d| d.as_millis() as u64),
                    "slow consumer: send queue full, disconnecting"
                );
                link.cancel.cancel();
                member.link = None;
                member.over_budget = None;
                member.away_since = Some(now);
                continue;
            }
            oldest = oldest.min(end - behind);
            link.wake.notify_one();
        }
        self.log.trim(oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::BroadcastOpener;

    fn link(room: &Room, conn_id: u64, capacity: usize) -> (MemberLink, Inbox) {
        let (tx, rx) = mpsc::channel(capacity);
        let link = MemberLink::new(conn_id, tx, room.fanout(), CancellationToken::new());
        let inbox = Inbox {
            rx,
            log: room.fanout(),
            progress: link.progress.clone(),
            cursor: None,
            next: None,
            opener: None,
            events: vec![],
            broadcasts: vec![],
            private: vec![],
        };
        (link, inbox)
    }

    /// Plays a member's writer and client: takes its private queue and its broadcasts from
    /// the log in the writer's order, opening broadcasts with the key from its welcome.
    struct Inbox {
        rx: mpsc::Receiver<Outgoing>,
        log: Arc<FanoutLog>,
        progress: Arc<WriterProgress>,
        cursor: Option<u64>,
        next: Option<Outgoing>,
        opener: Option<BroadcastOpener>,
        events: Vec<RoomEvent>,
        broadcasts: Vec<BroadcastMessage>,
        private: Vec<ServerMessage>,
    }

    impl Inbox {
        /// Read the broadcasts from the cursor up to `until`.
        fn broadcasts_until(&mut self, until: u64) {
            let Some(at) = self.cursor else { return };
            let mut slices = Vec::new();
            let next = self.log.read(at, until, usize::MAX, &mut slices).unwrap();
            let bytes = slices.concat();
            let mut rest = &bytes[..];
            while let Some((f, used)) = crate::frame::decode(rest, crate::frame::MAX_BODY).unwrap()
            {
                let message: BroadcastMessage = self.opener.as_mut().unwrap().open(f.body).unwrap();
                if let BroadcastMessage::Event(e) = &message {
                    self.events.push(e.clone());
                }
                self.broadcasts.push(message);
                rest = &rest[used..];
            }
            assert!(rest.is_empty(), "whole frames only");
            self.cursor = Some(next);
            self.progress.written.store(next, Ordering::Release);
            self.progress
                .sent
                .fetch_add(bytes.len() as u64, Ordering::Release);
        }

        fn drain(&mut self) {
            loop {
                if self.next.is_none() {
                    self.next = self.rx.try_recv().ok();
                }
                let Some(item) = self.next.take() else { break };
                self.broadcasts_until(item.after());
                match item {
                    Outgoing::Attach(at) => self.cursor = Some(at),
                    Outgoing::Welcome {
                        welcome, roster, ..
                    } => {
                        let mut msg = *welcome;
                        let ServerMessage::Welcome {
                            online,
                            room_key,
                            next_broadcast,
                            ..
                        } = &mut msg
                        else {
                            panic!("not a welcome: {msg:?}");
                        };
                        *online = roster.names();
                        let key: Key = hex::decode(&*room_key).unwrap().try_into().unwrap();
                        self.opener = Some(BroadcastOpener::new(&key, *next_broadcast));
                        self.private.push(msg);
                    }
                    Outgoing::Session { message, .. } => {
                        let msg = *message;
                        if let ServerMessage::History { events } = &msg {
                            self.events.extend(events.iter().cloned());
                        }
                        self.private.push(msg);
                    }
                    Outgoing::Close { .. } => self.private.push(ServerMessage::Pong),
                }
            }
            self.broadcasts_until(u64::MAX);
        }
        fn texts(&self) -> Vec<String> {
            self.events
                .iter()
                .filter_map(|e| match &e.kind {
                    RoomEventKind::Message { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn join_say_and_fan_out() {
        let mut room = Room::new(RoomConfig::default());
        let (ana, mut ana_in) = link(&room, 1, 100);
        let (ben, mut ben_in) = link(&room, 2, 100);
        let a = room.join(" Ana ", &"id-a".into(), None, ana).unwrap();
        assert_eq!(
            (a.key.as_str(), a.nick.as_str(), a.resumed),
            ("ana", "Ana", false)
        );
        // A welcome lists its own member.
        ana_in.drain();
        assert!(
            matches!(&ana_in.private[0], ServerMessage::Welcome { online, .. } if online == &vec!["Ana".to_string()])
        );
        let b = room.join("Ben", &"id-b".into(), None, ben).unwrap();
        room.say(&a.key, 1, 1, "hola | a: todos".into()).unwrap();
        ana_in.drain();
        ben_in.drain();
        assert_eq!(ana_in.texts(), vec!["hola | a: todos"]);
        assert_eq!(ben_in.texts(), vec!["hola | a: todos"]);
        assert!(ana_in.private.contains(&ServerMessage::Ack { up_to: 1 }));
        // Ben's welcome listed the room as its writer sent it, Ben included (his own join
        // event follows as a live broadcast: a list keyed by nickname ends the same).
        assert!(
            matches!(&ben_in.private[0], ServerMessage::Welcome { online, .. } if online == &vec!["Ana".to_string(), "Ben".to_string()])
        );
        assert_eq!(room.online(), vec!["Ana", "Ben"]);
        assert_eq!(b.key, "ben");
    }

    #[test]
    fn typing_notices_are_ephemeral_and_rate_limited() {
        let mut room = Room::new(RoomConfig::default());
        let (l, mut rx) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, l).unwrap();
        room.join("ben", &"id-b".into(), None, link(&room, 2, 100).0)
            .unwrap();
        let t0 = Instant::now();
        let head = room.next_seq;
        room.typing("ben", 2, t0).unwrap();
        room.typing("ben", 2, t0 + Duration::from_millis(500))
            .unwrap();
        room.typing("ben", 2, t0 + Duration::from_millis(1100))
            .unwrap();
        assert_eq!(room.next_seq, head, "no sequence numbers used");
        assert_eq!(room.history.len(), 2, "only the two joins are history");
        rx.drain();
        let typing = rx
            .broadcasts
            .iter()
            .filter(|m| matches!(m, BroadcastMessage::Typing { nick } if nick == "ben"))
            .count();
        assert_eq!(typing, 2, "the notice 500 ms after the first is dropped");
        assert_eq!(room.typing("ben", 9, t0), Err(NotMember::Detached));
    }

    #[test]
    fn taken_nick_case_insensitive() {
        let mut room = Room::new(RoomConfig::default());
        room.join("Ana", &"id-a".into(), None, link(&room, 1, 10).0)
            .unwrap();
        assert_eq!(
            room.join("aNA ", &"id-x".into(), None, link(&room, 2, 10).0),
            Err(NickError::Taken)
        );
        assert_eq!(
            room.join("", &"id-x".into(), None, link(&room, 2, 10).0),
            Err(NickError::Empty)
        );
    }

    #[test]
    fn duplicate_messages_are_acked_not_repeated() {
        let mut room = Room::new(RoomConfig::default());
        let (l, mut inbox) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, l).unwrap();
        room.say("ana", 1, 1, "one".into()).unwrap();
        room.say("ana", 1, 1, "one".into()).unwrap();
        room.say("ana", 1, 2, "two".into()).unwrap();
        inbox.drain();
        assert_eq!(inbox.texts(), vec!["one", "two"]);
        let acks: Vec<_> = inbox
            .private
            .iter()
            .filter(|m| matches!(m, ServerMessage::Ack { .. }))
            .collect();
        assert_eq!(
            acks,
            vec![
                &ServerMessage::Ack { up_to: 1 },
                &ServerMessage::Ack { up_to: 1 },
                &ServerMessage::Ack { up_to: 2 }
            ]
        );
    }

    #[test]
    fn grace_period_resume_replays_without_notices() {
        let mut room = Room::new(RoomConfig::default());
        let t0 = Instant::now();
        let (l1, _rx1) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, l1).unwrap();
        let (lb, mut ben) = link(&room, 2, 100);
        room.join("ben", &"id-b".into(), None, lb).unwrap();
        room.say("ana", 1, 1, "before".into()).unwrap();
        room.disconnected("ana", 1, t0);
        assert_eq!(
            room.say("ana", 1, 2, "late".into()),
            Err(NotMember::Detached)
        );
        room.say("ben", 2, 1, "while away".into()).unwrap();
        assert_eq!(room.expire_away(t0 + Duration::from_secs(9)), 0);
        // Ana comes back: same client id, resumes after the last seq she saw (3 = her message).
        let (l3, mut ana) = link(&room, 3, 100);
        let resume = Resume {
            epoch: room.epoch().to_owned(),
            last_seq: 3,
        };
        let joined = room.join("ana", &"id-a".into(), Some(&resume), l3).unwrap();
        assert!(joined.resumed);
        ana.drain();
        assert_eq!(
            ana.texts(),
            vec!["while away"],
            "replay of what she missed, nothing more"
        );
        assert!(matches!(
            &ana.private[0],
            ServerMessage::Welcome {
                acked_up_to: 1,
                resync: false,
                gap: false,
                ..
            }
        ));
        assert_eq!(
            room.expire_away(t0 + Duration::from_secs(20)),
            0,
            "back in time: no leave"
        );
        ben.drain();
        assert!(!ben
            .events
            .iter()
            .any(|e| matches!(e.kind, RoomEventKind::Leave { .. })));
        let joins: Vec<&str> = ben
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                RoomEventKind::Join { nick } => Some(nick.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            joins,
            vec!["ana", "ben"],
            "ana's first join (backlog) and ben's own; no re-join"
        );
    }

    #[test]
    fn grace_expiry_announces_leave() {
        let mut room = Room::new(RoomConfig::default());
        let t0 = Instant::now();
        room.join("ana", &"id-a".into(), None, link(&room, 1, 100).0)
            .unwrap();
        let (lb, mut ben) = link(&room, 2, 100);
        room.join("ben", &"id-b".into(), None, lb).unwrap();
        room.disconnected("ana", 1, t0);
        assert_eq!(
            room.online(),
            vec!["ana", "ben"],
            "still listed during grace"
        );
        assert_eq!(room.expire_away(t0 + Duration::from_secs(10)), 1);
        assert_eq!(room.online(), vec!["ben"]);
        ben.drain();
        assert!(
            matches!(&ben.events.last().unwrap().kind, RoomEventKind::Leave { nick, reason: LeaveReason::ConnectionLost } if nick == "ana")
        );
        // Anyone may take the nickname now.
        assert!(room
            .join("ANA", &"id-other".into(), None, link(&room, 3, 10).0)
            .is_ok());
    }

    #[test]
    fn stale_session_is_replaced_by_the_same_client() {
        let mut room = Room::new(RoomConfig::default());
        let (old, mut old_rx) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, old).unwrap();
        let joined = room
            .join("ana", &"id-a".into(), None, link(&room, 2, 100).0)
            .unwrap();
        assert!(joined.resumed);
        old_rx.drain();
        let saw_replaced = old_rx.private.iter().any(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::Replaced,
                    ..
                }
            )
        });
        assert!(saw_replaced);
        assert_eq!(
            room.say("ana", 1, 1, "from the ghost".into()),
            Err(NotMember::Detached)
        );
        assert!(room.say("ana", 2, 1, "from the live one".into()).is_ok());
    }

    #[test]
    fn slow_consumer_is_cut_off_at_the_cap_and_others_continue() {
        let config = RoomConfig {
            send_queue_bytes: 4096,
            send_queue_max_bytes: 8192,
            ..RoomConfig::default()
        };
        let mut room = Room::new(config);
        let (slow, _slow_rx) = link(&room, 1, 10_000);
        let slow_cancel = slow.cancel.clone();
        room.join("slow", &"id-s".into(), None, slow).unwrap();
        let (fast, mut fast_in) = link(&room, 2, 10_000);
        room.join("fast", &"id-f".into(), None, fast).unwrap();
        for i in 1..=100 {
            room.say("fast", 2, i, "x".repeat(100)).unwrap();
            fast_in.drain(); // the fast member keeps reading
        }
        assert!(slow_cancel.is_cancelled());
        assert_eq!(room.connected(), 1);
        assert_eq!(fast_in.texts().len(), 100);
    }

    /// Over budget is tolerated while the connection takes data (here: a replay the writer
    /// sends first, so the broadcast position stands still); once it takes nothing for the
    /// stall timeout, or the queue passes the cap, the member is cut off.
    #[test]
    fn member_over_budget_stays_while_it_reads_and_is_cut_off_when_it_stalls() {
        let stall = Duration::from_millis(300);
        let config = RoomConfig {
            send_queue_bytes: 4096,
            send_queue_max_bytes: 64 * 1024,
            stall_timeout: stall,
            ..RoomConfig::default()
        };
        let mut room = Room::new(config);
        let (busy, _busy_rx) = link(&room, 1, 10_000);
        let (busy_cancel, busy_progress) = (busy.cancel.clone(), busy.progress.clone());
        room.join("busy", &"id-b".into(), None, busy).unwrap();
        let (fast, mut fast_in) = link(&room, 2, 10_000);
        room.join("fast", &"id-f".into(), None, fast).unwrap();
        let mut id = 0;
        let mut say = |room: &mut Room, fast_in: &mut Inbox| {
            id += 1;
            room.say("fast", 2, id, "x".repeat(200)).unwrap();
            fast_in.drain();
        };
        for _ in 0..40 {
            say(&mut room, &mut fast_in); // 40 × ~300 bytes: over the 4 KiB budget
        }
        std::thread::sleep(stall + Duration::from_millis(50));
        busy_progress.sent.fetch_add(1500, Ordering::Release); // it took some replay meanwhile
        say(&mut room, &mut fast_in);
        assert!(!busy_cancel.is_cancelled(), "still reading: kept");

        std::thread::sleep(stall + Duration::from_millis(50));
        say(&mut room, &mut fast_in);
        assert!(
            busy_cancel.is_cancelled(),
            "took nothing for the stall timeout: cut off"
        );
        assert_eq!(room.connected(), 1);

        // Past the cap, reading or not, a member is cut off at once.
        let (eager, _eager_rx) = link(&room, 3, 10_000);
        let (eager_cancel, eager_progress) = (eager.cancel.clone(), eager.progress.clone());
        room.join("eager", &"id-e".into(), None, eager).unwrap();
        let mut rounds = 0;
        while !eager_cancel.is_cancelled() {
            eager_progress.sent.fetch_add(100, Ordering::Release);
            say(&mut room, &mut fast_in);
            rounds += 1;
            assert!(rounds < 1000, "never cut off");
        }
        assert!(
            rounds > 150,
            "not before the cap: cut after {rounds} messages"
        );
        assert_eq!(fast_in.texts().len(), 42 + rounds);
    }

    #[test]
    fn new_epoch_means_resync_and_history_is_bounded() {
        let config = RoomConfig {
            history: 5,
            backlog: 3,
            ..RoomConfig::default()
        };
        let mut room = Room::new(config);
        room.join("ana", &"id-a".into(), None, link(&room, 1, 100).0)
            .unwrap();
        for i in 1..=10 {
            room.say("ana", 1, i, format!("m{i}")).unwrap();
        }
        let (l, mut ben) = link(&room, 2, 100);
        let stale = Resume {
            epoch: "an old epoch".into(),
            last_seq: 7,
        };
        room.join("ben", &"id-b".into(), Some(&stale), l).unwrap();
        ben.drain();
        assert!(matches!(
            &ben.private[0],
            ServerMessage::Welcome { resync: true, .. }
        ));
        assert_eq!(ben.texts(), vec!["m8", "m9", "m10"], "backlog of 3");
        let (l, mut cat) = link(&room, 3, 100);
        let old = Resume {
            epoch: room.epoch().to_owned(),
            last_seq: 1,
        };
        room.join("cat", &"id-c".into(), Some(&old), l).unwrap();
        cat.drain();
        assert!(matches!(
            &cat.private[0],
            ServerMessage::Welcome { gap: true, .. }
        ));
        assert_eq!(
            cat.events.first().map(|e| e.seq),
            Some(8),
            "oldest kept of 5: seqs 8..=12"
        );
    }
}
