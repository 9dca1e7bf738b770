//! The app as the window sees it: built by `configure` on Tauri's mock runtime (no display,
//! no webview) and driven through IPC, so command names, argument names, results and the
//! error text shown to the user are checked as the UI receives them. Nothing here opens a
//! connection: every case is answered before a session would start.

mod support;

use serde_json::{json, Value};
use support::{invoke, mock_app as app};
use tertulia_core::text::NickError;

/// A command error as the window receives it: its kind and its (English) message.
fn refused(kind: &str, message: &str) -> Result<Value, Value> {
    Err(json!({ "kind": kind, "message": message }))
}

fn connect_args(host: &str, port: u16, nick: &str) -> Value {
    json!({ "host": host, "port": port, "passphrase": "a room passphrase", "nick": nick })
}

#[test]
fn generate_passphrase_returns_five_groups_of_five() {
    let (_app, window) = app();
    let first = invoke(&window, "generate_passphrase", json!({})).expect("a passphrase");
    let first = first.as_str().expect("a string");
    let groups: Vec<&str> = first.split('-').collect();
    assert_eq!(groups.len(), 5, "{first}");
    for group in groups {
        assert_eq!(group.len(), 5, "{first}");
        assert!(
            group
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{first}"
        );
    }
    let second = invoke(&window, "generate_passphrase", json!({})).expect("a passphrase");
    assert_ne!(second.as_str(), Some(first), "random each time");
}

#[test]
fn connect_rejects_bad_fields_with_the_text_shown_to_the_user() {
    let (_app, window) = app();
    assert_eq!(
        invoke(&window, "connect", connect_args("bad host", 5555, "ana")),
        refused(
            "invalid",
            "Address: 'bad host' is not an IP address or host name"
        )
    );
    assert_eq!(
        invoke(&window, "connect", connect_args("127.0.0.1", 0, "ana")),
        refused("invalid", "Port: choose a port between 1 and 65535")
    );
    assert_eq!(
        invoke(&window, "connect", connect_args("127.0.0.1", 5555, "  ")),
        Err(json!({
            "kind": "invalid_nick",
            "message": format!("Nickname: {}", NickError::Empty),
            "reason": "empty"
        }))
    );
    assert_eq!(
        invoke(
            &window,
            "connect",
            connect_args("127.0.0.1", 5555, "\u{2800}")
        ),
        Err(json!({
            "kind": "invalid_nick",
            "message": format!("Nickname: {}", NickError::NoLetterOrDigit),
            "reason": "no_letter_or_digit"
        }))
    );
    let missing = invoke(&window, "connect", json!({ "host": "127.0.0.1" }))
        .expect_err("missing arguments are refused");
    assert!(
        missing.as_str().is_some_and(|m| m.contains("port")),
        "{missing}"
    );
}

#[test]
fn without_a_session_commands_say_so() {
    let (_app, window) = app();
    assert_eq!(
        invoke(&window, "send", json!({ "text": "hello" })),
        refused("not_connected", "not connected to a room")
    );
    assert_eq!(invoke(&window, "hosting_info", json!({})), Ok(Value::Null));
    assert_eq!(invoke(&window, "disconnect", json!({})), Ok(Value::Null));
    assert_eq!(invoke(&window, "typing", json!({})), Ok(Value::Null));
}

#[test]
fn passphrase_strength_warns_with_a_reason_the_window_can_translate() {
    let (_app, window) = app();
    assert_eq!(
        invoke(
            &window,
            "passphrase_strength",
            json!({ "passphrase": "password", "nick": "ana" })
        ),
        Ok(json!({ "weak": true, "reason": "common_password" }))
    );
    let generated = invoke(&window, "generate_passphrase", json!({})).expect("a passphrase");
    assert_eq!(
        invoke(
            &window,
            "passphrase_strength",
            json!({ "passphrase": generated })
        ),
        Ok(json!({ "weak": false, "reason": null })),
        "a generated passphrase is never warned about"
    );
}

#[test]
fn history_defaults_are_the_servers() {
    let (_app, window) = app();
    let defaults = invoke(&window, "history_defaults", json!({})).expect("defaults");
    let retention = tertulia_core::server::ServerConfig::default()
        .room
        .retention;
    assert_eq!(
        defaults["maxMessages"],
        json!(retention.max_events),
        "{defaults}"
    );
}
