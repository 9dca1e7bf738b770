//! The host takes files and gives them back (`docs/PROTOCOL.md` §13), through the real
//! `tertulia-server` and raw members on loopback: what is uploaded is downloaded byte for
//! byte (several chunks and a short last one, a file of 0 bytes, from an offset), a resent
//! chunk is never stored twice, an upload already in the room is answered `file_done` without
//! a second event, a file that does not match its SHA-256 is refused as corrupt and never
//! reaches the room, and hostile names are kept and announced as safe names.

use tertulia_core::files::{safe_name, CHUNK_BYTES, CHUNK_OVERHEAD};
use tertulia_core::message::{FileRefusal, RoomEvent, RoomEventKind, ServerMessage};
use tertulia_e2e::{sha256, DataDir, RawMember, ServerProcess};

const PASS: &str = "file host passphrase";

/// `len` bytes no two chunks of which are alike.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add((i / 997) as u8) ^ seed)
        .collect()
}

async fn member(server: &ServerProcess, nick: &str) -> RawMember {
    let mut member = RawMember::connect(server.addr, PASS, None).await.unwrap();
    member.join(nick).await;
    member
        .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
        .await
        .expect("welcome");
    member
}

/// The file events in `events`.
fn files(events: &[RoomEvent]) -> Vec<(u64, String, u64, [u8; 32], u64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RoomEventKind::File {
                file_id,
                name,
                size,
                sha256,
                upload_id,
                ..
            } => Some((*file_id, name.clone(), *size, *sha256, *upload_id)),
            _ => None,
        })
        .collect()
}

fn done(answer: Option<ServerMessage>) -> (u64, u64) {
    match answer {
        Some(ServerMessage::FileDone { file_id, seq, .. }) => (file_id, seq),
        other => panic!("expected file_done, got {other:?}"),
    }
}

#[tokio::test]
async fn what_is_uploaded_is_downloaded_byte_identical_and_announced_once() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = member(&server, "ana").await;
    let photo = content(3 * CHUNK_BYTES as usize + 1234, 7);
    let (file_id, seq) = done(ana.upload(1, "photo.png", &photo).await);
    assert_ne!(file_id, 0);
    assert!(seq > 0);
    let empty: Vec<u8> = Vec::new();
    let (empty_id, _) = done(ana.upload(2, "empty.txt", &empty).await);

    let mut bea = RawMember::connect(server.addr, PASS, None).await.unwrap();
    let history = bea.join_for_history("bea").await;
    assert_eq!(
        files(&history),
        vec![
            (
                file_id,
                "photo.png".into(),
                photo.len() as u64,
                sha256(&photo),
                1
            ),
            (empty_id, "empty.txt".into(), 0, sha256(&empty), 2)
        ],
        "each file in the room once, as offered"
    );
    let got = bea.download(file_id, 0).await.expect("the file");
    assert!(got == photo, "byte-identical");
    let rest = bea
        .download(file_id, 2 * CHUNK_BYTES)
        .await
        .expect("from an offset");
    assert!(
        rest == photo[2 * CHUNK_BYTES as usize..],
        "the rest from the offset"
    );
    assert_eq!(bea.download(empty_id, 0).await.expect("empty"), empty);
    // The sender can fetch it too, and an unknown id is said to be unknown.
    assert!(ana.download(file_id, 0).await.expect("own file") == photo);
    match bea.download(12345, 0).await {
        Err(Some(ServerMessage::FileMissing { reason, .. })) => {
            assert_eq!(reason, tertulia_core::message::FileMissingReason::Unknown)
        }
        other => panic!("expected file_missing, got {:?}", other.map(|c| c.len())),
    }
}

#[tokio::test]
async fn a_resent_chunk_is_dropped_not_stored_twice() {
    let data = DataDir::new("file-resend");
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", data.path()]).await;
    let mut ana = member(&server, "ana").await;
    let file = content(2 * CHUNK_BYTES as usize + 10, 3);
    let c = CHUNK_BYTES as usize;
    let Some(ServerMessage::FileAccepted { have: 0, .. }) = ana.offer(1, "a.bin", &file).await
    else {
        panic!("accepted");
    };
    ana.send_chunk(1, 0, &file[..c]).await.unwrap();
    // The same chunk again (a resend), then the next ones.
    ana.send_chunk(1, 0, &file[..c]).await.unwrap();
    ana.send_chunk(1, 0, &file[..c]).await.unwrap();
    ana.send_chunk(1, CHUNK_BYTES, &file[c..2 * c])
        .await
        .unwrap();
    ana.send_chunk(1, 0, &file[..c]).await.unwrap();
    ana.send_chunk(1, 2 * CHUNK_BYTES, &file[2 * c..])
        .await
        .unwrap();
    let answer = ana
        .wait_private(|m| {
            matches!(
                m,
                ServerMessage::FileDone { .. } | ServerMessage::FileRefused { .. }
            )
        })
        .await;
    let (file_id, _) = done(answer);
    let stored = std::path::Path::new(data.path())
        .join("files")
        .join(format!("{file_id:016x}"));
    let stored_len = std::fs::metadata(&stored).expect("the stored file").len();
    assert_eq!(
        stored_len,
        file.len() as u64 + 3 * CHUNK_OVERHEAD as u64,
        "three frames, each stored once"
    );
    let mut bea = member(&server, "bea").await;
    assert!(bea.download(file_id, 0).await.expect("the file") == file);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&stored), 0o600, "files are the host user's only");
        assert_eq!(mode(stored.parent().unwrap()), 0o700);
    }
}

#[tokio::test]
async fn an_upload_at_or_below_the_highest_done_is_answered_done_with_no_second_event() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = member(&server, "ana").await;
    let file = content(1000, 1);
    done(ana.upload(5, "five.txt", &file).await);
    for again in [5, 3] {
        match ana.offer(again, "five.txt", &file).await {
            Some(ServerMessage::FileDone {
                upload_id,
                file_id: 0,
                seq: 0,
            }) => assert_eq!(upload_id, again),
            other => panic!("expected file_done 0 0, got {other:?}"),
        }
    }
    match ana.offer(0, "zero.txt", &file).await {
        Some(ServerMessage::FileRefused { reason, .. }) => {
            assert_eq!(reason, FileRefusal::BadOffer)
        }
        other => panic!("expected bad_offer, got {other:?}"),
    }
    let mut bea = RawMember::connect(server.addr, PASS, None).await.unwrap();
    let history = bea.join_for_history("bea").await;
    assert_eq!(files(&history).len(), 1, "in the room once");
}

#[tokio::test]
async fn a_file_that_does_not_match_its_sha256_is_refused_as_corrupt_and_never_shown() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = member(&server, "ana").await;
    let file = content(CHUNK_BYTES as usize + 99, 9);
    let mut wrong = sha256(&file);
    wrong[0] ^= 1;
    let Some(ServerMessage::FileAccepted { have, window, .. }) =
        ana.offer_as(1, "lie.bin", file.len() as u64, wrong).await
    else {
        panic!("accepted");
    };
    match ana.send_chunks(1, &file, have, window, None).await {
        Some(ServerMessage::FileRefused { reason, .. }) => assert_eq!(reason, FileRefusal::Corrupt),
        other => panic!("expected corrupt, got {other:?}"),
    }
    // Sent again from 0, with the right digest, it goes through.
    match ana.offer(1, "lie.bin", &file).await {
        Some(ServerMessage::FileAccepted { have: 0, .. }) => {}
        other => panic!("expected a fresh start, got {other:?}"),
    }
    let mut bea = RawMember::connect(server.addr, PASS, None).await.unwrap();
    let history = bea.join_for_history("bea").await;
    assert!(files(&history).is_empty(), "nothing corrupt in the room");
}

#[tokio::test]
async fn hostile_names_are_kept_and_announced_as_safe_names() {
    let data = DataDir::new("file-names");
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--data-dir", data.path()]).await;
    let mut ana = member(&server, "ana").await;
    let long = format!("{}.png", "x".repeat(10_000));
    let names = [
        long.as_str(),
        "../../x",
        "/etc/passwd",
        "evil\u{0}name\u{202e}gnp.exe",
        "CON.txt",
        "..",
    ];
    for (i, name) in names.iter().enumerate() {
        done(ana.upload(i as u64 + 1, name, b"hello").await);
    }
    let mut bea = RawMember::connect(server.addr, PASS, None).await.unwrap();
    let history = bea.join_for_history("bea").await;
    let shown: Vec<String> = files(&history).into_iter().map(|f| f.1).collect();
    let expected: Vec<String> = names.iter().map(|n| safe_name(n)).collect();
    assert_eq!(shown, expected);
    for name in &shown {
        assert!(
            name.len() <= 255 && !name.contains(['/', '\\', '\0', '\u{202e}']),
            "{name:?}"
        );
    }
    assert!(shown[0].ends_with(".png"));
    assert_eq!(shown[1], "x");
    // On the host, files are named by their id only: nothing a peer named.
    for entry in std::fs::read_dir(std::path::Path::new(data.path()).join("files")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name.len() == 16 && name.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }
}
