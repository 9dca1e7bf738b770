//! Saved rooms through IPC, as the window uses them: joining real rooms, the passphrase in a
//! real Secret Service (gnome-keyring on a private D-Bus session bus; the test is skipped,
//! saying so, when gnome-keyring-daemon is not installed), rejoining with one call,
//! forgetting; and a damaged list file.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{assert_not_in_files, is, room, skip, PrivateKeyring, TestApp};

const PASS: &str = "saved rooms ipc passphrase";

fn join(app: &TestApp, port: u16, nick: &str, passphrase: &str, remember: bool) {
    let args = json!({ "host": "127.0.0.1", "port": port, "passphrase": passphrase,
                       "nick": nick, "remember": remember });
    assert_eq!(app.invoke("connect", args), Ok(Value::Null));
}

fn leave(app: &TestApp) {
    assert_eq!(app.invoke("disconnect", json!({})), Ok(Value::Null));
}

/// The whole life of a saved room against the real keyring, in one test: the bus address is
/// the process's environment, shared by every test in this binary.
#[test]
fn remember_rejoin_and_forget_with_the_real_keyring() {
    let keyring = match PrivateKeyring::start() {
        Ok(k) => k,
        Err(why) => return skip(&format!("saved rooms with the real keyring: {why}")),
    };
    // Before the app (and its keyring calls) exist; nothing else in this process reads it.
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &keyring.address);
    let app = TestApp::new();
    assert_eq!(app.invoke("list_saved_rooms", json!({})), Ok(json!([])));

    // A wrong passphrase never connects: nothing is saved, nothing stored.
    let port = room(PASS);
    let id = format!("127.0.0.1:{port}");
    join(&app, port, "ana", "not the passphrase", true);
    app.chat_event("the disconnect", is("disconnected"));
    app.no_saved_update(Duration::from_millis(500));
    assert_eq!(keyring.lookup(&id), None);
    assert_eq!(app.invoke("list_saved_rooms", json!({})), Ok(json!([])));

    // "Remember passphrase": saved once connected, the passphrase in the keyring only.
    join(&app, port, "ana", PASS, true);
    app.chat_event("connected", is("connected"));
    let update = app.saved_update("the room saved");
    assert_eq!(update["problem"], Value::Null, "{update}");
    let saved = &update["rooms"][0];
    assert_eq!(saved["id"], json!(id));
    assert_eq!(saved["name"], json!(id));
    assert_eq!(saved["host"], json!("127.0.0.1"));
    assert_eq!(saved["port"], json!(port));
    assert_eq!(saved["nick"], json!("ana"));
    assert_eq!(saved["passphrase_saved"], json!(true));
    let first_used = saved["last_used_ms"].as_u64().expect("a time");
    assert_eq!(keyring.lookup(&id).as_deref(), Some(PASS));
    assert_not_in_files(app.dir.path(), PASS);
    leave(&app);
    assert_eq!(
        app.invoke("list_saved_rooms", json!({})),
        Ok(update["rooms"].clone())
    );

    // One call rejoins with the stored passphrase.
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        app.invoke("rejoin_saved_room", json!({ "id": id })),
        Ok(json!({ "status": "joining" }))
    );
    let connected = app.chat_event("rejoined", is("connected"));
    assert_eq!(connected["nick"], json!("ana"));
    let update = app.saved_update("the rejoin recorded");
    assert_eq!(update["rooms"][0]["passphrase_saved"], json!(true));
    assert!(update["rooms"][0]["last_used_ms"].as_u64() > Some(first_used));
    leave(&app);

    // A second room goes first; unticked on a later join deletes the stored passphrase.
    let other = room(PASS);
    join(&app, other, "ana", PASS, false);
    app.chat_event("connected", is("connected"));
    let update = app.saved_update("the second room");
    assert_eq!(update["rooms"][0]["port"], json!(other));
    assert_eq!(update["rooms"][0]["passphrase_saved"], json!(false));
    assert_eq!(update["rooms"][1]["id"], json!(id));
    join(&app, port, "ana", PASS, false);
    app.chat_event("connected", is("connected"));
    let update = app.saved_update("joined unticked");
    assert_eq!(update["rooms"][0]["id"], json!(id));
    assert_eq!(update["rooms"][0]["passphrase_saved"], json!(false));
    assert_eq!(keyring.lookup(&id), None);
    leave(&app);

    // Nothing stored: the window is asked for it; given with "remember", it is stored again.
    assert_eq!(
        app.invoke("rejoin_saved_room", json!({ "id": id })),
        Ok(json!({ "status": "needs_passphrase", "detail": null }))
    );
    assert_eq!(
        app.invoke(
            "rejoin_saved_room",
            json!({ "id": id, "passphrase": PASS, "remember": true })
        ),
        Ok(json!({ "status": "joining" }))
    );
    app.chat_event("connected", is("connected"));
    let update = app.saved_update("remembered on rejoin");
    assert_eq!(update["rooms"][0]["passphrase_saved"], json!(true));
    assert_eq!(keyring.lookup(&id).as_deref(), Some(PASS));
    leave(&app);

    // Forget: off the list and out of the keyring.
    let update = app
        .invoke("forget_saved_room", json!({ "id": id }))
        .expect("forgotten");
    assert_eq!(update["problem"], Value::Null);
    assert_eq!(update["rooms"].as_array().map(Vec::len), Some(1));
    assert_eq!(update["rooms"][0]["port"], json!(other));
    assert_eq!(keyring.lookup(&id), None);
    assert_eq!(
        app.invoke("forget_saved_room", json!({ "id": id })),
        Err(
            json!({ "kind": "saved_room_not_found", "message": format!("there is no saved room {id}") })
        )
    );
    assert_eq!(
        app.invoke("rejoin_saved_room", json!({ "id": id })),
        Err(
            json!({ "kind": "saved_room_not_found", "message": format!("there is no saved room {id}") })
        )
    );
    assert_not_in_files(app.dir.path(), PASS);
}

#[test]
fn a_damaged_list_is_reported_and_set_aside_not_lost() {
    let app = TestApp::new();
    let damaged = b"{\"version\":1,\"rooms\":[{\"id\":\"10.0.0";
    std::fs::write(app.rooms_file(), damaged).expect("write");
    let err = app
        .invoke("list_saved_rooms", json!({}))
        .expect_err("the damage is reported");
    assert_eq!(err["kind"], "rooms_file");
    let err = err["message"].as_str().expect("a message");
    assert!(err.starts_with("the saved rooms list was damaged"), "{err}");
    assert!(err.contains("set aside as"), "{err}");
    let aside: Vec<_> = std::fs::read_dir(app.dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("rooms.json.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).expect("kept"), damaged);
    assert_eq!(app.invoke("list_saved_rooms", json!({})), Ok(json!([])));

    // Unreadable (here: a directory where the file should be): set aside too.
    std::fs::create_dir(app.rooms_file()).expect("dir");
    let err = app
        .invoke("list_saved_rooms", json!({}))
        .expect_err("reported");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|e| e.contains("could not be read")),
        "{err}"
    );
    assert_eq!(app.invoke("list_saved_rooms", json!({})), Ok(json!([])));
}

#[test]
fn rejoin_and_forget_refuse_unknown_rooms_and_connect_still_checks_its_fields() {
    let app = TestApp::new();
    assert_eq!(
        app.invoke("rejoin_saved_room", json!({ "id": "10.9.9.9:1" })),
        Err(
            json!({ "kind": "saved_room_not_found", "message": "there is no saved room 10.9.9.9:1" })
        )
    );
    assert_eq!(
        app.invoke(
            "connect",
            json!({ "host": "bad host", "port": 1, "passphrase": PASS, "nick": "ana", "remember": true })
        ),
        Err(json!({
            "kind": "invalid",
            "message": "Address: 'bad host' is not an IP address or host name"
        }))
    );
}
