//! One forged packet must not stop a client for good. Through a proxy that injects each fault
//! once — a forged `Reject` before the `Hello`, a flipped byte in the handshake response, an
//! altered salt in the `Hello` — the real `tertulia-chat` ends up in the room, says what happened, and
//! every message typed before or while it retried arrives exactly once. Handshake responses
//! that keep failing after the passphrase was proven are tampering, slowed down, never a stop.

use std::time::Duration;

use tertulia_e2e::{ChatProcess, Proxy, ServerProcess};

const PASS: &str = "forged packet passphrase";

/// The kinds of the `error` events seen so far.
fn error_kinds(chat: &ChatProcess) -> Vec<String> {
    chat.seen
        .iter()
        .filter(|e| e["type"] == "error")
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `ana` behind the proxy typed `texts`: `bea`, connected directly, gets each exactly once, and
/// `ana` leaves cleanly once all are acknowledged.
async fn delivered_exactly_once(ana: &mut ChatProcess, bea: &mut ChatProcess, texts: &[&str]) {
    assert_eq!(bea.wait_messages_from("ana", texts.len()).await, texts);
    ana.close_stdin();
    assert_eq!(
        ana.exit_code().await,
        Some(0),
        "all acked; saw {:#?}",
        ana.seen
    );
    bea.drain_for(Duration::from_millis(300)).await;
    assert_eq!(bea.messages_from("ana"), texts, "exactly once");
}

async fn room() -> (ServerProcess, Proxy, ChatProcess) {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let mut bea = ChatProcess::start(server.addr, "bea", PASS, &[]).await;
    bea.wait_type("connected").await;
    (server, proxy, bea)
}

#[tokio::test]
async fn a_forged_reject_before_the_hello_is_checked_again_not_believed() {
    let (_server, proxy, mut bea) = room().await;
    proxy.forge_reject_once(&[1]); // "authentication failed"
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.say("typed before connecting").await;
    let refused = ana.wait_type("error").await;
    assert_eq!(refused["kind"], "passphrase_refused", "{refused}");
    ana.wait_type("connected").await;
    ana.say("typed once in").await;
    delivered_exactly_once(
        &mut ana,
        &mut bea,
        &["typed before connecting", "typed once in"],
    )
    .await;
    assert_eq!(error_kinds(&ana), ["passphrase_refused"]);
    assert!(
        proxy.connections() >= 2,
        "a fresh connection after the refusal"
    );
}

#[tokio::test]
async fn a_forged_answer_that_is_not_tertulia_is_checked_again_not_believed() {
    let (_server, proxy, mut bea) = room().await;
    proxy.forge_once(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.say("typed before connecting").await;
    let error = ana.wait_type("error").await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a Tertulia server") && m.contains("checking again")),
        "{error}"
    );
    ana.wait_type("connected").await;
    delivered_exactly_once(&mut ana, &mut bea, &["typed before connecting"]).await;
}

#[tokio::test]
async fn a_flipped_byte_in_the_handshake_response_is_a_refusal_checked_again_not_believed() {
    // Version 2: a response that fails its check is what a wrong passphrase looks like too
    // (the SPAKE2 keys differ); the client cannot tell, so it counts it as a refusal —
    // believed only on the third in a row — and tries again.
    let (_server, proxy, mut bea) = room().await;
    proxy.flip_handshake_response_once();
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.say("typed before connecting").await;
    let tampered = ana.wait_type("error").await;
    assert_eq!(tampered["kind"], "passphrase_refused", "{tampered}");
    assert!(
        tampered["message"]
            .as_str()
            .is_some_and(|m| m.contains("(or someone interfered)")),
        "{tampered}"
    );
    ana.wait_type("connected").await;
    ana.say("typed once in").await;
    delivered_exactly_once(
        &mut ana,
        &mut bea,
        &["typed before connecting", "typed once in"],
    )
    .await;
    assert_eq!(error_kinds(&ana), ["passphrase_refused"]);
}

#[tokio::test]
async fn an_altered_salt_is_reported_as_a_changed_room_and_the_real_one_still_connects() {
    let (_server, proxy, mut bea) = room().await;
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    ana.say("before the cut").await;
    bea.wait_messages_from("ana", 1).await;
    // The next connection's Hello carries another salt; the handshake with it fails at the
    // server (the Hello is in the Noise prologue, which message 1's tag covers), which
    // answers Reject(4).
    proxy.alter_salt_once();
    proxy.cut_all();
    ana.say("typed while reconnecting").await;
    let changed = ana
        .wait_for("room_changed", |e| {
            e["type"] == "error" && e["kind"] == "room_changed"
        })
        .await;
    assert!(
        changed["message"]
            .as_str()
            .is_some_and(|m| m.contains("the room at this address changed")),
        "{changed}"
    );
    ana.wait_for("connected again", |e| {
        e["type"] == "connected" && e["resumed"] == true
    })
    .await;
    ana.say("typed once back").await;
    delivered_exactly_once(
        &mut ana,
        &mut bea,
        &[
            "before the cut",
            "typed while reconnecting",
            "typed once back",
        ],
    )
    .await;
    let kinds = error_kinds(&ana);
    assert!(
        kinds.contains(&"protocol".to_owned()) && !kinds.contains(&"wrong_passphrase".to_owned()),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "room_changed").count(),
        1,
        "the real salt again is not a change: {kinds:?}"
    );
}

#[tokio::test]
async fn a_refusal_that_repeats_on_fresh_connections_is_believed() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = ChatProcess::start(server.addr, "ana", "not the passphrase", &[]).await;
    assert_eq!(
        ana.exit_code().await,
        Some(3),
        "wrong passphrase; saw {:#?}",
        ana.seen
    );
    let kinds = error_kinds(&ana);
    assert_eq!(
        kinds,
        [
            "passphrase_refused",
            "passphrase_refused",
            "wrong_passphrase"
        ],
        "believed on the third refusal"
    );
}

/// After ana's passphrase completed a handshake through the proxy, the proxy spoils message 2
/// on the next 4 connections (what an attacker playing the server with wrong guesses causes):
/// each is `handshake_tampered`, not a refusal — so no `wrong_passphrase` stop on the 3rd —
/// and the 4th makes the next attempt wait an extra second, which the client reports and
/// counts down; then it gets back in and delivers.
#[tokio::test]
async fn failing_responses_after_a_proven_passphrase_are_tampering_slowed_down_not_a_stop() {
    let (_server, proxy, mut bea) = room().await;
    let mut ana = ChatProcess::start(proxy.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    ana.say("before the cut").await;
    bea.wait_messages_from("ana", 1).await;
    proxy.flip_handshake_responses(4);
    proxy.cut_all();
    ana.say("typed while reconnecting").await;
    ana.wait_for("connected again", |e| {
        e["type"] == "connected" && e["resumed"] == true
    })
    .await;
    ana.say("typed once back").await;
    delivered_exactly_once(
        &mut ana,
        &mut bea,
        &[
            "before the cut",
            "typed while reconnecting",
            "typed once back",
        ],
    )
    .await;
    let kinds = error_kinds(&ana);
    assert_eq!(
        kinds.iter().filter(|k| *k == "handshake_tampered").count(),
        4,
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| k == "passphrase_refused" || k == "wrong_passphrase"),
        "{kinds:?}"
    );
    let tampered: Vec<usize> = ana
        .seen
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "handshake_tampered")
        .map(|(i, _)| i)
        .collect();
    for (n, &at) in tampered.iter().enumerate() {
        let error = &ana.seen[at];
        assert!(
            error["message"].as_str().is_some_and(|m| m
                .starts_with("the room's answer did not check out — someone may be interfering")),
            "{error}"
        );
        let reconnecting = ana.seen[at..]
            .iter()
            .find(|e| e["type"] == "reconnecting")
            .expect("a reconnect after it");
        let delay_ms = reconnecting["delay_ms"].as_u64().unwrap_or_default();
        if n < 3 {
            assert!(error["retry_after_secs"].is_null(), "{error}");
        } else {
            assert_eq!(error["retry_after_secs"], 1, "{error}");
            assert!(
                delay_ms >= 1000,
                "the extra second is in the delay: {reconnecting}"
            );
        }
    }
    assert!(proxy.connections() >= 6, "one per attempt");
}
