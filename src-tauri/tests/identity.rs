//! The host's identity through IPC, as the window uses it (mock runtime, real rooms on
//! loopback): the hosted room keeps one identity in `host.key` in the app's data directory,
//! shows its fingerprint and puts it in the invite code; a join pins the host in
//! `known_hosts`; another host at the same address is refused with both fingerprints and
//! nothing sent, until `trust_host` with the presented fingerprint re-pins it; an invite's
//! fingerprint admits no other host.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::{exclusive, is, TestApp, WAIT};
use tauri::Manager;
use tertulia_core::client::{self, ClientConfig, ClientEvent};
use tertulia_core::identity::{HostKey, KnownHosts};
use tertulia_core::invite::Invite;
use tertulia_core::server::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

const PASS: &str = "identity test passphrase, long enough";

/// The app's data directory (under the throw-away `XDG_DATA_HOME`).
fn data_dir(app: &TestApp) -> PathBuf {
    let dir = app.app.path().app_data_dir().expect("a data directory");
    assert!(
        dir.starts_with(std::env::var_os("XDG_DATA_HOME").expect("set")),
        "{}",
        dir.display()
    );
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A real room on 127.0.0.1:`port` with identity `key`, until stopped.
struct Room {
    stop: CancellationToken,
    task: tauri::async_runtime::JoinHandle<()>,
}

impl Room {
    fn start(port: u16, key: &HostKey) -> Self {
        let config = ServerConfig {
            host_key: Some(key.clone()),
            ..ServerConfig::default()
        };
        let server = tauri::async_runtime::block_on(Server::bind(
            &format!("127.0.0.1:{port}"),
            PASS,
            config,
        ))
        .expect("a room on 127.0.0.1");
        let stop = CancellationToken::new();
        let task = tauri::async_runtime::spawn(server.run(stop.clone().cancelled_owned()));
        Self { stop, task }
    }

    /// Stop it and wait until its port is free again.
    fn stop(self) {
        self.stop.cancel();
        let _ = tauri::async_runtime::block_on(self.task);
    }
}

fn join(app: &TestApp, port: u16, fingerprint: Option<&str>) {
    let mut args = json!({ "host": "127.0.0.1", "port": port, "passphrase": PASS, "nick": "ana" });
    if let Some(fp) = fingerprint {
        args["fingerprint"] = json!(fp);
    }
    assert_eq!(app.invoke("connect", args), Ok(Value::Null));
}

/// The session's first `connected` or `error` (connecting and the like skipped).
fn outcome(app: &TestApp) -> Value {
    app.chat_event("connected or an error", |e| {
        e["type"] == "connected" || e["type"] == "error"
    })
}

/// Someone already in the room at `port` ("watcher"): the nicknames that join after it.
fn watcher(port: u16) -> (client::ClientHandle, std::sync::mpsc::Receiver<String>) {
    // On the app's runtime, which the client's task needs.
    let config = ClientConfig::new(format!("127.0.0.1:{port}"), "watcher", PASS);
    let (handle, mut events) = tauri::async_runtime::block_on(async { client::spawn(config) });
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    tauri::async_runtime::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                ClientEvent::Connected { .. } => {
                    let _ = ready_tx.send(());
                }
                ClientEvent::Join {
                    nick,
                    history: false,
                    ..
                } if nick != "watcher" => {
                    let _ = tx.send(nick);
                }
                _ => {}
            }
        }
    });
    ready_rx.recv_timeout(WAIT).expect("the watcher joined");
    (handle, rx)
}

#[test]
fn the_hosted_room_keeps_one_identity_shows_it_and_its_invite_carries_it() {
    let _one = exclusive();
    let app = TestApp::new();
    let data = data_dir(&app);
    let host = |app: &TestApp| {
        let info = app
            .invoke(
                "host_server",
                json!({ "port": free_port(), "passphrase": PASS, "nick": "ana", "reach": "computer" }),
            )
            .unwrap_or_else(|e| panic!("hosting failed: {e}"));
        let connected = app.chat_event("the host's own window connected", is("connected"));
        (info, connected)
    };
    let (info, connected) = host(&app);
    let fingerprint = info["fingerprint"]
        .as_str()
        .expect("a fingerprint")
        .to_owned();
    let key = HostKey::load_or_create(&data.join("host.key")).expect("the key it made");
    assert_eq!(fingerprint, key.public().fingerprint().to_string());
    let port = info["port"].as_u64().expect("port");
    let invite = info["invite"].as_str().expect("invite");
    assert!(
        invite.starts_with(&format!("tertulia://127.0.0.1:{port}/{fingerprint}#")),
        "{invite}"
    );
    let read: Invite = invite.parse().expect("the invite reads back");
    assert_eq!(read.fingerprint, Some(key.public().fingerprint()));
    assert_eq!(read.passphrase, PASS);
    assert_eq!(connected["host_fingerprint"], json!(fingerprint));
    assert_eq!(app.invoke("stop_hosting", json!({})), Ok(Value::Null));

    // Hosting again (another app on the same data directory): the same identity.
    let again = TestApp::new();
    let (info, _) = host(&again);
    assert_eq!(info["fingerprint"], json!(fingerprint), "one identity");
    assert_eq!(again.invoke("stop_hosting", json!({})), Ok(Value::Null));

    // A damaged key is refused with its own kind, and left for the host to look at.
    let path = data.join("host.key");
    let good = std::fs::read(&path).expect("the key file");
    std::fs::write(&path, "tertulia-host-key-v1 not-hex\n").expect("damage it");
    let refused = again
        .invoke(
            "host_server",
            json!({ "port": free_port(), "passphrase": PASS, "nick": "ana", "reach": "computer" }),
        )
        .expect_err("no room under another identity");
    assert_eq!(refused["kind"], "host_key", "{refused}");
    assert!(refused["reason"]
        .as_str()
        .is_some_and(|r| r.contains("damaged")));
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        "tertulia-host-key-v1 not-hex\n"
    );
    std::fs::write(&path, good).expect("restore it");
}

#[test]
fn fingerprints_from_the_window_are_checked_and_trust_needs_a_join() {
    let _one = exclusive();
    let app = TestApp::new();
    let refused = app
        .invoke(
            "connect",
            json!({ "host": "127.0.0.1", "port": 5555, "passphrase": PASS, "nick": "ana",
                    "fingerprint": "3f2a-91c0" }),
        )
        .expect_err("not a fingerprint");
    assert_eq!(refused["kind"], "invalid", "{refused}");
    assert!(refused["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("Room identity:")));
    let nothing = app
        .invoke(
            "trust_host",
            json!({ "fingerprint": "3f2a-91c0-5b7e-0d44-a1c9-77e2" }),
        )
        .expect_err("no join to repeat");
    assert_eq!(nothing["kind"], "not_connected", "{nothing}");
    let bad = app
        .invoke("trust_host", json!({ "fingerprint": "zz" }))
        .expect_err("not a fingerprint");
    assert_eq!(bad["kind"], "invalid", "{bad}");
}

#[test]
fn another_identity_at_a_pinned_address_is_refused_until_the_user_trusts_it() {
    let _one = exclusive();
    let app = TestApp::new();
    let pins = app.dir.path().join("known_hosts");
    let port = free_port();
    let (a, b) = (HostKey::generate(), HostKey::generate());
    let (fa, fb) = (
        a.public().fingerprint().to_string(),
        b.public().fingerprint().to_string(),
    );
    let addr = format!("127.0.0.1:{port}");

    // First contact: trusted, and pinned in the app's known_hosts.
    let room_a = Room::start(port, &a);
    join(&app, port, None);
    let first = outcome(&app);
    assert_eq!(first["type"], "connected", "{first}");
    assert_eq!(first["host_fingerprint"], json!(fa));
    let pinned = KnownHosts::load(&pins).expect("the pins");
    assert_eq!(pinned.pinned(&addr), Some(a.public()));
    assert_eq!(app.invoke("disconnect", json!({})), Ok(Value::Null));
    room_a.stop();

    // The same passphrase, another identity, at the same address.
    let room_b = Room::start(port, &b);
    let (watcher, joined) = watcher(port);
    join(&app, port, None);
    let refused = outcome(&app);
    assert_eq!(refused["kind"], "host_identity_changed", "{refused}");
    assert_eq!(refused["pinned_fingerprint"], json!(fa));
    assert_eq!(refused["presented_fingerprint"], json!(fb));
    let ended = app.chat_event("the session stopped", is("disconnected"));
    assert_ne!(ended["reason"], "quit", "{ended}");
    let seen = joined.recv_timeout(std::time::Duration::from_secs(2));
    assert!(
        seen.is_err(),
        "nothing was sent to the other host: {seen:?}"
    );
    assert_eq!(
        KnownHosts::load(&pins).expect("the pins").pinned(&addr),
        Some(a.public()),
        "the pin stays until the user decides"
    );

    // "Trust the new identity": the same join, expecting exactly the presented one.
    assert_eq!(
        app.invoke("trust_host", json!({ "fingerprint": fb })),
        Ok(Value::Null)
    );
    let trusted = outcome(&app);
    assert_eq!(trusted["type"], "connected", "{trusted}");
    assert_eq!(trusted["host_fingerprint"], json!(fb));
    assert_eq!(joined.recv_timeout(WAIT).as_deref(), Ok("ana"));
    assert_eq!(
        KnownHosts::load(&pins).expect("the pins").pinned(&addr),
        Some(b.public()),
        "re-pinned"
    );
    assert_eq!(app.invoke("disconnect", json!({})), Ok(Value::Null));

    // An invite code's fingerprint admits no other host, pinned or not.
    join(&app, port, Some(&fa));
    let refused = outcome(&app);
    assert_eq!(refused["kind"], "host_identity_changed", "{refused}");
    assert_eq!(refused["pinned_fingerprint"], json!(fa), "the invite's");
    assert_eq!(refused["presented_fingerprint"], json!(fb));
    assert_eq!(app.invoke("disconnect", json!({})), Ok(Value::Null));
    tauri::async_runtime::block_on(watcher.disconnect());
    room_b.stop();
}
