//! How fast the host moves a file (printed, not asserted: speed is the benchmark's to judge):
//! one member uploads 32 MiB, then four download it at once. Run it on a release build
//! (`cargo build --release --bins && cargo test --release -p tertulia-e2e --test
//! file_host_speed -- --nocapture`) for figures that mean anything.

use std::time::Instant;

use tertulia_core::message::ServerMessage;
use tertulia_e2e::{sha256, RawMember, ServerProcess};

const PASS: &str = "file speed passphrase";
const MIB: usize = 1024 * 1024;

/// CPU seconds process `pid` has used (user and system), from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::test]
async fn upload_and_download_rates_are_printed() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let pid = server.child.id().expect("pid");
    let file: Vec<u8> = (0..32 * MIB).map(|i| (i % 253) as u8).collect();
    let mut up = RawMember::connect(server.addr, PASS, None).await.unwrap();
    up.join("up").await;
    let started = Instant::now();
    let cpu = cpu_secs(pid);
    let file_id = match up.upload(1, "speed.bin", &file).await {
        Some(ServerMessage::FileDone { file_id, .. }) => file_id,
        other => panic!("expected file_done, got {other:?}"),
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "upload: 32 MiB in {secs:.2} s, {:.0} MB/s, host CPU {:.2} s",
        32.0 * 1.048576 / secs,
        cpu_secs(pid) - cpu
    );
    let mut members = Vec::new();
    for i in 0..4 {
        let mut member = RawMember::connect(server.addr, PASS, None).await.unwrap();
        member.join(&format!("down{i}")).await;
        members.push(member);
    }
    let started = Instant::now();
    let cpu = cpu_secs(pid);
    let downloads: Vec<_> = members
        .into_iter()
        .map(|mut m| tokio::spawn(async move { m.download(file_id, 0).await }))
        .collect();
    let digest = sha256(&file);
    for download in downloads {
        let got = download.await.unwrap().expect("the file");
        assert!(sha256(&got) == digest);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "download: 4 × 32 MiB in {secs:.2} s, {:.0} MB/s delivered in all, host CPU {:.2} s",
        4.0 * 32.0 * 1.048576 / secs,
        cpu_secs(pid) - cpu
    );
}
