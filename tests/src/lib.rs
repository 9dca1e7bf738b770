//! Test harness for the end-to-end tests in `tests/tests/`: the real `tertulia-server` and
//! `tertulia-chat` binaries as child processes on 127.0.0.1, and a man-in-the-middle proxy
//! that can corrupt a frame or cut connections.
//!
//! The binaries must be built first (`cargo build --bins`; `make test` does it).
//!
//! [`netlab`]: the network-namespace lab (two LAN hosts, a router with miniupnpd, a WAN host)
//! for tests of LAN discovery and port mapping, run through the real binaries too.

pub mod netlab;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest any single expectation in these tests waits.
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of a workspace binary next to the test executable (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --bins, or make test)",
        path.display()
    );
    path
}

/// `tertulia-chat` started with a private data directory (`XDG_DATA_HOME`), so its pinned
/// host identities never mix with the user's or another test's: test servers get a new
/// identity each run and ports are reused, so a shared `known_hosts` would see "the host's
/// identity changed". Keep the returned directory alive while the process runs.
pub fn chat_command() -> (tokio::process::Command, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("scratch data directory");
    let mut command = tokio::process::Command::new(binary("tertulia-chat"));
    command.env("XDG_DATA_HOME", home.path());
    (command, home)
}

/// A running `tertulia-server`.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _stderr_task: JoinHandle<()>,
}

impl ServerProcess {
    /// Run a server that is expected to refuse to start: its exit code and what it printed
    /// on stderr. `args` are all its arguments (listen address and storage included).
    pub async fn refused(passphrase: &str, args: &[&str]) -> (Option<i32>, String) {
        let output = Command::new(binary("tertulia-server"))
            .args(args)
            .env("TERTULIA_PASSPHRASE", passphrase)
            .output()
            .await
            .expect("run tertulia-server");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    }

    /// Start a server on `listen` (e.g. `127.0.0.1:0`) with `passphrase` and extra arguments.
    pub async fn start(listen: &str, passphrase: &str, extra: &[&str]) -> Self {
        Self::start_with_file_limit(listen, passphrase, extra, None).await
    }

    /// [`start`](Self::start), with the files the server writes limited to `max_file_bytes`
    /// each (`RLIMIT_FSIZE`, `SIGXFSZ` ignored): writing beyond it fails as on a full disk —
    /// a full disk without root or a tiny file system.
    pub async fn start_with_file_limit(
        listen: &str,
        passphrase: &str,
        extra: &[&str],
        max_file_bytes: Option<u64>,
    ) -> Self {
        // Tests keep rooms in memory unless they ask for a data directory (never the user's).
        // An in-memory room keeps one host identity per listen address (a test that restarts
        // a server on the same address gets the same identity back) unless the test passes
        // its own --host-key.
        let mut storage: Vec<String> = Vec::new();
        if !extra.contains(&"--data-dir") {
            storage.push("--in-memory".into());
            if !extra.contains(&"--host-key") && !listen.ends_with(":0") {
                let dir = std::env::temp_dir().join("tertulia-test-host-keys");
                let name: String = listen
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                storage.push("--host-key".into());
                storage.push(dir.join(format!("{name}.key")).display().to_string());
            }
        }
        let mut command = match max_file_bytes {
            None => Command::new(binary("tertulia-server")),
            Some(limit) => {
                // The shell ignores SIGXFSZ (kept across exec), so a write past the limit
                // fails with EFBIG instead of killing the server.
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
                    .arg(binary("tertulia-server"));
                // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
                unsafe {
                    command
                        .pre_exec(move || rlimit::setrlimit(rlimit::Resource::FSIZE, limit, limit));
                }
                command
            }
        };
        let mut child = command
            .arg("--listen")
            .arg(listen)
            .args(&storage)
            .args(extra)
            .env("TERTULIA_PASSPHRASE", passphrase)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tertulia-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("server did not start in time")
            .expect("read server stdout")
            .expect("server exited before listening");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .expect("address");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let task = tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Self {
            child,
            addr,
            stderr,
            _stderr_task: task,
        }
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Wait until the server log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.log().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never logged {needle:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the process dies at once, with no chance to clean up.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("server did not die")
            .expect("wait");
    }

    /// SIGTERM, then wait for the process to exit; returns its exit status code.
    pub async fn terminate(mut self) -> Option<i32> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("server did not stop")
            .expect("wait");
        status.code()
    }
}

/// A server's `--data-dir` for one test, in a fresh scratch directory that is removed with
/// everything in it when this is dropped (also when the test fails). The data directory is
/// `room` inside it and does not exist yet: the server creates it, as for a new room.
pub struct DataDir {
    _scratch: tempfile::TempDir,
    path: String,
}

impl DataDir {
    /// `name` makes the scratch directory easy to recognise: `tertulia-NAME-…` in the temp dir.
    pub fn new(name: &str) -> Self {
        let scratch = tempfile::Builder::new()
            .prefix(&format!("tertulia-{name}-"))
            .tempdir()
            .expect("create a scratch directory");
        let path = scratch.path().join("room").to_string_lossy().into_owned();
        Self {
            _scratch: scratch,
            path,
        }
    }

    /// The path to pass as `--data-dir`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A running `tertulia-chat --json`.
pub struct ChatProcess {
    pub nick: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    /// Every event received so far, in order.
    pub seen: Vec<Value>,
    /// Its scratch directory: pinned host identities and downloads, unless the test chose.
    _pins: Option<tempfile::TempDir>,
}

impl ChatProcess {
    pub async fn start(addr: SocketAddr, nick: &str, passphrase: &str, extra: &[&str]) -> Self {
        Self::start_target(&addr.to_string(), nick, passphrase, extra).await
    }

    /// Start with `target` as the server argument (an address or an invite code).
    pub async fn start_target(target: &str, nick: &str, passphrase: &str, extra: &[&str]) -> Self {
        // Pins and downloads in a scratch directory per process unless the test passes its
        // own (files offered live are fetched on their own: never into the working directory).
        let scratch = tempfile::tempdir().expect("scratch dir");
        let mut pin_args: Vec<String> = Vec::new();
        if !extra.contains(&"--known-hosts") {
            pin_args.push("--known-hosts".into());
            pin_args.push(scratch.path().join("known_hosts").display().to_string());
        }
        if !extra.contains(&"--download-dir") {
            let downloads = scratch.path().join("downloads");
            std::fs::create_dir(&downloads).expect("scratch downloads");
            pin_args.push("--download-dir".into());
            pin_args.push(downloads.display().to_string());
        }
        let pins = Some(scratch);
        let mut child = Command::new(binary("tertulia-chat"))
            .arg(target)
            .arg("--nick")
            .arg(nick)
            .arg("--json")
            .args(extra)
            .args(&pin_args)
            .env("TERTULIA_PASSPHRASE", passphrase)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start tertulia-chat");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (tx, events) = mpsc::channel(100_000);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(value).await.is_err() {
                    break;
                }
            }
        });
        Self {
            nick: nick.to_owned(),
            child,
            stdin,
            events,
            seen: Vec::new(),
            _pins: pins,
        }
    }

    /// Send one message line.
    pub async fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(text.as_bytes())
            .await
            .expect("write to chat stdin");
        stdin.write_all(b"\n").await.expect("write to chat stdin");
        stdin.flush().await.expect("flush chat stdin");
    }

    /// Close stdin: the client flushes its outbox, leaves and exits.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next event matching `pred`, waiting up to [`WAIT`]. Earlier events are kept in `seen`.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|e| pred(e)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match event {
                Ok(Some(event)) => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
                Ok(None) => panic!(
                    "{}: output ended while waiting for {what}; saw: {:#?}",
                    self.nick, self.seen
                ),
                Err(_) => panic!(
                    "{}: timed out waiting for {what}; saw: {:#?}",
                    self.nick, self.seen
                ),
            }
        }
    }

    /// Wait until `count` events of `type` have been seen in total.
    pub async fn wait_count(&mut self, kind: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.seen.iter().filter(|e| e["type"] == kind).count() < count {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                _ => panic!(
                    "{}: never saw {count} {kind} events; saw: {:#?}",
                    self.nick, self.seen
                ),
            }
        }
    }

    /// Wait for an event of `type` (e.g. "connected").
    pub async fn wait_type(&mut self, kind: &str) -> Value {
        self.wait_for(kind, |e| e["type"] == kind).await
    }

    /// Wait until `count` chat messages from `from` have been seen; returns all their texts in order.
    pub async fn wait_messages_from(&mut self, from: &str, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let texts = self.messages_from(from);
            if texts.len() >= count {
                return texts;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!(
                    "{}: output ended with {} of {count} messages from {from}",
                    self.nick,
                    texts.len()
                ),
                Err(_) => panic!(
                    "{}: timed out with {} of {count} messages from {from}: {texts:?}",
                    self.nick,
                    texts.len()
                ),
            }
        }
    }

    /// Texts of all chat messages from `from` seen so far, in arrival order.
    pub fn messages_from(&self, from: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|e| e["type"] == "message" && e["from"] == from)
            .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Collect events for `period` without expecting anything.
    pub async fn drain_for(&mut self, period: Duration) {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            self.seen.push(event);
        }
    }

    /// Wait for the process to exit; returns its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit; saw: {:#?}", self.nick, self.seen))
            .expect("wait");
        // Pick up the last events printed before exit.
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(200), self.events.recv()).await
        {
            self.seen.push(event);
        }
        status.code()
    }
}

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Faults applied to a proxy's live traffic.
#[derive(Default)]
struct Faults {
    /// While set, nothing is read from the server (the member has stopped reading).
    stalled: std::sync::atomic::AtomicBool,
    /// Added latency per chunk forwarded, in milliseconds.
    delay_ms: std::sync::atomic::AtomicU64,
    /// Flip a byte of the next complete frame in this direction (client→server, server→client).
    corrupt_up: std::sync::atomic::AtomicBool,
    corrupt_down: std::sync::atomic::AtomicBool,
    /// While set, every `Broadcast` frame (kind 0x11) from the server is dropped whole;
    /// everything else passes.
    drop_broadcasts: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct ProxyState {
    /// One-shot: flip the last byte of frame number N (0-based) of the next connection in a direction.
    flip: Vec<(Direction, usize)>,
    /// Flip a byte of message 2 (the `HandshakeResponse`) on this many of the next connections.
    flip_responses: usize,
    /// One-shot: answer the next connection with these bytes instead of the server's, then close.
    forge: Option<Vec<u8>>,
    /// Abort handles of the live connections' pumps.
    live: Vec<tokio::task::AbortHandle>,
    connections: usize,
}

/// A TCP proxy on 127.0.0.1 in front of a server.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        let faults = Arc::new(Faults::default());
        let pump_faults = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A modest receive buffer, so a stalled member fills the server's queue
                // within seconds rather than after megabytes of kernel buffering.
                let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                    continue;
                };
                let _ = socket.set_recv_buffer_size(64 * 1024);
                let forged = {
                    let mut st = shared.lock().expect("proxy state");
                    st.forge.take().inspect(|_| st.connections += 1)
                };
                if let Some(bytes) = forged {
                    // The server never hears of this connection: the forger answers first.
                    let mut client = client;
                    let _ = client.write_all(&bytes).await;
                    let _ = client.shutdown().await;
                    continue;
                }
                let Ok(server) = socket.connect(upstream).await else {
                    continue;
                };
                let flips = {
                    let mut st = shared.lock().expect("proxy state");
                    st.connections += 1;
                    let mut flips = std::mem::take(&mut st.flip);
                    if st.flip_responses > 0 {
                        st.flip_responses -= 1;
                        flips.push((Direction::ServerToClient, 1));
                    }
                    flips
                };
                let c2s = flips
                    .iter()
                    .find(|(d, _)| *d == Direction::ClientToServer)
                    .map(|(_, n)| *n);
                let s2c = flips
                    .iter()
                    .find(|(d, _)| *d == Direction::ServerToClient)
                    .map(|(_, n)| *n);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(
                    cr,
                    sw,
                    c2s,
                    pump_faults.clone(),
                    Direction::ClientToServer,
                ));
                let down = tokio::spawn(pump(
                    sr,
                    cw,
                    s2c,
                    pump_faults.clone(),
                    Direction::ServerToClient,
                ));
                let mut st = shared.lock().expect("proxy state");
                st.live.retain(|h| !h.is_finished());
                st.live.push(up.abort_handle());
                st.live.push(down.abort_handle());
            }
        });
        Self {
            addr,
            state,
            faults,
            task,
        }
    }

    /// Stop (or resume) forwarding server → client: the member behind it stops reading.
    pub fn stall(&self, stalled: bool) {
        self.faults
            .stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drop (or pass again) every `Broadcast` frame from the server, whole, on every
    /// connection; session frames still pass.
    pub fn drop_broadcasts(&self, dropping: bool) {
        self.faults
            .drop_broadcasts
            .store(dropping, std::sync::atomic::Ordering::SeqCst);
    }

    /// Delay every forwarded chunk by `delay` (both directions).
    pub fn set_delay(&self, delay: Duration) {
        self.faults.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Flip a byte in the next complete frame going `direction` on the live connection.
    pub fn corrupt_next(&self, direction: Direction) {
        let flag = match direction {
            Direction::ClientToServer => &self.faults.corrupt_up,
            Direction::ServerToClient => &self.faults.corrupt_down,
        };
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Corrupt frame number `frame_index` (0-based, counting the handshake frames) of the next
    /// connection in `direction`, once.
    pub fn flip_once(&self, direction: Direction, frame_index: usize) {
        self.state
            .lock()
            .expect("proxy state")
            .flip
            .push((direction, frame_index));
    }

    /// Answer the next connection, before any `Hello`, with a forged `Reject` frame carrying
    /// `body` (e.g. `[1]`: "authentication failed"), then close it; once.
    pub fn forge_reject_once(&self, body: &[u8]) {
        let mut frame = vec![0x04];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(body);
        self.forge_once(&frame);
    }

    /// Answer the next connection with `bytes` instead of the server's, then close it; once.
    pub fn forge_once(&self, bytes: &[u8]) {
        self.state.lock().expect("proxy state").forge = Some(bytes.to_vec());
    }

    /// Alter the room salt in the next connection's `Hello` (its last byte), once.
    pub fn alter_salt_once(&self) {
        self.flip_once(Direction::ServerToClient, 0);
    }

    /// Flip a byte of the next connection's Noise message 2 (`HandshakeResponse`), once.
    pub fn flip_handshake_response_once(&self) {
        self.flip_once(Direction::ServerToClient, 1);
    }

    /// Flip a byte of Noise message 2 (`HandshakeResponse`) on each of the next `count`
    /// connections.
    pub fn flip_handshake_responses(&self, count: usize) {
        self.state.lock().expect("proxy state").flip_responses = count;
    }

    /// Drop every live connection at once (both directions).
    pub fn cut_all(&self) {
        if let Ok(mut st) = self.state.lock() {
            for handle in st.live.drain(..) {
                handle.abort();
            }
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().map(|s| s.connections).unwrap_or(0)
    }
}

/// Copy bytes, tracking frame boundaries (5-byte header: kind, u32 BE length) so one frame's
/// last byte can be flipped, or broadcast frames dropped.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    flip: Option<usize>,
    faults: Arc<Faults>,
    direction: Direction,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut buf = vec![0u8; 16 * 1024];
    let mut header = Vec::with_capacity(5);
    let mut body_left: usize = 0;
    let mut frame_index = 0usize;
    // Whether the frame being copied is dropped (decided at its first byte).
    let mut dropping = false;
    let mut out = Vec::with_capacity(buf.len());
    let corrupt = match direction {
        Direction::ClientToServer => &faults.corrupt_up,
        Direction::ServerToClient => &faults.corrupt_down,
    };
    loop {
        while direction == Direction::ServerToClient && faults.stalled.load(SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = faults.delay_ms.load(SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        out.clear();
        for byte in buf[..n].iter_mut() {
            if body_left == 0 && header.is_empty() {
                dropping = direction == Direction::ServerToClient
                    && *byte == 0x11
                    && faults.drop_broadcasts.load(SeqCst);
            }
            if body_left == 0 {
                header.push(*byte);
                if header.len() == 5 {
                    body_left =
                        u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                    header.clear();
                    if body_left == 0 {
                        frame_index += 1;
                    }
                }
            } else {
                body_left -= 1;
                if body_left == 0 {
                    if flip == Some(frame_index) || corrupt.swap(false, SeqCst) {
                        *byte ^= 0x01;
                    }
                    frame_index += 1;
                }
            }
            if !dropping {
                out.push(*byte);
            }
        }
        if to.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Resident memory of process `pid` in bytes (from /proc), if readable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A free TCP port on 127.0.0.1 (for tests that restart a server on the same address).
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A hand-driven member speaking the protocol directly (to send what a well-behaved client
/// never would: floods, oversized frames). Broadcast frames are skipped, private replies read.
pub struct RawMember {
    reader: tertulia_core::conn::FrameReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    keys: tertulia_core::handshake::TransportKeys,
}

impl RawMember {
    /// Connect from `source` (any 127.0.0.0/8 address) and complete the handshake.
    pub async fn connect(
        addr: SocketAddr,
        passphrase: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<Self, tertulia_core::conn::ConnError> {
        use tertulia_core::cipher::Key;
        use tertulia_core::passphrase::Salt;
        use tertulia_core::{conn, passphrase as kdf};
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        let (read_half, mut writer) = stream.into_split();
        let mut reader = conn::FrameReader::new(read_half);
        let pass = passphrase.to_owned();
        let keys = conn::initiate_handshake(&mut reader, &mut writer, |salt| async move {
            // One Argon2id evaluation per (passphrase, salt), so tests can open many members.
            static CACHE: std::sync::Mutex<Vec<(String, Salt, Key)>> =
                std::sync::Mutex::new(Vec::new());
            let cached = CACHE
                .lock()
                .expect("psk cache")
                .iter()
                .find(|(p, s, _)| *p == pass && *s == salt)
                .map(|(_, _, key)| *key);
            if let Some(key) = cached {
                return Ok(key);
            }
            let for_kdf = pass.clone();
            let key = tokio::task::spawn_blocking(move || kdf::derive_psk(&for_kdf, &salt))
                .await
                .expect("kdf")?;
            CACHE.lock().expect("psk cache").push((pass, salt, key));
            Ok(key)
        })
        .await?
        .keys;
        Ok(Self {
            reader,
            writer,
            keys,
        })
    }

    /// Send a join with this client id (to come back as the same client).
    pub async fn join_as(&mut self, nick: &str, client_id: &str) {
        self.send(&tertulia_core::message::ClientMessage::Join {
            nick: nick.into(),
            client_id: client_id.into(),
            resume: None,
        })
        .await
        .expect("send join");
    }

    /// Send a join with a random client id.
    pub async fn join(&mut self, nick: &str) {
        let client_id = format!("{:032x}", rand::random::<u128>());
        self.send(&tertulia_core::message::ClientMessage::Join {
            nick: nick.into(),
            client_id,
            resume: None,
        })
        .await
        .expect("send join");
    }

    pub async fn send(
        &mut self,
        message: &tertulia_core::message::ClientMessage,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        tertulia_core::sealed::seal_session(&mut self.keys.send, message, &mut buf).expect("seal");
        self.writer.write_all(&buf).await
    }

    /// Send any plaintext as a sealed session message (e.g. a type number this version of the
    /// protocol does not have, or a known message with fields appended by a newer version).
    pub async fn send_plaintext(&mut self, plaintext: &[u8]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        tertulia_core::sealed::seal_session_bytes(&mut self.keys.send, plaintext, &mut buf)
            .expect("seal");
        self.writer.write_all(&buf).await
    }

    /// Write raw bytes (e.g. a frame header announcing an oversized body).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// The next frame from the server, whatever its kind, as (kind, body); `None` once the
    /// connection is closed.
    pub async fn next_frame(&mut self) -> Option<(tertulia_core::frame::FrameKind, Vec<u8>)> {
        let frame =
            tokio::time::timeout(WAIT, self.reader.read_frame(tertulia_core::frame::MAX_BODY))
                .await
                .expect("server went silent");
        frame.ok().flatten()
    }

    /// Open the body of a session frame (the next one from the server).
    pub fn open_session(&mut self, body: &[u8]) -> tertulia_core::message::ServerMessage {
        tertulia_core::sealed::open_session(&mut self.keys.recv, body).expect("open session frame")
    }

    /// The next private message from the server, or `None` once the connection is closed.
    pub async fn next_private(&mut self) -> Option<tertulia_core::message::ServerMessage> {
        use tertulia_core::frame::{FrameKind, MAX_BODY};
        loop {
            let frame = tokio::time::timeout(WAIT, self.reader.read_frame(MAX_BODY))
                .await
                .expect("server went silent");
            match frame {
                Ok(Some((FrameKind::Session, body))) => {
                    return Some(
                        tertulia_core::sealed::open_session(&mut self.keys.recv, &body)
                            .expect("open session frame"),
                    )
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Read private messages until the server closes; returns the last error it sent.
    pub async fn until_closed(&mut self) -> Option<tertulia_core::message::ServerMessage> {
        let mut last_error = None;
        while let Some(message) = self.next_private().await {
            if matches!(message, tertulia_core::message::ServerMessage::Error { .. }) {
                last_error = Some(message);
            }
        }
        last_error
    }

    /// Join as `nick` (a random client id) and read the welcome and the backlog it brings:
    /// the room's recent events, oldest first.
    pub async fn join_for_history(&mut self, nick: &str) -> Vec<tertulia_core::message::RoomEvent> {
        use tertulia_core::message::ServerMessage;
        self.join(nick).await;
        let welcome = self
            .wait_private(|m| matches!(m, ServerMessage::Welcome { .. }))
            .await
            .expect("welcome");
        let ServerMessage::Welcome { head_seq, .. } = welcome else {
            unreachable!()
        };
        let mut events = Vec::new();
        while events
            .last()
            .is_none_or(|e: &tertulia_core::message::RoomEvent| e.seq < head_seq)
            && head_seq > 0
        {
            match self
                .wait_private(|m| matches!(m, ServerMessage::History { .. }))
                .await
                .expect("history")
            {
                ServerMessage::History { events: more } => events.extend(more),
                _ => unreachable!(),
            }
        }
        events
    }

    /// The next thing from the server: a private message, a file chunk frame's body, or a
    /// broadcast (skipped by the caller); `None` once the connection is closed.
    pub async fn next_incoming(&mut self) -> Option<Incoming> {
        use tertulia_core::frame::{FrameKind, MAX_BODY};
        let frame = tokio::time::timeout(WAIT, self.reader.read_frame(MAX_BODY))
            .await
            .expect("server went silent");
        match frame {
            Ok(Some((FrameKind::Session, body))) => Some(Incoming::Private(
                tertulia_core::sealed::open_session(&mut self.keys.recv, &body)
                    .expect("open session frame"),
            )),
            Ok(Some((FrameKind::FileChunk, body))) => Some(Incoming::Chunk(body)),
            Ok(Some(_)) => Some(Incoming::Broadcast),
            Ok(None) | Err(_) => None,
        }
    }

    /// Read until a private message `pred` accepts (other messages, chunks and broadcasts are
    /// skipped); `None` if the server closes first.
    pub async fn wait_private(
        &mut self,
        pred: impl Fn(&tertulia_core::message::ServerMessage) -> bool,
    ) -> Option<tertulia_core::message::ServerMessage> {
        loop {
            match self.next_incoming().await? {
                Incoming::Private(message) if pred(&message) => return Some(message),
                _ => continue,
            }
        }
    }

    /// Offer `content` as upload `upload_id` named `name`: the server's answer
    /// (`file_accepted`, `file_refused` or `file_done`); `None` if it closed.
    pub async fn offer(
        &mut self,
        upload_id: u64,
        name: &str,
        content: &[u8],
    ) -> Option<tertulia_core::message::ServerMessage> {
        self.offer_as(upload_id, name, content.len() as u64, sha256(content))
            .await
    }

    /// Offer an upload of `size` bytes with SHA-256 `digest` (they may lie).
    pub async fn offer_as(
        &mut self,
        upload_id: u64,
        name: &str,
        size: u64,
        digest: [u8; 32],
    ) -> Option<tertulia_core::message::ServerMessage> {
        use tertulia_core::message::{ClientMessage, ServerMessage};
        self.send(&ClientMessage::FileOffer {
            upload_id,
            name: name.into(),
            size,
            mime: "application/octet-stream".into(),
            sha256: digest,
        })
        .await
        .ok()?;
        self.wait_private(|m| {
            matches!(m,
                ServerMessage::FileAccepted { upload_id: id, .. }
                | ServerMessage::FileRefused { upload_id: id, .. }
                | ServerMessage::FileDone { upload_id: id, .. } if *id == upload_id)
        })
        .await
    }

    /// Send one `file_chunk`.
    pub async fn send_chunk(
        &mut self,
        upload_id: u64,
        offset: u64,
        data: &[u8],
    ) -> std::io::Result<()> {
        self.send(&tertulia_core::message::ClientMessage::FileChunk {
            upload_id,
            offset,
            data: data.to_vec(),
        })
        .await
    }

    /// Send the chunks of `content` from `from` on within the `window` (waiting for
    /// `file_stored` as it fills), stopping after `until` bytes if given (then waiting for
    /// the `file_stored` that reaches it: make it a multiple of half the window); returns the
    /// server's last answer for the upload (`file_done` or `file_refused` once complete, the
    /// last `file_stored` when stopped early); `None` if it closed.
    pub async fn send_chunks(
        &mut self,
        upload_id: u64,
        content: &[u8],
        from: u64,
        window: u32,
        until: Option<u64>,
    ) -> Option<tertulia_core::message::ServerMessage> {
        use tertulia_core::files::CHUNK_BYTES;
        use tertulia_core::message::ServerMessage;
        let size = content.len() as u64;
        let end = until.unwrap_or(size).min(size);
        let (mut next, mut told) = (from, from);
        let mut last = None;
        loop {
            while next < end && next < told + u64::from(window) * CHUNK_BYTES {
                let stop = (next + CHUNK_BYTES).min(size);
                self.send_chunk(upload_id, next, &content[next as usize..stop as usize])
                    .await
                    .ok()?;
                next = stop;
            }
            if until.is_some() && next >= end && told >= end {
                return last;
            }
            let answer = self
                .wait_private(|m| {
                    matches!(m,
                        ServerMessage::FileStored { upload_id: id, .. }
                        | ServerMessage::FileRefused { upload_id: id, .. }
                        | ServerMessage::FileDone { upload_id: id, .. } if *id == upload_id)
                })
                .await?;
            match answer {
                ServerMessage::FileStored { have, .. } => {
                    told = have;
                    last = Some(answer);
                }
                done => return Some(done),
            }
        }
    }

    /// Offer `content` and send all of it: the final answer (`file_done` or `file_refused`).
    pub async fn upload(
        &mut self,
        upload_id: u64,
        name: &str,
        content: &[u8],
    ) -> Option<tertulia_core::message::ServerMessage> {
        use tertulia_core::message::ServerMessage;
        match self.offer(upload_id, name, content).await? {
            ServerMessage::FileAccepted { have, window, .. } => {
                if have == content.len() as u64 {
                    return self
                        .wait_private(|m| {
                            matches!(m,
                                ServerMessage::FileRefused { upload_id: id, .. }
                                | ServerMessage::FileDone { upload_id: id, .. } if *id == upload_id)
                        })
                        .await;
                }
                self.send_chunks(upload_id, content, have, window, None)
                    .await
            }
            other => Some(other),
        }
    }

    /// Ask for file `file_id` from `offset` and read it to its end, opening every chunk frame
    /// with the key from `file_begin` (a frame out of place or that does not open panics):
    /// `Ok(content from offset)`, or `Err` with the `file_missing` (or `None` if closed).
    pub async fn download(
        &mut self,
        file_id: u64,
        offset: u64,
    ) -> Result<Vec<u8>, Option<tertulia_core::message::ServerMessage>> {
        use tertulia_core::files::{ChunkCipher, CHUNK_BYTES};
        use tertulia_core::message::{ClientMessage, ServerMessage};
        self.send(&ClientMessage::FileGet { file_id, offset })
            .await
            .map_err(|_| None)?;
        let begin = self
            .wait_private(|m| {
                matches!(m,
                    ServerMessage::FileBegin { file_id: id, .. }
                    | ServerMessage::FileMissing { file_id: id, .. } if *id == file_id)
            })
            .await
            .ok_or(None)?;
        let ServerMessage::FileBegin { size, key, .. } = begin else {
            return Err(Some(begin));
        };
        let cipher = ChunkCipher::new(&key, file_id);
        let mut content = Vec::new();
        let mut next = offset;
        while next < size {
            match self.next_incoming().await.ok_or(None)? {
                Incoming::Chunk(body) => {
                    let chunk = cipher
                        .open(next, &body)
                        .expect("a chunk in place that opens");
                    content.extend_from_slice(&chunk);
                    next += CHUNK_BYTES;
                }
                _ => continue,
            }
        }
        Ok(content)
    }
}

/// What [`RawMember::next_incoming`] read.
#[derive(Debug)]
pub enum Incoming {
    Private(tertulia_core::message::ServerMessage),
    /// The body of a `FileChunk` frame.
    Chunk(Vec<u8>),
    Broadcast,
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}
