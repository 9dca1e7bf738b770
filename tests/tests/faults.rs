//! End-to-end fault scenarios: tampering, cut connections, server restarts, slow readers.

use std::time::Duration;

use tertulia_e2e::{ChatProcess, Direction, Proxy, ServerProcess};

const PASS: &str = "fault injection passphrase";

#[tokio::test]
async fn tampered_frame_from_client_is_detected_and_nothing_is_lost() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    // Client → server frames: 0 handshake, 1 join, 2.. messages. Corrupt the third message.
    proxy.flip_once(Direction::ClientToServer, 4);
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let expected: Vec<String> = (0..10).map(|i| format!("note {i}")).collect();
    for text in &expected {
        ana.say(text).await;
    }
    let error = ana.wait_type("error").await;
    assert_eq!(error["kind"], "integrity_reported_by_server", "{error}");
    server.wait_for_log("integrity check failed").await;
    ana.wait_type("reconnecting").await;
    assert_eq!(ben.wait_messages_from("ana", 10).await, expected);
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0), "all acked after recovery");
    ben.drain_for(Duration::from_millis(300)).await;
    assert_eq!(ben.messages_from("ana"), expected, "exactly once");
    assert!(proxy.connections() >= 2, "the client reconnected");
}

#[tokio::test]
async fn tampered_frame_from_server_is_detected_and_nothing_is_lost() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let proxy = Proxy::start(server.addr).await;
    // Server → client frames: 0 hello, 1 handshake, 2 welcome, 3 history, 4 ana's own join, 5.. Corrupt one broadcast.
    proxy.flip_once(Direction::ServerToClient, 6);
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    let expected: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    for text in &expected {
        ben.say(text).await;
    }
    let error = ana.wait_type("error").await;
    assert_eq!(error["kind"], "integrity", "{error}");
    assert_eq!(ana.wait_messages_from("ben", 10).await, expected);
    ana.drain_for(Duration::from_millis(300)).await;
    assert_eq!(
        ana.messages_from("ben"),
        expected,
        "exactly once after resuming"
    );
    let reconnected = ana
        .wait_for("second connected", |e| {
            e["type"] == "connected" && e["resumed"] == true
        })
        .await;
    assert_eq!(reconnected["room_reset"], false);
    // No leave/join noise for ana: she was back within the grace period.
    assert!(!ben.seen.iter().any(|e| e["type"] == "leave"));
}

#[tokio::test]
async fn cut_connections_while_sending_deliver_everything_exactly_once() {
    // 200 messages at once: about faults, not flood control (which no reconnect refills).
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--flood-rate", "0"]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let expected: Vec<String> = (0..200).map(|i| format!("burst {i}")).collect();
    // Eight rounds of 25 messages; each round the connection is cut after the 10th message and
    // the rest are typed while the client is reconnecting.
    for (round, chunk) in expected.chunks(25).enumerate() {
        for (j, text) in chunk.iter().enumerate() {
            ana.say(text).await;
            if j == 10 {
                proxy.cut_all();
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        ana.wait_count("connected", round + 2).await;
    }
    ana.close_stdin();
    assert_eq!(
        ana.exit_code().await,
        Some(0),
        "every message acked in the end"
    );
    assert!(
        proxy.connections() >= 9,
        "connections were cut: {}",
        proxy.connections()
    );
    assert_eq!(ben.wait_messages_from("ana", 200).await, expected);
    ben.drain_for(Duration::from_millis(500)).await;
    assert_eq!(ben.messages_from("ana"), expected, "exactly once, in order");
    // Ana was away only briefly each time: no leave notices before her final goodbye.
    let leaves: Vec<_> = ben.seen.iter().filter(|e| e["type"] == "leave").collect();
    assert!(leaves.iter().all(|e| e["reason"] == "quit"), "{leaves:?}");
}

#[tokio::test]
async fn server_restart_clients_reconnect_and_offline_messages_arrive_once() {
    let port = tertulia_e2e::free_port().await;
    let listen = format!("127.0.0.1:{port}");
    let server = ServerProcess::start(&listen, PASS, &[]).await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;
    ana.say("before restart").await;
    ben.wait_messages_from("ana", 1).await;

    assert_eq!(
        server.terminate().await,
        Some(0),
        "clean shutdown on SIGTERM"
    );
    ana.wait_for("shutdown notice", |e| {
        e["type"] == "error" && e["kind"] == "server_shutting_down"
    })
    .await;
    ana.wait_type("reconnecting").await;
    let offline: Vec<String> = (0..5).map(|i| format!("typed while down {i}")).collect();
    for text in &offline {
        ana.say(text).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let server = ServerProcess::start(&listen, PASS, &[]).await;
    let back = ana
        .wait_for("reconnected to the new room", |e| {
            e["type"] == "connected" && e["room_reset"] == true
        })
        .await;
    assert_eq!(back["resumed"], false);
    ben.wait_for("reconnected to the new room", |e| {
        e["type"] == "connected" && e["room_reset"] == true
    })
    .await;
    let mut expected = vec!["before restart".to_string()];
    expected.extend(offline.iter().cloned());
    assert_eq!(ben.wait_messages_from("ana", 6).await, expected);
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0));
    ben.drain_for(Duration::from_millis(300)).await;
    assert_eq!(ben.messages_from("ana"), expected, "exactly once");
    drop(server);
}
