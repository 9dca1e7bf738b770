//! Typed chat messages carried inside encrypted frames, encoded as JSON objects with a `type`
//! tag. Nothing is ever parsed out of free text: a nickname or message containing `|`, `:`,
//! quotes, newlines or markup is a JSON string like any other.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::text::{MessageTextError, NickError};

/// A client sends at most one `typing` notice per interval while its user types; the server
/// relays at most one per member per half interval (so jitter on the way never drops one).
pub const TYPING_NOTICE_INTERVAL: Duration = Duration::from_secs(2);

/// The most `say` messages a client may have unacknowledged: the largest `send_window` a
/// server announces in `welcome`, and the cap a client applies to whatever it is told.
pub const MAX_SEND_WINDOW: u32 = 64;

/// Identifies one running server's in-memory room. A restarted server has a new epoch, which
/// tells clients that the sequence numbers they remember mean nothing any more.
pub type Epoch = String;

/// A client's secret, random identity across reconnects (32 hex digits). It lets a client take
/// its own nickname back from a stale session, and keys duplicate suppression. Never broadcast.
pub type ClientId = String;

/// Shortest and longest client id, in bytes.
pub const CLIENT_ID_BYTES: std::ops::RangeInclusive<usize> = 16..=64;

/// Is `id` a client id the server accepts: 16 to 64 ASCII letters, digits, `_` or `-`?
pub fn is_valid_client_id(id: &str) -> bool {
    CLIENT_ID_BYTES.contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where a reconnecting client left off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub epoch: Epoch,
    /// The highest room sequence number the client has seen.
    pub last_seq: u64,
}

/// Client → server, sealed with the client's session key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter the room (again). Answered by `welcome` or `nick_rejected`.
    Join {
        nick: String,
        client_id: ClientId,
        resume: Option<Resume>,
    },
    /// A chat message. `id` is the client's own increasing message id.
    Say { id: u64, text: String },
    /// Keep-alive; answered by `pong`.
    Ping,
    /// The user is typing; relayed to the room as an ephemeral `typing` broadcast.
    Typing,
    /// Leave the room now (no grace period) and close.
    Leave,
    /// Page back through history: up to `limit` events before `before_seq`, answered by `older`.
    Older { before_seq: u64, limit: u32 },
    /// A `type` this version does not know, named (`what`, at most
    /// [`MAX_UNSUPPORTED_TYPE_BYTES`] bytes): answered by `unsupported`, the connection stays
    /// open. Never sent.
    #[serde(skip)]
    Unsupported { what: String },
    /// Any `type` this version does not know (a newer client's), as serde decodes it;
    /// [`decode_client_message`] turns it into `Unsupported`. Never sent.
    #[serde(other)]
    Unknown,
}

/// Decode a client message; one of a `type` this version does not know is `Unsupported`.
pub fn decode_client_message(json: &[u8]) -> Result<ClientMessage, serde_json::Error> {
    match serde_json::from_slice(json)? {
        ClientMessage::Unknown => Ok(ClientMessage::Unsupported {
            what: message_type(json).unwrap_or_default(),
        }),
        message => Ok(message),
    }
}

/// The most bytes of an unknown message `type` the server repeats in `unsupported`.
pub const MAX_UNSUPPORTED_TYPE_BYTES: usize = 32;

/// The `type` of a JSON message, cut to at most [`MAX_UNSUPPORTED_TYPE_BYTES`] bytes (at a
/// character boundary): what an `unsupported` reply names. `None` if there is no string `type`.
pub fn message_type(json: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tagged<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let tagged: Tagged = serde_json::from_slice(json).ok()?;
    let mut end = tagged.kind.len().min(MAX_UNSUPPORTED_TYPE_BYTES);
    while !tagged.kind.is_char_boundary(end) {
        end -= 1;
    }
    Some(tagged.kind[..end].to_owned())
}

/// Why someone left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They said goodbye.
    Quit,
    /// Their connection dropped and they did not come back within the grace period.
    ConnectionLost,
    /// They took another nickname from the same client.
    Renamed,
}

/// Something that happened in the room, numbered by the room sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub seq: u64,
    /// Server time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: RoomEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEventKind {
    /// `msg_id` is the sender's own message id, so the sender can match it to its outbox;
    /// `author` is the sender's [`author_tag`](crate::author::author_tag), so the sender (and
    /// no one else) can tell the message is its own. Empty in events stored before it existed.
    Message {
        from: String,
        text: String,
        msg_id: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        author: String,
    },
    Join {
        nick: String,
    },
    Leave {
        nick: String,
        reason: LeaveReason,
    },
}

/// Error codes the server sends before closing a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A frame from the client failed its integrity check (tampered, replayed or reordered).
    Integrity,
    /// The client broke the protocol (bad frame, unknown message, message before join…).
    Protocol,
    /// The client did not read fast enough and its send queue filled up.
    SlowConsumer,
    /// The client was too slow to complete the handshake or to join.
    Timeout,
    /// The same client connected again; this older connection is replaced.
    Replaced,
    /// The server is shutting down; reconnect later.
    ShuttingDown,
    /// The server could not store a message (e.g. disk full); it was not acked. Reconnect and resend.
    Storage,
    /// The client kept sending faster than the room's flood limit after being slowed down.
    Flood,
}

fn default_send_window() -> u32 {
    32
}

/// Server → client, sealed with the server's session key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// You are in. Broadcast frames follow with counters `next_broadcast`, `next_broadcast + 1`, …
    Welcome {
        nick: String,
        epoch: Epoch,
        /// The room broadcast key, hex. Shared by all members of this room epoch.
        room_key: String,
        next_broadcast: u64,
        /// Sequence number of the newest room event at the time of joining.
        head_seq: u64,
        /// Members present (or within their reconnect grace period) as of `head_seq`.
        online: Vec<String>,
        /// The highest of your message ids already in the room: everything up to it is acked.
        acked_up_to: u64,
        /// `true` when the epoch you resumed from is gone (server restarted): forget old sequence numbers.
        resync: bool,
        /// `true` when history you missed was older than what the server keeps.
        gap: bool,
        /// `true` when you took over your own earlier session (no join notice was sent).
        resumed: bool,
        /// The oldest event the room still keeps; older history can be paged back to it.
        #[serde(default)]
        oldest_seq: u64,
        /// Send at most this many messages ahead of the acks (the server's flood queue holds
        /// them); more would get you disconnected for flooding.
        #[serde(default = "default_send_window")]
        send_window: u32,
    },
    /// More members present as of the welcome's `head_seq`, when its `online` list did not fit
    /// one frame. Follows the welcome directly, before anything else.
    MoreOnline { online: Vec<String> },
    /// Room events you missed (or the recent backlog), oldest first, all with `seq <= head_seq`.
    History { events: Vec<RoomEvent> },
    /// A page of older history answering `older`, oldest first, all with `seq < before_seq`.
    /// `more`: even older events exist.
    Older {
        before_seq: u64,
        events: Vec<RoomEvent>,
        more: bool,
    },
    /// Your messages up to and including `up_to` are in the room (cumulative).
    Ack { up_to: u64 },
    /// The join was refused; send another `join` on this same connection.
    NickRejected { nick: String, reason: NickError },
    /// A message you sent was refused and will not be delivered.
    MessageRejected { id: u64, reason: MessageTextError },
    /// Answers `ping`. `broadcast_next`: the counter of the next broadcast frame this
    /// connection gets after this pong (filled in by the connection's writer from its own
    /// place in the stream); a client that expects a lower one has had broadcasts dropped on
    /// the way. 0 before the connection has joined (the client ignores it then).
    Pong { broadcast_next: u64 },
    /// The room broadcast key changed: broadcasts with counter ≥ `from_broadcast` are sealed
    /// with `room_key` (hex, 32 bytes). Sent to every member before the first broadcast
    /// under the new key.
    RoomKey {
        room_key: String,
        from_broadcast: u64,
    },
    /// The client sent a message `type` this server does not know (`what`: that type, at most
    /// [`MAX_UNSUPPORTED_TYPE_BYTES`] bytes); it was ignored and the connection stays open.
    Unsupported { what: String },
    /// The server closes the connection after this.
    Error { code: ErrorCode, message: String },
    /// Any `type` this client does not know (a newer server's): logged and ignored. Never sent.
    #[serde(other)]
    Unknown,
}

/// Sealed once with the room broadcast key and written identically to every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BroadcastMessage {
    Event(RoomEvent),
    /// `nick` is typing. Ephemeral: no sequence number, not in history, never replayed.
    Typing {
        nick: String,
    },
    /// Any `type` this client does not know (a newer server's): ignored. Never sent.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_markup_are_plain_strings() {
        let msg = ClientMessage::Say {
            id: 3,
            text: "a|b:c \"q\"\n<script>".into(),
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"type":"say","id":3,"text":"a|b:c \"q\"\n<script>"}"#
        );
        assert_eq!(serde_json::from_str::<ClientMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn client_ids_are_16_to_64_ascii_word_characters() {
        assert!(is_valid_client_id(&"0123456789abcdef".repeat(2)));
        assert!(is_valid_client_id(&"A_-z".repeat(4)));
        assert!(is_valid_client_id(&"x".repeat(64)));
        assert!(!is_valid_client_id(&"x".repeat(15)));
        assert!(!is_valid_client_id(&"x".repeat(65)));
        assert!(!is_valid_client_id(&"ñ".repeat(8)), "16 bytes, not ASCII");
        assert!(!is_valid_client_id("0123456789abcde "));
        assert!(!is_valid_client_id("0123456789abcde\n"));
    }

    #[test]
    fn types_of_a_newer_version_decode_as_unknown_not_as_errors() {
        let json = br#"{"type":"reaction","emoji":"x","to":3}"#;
        assert_eq!(
            decode_client_message(json).unwrap(),
            ClientMessage::Unsupported {
                what: "reaction".into()
            }
        );
        let long = format!(r#"{{"type":"{}"}}"#, "é".repeat(100));
        let ClientMessage::Unsupported { what } = decode_client_message(long.as_bytes()).unwrap()
        else {
            panic!("not unsupported")
        };
        assert_eq!(what, "é".repeat(16), "cut at a character boundary");
        assert!(decode_client_message(br#"{"type":"say","id":"x"}"#).is_err());
        assert!(decode_client_message(br#"{"type":7}"#).is_err());
        assert_eq!(
            serde_json::from_slice::<ServerMessage>(json).unwrap(),
            ServerMessage::Unknown
        );
        assert_eq!(
            serde_json::from_slice::<BroadcastMessage>(json).unwrap(),
            BroadcastMessage::Unknown
        );
        assert!(
            serde_json::to_string(&ClientMessage::Unsupported { what: "x".into() }).is_err(),
            "never sent"
        );
    }

    #[test]
    fn event_encoding_is_flat() {
        let event = RoomEvent {
            seq: 9,
            time_ms: 1000,
            kind: RoomEventKind::Leave {
                nick: "ana".into(),
                reason: LeaveReason::ConnectionLost,
            },
        };
        let json = serde_json::to_string(&BroadcastMessage::Event(event.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"type":"event","seq":9,"time_ms":1000,"kind":"leave","nick":"ana","reason":"connection_lost"}"#
        );
        assert_eq!(
            serde_json::from_str::<BroadcastMessage>(&json).unwrap(),
            BroadcastMessage::Event(event)
        );
    }

    #[test]
    fn room_key_and_pong_encoding() {
        let key = ServerMessage::RoomKey {
            room_key: "ab".repeat(32),
            from_broadcast: 7,
        };
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"type":"room_key","room_key":"{}","from_broadcast":7}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), key);
        let pong = ServerMessage::Pong { broadcast_next: 42 };
        let json = serde_json::to_string(&pong).unwrap();
        assert_eq!(json, r#"{"type":"pong","broadcast_next":42}"#);
        assert_eq!(serde_json::from_str::<ServerMessage>(&json).unwrap(), pong);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"say","id":-1,"text":"x"}"#).is_err()
        );
        assert!(serde_json::from_str::<ClientMessage>("not json").is_err());
    }
}
