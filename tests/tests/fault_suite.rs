//! The fault-injection suite: the real `tertulia-server` process, real clients (the core client
//! library, each behind its own fault proxy on 127.0.0.1), and faults — connections cut at
//! random, the server killed with SIGKILL and restarted, a member that stops reading for a
//! minute, a thousand hostile connections. Every scenario ends by checking that every member got
//! every message exactly once, in room order; the suite prints a summary at the end.
//!
//! The scenarios run one after another in a single test so their figures are not distorted by
//! running side by side (`cargo test` runs test functions in parallel).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tertulia_core::client::{self, ClientConfig, ClientEvent, ClientHandle};
use tertulia_e2e::{free_port, rss_bytes, DataDir, Proxy, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASS: &str = "fault suite passphrase";
/// The longest the suite waits for the room to settle after a scenario.
const SETTLE: Duration = Duration::from_secs(90);

/// When each message text was handed to its sender's client.
type SentAt = Mutex<HashMap<String, Instant>>;

/// What one member saw.
#[derive(Default)]
struct Seen {
    /// (room seq, text, when received), in the order the client reported them.
    messages: Vec<(u64, String, Instant)>,
    connects: usize,
    acked: usize,
    errors: Vec<String>,
}

struct Member {
    handle: ClientHandle,
    seen: Arc<Mutex<Seen>>,
    proxy: Option<Proxy>,
    sent: usize,
    name: String,
}

impl Member {
    async fn join(server: SocketAddr, name: &str, through_proxy: bool) -> Self {
        let proxy = if through_proxy {
            Some(Proxy::start(server).await)
        } else {
            None
        };
        let addr = proxy.as_ref().map_or(server, |p| p.addr);
        let (handle, mut events) = client::spawn(ClientConfig::new(addr.to_string(), name, PASS));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let mut log = log.lock().expect("seen");
                match event {
                    ClientEvent::Message { seq, text, .. } => {
                        log.messages.push((seq, text, Instant::now()))
                    }
                    ClientEvent::Connected { .. } => log.connects += 1,
                    ClientEvent::Acked { ids } => log.acked += ids.len(),
                    ClientEvent::Error { message, .. } => log.errors.push(message),
                    _ => {}
                }
            }
        });
        Self {
            handle,
            seen,
            proxy,
            sent: 0,
            name: name.to_owned(),
        }
    }

    async fn say(&mut self, sent_at: &SentAt, size: usize) {
        let mut text = format!("{} #{}", self.name, self.sent);
        if text.len() < size {
            text.push(' ');
            text.extend(std::iter::repeat_n('·', (size - text.len()) / 2));
        }
        sent_at
            .lock()
            .expect("sent_at")
            .insert(text.clone(), Instant::now());
        self.handle.send(&text).await.expect("queued");
        self.sent += 1;
    }

    fn connects(&self) -> usize {
        self.seen.lock().expect("seen").connects
    }
}

async fn wait_all_connected(members: &[Member], at_least: usize) {
    let deadline = Instant::now() + SETTLE;
    while members.iter().any(|m| m.connects() < at_least) {
        assert!(Instant::now() < deadline, "members did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One scenario's figures.
#[derive(Debug, Default)]
struct Report {
    name: &'static str,
    sent: usize,
    delivered: usize,
    expected: usize,
    lost: usize,
    duplicated: usize,
    reconnects: usize,
    max_rss: u64,
    p99_latency_ms: u64,
}

/// Wait until every message is acked and has reached every member, then check exactly-once
/// delivery in one room order.
async fn settle_and_check(
    name: &'static str,
    members: &[Member],
    max_rss: u64,
    latency_of: Option<(&SentAt, &HashSet<String>)>,
) -> Report {
    let total: usize = members.iter().map(|m| m.sent).sum();
    let deadline = Instant::now() + SETTLE;
    loop {
        let done = members.iter().all(|m| {
            let seen = m.seen.lock().expect("seen");
            let unique: HashSet<&String> = seen.messages.iter().map(|(_, t, _)| t).collect();
            seen.acked >= m.sent && unique.len() >= total
        });
        if done {
            break;
        }
        if Instant::now() > deadline {
            break; // the checks below say what is missing
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let any duplicate show up

    let mut report = Report {
        name,
        sent: total,
        expected: total * members.len(),
        max_rss,
        ..Report::default()
    };
    let all_texts: HashSet<String> = {
        let mut texts = HashSet::new();
        for m in members {
            for i in 0..m.sent {
                texts.insert(format!("{} #{}", m.name, i));
            }
        }
        texts
    };
    let mut room_order: BTreeMap<u64, String> = BTreeMap::new();
    let mut latencies: Vec<u64> = Vec::new();
    for m in members {
        let seen = m.seen.lock().expect("seen");
        report.reconnects += seen.connects.saturating_sub(1);
        report.delivered += seen.messages.len();
        let mut unique = HashSet::new();
        let mut last_seq = 0;
        let mut last_from: HashMap<String, usize> = HashMap::new();
        for (seq, text, at) in &seen.messages {
            let key = text.split(' ').take(2).collect::<Vec<_>>().join(" ");
            if !unique.insert(key.clone()) {
                report.duplicated += 1;
            }
            assert!(
                *seq > last_seq,
                "{}: room order broken at seq {seq}",
                m.name
            );
            last_seq = *seq;
            // One room order: the same sequence number means the same message for everyone.
            let earlier = room_order.entry(*seq).or_insert_with(|| key.clone());
            assert_eq!(earlier, &key, "seq {seq} differs between members");
            // Each sender's messages in the order it sent them.
            let (from, n) = key.split_once(" #").expect("test message");
            let n: usize = n.parse().expect("number");
            if let Some(prev) = last_from.insert(from.to_owned(), n) {
                assert!(n > prev, "{}: {from}'s messages out of order", m.name);
            }
            if let Some((sent_at, measured)) = latency_of {
                if measured.contains(&m.name) && !text.starts_with(&m.name) {
                    if let Some(t0) = sent_at.lock().expect("sent_at").get(text) {
                        latencies.push(at.saturating_duration_since(*t0).as_millis() as u64);
                    }
                }
            }
        }
        let missing = all_texts.iter().filter(|t| !unique.contains(*t)).count();
        report.lost += missing;
        if missing > 0 {
            eprintln!(
                "{name}: {} is missing {missing} messages; errors: {:?}",
                m.name, seen.errors
            );
        }
    }
    latencies.sort_unstable();
    if !latencies.is_empty() {
        report.p99_latency_ms = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    }
    report
}

fn server_pid(server: &ServerProcess) -> u32 {
    server.child.id().expect("server pid")
}

/// Sample the server's RSS every 100 ms until stopped; returns the maximum.
fn watch_rss(
    pid: u32,
) -> (
    tokio::task::JoinHandle<u64>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let mut max = 0;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            max = max.max(rss_bytes(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        max
    });
    (task, stop)
}

async fn stop_rss(
    watch: (
        tokio::task::JoinHandle<u64>,
        Arc<std::sync::atomic::AtomicBool>,
    ),
) -> u64 {
    watch.1.store(true, std::sync::atomic::Ordering::SeqCst);
    watch.0.await.unwrap_or(0)
}

/// 20 clients chatting while the proxy cuts random connections, 50 cycles.
async fn random_cuts(rng: &mut rand::rngs::StdRng) -> Report {
    let server =
        ServerProcess::start("127.0.0.1:0", PASS, &["--max-connections-per-ip", "256"]).await;
    let rss = watch_rss(server_pid(&server));
    let sent_at = Mutex::new(HashMap::new());
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(Member::join(server.addr, &format!("cut{i:02}"), true).await);
    }
    wait_all_connected(&members, 1).await;
    for _cycle in 0..50 {
        for m in members.iter_mut() {
            if rng.gen_bool(0.7) {
                m.say(&sent_at, 64).await;
            }
        }
        for _ in 0..rng.gen_range(1..=3) {
            let victim = rng.gen_range(0..members.len());
            if let Some(proxy) = &members[victim].proxy {
                proxy.cut_all();
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..250))).await;
    }
    let max_rss = stop_rss(rss).await;
    let report = settle_and_check("20 clients, 50 cut cycles", &members, max_rss, None).await;
    assert!(report.reconnects >= 50, "cuts happened: {report:?}");
    report
}

/// The server killed with SIGKILL and restarted, 20 cycles, while clients keep sending.
async fn server_kills(rng: &mut rand::rngs::StdRng) -> Report {
    let dir = DataDir::new("suite");
    let listen = format!("127.0.0.1:{}", free_port().await);
    let args = ["--data-dir", dir.path()];
    let mut server = ServerProcess::start(&listen, PASS, &args).await;
    let sent_at = Mutex::new(HashMap::new());
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(Member::join(server.addr, &format!("kill{i}"), false).await);
    }
    wait_all_connected(&members, 1).await;
    let mut max_rss = 0;
    for _cycle in 0..20 {
        // Chat for a while (typed whether or not the server is up), then kill.
        let until = Instant::now() + Duration::from_millis(rng.gen_range(300..900));
        while Instant::now() < until {
            let who = rng.gen_range(0..members.len());
            members[who].say(&sent_at, 48).await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(10..60))).await;
        }
        max_rss = max_rss.max(rss_bytes(server_pid(&server)).unwrap_or(0));
        server.kill9().await;
        for _ in 0..rng.gen_range(0..5) {
            let who = rng.gen_range(0..members.len());
            members[who].say(&sent_at, 48).await;
        }
        server = ServerProcess::start(&listen, PASS, &args).await;
    }
    let report = settle_and_check("SIGKILL + restart, 20 cycles", &members, max_rss, None).await;
    drop(server);
    drop(dir);
    report
}

/// One member stops reading for a minute while 19 keep chatting.
async fn stalled_member(rng: &mut rand::rngs::StdRng) -> Report {
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--max-connections-per-ip",
            "256",
            "--send-queue-kib",
            "256",
            "--send-queue-max-kib",
            "1024",
            "--history",
            "5000",
        ],
    )
    .await;
    let rss = watch_rss(server_pid(&server));
    let sent_at = Mutex::new(HashMap::new());
    let mut members = Vec::new();
    for i in 0..20 {
        members.push(Member::join(server.addr, &format!("st{i:02}"), true).await);
    }
    wait_all_connected(&members, 1).await;
    let measured: HashSet<String> = members.iter().skip(1).map(|m| m.name.clone()).collect();
    if let Some(proxy) = &members[0].proxy {
        proxy.stall(true);
    }
    let stall_secs = std::env::var("TERTULIA_STALL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60u64);
    let until = Instant::now() + Duration::from_secs(stall_secs);
    while Instant::now() < until {
        // 19 members, about one 2 KB message a second each.
        for m in members.iter_mut().skip(1) {
            if rng.gen_bool(0.5) {
                m.say(&sent_at, 2000).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.wait_for_log("slow consumer").await;
    let cut = server
        .log()
        .lines()
        .find(|l| l.contains("slow consumer"))
        .unwrap_or_default()
        .to_owned();
    let field = |name: &str| -> usize {
        cut.split(&format!("{name}="))
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name} in the slow-consumer log line: {cut}"))
    };
    assert!(
        field("queued_bytes") <= 1024 * 1024,
        "the stalled member's queue stayed under its cap: {cut}"
    );
    assert!(
        field("stalled_ms") >= 5000,
        "cut off for taking nothing for the stall time, not for a burst: {cut}"
    );
    if let Some(proxy) = &members[0].proxy {
        proxy.stall(false);
    }
    let max_rss = stop_rss(rss).await;
    let report = settle_and_check(
        "1 member stalled for a minute",
        &members,
        max_rss,
        Some((&sent_at, &measured)),
    )
    .await;
    assert!(
        members[0].connects() >= 2,
        "the stalled member was cut off and came back"
    );
    assert!(
        report.p99_latency_ms < 2_000,
        "the others kept chatting with low latency: {report:?}"
    );
    report
}

/// 1 000 connections that send garbage, half a handshake or nothing, while the room chats.
async fn hostile_connections(rng: &mut rand::rngs::StdRng) -> Report {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &[
            "--max-connections",
            "1100",
            "--max-connections-per-ip",
            "1100",
            "--handshake-timeout-secs",
            "3",
        ],
    )
    .await;
    let rss = watch_rss(server_pid(&server));
    let sent_at = Mutex::new(HashMap::new());
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(Member::join(server.addr, &format!("calm{i}"), false).await);
    }
    wait_all_connected(&members, 1).await;
    let mut attackers = Vec::new();
    for i in 0..1000 {
        let mut stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("hostile connect");
        match i % 3 {
            0 => {
                let garbage: Vec<u8> = (0..rng.gen_range(1..512)).map(|_| rng.gen()).collect();
                let _ = stream.write_all(&garbage).await;
            }
            1 => {
                // A handshake frame header promising 96 bytes, then only a few.
                let _ = stream.write_all(&[0x02, 0, 0, 0, 96, 1, 2, 3, 4]).await;
            }
            _ => {} // nothing at all
        }
        attackers.push(stream);
        if i % 100 == 0 {
            for m in members.iter_mut() {
                m.say(&sent_at, 64).await;
            }
        }
    }
    // The room keeps serving during the attack: a newcomer gets in and everyone chats.
    members.push(Member::join(server.addr, "newcomer", false).await);
    wait_all_connected(&members, 1).await;
    for m in members.iter_mut() {
        m.say(&sent_at, 64).await;
    }
    // Every hostile connection is closed by the server (bad input at once, the rest at the
    // handshake timeout).
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut closed = 0;
        for stream in attackers.iter_mut() {
            let mut buf = [0u8; 512];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        closed += 1;
                        break;
                    }
                    Ok(_) => continue,
                }
            }
        }
        closed
    })
    .await
    .expect("the server closes every hostile connection");
    assert_eq!(closed, 1000);
    let max_rss = stop_rss(rss).await;
    settle_and_check("1000 hostile connections", &members, max_rss, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_suite() {
    let seed: u64 = std::env::var("TERTULIA_SUITE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fault suite seed: {seed} (TERTULIA_SUITE_SEED={seed} repeats it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let reports = vec![
        random_cuts(&mut rng).await,
        server_kills(&mut rng).await,
        stalled_member(&mut rng).await,
        hostile_connections(&mut rng).await,
    ];
    println!();
    println!("fault-injection suite (seed {seed})");
    println!(
        "{:<32} {:>6} {:>9} {:>9} {:>5} {:>6} {:>10} {:>13} {:>9}",
        "scenario",
        "sent",
        "expected",
        "delivered",
        "lost",
        "dups",
        "reconnects",
        "max RSS (MiB)",
        "p99 (ms)"
    );
    for r in &reports {
        println!(
            "{:<32} {:>6} {:>9} {:>9} {:>5} {:>6} {:>10} {:>13.1} {:>9}",
            r.name,
            r.sent,
            r.expected,
            r.delivered,
            r.lost,
            r.duplicated,
            r.reconnects,
            r.max_rss as f64 / (1024.0 * 1024.0),
            if r.p99_latency_ms > 0 {
                r.p99_latency_ms.to_string()
            } else {
                "-".into()
            }
        );
    }
    for r in &reports {
        assert_eq!((r.lost, r.duplicated), (0, 0), "{r:?}");
        assert_eq!(r.delivered, r.expected, "{r:?}");
    }
}
