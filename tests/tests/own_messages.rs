//! A client's own messages are matched by client identity and only among this session's
//! events (issue #12): a restarted `tertulia-chat` with the same nickname does not take the
//! previous process's messages in its backlog for its own — whose message ids it reuses.

use serde_json::Value;
use tertulia_e2e::{ChatProcess, ServerProcess};

const PASS: &str = "own messages passphrase";

fn message<'a>(seen: &'a [Value], text: &str) -> Option<&'a Value> {
    seen.iter()
        .find(|e| e["type"] == "message" && e["text"] == text)
}

#[tokio::test]
async fn a_restarted_client_with_the_same_nickname_does_not_own_the_old_messages() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ben.wait_type("connected").await;

    let mut first = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    first.wait_type("connected").await;
    first.say("from the first process").await;
    first
        .wait_for("own echo", |e| {
            e["type"] == "message" && e["text"] == "from the first process"
        })
        .await;
    let echo = message(&first.seen, "from the first process")
        .expect("echo")
        .clone();
    assert_eq!(
        (echo["own"].clone(), echo["msg_id"].clone()),
        (true.into(), 1.into())
    );
    first.close_stdin();
    assert_eq!(first.exit_code().await, Some(0));

    // Same nickname, new process: its first message has id 1 again.
    let mut second = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    second.wait_type("connected").await;
    let old = second
        .wait_for("the old message in the backlog", |e| {
            e["type"] == "message" && e["text"] == "from the first process"
        })
        .await;
    assert_eq!(old["history"], true);
    assert_eq!(
        (old["own"].clone(), old["msg_id"].clone()),
        (false.into(), Value::Null),
        "another process's message, whatever its nickname: {old}"
    );
    second.say("from the second process").await;
    let new = second
        .wait_for("own echo", |e| {
            e["type"] == "message" && e["text"] == "from the second process"
        })
        .await;
    assert_eq!(
        (new["own"].clone(), new["msg_id"].clone()),
        (true.into(), 1.into())
    );
    assert_eq!(
        ben.wait_messages_from("ana", 2).await,
        ["from the first process", "from the second process"]
    );
    let for_ben = message(&ben.seen, "from the second process").expect("ben sees it");
    assert_eq!(for_ben["own"], false, "not ben's");
}
