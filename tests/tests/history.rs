//! Stored history: the configurable backlog, paging back through older history, retention by
//! count, and a full disk (a file size limit standing in for it) refusing messages with a
//! clear error and losing none of them. (The size cap evicting the oldest history instead
//! is crossed in `store_cap.rs`.)

use std::time::Duration;

use tertulia_core::client::{self, ClientConfig, ClientEvent, ClientHandle};
use tertulia_e2e::{ChatProcess, DataDir, ServerProcess, WAIT};
use tokio::sync::mpsc;

const PASS: &str = "history passphrase";

/// A library client in this process (it can page back, which `tertulia-chat --json` cannot).
struct Member {
    handle: ClientHandle,
    events: mpsc::Receiver<ClientEvent>,
    seen: Vec<ClientEvent>,
}

impl Member {
    fn join(addr: std::net::SocketAddr, nick: &str) -> Self {
        let (handle, events) = client::spawn(ClientConfig::new(addr.to_string(), nick, PASS));
        Self {
            handle,
            events,
            seen: Vec::new(),
        }
    }

    async fn wait_for(&mut self, what: &str, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let event = self.events.recv().await.expect("client stopped");
                self.seen.push(event.clone());
                if pred(&event) {
                    return event;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}; seen: {:?}", self.seen))
    }

    /// Texts of the backlog (history) messages received so far.
    fn backlog(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message {
                    text,
                    history: true,
                    ..
                } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    async fn page(&mut self) -> (Vec<ClientEvent>, bool) {
        self.handle.load_older().await;
        match self
            .wait_for("a page of older history", |e| {
                matches!(e, ClientEvent::Older { .. })
            })
            .await
        {
            ClientEvent::Older { events, more } => (events, more),
            _ => unreachable!(),
        }
    }
}

/// Texts of a page's messages, which come as the live events do: from history, and ours
/// marked as such.
fn texts(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message {
                text,
                history: true,
                ..
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn backlog_paging_and_retention() {
    let dir = DataDir::new("history");
    let port = tertulia_e2e::free_port().await;
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "--data-dir",
        dir.path(),
        "--backlog",
        "3",
        "--flood-rate",
        "0",
    ];
    let server = ServerProcess::start(&listen, PASS, &args).await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    let said: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    for text in &said {
        ana.say(text).await;
    }
    ana.wait_for("all acked", |e| {
        e["type"] == "acked"
            && e["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == 30))
    })
    .await;

    // Events so far: 1 ana joined, 2..=31 m0..m29. A newcomer gets the last 3 as backlog…
    let mut ben = Member::join(server.addr, "ben");
    ben.wait_for(
        "ben's own join",
        |e| matches!(e, ClientEvent::Join { nick, .. } if nick == "ben"),
    )
    .await;
    assert_eq!(ben.backlog(), said[27..].to_vec(), "backlog of 3");
    // …and pages back through the rest, oldest first, with nothing older than the first page.
    let (page, more) = ben.page().await;
    assert_eq!(texts(&page), said[..27].to_vec());
    assert!(matches!(&page[0], ClientEvent::Join { nick, history: true, .. } if nick == "ana"));
    assert!(
        page.iter()
            .all(|e| !matches!(e, ClientEvent::Message { own: true, .. })),
        "ben said none of them"
    );
    assert!(!more, "the first event of the room was reached");
    let (empty, more) = ben.page().await;
    assert!(empty.is_empty() && !more, "nothing before the first event");
    ben.handle.disconnect().await;
    ana.wait_for("ben left", |e| e["type"] == "leave" && e["nick"] == "ben")
        .await;

    // Restart keeping only the newest 10 events: 24..=33 (m22..m29, ben's join and leave).
    assert_eq!(server.terminate().await, Some(0));
    let mut args = args.to_vec();
    args.extend(["--retain-events", "10"]);
    let server = ServerProcess::start(&listen, PASS, &args).await;
    let mut cat = Member::join(server.addr, "cat");
    cat.wait_for(
        "cat's own join",
        |e| matches!(e, ClientEvent::Join { nick, .. } if nick == "cat"),
    )
    .await;
    assert_eq!(
        cat.backlog(),
        vec!["m29"],
        "backlog: m29, ben joined, ben left"
    );
    let (page, more) = cat.page().await;
    assert_eq!(
        texts(&page),
        said[22..29].to_vec(),
        "only what retention kept"
    );
    assert!(matches!(page[0], ClientEvent::Message { seq: 24, .. }));
    assert!(!more);
    drop(server);
}

#[tokio::test]
async fn a_full_disk_refuses_messages_clearly_and_delivers_them_once_space_is_freed() {
    let dir = DataDir::new("full");
    let port = tertulia_e2e::free_port().await;
    let listen = format!("127.0.0.1:{port}");
    // No size cap: only the "disk" (each file may grow to 512 KiB) limits the room, so
    // nothing is evicted and messages are refused.
    let args = [
        "--data-dir",
        dir.path(),
        "--max-store-mib",
        "unlimited",
        "--flood-rate",
        "0",
    ];
    let server = ServerProcess::start_with_file_limit(&listen, PASS, &args, Some(512 * 1024)).await;
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;
    // 200 messages of 6 KB: about 1.2 MB, more than the disk has room for.
    let said: Vec<String> = (0..200)
        .map(|i| format!("{i:03} {}", "x".repeat(6000)))
        .collect();
    for text in &said {
        ana.say(text).await;
    }
    let error = ana
        .wait_for("storage error", |e| {
            e["type"] == "error" && e["kind"] == "server_storage"
        })
        .await;
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not store")),
        "{error}"
    );
    server.wait_for_log("could not store a message").await;
    assert!(
        !server.log().contains("the oldest history was deleted"),
        "a full disk evicts nothing"
    );
    ben.drain_for(Duration::from_millis(500)).await;
    let delivered = ben.messages_from("ana");
    assert!(
        !delivered.is_empty() && delivered.len() < said.len(),
        "some stored, the rest refused: {}",
        delivered.len()
    );
    assert_eq!(
        delivered,
        said[..delivered.len()].to_vec(),
        "in order, no gap"
    );
    // Nothing refused was acknowledged: the client still holds it.
    let acked: Vec<u64> = ana
        .seen
        .iter()
        .filter(|e| e["type"] == "acked")
        .flat_map(|e| e["ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id.as_u64())
        .collect();
    assert_eq!(acked.iter().max().copied(), Some(delivered.len() as u64));

    // The host makes room (here: the limit goes) and restarts: the refused messages go
    // through, each exactly once, and nobody misses any.
    assert_eq!(server.terminate().await, Some(0));
    let _server = ServerProcess::start(&listen, PASS, &args).await;
    assert_eq!(ben.wait_messages_from("ana", said.len()).await, said);
    ana.close_stdin();
    assert_eq!(
        ana.exit_code().await,
        Some(0),
        "everything acked in the end"
    );
    ben.drain_for(Duration::from_millis(300)).await;
    assert_eq!(ben.messages_from("ana"), said, "exactly once");
}
