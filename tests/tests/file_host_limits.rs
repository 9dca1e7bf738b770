//! The host's limits on files hold against hostile members (`docs/PROTOCOL.md` §8, §13),
//! through the real `tertulia-server`: sizes that lie and chunks out of place close the
//! connection with `error: protocol` while the rest of the room chats on; files over the
//! per-file limit are `too_large`; at the quota the oldest file gives way (`file_missing:
//! gone`) and one that can never fit is `no_space`; a flood of offers is held back, then
//! closed for flooding; unfinished uploads are limited per client and per address (`busy`)
//! and expire, freeing the quota.

use std::net::{IpAddr, Ipv4Addr};

use tertulia_core::files::CHUNK_BYTES;
use tertulia_core::message::{
    ClientMessage, ErrorCode, FileMissingReason, FileRefusal, ServerMessage,
};
use tertulia_e2e::{ChatProcess, RawMember, ServerProcess};

const PASS: &str = "file limits passphrase";
const C: usize = CHUNK_BYTES as usize;
const KIB: usize = 1024;

fn loopback(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

async fn member_from(server: &ServerProcess, nick: &str, source: Option<IpAddr>) -> RawMember {
    let mut member = RawMember::connect(server.addr, PASS, source).await.unwrap();
    member.join(nick).await;
    member
        .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
        .await
        .expect("welcome");
    member
}

async fn member(server: &ServerProcess, nick: &str) -> RawMember {
    member_from(server, nick, None).await
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

fn refusal(answer: Option<ServerMessage>) -> FileRefusal {
    match answer {
        Some(ServerMessage::FileRefused { reason, .. }) => reason,
        other => panic!("expected file_refused, got {other:?}"),
    }
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

/// Announced 1 KiB, it keeps sending whole chunks; another sends a chunk past `have`;
/// another one of the wrong length. Each is closed with `error: protocol`; the room chats on.
#[tokio::test]
async fn sizes_that_lie_and_chunks_out_of_place_close_only_that_connection() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (mut ana, mut ben) = two_chatting(&server).await;

    let mut liar = member(&server, "liar").await;
    let Some(ServerMessage::FileAccepted { .. }) =
        liar.offer_as(1, "small.txt", KIB as u64, [0; 32]).await
    else {
        panic!("accepted");
    };
    let big = vec![7u8; C];
    for _ in 0..20 {
        if liar.send_chunk(1, 0, &big).await.is_err() {
            break;
        }
    }
    protocol_error(liar.until_closed().await);
    still_chatting(&mut ana, &mut ben, "after the liar").await;

    let mut skipper = member(&server, "skipper").await;
    let file = vec![1u8; 3 * C];
    let Some(ServerMessage::FileAccepted { .. }) = skipper.offer(1, "f.bin", &file).await else {
        panic!("accepted");
    };
    skipper
        .send_chunk(1, CHUNK_BYTES, &file[..C])
        .await
        .unwrap();
    protocol_error(skipper.until_closed().await);

    let mut short = member(&server, "short").await;
    let Some(ServerMessage::FileAccepted { .. }) = short.offer(1, "f.bin", &file).await else {
        panic!("accepted");
    };
    short.send_chunk(1, 0, &file[..100]).await.unwrap();
    protocol_error(short.until_closed().await);

    // A get from an offset that is not a chunk's place is a protocol error too.
    let mut uploader = member(&server, "uploader").await;
    let id = file_id(uploader.upload(1, "f.bin", &file).await);
    uploader
        .send(&ClientMessage::FileGet {
            file_id: id,
            offset: 17,
        })
        .await
        .unwrap();
    protocol_error(uploader.until_closed().await);
    still_chatting(&mut ana, &mut ben, "after all of them").await;
}

#[tokio::test]
async fn a_file_over_the_limit_is_too_large_and_a_host_without_files_says_disabled() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--max-file-mib", "1"]).await;
    let mut ana = member(&server, "ana").await;
    let answer = ana.offer_as(1, "big.iso", 1024 * 1024 + 1, [0; 32]).await;
    assert_eq!(refusal(answer), FileRefusal::TooLarge);
    let fits = vec![3u8; 1024 * 1024];
    file_id(ana.upload(2, "fits.bin", &fits).await);

    let off = ServerProcess::start("127.0.0.1:0", PASS, &["--max-file-mib", "0"]).await;
    let mut bea = member(&off, "bea").await;
    assert_eq!(
        refusal(bea.offer(1, "a.txt", b"hi").await),
        FileRefusal::Disabled
    );
}

/// A quota of 1 MiB: a second 600 KiB file makes the first give way (its get says `gone`),
/// and while an unfinished upload holds 600 KiB, another 600 KiB can never fit: `no_space`.
#[tokio::test]
async fn at_the_quota_the_oldest_file_gives_way_and_what_can_never_fit_is_no_space() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-file-mib", "1", "--max-files-mib", "1"],
    )
    .await;
    let mut ana = member(&server, "ana").await;
    let first = vec![1u8; 600 * KIB];
    let second = vec![2u8; 600 * KIB];
    let first_id = file_id(ana.upload(1, "first.bin", &first).await);
    let second_id = file_id(ana.upload(2, "second.bin", &second).await);
    let mut bea = member(&server, "bea").await;
    match bea.download(first_id, 0).await {
        Err(Some(ServerMessage::FileMissing { reason, .. })) => {
            assert_eq!(reason, FileMissingReason::Gone)
        }
        other => panic!("expected gone, got {:?}", other.map(|c| c.len())),
    }
    assert!(bea.download(second_id, 0).await.expect("the newer file") == second);
    // An unfinished upload holds its whole size; what cannot fit next to it is refused.
    let third = vec![3u8; 600 * KIB];
    let Some(ServerMessage::FileAccepted { .. }) = ana.offer(3, "third.bin", &third).await else {
        panic!("accepted (the second file gives way)");
    };
    let fourth = vec![4u8; 600 * KIB];
    assert_eq!(
        refusal(bea.offer(1, "fourth.bin", &fourth).await),
        FileRefusal::NoSpace
    );
    match bea.download(second_id, 0).await {
        Err(Some(ServerMessage::FileMissing { reason, .. })) => {
            assert_eq!(reason, FileMissingReason::Gone, "it gave way to the third")
        }
        other => panic!("expected gone, got {:?}", other.map(|c| c.len())),
    }
}

/// Offers beyond their burst are held back (and answered at the rate); far beyond it the
/// connection is closed for flooding. Others chat on meanwhile.
#[tokio::test]
async fn a_flood_of_offers_is_held_back_then_closed_and_others_are_unaffected() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (mut ana, mut ben) = two_chatting(&server).await;
    let mut flooder = member(&server, "flooder").await;
    for id in 1..=200u64 {
        let offer = ClientMessage::FileOffer {
            upload_id: id,
            name: "x".into(),
            size: 10,
            mime: String::new(),
            sha256: [0; 32],
        };
        if flooder.send(&offer).await.is_err() {
            break;
        }
    }
    let mut answered = 0;
    let mut last_error = None;
    while let Some(message) = flooder.next_private().await {
        match message {
            ServerMessage::FileAccepted { .. } | ServerMessage::FileRefused { .. } => answered += 1,
            ServerMessage::Error { code, .. } => last_error = Some(code),
            _ => {}
        }
    }
    assert_eq!(last_error, Some(ErrorCode::Flood));
    assert!(
        (8..200).contains(&answered),
        "the burst is answered, the rest held back then cut: {answered}"
    );
    still_chatting(&mut ana, &mut ben, "after the offer flood").await;
}

/// Two unfinished uploads per client id, eight per address: the next offer is `busy`.
#[tokio::test]
async fn unfinished_uploads_are_limited_per_client_and_per_address() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = member_from(&server, "ana", loopback(21)).await;
    for id in 1..=2 {
        let Some(ServerMessage::FileAccepted { .. }) =
            ana.offer_as(id, "a.bin", 1000, [id as u8; 32]).await
        else {
            panic!("accepted");
        };
    }
    assert_eq!(
        refusal(ana.offer_as(3, "a.bin", 1000, [3; 32]).await),
        FileRefusal::Busy
    );
    // More clients from the same address: six more, then the address is full.
    let mut others = Vec::new();
    for i in 0..3 {
        let mut other = member_from(&server, &format!("m{i}"), loopback(21)).await;
        for id in 1..=2 {
            let Some(ServerMessage::FileAccepted { .. }) =
                other.offer_as(id, "b.bin", 1000, [id as u8; 32]).await
            else {
                panic!("accepted");
            };
        }
        others.push(other);
    }
    let mut ninth = member_from(&server, "ninth", loopback(21)).await;
    assert_eq!(
        refusal(ninth.offer_as(1, "c.bin", 1000, [1; 32]).await),
        FileRefusal::Busy
    );
    // Another address is not affected; a cancel frees a place.
    let mut elsewhere = member_from(&server, "elsewhere", loopback(22)).await;
    let Some(ServerMessage::FileAccepted { .. }) =
        elsewhere.offer_as(1, "d.bin", 1000, [1; 32]).await
    else {
        panic!("another address is accepted");
    };
    ana.send(&ClientMessage::FileCancel { upload_id: 1 })
        .await
        .unwrap();
    let Some(ServerMessage::FileAccepted { .. }) = ana.offer_as(3, "a.bin", 1000, [3; 32]).await
    else {
        panic!("accepted once one was cancelled");
    };
}

/// An unfinished upload is deleted after the time given (`--unfinished-upload-secs`), and
/// the quota it held is free again.
#[tokio::test]
async fn unfinished_uploads_expire_and_free_the_quota() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--max-file-mib",
            "1",
            "--max-files-mib",
            "1",
            "--unfinished-upload-secs",
            "1",
        ],
    )
    .await;
    let mut ana = member(&server, "ana").await;
    let file = vec![5u8; 900 * KIB];
    let Some(ServerMessage::FileAccepted { window, .. }) = ana.offer(1, "a.bin", &file).await
    else {
        panic!("accepted");
    };
    ana.send_chunks(1, &file, 0, window, Some(CHUNK_BYTES * 8))
        .await
        .expect("progress");
    let mut bea = member(&server, "bea").await;
    let other = vec![6u8; 900 * KIB];
    assert_eq!(
        refusal(bea.offer(1, "b.bin", &other).await),
        FileRefusal::NoSpace,
        "ana's unfinished upload holds the quota"
    );
    server.wait_for_log("unfinished uploads expired").await;
    file_id(bea.upload(1, "b.bin", &other).await);
    // Ana's upload starts again from nothing (bea's finished file gives way to it).
    match ana.offer(1, "a.bin", &file).await {
        Some(ServerMessage::FileAccepted { have, .. }) => assert_eq!(have, 0, "deleted"),
        other => panic!("expected a fresh start, got {other:?}"),
    }
}

/// A file leaves with its event: once retention no longer keeps the event, the file is gone.
#[tokio::test]
async fn a_file_leaves_with_its_event() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--retain-events", "2"]).await;
    let mut ana = member(&server, "ana").await;
    let id = file_id(ana.upload(1, "old.txt", b"soon gone").await);
    let mut bea = member(&server, "bea").await;
    assert_eq!(
        bea.download(id, 0).await.expect("kept for now"),
        b"soon gone"
    );
    for n in 1..=3u64 {
        ana.send(&ClientMessage::Say {
            id: n,
            text: format!("message {n}"),
        })
        .await
        .unwrap();
        ana.wait_private(|m| matches!(m, ServerMessage::Ack { up_to } if *up_to == n))
            .await
            .expect("ack");
    }
    match bea.download(id, 0).await {
        Err(Some(ServerMessage::FileMissing { reason, .. })) => {
            assert_eq!(reason, FileMissingReason::Gone)
        }
        other => panic!("expected gone, got {:?}", other.map(|c| c.len())),
    }
}

#[tokio::test]
async fn the_file_flags_are_in_the_help() {
    let output = tokio::process::Command::new(tertulia_e2e::binary("tertulia-server"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--max-file-mib",
        "--max-files-mib",
        "--unfinished-upload-secs",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    // With frames too small for a chunk the host takes no files (and says so at start).
    let small = ServerProcess::start("127.0.0.1:0", PASS, &["--max-frame-bytes", "20000"]).await;
    let mut ana = member(&small, "ana").await;
    assert_eq!(
        refusal(ana.offer(1, "a.txt", b"hi").await),
        FileRefusal::Disabled
    );
    assert!(
        small.log().contains("too small to carry file chunks"),
        "{}",
        small.log()
    );
}

/// A disk that fills up (files limited to 256 KiB each): the upload is refused `no_space`
/// and what was held of it removed; the room goes on, and a smaller file still fits.
#[tokio::test]
async fn a_full_disk_refuses_the_upload_and_the_room_goes_on() {
    let data = tertulia_e2e::DataDir::new("file-disk-full");
    let server = ServerProcess::start_with_file_limit(
        "127.0.0.1:0",
        PASS,
        &["--data-dir", data.path()],
        Some(256 * KIB as u64),
    )
    .await;
    let mut ana = member(&server, "ana").await;
    let big = vec![8u8; 400 * KIB];
    assert_eq!(
        refusal(ana.upload(1, "big.bin", &big).await),
        FileRefusal::NoSpace
    );
    ana.send(&ClientMessage::Say {
        id: 1,
        text: "still here".into(),
    })
    .await
    .unwrap();
    ana.wait_private(|m| matches!(m, ServerMessage::Ack { up_to: 1 }))
        .await
        .expect("chat goes on");
    let small = vec![9u8; 100 * KIB];
    let id = file_id(ana.upload(2, "small.bin", &small).await);
    let files = std::path::Path::new(data.path()).join("files");
    let left: Vec<_> = std::fs::read_dir(&files).unwrap().collect();
    assert_eq!(
        left.len(),
        1,
        "only the stored file: the refused one was removed"
    );
    let mut bea = member(&server, "bea").await;
    assert!(bea.download(id, 0).await.expect("the small file") == small);
}

/// File data does not queue behind chat held back by the flood limit: an upload finishes
/// while the sender's burst of messages is still being let through at the flood rate.
#[tokio::test]
async fn chunks_do_not_wait_behind_held_back_chat() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut ana = member(&server, "ana").await;
    let file = vec![4u8; 3 * C];
    let Some(ServerMessage::FileAccepted { .. }) = ana.offer(1, "f.bin", &file).await else {
        panic!("accepted");
    };
    for id in 1..=25 {
        ana.send(&ClientMessage::Say {
            id,
            text: format!("burst {id}"),
        })
        .await
        .unwrap();
    }
    for i in 0..3 {
        ana.send_chunk(1, (i * C) as u64, &file[i * C..(i + 1) * C])
            .await
            .unwrap();
    }
    let mut done_before_last_ack = None;
    while done_before_last_ack.is_none() {
        match ana.next_private().await.expect("open") {
            ServerMessage::FileDone { .. } => done_before_last_ack = Some(true),
            ServerMessage::Ack { up_to: 25 } => done_before_last_ack = Some(false),
            _ => {}
        }
    }
    assert_eq!(
        done_before_last_ack,
        Some(true),
        "the file did not wait for the chat"
    );
}

/// `file_get` and `file_stop` beyond their burst are held back, and far beyond it closed for
/// flooding.
#[tokio::test]
async fn a_flood_of_gets_is_held_back_then_closed() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let mut flooder = member(&server, "flooder").await;
    for n in 0..300u64 {
        let get = if n % 2 == 0 {
            ClientMessage::FileGet {
                file_id: n + 1,
                offset: 0,
            }
        } else {
            ClientMessage::FileStop { file_id: n }
        };
        if flooder.send(&get).await.is_err() {
            break;
        }
    }
    let (mut answered, mut last_error) = (0, None);
    while let Some(message) = flooder.next_private().await {
        match message {
            ServerMessage::FileMissing { .. } => answered += 1,
            ServerMessage::Error { code, .. } => last_error = Some(code),
            _ => {}
        }
    }
    assert_eq!(last_error, Some(ErrorCode::Flood));
    assert!((8..150).contains(&answered), "{answered} gets answered");
}

/// The room database's size cap takes the oldest events, and a file goes with its event.
#[tokio::test]
async fn a_file_leaves_with_its_event_at_the_store_cap() {
    let data = tertulia_e2e::DataDir::new("file-store-cap");
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--data-dir",
            data.path(),
            "--max-store-mib",
            "1",
            "--flood-rate",
            "0",
        ],
    )
    .await;
    let mut ana = member(&server, "ana").await;
    let id = file_id(ana.upload(1, "old.txt", b"evicted with its event").await);
    let text = "e".repeat(8000);
    for n in 1..=300u64 {
        ana.send(&ClientMessage::Say {
            id: n,
            text: text.clone(),
        })
        .await
        .unwrap();
        if n % 50 == 0 {
            ana.wait_private(|m| matches!(m, ServerMessage::Ack { up_to } if *up_to == n))
                .await
                .expect("ack");
        }
    }
    server.wait_for_log("size cap").await;
    let mut bea = member(&server, "bea").await;
    match bea.download(id, 0).await {
        Err(Some(ServerMessage::FileMissing { reason, .. })) => {
            assert_eq!(reason, FileMissingReason::Gone)
        }
        other => panic!("expected gone, got {:?}", other.map(|c| c.len())),
    }
}
