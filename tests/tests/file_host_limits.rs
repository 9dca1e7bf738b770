//! The host's limits on files hold against hostile members (`docs/PROTOCOL.md` §8, §13),
//! through the real `tertulia-server`: sizes that lie and chunks out of place close the
//! connection with `error: protocol` while the rest of the room chats on; files over the
//! per-file limit are `too_large`; the quota is charged what has arrived, so offers that send
//! nothing — many, from several addresses and made-up client ids — make no earlier file give
//! way and refuse no honest one; the oldest file gives way only as chunks arrive, and
//! unfinished uploads hold at most half the quota (`no_space` past it); a flood of offers is
//! held back, then closed for flooding, and a new connection or client id brings no new
//! burst; unfinished uploads are limited per client and per address (`busy`) and expire — an
//! offer that sends nothing quickly, whether or not it is offered again — freeing the quota.

use std::net::IpAddr;

use tertulia_core::files::CHUNK_BYTES;
use tertulia_core::message::{
    ClientMessage, ErrorCode, FileMissingReason, FileRefusal, ServerMessage,
};
use tertulia_e2e::hostile::{client_id, loopback, still_chatting, two_members, welcomed};
use tertulia_e2e::{ChatProcess, RawMember, ServerProcess, WAIT};

const PASS: &str = "file limits passphrase";
const C: usize = CHUNK_BYTES as usize;
const KIB: usize = 1024;

async fn member_from(server: &ServerProcess, nick: &str, source: Option<IpAddr>) -> RawMember {
    welcomed(server.addr, PASS, nick, None, source).await
}

async fn member(server: &ServerProcess, nick: &str) -> RawMember {
    member_from(server, nick, None).await
}

/// Two ordinary members (the real client), connected to each other.
async fn two_chatting(server: &ServerProcess) -> (ChatProcess, ChatProcess) {
    two_members(server, PASS).await
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

fn gone(answer: Result<Vec<u8>, Option<ServerMessage>>) {
    match answer {
        Err(Some(ServerMessage::FileMissing { reason, .. })) => {
            assert_eq!(reason, FileMissingReason::Gone)
        }
        other => panic!("expected gone, got {:?}", other.map(|c| c.len())),
    }
}

fn chunks(n: usize, fill: u8) -> Vec<u8> {
    (0..n * C).map(|i| fill ^ (i / 4099) as u8).collect()
}

/// The review's attack (#14, finding 1): a room with a 2 MiB quota keeps a photo; then
/// members from three more addresses, each connection under a made-up client id, offer 1 MiB
/// files they never send — as many as the per-address limit allows — and offer them again.
/// They take no space: the photo is still fetched byte for byte, and an honest 1 MiB upload
/// that follows is taken whole (and fetched too).
#[tokio::test]
async fn bare_offers_from_many_addresses_and_client_ids_evict_nothing_and_refuse_no_one() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-file-mib", "1", "--max-files-mib", "2"],
    )
    .await;
    let mut ana = member(&server, "ana").await;
    let photo = chunks(10, 0x89);
    let photo_id = file_id(ana.upload(1, "photo.jpg", &photo).await);

    let mut attackers = Vec::new();
    for address in 2..=4u8 {
        for n in 0..4usize {
            let nick = format!("a{address}x{n}");
            let id = client_id(n);
            let mut attacker =
                welcomed(server.addr, PASS, &nick, Some(&id), loopback(address)).await;
            for upload in 1..=2u64 {
                let answer = attacker
                    .offer_as(upload, "big.bin", 1024 * 1024, [upload as u8; 32])
                    .await;
                assert!(
                    matches!(answer, Some(ServerMessage::FileAccepted { have: 0, .. })),
                    "{nick}: {answer:?}"
                );
            }
            attackers.push(attacker);
        }
    }
    // Offered again, as after a reconnect: still nothing stored, nothing reserved.
    for attacker in &mut attackers {
        for upload in 1..=2u64 {
            let answer = attacker
                .offer_as(upload, "big.bin", 1024 * 1024, [upload as u8; 32])
                .await;
            assert!(matches!(answer, Some(ServerMessage::FileAccepted { .. })));
        }
    }
    let mut bea = member(&server, "bea").await;
    assert!(
        bea.download(photo_id, 0).await.expect("the photo is kept") == photo,
        "byte for byte"
    );
    let mut cy = member(&server, "cy").await;
    let honest = chunks(17, 0x42);
    let honest_id = file_id(cy.upload(1, "honest.bin", &honest).await);
    assert!(bea.download(honest_id, 0).await.expect("the honest file") == honest);
    assert!(bea.download(photo_id, 0).await.expect("still kept") == photo);
    assert!(
        !server.log().contains("the oldest files gave way"),
        "{}",
        server.log()
    );
}

/// A quota of 2 MiB (files up to 1 MiB): an offer makes nothing give way; the oldest file
/// gives way only once the chunks that need its room arrive; unfinished uploads hold at most
/// half the quota — the chunk past it is `no_space` — so the files kept keep the rest.
#[tokio::test]
async fn the_oldest_file_gives_way_as_chunks_arrive_and_unfinished_ones_hold_at_most_half() {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--max-file-mib", "1", "--max-files-mib", "2"],
    )
    .await;
    let mut ana = member(&server, "ana").await;
    let mut bea = member(&server, "bea").await;
    let (first, second, third) = (chunks(10, 1), chunks(10, 2), chunks(15, 3));
    let first_id = file_id(ana.upload(1, "first.bin", &first).await);
    let second_id = file_id(ana.upload(2, "second.bin", &second).await);
    let Some(ServerMessage::FileAccepted { window, .. }) = ana.offer(3, "third.bin", &third).await
    else {
        panic!("accepted");
    };
    assert!(
        bea.download(first_id, 0)
            .await
            .expect("an offer evicts nothing")
            == first,
        "still whole"
    );
    // 600 + 600 + 900 KiB do not fit 2 MiB: the first gives way to the third's last chunks.
    let third_id = file_id(ana.send_chunks(3, &third, 0, window, None).await);
    gone(bea.download(first_id, 0).await);
    assert!(bea.download(second_id, 0).await.expect("the second") == second);

    // Bea holds 960 KiB of an unfinished upload (the second gives way to it)...
    let fourth = chunks(17, 4);
    let Some(ServerMessage::FileAccepted { window, .. }) =
        bea.offer(1, "fourth.bin", &fourth).await
    else {
        panic!("accepted");
    };
    bea.send_chunks(1, &fourth, 0, window, Some(16 * CHUNK_BYTES))
        .await
        .expect("progress");
    gone(bea.download(second_id, 0).await);
    // ... so another can store only what is left of half the quota, 60 KiB: then `no_space`.
    let mut cy = member(&server, "cy").await;
    let fifth = chunks(17, 5);
    assert_eq!(
        refusal(cy.upload(1, "fifth.bin", &fifth).await),
        FileRefusal::NoSpace
    );
    assert!(
        bea.download(third_id, 0).await.expect("the third is kept") == third,
        "unfinished uploads evict no more than half"
    );
    // Bea's upload goes on; its last chunk fits next to the third.
    let fourth_id = file_id(
        bea.send_chunks(1, &fourth, 16 * CHUNK_BYTES, window, None)
            .await,
    );
    let mut dan = member(&server, "dan").await;
    assert!(dan.download(fourth_id, 0).await.expect("the fourth") == fourth);
    assert!(dan.download(third_id, 0).await.expect("the third") == third);
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

/// Send `count` offers without reading; then read until the server closes: how many were
/// answered, and the last error.
async fn offer_flood(
    member: &mut RawMember,
    first_id: u64,
    count: u64,
) -> (usize, Option<ErrorCode>) {
    for id in first_id..first_id + count {
        let offer = ClientMessage::FileOffer {
            upload_id: id,
            name: "x".into(),
            size: 10,
            mime: String::new(),
            sha256: [0; 32],
        };
        if member.send(&offer).await.is_err() {
            break;
        }
    }
    let (mut answered, mut last_error) = (0, None);
    while let Some(message) = member.next_private().await {
        match message {
            ServerMessage::FileAccepted { .. } | ServerMessage::FileRefused { .. } => answered += 1,
            ServerMessage::Error { code, .. } => last_error = Some(code),
            _ => {}
        }
    }
    (answered, last_error)
}

/// Send `count` offers and read their answers (within the burst: answered at once).
async fn offers_answered(member: &mut RawMember, first_id: u64, count: u64) {
    for id in first_id..first_id + count {
        let answer = member.offer_as(id, "x", 10, [id as u8; 32]).await;
        assert!(
            matches!(
                answer,
                Some(ServerMessage::FileAccepted { .. } | ServerMessage::FileRefused { .. })
            ),
            "{answer:?}"
        );
    }
}

/// The rate of offers is kept per client id and per address, across connections: a client
/// that spent its burst and reconnects, or a new client id at an address whose members spent
/// the address's, gets no new burst — its flood is held back and closed, answered (almost)
/// not at all, while a fresh connection would be answered its whole burst of 8 at once.
#[tokio::test]
async fn a_new_connection_or_client_id_brings_no_new_burst_of_offers() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let id = client_id(1);
    let mut first = welcomed(server.addr, PASS, "ana", Some(&id), loopback(41)).await;
    offers_answered(&mut first, 1, 8).await;
    drop(first);
    let mut again = welcomed(server.addr, PASS, "ana2", Some(&id), loopback(42)).await;
    let (answered, error) = offer_flood(&mut again, 100, 100).await;
    assert_eq!(error, Some(ErrorCode::Flood));
    assert!(
        answered < 8,
        "the same client id again: {answered} answered"
    );

    for n in 0..4 {
        let mut member = welcomed(server.addr, PASS, &format!("m{n}"), None, loopback(43)).await;
        offers_answered(&mut member, 1, 8).await;
    }
    let mut fifth = welcomed(server.addr, PASS, "m5", None, loopback(43)).await;
    let (answered, error) = offer_flood(&mut fifth, 1, 100).await;
    assert_eq!(error, Some(ErrorCode::Flood));
    assert!(
        answered < 8,
        "a new client id at a spent address: {answered} answered"
    );
    // Another address is not affected.
    let mut elsewhere = welcomed(server.addr, PASS, "far", None, loopback(44)).await;
    offers_answered(&mut elsewhere, 1, 8).await;
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
/// the share of the quota it held is free again.
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
    let file = chunks(15, 5);
    let Some(ServerMessage::FileAccepted { window, .. }) = ana.offer(1, "a.bin", &file).await
    else {
        panic!("accepted");
    };
    ana.send_chunks(1, &file, 0, window, Some(CHUNK_BYTES * 8))
        .await
        .expect("progress");
    let mut bea = member(&server, "bea").await;
    let other = chunks(15, 6);
    assert_eq!(
        refusal(bea.upload(1, "b.bin", &other).await),
        FileRefusal::NoSpace,
        "ana's unfinished upload holds the quota's share"
    );
    server.wait_for_log("unfinished uploads expired").await;
    file_id(bea.upload(2, "b.bin", &other).await);
    // Ana's upload starts again from nothing.
    match ana.offer(1, "a.bin", &file).await {
        Some(ServerMessage::FileAccepted { have, .. }) => assert_eq!(have, 0, "deleted"),
        other => panic!("expected a fresh start, got {other:?}"),
    }
}

/// An offer that sends nothing is deleted soon after it (`--unstarted-upload-secs`) however
/// often it is offered again; an upload with a stored chunk is kept for the long time.
#[tokio::test]
async fn an_offer_that_sends_nothing_expires_soon_even_when_offered_again() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &["--unstarted-upload-secs", "1"]).await;
    let mut bea = member_from(&server, "bea", loopback(31)).await;
    let started = chunks(9, 7);
    let Some(ServerMessage::FileAccepted { window, .. }) = bea.offer(1, "s.bin", &started).await
    else {
        panic!("accepted");
    };
    bea.send_chunks(1, &started, 0, window, Some(8 * CHUNK_BYTES))
        .await
        .expect("stored");
    let mut idle = member_from(&server, "idle", loopback(32)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !server.log().contains("unfinished uploads expired") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "offered again and again, it never expired; log:\n{}",
            server.log()
        );
        let answer = idle.offer_as(1, "never.bin", 5000, [9; 32]).await;
        assert!(matches!(
            answer,
            Some(ServerMessage::FileAccepted { have: 0, .. })
        ));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    match bea.offer(1, "s.bin", &started).await {
        Some(ServerMessage::FileAccepted { have, .. }) => {
            assert_eq!(have, 8 * CHUNK_BYTES, "a stored chunk keeps it")
        }
        other => panic!("expected it to resume, got {other:?}"),
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
        "--unstarted-upload-secs",
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
