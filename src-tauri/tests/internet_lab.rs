//! "Reachable from the internet" through the app's own commands against a real router: the app
//! (Tauri's mock runtime, real sockets) hosts with `internet: true` inside the network lab's
//! `lanA` namespace; the window's `internet-status` events say where the room is reachable, a
//! client on the WAN side gets the room's Hello at that address, and `stop_hosting` deletes the
//! mapping (the WAN is refused again).
//!
//! Ignored in an ordinary run: here it would ask the machine's real router. The lab test
//! `tests/tests/netlab_reach.rs` (`the_app_maps_the_port_and_deletes_it_on_stop`) runs it
//! inside `lanA` with `--ignored`, passing `NETLAB_PY` (the lab's helper script).

mod support;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{exclusive, TestApp};
use tauri::Listener;
use tertulia_app_lib::internet::INTERNET_EVENT;

const PORT: u16 = 5721;
const ROUTER_WAN: &str = "203.0.113.1";

/// The first bytes a TCP client in the lab's `wan` namespace gets at the router's external
/// address and `PORT` (netlab.py probe-tcp), as its JSON line.
fn probe_from_wan() -> Value {
    let script = std::env::var("NETLAB_PY").expect("NETLAB_PY: the lab's netlab.py");
    let python = std::env::var("NETLAB_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let out = Command::new("ip")
        .args(["netns", "exec", "wan", &python, &script, "probe-tcp"])
        .args(["--host", ROUTER_WAN, "--port", &PORT.to_string()])
        .output()
        .expect("probe-tcp in wan");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("probe-tcp printed {text:?}: {e}"))
}

fn wait_for(rx: &mpsc::Receiver<Value>, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(status) if pred(&status) => return status,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

#[test]
#[ignore = "needs the network lab: run by tests/tests/netlab_reach.rs inside lanA"]
fn hosting_with_internet_in_the_lab() {
    let _one = exclusive();
    let app = TestApp::new();
    let (tx, statuses) = mpsc::channel();
    app.app.listen(INTERNET_EVENT, move |e| {
        let _ = tx.send(serde_json::from_str::<Value>(e.payload()).expect("JSON status"));
    });
    assert_eq!(
        probe_from_wan()["event"],
        "failed",
        "nothing mapped before hosting"
    );
    let info = app
        .invoke(
            "host_server",
            json!({ "port": PORT, "passphrase": "a passphrase for the lab room", "nick": "ana",
                    "reach": "all", "internet": true }),
        )
        .expect("hosting");
    assert_eq!(info["internet"]["port"], PORT, "{info}");
    let external = format!("{ROUTER_WAN}:{PORT}");
    let reachable = wait_for(&statuses, "reachable", |s| {
        s["state"] == "reachable" || s["state"] == "unreachable"
    });
    assert_eq!(reachable["state"], "reachable", "{reachable}");
    assert_eq!(reachable["external"], external.as_str());
    assert_eq!(
        reachable["lan"], "10.77.0.2",
        "the address facing the router"
    );
    let fingerprint = info["fingerprint"].as_str().expect("fingerprint");
    assert_eq!(
        reachable["invite"],
        format!("tertulia://{external}/{fingerprint}#a%20passphrase%20for%20the%20lab%20room")
    );
    let checked = wait_for(&statuses, "the self-check", |s| !s["check"].is_null());
    assert_eq!(
        checked["check"], "could_not_confirm",
        "no hairpin NAT in the lab"
    );
    let now = app.invoke("hosting_info", json!({})).expect("hosting_info");
    assert_eq!(now["internet"]["state"], "reachable", "{now}");
    let probe = probe_from_wan();
    assert!(
        probe["event"] == "received" && probe["data"].as_str().is_some_and(|d| d.contains("TRTL")),
        "the room's Hello from the WAN: {probe}"
    );
    app.invoke("stop_hosting", json!({})).expect("stop_hosting");
    wait_for(&statuses, "removed", |s| s["state"] == "removed");
    assert_eq!(
        probe_from_wan()["event"],
        "failed",
        "mapping deleted on stop"
    );
}
