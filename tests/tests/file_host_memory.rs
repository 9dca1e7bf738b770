//! A large file costs the host disk, not memory (`docs/PROTOCOL.md` §13), through the real
//! `tertulia-server`: while one member uploads 100 MiB, and then members download it — one
//! of them never reading — the host's resident memory stays within a fixed bound above its
//! idle size, the members that read get the file byte for byte, and two other members keep
//! chatting throughout. (Speed and latency are measured by the benchmark, not asserted here.)

use std::sync::Arc;

use tertulia_core::message::{ClientMessage, ServerMessage};
use tertulia_e2e::hostile::{idle_rss, never_reading, still_chatting, two_members, PeakRss};
use tertulia_e2e::{sha256, RawMember, ServerProcess};

const PASS: &str = "file memory passphrase";
const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn a_100_mib_file_up_and_down_keeps_the_host_memory_bounded_and_chat_live() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (mut ana, mut ben) = two_members(&server, PASS).await;
    let mut uploader = RawMember::connect(server.addr, PASS, None).await.unwrap();
    uploader.join("uploader").await;
    let mut stalled = never_reading(server.addr, PASS, "stalled", None).await;
    let mut readers = Vec::new();
    // Debug builds seal and open chunks slowly (the AEAD's generic code is compiled without
    // optimisation here): one reader keeps this test's run time reasonable.
    for i in 0..1 {
        let mut reader = RawMember::connect(server.addr, PASS, None).await.unwrap();
        reader.join(&format!("reader{i}")).await;
        readers.push(reader);
    }
    let idle = idle_rss(&server).await;
    let watch = PeakRss::watch(&server);

    let file: Arc<Vec<u8>> = Arc::new(
        (0..100 * MIB as usize)
            .map(|i| (i as u8) ^ (i >> 16) as u8)
            .collect(),
    );
    let upload = {
        let file = file.clone();
        tokio::spawn(async move {
            let answer = uploader.upload(1, "big.bin", &file).await;
            (uploader, answer)
        })
    };
    still_chatting(&mut ana, &mut ben, "during the upload").await;
    let (_uploader, answer) = upload.await.unwrap();
    let file_id = match answer {
        Some(ServerMessage::FileDone { file_id, .. }) => file_id,
        other => panic!("expected file_done, got {other:?}"),
    };
    // One asks for it and never reads; the others download it whole.
    stalled
        .send(&ClientMessage::FileGet { file_id, offset: 0 })
        .await
        .unwrap();
    let downloads: Vec<_> = readers
        .into_iter()
        .map(|mut reader| tokio::spawn(async move { reader.download(file_id, 0).await }))
        .collect();
    still_chatting(&mut ana, &mut ben, "during the downloads").await;
    let digest = sha256(&file);
    for download in downloads {
        let got = download.await.unwrap().expect("the file");
        assert_eq!(got.len(), file.len());
        assert!(sha256(&got) == digest, "byte-identical");
    }
    still_chatting(&mut ana, &mut ben, "after the downloads").await;
    watch.assert_bounded("100 MiB up, one down and one stalled", idle);
    drop(stalled);
}
