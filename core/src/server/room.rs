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
//!
//! The broadcast key rotates (`docs/PROTOCOL.md` §5): when a member leaves for good, and once
//! a key has been in use for the rekey interval. Each rotation draws a fresh key, keeps the
//! broadcast counters going, and queues one `room_key` to every connected member at the log
//! position where the new key starts, so its writer sends it just before the first
//! broadcast under it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::clock::{fresh_room_key, Now, RoomIdentity};
use super::dedupe::{Dedupe, Seen};
use super::fanout::FanoutLog;
use super::files::{ActiveUpload, FileHost};
use super::link::MemberLink;
use super::pages::PageSource;
use super::recent::RecentHistory;
use super::roster::Roster;
use super::store::{FileRecord, Retention, Store, StoreError};
use crate::author::author_tag;
use crate::message::{
    BroadcastMessage, ClientId, Epoch, ErrorCode, LeaveReason, Resume, RoomEvent, RoomEventKind,
    ServerMessage, TYPING_NOTICE_INTERVAL,
};
use crate::passphrase::Salt;
use crate::sealed::{encode, BroadcastSealer};
use crate::secret::SecretKey;
use crate::text::{nick_key, nick_shown_key, validate_nick, NickError};

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

/// Default retention: the newest million events (about 250 MiB of ordinary chat; see
/// `docs/PROTOCOL.md`, Limits).
pub const DEFAULT_RETAIN_EVENTS: u64 = 1_000_000;

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            history: 10_000,
            backlog: 200,
            grace: Duration::from_secs(10),
            send_queue_bytes: 1024 * 1024,
            send_queue_max_bytes: 4 * 1024 * 1024,
            stall_timeout: Duration::from_secs(5),
            retention: Retention {
                max_events: Some(DEFAULT_RETAIN_EVENTS),
                max_age_ms: None,
            },
            send_window: 32,
        }
    }
}

/// A member seen over its send-queue budget: how much its connection had taken then.
#[derive(Debug, Clone, Copy)]
struct OverBudget {
    sent: u64,
    since: Instant,
}

struct Member {
    nick: String,
    /// [`nick_shown_key`] of `nick`: a second key no other client's name may share.
    shown_key: String,
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
    room_key: SecretKey,
    sealer: BroadcastSealer,
    /// When the first broadcast under the current key was sealed (`None`: none yet, so an
    /// idle room keeps its key).
    key_in_use_since: Option<Instant>,
    /// Keys drawn after the first, for the log and the tests.
    rotations: u64,
    next_seq: u64,
    /// Recent events, shared with the writers that replay them.
    history: Arc<RecentHistory>,
    /// Members by folded nickname; changed only through `add_member` and `remove_member`,
    /// which keep `roster` the same.
    members: HashMap<String, Member>,
    roster: Arc<Roster>,
    dedupe: Dedupe,
    /// Durable storage; `None` for a memory-only room. Shared with readers of older pages,
    /// who lock it only for their query (never with the room's lock held).
    store: Option<Arc<Mutex<Store>>>,
    /// The oldest event still kept (on disk, or in memory for a memory-only room).
    oldest_seq: u64,
    /// Sealed broadcasts, appended once and sent from by every member's writer.
    log: Arc<FanoutLog>,
    /// The room's files, which leave with their events (`None`: no file host attached).
    files: Option<Arc<FileHost>>,
}

/// The room's database, if it is stored.
fn lock_store(store: &Option<Arc<Mutex<Store>>>) -> Option<MutexGuard<'_, Store>> {
    store
        .as_ref()
        .map(|store| store.lock().unwrap_or_else(PoisonError::into_inner))
}

impl Room {
    /// A new room epoch.
    pub fn new(config: RoomConfig, identity: RoomIdentity) -> Self {
        let RoomIdentity { epoch, room_key } = identity;
        Self {
            config,
            epoch,
            sealer: BroadcastSealer::new(&room_key, 0),
            room_key,
            key_in_use_since: None,
            rotations: 0,
            next_seq: 1,
            history: Arc::default(),
            members: HashMap::new(),
            roster: Arc::default(),
            dedupe: Dedupe::default(),
            store: None,
            oldest_seq: 1,
            log: Arc::new(FanoutLog::new()),
            files: None,
        }
    }

    /// The room's database, shared (`None` for a memory-only room).
    pub fn store_handle(&self) -> Option<Arc<Mutex<Store>>> {
        self.store.clone()
    }

    /// Attach the room's files: from now on a file leaves with its event.
    pub fn set_files(&mut self, files: Arc<FileHost>) {
        files.forget_through(self.oldest_seq.saturating_sub(1));
        self.files = Some(files);
    }

    /// The broadcast log member links and writers send from.
    pub fn fanout(&self) -> Arc<FanoutLog> {
        self.log.clone()
    }

    /// The recent history writers replay from.
    pub fn recent(&self) -> Arc<RecentHistory> {
        self.history.clone()
    }

    /// A room continuing from `store`: same salt, epoch, sequence numbers, history and
    /// duplicate suppression as before the restart. Returns the room and its salt.
    pub fn with_store(
        config: RoomConfig,
        mut store: Store,
        new_salt: Salt,
        identity: RoomIdentity,
        now: Now,
    ) -> Result<(Self, Salt), StoreError> {
        let mut room = Room::new(config, identity);
        let loaded = store.load(room.config.history, new_salt, room.epoch.clone())?;
        room.epoch = loaded.epoch;
        room.next_seq = loaded.next_seq;
        room.oldest_seq = loaded.oldest_seq;
        for event in loaded.recent {
            room.history.push(event);
        }
        for (client, highest) in &loaded.dedupe {
            room.dedupe.record(client, *highest);
        }
        // Whoever was in the room when the server stopped is away: they keep their nickname
        // for the grace period (and resume silently), or get a leave notice after it.
        for (nick, client_id) in loaded.present {
            room.add_member(
                nick_key(&nick),
                Member {
                    shown_key: nick_shown_key(&nick),
                    nick,
                    client_id,
                    link: None,
                    away_since: Some(now.at),
                    last_typing: None,
                    over_budget: None,
                },
            );
        }
        room.store = Some(Arc::new(Mutex::new(store)));
        room.apply_retention(now.wall_ms)?;
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
        self.history
            .forget_while(|e, len| len > max_events || too_old(e));
        let removed = match lock_store(&self.store) {
            Some(mut store) => {
                let removed = store.prune(retention, now_ms)?;
                self.oldest_seq = store.oldest_seq()?.unwrap_or(self.next_seq);
                removed
            }
            None => {
                self.oldest_seq = self.history.oldest_seq().unwrap_or(self.next_seq);
                0
            }
        };
        if let Some(files) = &self.files {
            files.forget_through(self.oldest_seq.saturating_sub(1));
        }
        Ok(removed)
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

    /// Whether a join as `raw_nick` would add a new member (and write a join event), rather
    /// than resume one or be refused.
    pub fn would_add_member(&self, raw_nick: &str) -> bool {
        validate_nick(raw_nick).is_ok_and(|nick| !self.members.contains_key(&nick_key(&nick)))
    }

    /// Add (or re-attach) a member. On success its link has been sent `welcome` and the
    /// history it needs; every later broadcast follows in order.
    pub fn join(
        &mut self,
        raw_nick: &str,
        client_id: &ClientId,
        resume: Option<&Resume>,
        link: MemberLink,
        now: Now,
    ) -> Result<Joined, NickError> {
        let nick = validate_nick(raw_nick)?;
        let key = nick_key(&nick);
        let resumed = match self.members.get(&key) {
            Some(member) if &member.client_id != client_id => return Err(NickError::Taken),
            Some(_) => true,
            None => false,
        };
        // Look-alike capitals of another script (`ΑΝΑ` and `ANA`) differ under `nick_key`.
        let shown_key = nick_shown_key(&nick);
        if self
            .members
            .values()
            .any(|m| &m.client_id != client_id && m.shown_key == shown_key)
        {
            return Err(NickError::Taken);
        }
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
                        now,
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
                    shown_key: shown_key.clone(),
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
            self.announce(
                RoomEventKind::Join { nick: nick.clone() },
                Some(client_id),
                now,
            );
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
        // What memory still holds, but nothing the database no longer has (a replay under way
        // may keep evicted events in memory a while).
        let oldest = self
            .history
            .oldest_seq()
            .unwrap_or(self.next_seq)
            .max(self.oldest_seq);
        // A resume point beyond the head (a room restored from an older copy, or a confused
        // client) is treated like an unknown epoch: the client would otherwise skip the next
        // events as "already shown".
        let same_epoch = resume.filter(|r| r.epoch == self.epoch && r.last_seq <= head_seq);
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
        link.queue_welcome(
            ServerMessage::Welcome {
                nick: nick.to_owned(),
                epoch: self.epoch.clone(),
                room_key: *self.room_key,
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
        // The writer reads the replay from the recent history a piece at a time.
        if from_seq <= head_seq {
            link.queue_replay(self.history.pin(from_seq), head_seq);
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
    pub fn say(
        &mut self,
        key: &str,
        conn_id: u64,
        id: u64,
        text: String,
        now: Now,
    ) -> Result<(), NotMember> {
        let link = self.link_of(key, conn_id)?;
        let member = self.members.get(key).ok_or(NotMember::Detached)?;
        let (from, client_id) = (member.nick.clone(), member.client_id.clone());
        let link = link.clone();
        if self.dedupe.peek(&client_id, id) == Seen::Fresh {
            let kind = RoomEventKind::Message {
                from,
                text,
                msg_id: id,
                author: author_tag(&client_id),
            };
            if let Err(e) = self.publish(kind, Some(&client_id), now) {
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

    /// A finished, checked upload from member `key` on connection `conn_id`: put its `file`
    /// event in the room (committed with the file's record and the client's new highest upload
    /// id), unless it is there already. Returns the event's `(file_id, seq)`, or `None` if it
    /// was in the room before.
    pub fn share_file(
        &mut self,
        key: &str,
        conn_id: u64,
        upload: &ActiveUpload,
        now: Now,
    ) -> Result<Option<(u64, u64)>, NotMember> {
        self.link_of(key, conn_id)?;
        let member = self.members.get(key).ok_or(NotMember::Detached)?;
        let (from, client_id) = (member.nick.clone(), member.client_id.clone());
        let Some(files) = self.files.clone() else {
            return Err(NotMember::StorageFailed);
        };
        if files.highest_done(&client_id) >= upload.upload_id {
            return Ok(None);
        }
        let kind = RoomEventKind::File {
            from,
            file_id: upload.file_id,
            name: upload.name.clone(),
            size: upload.size,
            mime: upload.mime.clone(),
            sha256: upload.sha256,
            upload_id: upload.upload_id,
            author: author_tag(&client_id),
        };
        let record = FileRecord {
            file_id: upload.file_id,
            size: upload.size,
            key: upload.key,
        };
        let seq = self.next_seq;
        // Registers the file with `files` once committed, before broadcasting.
        if let Err(e) = self.publish_with(kind, Some(&client_id), Some(&record), now) {
            tracing::error!(error = %e, "could not store a file event; not announced");
            return Err(NotMember::StorageFailed);
        }
        Ok(Some((upload.file_id, seq)))
    }

    /// Where member `key` on `conn_id`, scrolling back, reads its page of older history
    /// (off the room's lock, see [`pages`](super::pages)), and the link to queue it on.
    pub fn older(&self, key: &str, conn_id: u64) -> Result<(MemberLink, PageSource), NotMember> {
        let link = self.link_of(key, conn_id)?.clone();
        let source = match &self.store {
            Some(store) => PageSource::Store(store.clone()),
            None => PageSource::Memory(self.history.clone()),
        };
        Ok((link, source))
    }

    /// A private reply to a member connection (pong, rejections).
    pub fn reply(&self, key: &str, conn_id: u64, message: ServerMessage) -> Result<(), NotMember> {
        self.link_of(key, conn_id)?.queue(message);
        Ok(())
    }

    /// Member `key` said goodbye on `conn_id`. Its connection's stream ends here, and the key
    /// rotates before the leave notice, so the leaver holds no key for anything from its
    /// notice on.
    pub fn leave(&mut self, key: &str, conn_id: u64, now: Now) {
        if self.link_of(key, conn_id).is_ok() {
            if let Some(member) = self.remove_member(key) {
                if let Some(link) = &member.link {
                    link.close();
                }
                self.rotate_key("a member left");
                self.announce(
                    RoomEventKind::Leave {
                        nick: member.nick,
                        reason: LeaveReason::Quit,
                    },
                    None,
                    now,
                );
            }
        }
    }

    /// Connection `conn_id` of member `key` ended without a goodbye: start the grace period.
    pub fn disconnected(&mut self, key: &str, conn_id: u64, now: Now) {
        if self.link_of(key, conn_id).is_ok() {
            if let Some(member) = self.members.get_mut(key) {
                member.link = None;
                member.away_since = Some(now.at);
            }
        }
    }

    /// Announce the departure of members whose grace period has run out. Returns how many.
    pub fn expire_away(&mut self, now: Now) -> usize {
        let grace = self.config.grace;
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.away_since
                    .is_some_and(|t| now.at.saturating_duration_since(t) >= grace)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let gone: Vec<Member> = expired
            .iter()
            .filter_map(|key| self.remove_member(key))
            .collect();
        // One new key for all of them, before their notices.
        if !gone.is_empty() {
            self.rotate_key("a member's connection was lost");
        }
        for member in gone {
            self.announce(
                RoomEventKind::Leave {
                    nick: member.nick,
                    reason: LeaveReason::ConnectionLost,
                },
                None,
                now,
            );
        }
        expired.len()
    }

    /// Rotate the broadcast key if the current one has been in use (sealed its first
    /// broadcast) for at least `interval`. Returns whether it rotated.
    pub fn rotate_if_due(&mut self, now: Now, interval: Duration) -> bool {
        let due = self
            .key_in_use_since
            .is_some_and(|since| now.at.saturating_duration_since(since) >= interval);
        if due {
            self.rotate_key("the rekey interval passed");
        }
        due
    }

    /// Draw a fresh broadcast key for the broadcasts from the next counter on, and queue a
    /// `room_key` for it to every connected member at the log's end: before the first
    /// broadcast under it in each member's stream (also one whose welcome or replay is still
    /// going out, or whose queue is behind: the item waits its turn). Members away within
    /// their grace period get the key in their next welcome; members gone get nothing.
    fn rotate_key(&mut self, why: &str) {
        let from = self.sealer.next_counter();
        self.room_key = fresh_room_key();
        self.sealer = BroadcastSealer::new(&self.room_key, from);
        self.key_in_use_since = None;
        self.rotations += 1;
        let message = ServerMessage::RoomKey {
            room_key: *self.room_key,
            from_broadcast: from,
        };
        let mut told = 0usize;
        for member in self.members.values() {
            if let Some(link) = &member.link {
                // A queue too full for it cuts the member off (slow consumer); it resumes
                // with the current key in its welcome.
                told += usize::from(link.queue(message.clone()));
            }
        }
        tracing::debug!(
            rotation = self.rotations,
            from_broadcast = from,
            members = told,
            why,
            "room key rotated"
        );
    }

    /// Keys drawn since the room started, after its first.
    #[cfg(test)]
    pub fn rotations(&self) -> u64 {
        self.rotations
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
    fn announce(&mut self, kind: RoomEventKind, client: Option<&ClientId>, now: Now) {
        if let Err(e) = self.publish(kind, client, now) {
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
        now: Now,
    ) -> Result<(), StoreError> {
        self.publish_with(kind, client, None, now)
    }

    /// [`publish`](Self::publish), for a `file` event with the file's record.
    fn publish_with(
        &mut self,
        kind: RoomEventKind,
        client: Option<&ClientId>,
        file: Option<&FileRecord>,
        now: Now,
    ) -> Result<(), StoreError> {
        let event = RoomEvent {
            seq: self.next_seq,
            time_ms: now.wall_ms,
            kind,
        };
        let evicted = match lock_store(&self.store) {
            Some(mut store) => match (file, client) {
                (Some(file), Some(client)) => store.append_file(&event, client, file)?,
                _ => store.append(&event, client)?,
            },
            None => None,
        };
        if let Some(evicted) = evicted {
            // The size cap deleted the oldest history: forget it here too (but for what a
            // replay under way still needs), so backlogs and replays start where the
            // database does, and tell newcomers the new oldest event.
            self.history
                .forget_while(|e, _| e.seq <= evicted.through_seq);
            self.oldest_seq = self.oldest_seq.max(evicted.through_seq + 1);
            if let Some(files) = &self.files {
                files.forget_through(evicted.through_seq);
            }
        }
        // A file is registered before its event goes out: a member fetching it as soon as the
        // event arrives finds it (lookups do not take the room's lock).
        if let (Some(file), Some(client), RoomEventKind::File { upload_id, .. }) =
            (file, client, &event.kind)
        {
            if let Some(files) = &self.files {
                files.finished(client, *upload_id, file.file_id, event.seq);
            }
        }
        self.next_seq += 1;
        let message = BroadcastMessage::Event(event.clone());
        self.history.push(event);
        let keep = self
            .config
            .retention
            .max_events
            .map_or(self.config.history, |n| self.config.history.min(n as usize));
        self.history.forget_while(|_, len| len > keep);
        if self.store.is_none() {
            self.oldest_seq = self.history.oldest_seq().unwrap_or(self.next_seq);
            if let Some(files) = &self.files {
                files.forget_through(self.oldest_seq.saturating_sub(1));
            }
        }
        self.broadcast(&message, now.at);
        Ok(())
    }

    /// Member `key` is typing: relay an ephemeral notice (no sequence number, not kept in
    /// history), at most once per [`TYPING_RELAY_INTERVAL`] per member.
    pub fn typing(&mut self, key: &str, conn_id: u64, now: Now) -> Result<(), NotMember> {
        self.link_of(key, conn_id)?;
        let member = self.members.get_mut(key).ok_or(NotMember::Detached)?;
        if member
            .last_typing
            .is_some_and(|t| now.at.saturating_duration_since(t) < TYPING_RELAY_INTERVAL)
        {
            return Ok(());
        }
        member.last_typing = Some(now.at);
        let nick = member.nick.clone();
        self.broadcast(&BroadcastMessage::Typing { nick }, now.at);
        Ok(())
    }

    /// Seal `message` once and queue the same bytes to every connected member; cut off members
    /// whose queue is full.
    fn broadcast(&mut self, message: &BroadcastMessage, now: Instant) {
        let sealed = encode(message).and_then(|plaintext| self.sealer.seal(&plaintext));
        let frame = match sealed {
            Ok(frame) => frame,
            Err(e) => {
                // Only reachable if the key's nonce space ran out (2^64 broadcasts).
                tracing::error!(error = %e, "could not seal a broadcast; closing the room's connections");
                self.shutdown();
                return;
            }
        };
        self.key_in_use_since.get_or_insert(now);
        let end = self.log.append(&frame);
        let start = end - frame.len() as u64;
        let budget = self.config.send_queue_bytes as u64;
        let cap = self
            .config
            .send_queue_max_bytes
            .max(self.config.send_queue_bytes) as u64;
        let mut oldest = end;
        for member in self.members.values_mut() {
            let Some(link) = &member.link else { continue };
            // Bytes already waiting for this member, before this frame: broadcasts and
            // private messages alike.
            let unsent = link.behind(start);
            let queued = unsent + link.private_queued();
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
            oldest = oldest.min(start - unsent);
            link.wake.notify_one();
        }
        self.log.trim(oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::super::link::{Outgoing, SendLimits, WriterProgress};
    use super::super::order::{Private, SendOrder, Step};
    use super::*;
    use crate::client::keys::BroadcastKeys;
    use std::sync::OnceLock;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    /// The moment every test starts at; later moments are `start().after(…)`. The room never
    /// reads a clock itself, so no test sleeps.
    fn start() -> Now {
        static BASE: OnceLock<Instant> = OnceLock::new();
        Now {
            at: *BASE.get_or_init(Instant::now),
            wall_ms: 1_764_633_600_000,
        }
    }

    fn new_room(config: RoomConfig) -> Room {
        Room::new(
            config,
            RoomIdentity {
                epoch: "e".repeat(32),
                room_key: [9; 32].into(),
            },
        )
    }

    fn link(room: &Room, conn_id: u64, capacity: usize) -> (MemberLink, Inbox) {
        let (tx, rx) = mpsc::channel(capacity);
        let link = MemberLink::new(
            conn_id,
            tx,
            room.fanout(),
            CancellationToken::new(),
            SendLimits {
                budget: room.config.send_queue_bytes as u64,
                cap: room.config.send_queue_max_bytes as u64,
                stall: room.config.stall_timeout,
            },
        );
        let inbox = Inbox {
            rx,
            log: room.fanout(),
            recent: room.recent(),
            progress: link.progress.clone(),
            order: SendOrder::default(),
            keys: None,
            frames: vec![],
            keys_seen: vec![],
            pongs: vec![],
            events: vec![],
            broadcasts: vec![],
            private: vec![],
            closed: false,
        };
        (link, inbox)
    }

    /// Plays a member's writer and client: takes its private queue and its broadcasts from
    /// the log in the writer's order (the same [`SendOrder`]), opening broadcasts as the
    /// client does (the key from its welcome, then each `room_key`), and checking every
    /// pong's position (stamped as the writer does) as the client does.
    struct Inbox {
        rx: mpsc::Receiver<Outgoing>,
        log: Arc<FanoutLog>,
        recent: Arc<RecentHistory>,
        progress: Arc<WriterProgress>,
        order: SendOrder,
        keys: Option<BroadcastKeys>,
        /// Every broadcast frame body received, as sent (a recording of the wire).
        frames: Vec<Vec<u8>>,
        /// Every key received (welcome, then `room_key`s) with the counter it starts at.
        keys_seen: Vec<(crate::cipher::Key, u64)>,
        /// `broadcast_next` of every pong received.
        pongs: Vec<u64>,
        events: Vec<RoomEvent>,
        broadcasts: Vec<BroadcastMessage>,
        private: Vec<ServerMessage>,
        /// The room closed this connection.
        closed: bool,
    }

    impl Inbox {
        fn read_broadcasts(&mut self, range: std::ops::Range<u64>) {
            let mut slices = Vec::new();
            let next = self
                .log
                .read(range.start, range.end, usize::MAX, &mut slices)
                .unwrap();
            if !slices.is_empty() {
                self.private.extend(self.order.take_ack());
            }
            let bytes = slices.concat();
            let mut rest = &bytes[..];
            while let Some((f, used)) = crate::frame::decode(rest, crate::frame::MAX_BODY).unwrap()
            {
                self.frames.push(f.body.to_vec());
                let message: BroadcastMessage = self.keys.as_mut().unwrap().open(f.body).unwrap();
                if let BroadcastMessage::Event(e) = &message {
                    self.events.push(e.clone());
                }
                self.broadcasts.push(message);
                rest = &rest[used..];
            }
            assert!(rest.is_empty(), "whole frames only");
            self.order.sent_through(next);
            self.progress.written.store(next, Ordering::Release);
            self.progress
                .sent
                .fetch_add(bytes.len() as u64, Ordering::Release);
        }

        fn drain(&mut self) {
            loop {
                let end = self.log.end(); // before the queue, as the writer does
                if self.order.wants_item() {
                    if let Ok(item) = self.rx.try_recv() {
                        self.progress
                            .queued
                            .fetch_sub(item.queued_bytes(), Ordering::AcqRel);
                        self.order.offer(item);
                    }
                }
                match self.order.step(end) {
                    Step::Broadcasts(range) => self.read_broadcasts(range),
                    Step::Private(item) => {
                        self.private.extend(self.order.take_ack());
                        match item {
                            Private::Welcome { welcome, roster } => {
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
                                let key: crate::cipher::Key = *room_key;
                                self.keys = Some(BroadcastKeys::new(&key, *next_broadcast));
                                self.keys_seen.push((key, *next_broadcast));
                                self.private.push(msg);
                            }
                            Private::Message(mut message) => {
                                super::super::writer::stamp_position(
                                    &mut message,
                                    &self.order,
                                    &self.log,
                                );
                                match &*message {
                                    ServerMessage::RoomKey {
                                        room_key,
                                        from_broadcast,
                                    } => {
                                        let key: crate::cipher::Key = *room_key;
                                        let keys =
                                            self.keys.as_mut().expect("a key after the welcome");
                                        keys.add(key, *from_broadcast).unwrap();
                                        self.keys_seen.push((key, *from_broadcast));
                                    }
                                    ServerMessage::Pong { broadcast_next } => {
                                        if let Some(keys) = &self.keys {
                                            keys.check_position(*broadcast_next).unwrap();
                                        }
                                        self.pongs.push(*broadcast_next);
                                    }
                                    _ => {}
                                }
                                if let ServerMessage::History { events } = &*message {
                                    self.events.extend(events.iter().cloned());
                                }
                                self.private.push(*message);
                            }
                            Private::Replay {
                                mut pin,
                                through_seq,
                            } => {
                                while pin.next() <= through_seq {
                                    let events =
                                        self.recent.piece(pin.next(), through_seq, 4096).unwrap();
                                    pin.advance(events.last().unwrap().seq + 1);
                                    self.events.extend(events.iter().cloned());
                                    self.private.push(ServerMessage::History { events });
                                }
                            }
                            Private::Download { begin, .. } => self.private.push(*begin),
                            Private::Close => self.closed = true,
                        }
                    }
                    Step::Again => {}
                    Step::Idle => break,
                }
            }
            self.private.extend(self.order.take_ack());
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
        let mut room = new_room(RoomConfig::default());
        let (ana, mut ana_in) = link(&room, 1, 100);
        let (ben, mut ben_in) = link(&room, 2, 100);
        let a = room
            .join(" Ana ", &"id-a".into(), None, ana, start())
            .unwrap();
        assert_eq!(
            (a.key.as_str(), a.nick.as_str(), a.resumed),
            ("ana", "Ana", false)
        );
        // A welcome lists its own member.
        ana_in.drain();
        assert!(
            matches!(&ana_in.private[0], ServerMessage::Welcome { online, .. } if online == &vec!["Ana".to_string()])
        );
        let b = room
            .join("Ben", &"id-b".into(), None, ben, start())
            .unwrap();
        room.say(&a.key, 1, 1, "hola | a: todos".into(), start())
            .unwrap();
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
        let mut room = new_room(RoomConfig::default());
        let (l, mut rx) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, l, start()).unwrap();
        room.join("ben", &"id-b".into(), None, link(&room, 2, 100).0, start())
            .unwrap();
        let t0 = start();
        let head = room.next_seq;
        room.typing("ben", 2, t0).unwrap();
        room.typing("ben", 2, t0.after(Duration::from_millis(500)))
            .unwrap();
        room.typing("ben", 2, t0.after(Duration::from_millis(1100)))
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
        let mut room = new_room(RoomConfig::default());
        room.join("Ana", &"id-a".into(), None, link(&room, 1, 10).0, start())
            .unwrap();
        assert_eq!(
            room.join("aNA ", &"id-x".into(), None, link(&room, 2, 10).0, start()),
            Err(NickError::Taken)
        );
        assert_eq!(
            room.join("", &"id-x".into(), None, link(&room, 2, 10).0, start()),
            Err(NickError::Empty)
        );
    }

    /// Greek or Cyrillic capitals that look like a Latin name are that name: another client
    /// cannot take them while it is in the room (either way round); the same client may.
    #[test]
    fn look_alike_capitals_of_another_script_are_taken() {
        let mut room = new_room(RoomConfig::default());
        room.join("ana", &"id-a".into(), None, link(&room, 1, 10).0, start())
            .unwrap();
        room.join(
            "\u{422}\u{41E}\u{41C}",
            &"id-t".into(),
            None,
            link(&room, 2, 10).0,
            start(),
        )
        .unwrap(); // Cyrillic ТОМ
        for (nick, conn) in [("\u{391}\u{39D}\u{391}", 3), ("TOM", 4), ("tom", 5)] {
            assert_eq!(
                room.join(nick, &"id-x".into(), None, link(&room, conn, 10).0, start()),
                Err(NickError::Taken),
                "{nick}"
            );
        }
        // Lower-case Greek looks different; ТОМ's own client may switch to the Latin name.
        room.join(
            "\u{3B1}\u{3BD}\u{3B1}",
            &"id-x".into(),
            None,
            link(&room, 6, 10).0,
            start(),
        )
        .unwrap();
        room.join("TOM", &"id-t".into(), None, link(&room, 7, 10).0, start())
            .unwrap();
        // And the capitals of ανα (ΑΝΑ) are ανα's name under case folding.
        assert_eq!(
            room.join(
                "\u{391}\u{39D}\u{391}",
                &"id-a".into(),
                None,
                link(&room, 8, 10).0,
                start()
            ),
            Err(NickError::Taken)
        );
    }

    #[test]
    fn duplicate_messages_are_acked_not_repeated() {
        let mut room = new_room(RoomConfig::default());
        let (l, mut inbox) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, l, start()).unwrap();
        // Each say drained on its own, as a member reading along would see it (acks due
        // together are coalesced by the writer's order).
        let mut acks = Vec::new();
        for (id, text) in [(1, "one"), (1, "one"), (2, "two")] {
            room.say("ana", 1, id, text.into(), start()).unwrap();
            inbox.private.clear();
            inbox.drain();
            acks.extend(inbox.private.iter().filter_map(|m| match m {
                ServerMessage::Ack { up_to } => Some(*up_to),
                _ => None,
            }));
        }
        assert_eq!(inbox.texts(), vec!["one", "two"]);
        assert_eq!(acks, vec![1, 1, 2], "the resent message is acked again");
        // Acks due together go out as one.
        room.say("ana", 1, 3, "three".into(), start()).unwrap();
        room.say("ana", 1, 3, "three".into(), start()).unwrap();
        inbox.private.clear();
        inbox.drain();
        assert_eq!(inbox.private, vec![ServerMessage::Ack { up_to: 3 }]);
    }

    #[test]
    fn grace_period_resume_replays_without_notices() {
        let mut room = new_room(RoomConfig::default());
        let t0 = start();
        let (l1, _rx1) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, l1, start()).unwrap();
        let (lb, mut ben) = link(&room, 2, 100);
        room.join("ben", &"id-b".into(), None, lb, start()).unwrap();
        room.say("ana", 1, 1, "before".into(), start()).unwrap();
        room.disconnected("ana", 1, t0);
        assert_eq!(
            room.say("ana", 1, 2, "late".into(), start()),
            Err(NotMember::Detached)
        );
        room.say("ben", 2, 1, "while away".into(), start()).unwrap();
        assert_eq!(room.expire_away(t0.after(Duration::from_secs(9))), 0);
        // Ana comes back: same client id, resumes after the last seq she saw (3 = her message).
        let (l3, mut ana) = link(&room, 3, 100);
        let resume = Resume {
            epoch: room.epoch().to_owned(),
            last_seq: 3,
        };
        let joined = room
            .join("ana", &"id-a".into(), Some(&resume), l3, start())
            .unwrap();
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
            room.expire_away(t0.after(Duration::from_secs(20))),
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
        let mut room = new_room(RoomConfig::default());
        let t0 = start();
        room.join("ana", &"id-a".into(), None, link(&room, 1, 100).0, start())
            .unwrap();
        let (lb, mut ben) = link(&room, 2, 100);
        room.join("ben", &"id-b".into(), None, lb, start()).unwrap();
        room.disconnected("ana", 1, t0);
        assert_eq!(
            room.online(),
            vec!["ana", "ben"],
            "still listed during grace"
        );
        assert_eq!(room.expire_away(t0.after(Duration::from_secs(10))), 1);
        assert_eq!(room.online(), vec!["ben"]);
        ben.drain();
        assert!(
            matches!(&ben.events.last().unwrap().kind, RoomEventKind::Leave { nick, reason: LeaveReason::ConnectionLost } if nick == "ana")
        );
        // Anyone may take the nickname now.
        assert!(room
            .join(
                "ANA",
                &"id-other".into(),
                None,
                link(&room, 3, 10).0,
                start()
            )
            .is_ok());
    }

    #[test]
    fn stale_session_is_replaced_by_the_same_client() {
        let mut room = new_room(RoomConfig::default());
        let (old, mut old_rx) = link(&room, 1, 100);
        room.join("ana", &"id-a".into(), None, old, start())
            .unwrap();
        let joined = room
            .join("ana", &"id-a".into(), None, link(&room, 2, 100).0, start())
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
            room.say("ana", 1, 1, "from the ghost".into(), start()),
            Err(NotMember::Detached)
        );
        assert!(room
            .say("ana", 2, 1, "from the live one".into(), start())
            .is_ok());
    }

    #[test]
    fn slow_consumer_is_cut_off_at_the_cap_and_others_continue() {
        let config = RoomConfig {
            send_queue_bytes: 4096,
            send_queue_max_bytes: 8192,
            ..RoomConfig::default()
        };
        let mut room = new_room(config);
        let (slow, _slow_rx) = link(&room, 1, 10_000);
        let slow_cancel = slow.cancel.clone();
        room.join("slow", &"id-s".into(), None, slow, start())
            .unwrap();
        let (fast, mut fast_in) = link(&room, 2, 10_000);
        room.join("fast", &"id-f".into(), None, fast, start())
            .unwrap();
        for i in 1..=100 {
            room.say("fast", 2, i, "x".repeat(100), start()).unwrap();
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
        let mut room = new_room(config);
        let (busy, _busy_rx) = link(&room, 1, 10_000);
        let (busy_cancel, busy_progress) = (busy.cancel.clone(), busy.progress.clone());
        room.join("busy", &"id-b".into(), None, busy, start())
            .unwrap();
        let (fast, mut fast_in) = link(&room, 2, 10_000);
        room.join("fast", &"id-f".into(), None, fast, start())
            .unwrap();
        let mut id = 0;
        let mut say = |room: &mut Room, fast_in: &mut Inbox, at: Now| {
            id += 1;
            room.say("fast", 2, id, "x".repeat(200), at).unwrap();
            fast_in.drain();
        };
        for _ in 0..40 {
            say(&mut room, &mut fast_in, start()); // 40 × ~300 bytes: over the 4 KiB budget
        }
        let later = start().after(stall + Duration::from_millis(50));
        busy_progress.sent.fetch_add(1500, Ordering::Release); // it took some replay meanwhile
        say(&mut room, &mut fast_in, later);
        assert!(!busy_cancel.is_cancelled(), "still reading: kept");
        // Just under the stall timeout since it last took something: still kept.
        say(
            &mut room,
            &mut fast_in,
            later.after(stall - Duration::from_millis(1)),
        );
        assert!(
            !busy_cancel.is_cancelled(),
            "not stalled for long enough yet"
        );

        say(&mut room, &mut fast_in, later.after(stall));
        assert!(
            busy_cancel.is_cancelled(),
            "took nothing for the stall timeout: cut off"
        );
        assert_eq!(room.connected(), 1);

        // Past the cap, reading or not, a member is cut off at once.
        let (eager, _eager_rx) = link(&room, 3, 10_000);
        let (eager_cancel, eager_progress) = (eager.cancel.clone(), eager.progress.clone());
        room.join("eager", &"id-e".into(), None, eager, start())
            .unwrap();
        let mut rounds = 0;
        while !eager_cancel.is_cancelled() {
            eager_progress.sent.fetch_add(100, Ordering::Release);
            say(&mut room, &mut fast_in, later.after(stall));
            rounds += 1;
            assert!(rounds < 1000, "never cut off");
        }
        assert!(
            rounds > 150,
            "not before the cap: cut after {rounds} messages"
        );
        assert_eq!(fast_in.texts().len(), 43 + rounds);
    }

    #[test]
    fn new_epoch_means_resync_and_history_is_bounded() {
        let config = RoomConfig {
            history: 5,
            backlog: 3,
            ..RoomConfig::default()
        };
        let mut room = new_room(config);
        room.join("ana", &"id-a".into(), None, link(&room, 1, 100).0, start())
            .unwrap();
        for i in 1..=10 {
            room.say("ana", 1, i, format!("m{i}"), start()).unwrap();
        }
        let (l, mut ben) = link(&room, 2, 100);
        let stale = Resume {
            epoch: "an old epoch".into(),
            last_seq: 7,
        };
        room.join("ben", &"id-b".into(), Some(&stale), l, start())
            .unwrap();
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
        room.join("cat", &"id-c".into(), Some(&old), l, start())
            .unwrap();
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

    /// The counter a recorded broadcast frame body carries.
    fn counter(body: &[u8]) -> u64 {
        u64::from_be_bytes(body[..8].try_into().unwrap())
    }

    /// Does `key` open the recorded broadcast `body`?
    fn opens(key: &crate::cipher::Key, body: &[u8]) -> bool {
        crate::sealed::BroadcastOpener::new(key, counter(body))
            .open::<BroadcastMessage>(body)
            .is_ok()
    }

    fn rotations_announced(inbox: &Inbox) -> Vec<u64> {
        inbox
            .private
            .iter()
            .filter_map(|m| match m {
                ServerMessage::RoomKey { from_broadcast, .. } => Some(*from_broadcast),
                _ => None,
            })
            .collect()
    }

    /// A member who quits, or whose connection is lost for good, holds no key for anything
    /// from its leave notice on: the key rotates first, and every member still connected
    /// gets the new one right before the first broadcast under it (its inbox opens every
    /// frame, so the switch is at exactly the right place). A rename is no leave.
    #[test]
    fn leaving_for_good_rotates_the_key_before_the_notice_and_the_leaver_gets_none() {
        let mut room = new_room(RoomConfig::default());
        let (la, mut ana) = link(&room, 1, 1000);
        let (lb, mut ben) = link(&room, 2, 1000);
        let (lc, mut cat) = link(&room, 3, 1000);
        room.join("ana", &"id-a".into(), None, la, start()).unwrap();
        room.join("ben", &"id-b".into(), None, lb, start()).unwrap();
        room.join("cat", &"id-c".into(), None, lc, start()).unwrap();
        room.say("ana", 1, 1, "before".into(), start()).unwrap();
        ben.drain();
        let ben_key = ben.keys_seen.last().unwrap().0;
        room.leave("ben", 2, start());
        assert_eq!(room.rotations(), 1);
        room.say("ana", 1, 2, "after".into(), start()).unwrap();
        ana.drain();
        cat.drain();
        ben.drain();
        // Counters: joins 0–2, "before" 3, ben's leave 4, "after" 5.
        assert_eq!(rotations_announced(&ana), [4]);
        assert_eq!(rotations_announced(&cat), [4]);
        assert!(
            rotations_announced(&ben).is_empty(),
            "the leaver gets no key"
        );
        assert!(
            ben.closed,
            "and its stream ends before the new key's broadcasts"
        );
        assert_eq!(ben.texts(), ["before"]);
        assert_eq!(ana.texts(), ["before", "after"]);
        assert_eq!(cat.texts(), ["before", "after"]);
        let new_key = ana.keys_seen.last().unwrap().0;
        assert_ne!(new_key, ben_key);
        for body in &ana.frames {
            let c = counter(body);
            assert_eq!(opens(&ben_key, body), c < 4, "ben's key, broadcast {c}");
            assert_eq!(opens(&new_key, body), c >= 4, "the new key, broadcast {c}");
        }

        // A rename (same client, another nickname) is not a leave: no rotation.
        room.join(
            "Anita",
            &"id-a".into(),
            None,
            link(&room, 4, 1000).0,
            start(),
        )
        .unwrap();
        assert_eq!(room.rotations(), 1);

        // Connections lost for good: one rotation for all who expire together, before
        // their notices; nothing for members within their grace period.
        let t0 = start();
        room.disconnected("cat", 3, t0);
        assert_eq!(room.expire_away(t0.after(Duration::from_secs(1))), 0);
        assert_eq!(room.rotations(), 1, "away, not gone");
        let (ld, mut dan) = link(&room, 5, 1000);
        room.join("dan", &"id-d".into(), None, ld, start()).unwrap();
        room.disconnected("dan", 5, t0);
        assert_eq!(room.expire_away(t0.after(Duration::from_secs(10))), 2);
        assert_eq!(room.rotations(), 2);
        // Its connection is gone (no writer reads the log for it): nothing was queued for it.
        while let Ok(item) = dan.rx.try_recv() {
            assert!(
                !matches!(&item, Outgoing::Session { message, .. } if matches!(**message, ServerMessage::RoomKey { .. })),
                "{item:?}"
            );
        }
    }

    /// The periodic rotation: a key in use (since its first broadcast) for the interval is
    /// replaced; an idle room keeps its key however long it waits.
    #[test]
    fn the_key_rotates_once_in_use_for_the_interval_and_an_idle_room_keeps_it() {
        let interval = Duration::from_secs(300);
        let mut room = new_room(RoomConfig::default());
        let t0 = start();
        assert!(!room.rotate_if_due(t0.after(Duration::from_secs(3600)), interval));
        let (la, mut ana) = link(&room, 1, 1000);
        room.join(
            "ana",
            &"id-a".into(),
            None,
            la,
            t0.after(Duration::from_secs(3600)),
        )
        .unwrap();
        let t1 = t0.after(Duration::from_secs(3600)); // the join notice: first use
        assert!(!room.rotate_if_due(t1.after(interval - Duration::from_millis(1)), interval));
        assert!(room.rotate_if_due(t1.after(interval), interval));
        assert!(
            !room.rotate_if_due(t1.after(interval * 10), interval),
            "the new key sealed nothing yet"
        );
        room.say("ana", 1, 1, "hi".into(), t1.after(interval * 10))
            .unwrap();
        assert!(room.rotate_if_due(t1.after(interval * 11), interval));
        ana.drain();
        assert_eq!(rotations_announced(&ana), [1, 2]);
        assert_eq!(ana.texts(), ["hi"]);
    }

    /// A member whose welcome and replay have not gone out yet, or that is far behind,
    /// still switches keys exactly where the new key starts; one that joins after a
    /// rotation gets the current key in its welcome, and a pong says where the member is.
    #[test]
    fn members_behind_or_mid_replay_switch_keys_at_their_place() {
        let mut room = new_room(RoomConfig::default());
        let (la, mut ana) = link(&room, 1, 10_000);
        room.join("ana", &"id-a".into(), None, la, start()).unwrap();
        for i in 1..=50 {
            room.say("ana", 1, i, format!("m{i}"), start()).unwrap();
        }
        // Ben resumes from the start: a 51-event replay queued, not yet sent.
        let (lb, mut ben) = link(&room, 2, 10_000);
        let resume = Resume {
            epoch: room.epoch().to_owned(),
            last_seq: 0,
        };
        room.join("ben", &"id-b".into(), Some(&resume), lb, start())
            .unwrap();
        room.rotate_key("test");
        for i in 51..=60 {
            room.say("ana", 1, i, format!("m{i}"), start()).unwrap();
            if i == 55 {
                room.reply("ana", 1, ServerMessage::Pong { broadcast_next: 0 })
                    .unwrap();
                room.reply("ben", 2, ServerMessage::Pong { broadcast_next: 0 })
                    .unwrap();
            }
        }
        room.rotate_key("test");
        room.say("ana", 1, 61, "m61".into(), start()).unwrap();
        let (lc, mut cat) = link(&room, 3, 10_000);
        room.join("cat", &"id-c".into(), None, lc, start()).unwrap();
        room.say("ana", 1, 62, "m62".into(), start()).unwrap();
        ana.drain(); // ana, far behind, reads it all only now
        ben.drain();
        cat.drain();
        // Counters: ana's join 0, m1–m50 1–50, ben's join 51, m51–m60 52–61, m61 62, cat's
        // join 63, m62 64.
        assert_eq!(rotations_announced(&ana), [52, 62]);
        assert_eq!(rotations_announced(&ben), [52, 62]);
        assert!(rotations_announced(&cat).is_empty());
        let all: Vec<String> = (1..=62).map(|i| format!("m{i}")).collect();
        assert_eq!(ana.texts(), all);
        assert_eq!(ben.texts(), all, "replayed, then live, each once");
        let current = ana.keys_seen.last().unwrap();
        assert_eq!(
            cat.keys_seen,
            [(current.0, 63)],
            "the welcome's key is the current one"
        );
        // Both pongs went out after m55 (counter 56) and before m56.
        assert_eq!(ana.pongs, [57]);
        assert_eq!(ben.pongs, [57]);
    }
}
