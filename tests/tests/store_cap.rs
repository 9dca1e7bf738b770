//! A full room database does not stop the room: members filling the size cap
//! (`--max-store-mib`) make the oldest history give way, and chat goes on — every message
//! acked exactly once, none refused — with the files held to the cap and the newest history
//! kept. (A genuinely full disk still refuses messages, losing none: `history.rs`.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tertulia_core::client::{self, ClientConfig, ClientEvent};
use tertulia_e2e::{ChatProcess, DataDir, ServerProcess, WAIT};

const PASS: &str = "size cap passphrase";
const CAP: u64 = 1024 * 1024;
/// Messages each member sends, of about 7 KB: three members write about three times the cap.
const EACH: usize = 150;

fn text(nick: &str, i: usize) -> String {
    format!("{nick} {i:03} {}", "w".repeat(7000))
}

/// Ids of a member's messages the server acknowledged, in the order the acks came.
fn acked(member: &ChatProcess) -> Vec<u64> {
    member
        .seen
        .iter()
        .filter(|e| e["type"] == "acked")
        .flat_map(|e| e["ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id.as_u64())
        .collect()
}

async fn next(events: &mut tokio::sync::mpsc::Receiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("timed out waiting for a client event")
        .expect("the client stopped")
}

#[tokio::test]
async fn at_the_size_cap_the_oldest_history_gives_way_and_chat_goes_on() {
    let dir = DataDir::new("cap");
    let args = [
        "--data-dir",
        dir.path(),
        "--max-store-mib",
        "1",
        "--flood-rate",
        "0",
        "--backlog",
        "20",
    ];
    let server = ServerProcess::start("127.0.0.1:0", PASS, &args).await;

    // Watch the database files' sizes all along.
    let files = PathBuf::from(dir.path());
    let (max_db, max_wal) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (max_db, max_wal, done) = (max_db.clone(), max_wal.clone(), done.clone());
        tokio::spawn(async move {
            let len = |name: &str| std::fs::metadata(files.join(name)).map_or(0, |m| m.len());
            while !done.load(Ordering::Relaxed) {
                max_db.fetch_max(len("room.sqlite3"), Ordering::Relaxed);
                max_wal.fetch_max(len("room.sqlite3-wal"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let nicks = ["ana", "ben", "cat"];
    let mut members = Vec::new();
    for nick in nicks {
        let mut member = ChatProcess::start(server.addr, nick, PASS, &[]).await;
        member.wait_type("connected").await;
        members.push(member);
    }
    for i in 0..EACH {
        for (member, nick) in members.iter_mut().zip(nicks) {
            member.say(&text(nick, i)).await;
        }
    }
    for member in &mut members {
        member
            .wait_for("the last message acked", |e| {
                e["type"] == "acked"
                    && e["ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == EACH as u64))
            })
            .await;
    }
    // Everyone got everyone's messages, in order, once; nothing was refused.
    for member in &mut members {
        for other in nicks {
            let expected: Vec<String> = (0..EACH).map(|i| text(other, i)).collect();
            if other == member.nick {
                let mut ids = acked(member);
                ids.dedup();
                assert_eq!(
                    ids,
                    (1..=EACH as u64).collect::<Vec<_>>(),
                    "{}: each message acked once, in order",
                    member.nick
                );
            } else {
                assert_eq!(
                    member.wait_messages_from(other, EACH).await,
                    expected,
                    "{} got {other}'s messages",
                    member.nick
                );
            }
        }
    }
    for member in &mut members {
        member.drain_for(Duration::from_millis(200)).await;
        let errors: Vec<_> = member
            .seen
            .iter()
            .filter(|e| e["type"] == "error")
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", member.nick);
        for other in nicks.iter().filter(|n| **n != member.nick) {
            assert_eq!(member.messages_from(other).len(), EACH, "exactly once");
        }
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("watcher");
    let (max_db, max_wal) = (
        max_db.load(Ordering::Relaxed),
        max_wal.load(Ordering::Relaxed),
    );
    println!(
        "wrote {} KiB of messages; largest database file {max_db} bytes, largest WAL {max_wal} bytes",
        3 * EACH * 7000 / 1024
    );
    assert!(max_db <= CAP, "database file {max_db} over the 1 MiB cap");
    // The WAL is checkpointed every eighth of the cap (32 pages here) and cut back after:
    // at most that, one transaction and an eviction's deletions — and on a loaded machine a
    // checkpoint that waited on a reader. Bounded, far from growing with what was written.
    assert!(max_wal <= CAP / 2, "WAL {max_wal} over half the cap");
    server.wait_for_log("the oldest history was deleted").await;

    // A newcomer: the room starts later now — the oldest messages are gone from its backlog
    // and from paging — and the newest are there.
    let (dan, mut events) = client::spawn(ClientConfig::new(server.addr.to_string(), "dan", PASS));
    let mut seen = Vec::new();
    let oldest_seq = loop {
        if let ClientEvent::Connected { oldest_seq, .. } = next(&mut events).await {
            break oldest_seq;
        }
    };
    loop {
        match next(&mut events).await {
            ClientEvent::Join { nick, .. } if nick == "dan" => break,
            event => seen.push(event),
        }
    }
    let (mut more, mut pages) = (true, 0);
    while more {
        dan.load_older().await;
        let page = loop {
            if let ClientEvent::Older {
                events: page,
                more: m,
            } = next(&mut events).await
            {
                more = m;
                break page;
            }
        };
        seen.splice(0..0, page);
        pages += 1;
        assert!(pages < 100, "paging never ends");
    }
    let kept: Vec<(u64, String)> = seen
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message { seq, text, .. } => Some((*seq, text.clone())),
            _ => None,
        })
        .collect();
    let first_seq = kept
        .first()
        .map(|(seq, _)| *seq)
        .expect("some history kept");
    println!(
        "kept {} of {} messages, from seq {first_seq} (welcome.oldest_seq {oldest_seq})",
        kept.len(),
        3 * EACH
    );
    assert_eq!(
        first_seq, oldest_seq,
        "paging reaches the oldest event kept"
    );
    assert!(
        oldest_seq > 3 * EACH as u64 / 2,
        "the oldest history is gone: oldest kept {oldest_seq}"
    );
    assert!(
        kept.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "contiguous, no holes"
    );
    assert!(
        (kept.len() as u64) * 7000 >= CAP / 2,
        "no more evicted than needed: {} kept",
        kept.len()
    );
    for nick in nicks {
        assert!(
            kept.iter().any(|(_, t)| *t == text(nick, EACH - 1)),
            "{nick}'s newest message is there"
        );
        assert!(
            !kept.iter().any(|(_, t)| *t == text(nick, 0)),
            "{nick}'s oldest message is gone"
        );
    }

    // After a restart the room still starts at the same oldest event.
    dan.disconnect().await;
    let listen = server.addr.to_string();
    assert_eq!(server.terminate().await, Some(0));
    let server = ServerProcess::start(&listen, PASS, &args).await;
    let (_eve, mut events) = client::spawn(ClientConfig::new(server.addr.to_string(), "eve", PASS));
    let restarted_oldest = loop {
        match tokio::time::timeout(WAIT, events.recv()).await {
            Ok(Some(ClientEvent::Connected { oldest_seq, .. })) => break oldest_seq,
            Ok(Some(_)) => {}
            other => panic!("eve never connected: {other:?}"),
        }
    };
    assert_eq!(
        restarted_oldest, oldest_seq,
        "oldest_seq kept across a restart"
    );
}
