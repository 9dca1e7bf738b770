//! A server with `--data-dir` keeps its room across a crash: after `kill -9` and a restart,
//! clients resume from their last sequence number with no gap and no duplicate.

use std::time::Duration;

use tertulia_e2e::{ChatProcess, DataDir, ServerProcess};

const PASS: &str = "durable room passphrase";

#[tokio::test]
async fn killed_server_restarts_with_the_same_room_and_nothing_is_lost() {
    let dir = DataDir::new("durable");
    let port = tertulia_e2e::free_port().await;
    let listen = format!("127.0.0.1:{port}");
    let args = ["--data-dir", dir.path()];

    let server = ServerProcess::start(&listen, PASS, &args).await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    let first = ana.wait_type("connected").await;
    ben.wait_type("connected").await;
    let expected: Vec<String> = (0..40).map(|i| format!("durable {i}")).collect();
    for text in &expected[..20] {
        ana.say(text).await;
    }
    ben.wait_messages_from("ana", 10).await;
    server.kill9().await;
    // Typed while the server is dead.
    for text in &expected[20..] {
        ana.say(text).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = ServerProcess::start(&listen, PASS, &args).await;
    let again = ana
        .wait_for("resumed in the same room", |e| {
            e["type"] == "connected" && e["room_reset"] == false && e["epoch"] == first["epoch"]
        })
        .await;
    assert_eq!(again["gap"], false);
    assert_eq!(
        ben.wait_messages_from("ana", 40).await,
        expected,
        "every message, in order"
    );
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0), "everything acked");
    ben.drain_for(Duration::from_millis(300)).await;
    assert_eq!(ben.messages_from("ana"), expected, "exactly once");
    let seqs: Vec<u64> = ben
        .seen
        .iter()
        .filter(|e| e["type"] == "message")
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "room order kept across the restart: {seqs:?}"
    );
    assert!(!ben
        .seen
        .iter()
        .any(|e| e["type"] == "connected" && e["room_reset"] == true));

    // A newcomer after the restart gets the backlog from before the crash.
    let mut cat = ChatProcess::start(server.addr, "cat", PASS, &[]).await;
    cat.wait_type("connected").await;
    let backlog = cat.wait_messages_from("ana", 40).await;
    assert_eq!(backlog, expected);
    drop(server);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused_clearly() {
    let dir = DataDir::new("locked");
    let _first = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", dir.path()]).await;
    let (code, stderr) =
        ServerProcess::refused(PASS, &["--listen", "127.0.0.1:0", "--data-dir", dir.path()]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("locked by another running server"),
        "{stderr}"
    );
}
