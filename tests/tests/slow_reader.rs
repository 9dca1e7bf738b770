//! A member that stops reading is cut off; everyone else keeps chatting.

use std::time::Duration;

use tertulia_core::conn::{self, FrameReader};
use tertulia_core::frame::MAX_BODY;
use tertulia_core::message::ClientMessage;
use tertulia_core::passphrase;
use tertulia_core::sealed;
use tertulia_e2e::{ChatProcess, ServerProcess, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

const PASS: &str = "slow consumer passphrase";

#[tokio::test]
async fn member_that_stops_reading_is_cut_off_while_others_chat() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--send-queue-kib",
            "64",
            // A sender's whole window of 4 KB messages (64) fits under the cap.
            "--send-queue-max-kib",
            "1024",
            "--grace-secs",
            "2",
            "--flood-rate",
            "0",
        ],
    )
    .await;

    // A hand-driven member with a tiny receive buffer that joins and then never reads again.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(server.addr).await.expect("connect");
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FrameReader::new(read_half);
    let mut keys = conn::initiate_handshake(&mut reader, &mut write_half, |salt| async move {
        Ok(
            tokio::task::spawn_blocking(move || passphrase::derive_psk(PASS, &salt))
                .await
                .expect("kdf")?,
        )
    })
    .await
    .expect("handshake")
    .keys;
    let join = ClientMessage::Join {
        nick: "sleepy".into(),
        client_id: "0123456789abcdef0123456789abcdef".into(),
        resume: None,
    };
    let mut buf = Vec::new();
    sealed::seal_session(&mut keys.send, &join, &mut buf).expect("seal");
    write_half.write_all(&buf).await.expect("send join");

    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_for("sleepy is listed", |e| {
        e["type"] == "online"
            && e["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|n| n == "sleepy"))
    })
    .await;

    let big = "x".repeat(4000);
    let expected: Vec<String> = (0..1500).map(|i| format!("{i} {big}")).collect();
    for text in &expected {
        ana.say(text).await;
    }
    server.wait_for_log("slow consumer").await;
    assert_eq!(
        ben.wait_messages_from("ana", expected.len()).await,
        expected,
        "the others got everything"
    );

    // The sleepy member's connection was closed by the server: reading on drains what the
    // kernel buffered and then reaches the end, far short of everything that was sent.
    let drained = tokio::time::timeout(WAIT, async {
        let mut frames = 0usize;
        loop {
            match reader.read_frame(MAX_BODY).await {
                Ok(Some(_)) => frames += 1,
                Ok(None) | Err(_) => return frames,
            }
        }
    })
    .await
    .expect("the slow member's connection should have been closed");
    assert!(drained < expected.len(), "cut off after {drained} frames");

    // Its nickname is released after the grace period, announced as a lost connection.
    let leave = ben
        .wait_for("sleepy leaves", |e| {
            e["type"] == "leave" && e["nick"] == "sleepy"
        })
        .await;
    assert_eq!(leave["reason"], "connection_lost");
    ana.say("still chatting").await;
    ben.wait_messages_from("ana", expected.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
