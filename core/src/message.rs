//! Typed chat messages carried inside encrypted frames, encoded with `postcard` as
//! `varint(type) ‖ fields in order` (`docs/PROTOCOL.md` §6, which gives every type number and
//! field). The serde derives below *are* that encoding: variant order is the type number, field
//! order the wire order, so new variants and fields go at the end. Nothing is parsed out of
//! free text: a nickname or message containing `|`, `:`, quotes or markup is a string like any
//! other. Forward compatibility: unknown types decode as `Unknown`/`Unsupported`, unknown
//! enum values as `Other`, and trailing bytes (fields a newer version appended) are ignored.

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

/// A SHA-256 digest: 32 raw bytes on the wire.
pub type Sha256 = [u8; 32];

/// Client → server, sealed with the client's session key. Type numbers 0–10 in order. (The
/// snake-case names only show in human-readable formats: the JSON of the test vectors.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// Start or resume upload `upload_id` (the client's own increasing number, from 1) of a
    /// file of `size` bytes whose SHA-256 is `sha256`. Answered by `file_accepted`,
    /// `file_refused` or (already in the room) `file_done` (`docs/PROTOCOL.md` §13).
    FileOffer {
        upload_id: u64,
        name: String,
        size: u64,
        mime: String,
        sha256: Sha256,
    },
    /// The chunk of the active upload at `offset` (a multiple of
    /// [`CHUNK_BYTES`](crate::files::CHUNK_BYTES)).
    FileChunk {
        upload_id: u64,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Drop upload `upload_id` and whatever the host holds of it. No answer.
    FileCancel { upload_id: u64 },
    /// Download file `file_id` from `offset` on: answered by `file_begin` and chunk frames,
    /// or `file_missing`. Replaces the connection's download in progress.
    FileGet { file_id: u64, offset: u64 },
    /// Stop downloading `file_id`.
    FileStop { file_id: u64 },
    // New client messages go here, before the two below (which are never sent).
    /// A type number this version does not know (`what`): answered by `unsupported`, the
    /// connection stays open. Never sent.
    #[serde(skip)]
    Unsupported { what: u64 },
    /// Any type number this version does not know (a newer client's), as serde decodes it;
    /// [`decode_client_message`] turns it into `Unsupported`. Never sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// Decode a client message. One of a type number this version does not know (a newer
/// client's) is `Unsupported { what: N }`; bytes after the fields this version knows (fields a
/// newer version appended) are ignored.
pub fn decode_client_message(bytes: &[u8]) -> Result<ClientMessage, postcard::Error> {
    let what = type_number(bytes)?;
    if what > u64::from(u32::MAX) {
        // Beyond any variant index postcard reads (a u32): certainly not one we know.
        return Ok(ClientMessage::Unsupported { what });
    }
    match decode(bytes)? {
        ClientMessage::Unknown => Ok(ClientMessage::Unsupported { what }),
        message => Ok(message),
    }
}

/// Decode a server message; one of a type number this version does not know (a newer
/// server's) is `Unknown`, to be logged and ignored.
pub fn decode_server_message(bytes: &[u8]) -> Result<ServerMessage, postcard::Error> {
    match type_number(bytes)? > u64::from(u32::MAX) {
        true => Ok(ServerMessage::Unknown),
        false => decode(bytes),
    }
}

/// Decode a broadcast; one of a type number this version does not know is `Unknown`.
pub fn decode_broadcast_message(bytes: &[u8]) -> Result<BroadcastMessage, postcard::Error> {
    match type_number(bytes)? > u64::from(u32::MAX) {
        true => Ok(BroadcastMessage::Unknown),
        false => decode(bytes),
    }
}

/// Decode a message of any of the three kinds, ignoring trailing bytes (§6: a newer version
/// may append fields). A server or broadcast message of an unknown type decodes as `Unknown`.
pub fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, postcard::Error> {
    postcard::take_from_bytes(bytes).map(|(value, _rest)| value)
}

/// Encode a message (postcard, §6).
pub fn encode(message: &impl Serialize) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(message)
}

/// The exact encoded length of a message, without building it.
pub fn encoded_len(message: &(impl Serialize + ?Sized)) -> Result<usize, postcard::Error> {
    postcard::experimental::serialized_size(message)
}

/// Bytes `event` takes inside a `history` or `older` message: the length of its encoding as
/// a varint, then the encoding.
pub fn history_entry_len(event: &RoomEvent) -> Result<usize, postcard::Error> {
    let len = encoded_len(event)?;
    Ok(varint_len(len as u64) + len)
}

/// Bytes of `n` as a LEB128 varint.
pub fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The type number a message starts with (a varint).
pub fn type_number(bytes: &[u8]) -> Result<u64, postcard::Error> {
    decode::<u64>(bytes)
}

/// Why someone left. On the wire a varint, 0–2 in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They said goodbye.
    Quit,
    /// Their connection dropped and they did not come back within the grace period.
    ConnectionLost,
    /// They took another nickname from the same client.
    Renamed,
    /// A reason a newer server gives that this version does not know: shown as a plain
    /// "left". Never sent.
    #[serde(other, skip_serializing)]
    Other,
}

/// Something that happened in the room, numbered by the room sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub seq: u64,
    /// Server time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub kind: RoomEventKind,
}

/// What a [`RoomEvent`] is: on the wire a varint, 0–3 in order, then its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomEventKind {
    /// `msg_id` is the sender's own message id, so the sender can match it to its outbox;
    /// `author` is the sender's [`author_tag`](crate::author::author_tag), so the sender (and
    /// no one else) can tell the message is its own. Empty in events stored before it existed.
    Message {
        from: String,
        text: String,
        msg_id: u64,
        author: String,
    },
    Join {
        nick: String,
    },
    Leave {
        nick: String,
        reason: LeaveReason,
    },
    /// A file a member shared, kept by the host as `file_id` (fetch it with `file_get`).
    /// `name` is a safe name (`docs/PROTOCOL.md` §13); `mime` only the sender's hint.
    /// `upload_id` and `author` let the sender recognise its own upload, as for messages.
    File {
        from: String,
        file_id: u64,
        name: String,
        size: u64,
        mime: String,
        sha256: Sha256,
        upload_id: u64,
        author: String,
    },
    /// A kind of event a newer server sends that this version does not know: it takes its
    /// place in the numbering (its `seq` counts as seen) and is not shown. Never sent.
    #[serde(other, skip_serializing)]
    Other,
}

/// Error codes the server sends before closing a connection. On the wire a varint, 0–7 in order.
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
    /// A code a newer server sends that this version does not know: treated as a server error
    /// worth reconnecting after (its `message` is shown). Never sent.
    #[serde(other, skip_serializing)]
    Other,
}

/// The room broadcast key: 32 raw bytes on the wire.
pub type RoomKey = [u8; 32];

/// Why the host refused a file offer. On the wire a varint, 0–5 in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRefusal {
    /// Larger than the host's per-file limit.
    TooLarge,
    /// It would not fit the room's file quota even after older files gave way, or the disk is full.
    NoSpace,
    /// What arrived did not have the announced SHA-256: discarded; the sender may start again.
    Corrupt,
    /// This client, or its address, holds the most unfinished uploads allowed.
    Busy,
    /// The offer itself is unusable (`upload_id` 0).
    BadOffer,
    /// The host takes no files.
    Disabled,
    /// A reason a newer server gives that this version does not know. Never sent.
    #[serde(other, skip_serializing)]
    Other,
}

/// Why a file cannot be downloaded. On the wire a varint, 0–1 in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMissingReason {
    /// No such file in this room.
    Unknown,
    /// The host no longer keeps it (retention, the quota), or never finished storing it.
    Gone,
    /// A reason a newer server gives that this version does not know. Never sent.
    #[serde(other, skip_serializing)]
    Other,
}

/// Server → client, sealed with the server's session key. Type numbers 0–16 in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMessage {
    /// You are in. Broadcast frames follow with counters `next_broadcast`, `next_broadcast + 1`, …
    Welcome {
        nick: String,
        epoch: Epoch,
        /// The room broadcast key. Shared by all members of this room epoch.
        room_key: RoomKey,
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
        oldest_seq: u64,
        /// Send at most this many messages ahead of the acks (the server's flood queue holds
        /// them); more would get you disconnected for flooding.
        send_window: u32,
    },
    /// More members present as of the welcome's `head_seq`, when its `online` list did not fit
    /// one frame. Follows the welcome directly, before anything else.
    MoreOnline { online: Vec<String> },
    /// Room events you missed (or the recent backlog), oldest first, all with `seq <= head_seq`.
    History {
        #[serde(with = "event_list")]
        events: Vec<RoomEvent>,
    },
    /// A page of older history answering `older`, oldest first, all with `seq < before_seq`.
    /// `more`: even older events exist.
    Older {
        before_seq: u64,
        #[serde(with = "event_list")]
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
    /// The client sent a message type this server does not know (`what`: its type number); it
    /// was ignored and the connection stays open.
    Unsupported { what: u64 },
    /// The server closes the connection after this.
    Error { code: ErrorCode, message: String },
    /// The room broadcast key changed: broadcasts with counter ≥ `from_broadcast` are sealed
    /// with `room_key`. Sent to every member before the first broadcast under the new key.
    RoomKey {
        room_key: RoomKey,
        from_broadcast: u64,
    },
    /// The offer is accepted: the host holds `have` bytes of it already; send chunks from
    /// there, at most `window` chunks beyond the last `have` told.
    FileAccepted {
        upload_id: u64,
        have: u64,
        window: u32,
    },
    /// Upload progress: the host has stored `have` bytes (cumulative).
    FileStored { upload_id: u64, have: u64 },
    /// The offer (or, with `Corrupt`, the finished upload) was refused; nothing is kept.
    FileRefused {
        upload_id: u64,
        reason: FileRefusal,
        message: String,
    },
    /// The file is in the room as `file_id`, event `seq` (both 0: it already was).
    FileDone {
        upload_id: u64,
        file_id: u64,
        seq: u64,
    },
    /// Answers `file_get`: chunk frames of `file_id` from `offset` on follow, sealed with `key`.
    FileBegin {
        file_id: u64,
        size: u64,
        offset: u64,
        key: RoomKey,
    },
    /// Answers `file_get`: the file cannot be had.
    FileMissing {
        file_id: u64,
        reason: FileMissingReason,
    },
    // New server messages go here (type 17 on).
    /// Any type number this client does not know (a newer server's): logged and ignored.
    /// Never sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// Sealed once with the room broadcast key and written identically to every member. Type
/// numbers 0–1 in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastMessage {
    Event(RoomEvent),
    /// `nick` is typing. Ephemeral: no sequence number, not in history, never replayed.
    Typing {
        nick: String,
    },
    /// Any type number this client does not know (a newer server's): ignored. Never sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// The events of `history` and `older`: a sequence of byte strings, each one encoded
/// [`RoomEvent`], so an event a newer server extends (fields appended) still decodes. (In a
/// human-readable format, the JSON of the test vectors, a plain list of events.)
mod event_list {
    use serde::de::{SeqAccess, Visitor};
    use serde::ser::{Error as _, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::RoomEvent;

    pub fn serialize<S: Serializer>(
        events: &[RoomEvent],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return events.serialize(serializer);
        }
        let mut seq = serializer.serialize_seq(Some(events.len()))?;
        for event in events {
            let bytes = super::encode(event).map_err(S::Error::custom)?;
            seq.serialize_element(&Entry(&bytes))?;
        }
        seq.end()
    }

    /// One event's encoding, written as a byte string.
    struct Entry<'a>(&'a [u8]);

    impl serde::Serialize for Entry<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// One event read from its byte string.
    struct Decoded(RoomEvent);

    impl<'de> serde::Deserialize<'de> for Decoded {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Bytes;
            impl Visitor<'_> for Bytes {
                type Value = Decoded;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an encoded room event as a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Decoded, E> {
                    super::decode(bytes).map(Decoded).map_err(E::custom)
                }
            }
            deserializer.deserialize_bytes(Bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<RoomEvent>, D::Error> {
        if deserializer.is_human_readable() {
            return Vec::<RoomEvent>::deserialize(deserializer);
        }
        struct Events;
        impl<'de> Visitor<'de> for Events {
            type Value = Vec<RoomEvent>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of encoded room events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<RoomEvent>, A::Error> {
                // Not preallocated from the peer's count: the events' bytes bound the list.
                let mut events = Vec::new();
                while let Some(Decoded(event)) = seq.next_element()? {
                    events.push(event);
                }
                Ok(events)
            }
        }
        deserializer.deserialize_seq(Events)
    }
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
        let bytes = encode(&msg).unwrap();
        let mut expected = vec![1, 3, 18];
        expected.extend_from_slice(b"a|b:c \"q\"\n<script>");
        assert_eq!(bytes, expected, "type 1, id 3, text: length 18 then UTF-8");
        assert_eq!(decode_client_message(&bytes).unwrap(), msg);
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
        // Type 11 (a newer client's `reaction`, say) with fields this version never heard of.
        let newer = [11, 1, b'x', 3];
        assert_eq!(
            decode_client_message(&newer).unwrap(),
            ClientMessage::Unsupported { what: 11 }
        );
        // A two-byte varint type number, and one beyond any u32.
        assert_eq!(
            decode_client_message(&[0xac, 0x02]).unwrap(),
            ClientMessage::Unsupported { what: 300 }
        );
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            decode_client_message(&huge).unwrap(),
            ClientMessage::Unsupported {
                what: 1 << 35 | 0x7_ffff_ffff
            }
        );
        assert_eq!(
            decode::<ServerMessage>(&[17, 5]).unwrap(),
            ServerMessage::Unknown
        );
        assert_eq!(
            decode_server_message(&huge).unwrap(),
            ServerMessage::Unknown
        );
        assert_eq!(
            decode_broadcast_message(&huge).unwrap(),
            BroadcastMessage::Unknown
        );
        assert!(
            decode::<ServerMessage>(&huge).is_err(),
            "beyond what postcard's enums read"
        );
        assert_eq!(
            decode_server_message(&[4, 1]).unwrap(),
            ServerMessage::Ack { up_to: 1 }
        );
        assert_eq!(
            decode::<ServerMessage>(&[200, 1]).unwrap(),
            ServerMessage::Unknown
        );
        assert_eq!(
            decode::<BroadcastMessage>(&[2]).unwrap(),
            BroadcastMessage::Unknown
        );
        assert!(
            encode(&ClientMessage::Unsupported { what: 11 }).is_err()
                && encode(&ClientMessage::Unknown).is_err()
                && encode(&ServerMessage::Unknown).is_err()
                && encode(&BroadcastMessage::Unknown).is_err(),
            "never sent"
        );
        // A known type with fields that do not decode is an error, not "unsupported".
        assert!(
            decode_client_message(&[1, 0x80]).is_err(),
            "say: id cut short"
        );
        assert!(
            decode_client_message(&[1, 1, 5, b'a']).is_err(),
            "say: text cut short"
        );
        assert!(
            decode_client_message(&[1, 1, 1, 0xff]).is_err(),
            "say: text not UTF-8"
        );
        assert!(
            decode_client_message(&[0, 0, 0, 2]).is_err(),
            "join: resume flag 2"
        );
        assert!(decode_client_message(&[]).is_err(), "no type");
    }

    #[test]
    fn fields_appended_by_a_newer_version_are_ignored() {
        let mut ping = encode(&ClientMessage::Ping).unwrap();
        assert_eq!(ping, [2]);
        ping.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_client_message(&ping).unwrap(), ClientMessage::Ping);
        let mut ack = encode(&ServerMessage::Ack { up_to: 300 }).unwrap();
        assert_eq!(ack, [4, 0xac, 0x02]);
        ack.push(9);
        assert_eq!(
            decode::<ServerMessage>(&ack).unwrap(),
            ServerMessage::Ack { up_to: 300 }
        );
    }

    #[test]
    fn unknown_values_inside_known_messages_are_other() {
        // A leave with reason 7, a nick refused for reason 20, an error with code 30, an event
        // of kind 9 with fields: each decodes to something the client can show.
        let leave = [0, 4, 0, 2, 2, b'a', b'b', 7];
        let BroadcastMessage::Event(event) = decode::<BroadcastMessage>(&leave).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(
            event.kind,
            RoomEventKind::Leave {
                nick: "ab".into(),
                reason: LeaveReason::Other
            }
        );
        assert_eq!(
            decode::<ServerMessage>(&[5, 1, b'x', 20]).unwrap(),
            ServerMessage::NickRejected {
                nick: "x".into(),
                reason: NickError::Other
            }
        );
        assert_eq!(
            decode::<ServerMessage>(&[6, 1, 9]).unwrap(),
            ServerMessage::MessageRejected {
                id: 1,
                reason: MessageTextError::Other
            }
        );
        assert_eq!(
            decode::<ServerMessage>(&[9, 30, 2, b'h', b'i']).unwrap(),
            ServerMessage::Error {
                code: ErrorCode::Other,
                message: "hi".into()
            }
        );
        let kind9 = [0, 5, 0, 9, 1, 2, 3];
        assert_eq!(
            decode::<BroadcastMessage>(&kind9).unwrap(),
            BroadcastMessage::Event(RoomEvent {
                seq: 5,
                time_ms: 0,
                kind: RoomEventKind::Other
            })
        );
        assert!(encode(&LeaveReason::Other).is_err(), "never sent");
    }

    #[test]
    fn history_carries_each_event_as_a_byte_string_so_events_can_grow() {
        let join = RoomEvent {
            seq: 1,
            time_ms: 2,
            kind: RoomEventKind::Join { nick: "ana".into() },
        };
        let history = ServerMessage::History {
            events: vec![join.clone(), join.clone()],
        };
        let bytes = encode(&history).unwrap();
        let one = [1, 2, 1, 3, b'a', b'n', b'a'];
        let mut expected = vec![2, 2];
        for _ in 0..2 {
            expected.push(one.len() as u8);
            expected.extend_from_slice(&one);
        }
        assert_eq!(bytes, expected);
        assert_eq!(encoded_len(&history).unwrap(), bytes.len());
        assert_eq!(history_entry_len(&join).unwrap(), 1 + one.len());
        // A newer server appended a field to the first event: both still decode.
        let mut grown = vec![2, 2, one.len() as u8 + 2];
        grown.extend_from_slice(&one);
        grown.extend_from_slice(&[0xaa, 0xbb]);
        grown.push(one.len() as u8);
        grown.extend_from_slice(&one);
        assert_eq!(decode::<ServerMessage>(&grown).unwrap(), history);
        // A count promising more events than there are bytes fails, it does not allocate.
        assert!(decode::<ServerMessage>(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }

    #[test]
    fn varint_lengths() {
        for (n, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(n), len, "{n}");
            assert_eq!(encode(&n).unwrap().len(), len, "{n}");
        }
    }

    #[test]
    fn room_key_and_pong_encoding() {
        let key = ServerMessage::RoomKey {
            room_key: [0xab; 32],
            from_broadcast: 7,
        };
        let mut expected = vec![10];
        expected.extend_from_slice(&[0xab; 32]);
        expected.push(7);
        assert_eq!(
            encode(&key).unwrap(),
            expected,
            "type 10, raw key, varint counter"
        );
        assert_eq!(decode::<ServerMessage>(&expected).unwrap(), key);
        let pong = ServerMessage::Pong {
            broadcast_next: 300,
        };
        assert_eq!(encode(&pong).unwrap(), [7, 0xac, 0x02]);
        assert_eq!(decode::<ServerMessage>(&[7, 0xac, 0x02]).unwrap(), pong);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(
            decode::<ServerMessage>(&[0]).is_err(),
            "welcome without fields"
        );
        assert!(decode::<BroadcastMessage>(&[1, 3, b'a']).is_err());
        assert!(
            decode::<BroadcastMessage>(&[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err(),
            "varint too long"
        );
    }
}
