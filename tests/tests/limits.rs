//! Every server limit, crossed: flood control (delay, then disconnect), frame and message
//! size, connections in total and per IP address, the handshake timeout. (The per-member
//! send-queue budget and cap are crossed in `slow_reader.rs` and `fault_suite.rs`.) After each,
//! the room keeps serving.

use std::net::{IpAddr, Ipv4Addr};

use tertulia_core::conn::ConnError;
use tertulia_core::frame::{self, FrameKind};
use tertulia_core::hello::RejectCode;
use tertulia_core::message::{ClientMessage, ErrorCode, ServerMessage};
use tertulia_e2e::{ChatProcess, RawMember, ServerProcess, WAIT};
use tokio::io::AsyncReadExt;

const PASS: &str = "limits passphrase";

fn loopback(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

#[tokio::test]
async fn flooding_is_first_slowed_down_then_cut_off_and_the_room_goes_on() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--flood-rate",
            "4",
            "--flood-burst",
            "2",
            "--flood-queue",
            "8",
        ],
    )
    .await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;

    // A well-behaved client pasting 20 lines at once: its window keeps it inside the flood
    // queue, so it is only slowed down — every line arrives once, in order.
    let lines: Vec<String> = (0..20).map(|i| format!("pasted line {i}")).collect();
    for line in &lines {
        ana.say(line).await;
    }
    assert_eq!(ben.wait_messages_from("ana", 20).await, lines);
    let stamps: Vec<u64> = ben
        .seen
        .iter()
        .filter(|e| e["type"] == "message")
        .filter_map(|e| e["time_ms"].as_u64())
        .collect();
    // Beyond the burst of 2, 4 per second: the last 17 spread over at least ~4 s.
    assert!(
        stamps[19] - stamps[2] >= 3_500,
        "messages beyond the burst were held back: {stamps:?}"
    );
    assert!(
        !ana.seen.iter().any(|e| e["type"] == "error"),
        "a client that only pastes is never cut off: {:?}",
        ana.seen
    );

    // A client that ignores acks and keeps sending is disconnected with a flood error.
    let mut flooder = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    flooder.join("flooder").await;
    for id in 1..=100 {
        let say = ClientMessage::Say {
            id,
            text: format!("spam {id}"),
        };
        if flooder.send(&say).await.is_err() {
            break;
        }
    }
    match flooder.until_closed().await {
        Some(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::Flood),
        other => panic!("expected a flood error, got {other:?}"),
    }
    server.wait_for_log("flooding").await;
    let spam_seen = ben.messages_from("flooder").len();
    assert!(
        spam_seen <= 2 + 8 + 4,
        "at most the burst, the queue and a little refill got through: {spam_seen}"
    );

    ana.say("still here").await;
    let got = ben.wait_messages_from("ana", 21).await;
    assert_eq!(got.last().map(String::as_str), Some("still here"));
}

#[tokio::test]
async fn oversized_frames_and_messages_are_refused_and_the_room_goes_on() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-frame-bytes", "4096", "--max-message-bytes", "1000"],
    )
    .await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;

    // A message over the room's limit is refused (not delivered), one under it goes through.
    ana.say(&"é".repeat(600)).await; // 1200 bytes
    let rejected = ana.wait_type("message_rejected").await;
    assert_eq!(rejected["reason"], "too_long");
    ana.say(&"a".repeat(1000)).await;
    assert_eq!(
        ben.wait_messages_from("ana", 1).await,
        vec!["a".repeat(1000)]
    );

    // A frame announcing more than the frame limit closes that connection with a clear error.
    let mut big = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("connect");
    big.join("big").await;
    let mut bytes = frame::header(FrameKind::Session, 5000).to_vec();
    bytes.extend(std::iter::repeat_n(0u8, 5000));
    let _ = big.send_raw(&bytes).await;
    match big.until_closed().await {
        Some(ServerMessage::Error { code, message }) => {
            assert_eq!(code, ErrorCode::Protocol);
            assert!(message.contains("exceeds the limit"), "{message}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    ana.say("after the big frame").await;
    assert_eq!(
        ben.wait_messages_from("ana", 2).await[1],
        "after the big frame"
    );
}

fn rejected(result: Result<RawMember, ConnError>) -> Option<RejectCode> {
    match result {
        Err(ConnError::Rejected(code)) => code,
        Err(e) => panic!("expected a reject, got {e}"),
        Ok(_) => panic!("expected a reject, got a connection"),
    }
}

#[tokio::test]
async fn connection_limits_in_total_and_per_address_refuse_clearly_and_free_up() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-connections", "4", "--max-connections-per-ip", "2"],
    )
    .await;
    let addr = server.addr;
    let a1 = RawMember::connect(addr, PASS, loopback(1))
        .await
        .expect("1st");
    let _a2 = RawMember::connect(addr, PASS, loopback(1))
        .await
        .expect("2nd");
    assert_eq!(
        rejected(RawMember::connect(addr, PASS, loopback(1)).await),
        Some(RejectCode::TooManyFromAddress),
        "a third from the same address"
    );
    let _b1 = RawMember::connect(addr, PASS, loopback(2))
        .await
        .expect("other address");
    let _b2 = RawMember::connect(addr, PASS, loopback(2))
        .await
        .expect("other address");
    assert_eq!(
        rejected(RawMember::connect(addr, PASS, loopback(3)).await),
        Some(RejectCode::ServerFull),
        "a fifth in total"
    );
    // The chat client explains it and keeps retrying.
    let mut late = ChatProcess::start(addr, "late", PASS, &[]).await;
    let error = late.wait_type("error").await;
    assert_eq!(error["kind"], "server_full");

    // A place frees up: the waiting client gets in.
    drop(a1);
    let connected = late.wait_type("connected").await;
    assert_eq!(connected["nick"], "late");
    server
        .wait_for_log("per-address connection limit reached")
        .await;
}

#[tokio::test]
async fn connections_that_do_not_finish_the_handshake_are_closed_at_the_timeout() {
    let server =
        ServerProcess::start("127.0.0.1:0", PASS, &["--handshake-timeout-secs", "1"]).await;
    // Silent after the server's hello, and a half-sent handshake frame.
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut half = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut half, &[0x02, 0, 0, 0, 96, 1, 2, 3])
        .await
        .expect("write");
    for stream in [&mut silent, &mut half] {
        let closed = tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 256];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // the hello
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server should close the connection");
    }
    server.wait_for_log("handshake timed out").await;
    // The room still works.
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
}

/// Limits that contradict each other are refused at start with a clear error (usage: 2).
#[tokio::test]
async fn contradictory_send_queue_limits_are_refused_at_start() {
    let (code, stderr) = ServerProcess::refused(
        PASS,
        &[
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--send-queue-kib",
            "512",
            "--send-queue-max-kib",
            "256",
        ],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--send-queue-max-kib 256 is below --send-queue-kib 512"),
        "{stderr}"
    );
}
