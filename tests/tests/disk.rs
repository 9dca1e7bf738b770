//! A member cannot fill the host's disk: flood limits hold per client id and per address
//! across reconnects, and a join/leave loop writes few events. (Filling the room database's
//! size cap makes the oldest history give way, `store_cap.rs`; a full disk refusing messages
//! and delivering them once space is freed is crossed in `history.rs`; the default caps are
//! asserted in `tertulia-core`'s unit tests.)

use std::net::{IpAddr, Ipv4Addr};

use tertulia_core::message::{ClientMessage, ErrorCode, ServerMessage};
use tertulia_e2e::{ChatProcess, DataDir, RawMember, ServerProcess};

const PASS: &str = "disk limits passphrase";

fn loopback(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// Join as `nick` with `client_id` from `source`, send 10 chat messages with ids from
/// `first_id` at once, and read until the server cuts the connection for flooding. Returns
/// how many of the 10 it accepted (acked) before the flood limit cut in.
async fn burst(
    server: &ServerProcess,
    source: Option<IpAddr>,
    nick: &str,
    client_id: &str,
    first_id: u64,
) -> u64 {
    let mut member = RawMember::connect(server.addr, PASS, source)
        .await
        .expect("connect");
    member
        .send(&ClientMessage::Join {
            nick: nick.into(),
            client_id: client_id.into(),
            resume: None,
        })
        .await
        .expect("join");
    for id in first_id..first_id + 10 {
        let say = ClientMessage::Say {
            id,
            text: format!("{nick} {id}"),
        };
        if member.send(&say).await.is_err() {
            break;
        }
    }
    let mut acked = first_id - 1;
    let mut last_error = None;
    while let Some(message) = member.next_private().await {
        match message {
            ServerMessage::Ack { up_to } => acked = acked.max(up_to),
            ServerMessage::Error { code, .. } => last_error = Some(code),
            _ => {}
        }
    }
    assert_eq!(
        last_error,
        Some(ErrorCode::Flood),
        "{nick}: cut off for flooding"
    );
    acked + 1 - first_id
}

#[tokio::test]
async fn reconnecting_does_not_refill_the_flood_burst() {
    // A burst of 5 per member and next to no refill during the test; 2 connections per
    // address, so an address may send the bursts of 2 members (10) in all.
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--flood-rate",
            "0.01",
            "--flood-burst",
            "5",
            "--flood-queue",
            "3",
            "--max-connections-per-ip",
            "2",
        ],
    )
    .await;
    let id = |c: char| c.to_string().repeat(32);
    let home = loopback(7);
    assert_eq!(
        burst(&server, home, "ana", &id('a'), 1).await,
        5,
        "first burst"
    );
    assert_eq!(
        burst(&server, home, "ana", &id('a'), 6).await,
        0,
        "the same member on a new connection: its burst is spent"
    );
    assert_eq!(
        burst(&server, home, "ben", &id('b'), 1).await,
        5,
        "another member from the address: its own burst, within the address's"
    );
    assert_eq!(
        burst(&server, home, "cat", &id('c'), 1).await,
        0,
        "a third client id from the same address: the address's bursts are spent"
    );
    assert_eq!(
        burst(&server, loopback(8), "dan", &id('d'), 1).await,
        5,
        "another address is not held back"
    );
}

#[tokio::test]
async fn a_join_leave_loop_writes_boundedly_few_events_and_the_room_goes_on() {
    let dir = DataDir::new("churn");
    // 4 connections per address: 4 new members at once, then 6 a minute.
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--data-dir", dir.path(), "--max-connections-per-ip", "4"],
    )
    .await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;

    let churner = loopback(9);
    let (mut joined, mut refused) = (0, 0);
    for i in 0..40 {
        let mut member = RawMember::connect(server.addr, PASS, churner)
            .await
            .expect("connect");
        member.join(&format!("churn{i}")).await;
        match member.next_private().await {
            Some(ServerMessage::Welcome { .. }) => {
                joined += 1;
                member.send(&ClientMessage::Leave).await.expect("leave");
                while member.next_private().await.is_some() {}
            }
            Some(ServerMessage::Error { code, message }) => {
                assert_eq!(code, ErrorCode::Flood);
                assert!(message.contains("retry in"), "{message}");
                refused += 1;
            }
            other => panic!("churn{i}: {other:?}"),
        }
    }
    println!("join/leave loop: {joined} of 40 joins accepted, {refused} refused");
    assert!(joined >= 4, "the burst is allowed");
    assert!(joined <= 8, "{joined} joins: not rate-limited");

    // Someone else (another address) still joins and chats; the room's event count stayed
    // small: the newcomer's welcome tells how many events the room holds.
    let mut ben = RawMember::connect(server.addr, PASS, loopback(10))
        .await
        .expect("connect");
    ben.join("ben").await;
    let head_seq = match ben.next_private().await {
        Some(ServerMessage::Welcome { head_seq, .. }) => head_seq,
        other => panic!("ben was not welcomed: {other:?}"),
    };
    println!("events stored after the loop: {head_seq}");
    assert!(
        head_seq <= 1 + 2 * 8,
        "ana's join and at most 8 join/leave pairs, not {head_seq}"
    );
    ben.send(&ClientMessage::Say {
        id: 1,
        text: "still here".into(),
    })
    .await
    .expect("say");
    ana.wait_for("ben's message", |e| {
        e["type"] == "message" && e["text"] == "still here"
    })
    .await;
}
