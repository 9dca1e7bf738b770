//! What the client reports ([`ClientEvent`]) and how its calls fail ([`SendError`]).
//!
//! The same events feed the terminal client (`--json` prints them one per line) and the
//! desktop app, so they are serializable and self-describing (`"type": "message"`, …).

use serde::Serialize;
use thiserror::Error;

use super::outbox::OutboxError;
use crate::message::LeaveReason;
use crate::text::{MessageTextError, NickError};

/// Broad classes of errors, for programs reacting to [`ClientEvent::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The server refused the passphrase on [`PASSPHRASE_VERDICTS`](super::PASSPHRASE_VERDICTS)
    /// fresh connections in a row. Not retried.
    WrongPassphrase,
    /// The room refused the passphrase (its handshake reply failed its check, or a
    /// `Reject(1)`), fewer times than it takes to believe it: it could be someone in the middle,
    /// or forged. Checking again with backoff; from the 4th failing reply at the address, with an
    /// extra wait (`retry_after_secs` on the event) that doubles up to 60 s.
    PassphraseRefused,
    /// The room's handshake reply failed its check although this passphrase already completed
    /// a handshake with this salt at the address in this process: not a wrong passphrase, so
    /// someone may be interfering. Reconnecting, slowed down like
    /// [`ErrorKind::PassphraseRefused`]; never counted towards the wrong-passphrase stop.
    HandshakeTampered,
    /// The host presented another identity than the one pinned for this address (or than the
    /// invite code's / the one the user accepted): `pinned_fingerprint` and
    /// `presented_fingerprint` on the event. Nothing was sent to it. Not retried; accepting
    /// the new identity is the user's deliberate choice (`tertulia-chat --accept-new-host`).
    HostIdentityChanged,
    /// The room speaks only protocol versions newer than this program's: "this room needs a
    /// newer Tertulia". Believed on the 3rd in a row (the Hello is unauthenticated), then not
    /// retried.
    NeedsNewer,
    /// The host runs an older Tertulia whose protocol this program no longer speaks. Believed
    /// on the 3rd in a row, then not retried.
    HostOutdated,
    /// The known-hosts file (the pinned host identities) cannot be read or written.
    KnownHosts,
    /// The room at this address offered a different salt than before: the server restarted as
    /// a new room, or someone on the network altered it. Reconnecting; the handshake decides.
    RoomChanged,
    /// Too many failed handshakes from this network: the server refuses it for a while
    /// (`retry_after_secs` on the event). Waiting that long, then reconnecting.
    TooManyFailedAttempts,
    /// Received data failed authentication (tampered, replayed, reordered). Reconnecting.
    Integrity,
    /// The server reported that data from this client failed authentication. Reconnecting.
    IntegrityReportedByServer,
    /// Could not reach the server, or the connection broke. Reconnecting.
    Network,
    /// The peer broke the protocol. Reconnecting.
    Protocol,
    /// The address does not answer like a Tertulia server, on
    /// [`PASSPHRASE_VERDICTS`](super::PASSPHRASE_VERDICTS) fresh connections in a row (before
    /// that: [`ErrorKind::Protocol`], retried). Not retried.
    NotTertulia,
    /// The server is at its connection limit. Reconnecting.
    ServerFull,
    /// The server is shutting down. Reconnecting.
    ServerShuttingDown,
    /// The server cut this client off for not reading fast enough. Reconnecting.
    SlowConsumer,
    /// The server could not store a message (disk full, database error). Reconnecting; the
    /// message stays in the outbox.
    ServerStorage,
    /// The passphrase itself is unusable (empty, too long). Not retried.
    BadPassphrase,
    /// The server cut this client off for sending faster than the room's flood limit.
    /// Reconnecting; unacknowledged messages are resent.
    Flood,
}

/// Which way a file transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferDirection {
    /// This client sends a file to the room.
    Upload,
    /// This client fetches a file from the room.
    Download,
}

/// Why a transfer ended without the file arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFailure {
    /// Larger than the host takes (`message` names its limit).
    TooLarge,
    /// The host has no room for it.
    NoSpace,
    /// What arrived did not have the announced SHA-256, again after retrying.
    Corrupt,
    /// The host holds the most unfinished uploads it allows from this client or network.
    Busy,
    /// The host takes no files.
    Disabled,
    /// The host no longer keeps the file (or never had it).
    Gone,
    /// The user cancelled it.
    Cancelled,
    /// The local file could not be read or written (`message` says why).
    Io,
    /// Not fetched: the folder's filesystem would be left with less free space than the
    /// client keeps (`ClientConfig::min_free_bytes`; `message` says how much there is).
    LocalSpace,
    /// The host refused it for a reason this version does not know.
    Refused,
}

/// Why the client stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The user disconnected.
    Quit,
    WrongPassphrase,
    /// `give_up_after` attempts failed in a row.
    GaveUp,
    /// A non-retryable error (see the preceding `error` event).
    Fatal,
}

/// What the client reports. Serialized with a `type` tag, e.g. `{"type":"message",…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Connection attempt `attempt` (1 = first after start or after being connected).
    Connecting { attempt: u32, addr: String },
    /// In the room. `room_reset`: the server restarted without its history; earlier sequence
    /// numbers are void. `gap`: some missed history was no longer available.
    Connected {
        nick: String,
        /// The host's identity fingerprint, as authenticated by the handshake and checked
        /// against the pin (e.g. `3f2a-91c0-5b7e-0d44-a1c9-77e2`).
        host_fingerprint: String,
        epoch: String,
        resumed: bool,
        room_reset: bool,
        gap: bool,
        /// The oldest event the room keeps: when it is older than the oldest event shown,
        /// [`ClientHandle::load_older`](super::ClientHandle::load_older) can page back to it.
        oldest_seq: u64,
    },
    /// A page of older history (answering [`ClientHandle::load_older`](super::ClientHandle::load_older)), oldest first, all
    /// older than anything reported before: `message`, `join` and `leave` events exactly as
    /// live ones are reported (with `history: true`). `more`: the room has even older events.
    Older {
        events: Vec<ClientEvent>,
        more: bool,
    },
    /// The nickname was refused; call [`ClientHandle::set_nick`](super::ClientHandle::set_nick) to try another.
    NickRejected {
        nick: String,
        reason: NickError,
        message: String,
    },
    /// The live online list, sent after connecting and on every change.
    Online { members: Vec<String> },
    /// A chat message. `own`: sent by this client, `msg_id` is then the id [`ClientHandle::send`](super::ClientHandle::send)
    /// returned. `history`: part of the backlog or a replay, not live.
    Message {
        seq: u64,
        time_ms: u64,
        from: String,
        text: String,
        own: bool,
        msg_id: Option<u64>,
        history: bool,
    },
    Join {
        seq: u64,
        time_ms: u64,
        nick: String,
        history: bool,
    },
    Leave {
        seq: u64,
        time_ms: u64,
        nick: String,
        reason: LeaveReason,
        history: bool,
    },
    /// These messages of ours are in the room.
    Acked { ids: Vec<u64> },
    /// A file shared in the room (live, or in the backlog/replay with `history`): fetch it
    /// with [`ClientHandle::fetch_file`](super::ClientHandle::fetch_file). `name` is already
    /// a safe name; `mime` is only the sender's hint (decide by the bytes); `sha256` is hex.
    /// `own`: sent by this client, `upload_id` is then the id
    /// [`ClientHandle::send_file`](super::ClientHandle::send_file) returned.
    FileOffered {
        seq: u64,
        time_ms: u64,
        from: String,
        file_id: u64,
        name: String,
        size: u64,
        mime: String,
        sha256: String,
        own: bool,
        upload_id: Option<u64>,
        history: bool,
    },
    /// A transfer moved on: `done` of `size` bytes (uploads: stored by the host; downloads:
    /// received and checked chunk by chunk). `id` is the upload id or the file id. Reported
    /// at most every 1 % or so, and when a transfer starts or resumes.
    FileProgress {
        direction: TransferDirection,
        id: u64,
        name: String,
        done: u64,
        size: u64,
    },
    /// Our upload `upload_id` is in the room as `file_id` (its `file_offered` event follows or
    /// came already).
    FileSent {
        upload_id: u64,
        file_id: u64,
        seq: u64,
    },
    /// A file arrived whole and its SHA-256 matched the room's: saved at `path`, or (fetched
    /// into memory) in `bytes`, which is not serialized.
    FileReceived {
        file_id: u64,
        name: String,
        size: u64,
        sha256: String,
        path: Option<String>,
        #[serde(skip)]
        bytes: Option<std::sync::Arc<[u8]>>,
    },
    /// A transfer ended without the file: `id` is the upload id or the file id.
    FileFailed {
        direction: TransferDirection,
        id: u64,
        name: String,
        reason: FileFailure,
        message: String,
    },
    /// The server refused one of our messages; it will not be delivered.
    MessageRejected {
        id: u64,
        reason: MessageTextError,
        message: String,
    },
    Error {
        kind: ErrorKind,
        message: String,
        /// For [`ErrorKind::TooManyFailedAttempts`]: seconds until the server accepts this
        /// network again (the client waits that long).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
        /// For [`ErrorKind::HostIdentityChanged`]: the fingerprint this client trusts for the
        /// address (pinned, or expected from the invite code / `--accept-new-host`).
        #[serde(skip_serializing_if = "Option::is_none")]
        pinned_fingerprint: Option<String>,
        /// For [`ErrorKind::HostIdentityChanged`]: the fingerprint the host presented.
        #[serde(skip_serializing_if = "Option::is_none")]
        presented_fingerprint: Option<String>,
    },
    /// Someone else is typing (sent at most about once a second per person while they type;
    /// show it for a few seconds).
    Typing { nick: String },
    /// Waiting `delay_ms` before connection attempt `attempt`.
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
        reason: String,
    },
    /// While waiting to reconnect: whole seconds left before attempt `attempt` (sent each second
    /// when the wait is a second or longer).
    Countdown { attempt: u32, remaining_secs: u64 },
    /// The client stopped; no more events follow.
    Disconnected {
        reason: DisconnectReason,
        message: String,
    },
}

impl ClientEvent {
    /// The event as JSON for readers whose numbers are doubles (JavaScript): as it
    /// serializes, but with file ids as decimal strings. They are random u64s
    /// (`docs/PROTOCOL.md` §13), which a double rounds above 2^53. Upload ids (the client's own
    /// small counter) stay numbers.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        file_ids_as_text(&mut value);
        value
    }
}

fn file_ids_as_text(value: &mut serde_json::Value) {
    let as_text = |v: &mut serde_json::Value, field: &str| {
        if let Some(n) = v.get(field).and_then(serde_json::Value::as_u64) {
            v[field] = serde_json::Value::String(n.to_string());
        }
    };
    match value.get("type").and_then(serde_json::Value::as_str) {
        Some("file_offered" | "file_sent" | "file_received") => as_text(value, "file_id"),
        Some("file_progress" | "file_failed") if value["direction"] == "download" => {
            as_text(value, "id");
        }
        Some("older") => {
            if let Some(events) = value
                .get_mut("events")
                .and_then(serde_json::Value::as_array_mut)
            {
                events.iter_mut().for_each(file_ids_as_text);
            }
        }
        _ => {}
    }
}

/// Errors from [`ClientHandle`](super::ClientHandle) calls.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SendError {
    #[error(transparent)]
    InvalidText(#[from] MessageTextError),
    #[error(transparent)]
    InvalidNick(#[from] NickError),
    #[error(transparent)]
    OutboxFull(#[from] OutboxError),
    #[error("already in the room; the nickname can only be changed before joining")]
    AlreadyJoined,
    #[error("the client has stopped")]
    Stopped,
    /// A file cannot be sent or fetched.
    #[error(transparent)]
    File(#[from] FileRequestError),
}

/// Why [`ClientHandle::send_file`](super::ClientHandle::send_file),
/// [`send_file_bytes`](super::ClientHandle::send_file_bytes) or
/// [`fetch_file`](super::ClientHandle::fetch_file) refused a request at once.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FileRequestError {
    /// The file cannot be read (`reason`: the system's words).
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{path} has no file name")]
    NoName { path: String },
    /// No file with this id has been seen in the room.
    #[error("no file {file_id} in this room")]
    UnknownFile { file_id: u64 },
    #[error("file {file_id} is already being fetched")]
    AlreadyFetching { file_id: u64 },
    #[error("too many uploads queued (at most {max})")]
    TooManyUploads { max: usize },
    #[error("too many downloads queued (at most {max})")]
    TooManyDownloads { max: usize },
    /// Too many bytes of [`send_file_bytes`](super::ClientHandle::send_file_bytes) waiting.
    #[error("too many bytes waiting to be sent from memory (at most {max_mib} MiB)")]
    MemoryFull { max_mib: u64 },
}
