//! Saved rooms when the system keyring cannot be reached (a session bus that does not
//! exist): the join works all the same, the room is saved without its passphrase, and the
//! window is told the passphrase could not be remembered. Its own test binary, so the bus
//! address it sets is the only one this process ever sees.

mod support;

use serde_json::{json, Value};
use support::{is, room, TestApp};

const PASS: &str = "no keyring passphrase";

#[test]
fn without_a_keyring_the_join_works_and_the_window_is_told() {
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/tertulia-test-bus",
    );
    let app = TestApp::new();
    let port = room(PASS);
    let args = json!({ "host": "127.0.0.1", "port": port, "passphrase": PASS,
                       "nick": "ana", "remember": true });
    assert_eq!(app.invoke("connect", args), Ok(Value::Null));
    app.chat_event("connected", is("connected"));
    let update = app.saved_update("the room saved");
    assert_eq!(
        update["problem"]["kind"],
        json!("not_remembered"),
        "{update}"
    );
    let detail = update["problem"]["detail"].as_str().expect("why");
    assert!(detail.contains("keyring"), "{detail}");
    assert_eq!(update["rooms"][0]["passphrase_saved"], json!(false));
    assert_eq!(update["rooms"][0]["port"], json!(port));
    assert_eq!(app.invoke("disconnect", json!({})), Ok(Value::Null));
    let id = format!("127.0.0.1:{port}");
    assert_eq!(
        app.invoke("rejoin_saved_room", json!({ "id": id })),
        Ok(json!({ "status": "needs_passphrase", "detail": null }))
    );
    // Forgetting needs no keyring when nothing was stored.
    let update = app
        .invoke("forget_saved_room", json!({ "id": id }))
        .expect("forgotten");
    assert_eq!(update, json!({ "rooms": [], "problem": null }));
}
