//! Hosting as the window asks for it (`host_server` over IPC on the mock runtime) with a
//! real room on real sockets: the addresses shown are the ones the room listens on — a
//! connection to any other is refused — the host's own window gets in, the invite names
//! the LAN address, and hosting raises the open-file limit; the room's name and whether it
//! is shown on the network (here always "not": support::mock_app turns announcing off, the
//! announcement itself is tested in the lab, tests/discovery_lab.rs).
//!
//! The hosted room lives in the app's data directory: every test here hosts in the same
//! throw-away `XDG_DATA_HOME`, one at a time.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use support::{exclusive, is, TestApp};
use tertulia_core::server::addresses;

const PASS: &str = "hosting test passphrase, long enough";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Stops the hosted room when dropped, also when a test fails, so the next one can host.
struct Hosted<'a>(&'a TestApp);

impl Drop for Hosted<'_> {
    fn drop(&mut self) {
        let _ = self.0.invoke("stop_hosting", json!({}));
    }
}

/// Host with `reach`; the host's window is connected when this returns.
fn host<'a>(app: &'a TestApp, reach: &str) -> (Hosted<'a>, Value) {
    let info = app
        .invoke(
            "host_server",
            json!({ "port": free_port(), "passphrase": PASS, "nick": "ana", "reach": reach }),
        )
        .unwrap_or_else(|e| panic!("hosting ({reach}) failed: {e}"));
    let hosted = Hosted(app);
    app.chat_event("the host's own window connected", is("connected"));
    (hosted, info)
}

fn shown(info: &Value) -> Vec<SocketAddr> {
    info["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .map(|a| a.as_str().expect("a string").parse().expect("IP:PORT"))
        .collect()
}

/// Every address of this computer others could use, on `port`.
fn every_other_address(port: u16) -> Vec<SocketAddr> {
    let any = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port);
    addresses::shareable_on(&addresses::interface_addrs(), any, true)
}

#[test]
fn this_computer_only_listens_on_loopback_and_refuses_every_other_address() {
    let _one = exclusive();
    let app = TestApp::new();
    let (_hosted, info) = host(&app, "computer");
    let port = info["port"].as_u64().expect("port") as u16;
    let loopback: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        shown(&info),
        vec![loopback],
        "nothing but loopback is shown"
    );
    assert!(info["invite"]
        .as_str()
        .unwrap()
        .starts_with(&format!("tertulia://127.0.0.1:{port}/")));
    let others = every_other_address(port);
    if others.is_empty() {
        support::skip("this computer has no address but loopback: nothing to refuse");
    }
    for other in others {
        assert!(
            !accepts(other),
            "{other} must be refused for \"this computer only\""
        );
    }
    assert_eq!(info["reach"], "computer", "the screen says which");
}

#[test]
fn all_networks_accepts_on_every_address_it_shows_and_the_invite_names_the_lan() {
    let _one = exclusive();
    let app = TestApp::new();
    let (_hosted, info) = host(&app, "all");
    let port = info["port"].as_u64().expect("port") as u16;
    let addrs = shown(&info);
    assert!(addrs.iter().all(|a| !a.ip().is_loopback()), "{addrs:?}");
    for addr in &addrs {
        assert!(accepts(*addr), "{addr} is shown, so it must accept");
    }
    assert_eq!(
        addrs,
        every_other_address(port),
        "every address it listens on"
    );
    if let Some(lan) = addresses::lan_address(&addresses::interface_addrs()) {
        let shown_ip = if lan.is_ipv6() {
            format!("[{lan}]")
        } else {
            lan.to_string()
        };
        assert!(
            info["invite"]
                .as_str()
                .unwrap()
                .starts_with(&format!("tertulia://{shown_ip}:{port}/")),
            "{info}"
        );
    }
    assert_eq!(info["reach"], "all", "the screen says which");
}

#[test]
fn this_network_listens_on_the_lan_address_only() {
    let _one = exclusive();
    let Some(lan) = addresses::lan_address(&addresses::interface_addrs()) else {
        support::skip("no LAN address on this computer");
        return;
    };
    let app = TestApp::new();
    let (_hosted, info) = host(&app, "network");
    let port = info["port"].as_u64().expect("port") as u16;
    assert_eq!(shown(&info), vec![SocketAddr::new(lan, port)]);
    let loopback: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(!accepts(loopback), "loopback is not the LAN");
    assert_eq!(info["reach"], "network", "the screen says which");
}

#[test]
fn hosting_raises_the_open_file_limit() {
    let _one = exclusive();
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    let low = 256.min(hard);
    rlimit::setrlimit(rlimit::Resource::NOFILE, low, hard).expect("lower the soft limit");
    let app = TestApp::new();
    let _hosted = host(&app, "computer");
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    println!("open-file limit: {low} before hosting, {soft} after (hard {hard})");
    assert!(
        soft >= hard.min(1024 + 64),
        "the room serves 1024 connections: soft limit {soft}, hard {hard}"
    );
}

/// The messages a new member `nick` is given as history when it joins `port` on loopback.
fn history_seen_by_a_new_member(port: u16, nick: &str) -> Vec<String> {
    use tertulia_core::client::{self, ClientConfig, ClientEvent};
    tauri::async_runtime::block_on(async move {
        let (handle, mut events) =
            client::spawn(ClientConfig::new(format!("127.0.0.1:{port}"), nick, PASS));
        let mut texts = Vec::new();
        let deadline = tokio::time::Instant::now() + support::WAIT;
        // Its history comes before anything said after it joined: say something, collect
        // history until that comes back.
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ClientEvent::Message {
                    text,
                    history: true,
                    ..
                })) => texts.push(text),
                Ok(Some(ClientEvent::Connected { .. })) => {
                    handle.send("ben is here").await.expect("ben sends");
                }
                Ok(Some(ClientEvent::Message { own: true, .. })) => break,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("{nick} never got into the room"),
            }
        }
        handle.disconnect().await;
        texts
    })
}

#[test]
fn the_host_can_keep_less_history_than_the_default() {
    let _one = exclusive();
    let app = TestApp::new();
    let port = free_port();
    let args = |history: Value| json!({ "port": port, "passphrase": PASS, "nick": "ana", "reach": "computer", "history": history });
    let refused = app
        .invoke("host_server", args(json!({ "maxMessages": 0 })))
        .expect_err("keeping no message at all is refused");
    assert_eq!(refused["kind"], "invalid", "{refused}");
    assert!(refused["message"].as_str().unwrap().starts_with("History:"));

    // A room that keeps its last 3 events, the host's own join among them.
    let hosted = Hosted(&app);
    app.invoke("host_server", args(json!({ "maxMessages": 3 })))
        .expect("hosting");
    app.chat_event("the host connected", is("connected"));
    for i in 1..=6 {
        app.invoke("send", json!({ "text": format!("message {i}") }))
            .expect("sent");
        app.chat_event(&format!("message {i} acked"), is("acked"));
    }
    let seen = history_seen_by_a_new_member(port, "ben");
    println!(
        "a new member got {} messages of history: {seen:?}",
        seen.len()
    );
    assert!(seen.len() <= 3, "at most 3 events kept: {seen:?}");
    assert!(seen.contains(&"message 6".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"message 1".to_owned()), "{seen:?}");
    drop(hosted);

    // The defaults (history absent) keep more than that: the choice made the difference.
    let defaults = app.invoke("history_defaults", json!({})).expect("defaults");
    assert!(
        defaults["maxMessages"].is_null() || defaults["maxMessages"].as_u64() > Some(3),
        "{defaults}"
    );
}

#[test]
fn the_room_name_is_checked_and_the_host_panel_says_whether_the_room_is_shown() {
    let _one = exclusive();
    let app = TestApp::new();
    let args = |extra: Value| {
        let mut args =
            json!({ "port": free_port(), "passphrase": PASS, "nick": "ana", "reach": "all" });
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        args
    };
    let refused = app
        .invoke("host_server", args(json!({ "roomName": "ñ".repeat(32) })))
        .expect_err("64 bytes do not fit the announcement");
    assert_eq!(refused["kind"], "invalid_room_name", "{refused}");
    assert_eq!(refused["message"], "Room name: at most 63 bytes");
    let refused = app
        .invoke("host_server", args(json!({ "roomName": "Sala\u{202e}" })))
        .expect_err("bidi controls are refused");
    assert_eq!(refused["kind"], "invalid_room_name", "{refused}");
    assert_eq!(
        app.invoke("hosting_info", json!({})),
        Ok(Value::Null),
        "nothing hosted"
    );

    // Asked for (the default), but announcing is off in this environment: said so.
    let hosted = Hosted(&app);
    let info = app.invoke("host_server", args(json!({}))).expect("hosting");
    assert_eq!(
        info["announce"],
        json!({ "status": "failed", "cause": "turned_off", "reason": "turned off by TERTULIA_DISCOVERY=off" })
    );
    drop(hosted);
    // Not asked for, or "this computer only" (nobody else could join): not shown.
    for extra in [json!({ "announce": false }), json!({ "reach": "computer" })] {
        let hosted = Hosted(&app);
        let info = app
            .invoke("host_server", args(extra.clone()))
            .expect("hosting");
        assert_eq!(info["announce"], json!({ "status": "off" }), "{extra}");
        drop(hosted);
    }
    // The Join form's list says why it stays empty.
    let refused = app
        .invoke("browse_rooms", json!({}))
        .expect_err("browsing is off");
    assert_eq!(refused["kind"], "discovery_failed", "{refused}");
    assert_eq!(
        refused["cause"], "turned_off",
        "the window translates it: {refused}"
    );
    assert_eq!(app.invoke("stop_browsing", json!({})), Ok(Value::Null));
}

/// "Reachable from the internet" with "this computer only" has nothing to forward to: refused
/// with its own kind before anything listens (and so before any router is asked). Without the
/// option no mapping is attempted at all (`internet` is null). The mapping itself is tested
/// against a real router in the network lab (tests/tests/netlab_reach.rs): here it would ask
/// the machine's real network.
#[test]
fn internet_reach_needs_a_network_and_is_off_unless_asked() {
    let _one = exclusive();
    let app = TestApp::new();
    let port = free_port();
    let refused = app
        .invoke(
            "host_server",
            json!({ "port": port, "passphrase": PASS, "nick": "ana", "reach": "computer", "internet": true }),
        )
        .expect_err("internet with this computer only");
    assert_eq!(refused["kind"], "internet_needs_network", "{refused}");
    assert_eq!(app.invoke("hosting_info", json!({})).unwrap(), Value::Null);
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "nothing listens on the port"
    );
    let (_hosted, info) = host(&app, "computer");
    assert_eq!(info["internet"], Value::Null, "{info}");
    assert_eq!(
        app.invoke("hosting_info", json!({})).unwrap()["internet"],
        Value::Null
    );
}
