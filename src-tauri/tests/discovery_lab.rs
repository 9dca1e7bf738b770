//! Rooms on this network as the app does them (src/discovery.rs), in the netlab namespaces
//! (tests/src/netlab.rs in tertulia-e2e): the app on Tauri's mock runtime, driven over IPC as
//! the window drives it, with real mDNS on the lab's LAN and python-zeroconf (another DNS-SD
//! stack) on the other side.
//!
//! - A room the app hosts in lanA is seen from lanB with its name, port, protocol version and
//!   identity (never the passphrase), and is gone from there when hosting stops, or when the
//!   app exits while hosting (what its `RunEvent::Exit` hook runs).
//! - The Join form's list in lanB shows rooms python-zeroconf publishes in lanA (one of
//!   another protocol version, marked so), as `rooms-found` events; one that says goodbye
//!   leaves the list.
//!
//! The app runs inside a namespace because mDNS must never reach the machine's real network:
//! this binary runs itself again with `ip netns exec` and an environment variable naming the
//! part to play ([`ROLE`]); the test itself stays in the host's namespace and watches. Where
//! the lab cannot run, every trial is reported ignored with the reason (a failure with
//! `NETLAB_REQUIRED=1`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use tauri::Listener;
use tertulia_app_lib::discovery::{DISCOVERY_ENV, ROOMS_EVENT};
use tertulia_e2e::netlab::{self, Failed, NsProcess, Trial, LAB_WAIT, LAN_A};

/// The part a copy of this binary plays inside a namespace (`host` or `browse`).
const ROLE: &str = "TERTULIA_DISCOVERY_LAB_ROLE";
/// The file whose appearance tells that copy to stop.
const STOP_FILE: &str = "TERTULIA_DISCOVERY_LAB_STOP";
const PASS: &str = "discovery lab passphrase, long enough";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let stop = PathBuf::from(std::env::var_os(STOP_FILE).expect("a stop file"));
        match role.as_str() {
            "host" => play_host(&stop),
            "browse" => play_browse(&stop),
            other => panic!("no such role: {other}"),
        }
        return;
    }
    netlab::run_trials(vec![
        Trial::test(
            "a_hosted_room_is_seen_by_python_zeroconf_and_withdrawn_when_hosting_stops",
            || a_hosted_room_is_seen_and_withdrawn_on(Stop::StopHosting).map_err(Failed::from),
        ),
        Trial::test(
            "a_hosted_room_is_withdrawn_when_the_app_exits_while_hosting",
            || a_hosted_room_is_seen_and_withdrawn_on(Stop::Exit).map_err(Failed::from),
        ),
        Trial::test(
            "the_join_list_shows_rooms_python_zeroconf_publishes_and_drops_one_on_goodbye",
            || the_join_list_follows_the_network().map_err(Failed::from),
        ),
    ])
}

/// A fresh suffix for names and ports: tests in the lab see every room on its LAN.
fn rand_u32() -> u32 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::collections::hash_map::RandomState::new().hash_one(now) as u32
}

fn token() -> String {
    format!("{:08x}", rand_u32())
}

/// This binary again, in namespace `ns`, playing `role`; it stops when `stop` appears.
fn play_in(ns: &str, role: &str, stop: &Path, env: &[(&str, String)]) -> Result<NsProcess, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this test binary: {e}"))?;
    let mut command = netlab::in_ns(ns, exe);
    command
        .env(ROLE, role)
        .env(STOP_FILE, stop)
        .env(DISCOVERY_ENV, "on")
        .env_remove("NETLAB_REQUIRED");
    for (k, v) in env {
        command.env(k, v);
    }
    NsProcess::spawn(&format!("the app ({role}) in {ns}"), command)
}

fn json_line(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or(Value::Null)
}

/// How the hosting app is told to end: "Stop hosting", or the app exiting.
#[derive(Clone, Copy)]
enum Stop {
    StopHosting,
    Exit,
}

fn a_hosted_room_is_seen_and_withdrawn_on(how: Stop) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stop = dir.path().join("stop");
    let name = format!("Sala de Ana {}", token());
    let port = 20_000 + (rand_u32() % 20_000) as u16;

    let mut browser = NsProcess::spawn("python-zeroconf in lanB", {
        let mut c = netlab::netlab_py("lanB");
        c.args(["mdns-browse", "--lifetime", "180"]);
        c
    })?;
    browser.wait_line("browsing", LAB_WAIT, |l| {
        json_line(l)["event"] == "browsing"
    })?;

    let mut app = play_in(
        "lanA",
        "host",
        &stop,
        &[
            ("ROOM_NAME", name.clone()),
            ("ROOM_PORT", port.to_string()),
            ("HOST_EXIT", matches!(how, Stop::Exit).to_string()),
        ],
    )?;
    let hosting =
        json_line(&app.wait_line("hosting", LAB_WAIT, |l| json_line(l)["event"] == "hosting")?);
    let info = &hosting["info"];
    if info["announce"] != json!({ "status": "on", "name": name }) {
        return Err(format!("the host panel would say {}", info["announce"]));
    }
    let added = json_line(&browser.wait_line("the app's room", LAB_WAIT, |l| {
        let e = json_line(l);
        e["event"] == "added" && e["txt"]["room"] == name.as_str()
    })?);
    println!("python-zeroconf in lanB saw: {added}");
    let expect = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {added}"))
        }
    };
    expect(added["port"] == port, "the room's port")?;
    expect(
        added["txt"]["fp"] == info["fingerprint"],
        "the room's identity",
    )?;
    expect(
        added["txt"]["v"] == tertulia_core::hello::PROTOCOL_VERSION.to_string().as_str(),
        "the protocol version",
    )?;
    expect(
        added["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a == LAN_A)),
        "lanA's address",
    )?;
    expect(
        added["txt"].as_object().is_some_and(|t| t.len() == 3),
        "three TXT keys, nothing else",
    )?;
    expect(!added.to_string().contains(PASS), "no passphrase")?;

    std::fs::write(&stop, b"").map_err(|e| e.to_string())?;
    app.wait_line("stopped", LAB_WAIT, |l| json_line(l)["event"] == "stopped")?;
    let instance = added["name"].clone();
    browser.wait_line("the room withdrawn", LAB_WAIT, |l| {
        let e = json_line(l);
        e["event"] == "removed" && e["name"] == instance
    })?;
    app.wait_exit(LAB_WAIT)?;
    Ok(())
}

fn the_join_list_follows_the_network() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stop = dir.path().join("stop");
    let token = token();
    let (sala, old) = (format!("Sala {token}"), format!("Old {token}"));
    let fingerprint = "3f2a-91c0-5b7e-0d44-a1c9-77e2";
    let port = 20_000 + (rand_u32() % 20_000) as u16;

    let mut app = play_in("lanB", "browse", &stop, &[])?;
    app.wait_line("browsing", LAB_WAIT, |l| {
        json_line(l)["event"] == "browsing"
    })?;
    let publish = |instance: &str, room: &str, v: &str, port: u16| {
        let mut c = netlab::netlab_py("lanA");
        c.args([
            "mdns-publish",
            "--name",
            instance,
            "--host",
            &format!("pub-{token}"),
            "--address",
            LAN_A,
        ])
        .args(["--port", &port.to_string(), "--lifetime", "180"])
        .args([
            "--txt",
            &format!("room={room}"),
            "--txt",
            &format!("v={v}"),
            "--txt",
            &format!("fp={fingerprint}"),
        ]);
        NsProcess::spawn(&format!("python-zeroconf publishing {room}"), c)
    };
    let mut sala_pub = publish(&format!("sala-{token}"), &sala, "2", port)?;
    let _old_pub = publish(&format!("old-{token}"), &old, "1", port + 1)?;
    let room = |update: &Value, name: &str| -> Option<Value> {
        update["rooms"]
            .as_array()?
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
    };
    let both = json_line(&app.wait_line("both rooms listed", LAB_WAIT, |l| {
        let u = json_line(l);
        room(&u, &sala).is_some() && room(&u, &old).is_some()
    })?);
    let listed = room(&both, &sala).unwrap_or_default();
    println!("the window would list: {listed}");
    let address = format!("{LAN_A}:{port}");
    let want = json!({
        "id": listed["id"], "name": sala, "host": listed["host"], "address": address, "join_host": LAN_A,
        "port": port, "fingerprint": fingerprint, "compatible": true,
    });
    if listed != want {
        return Err(format!("listed {listed}, expected {want}"));
    }
    if room(&both, &old).is_some_and(|r| r["compatible"] != false) {
        return Err(format!("a room of protocol 1 is marked compatible: {both}"));
    }

    sala_pub.terminate()?;
    app.wait_line("the room gone after its goodbye", LAB_WAIT, |l| {
        let u = json_line(l);
        u["event"] == "rooms" && room(&u, &sala).is_none() && room(&u, &old).is_some()
    })?;
    std::fs::write(&stop, b"").map_err(|e| e.to_string())?;
    app.wait_line("stopped", LAB_WAIT, |l| json_line(l)["event"] == "stopped")?;
    app.wait_exit(LAB_WAIT)?;
    Ok(())
}

fn say(event: Value) {
    println!("{event}");
}

/// Wait (bounded) for the test to create `stop`.
fn wait_for_stop(stop: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !stop.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In lanA: host a room as the window would, say so, stop hosting when told.
fn play_host(stop: &Path) {
    let _one = support::exclusive();
    let (app, window) = support::mock_app();
    let port: u16 = std::env::var("ROOM_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .expect("ROOM_PORT");
    let name = std::env::var("ROOM_NAME").expect("ROOM_NAME");
    let args = json!({ "port": port, "passphrase": PASS, "nick": "ana", "reach": "all", "roomName": name });
    let info = support::invoke(&window, "host_server", args).expect("hosting in lanA");
    say(json!({ "event": "hosting", "info": info }));
    wait_for_stop(stop);
    if std::env::var("HOST_EXIT").is_ok_and(|v| v == "true") {
        // As the app does on its Exit event; then the process ends at once, as Tauri's does
        // (nothing is dropped: no best-effort goodbye from a destructor).
        tertulia_app_lib::discovery::withdraw_on_exit(app.handle());
        say(json!({ "event": "stopped" }));
        std::process::exit(0);
    } else {
        support::invoke(&window, "stop_hosting", json!({})).expect("stop hosting");
    }
    say(json!({ "event": "stopped" }));
    drop(app);
}

/// In lanB: browse as the Join form would, print every update, stop when told.
fn play_browse(stop: &Path) {
    let _one = support::exclusive();
    let (app, window) = support::mock_app();
    let (tx, updates) = mpsc::channel::<Value>();
    app.listen(ROOMS_EVENT, move |e| {
        let _ = tx.send(serde_json::from_str(e.payload()).unwrap_or(Value::Null));
    });
    let first = support::invoke(&window, "browse_rooms", json!({})).expect("browsing in lanB");
    say(json!({ "event": "browsing", "rooms": first["rooms"] }));
    while !stop.exists() {
        if let Ok(mut update) = updates.recv_timeout(Duration::from_millis(50)) {
            update["event"] = json!("rooms");
            say(update);
        }
    }
    support::invoke(&window, "stop_browsing", json!({})).expect("stop browsing");
    say(json!({ "event": "stopped" }));
    drop(app);
}
