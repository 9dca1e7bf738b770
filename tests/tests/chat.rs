//! End-to-end: the real `tertulia-server` and `tertulia-chat --json` processes over 127.0.0.1.

use std::time::Duration;

use serde_json::Value;
use tertulia_e2e::{ChatProcess, ServerProcess};

const PASS: &str = "correct horse battery staple";

fn is_online_with(event: &Value, names: &[&str]) -> bool {
    event["type"] == "online"
        && names.iter().all(|n| {
            event["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|v| v == n))
        })
}

#[tokio::test]
async fn two_clients_chat_with_online_list_and_notices() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let mut ben = ChatProcess::start(server.addr, "Ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    ana.wait_for("online list with both", |e| {
        is_online_with(e, &["ana", "Ben"])
    })
    .await;
    ben.wait_for("online list with both", |e| {
        is_online_with(e, &["ana", "Ben"])
    })
    .await;
    ana.wait_for("Ben's join notice", |e| {
        e["type"] == "join" && e["nick"] == "Ben"
    })
    .await;

    let tricky = "a|b:c \"quoted\" <b>markup</b> ünïcödé";
    ana.say(tricky).await;
    ana.say("second").await;
    assert_eq!(
        ben.wait_messages_from("ana", 2).await,
        vec![tricky, "second"]
    );
    // Ben's welcome already listed both of them, so his own join event (before ana's
    // messages) did not announce the same list again.
    let ben_lists: Vec<&serde_json::Value> =
        ben.seen.iter().filter(|e| e["type"] == "online").collect();
    assert_eq!(ben_lists.len(), 1, "one online list: {ben_lists:?}");
    let own = ana
        .wait_for("own message", |e| {
            e["type"] == "message" && e["text"] == "second"
        })
        .await;
    assert_eq!(own["own"], true);
    assert_eq!(own["msg_id"], 2);
    ana.wait_for("ack of 2", |e| {
        e["type"] == "acked"
            && e["ids"]
                .as_array()
                .is_some_and(|ids| ids.contains(&Value::from(2)))
    })
    .await;

    ben.say("hola").await;
    assert_eq!(ana.wait_messages_from("Ben", 1).await, vec!["hola"]);
    // Sequence numbers are strictly increasing and identical on both sides.
    let seqs = |c: &ChatProcess| -> Vec<u64> {
        c.seen
            .iter()
            .filter(|e| e["type"] == "message")
            .filter_map(|e| e["seq"].as_u64())
            .collect()
    };
    ben.wait_for("own hola", |e| {
        e["type"] == "message" && e["text"] == "hola"
    })
    .await;
    assert_eq!(seqs(&ana), seqs(&ben));
    assert!(seqs(&ana).windows(2).all(|w| w[0] < w[1]));

    ben.close_stdin();
    assert_eq!(ben.exit_code().await, Some(0));
    let leave = ana
        .wait_for("Ben's leave notice", |e| {
            e["type"] == "leave" && e["nick"] == "Ben"
        })
        .await;
    assert_eq!(leave["reason"], "quit");
    ana.wait_for("online list without Ben", |e| {
        e["type"] == "online" && e["members"] == serde_json::json!(["ana"])
    })
    .await;
}

#[tokio::test]
async fn twenty_clients_all_receive_everything_exactly_once() {
    let server =
        ServerProcess::start("127.0.0.1:0", PASS, &["--max-connections-per-ip", "64"]).await;
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = ChatProcess::start(server.addr, &format!("user{i:02}"), PASS, &[]).await;
        c.wait_type("connected").await;
        clients.push(c);
    }
    let everyone: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
    for c in clients.iter_mut() {
        let names: Vec<&str> = everyone.iter().map(String::as_str).collect();
        c.wait_for("full online list", |e| is_online_with(e, &names))
            .await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for m in 0..5 {
            c.say(&format!("message {m} from {i}")).await;
        }
    }
    for c in clients.iter_mut() {
        for (i, sender) in everyone.iter().enumerate() {
            let got = c.wait_messages_from(sender, 5).await;
            let expected: Vec<String> = (0..5).map(|m| format!("message {m} from {i}")).collect();
            assert_eq!(got, expected, "{} got from {sender}", c.nick);
        }
    }
    // Nothing extra arrives later.
    let first = &mut clients[0];
    first.drain_for(Duration::from_millis(300)).await;
    assert_eq!(
        first.seen.iter().filter(|e| e["type"] == "message").count(),
        100
    );
}

#[tokio::test]
async fn duplicate_nickname_is_rejected_case_insensitively() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = ChatProcess::start(server.addr, "Ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let mut other = ChatProcess::start(server.addr, " aNA ", PASS, &[]).await;
    let rejected = other.wait_type("nick_rejected").await;
    assert_eq!(rejected["reason"], "taken");
    assert!(rejected["message"]
        .as_str()
        .unwrap_or_default()
        .contains("taken"));
    assert_eq!(other.exit_code().await, Some(4));
    assert!(!other.seen.iter().any(|e| e["type"] == "connected"));
    // The original member is unaffected and nobody saw a second "Ana" join.
    ana.say("still here").await;
    ana.wait_for("own message", |e| {
        e["type"] == "message" && e["text"] == "still here"
    })
    .await;
    assert_eq!(ana.seen.iter().filter(|e| e["type"] == "join").count(), 1);
}

#[tokio::test]
async fn wrong_passphrase_is_rejected_on_both_sides() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut mallory = ChatProcess::start(server.addr, "mallory", "not the passphrase", &[]).await;
    // Believed after three refusals in a row (a single one could be forged: forged.rs).
    let error = mallory
        .wait_for("wrong passphrase", |e| {
            e["type"] == "error" && e["kind"] != "passphrase_refused"
        })
        .await;
    assert_eq!(error["kind"], "wrong_passphrase");
    assert_eq!(mallory.exit_code().await, Some(3));
    assert!(!mallory
        .seen
        .iter()
        .any(|e| e["type"] == "connected" || e["type"] == "message"));
    server.wait_for_log("wrong passphrase").await;
    // The server keeps serving everyone else.
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    assert!(!ana
        .seen
        .iter()
        .any(|e| e["type"] == "join" && e["nick"] == "mallory"));
}

#[tokio::test]
async fn unreachable_server_gives_up_with_its_exit_code() {
    let port = tertulia_e2e::free_port().await;
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut lonely = ChatProcess::start(addr, "lonely", PASS, &["--give-up-after", "5"]).await;
    assert_eq!(lonely.exit_code().await, Some(5));
    let attempts: Vec<u64> = lonely
        .seen
        .iter()
        .filter(|e| e["type"] == "connecting")
        .filter_map(|e| e["attempt"].as_u64())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3, 4, 5]);
    let delays: Vec<u64> = lonely
        .seen
        .iter()
        .filter(|e| e["type"] == "reconnecting")
        .filter_map(|e| e["delay_ms"].as_u64())
        .collect();
    assert_eq!(delays.len(), 4);
    assert!(
        delays[0] < 1000,
        "first retry well under a second: {delays:?}"
    );
}

#[tokio::test]
async fn typing_notices_reach_the_others() {
    use tertulia_core::client::{self, ClientConfig, ClientEvent};
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;
    // The library client, as the desktop app uses it.
    let (ana, mut events) = client::spawn(ClientConfig::new(server.addr.to_string(), "ana", PASS));
    loop {
        match tokio::time::timeout(tertulia_e2e::WAIT, events.recv())
            .await
            .expect("connected in time")
        {
            Some(ClientEvent::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("client stopped"),
        }
    }
    for _ in 0..5 {
        ana.typing().await; // many keystrokes, one notice
    }
    let notice = ben.wait_type("typing").await;
    assert_eq!(notice["nick"], "ana");
    ben.drain_for(Duration::from_millis(500)).await;
    assert_eq!(
        ben.seen.iter().filter(|e| e["type"] == "typing").count(),
        1,
        "throttled"
    );
    assert!(
        !ben.seen.iter().any(|e| e["type"] == "message"),
        "typing is not a message"
    );
    ana.disconnect().await;
}

/// Piped input beyond what the outbox holds is slowed down, not dropped: the client stops
/// reading stdin while the room is out of reach, and sends every line once it is back.
#[tokio::test]
async fn piped_input_past_the_outbox_waits_instead_of_failing() {
    let port = tertulia_e2e::free_port().await;
    let listen = format!("127.0.0.1:{port}");
    let mut ana = ChatProcess::start(listen.parse().expect("addr"), "ana", PASS, &[]).await;
    let total = tertulia_core::client::MAX_OUTBOX + 200;
    let lines: Vec<String> = (0..total).map(|i| format!("line {i}")).collect();
    for line in &lines {
        ana.say(line).await;
    }
    ana.wait_count("queued", tertulia_core::client::MAX_OUTBOX)
        .await;
    ana.drain_for(Duration::from_millis(500)).await;
    let count =
        |chat: &ChatProcess, kind: &str| chat.seen.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(
        count(&ana, "queued"),
        tertulia_core::client::MAX_OUTBOX,
        "the rest waits in the pipe"
    );
    assert_eq!(count(&ana, "send_failed"), 0);

    let _server = ServerProcess::start(&listen, PASS, &["--flood-rate", "0"]).await;
    // The room's echo: every line reached the room once, in order.
    assert_eq!(ana.wait_messages_from("ana", total).await, lines);
    assert_eq!(count(&ana, "queued"), total);
    assert_eq!(count(&ana, "send_failed"), 0);
}

/// The terminal client with piped input (no prompts): it sends lines, answers `/who` from the
/// online list, shows the others' messages, and leaves cleanly when its input ends.
#[tokio::test]
async fn terminal_client_sends_lists_who_is_online_and_leaves_at_end_of_input() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut bob = ChatProcess::start(server.addr, "bob", PASS, &[]).await;
    bob.wait_type("connected").await;
    let (mut command, _data_home) = tertulia_e2e::chat_command();
    let mut cy = command
        .arg(server.addr.to_string())
        .args(["--nick", "cy", "--no-color", "--lang", "en"])
        .env("TERTULIA_PASSPHRASE", PASS)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start tertulia-chat");
    let mut stdin = cy.stdin.take().expect("stdin");
    let mut lines = BufReader::new(cy.stdout.take().expect("stdout")).lines();
    let mut wait_line = async |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        tokio::time::timeout(tertulia_e2e::WAIT, async {
            loop {
                match lines.next_line().await.expect("read cy's output") {
                    Some(line) if pred(&line) => return line,
                    Some(_) => continue,
                    None => panic!("cy's output ended before {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("cy never printed {what}"))
    };
    wait_line("its join", &|l| l.contains("cy joined")).await;

    stdin
        .write_all(b"hello from the terminal\n/who\n")
        .await
        .expect("type");
    let who = wait_line("the /who answer", &|l| l.contains("online (")).await;
    assert!(who.contains("online (2): bob, cy"), "{who}");
    assert_eq!(
        bob.wait_messages_from("cy", 1).await,
        vec!["hello from the terminal"]
    );

    bob.say("hi cy").await;
    let shown = wait_line("bob's message", &|l| l.contains("hi cy")).await;
    assert!(shown.contains("bob"), "{shown}");

    drop(stdin); // end of input: leave once everything is sent
    let status = tokio::time::timeout(tertulia_e2e::WAIT, cy.wait())
        .await
        .expect("cy exits at end of input")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    let leave = bob
        .wait_for("cy leaves", |e| e["type"] == "leave" && e["nick"] == "cy")
        .await;
    assert_eq!(leave["reason"], "quit");
}
