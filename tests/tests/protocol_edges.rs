//! Corners of the protocol an independent implementation would hit (issue #12), over the wire
//! with a raw client: a `say` with id 0 is refused rather than acknowledged and dropped; a
//! message `type` the server does not know gets `unsupported` (naming at most 32 bytes of
//! it) and the connection stays usable, before and after joining.

use serde_json::json;
use tertulia_core::message::{ClientMessage, ServerMessage, MAX_UNSUPPORTED_TYPE_BYTES};
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

#[tokio::test]
async fn an_unknown_message_type_gets_unsupported_and_the_connection_lives_on() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut raw = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    let long_type = format!("reaction_{}", "ñ".repeat(200));
    let mut cut = long_type.len().min(MAX_UNSUPPORTED_TYPE_BYTES);
    while !long_type.is_char_boundary(cut) {
        cut -= 1;
    }

    // Before joining: a newer client's message, with fields this server has never heard of.
    raw.send_json(&json!({"type": long_type, "emoji": "👍", "seq": 3}))
        .await
        .expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::Unsupported {
            what: long_type[..cut].to_owned()
        },
        "at most {MAX_UNSUPPORTED_TYPE_BYTES} bytes of peer input are repeated"
    );
    raw.join("raw").await;
    match raw.next_private().await.expect("open") {
        ServerMessage::Welcome { .. } => {}
        other => panic!("expected a welcome, got {other:?}"),
    }

    // After joining, too; and the connection still serves chat.
    raw.send_json(&json!({"type": "edit", "id": 1, "text": "new text"}))
        .await
        .expect("send");
    assert_eq!(
        next_reply(&mut raw).await,
        ServerMessage::Unsupported {
            what: "edit".into()
        }
    );
    raw.send(&ClientMessage::Ping).await.expect("send");
    assert_eq!(next_reply(&mut raw).await, ServerMessage::Pong);

    // A known type with broken fields is still a protocol violation.
    raw.send_json(&json!({"type": "say", "id": "one"}))
        .await
        .expect("send");
    assert!(matches!(
        raw.until_closed().await,
        Some(ServerMessage::Error { .. })
    ));
}
