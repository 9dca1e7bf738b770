//! End-to-end: files shared in a room (`docs/PROTOCOL.md` §13) through the real
//! `tertulia-server` and `tertulia-chat --json` processes over 127.0.0.1 — byte-identical
//! arrival both ways, safe names and no overwriting in the download folder, resuming after a
//! cut connection and after a host restart (exactly once), fetching from the history, and a
//! damaged host copy never saved as good.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tertulia_core::files::{safe_name, CHUNK_BYTES};
use tertulia_core::message::{ClientMessage, ServerMessage};
use tertulia_e2e::{ChatProcess, DataDir, Proxy, RawMember, ServerProcess};

const PASS: &str = "correct horse battery staple";

/// Content that differs at every offset (a misplaced chunk cannot pass for another).
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The SHA-256 of a file, hex, by the system's own tool (not the code under test).
fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A small PNG (a valid signature and header; the rest is arbitrary).
fn png_bytes(len: usize) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x06\0\0\0".to_vec();
    png.extend(content(len.saturating_sub(png.len()), 99));
    png
}

/// A chat client saving into `dir`.
async fn member(addr: std::net::SocketAddr, nick: &str, dir: &Path) -> ChatProcess {
    let dir = dir.display().to_string();
    let mut chat = ChatProcess::start(addr, nick, PASS, &["--download-dir", &dir]).await;
    chat.wait_type("connected").await;
    chat
}

fn of_type<'a>(chat: &'a ChatProcess, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    chat.seen.iter().filter(move |e| e["type"] == kind)
}

/// Write `bytes` as `name` in a fresh scratch folder; returns (folder, path).
fn source_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("scratch");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write source");
    (dir, path)
}

/// `/send PATH`, then wait until the upload is in the room; returns its `file_sent`.
async fn send(chat: &mut ChatProcess, path: &Path) -> Value {
    // Upload ids count from 1 in each process: this one is the next.
    let upload_id = serde_json::json!(of_type(chat, "file_queued").count() + 1);
    chat.say(&format!("/send {}", path.display())).await;
    let expected = upload_id.clone();
    chat.wait_for("file_queued", |e| {
        e["type"] == "file_queued" && e["upload_id"] == expected
    })
    .await;
    chat.wait_for("file_sent", |e| {
        e["type"] == "file_sent" && e["upload_id"] == upload_id
    })
    .await
}

/// `from` shares a new file `name` holding `bytes`; returns its `file_sent` and `to`'s
/// `file_received` of it.
async fn share(
    from: &mut ChatProcess,
    to: &mut ChatProcess,
    name: &str,
    bytes: &[u8],
) -> (Value, Value) {
    let (_src, path) = source_file(name, bytes);
    let sent = send(from, &path).await;
    let got = received(to, &sent["file_id"]).await;
    (sent, got)
}

/// A room of two, ana and ben, each saving into a folder of their own.
struct Two {
    ana: ChatProcess,
    ben: ChatProcess,
    ana_dir: tempfile::TempDir,
    ben_dir: tempfile::TempDir,
}

impl Two {
    /// `ben_files` is put in ben's folder before he joins.
    async fn start(addr: std::net::SocketAddr, ben_files: &[(&str, &[u8])]) -> Self {
        let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (name, bytes) in ben_files {
            std::fs::write(ben_dir.path().join(name), bytes).unwrap();
        }
        let ana = member(addr, "ana", ana_dir.path()).await;
        let ben = member(addr, "ben", ben_dir.path()).await;
        Self {
            ana,
            ben,
            ana_dir,
            ben_dir,
        }
    }
}

/// Wait for `file_received` of `file_id`.
async fn received(chat: &mut ChatProcess, file_id: &Value) -> Value {
    let id = file_id.clone();
    chat.wait_for("file_received", |e| {
        e["type"] == "file_received" && e["file_id"] == id
    })
    .await
}

/// The file received is byte-identical to `bytes`, and its SHA-256 is the one reported.
fn assert_identical(got: &Value, bytes: &[u8]) {
    let path = PathBuf::from(got["path"].as_str().expect("a path"));
    let saved = std::fs::read(&path).expect("read the received file");
    assert!(
        saved == bytes,
        "{} differs from what was sent",
        path.display()
    );
    assert_eq!(got["size"], bytes.len() as u64);
    assert_eq!(got["sha256"].as_str(), Some(sha256sum(&path).as_str()));
}

/// Nothing but the files named `names` in `dir` (no temporary file left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_file_arrives_byte_identical_both_ways() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let Two {
        mut ana,
        mut ben,
        ana_dir,
        ben_dir,
    } = Two::start(server.addr, &[]).await;

    // Several chunks, the last one short.
    let notes = content(3 * CHUNK_BYTES as usize + 1234, 1);
    let (sent, got) = share(&mut ana, &mut ben, "notes.bin", &notes).await;
    let own = ana
        .wait_for("own file_offered", |e| {
            e["type"] == "file_offered" && e["file_id"] == sent["file_id"]
        })
        .await;
    assert_eq!(own["own"], true);
    assert_eq!(own["upload_id"], sent["upload_id"]);
    assert_identical(&got, &notes);
    assert_eq!(got["name"], "notes.bin");
    assert_eq!(
        PathBuf::from(got["path"].as_str().unwrap()),
        ben_dir.path().join("notes.bin")
    );
    assert!(
        of_type(&ana, "file_received").next().is_none(),
        "own files are not fetched back"
    );

    // And the other way.
    let reply = content(CHUNK_BYTES as usize * 2, 2);
    let (_, got2) = share(&mut ben, &mut ana, "reply.dat", &reply).await;
    assert_identical(&got2, &reply);
    assert_eq!(listing(ana_dir.path()), vec!["reply.dat"]);
    assert_eq!(listing(ben_dir.path()), vec!["notes.bin"]);
}

#[tokio::test]
async fn a_png_arrives_and_never_overwrites_a_file_in_the_download_folder() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let ben_photo: &[u8] = b"ben's own photo";
    let Two {
        mut ana,
        mut ben,
        ana_dir: _ana_dir,
        ben_dir,
    } = Two::start(server.addr, &[("photo.png", ben_photo)]).await;

    let png = png_bytes(100_000);
    let (sent, got) = share(&mut ana, &mut ben, "photo.png", &png).await;
    let offered = ben
        .wait_for("file_offered", |e| {
            e["type"] == "file_offered" && e["file_id"] == sent["file_id"]
        })
        .await;
    assert_eq!(offered["mime"], "image/png");
    assert_eq!(offered["history"], false);
    assert_identical(&got, &png);
    assert_eq!(
        PathBuf::from(got["path"].as_str().unwrap()),
        ben_dir.path().join("photo (1).png")
    );
    assert_eq!(
        std::fs::read(ben_dir.path().join("photo.png")).unwrap(),
        ben_photo,
        "the existing file is untouched"
    );

    // The same again: the next free name.
    let (_, got) = share(&mut ana, &mut ben, "photo.png", &png).await;
    assert_eq!(
        PathBuf::from(got["path"].as_str().unwrap()),
        ben_dir.path().join("photo (2).png")
    );
    assert_eq!(
        listing(ben_dir.path()),
        vec!["photo (1).png", "photo (2).png", "photo.png"]
    );
}

/// A member speaking the protocol by hand uploads `bytes` under `name`; returns the file id.
async fn raw_upload(raw: &mut RawMember, name: &str, bytes: &[u8]) -> u64 {
    use sha2_free_sha256 as sha;
    raw.send(&ClientMessage::FileOffer {
        upload_id: 1,
        name: name.into(),
        size: bytes.len() as u64,
        mime: "text/plain".into(),
        sha256: sha::digest(bytes),
    })
    .await
    .expect("offer");
    loop {
        match raw.next_private().await.expect("the server answers") {
            ServerMessage::FileAccepted { have: 0, .. } => break,
            ServerMessage::FileRefused {
                reason, message, ..
            } => {
                panic!("refused: {reason:?} {message}")
            }
            _ => {}
        }
    }
    for (i, chunk) in bytes.chunks(CHUNK_BYTES as usize).enumerate() {
        raw.send(&ClientMessage::FileChunk {
            upload_id: 1,
            offset: i as u64 * CHUNK_BYTES,
            data: chunk.to_vec(),
        })
        .await
        .expect("chunk");
    }
    loop {
        if let ServerMessage::FileDone { file_id, .. } =
            raw.next_private().await.expect("the server answers")
        {
            return file_id;
        }
    }
}

/// SHA-256 without a dependency the test crate does not have: the system's tool on a
/// scratch copy.
mod sha2_free_sha256 {
    pub fn digest(bytes: &[u8]) -> [u8; 32] {
        let dir = tempfile::tempdir().expect("scratch");
        let path = dir.path().join("x");
        std::fs::write(&path, bytes).expect("write");
        let hex = super::sha256sum(&path);
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).expect("sha256sum prints hex");
        out
    }
}

#[tokio::test]
async fn a_hostile_name_is_saved_as_a_safe_name_inside_the_folder() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let ben_dir = tempfile::tempdir().unwrap();
    let mut ben = member(server.addr, "ben", ben_dir.path()).await;
    let mut raw = RawMember::connect(server.addr, PASS, None)
        .await
        .expect("handshake");
    raw.join("mallory").await;

    let hostile = format!(
        "../../../etc/\u{202E}gnp.exe\u{1b}[2J\0{}.txt",
        "x".repeat(10_000)
    );
    let bytes = content(CHUNK_BYTES as usize + 10, 3);
    let file_id = raw_upload(&mut raw, &hostile, &bytes).await;
    let got = received(&mut ben, &serde_json::json!(file_id.to_string())).await;
    assert_identical(&got, &bytes);
    let path = PathBuf::from(got["path"].as_str().unwrap());
    assert_eq!(path.parent(), Some(ben_dir.path()), "inside the folder");
    let saved = path.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(saved, safe_name(&hostile));
    assert!(saved.len() <= 255 && saved.ends_with(".txt"), "{saved}");
    assert!(
        !saved.chars().any(|c| c.is_control() || c == '\u{202E}'),
        "{saved:?}"
    );
    assert_eq!(listing(ben_dir.path()), vec![saved]);
}

/// Upload progress events of `chat` from event index `from` on.
fn progress_since(chat: &ChatProcess, from: usize, direction: &str) -> Vec<u64> {
    chat.seen[from..]
        .iter()
        .filter(|e| e["type"] == "file_progress" && e["direction"] == direction)
        .filter_map(|e| e["done"].as_u64())
        .collect()
}

/// Wait for a `file_progress` in `direction` with some bytes done but not all.
async fn partway(chat: &mut ChatProcess, direction: &'static str) {
    chat.wait_for("progress partway", move |e| {
        e["type"] == "file_progress"
            && e["direction"] == direction
            && e["done"].as_u64().unwrap_or(0) > 0
            && e["done"] != e["size"]
    })
    .await;
}

/// A room where `ana` sends an 8 MiB file through a slow proxy (slow enough to be cut, or
/// talked over, in the middle) and `ben` is connected directly; returned once ana's upload is
/// part-way.
struct SlowUpload {
    _server: ServerProcess,
    proxy: Proxy,
    ana: ChatProcess,
    ben: ChatProcess,
    _ana_dir: tempfile::TempDir,
    ben_dir: tempfile::TempDir,
    big: Vec<u8>,
    _src: tempfile::TempDir,
}

impl SlowUpload {
    async fn start(name: &str, seed: u64) -> Self {
        let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
        let proxy = Proxy::start(server.addr).await;
        proxy.set_delay(Duration::from_millis(2));
        let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut ana = member(proxy.addr, "ana", ana_dir.path()).await;
        let ben = member(server.addr, "ben", ben_dir.path()).await;
        let big = content(8 << 20, seed);
        let (src, path) = source_file(name, &big);
        ana.say(&format!("/send {}", path.display())).await;
        partway(&mut ana, "upload").await;
        Self {
            _server: server,
            proxy,
            ana,
            ben,
            _ana_dir: ana_dir,
            ben_dir,
            big,
            _src: src,
        }
    }
}

#[tokio::test]
async fn a_cut_upload_resumes_where_it_stopped_and_arrives_once() {
    // Every field bound by name: what a test does not use still lives to its end.
    let SlowUpload {
        _server,
        proxy,
        mut ana,
        mut ben,
        _ana_dir,
        ben_dir,
        big,
        _src,
    } = SlowUpload::start("big.bin", 4).await;
    let cut_at = ana.seen.len();
    proxy.cut_all();
    ana.wait_type("reconnecting").await;
    let sent = ana.wait_type("file_sent").await;

    let after = progress_since(&ana, cut_at, "upload");
    assert!(
        after.first().is_some_and(|&done| done > 0),
        "the upload resumed where the host was, not from 0: {after:?}"
    );
    let got = received(&mut ben, &sent["file_id"]).await;
    assert_identical(&got, &big);
    // Exactly once: one file event in the room, one file saved.
    ana.say("done").await;
    ben.wait_messages_from("ana", 1).await;
    assert_eq!(of_type(&ben, "file_offered").count(), 1);
    assert_eq!(listing(ben_dir.path()), vec!["big.bin"]);
}

#[tokio::test]
async fn a_cut_download_resumes_from_the_first_chunk_not_received() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let mut ben = member(proxy.addr, "ben", ben_dir.path()).await;

    let big = content(8 << 20, 5);
    let (_src, path) = source_file("movie.bin", &big);
    proxy.set_delay(Duration::from_millis(2));
    let sent = send(&mut ana, &path).await;
    partway(&mut ben, "download").await;
    let cut_at = ben.seen.len();
    proxy.cut_all();
    let got = received(&mut ben, &sent["file_id"]).await;
    let after = progress_since(&ben, cut_at, "download");
    assert!(
        after.first().is_some_and(|&done| done > 0),
        "the download resumed, not from 0: {after:?}"
    );
    assert!(
        of_type(&ben, "reconnecting").count() >= 1,
        "it was really cut"
    );
    assert_identical(&got, &big);
    assert_eq!(of_type(&ben, "file_received").count(), 1);
    assert_eq!(listing(ben_dir.path()), vec!["movie.bin"]);
}

#[tokio::test]
async fn an_upload_survives_a_host_restart_and_is_in_the_room_once() {
    let data = DataDir::new("files-restart");
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", data.path()]).await;
    let addr = server.addr;
    let proxy = Proxy::start(addr).await;
    proxy.set_delay(Duration::from_millis(2));
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(proxy.addr, "ana", ana_dir.path()).await;

    let big = content(6 << 20, 6);
    let (_src, path) = source_file("backup.tar", &big);
    ana.say(&format!("/send {}", path.display())).await;
    partway(&mut ana, "upload").await;
    server.kill9().await;
    let server = ServerProcess::start(&addr.to_string(), PASS, &["--data-dir", data.path()]).await;
    let sent = ana.wait_type("file_sent").await;
    proxy.set_delay(Duration::ZERO);

    let mut ben = member(server.addr, "ben", ben_dir.path()).await;
    let offered = ben
        .wait_for("the file in the backlog", |e| {
            e["type"] == "file_offered" && e["file_id"] == sent["file_id"]
        })
        .await;
    assert_eq!(offered["history"], true);
    ben.say(&format!("/get {}", sent["file_id"])).await;
    let got = received(&mut ben, &sent["file_id"]).await;
    assert_identical(&got, &big);
    ana.say("after").await;
    ben.wait_messages_from("ana", 1).await;
    let files: Vec<&Value> = of_type(&ben, "file_offered").collect();
    assert_eq!(files.len(), 1, "in the room once: {files:#?}");
}

#[tokio::test]
async fn a_member_who_joins_later_sees_the_file_in_the_backlog_and_gets_it() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (ana_dir, carl_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let doc = content(CHUNK_BYTES as usize * 2 + 1, 7);
    let (_src, path) = source_file("minutes.txt", &doc);
    let sent = send(&mut ana, &path).await;
    ana.say("after the file").await;

    let mut carl = member(server.addr, "carl", carl_dir.path()).await;
    carl.wait_messages_from("ana", 1).await;
    let offered = carl
        .wait_for("the file in the backlog", |e| {
            e["type"] == "file_offered" && e["file_id"] == sent["file_id"]
        })
        .await;
    assert_eq!(offered["history"], true);
    assert_eq!(offered["name"], "minutes.txt");
    assert_eq!(offered["size"], doc.len() as u64);
    assert!(
        of_type(&carl, "file_progress").next().is_none(),
        "files from the history are not fetched on their own"
    );
    assert!(listing(carl_dir.path()).is_empty());
    carl.say(&format!("/get {}", sent["file_id"])).await;
    carl.wait_type("fetch_queued").await;
    let got = received(&mut carl, &sent["file_id"]).await;
    assert_identical(&got, &doc);
    assert_eq!(got["sha256"], offered["sha256"]);

    // An id that is no file in the room is refused plainly.
    carl.say("/get 12345").await;
    let failed = carl.wait_type("fetch_failed").await;
    assert_eq!(failed["file_id"], "12345");
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_host_copy_altered_on_disk_is_never_saved_as_good() {
    let data = DataDir::new("files-corrupt");
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", data.path()]).await;
    let (ana_dir, carl_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let doc = content(CHUNK_BYTES as usize * 3, 8);
    let (_src, path) = source_file("ledger.xls", &doc);
    let sent = send(&mut ana, &path).await;

    // Flip a byte in the middle of every stored file (the file's frames).
    let stored = files_under(&Path::new(data.path()).join("files"));
    assert!(!stored.is_empty(), "the host keeps files under files/");
    for file in &stored {
        let mut bytes = std::fs::read(file).unwrap();
        if bytes.len() > CHUNK_BYTES as usize / 2 {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(file, bytes).unwrap();
        }
    }

    let mut carl = member(server.addr, "carl", carl_dir.path()).await;
    carl.wait_for("the file in the backlog", |e| {
        e["type"] == "file_offered" && e["file_id"] == sent["file_id"]
    })
    .await;
    carl.say(&format!("/get {}", sent["file_id"])).await;
    let id = sent["file_id"].clone();
    let failed = carl
        .wait_for("the download failing", |e| {
            e["type"] == "file_failed" && e["id"] == id
        })
        .await;
    assert_eq!(failed["reason"], "corrupt", "{failed}");
    assert!(of_type(&carl, "file_received").next().is_none());
    assert!(
        listing(carl_dir.path()).is_empty(),
        "nothing saved, no partial file left: {:?}",
        listing(carl_dir.path())
    );
}

#[tokio::test]
async fn chat_goes_first_while_a_large_file_is_being_sent() {
    let SlowUpload {
        _server,
        proxy: _proxy,
        mut ana,
        mut ben,
        _ana_dir,
        ben_dir: _ben_dir,
        big,
        _src,
    } = SlowUpload::start("video.bin", 9).await;
    ana.say("typed during the upload").await;
    ben.wait_messages_from("ana", 1).await;
    // The message is in the room while the file is still on its way: it did not wait for it.
    assert!(
        of_type(&ben, "file_offered").next().is_none(),
        "the message waited for the file"
    );
    let sent = ana.wait_type("file_sent").await;
    let acked_at = ana.seen.iter().position(|e| e["type"] == "acked");
    let sent_at = ana.seen.iter().position(|e| e["type"] == "file_sent");
    assert!(acked_at < sent_at, "acked before the upload ended");
    let got = received(&mut ben, &sent["file_id"]).await;
    assert_identical(&got, &big);
}

/// `tertulia-chat` in interactive mode (stdin piped, no terminal), read line by line.
struct Terminal {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    shown: Vec<String>,
    _data: tempfile::TempDir,
}

impl Terminal {
    async fn start(addr: std::net::SocketAddr, nick: &str, dir: &Path) -> Self {
        Self::start_with(addr, nick, dir, &[]).await
    }

    async fn start_with(
        addr: std::net::SocketAddr,
        nick: &str,
        dir: &Path,
        extra: &[&str],
    ) -> Self {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt;
        let (mut command, data) = tertulia_e2e::chat_command();
        let mut child = command
            .arg(addr.to_string())
            .args([
                "--nick",
                nick,
                "--lang",
                "en",
                "--no-color",
                "--download-dir",
            ])
            .arg(dir)
            .args(extra)
            .env("TERTULIA_PASSPHRASE", PASS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start tertulia-chat");
        let stdin = child.stdin.take().expect("stdin");
        let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            lines,
            shown: Vec::new(),
            _data: data,
        }
    }

    async fn type_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("type");
    }

    /// The next line containing `needle`.
    async fn until(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + tertulia_e2e::WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    self.shown.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                _ => panic!("never showed {needle:?}; showed: {:#?}", self.shown),
            }
        }
    }
}

#[tokio::test]
async fn the_terminal_shows_one_readable_line_per_file() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = Terminal::start(server.addr, "ana", ana_dir.path()).await;
    ana.until("in the room").await;
    let mut ben = member(server.addr, "ben", ben_dir.path()).await;

    ana.type_line("/help").await;
    let help = ana.until("/send PATH").await;
    assert!(
        help.contains("/get ID") && help.contains("/cancel [ID]"),
        "{help}"
    );
    ana.type_line("/cancel").await;
    ana.until("no transfer in progress").await;

    let notes = content(CHUNK_BYTES as usize + 3, 10);
    let (_src, path) = source_file("notes.txt", &notes);
    ana.type_line(&format!("/send {}", path.display())).await;
    ana.until("sending notes.txt…").await;
    let shared = ana.until("ana shared notes.txt").await;
    assert!(shared.ends_with("(60.0 KiB)"), "{shared}");
    ana.until("is in the room").await;
    let offered = ben.wait_type("file_offered").await;
    received(&mut ben, &offered["file_id"]).await;

    let png = png_bytes(100_000);
    let (_src2, path2) = source_file("reply.png", &png);
    send(&mut ben, &path2).await;
    let line = ana.until("ben shared reply.png").await;
    assert!(line.ends_with("(97.7 KiB)"), "{line}");
    let saved = ana.until("received and checked").await;
    let target = ana_dir.path().join("reply.png");
    assert!(
        saved.ends_with(&format!("saved as {}", target.display())),
        "{saved}"
    );
    assert!(std::fs::read(&target).unwrap() == png);
    // Terse: a few progress lines at most, never one per chunk.
    let progress = ana.shown.iter().filter(|l| l.contains(" % of ")).count();
    assert!(progress <= 8, "{:#?}", ana.shown);
    ana.type_line("/quit").await;
    let _ = tokio::time::timeout(tertulia_e2e::WAIT, ana.child.wait()).await;
}

/// A file id as `--json` prints it: a decimal string.
fn id_of(value: &Value) -> u64 {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a file id is a string: {value}"))
        .parse()
        .expect("decimal")
}

#[tokio::test]
async fn file_ids_are_strings_in_json_and_survive_above_2_pow_53() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    // (The folders are kept: `..` would remove them at once.)
    let Two {
        mut ana,
        mut ben,
        ana_dir: _ana_dir,
        ben_dir: _ben_dir,
    } = Two::start(server.addr, &[]).await;
    // Ids are random u64s: one in 2048 is below 2^53; share until one is above.
    let mut big = None;
    for seed in 0..4 {
        let bytes = content(1000, 20 + seed);
        let (sent, got) = share(&mut ana, &mut ben, "id.bin", &bytes).await;
        assert_eq!(got["file_id"], sent["file_id"]);
        assert_identical(&got, &bytes);
        let id = id_of(&sent["file_id"]);
        if id > 1 << 53 {
            big = Some(id);
            break;
        }
    }
    let id = big.expect("a random u64 above 2^53 in four tries");
    let text = id.to_string();
    for kind in ["file_offered", "file_received"] {
        let event = ben
            .wait_for(kind, |e| e["type"] == kind && e["file_id"] == text.as_str())
            .await;
        assert_eq!(id_of(&event["file_id"]), id, "{event}");
    }
    let progress = ben
        .wait_for("download progress", |e| {
            e["type"] == "file_progress" && e["direction"] == "download"
        })
        .await;
    assert!(progress["id"].is_string(), "{progress}");
    let upload = ana
        .wait_for("upload progress", |e| {
            e["type"] == "file_progress" && e["direction"] == "upload"
        })
        .await;
    assert!(upload["id"].is_u64(), "upload ids stay numbers: {upload}");
    // /get takes the id as printed (quoted) or bare, exactly, above 2^53.
    let carl_dir = tempfile::tempdir().unwrap();
    let mut carl = member(server.addr, "carl", carl_dir.path()).await;
    carl.wait_for("the file in the backlog", |e| {
        e["type"] == "file_offered" && e["file_id"] == text.as_str()
    })
    .await;
    carl.say(&format!("/get \"{id}\"")).await;
    let queued = carl.wait_type("fetch_queued").await;
    assert_eq!(queued["file_id"], text.as_str());
    let got = carl
        .wait_for("file_received", |e| {
            e["type"] == "file_received" && e["file_id"] == text.as_str()
        })
        .await;
    assert_eq!(got["size"], 1000);
    // One off in the last digits (what a double would make of it) is another file.
    carl.say(&format!("/get {}", id ^ 1)).await;
    let failed = carl.wait_type("fetch_failed").await;
    assert_eq!(failed["file_id"], (id ^ 1).to_string());
}

/// A symbolic link at `link` to `target`.
fn plant_link(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("plant a symlink");
}

#[tokio::test]
async fn a_planted_symlink_is_never_written_through() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let ana_dir = tempfile::tempdir().unwrap();
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let doc = content(CHUNK_BYTES as usize * 2 + 7, 30);
    let (_src, path) = source_file("report.pdf", &doc);
    let sent = send(&mut ana, &path).await;
    let id = id_of(&sent["file_id"]);

    // Carl's folder, prepared by someone else on his machine: links at the file's name, its
    // next numbered names and the temporary names a client could use, to a file of his and
    // to a file that does not exist yet.
    let (carl_dir, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let created = outside.path().join("created");
    let dir = carl_dir.path();
    plant_link(&victim, &dir.join("report.pdf"));
    plant_link(&created, &dir.join("report (1).pdf"));
    for temp in [
        format!(".tertulia-{id:016x}.part"),
        format!(".tertulia-{id:016x}-{:016x}.part", 0),
        format!(".tertulia-{id}.part"),
    ] {
        plant_link(&created, &dir.join(temp));
    }
    let planted = listing(dir);

    let mut carl = member(server.addr, "carl", dir).await;
    carl.wait_for("the file in the backlog", |e| {
        e["type"] == "file_offered" && e["file_id"] == sent["file_id"]
    })
    .await;
    carl.say(&format!("/get {id}")).await;
    let got = received(&mut carl, &sent["file_id"]).await;
    assert_identical(&got, &doc);
    assert_eq!(
        PathBuf::from(got["path"].as_str().unwrap()),
        dir.join("report (2).pdf"),
        "the first name not taken, by anything"
    );
    assert!(!std::fs::symlink_metadata(dir.join("report (2).pdf"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!created.exists(), "nothing was created through a link");
    let mut expected = planted.clone();
    expected.push("report (2).pdf".into());
    expected.sort();
    assert_eq!(
        listing(dir),
        expected,
        "every link still there, no partial file"
    );
    for name in &planted {
        assert!(std::fs::symlink_metadata(dir.join(name))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}

#[tokio::test]
async fn two_clients_fetching_one_file_into_one_folder_both_get_it_whole() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (ana_dir, shared) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let mut ben = member(server.addr, "ben", shared.path()).await;
    let mut cat = member(server.addr, "cat", shared.path()).await;

    // Many chunks, so both downloads are under way at once.
    let video = content(6 << 20, 31);
    let (_src, path) = source_file("clip.mp4", &video);
    let sent = send(&mut ana, &path).await;
    let (from_ben, from_cat) = (
        received(&mut ben, &sent["file_id"]).await,
        received(&mut cat, &sent["file_id"]).await,
    );
    assert_identical(&from_ben, &video);
    assert_identical(&from_cat, &video);
    assert_ne!(from_ben["path"], from_cat["path"], "distinct files");
    assert_eq!(listing(shared.path()), vec!["clip (1).mp4", "clip.mp4"]);
}

#[tokio::test]
async fn live_files_past_the_limits_wait_for_get() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let dir = ben_dir.path().display().to_string();
    let mut ben = ChatProcess::start(
        server.addr,
        "ben",
        PASS,
        &[
            "--download-dir",
            &dir,
            "--auto-fetch-mib",
            "1",
            "--auto-fetch-count",
            "1",
        ],
    )
    .await;
    ben.wait_type("connected").await;

    let large = content((1 << 20) + 1, 40);
    let (_src, path) = source_file("large.bin", &large);
    let sent = send(&mut ana, &path).await;
    let skipped = ben.wait_type("fetch_skipped").await;
    assert_eq!(skipped["file_id"], sent["file_id"]);
    assert_eq!(skipped["reason"], "too_large");
    assert_eq!(skipped["size"], large.len() as u64);

    let small = content(100, 41);
    let (_, got) = share(&mut ana, &mut ben, "small.txt", &small).await;
    assert_identical(&got, &small);
    // The session's one automatic fetch is used up.
    let (_src2, path2) = source_file("more.txt", &small);
    let more = send(&mut ana, &path2).await;
    let id = more["file_id"].clone();
    let skipped = ben
        .wait_for("the budget used up", |e| {
            e["type"] == "fetch_skipped" && e["file_id"] == id
        })
        .await;
    assert_eq!(skipped["reason"], "budget");
    assert!(
        !of_type(&ben, "file_progress")
            .any(|e| e["id"] == sent["file_id"] || e["id"] == more["file_id"]),
        "skipped files are not fetched"
    );
    assert_eq!(listing(ben_dir.path()), vec!["small.txt"]);
    // Asked for, they are fetched.
    ben.say(&format!("/get {}", sent["file_id"])).await;
    let got = received(&mut ben, &sent["file_id"]).await;
    assert_identical(&got, &large);
}

#[tokio::test]
async fn a_download_that_would_leave_too_little_free_space_is_refused() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let dir = ben_dir.path().display().to_string();
    // A margin no disk here has (1 EiB).
    let mut ben = ChatProcess::start(
        server.addr,
        "ben",
        PASS,
        &["--download-dir", &dir, "--min-free-mib", "1099511627776"],
    )
    .await;
    ben.wait_type("connected").await;
    let doc = content(5000, 50);
    let (_src, path) = source_file("doc.txt", &doc);
    let sent = send(&mut ana, &path).await;
    let id = sent["file_id"].clone();
    let failed = ben
        .wait_for("the download refused", |e| {
            e["type"] == "file_failed" && e["id"] == id
        })
        .await;
    assert_eq!(failed["reason"], "local_space", "{failed}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("not enough free space"), "{message}");
    assert!(of_type(&ben, "file_received").next().is_none());
    assert!(listing(ben_dir.path()).is_empty(), "nothing created");
}

#[tokio::test]
async fn cancel_stops_a_download_and_an_upload_in_progress() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let proxy = Proxy::start(server.addr).await;
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let mut ben = member(proxy.addr, "ben", ben_dir.path()).await;

    let big = content(8 << 20, 60);
    let (_src, path) = source_file("big.bin", &big);
    proxy.set_delay(Duration::from_millis(2));
    let sent = send(&mut ana, &path).await;
    partway(&mut ben, "download").await;
    ben.say(&format!("/cancel {}", sent["file_id"])).await;
    let cancelled = ben.wait_type("cancelled").await;
    assert_eq!(
        cancelled["transfers"],
        serde_json::json!([{"direction": "download", "id": sent["file_id"]}])
    );
    let id = sent["file_id"].clone();
    let failed = ben
        .wait_for("the download cancelled", |e| {
            e["type"] == "file_failed" && e["id"] == id
        })
        .await;
    assert_eq!(failed["reason"], "cancelled");
    ben.say("/cancel").await;
    let nothing = ben.wait_type("cancel_failed").await;
    assert_eq!(nothing["id"], Value::Null);
    ben.say("after").await;
    ana.wait_messages_from("ben", 1).await;
    assert!(of_type(&ben, "file_received").next().is_none());
    assert!(
        listing(ben_dir.path()).is_empty(),
        "the partial file is gone"
    );

    // Ben's own upload, slowed by the proxy, stopped by /cancel without an id.
    let (_src2, path2) = source_file("upload.bin", &big);
    ben.say(&format!("/send {}", path2.display())).await;
    partway(&mut ben, "upload").await;
    ben.say("/cancel").await;
    let cancelled = ben
        .wait_for("the upload cancelled", |e| {
            e["type"] == "cancelled" && e["transfers"][0]["direction"] == "upload"
        })
        .await;
    assert_eq!(cancelled["transfers"][0]["id"], 1);
    ben.wait_for("file_failed upload", |e| {
        e["type"] == "file_failed" && e["direction"] == "upload" && e["reason"] == "cancelled"
    })
    .await;
    ben.say("/cancel 77").await;
    let unknown = ben
        .wait_for("nothing to cancel", |e| {
            e["type"] == "cancel_failed" && e["id"] == "77"
        })
        .await;
    assert!(unknown["message"].is_string());
    ben.say("after the upload").await;
    ana.wait_messages_from("ben", 2).await;
    assert!(
        !of_type(&ana, "file_offered").any(|e| e["name"] == "upload.bin"),
        "the cancelled upload never reached the room"
    );
}

/// A member through the client library (as the app uses it) against the real server.
async fn library_member(
    addr: std::net::SocketAddr,
    nick: &str,
) -> (
    tertulia_core::client::ClientHandle,
    tokio::sync::mpsc::Receiver<tertulia_core::client::ClientEvent>,
) {
    use tertulia_core::client::{self, ClientConfig, ClientEvent};
    let (handle, mut events) = client::spawn(ClientConfig::new(addr.to_string(), nick, PASS));
    loop {
        match tokio::time::timeout(tertulia_e2e::WAIT, events.recv()).await {
            Ok(Some(ClientEvent::Connected { .. })) => return (handle, events),
            Ok(Some(_)) => {}
            other => panic!("{nick} never joined: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_file_fetched_for_its_preview_can_be_saved_at_the_same_time() {
    use tertulia_core::client::{ClientEvent, FetchTarget};
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let ana_dir = tempfile::tempdir().unwrap();
    let mut ana = member(server.addr, "ana", ana_dir.path()).await;
    let (app, mut events) = library_member(server.addr, "app").await;
    let photo = png_bytes(3 * CHUNK_BYTES as usize);
    let (_src, path) = source_file("photo.png", &photo);
    let sent = send(&mut ana, &path).await;
    let id = id_of(&sent["file_id"]);
    loop {
        match tokio::time::timeout(tertulia_e2e::WAIT, events.recv()).await {
            Ok(Some(ClientEvent::FileOffered { file_id, .. })) if file_id == id => break,
            Ok(Some(_)) => {}
            other => panic!("the file never showed: {other:?}"),
        }
    }
    // The preview's fetch (into memory), then Save (to the path the dialog gave) before
    // the preview has arrived.
    let saved_at = tempfile::tempdir().unwrap();
    let chosen = saved_at.path().join("mine.png");
    app.fetch_file(id, FetchTarget::Memory { max_bytes: 1 << 20 })
        .await
        .expect("the preview's fetch");
    app.fetch_file(id, FetchTarget::Path(chosen.clone()))
        .await
        .expect("Save while the preview is on its way");
    let (mut preview, mut saved) = (None, None);
    while preview.is_none() || saved.is_none() {
        match tokio::time::timeout(tertulia_e2e::WAIT, events.recv()).await {
            Ok(Some(ClientEvent::FileReceived {
                file_id,
                path,
                bytes,
                ..
            })) if file_id == id => match (path, bytes) {
                (Some(path), None) => saved = Some(path),
                (None, Some(bytes)) => preview = Some(bytes),
                other => panic!("a file_received with {other:?}"),
            },
            Ok(Some(ClientEvent::FileFailed { message, .. })) => panic!("failed: {message}"),
            Ok(Some(_)) => {}
            other => panic!("never both: {other:?}"),
        }
    }
    assert!(preview.is_some_and(|b| b[..] == photo[..]));
    assert_eq!(saved.as_deref(), Some(chosen.to_str().unwrap()));
    assert!(std::fs::read(&chosen).unwrap() == photo);
    assert_eq!(listing(saved_at.path()), vec!["mine.png"]);
    app.disconnect().await;
}

#[tokio::test]
async fn the_terminal_says_how_to_fetch_a_live_file_it_did_not_fetch() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (ana_dir, ben_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut ana = Terminal::start_with(
        server.addr,
        "ana",
        ana_dir.path(),
        &["--auto-fetch-mib", "0"],
    )
    .await;
    ana.until("in the room").await;
    let mut ben = member(server.addr, "ben", ben_dir.path()).await;
    let notes = content(2000, 70);
    let (_src, path) = source_file("notes.txt", &notes);
    let sent = send(&mut ben, &path).await;
    let id = id_of(&sent["file_id"]);
    let hint = ana.until("not fetched on its own").await;
    assert!(
        hint.contains("notes.txt") && hint.ends_with(&format!("/get {id} fetches it")),
        "{hint}"
    );
    assert!(listing(ana_dir.path()).is_empty());
    ana.type_line(&format!("/get {id}")).await;
    ana.until("received and checked").await;
    assert!(std::fs::read(ana_dir.path().join("notes.txt")).unwrap() == notes);
    ana.type_line("/quit").await;
    let _ = tokio::time::timeout(tertulia_e2e::WAIT, ana.child.wait()).await;
}
