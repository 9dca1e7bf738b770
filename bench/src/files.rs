//! `tertulia-bench files`: one member sends a large file to a room where `receivers` members
//! fetch it, while two other members chat; prints upload and fan-out throughput, the host's
//! CPU, and the chat latency the chatting members saw meanwhile (issue #14).
//!
//! Every member is the real client (`tertulia_core::client`): handshake, sealed session
//! frames, chunk frames opened and hashed, SHA-256 checked. Files are fetched into memory so
//! the figures are the protocol's and not this machine's disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tertulia_core::files::{self, ChunkCipher};
use tertulia_core::frame::{self, FrameKind, MAX_BODY};
use tertulia_core::message::{ClientMessage, ServerMessage};
use tertulia_core::sealed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use serde::Serialize;
use tertulia_core::client::{self, ClientConfig, ClientEvent, ClientHandle, FetchTarget};
use tokio::sync::mpsc;

use crate::procfs;
use crate::servers::{self, PASSPHRASE};
use crate::{targets, Target};

#[derive(Debug, Serialize)]
pub struct FilesResult {
    pub file_mib: u64,
    pub receivers: usize,
    /// Offer to `file_sent`: the sender's upload into the host (MB/s, 10^6 bytes).
    pub upload_mb_per_s: f64,
    /// Each receiver's download, from its `file_get` to its last chunk (MB/s).
    pub download_mb_per_s_per_member: Vec<f64>,
    /// One real client fetching the file alone, opening and hashing every chunk itself.
    pub real_client_alone_mb_per_s: f64,
    /// All deliveries together: receivers × size over the fan-out's wall time (MB/s).
    pub aggregate_delivery_mb_per_s: f64,
    pub fan_out_secs: f64,
    /// Host CPU seconds over the whole transfer (upload and fan-out), and per wall second.
    pub host_cpu_secs: f64,
    pub host_cpu_per_wall_sec: f64,
    pub host_peak_rss_mib: f64,
    /// Latency of chat messages between two other members while the file moved.
    pub chat_messages: usize,
    pub chat_p50_ms: f64,
    pub chat_p99_ms: f64,
    pub chat_max_ms: f64,
    pub note: &'static str,
}

/// A member: its handle and its events.
struct Member {
    handle: ClientHandle,
    events: mpsc::Receiver<ClientEvent>,
}

async fn member(port: u16, nick: &str) -> Result<Member, String> {
    let mut config = ClientConfig::new(format!("127.0.0.1:{port}"), nick, PASSPHRASE);
    config.give_up_after = Some(3);
    let (handle, mut events) = client::spawn(config);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(ClientEvent::Connected { .. })) => return Ok(Member { handle, events }),
            Ok(Some(ClientEvent::Disconnected { message, .. })) => {
                return Err(format!("{nick} could not join: {message}"))
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(format!("{nick} did not join within 60 s")),
        }
    }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    (bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9) * 10.0).round() / 10.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i.min(sorted.len() - 1)] * 100.0).round() / 100.0
}

pub fn run(file_mib: u64, receivers: usize) -> Result<FilesResult, String> {
    let server = servers::start(Target::Tertulia, Some(0)).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Raw receivers share state through Rc: one thread, a LocalSet.
    let result =
        tokio::task::LocalSet::new().block_on(&runtime, transfer(&server, file_mib, receivers));
    drop(server);
    result
}

async fn transfer(
    server: &servers::RunningServer,
    file_mib: u64,
    receivers: usize,
) -> Result<FilesResult, String> {
    let size = file_mib * 1024 * 1024;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("big.bin");
    let mut content = vec![0u8; size as usize];
    rand::Rng::fill(&mut rand::thread_rng(), &mut content[..]);
    std::fs::write(&path, &content).map_err(|e| e.to_string())?;
    let digest: [u8; 32] = Sha256::digest(&content).into();
    drop(content);

    let pid = server.pid();
    let mut sender = member(server.port, "sender").await?;
    // Chat alongside, on its own thread (and runtime), so the receivers' work in this process
    // does not sit between a message and its reader: the talker says its send time every
    // 10 ms; the listener measures.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let chat_thread = {
        let stop = stop.clone();
        let port = server.port;
        std::thread::spawn(move || -> Result<Vec<f64>, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(chat_pair(port, stop, ready_tx))
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the chatting members did not join".to_string())?;
    // Let the chat settle before the transfer starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu_before = procfs::cpu_seconds(&pid).unwrap_or(0.0);
    let wall = Instant::now();
    sender
        .handle
        .send_file(path.clone())
        .await
        .map_err(|e| e.to_string())?;
    let file_id = loop {
        match sender.events.recv().await {
            Some(ClientEvent::FileSent { file_id, .. }) => break file_id,
            Some(ClientEvent::FileFailed { message, .. }) => {
                return Err(format!("upload failed: {message}"))
            }
            Some(_) => {}
            None => return Err("the sender stopped".into()),
        }
    };
    let upload = wall.elapsed();

    // Fan-out: every receiver asks for it at once.
    let opened = targets::tertulia::SharedOpened::default();
    let chunks = Rc::new(RefCell::new(SharedChunks {
        cipher: None,
        frames: HashMap::new(),
        hasher: Sha256::new(),
        receivers,
        mismatches: 0,
    }));
    let fan_out = Instant::now();
    let waits: Vec<_> = (0..receivers)
        .map(|i| {
            tokio::task::spawn_local(raw_receive(
                server.port,
                i,
                file_id,
                size,
                opened.clone(),
                chunks.clone(),
            ))
        })
        .collect();
    let mut per_member = Vec::new();
    for wait in waits {
        let took = wait.await.map_err(|e| e.to_string())??;
        per_member.push(mb_per_s(size, took));
    }
    let fan_out_took = fan_out.elapsed();
    let total_wall = wall.elapsed();
    let cpu = procfs::cpu_seconds(&pid).unwrap_or(0.0) - cpu_before;
    let peak = procfs::peak_rss_bytes(&pid).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let (received_digest, mismatches) = {
        let mut shared = chunks.borrow_mut();
        let hasher = std::mem::replace(&mut shared.hasher, Sha256::new());
        let got: [u8; 32] = hasher.finalize().into();
        (got, shared.mismatches)
    };
    if received_digest != digest || mismatches != 0 {
        return Err(format!(
            "the fan-out did not deliver the file intact ({mismatches} copies differed)"
        ));
    }

    // One real client (opening and hashing every chunk itself) fetching it alone.
    let alone = Instant::now();
    sender
        .handle
        .fetch_file(file_id, FetchTarget::Memory { max_bytes: size })
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match sender.events.recv().await {
            Some(ClientEvent::FileReceived { size: got, .. }) if got == size => break,
            Some(ClientEvent::FileFailed { message, .. }) => return Err(message),
            Some(_) => {}
            None => return Err("the sender stopped".into()),
        }
    }
    let real_client = mb_per_s(size, alone.elapsed());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut chat = chat_thread
        .join()
        .map_err(|_| "the chat thread panicked".to_string())??;
    chat.sort_by(|a, b| a.total_cmp(b));
    sender.handle.disconnect().await;
    Ok(FilesResult {
        file_mib,
        receivers,
        upload_mb_per_s: mb_per_s(size, upload),
        download_mb_per_s_per_member: per_member,
        real_client_alone_mb_per_s: real_client,
        aggregate_delivery_mb_per_s: mb_per_s(size * receivers as u64, fan_out_took),
        fan_out_secs: (fan_out_took.as_secs_f64() * 1000.0).round() / 1000.0,
        host_cpu_secs: (cpu * 100.0).round() / 100.0,
        host_cpu_per_wall_sec: (cpu / total_wall.as_secs_f64() * 100.0).round() / 100.0,
        host_peak_rss_mib: peak.round(),
        chat_messages: chat.len(),
        chat_p50_ms: percentile(&chat, 0.50),
        chat_p99_ms: percentile(&chat, 0.99),
        chat_max_ms: percentile(&chat, 1.0),
        note: "server pinned to CPU 0, members on CPU 1. Sender, chatting pair and the lone fetch: the real client. Fan-out receivers: raw protocol clients; the first to receive a chunk opens it with the file key and hashes it, the others compare their copy byte for byte (the host sends one sealed copy to all), and the hash is checked against the file at the end. Chat: a message every 10 ms between two other members during upload and fan-out, on their own thread",
    })
}

/// Two members chatting until `stop`: the latency of each of the talker's messages at the
/// listener, in ms. Says on `ready` once both are in the room.
async fn chat_pair(
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) -> Result<Vec<f64>, String> {
    let talker = member(port, "talker").await?;
    let mut listener = member(port, "listener").await?;
    let _ = ready.send(());
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut latencies = Vec::new();
    let mut stopping_at = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if stopping_at.is_none() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        stopping_at = Some(Instant::now());
                    } else {
                        let micros = start.elapsed().as_micros();
                        let _ = talker.handle.send(&format!("t {micros}")).await;
                    }
                }
                if stopping_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
                    break;
                }
            }
            event = listener.events.recv() => {
                let Some(event) = event else { break };
                if let ClientEvent::Message { from, text, history: false, .. } = &event {
                    if from == "talker" {
                        if let Some(sent) = text.strip_prefix("t ").and_then(|t| t.parse::<u128>().ok()) {
                            let now = start.elapsed().as_micros();
                            latencies.push(now.saturating_sub(sent) as f64 / 1000.0);
                        }
                    }
                }
            }
        }
    }
    talker.handle.disconnect().await;
    listener.handle.disconnect().await;
    Ok(latencies)
}

/// Chunks as first received, shared by the raw receivers of one run: the first to get a chunk
/// opens it with the file key (authenticating it) and hashes it; the others compare their copy
/// byte for byte with that one, as the chat benchmark does with broadcasts. Chunks arrive in
/// order on every connection, so first openings come in file order and one hash covers them.
struct SharedChunks {
    cipher: Option<ChunkCipher>,
    /// offset → (the frame body as first received, receivers still to get it).
    frames: HashMap<u64, (Box<[u8]>, usize)>,
    hasher: Sha256,
    receivers: usize,
    mismatches: u64,
}

/// One raw receiver: joins, asks for `file_id`, reads `file_begin` and every chunk frame up to
/// `size` bytes. Returns when it has them all.
async fn raw_receive(
    port: u16,
    id: usize,
    file_id: u64,
    size: u64,
    opened: targets::tertulia::SharedOpened,
    chunks: Rc<RefCell<SharedChunks>>,
) -> Result<Duration, String> {
    let conn = targets::tertulia::connect(port, 10_000 + id, &opened)
        .await
        .map_err(|e| e.to_string())?;
    let targets::tertulia::Connected {
        mut stream,
        mut send,
        mut recv,
        mut buf,
        ..
    } = conn;
    let began = Instant::now();
    let mut out = Vec::new();
    sealed::seal_session(
        &mut send,
        &ClientMessage::FileGet { file_id, offset: 0 },
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut next = 0u64;
    let mut begun = false;
    loop {
        let mut consumed = 0;
        while let Some((f, used)) =
            frame::decode(&buf[consumed..], MAX_BODY).map_err(|e| e.to_string())?
        {
            match f.kind {
                FrameKind::Session => {
                    if let ServerMessage::FileBegin {
                        key, file_id: got, ..
                    } = sealed::open_session::<ServerMessage>(&mut recv, f.body)
                        .map_err(|e| e.to_string())?
                    {
                        if got == file_id {
                            begun = true;
                            let mut shared = chunks.borrow_mut();
                            if shared.cipher.is_none() {
                                shared.cipher = Some(ChunkCipher::new(&key, file_id));
                            }
                        }
                    }
                }
                FrameKind::FileChunk if begun => {
                    let mut shared = chunks.borrow_mut();
                    let SharedChunks {
                        cipher,
                        frames,
                        hasher,
                        receivers,
                        mismatches,
                    } = &mut *shared;
                    match frames.get_mut(&next) {
                        Some((first, left)) => {
                            if **first != *f.body {
                                *mismatches += 1;
                            }
                            *left -= 1;
                            if *left == 0 {
                                frames.remove(&next);
                            }
                        }
                        None => {
                            let cipher = cipher.as_ref().ok_or("a chunk before file_begin")?;
                            let data = cipher.open(next, f.body).map_err(|e| e.to_string())?;
                            hasher.update(&data);
                            if *receivers > 1 {
                                frames.insert(next, (f.body.into(), *receivers - 1));
                            }
                        }
                    }
                    next += files::CHUNK_BYTES;
                    if next >= size {
                        return Ok(began.elapsed());
                    }
                }
                _ => {}
            }
            consumed += used;
        }
        buf.drain(..consumed);
        if buf.capacity() - buf.len() < 128 * 1024 {
            buf.reserve(256 * 1024);
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the host closed a receiver's connection".into());
        }
    }
}
