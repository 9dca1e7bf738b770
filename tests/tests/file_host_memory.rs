//! A large file costs the host disk, not memory (`docs/PROTOCOL.md` §13), through the real
//! `tertulia-server`: while one member uploads 100 MiB, and then members download it — one
//! of them never reading — the host's resident memory stays within a fixed bound above its
//! idle size, the members that read get the file byte for byte, and two other members keep
//! chatting throughout. (Speed and latency are measured by the benchmark, not asserted here.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tertulia_core::message::{ClientMessage, ServerMessage};
use tertulia_e2e::{rss_bytes, sha256, ChatProcess, RawMember, ServerProcess};

const PASS: &str = "file memory passphrase";
const MIB: u64 = 1024 * 1024;
/// How far above its idle size the server's RSS may go.
const BOUND: u64 = 64 * MIB;

/// The highest RSS of a process, sampled every 20 ms while it runs.
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn watch(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            while let Some(rss) = rss_bytes(pid) {
                seen.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak, task }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn still_chatting(ana: &mut ChatProcess, ben: &mut ChatProcess, text: &str) {
    ana.say(text).await;
    ben.wait_for(text, |e| e["type"] == "message" && e["text"] == text)
        .await;
}

#[tokio::test]
async fn a_100_mib_file_up_and_down_keeps_the_host_memory_bounded_and_chat_live() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let pid = server.child.id().expect("pid");
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &[]).await;
    let mut ben = ChatProcess::start(server.addr, "ben", PASS, &[]).await;
    ana.wait_type("connected").await;
    ben.wait_type("connected").await;
    let mut uploader = RawMember::connect(server.addr, PASS, None).await.unwrap();
    uploader.join("uploader").await;
    let mut stalled = RawMember::connect(server.addr, PASS, None).await.unwrap();
    stalled.join("stalled").await;
    let mut readers = Vec::new();
    // Debug builds seal and open chunks slowly (the AEAD's generic code is compiled without
    // optimisation here): one reader keeps this test's run time reasonable.
    for i in 0..1 {
        let mut reader = RawMember::connect(server.addr, PASS, None).await.unwrap();
        reader.join(&format!("reader{i}")).await;
        readers.push(reader);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = rss_bytes(pid).expect("rss");
    let watch = PeakRss::watch(pid);

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
    let peak = watch.peak();
    println!(
        "100 MiB up, one down and one stalled: idle RSS {} MiB, peak {} MiB (+{} MiB, bound +{} MiB)",
        idle / MIB,
        peak / MIB,
        peak.saturating_sub(idle) / MIB,
        BOUND / MIB
    );
    assert!(
        peak < idle + BOUND,
        "RSS grew from {} MiB to {} MiB",
        idle / MIB,
        peak / MIB
    );
    drop(stalled);
}
