//! The host's stored room does not leak to the wrong people: it is bound to its passphrase
//! (a server started with another one refuses, or starts a new room only when told, keeping or
//! deleting the previous one), its files are private to the host's user, and history removed by
//! retention is gone from the database files' bytes.

use std::path::{Path, PathBuf};

use tertulia_e2e::{ChatProcess, DataDir, ServerProcess, WAIT};

const FIRST: &str = "the first group's passphrase";
const SECOND: &str = "another group entirely";

/// Say `texts` as `nick` and wait until the server acknowledged them all (the client exits 0
/// only with an empty outbox).
async fn say_all(server: &ServerProcess, nick: &str, pass: &str, texts: &[&str]) {
    let mut chat = ChatProcess::start(server.addr, nick, pass, &[]).await;
    chat.wait_type("connected").await;
    for text in texts {
        chat.say(text).await;
    }
    chat.close_stdin();
    assert_eq!(chat.exit_code().await, Some(0), "{nick}: everything acked");
}

/// A newcomer's view of the room's history: the texts it gets before its own first live
/// message (history always comes first).
async fn history_seen_by(server: &ServerProcess, nick: &str, pass: &str) -> Vec<String> {
    let mut chat = ChatProcess::start(server.addr, nick, pass, &[]).await;
    chat.wait_type("connected").await;
    let marker = format!("{nick} is here");
    chat.say(&marker).await;
    chat.wait_for("its own message", |e| {
        e["type"] == "message" && e["text"] == marker.as_str()
    })
    .await;
    chat.seen
        .iter()
        .filter(|e| e["type"] == "message" && e["text"] != marker.as_str())
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Start a server on `dir` with `pass` that must refuse: its exit code and stderr. (A server
/// that starts instead fails the test rather than hanging it.)
async fn refused(pass: &str, dir: &str) -> (Option<i32>, String) {
    let args = ["--listen", "127.0.0.1:0", "--data-dir", dir];
    tokio::time::timeout(WAIT, ServerProcess::refused(pass, &args))
        .await
        .expect("the server started instead of refusing")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Whether `needle` appears in any of the room database's files in `dir`.
fn in_room_files(dir: &Path, needle: &str) -> bool {
    ["room.sqlite3", "room.sqlite3-wal", "room.sqlite3-shm"]
        .iter()
        .filter_map(|name| std::fs::read(dir.join(name)).ok())
        .any(|bytes| contains(&bytes, needle))
}

fn previous_rooms(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("previous-rooms"))
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_different_passphrase_never_opens_the_previous_room() {
    let dir = DataDir::new("binding");
    let path = Path::new(dir.path());
    let args = |extra: &[&'static str]| {
        let mut args = vec!["--data-dir", dir.path()];
        args.extend_from_slice(extra);
        args
    };

    let server = ServerProcess::start("127.0.0.1:0", FIRST, &args(&[])).await;
    say_all(&server, "ana", FIRST, &["first room secret"]).await;
    server.terminate().await;

    // Another passphrase: refused, saying why, which directory and which flag.
    let (code, stderr) = refused(SECOND, dir.path()).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("different passphrase"), "{stderr}");
    assert!(stderr.contains(dir.path()), "names the directory: {stderr}");
    assert!(
        stderr.contains("--new-room keep"),
        "names the flag: {stderr}"
    );
    assert!(previous_rooms(path).is_empty(), "nothing was moved");

    // The first passphrase still opens the room, history untouched.
    let server = ServerProcess::start("127.0.0.1:0", FIRST, &args(&[])).await;
    assert_eq!(
        history_seen_by(&server, "ben", FIRST).await,
        vec!["first room secret"]
    );
    server.terminate().await;

    // A new room, the previous one kept aside: the new group sees none of it.
    let server = ServerProcess::start("127.0.0.1:0", SECOND, &args(&["--new-room", "keep"])).await;
    assert_eq!(
        history_seen_by(&server, "cat", SECOND).await,
        Vec::<String>::new()
    );
    say_all(&server, "cy", SECOND, &["second room secret"]).await;
    server.terminate().await;
    let kept = previous_rooms(path);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        in_room_files(&kept[0], "first room secret"),
        "the previous room's files are kept aside"
    );
    assert!(!in_room_files(path, "first room secret"));

    // Once the new room exists, the first passphrase is the different one; with `delete`
    // the second room is gone and the first group starts afresh.
    let (code, _) = refused(FIRST, dir.path()).await;
    assert_eq!(code, Some(3));
    let server = ServerProcess::start("127.0.0.1:0", FIRST, &args(&["--new-room", "delete"])).await;
    assert_eq!(
        history_seen_by(&server, "dan", FIRST).await,
        Vec::<String>::new()
    );
    server.terminate().await;
    assert!(!in_room_files(path, "second room secret"), "deleted");
    assert_eq!(previous_rooms(path), kept, "the room kept aside stays");

    // The new room continues with its passphrase.
    let server = ServerProcess::start("127.0.0.1:0", FIRST, &args(&[])).await;
    assert_eq!(
        history_seen_by(&server, "eve", FIRST).await,
        vec!["dan is here"]
    );
    server.terminate().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = DataDir::new("modes");
    let path = Path::new(dir.path());
    let server = ServerProcess::start("127.0.0.1:0", FIRST, &["--data-dir", dir.path()]).await;
    let mut ana = ChatProcess::start(server.addr, "ana", FIRST, &[]).await;
    ana.wait_type("connected").await;
    ana.say("written to the database").await;
    ana.wait_type("acked").await;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(path), 0o700, "data directory");
    let mut files = 0;
    for entry in std::fs::read_dir(path).expect("list the data directory") {
        let file = entry.expect("entry").path();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        files += 1;
    }
    assert!(files >= 2, "the database and its WAL, while running");
    drop(ana);
    server.terminate().await;
}

#[tokio::test]
async fn history_removed_by_retention_is_gone_from_the_files() {
    let dir = DataDir::new("secure-delete");
    let path = Path::new(dir.path());
    let server = ServerProcess::start("127.0.0.1:0", FIRST, &["--data-dir", dir.path()]).await;
    let texts = [
        "forget me: 7f3a9c",
        "kept a",
        "kept b",
        "kept c",
        "kept d",
        "kept e: 51d0be",
    ];
    say_all(&server, "ana", FIRST, &texts).await;
    server.terminate().await;
    assert!(in_room_files(path, "forget me: 7f3a9c"), "stored at first");

    // Retention applies at start: ana's join, her six messages and her leave are 8 events;
    // the newest 3 stay.
    let server = ServerProcess::start(
        "127.0.0.1:0",
        FIRST,
        &["--data-dir", dir.path(), "--retain-events", "3"],
    )
    .await;
    let mut ben = ChatProcess::start(server.addr, "ben", FIRST, &[]).await;
    ben.wait_type("connected").await;
    let kept = ben.wait_messages_from("ana", 2).await;
    assert_eq!(kept, vec!["kept d", "kept e: 51d0be"]);
    assert!(
        !in_room_files(path, "forget me: 7f3a9c"),
        "deleted history is not in the files of the running server"
    );
    assert!(in_room_files(path, "kept e: 51d0be"), "the search works");
    drop(ben);
    server.terminate().await;
    assert!(
        !in_room_files(path, "forget me: 7f3a9c"),
        "nor after it stopped"
    );
}
