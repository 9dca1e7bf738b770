//! An attacker's review of the host's per-connection file handling (`docs/PROTOCOL.md` §13,
//! issue #14 findings 2, 6 and 7), through the real `tertulia-server` over the wire:
//!
//! - a file that leaves the room while a member downloads it is let go of: a member that
//!   reads gets `file_missing: gone`, one that never reads is cut off, and the host's open
//!   file descriptors on the deleted file (counted in `/proc/PID/fd`) drop either way; a
//!   download the member never takes is cut off after 30 s even if its file stays;
//! - chunks the host does not store are counted: a flood of them (for a cancelled upload, an
//!   upload never offered, or resends below `have`) is closed with `error: protocol` while the
//!   room chats on, and a window's worth of resends is tolerated;
//! - two connections of one client interleaving chunks of one upload never get a file stored
//!   with chunks of both or a wrong hash announced as good: what the room announces is what a
//!   receiver downloads, byte for byte.

use std::time::Duration;

use tertulia_core::files::CHUNK_BYTES;
use tertulia_core::message::{ClientMessage, ErrorCode, FileMissingReason, ServerMessage};
use tertulia_e2e::{sha256, ChatProcess, Incoming, RawMember, ServerProcess, WAIT};

const PASS: &str = "file host attacks passphrase";
const C: usize = CHUNK_BYTES as usize;
const MIB: usize = 1024 * 1024;

async fn member(server: &ServerProcess, nick: &str) -> RawMember {
    let mut member = RawMember::connect(server.addr, PASS, None).await.unwrap();
    member.join(nick).await;
    member
        .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
        .await
        .expect("welcome");
    member
}

async fn member_as(server: &ServerProcess, nick: &str, client_id: &str) -> RawMember {
    let mut member = RawMember::connect(server.addr, PASS, None).await.unwrap();
    member.join_as(nick, client_id).await;
    member
        .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
        .await
        .expect("welcome");
    member
}

/// Two ordinary members (the real client), connected to each other.
async fn two_chatting(server: &ServerProcess) -> (ChatProcess, ChatProcess) {
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;
    (ana, ben)
}

async fn still_chatting(ana: &mut ChatProcess, ben: &mut ChatProcess, text: &str) {
    ana.say(text).await;
    ben.wait_for(text, |e| e["type"] == "message" && e["text"] == text)
        .await;
}

fn file_id(answer: Option<ServerMessage>) -> u64 {
    match answer {
        Some(ServerMessage::FileDone { file_id, .. }) if file_id != 0 => file_id,
        other => panic!("expected file_done, got {other:?}"),
    }
}

fn protocol_error(last: Option<ServerMessage>) {
    match last {
        Some(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::Protocol),
        other => panic!("expected error: protocol, got {other:?}"),
    }
}

/// The server's open file descriptors on stored file `file_id` (deleted or not).
fn open_fds_on(server: &ServerProcess, file_id: u64) -> usize {
    let pid = server.child.id().expect("server running");
    let name = format!("{file_id:016x}");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains(&name))
        .count()
}

/// Wait (bounded, generously) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A room with a 4 MiB file quota, `first` (3 MiB) in it, and the uploader that will make it
/// give way with a second 3 MiB file.
async fn room_with_a_file(server: &ServerProcess) -> (RawMember, u64, Vec<u8>) {
    let mut uploader = member(server, "uploader").await;
    let first: Vec<u8> = (0..3 * MIB).map(|i| (i % 253) as u8).collect();
    let id = file_id(uploader.upload(1, "first.bin", &first).await);
    (uploader, id, first)
}

/// A member asks for a file and never reads; the file gives way to the quota. The host's
/// descriptors on it (there while it is being sent) drop, and the room chats on.
#[tokio::test]
async fn an_evicted_file_is_let_go_of_though_its_downloader_never_reads() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-file-mib", "3", "--max-files-mib", "4"],
    )
    .await;
    let (mut ana, mut ben) = two_chatting(&server).await;
    let (mut uploader, first_id, _) = room_with_a_file(&server).await;
    // The upload's handle goes right after its `file_done`.
    until("nothing holds it at rest", || {
        open_fds_on(&server, first_id) == 0
    })
    .await;

    let mut sleeper = member(&server, "sleeper").await;
    sleeper
        .send(&ClientMessage::FileGet {
            file_id: first_id,
            offset: 0,
        })
        .await
        .unwrap();
    until("the download holds the file open", || {
        open_fds_on(&server, first_id) >= 1
    })
    .await;

    let second = vec![2u8; 3 * MIB];
    file_id(uploader.upload(2, "second.bin", &second).await);
    until("the host lets go of the evicted file", || {
        open_fds_on(&server, first_id) == 0
    })
    .await;
    // Reading what is left ends in `file_missing: gone` (the writer was between frames when
    // the file left) or in the close (it was in the middle of one: cut off after the stall).
    loop {
        match sleeper.next_incoming().await {
            None => break,
            Some(Incoming::Private(ServerMessage::FileMissing { file_id, reason })) => {
                assert_eq!((file_id, reason), (first_id, FileMissingReason::Gone));
                break;
            }
            Some(_) => {}
        }
    }
    still_chatting(&mut ana, &mut ben, "after the eviction").await;
}

/// A member that reads, paused part-way while its file gives way: once it reads again it gets
/// what was on the way, then `file_missing: gone` (not the rest of the file), and its
/// connection stays. The host's descriptor on the file goes.
#[tokio::test]
async fn a_reading_downloader_is_told_its_file_is_gone_and_stays_connected() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--max-file-mib",
            "3",
            "--max-files-mib",
            "4",
            // Not cut off for pausing while the test evicts the file.
            "--slow-consumer-secs",
            "120",
        ],
    )
    .await;
    let (mut uploader, first_id, first) = room_with_a_file(&server).await;
    let mut reader = member(&server, "reader").await;
    reader
        .send(&ClientMessage::FileGet {
            file_id: first_id,
            offset: 0,
        })
        .await
        .unwrap();
    let (mut chunks, mut begun) = (0usize, false);
    while chunks < 3 {
        match reader.next_incoming().await.expect("open") {
            Incoming::Private(ServerMessage::FileBegin { file_id, .. }) => {
                begun = file_id == first_id
            }
            Incoming::Chunk(_) if begun => chunks += 1,
            _ => {}
        }
    }
    // Paused: the host's writer fills the socket and waits. The file gives way meanwhile.
    until("the download holds the file open", || {
        open_fds_on(&server, first_id) >= 1
    })
    .await;
    file_id(uploader.upload(2, "second.bin", &vec![2u8; 3 * MIB]).await);
    let missing = loop {
        match reader.next_incoming().await.expect("still connected") {
            Incoming::Chunk(_) => chunks += 1,
            Incoming::Private(ServerMessage::FileMissing { file_id, reason }) => {
                break (file_id, reason)
            }
            _ => {}
        }
    };
    assert_eq!(missing, (first_id, FileMissingReason::Gone));
    let whole = first.len().div_ceil(C);
    assert!(
        chunks < whole,
        "stopped part-way: {chunks} of {whole} chunks"
    );
    reader.send(&ClientMessage::Ping).await.unwrap();
    reader
        .wait_private(|m| matches!(m, ServerMessage::Pong { .. }))
        .await
        .expect("the connection stays");
    until("the host lets go of the file", || {
        open_fds_on(&server, first_id) == 0
    })
    .await;
}

/// A download its member never takes, of a file that stays: after 30 s with nothing taken
/// (the client's own patience with a download) the connection is cut off as a slow consumer
/// and the host's descriptor on the file goes.
#[tokio::test]
async fn a_download_never_taken_is_cut_off_and_lets_go_of_its_file() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--max-file-mib", "3"]).await;
    let (_uploader, first_id, _) = room_with_a_file(&server).await;
    let mut sleeper = member(&server, "sleeper").await;
    sleeper
        .send(&ClientMessage::FileGet {
            file_id: first_id,
            offset: 0,
        })
        .await
        .unwrap();
    until("the download holds the file open", || {
        open_fds_on(&server, first_id) >= 1
    })
    .await;
    until("the host lets go of the file", || {
        open_fds_on(&server, first_id) == 0
    })
    .await;
    server.wait_for_log("a download is not being taken").await;
    let mut chunks = 0;
    while let Some(incoming) = sleeper.next_incoming().await {
        chunks += matches!(incoming, Incoming::Chunk(_)) as usize;
    }
    assert!(chunks < 3 * MIB / C, "cut off part-way: {chunks} chunks");
}

/// Chunks the host drops are opened all the same, so they are counted: a window's worth of
/// resends is tolerated (the upload then completes), one more — or a flood of chunks for a
/// cancelled upload, or for one never offered — is `error: protocol`. The room chats on.
#[tokio::test]
async fn chunks_the_host_does_not_store_are_counted_and_a_flood_of_them_is_cut_off() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (mut ana, mut ben) = two_chatting(&server).await;
    let file: Vec<u8> = (0..3 * C).map(|i| (i % 241) as u8).collect();

    // A window (16) of resends of a stored chunk: dropped; the upload goes on.
    let mut resender = member(&server, "resender").await;
    let Some(ServerMessage::FileAccepted { window, .. }) = resender.offer(1, "f.bin", &file).await
    else {
        panic!("accepted");
    };
    assert_eq!(window, 16);
    for _ in 0..=window {
        resender.send_chunk(1, 0, &file[..C]).await.unwrap();
    }
    file_id(resender.send_chunks(1, &file, C as u64, window, None).await);

    // One resend more than the window: closed.
    let mut repeater = member(&server, "repeater").await;
    let Some(ServerMessage::FileAccepted { .. }) = repeater.offer(1, "f.bin", &file).await else {
        panic!("accepted");
    };
    for _ in 0..=window + 1 {
        if repeater.send_chunk(1, 0, &file[..C]).await.is_err() {
            break;
        }
    }
    protocol_error(repeater.until_closed().await);

    // Chunks for an upload it cancelled, far more than a window: closed.
    let mut canceller = member(&server, "canceller").await;
    let Some(ServerMessage::FileAccepted { .. }) = canceller.offer(1, "f.bin", &file).await else {
        panic!("accepted");
    };
    canceller.send_chunk(1, 0, &file[..C]).await.unwrap();
    canceller
        .send(&ClientMessage::FileCancel { upload_id: 1 })
        .await
        .unwrap();
    for _ in 0..40 {
        if canceller
            .send_chunk(1, C as u64, &file[C..2 * C])
            .await
            .is_err()
        {
            break;
        }
    }
    protocol_error(canceller.until_closed().await);
    still_chatting(&mut ana, &mut ben, "after the cancelled flood").await;

    // Chunks for an upload never offered: there is nothing to drop them for.
    let mut stranger = member(&server, "stranger").await;
    for _ in 0..40 {
        if stranger.send_chunk(7, 0, &file[..C]).await.is_err() {
            break;
        }
    }
    protocol_error(stranger.until_closed().await);
    still_chatting(&mut ana, &mut ben, "after the stranger").await;
}

/// Two connections of one client: the old one (replaced in the room, but its chunks still
/// read) and the new one, which takes the upload over at 0 and stores half of it. The old one
/// then sends other content for the same chunks. The host stores none of the old one's
/// chunks after the takeover (no chunk sealed twice at one offset): the file completes with
/// the announced SHA-256, and a receiver downloads exactly the new connection's content.
#[tokio::test]
async fn two_connections_of_one_client_interleaving_an_upload_never_store_a_mix() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let client_id = format!("{:032x}", rand::random::<u128>());
    let good: Vec<u8> = (0..12 * C).map(|i| (i % 239) as u8).collect();
    let evil = vec![0xEE; good.len()];

    let mut old = member_as(&server, "ana", &client_id).await;
    let Some(ServerMessage::FileAccepted { have: 0, .. }) = old.offer(1, "f.bin", &good).await
    else {
        panic!("accepted");
    };
    let mut new = member_as(&server, "ana", &client_id).await;
    let Some(ServerMessage::FileAccepted {
        have: 0, window, ..
    }) = new.offer(1, "f.bin", &good).await
    else {
        panic!("taken over at 0");
    };
    // The new connection stores chunks 0–7 (its `file_stored` says so) ...
    let Some(ServerMessage::FileStored { have, .. }) = new
        .send_chunks(1, &good, 0, window, Some(8 * CHUNK_BYTES))
        .await
    else {
        panic!("stored");
    };
    assert_eq!(have, 8 * CHUNK_BYTES);
    // ... then the old one sends its own content from 0, as the upload's owner once was.
    for i in 0..8 {
        old.send_chunk(1, i * CHUNK_BYTES, &evil[..C])
            .await
            .unwrap();
    }
    server
        .wait_for_log("upload no longer active on this connection")
        .await;
    let done = new
        .send_chunks(1, &good, 8 * CHUNK_BYTES, window, None)
        .await;
    let id = file_id(done);
    let mut receiver = member(&server, "receiver").await;
    let got = receiver.download(id, 0).await.expect("the file");
    assert_eq!(sha256(&got), sha256(&good), "what the room announced");
    assert!(got == good, "byte for byte the new connection's content");
}
