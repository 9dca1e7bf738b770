//! Corners of the protocol an independent implementation would hit (issue #12), over the wire
//! with a raw client: a `say` with id 0 is refused rather than acknowledged and dropped; a
//! message type number the server does not know gets `unsupported` naming it, and fields a
//! newer client appends are ignored, the connection staying usable, before and after joining
//! (`docs/PROTOCOL.md` §6, forward compatibility); a client id is 16–64 ASCII
//! letters, digits, `_` or `-`; a resume point beyond the room's head is a resync.

use tertulia_core::message::{ClientMessage, ErrorCode, Resume, RoomEventKind, ServerMessage};
use tertulia_core::text::MessageTextError;
use tertulia_e2e::{ChatProcess, RawMember, ServerProcess};

const PASS: &str = "protocol edges passphrase";

/// The next private message that is not a welcome, history or online list.
async fn next_reply(member: &mut RawMember) -> ServerMessage {
    loop {
        match member.next_private().await.expect("connection still open") {
            ServerMessage::Welcome { .. }
            | ServerMessage::History { .. }
            | ServerMessage::MoreOnline { .. } => continue,
            reply => return reply,
        }
    }
}

#[tokio::test]
async fn a_say_with_id_zero_is_refused_not_acknowledged_and_dropped() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    let mut raw = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    raw.join("raw").await;

    let say = |id: u64, text: &str| ClientMessage::Say {
        id,
        text: text.into(),
    };
    raw.send(&say(0, "id zero")).await.expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::MessageRejected {
            id: 0,
            reason: MessageTextError::BadId
        }
    );
    raw.send(&say(1, "id one")).await.expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::Ack { up_to: 1 },
        "ids start at 1"
    );
    assert_eq!(ben.wait_messages_from("raw", 1).await, ["id one"]);
}

/// A plaintext: `type` as a varint, then `fields` (already encoded).
fn message_of_type(type_number: u64, fields: &[u8]) -> Vec<u8> {
    let mut bytes = tertulia_core::message::encode(&type_number).expect("varint");
    bytes.extend_from_slice(fields);
    bytes
}

#[tokio::test]
async fn an_unknown_message_type_gets_unsupported_and_the_connection_lives_on() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    let mut raw = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");

    // Before joining: a newer client's message (type 11, say a reaction), with fields this
    // server has never heard of.
    raw.send_plaintext(&message_of_type(11, &[4, 0xf0, 0x9f, 0x91, 0x8d, 3]))
        .await
        .expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::Unsupported { what: 11 }
    );
    // A type number beyond 32 bits: named back in full.
    raw.send_plaintext(&message_of_type(1 << 40, &[]))
        .await
        .expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::Unsupported { what: 1 << 40 }
    );
    // A newer client's join, with a field appended at its end: joined as usual.
    let mut join = tertulia_core::message::encode(&ClientMessage::Join {
        nick: "raw".into(),
        client_id: "f".repeat(32),
        resume: None,
    })
    .expect("encode");
    join.extend_from_slice(&[1, 0x2a, 0xff]);
    raw.send_plaintext(&join).await.expect("send");
    match raw.next_private().await.expect("open") {
        ServerMessage::Welcome { nick, .. } => assert_eq!(nick, "raw"),
        other => panic!("expected a welcome, got {other:?}"),
    }

    // After joining, too; and the connection still serves chat, with trailing bytes too.
    raw.send_plaintext(&message_of_type(300, &[1, 4, b'n', b'e', b'w', b'!']))
        .await
        .expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::Unsupported { what: 300 }
    );
    raw.send_plaintext(&[2, 0xde, 0xad]).await.expect("send");
    assert!(
        matches!(next_reply(&mut raw).await, ServerMessage::Pong { .. }),
        "a ping, extended"
    );
    let mut say = tertulia_core::message::encode(&ClientMessage::Say {
        id: 1,
        text: "from a newer client".into(),
    })
    .expect("encode");
    say.extend_from_slice(&[0x01, 0x05]);
    raw.send_plaintext(&say).await.expect("send");
    assert_eq!(next_reply(&mut raw).await, ServerMessage::Ack { up_to: 1 });
    assert_eq!(
        ben.wait_messages_from("raw", 1).await,
        ["from a newer client"],
        "delivered to the room, without the appended bytes"
    );

    // A known type whose fields do not decode is still a protocol violation: a `say` whose
    // text is cut short.
    raw.send_plaintext(&[1, 2, 9, b'x']).await.expect("send");
    assert!(matches!(
        raw.until_closed().await,
        Some(ServerMessage::Error {
            code: ErrorCode::Protocol,
            ..
        })
    ));
}

/// Join on a fresh connection with this client id and resume point; the first reply.
async fn join_as(
    server: &ServerProcess,
    client_id: &str,
    resume: Option<Resume>,
) -> (RawMember, Option<ServerMessage>) {
    let mut member = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    member
        .send(&ClientMessage::Join {
            nick: format!("m{}", &client_id[..client_id.len().min(8)]),
            client_id: client_id.into(),
            resume,
        })
        .await
        .expect("send join");
    let first = member.next_private().await;
    (member, first)
}

#[tokio::test]
async fn a_client_id_is_16_to_64_ascii_letters_digits_dashes_or_underscores() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    for good in ["0123456789abcdef", "Client_ID-0123456789", &"z".repeat(64)] {
        let (_member, first) = join_as(&server, good, None).await;
        assert!(
            matches!(first, Some(ServerMessage::Welcome { .. })),
            "{good:?}: {first:?}"
        );
    }
    for bad in [
        "ñññññññññññññññ".to_owned(), // 30 bytes, not ASCII
        "0123456789abcd\u{202E}".to_owned(),
        "0123456789 abcdef".to_owned(),
        "x".repeat(15),
        "x".repeat(65),
    ] {
        let (mut member, first) = join_as(&server, &bad, None).await;
        let error = match first {
            Some(ServerMessage::Error { .. }) => first,
            _ => member.until_closed().await,
        };
        assert!(
            matches!(
                error,
                Some(ServerMessage::Error {
                    code: ErrorCode::Protocol,
                    ..
                })
            ),
            "{bad:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_resume_beyond_the_head_is_a_resync_with_the_backlog_not_a_skip() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    ben.say("said before the resume").await;
    ben.wait_messages_from("ben", 1).await;

    let (_first, welcome) = join_as(&server, &"a".repeat(32), None).await;
    let Some(ServerMessage::Welcome {
        epoch, head_seq, ..
    }) = welcome
    else {
        panic!("no welcome: {welcome:?}");
    };
    let beyond = Resume {
        epoch,
        last_seq: head_seq + 1000,
    };
    let (mut resumer, welcome) = join_as(&server, &"b".repeat(32), Some(beyond)).await;
    let Some(ServerMessage::Welcome { resync, .. }) = welcome else {
        panic!("no welcome: {welcome:?}");
    };
    assert!(resync, "a resume point the room never reached is a resync");
    let Some(ServerMessage::History { events }) = resumer.next_private().await else {
        panic!("no backlog after the resync");
    };
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        RoomEventKind::Message { text, .. } if text == "said before the resume"
    )));
}

#[tokio::test]
async fn a_flood_of_unknown_types_is_rate_limited_like_pings() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--flood-rate",
            "1",
            "--flood-burst",
            "3",
            "--flood-queue",
            "8",
        ],
    )
    .await;
    let mut raw = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    for i in 0..200 {
        if raw
            .send_plaintext(&message_of_type(100 + i, &[]))
            .await
            .is_err()
        {
            break; // already closed for flooding
        }
    }
    let mut replies = 0;
    let ending = loop {
        match raw.next_private().await {
            Some(ServerMessage::Unsupported { .. }) => replies += 1,
            other => break other,
        }
    };
    println!("unknown-type flood: {replies} replies before {ending:?}");
    assert!(
        matches!(
            ending,
            Some(ServerMessage::Error {
                code: ErrorCode::Flood,
                ..
            })
        ),
        "{ending:?}"
    );
    assert!(
        replies <= 4 + 8,
        "{replies} replies: the ping allowance (burst 4) and the flood queue bound them"
    );
}
