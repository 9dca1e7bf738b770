//! Uploads are exactly once across reconnects and host restarts (`docs/PROTOCOL.md` §10,
//! §13), through the real `tertulia-server`: an upload offered again after a reconnect
//! resumes at what the host holds; a host killed with `kill -9` in the middle of an upload
//! resumes it at its whole stored chunks after restarting, the finished file is in the room
//! once, and offering it again is answered `file_done` with no second event; the files
//! directory is fsynced once a stored file is created in it (watched with strace).

use tertulia_core::files::CHUNK_BYTES;
use tertulia_core::message::{RoomEventKind, ServerMessage};
use tertulia_e2e::{free_port, DataDir, RawMember, ServerProcess};

const PASS: &str = "file durability passphrase";

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect()
}

fn client_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn member_as(server: &ServerProcess, nick: &str, client: &str) -> RawMember {
    let mut member = RawMember::connect(server.addr, PASS, None).await.unwrap();
    member.join_as(nick, client).await;
    member
        .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
        .await
        .expect("welcome");
    member
}

/// How many `file` events with `upload_id` the room shows a newcomer.
async fn file_events(server: &ServerProcess, upload_id: u64) -> Vec<u64> {
    let mut observer = RawMember::connect(server.addr, PASS, None).await.unwrap();
    let nick = format!("obs{}", rand::random::<u16>());
    observer
        .join_for_history(&nick)
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            RoomEventKind::File {
                file_id,
                upload_id: id,
                ..
            } if id == upload_id => Some(file_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_upload_offered_again_after_a_reconnect_resumes_at_have() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let client = client_id();
    let file = content(40 * CHUNK_BYTES as usize + 77);
    let mut ana = member_as(&server, "ana", &client).await;
    let Some(ServerMessage::FileAccepted {
        have: 0, window, ..
    }) = ana.offer(1, "big.bin", &file).await
    else {
        panic!("accepted");
    };
    let told = match ana
        .send_chunks(1, &file, 0, window, Some(16 * CHUNK_BYTES))
        .await
    {
        Some(ServerMessage::FileStored { have, .. }) => have,
        other => panic!("expected progress, got {other:?}"),
    };
    assert_eq!(told, 16 * CHUNK_BYTES);
    drop(ana); // the connection breaks

    let mut again = member_as(&server, "ana", &client).await;
    let Some(ServerMessage::FileAccepted { have, window, .. }) =
        again.offer(1, "big.bin", &file).await
    else {
        panic!("accepted again");
    };
    assert_eq!(have, told, "resumes where the host is, not from 0");
    // Resent from a little before `have` (as a client unsure of the last chunks would):
    // those are dropped, the rest stored once.
    let from = have - 2 * CHUNK_BYTES;
    for offset in (from..have).step_by(CHUNK_BYTES as usize) {
        let end = (offset + CHUNK_BYTES) as usize;
        again
            .send_chunk(1, offset, &file[offset as usize..end])
            .await
            .unwrap();
    }
    let file_id = match again.send_chunks(1, &file, have, window, None).await {
        Some(ServerMessage::FileDone { file_id, .. }) => file_id,
        other => panic!("expected file_done, got {other:?}"),
    };
    let mut bea = RawMember::connect(server.addr, PASS, None).await.unwrap();
    bea.join("bea").await;
    assert!(bea.download(file_id, 0).await.expect("the file") == file);
    assert_eq!(file_events(&server, 1).await, vec![file_id]);
}

#[tokio::test]
async fn a_host_killed_mid_upload_resumes_it_and_the_file_is_in_the_room_once() {
    let data = DataDir::new("file-kill9");
    let listen = format!("127.0.0.1:{}", free_port().await);
    let args = ["--data-dir", data.path()];
    let server = ServerProcess::start(&listen, PASS, &args).await;
    let client = client_id();
    let file = content(30 * CHUNK_BYTES as usize + 5);
    let mut ana = member_as(&server, "ana", &client).await;
    let Some(ServerMessage::FileAccepted { window, .. }) = ana.offer(7, "movie.mkv", &file).await
    else {
        panic!("accepted");
    };
    let told = match ana
        .send_chunks(7, &file, 0, window, Some(16 * CHUNK_BYTES))
        .await
    {
        Some(ServerMessage::FileStored { have, .. }) => have,
        other => panic!("expected progress, got {other:?}"),
    };
    // A few more chunks in flight as the host dies.
    for i in 16..19u64 {
        let offset = i * CHUNK_BYTES;
        let end = (offset + CHUNK_BYTES) as usize;
        let _ = ana.send_chunk(7, offset, &file[offset as usize..end]).await;
    }
    server.kill9().await;

    let server = ServerProcess::start(&listen, PASS, &args).await;
    let mut ana = member_as(&server, "ana", &client).await;
    let Some(ServerMessage::FileAccepted { have, window, .. }) =
        ana.offer(7, "movie.mkv", &file).await
    else {
        panic!("accepted after the restart");
    };
    assert!(
        have >= told && have <= 19 * CHUNK_BYTES && have % CHUNK_BYTES == 0,
        "resumes at the whole chunks stored ({have}, told {told})"
    );
    let file_id = match ana.send_chunks(7, &file, have, window, None).await {
        Some(ServerMessage::FileDone { file_id, .. }) => file_id,
        other => panic!("expected file_done, got {other:?}"),
    };
    assert!(ana.download(file_id, 0).await.expect("the file") == file);
    assert_eq!(file_events(&server, 7).await, vec![file_id], "once");

    // Killed again after it is in the room: offered again, it is there already.
    server.kill9().await;
    let server = ServerProcess::start(&listen, PASS, &args).await;
    let mut ana = member_as(&server, "ana", &client).await;
    match ana.offer(7, "movie.mkv", &file).await {
        Some(ServerMessage::FileDone {
            file_id: 0, seq: 0, ..
        }) => {}
        other => panic!("expected file_done 0 0, got {other:?}"),
    }
    assert_eq!(file_events(&server, 7).await, vec![file_id], "still once");
    assert!(
        ana.download(file_id, 0)
            .await
            .expect("kept across restarts")
            == file
    );
}

/// A file on disk the database does not know (an orphan of a crash) is removed at start.
#[tokio::test]
async fn orphans_in_the_files_directory_are_removed_at_start() {
    let data = DataDir::new("file-orphans");
    let args = ["--data-dir", data.path()];
    let server = ServerProcess::start("127.0.0.1:0", PASS, &args).await;
    let mut ana = member_as(&server, "ana", &client_id()).await;
    let file = content(1000);
    let file_id = match ana.upload(1, "keep.txt", &file).await {
        Some(ServerMessage::FileDone { file_id, .. }) => file_id,
        other => panic!("expected file_done, got {other:?}"),
    };
    server.kill9().await;
    let files = std::path::Path::new(data.path()).join("files");
    let orphan = files.join("00000000deadbeef");
    std::fs::write(&orphan, b"left by a crash").unwrap();
    let server = ServerProcess::start("127.0.0.1:0", PASS, &args).await;
    assert!(!orphan.exists(), "the orphan is removed");
    assert!(
        files.join(format!("{file_id:016x}")).exists(),
        "the kept file stays"
    );
    let mut bea = RawMember::connect(server.addr, PASS, None).await.unwrap();
    bea.join("bea").await;
    assert!(bea.download(file_id, 0).await.expect("the file") == file);
}

/// The paths each thread's trace shows fsynced after `created` was made (by an `openat` with
/// `O_CREAT`, or a `mkdir`), in order: a directory opened, then that descriptor fsynced.
fn fsynced_after(traces: &[String], created: impl Fn(&str) -> bool) -> Vec<String> {
    let mut synced = Vec::new();
    for trace in traces {
        let mut seen_create = false;
        let mut open: std::collections::HashMap<String, String> = Default::default();
        for line in trace.lines() {
            let quoted = line.split('"').nth(1).unwrap_or_default();
            let result = line
                .rsplit("= ")
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            if (line.starts_with("mkdir") || line.contains("O_CREAT")) && created(quoted) {
                seen_create = true;
            } else if seen_create && line.starts_with("openat(") {
                open.insert(result, quoted.to_string());
            } else if let Some(fd) = line.strip_prefix("fsync(") {
                let fd = fd.split(')').next().unwrap_or_default();
                if let (true, Some(path)) = (line.ends_with("= 0"), open.get(fd)) {
                    synced.push(path.clone());
                }
            }
        }
    }
    synced
}

/// A finished file is on disk under its name after an operating-system crash, once the
/// database names it: the host fsyncs `files/` after creating a stored file in it, and the
/// data directory after creating `files/` (#14 review, finding 10). Skipped, saying so,
/// where strace cannot run.
#[tokio::test]
async fn the_files_directory_is_fsynced_after_a_stored_file_is_created() {
    let data = DataDir::new("file-fsync");
    let traces = tempfile::tempdir().unwrap();
    let prefix = traces.path().join("trace");
    let Some(server) = ServerProcess::start_traced(
        "127.0.0.1:0",
        PASS,
        &["--data-dir", data.path()],
        "openat,fsync,mkdir,mkdirat",
        &prefix,
    )
    .await
    else {
        return;
    };
    let mut ana = member_as(&server, "ana", &client_id()).await;
    let file = content(3 * CHUNK_BYTES as usize + 5);
    assert!(matches!(
        ana.upload(1, "a.bin", &file).await,
        Some(ServerMessage::FileDone { .. })
    ));
    server.terminate().await;
    let traces: Vec<String> = std::fs::read_dir(traces.path())
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert!(traces.len() > 1, "one trace per thread");
    let room = data.path().to_string();
    let files = std::path::Path::new(&room)
        .join("files")
        .display()
        .to_string();
    let stored = format!("{files}/");
    let after_file = fsynced_after(&traces, |path| path.starts_with(&stored));
    assert!(
        after_file.contains(&files),
        "files/ fsynced after a stored file was created: {after_file:?}"
    );
    let after_dir = fsynced_after(&traces, |path| path == files);
    assert!(
        after_dir.contains(&room),
        "the data directory fsynced after files/ was created: {after_dir:?}"
    );
}
