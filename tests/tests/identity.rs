//! Version 2 through the real processes: what a recorded handshake gives a dictionary
//! attacker (nothing to test a guess against), the host identity a pinned client insists
//! on (an impostor with the right passphrase is refused; `--accept-new-host` lets the user
//! accept a new one deliberately), invite codes carrying the fingerprint (no first-use
//! window), and version negotiation (a room that needs a newer Tertulia says so verbatim).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tertulia_core::frame::{self, FrameKind};
use tertulia_core::handshake::{client_start, SPAKE2_LEN};
use tertulia_core::hello::{self, hello_body_with};
use tertulia_core::identity::{Fingerprint, HostKey};
use tertulia_core::passphrase::derive_psk;
use tertulia_e2e::{free_port, ChatProcess, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: &str = "tortilla de patatas";

/// A TCP proxy that records every byte each way (a passive listener on the network).
async fn recording_proxy(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<Mutex<(Vec<u8>, Vec<u8>)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let record = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let shared = record.clone();
    tokio::spawn(async move {
        // The first connection only: one recorded handshake.
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = shared.clone();
        let c2s = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                up.lock().expect("record").0.extend_from_slice(&buf[..n]);
            }
        });
        let mut buf = [0u8; 4096];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            shared
                .lock()
                .expect("record")
                .1
                .extend_from_slice(&buf[..n]);
        }
        c2s.abort();
    });
    (addr, record)
}

/// The frames in a recorded byte stream.
fn frames(mut bytes: &[u8]) -> Vec<(FrameKind, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(Some((f, used))) = frame::decode(bytes, frame::MAX_BODY) {
        out.push((f.kind, f.body.to_vec()));
        bytes = &bytes[used..];
    }
    out
}

#[tokio::test]
async fn a_recorded_handshake_gives_a_dictionary_nothing_to_test() {
    let server = ServerProcess::start("127.0.0.1:0", PASS, &[]).await;
    let (proxy, record) = recording_proxy(server.addr).await;
    let mut ana = ChatProcess::start(proxy, "ana", PASS, &[]).await;
    ana.wait_type("connected").await;
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0));
    let (up, down) = record.lock().expect("record").clone();
    let (up, down) = (frames(&up), frames(&down));
    let hello = &down[0];
    let init = &up[0];
    let response = &down[1];
    assert_eq!(
        (hello.0, init.0, response.0),
        (
            FrameKind::Hello,
            FrameKind::HandshakeInit,
            FrameKind::HandshakeResponse
        )
    );
    let salt = hello::parse_hello(&hello.1).expect("a hello");
    let (a, msg1) = (&init.1[1..1 + SPAKE2_LEN], &init.1[1 + SPAKE2_LEN..]);
    let (b, msg2) = (&response.1[..SPAKE2_LEN], &response.1[SPAKE2_LEN..]);
    assert!(!a.is_empty() && !b.is_empty());
    let first_session = up
        .iter()
        .find(|(k, _)| *k == FrameKind::Session)
        .expect("a join");

    let dictionary = [
        "123456",
        "password",
        "tortilla",
        PASS,
        "tortilla de patata",
        "letmein",
    ];
    let v1_params: snow::params::NoiseParams = "Noise_NNpsk0_25519_ChaChaPoly_SHA256"
        .parse()
        .expect("params");
    let v2_params: snow::params::NoiseParams = "Noise_NXpsk2_25519_ChaChaPoly_SHA256"
        .parse()
        .expect("params");
    let v2_prologue = tertulia_core::handshake::prologue(&hello.1, 2, a);
    let mut tested = 0;
    for word in dictionary {
        let w = derive_psk(word, &salt).expect("kdf");
        let mut scratch = [0u8; 1024];
        // The version-1 attack: open message 1 with a PSK from the passphrase.
        let mut v1 = snow::Builder::new(v1_params.clone())
            .prologue(&[b"tertulia/1\n".as_slice(), &hello.1].concat())
            .psk(0, &w)
            .build_responder()
            .expect("responder");
        assert!(
            v1.read_message(msg1, &mut scratch).is_err(),
            "{word}: v1 attack"
        );
        // Message 1 of version 2 does not depend on the passphrase at all: it reads the same
        // for every word (no information).
        let mut any = snow::Builder::new(v2_params.clone())
            .prologue(&v2_prologue)
            .psk(2, &w)
            .local_private_key(&[0x42; 32])
            .build_responder()
            .expect("responder");
        assert!(
            any.read_message(msg1, &mut scratch).is_ok(),
            "{word}: message 1 reads the same for any word"
        );
        // Message 2 with w (or anything computed from w alone) as the Noise PSK: the
        // attacker has no ephemeral secret, so it plays a fresh initiator keyed with w and
        // the recorded message 2: refused for every word, the right one included.
        let mut init_state = snow::Builder::new(v2_params.clone())
            .prologue(&v2_prologue)
            .psk(2, &w)
            .build_initiator()
            .expect("initiator");
        let _ = init_state.write_message(&[], &mut scratch);
        assert!(
            init_state.read_message(msg2, &mut scratch).is_err(),
            "{word}: msg2 with w"
        );
        // SPAKE2 from w: the attacker's own run with w against the recorded B gives a key
        // unrelated to the session's; the recorded response does not verify with it.
        let (waiting, _) = client_start(&w, &hello.1).expect("init");
        assert!(
            waiting.read_response(&response.1).is_err(),
            "{word}: a fresh SPAKE2 run with w"
        );
        // Nor does the first session frame open under any key from w.
        let mut cs = tertulia_core::cipher::CipherState::new(&w);
        assert!(cs.open(&first_session.1[..0], &first_session.1).is_err());
        tested += 1;
    }
    assert_eq!(tested, dictionary.len());
    let _ = b;
}

/// The fingerprint of the key file `path` (created if missing).
/// The hex public key of the host key file at `path`, as `known_hosts` stores it.
fn public_key_hex(path: &std::path::Path) -> String {
    HostKey::load_or_create(path)
        .expect("host key")
        .public()
        .to_hex()
}

fn fingerprint_of(path: &std::path::Path) -> Fingerprint {
    HostKey::load_or_create(path)
        .expect("host key")
        .public()
        .fingerprint()
}

#[tokio::test]
async fn a_pinned_client_refuses_an_impostor_with_the_passphrase_until_told_to_accept_it() {
    let keys = tempfile::tempdir().expect("dir");
    let (real_key, fake_key) = (keys.path().join("real.key"), keys.path().join("fake.key"));
    let (real_fp, fake_fp) = (fingerprint_of(&real_key), fingerprint_of(&fake_key));
    let pins = keys.path().join("known_hosts");
    let pins_arg = pins.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port().await);

    // First contact with the real host: pinned.
    let real = ServerProcess::start(
        &listen,
        PASS,
        &["--host-key", real_key.to_str().expect("path")],
    )
    .await;
    let mut ana = ChatProcess::start(real.addr, "ana", PASS, &["--known-hosts", &pins_arg]).await;
    let connected = ana.wait_type("connected").await;
    assert_eq!(
        connected["host_fingerprint"],
        real_fp.to_string(),
        "{connected}"
    );
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0));
    assert!(std::fs::read_to_string(&pins)
        .expect("pins")
        .contains(&listen));
    real.terminate().await;

    // An impostor at the same address with the same passphrase but another identity.
    let fake = ServerProcess::start(
        &listen,
        PASS,
        &["--host-key", fake_key.to_str().expect("path")],
    )
    .await;
    let mut ana = ChatProcess::start(fake.addr, "ana", PASS, &["--known-hosts", &pins_arg]).await;
    let refused = ana
        .wait_for("host_identity_changed", |e| e["type"] == "error")
        .await;
    assert_eq!(refused["kind"], "host_identity_changed", "{refused}");
    assert_eq!(refused["pinned_fingerprint"], real_fp.to_string());
    assert_eq!(refused["presented_fingerprint"], fake_fp.to_string());
    assert!(refused["message"].as_str().is_some_and(|m| m.starts_with(
        "the host's identity changed — if the host did not reset the room, someone may be intercepting"
    )));
    let code = ana.exit_code().await;
    assert!(code.is_some_and(|c| c != 0), "stops, nonzero: {code:?}");
    assert!(
        !ana.seen.iter().any(|e| e["type"] == "connected"),
        "{:#?}",
        ana.seen
    );
    // Nothing was sent to it: no join, the handshake never confirmed.
    fake.wait_for_log("no key confirmation").await;
    assert!(!fake.log().contains("joined"), "{}", fake.log());
    // The pin still names the real host.
    let mut again = ChatProcess::start(fake.addr, "ana", PASS, &["--known-hosts", &pins_arg]).await;
    assert!(again.exit_code().await.is_some_and(|c| c != 0));
    // An invite code naming the impostor (anyone with the passphrase can write one, e.g.
    // posted in the room) does not replace the pin either: the same refusal.
    let pass = tertulia_core::invite::encode_component(PASS);
    let code = format!("tertulia://{}/{fake_fp}#{pass}", fake.addr);
    let mut invited =
        ChatProcess::start_target(&code, "ana", "", &["--known-hosts", &pins_arg]).await;
    let refused = invited
        .wait_for("host_identity_changed", |e| e["type"] == "error")
        .await;
    assert_eq!(refused["kind"], "host_identity_changed", "{refused}");
    assert_eq!(refused["pinned_fingerprint"], real_fp.to_string());
    assert!(invited.exit_code().await.is_some_and(|c| c != 0));
    assert!(
        std::fs::read_to_string(&pins)
            .expect("pins")
            .contains(&public_key_hex(&real_key)),
        "the pin still names the real host"
    );

    // The user checked with the host and accepts exactly the new identity: joins, re-pinned.
    let fake_text = fake_fp.to_string();
    let mut ana = ChatProcess::start(
        fake.addr,
        "ana",
        PASS,
        &["--known-hosts", &pins_arg, "--accept-new-host", &fake_text],
    )
    .await;
    let connected = ana.wait_type("connected").await;
    assert_eq!(connected["host_fingerprint"], fake_text);
    ana.close_stdin();
    assert_eq!(ana.exit_code().await, Some(0));
    let mut later = ChatProcess::start(fake.addr, "ana", PASS, &["--known-hosts", &pins_arg]).await;
    later.wait_type("connected").await;
    later.close_stdin();
    assert_eq!(later.exit_code().await, Some(0));
}

/// A server on loopback with its identity key in a scratch directory (kept while the
/// returned directory lives), and that identity's fingerprint.
async fn server_with_identity() -> (ServerProcess, Fingerprint, tempfile::TempDir) {
    let keys = tempfile::tempdir().expect("dir");
    let key = keys.path().join("host.key");
    let fp = fingerprint_of(&key);
    let server = ServerProcess::start(
        "127.0.0.1:0",
        PASS,
        &["--host-key", key.to_str().expect("path")],
    )
    .await;
    (server, fp, keys)
}

/// `chat` stops with "the host's identity changed": it expected `expected`, the host
/// presented `presented`.
async fn refused_as_changed(chat: &mut ChatProcess, expected: &str, presented: Fingerprint) {
    let refused = chat.wait_for("refusal", |e| e["type"] == "error").await;
    assert_eq!(refused["kind"], "host_identity_changed", "{refused}");
    assert_eq!(refused["pinned_fingerprint"], expected);
    assert_eq!(refused["presented_fingerprint"], presented.to_string());
    assert!(chat.exit_code().await.is_some_and(|c| c != 0));
}

#[tokio::test]
async fn an_invite_code_with_another_fingerprint_is_refused_on_first_contact() {
    let (server, fp, _keys) = server_with_identity().await;
    let pass = tertulia_core::invite::encode_component(PASS);
    let wrong = "0000-1111-2222-3333-4444-5555";
    let code = format!("tertulia://{}/{wrong}#{pass}", server.addr);
    let mut ana = ChatProcess::start_target(&code, "ana", "", &[]).await;
    refused_as_changed(&mut ana, wrong, fp).await;
    // The right fingerprint (dashes or not, any case) joins.
    let code = format!(
        "tertulia://{}/{}#{pass}",
        server.addr,
        fp.to_string().replace('-', "").to_uppercase()
    );
    let mut ana = ChatProcess::start_target(&code, "ana", "", &[]).await;
    let connected = ana.wait_type("connected").await;
    assert_eq!(connected["host_fingerprint"], fp.to_string());
}

/// `--host-identity` (the fingerprint `--discover` prints with each room) does for an
/// address what an invite code's fingerprint does: a host with another identity is refused
/// on first contact, before anything is sent.
#[tokio::test]
async fn an_address_with_host_identity_is_checked_on_first_contact() {
    let (server, fp, _keys) = server_with_identity().await;
    let wrong = "0000-1111-2222-3333-4444-5555";
    let mut ana = ChatProcess::start(server.addr, "ana", PASS, &["--host-identity", wrong]).await;
    refused_as_changed(&mut ana, wrong, fp).await;
    let fp_text = fp.to_string();
    let mut ana =
        ChatProcess::start(server.addr, "ana", PASS, &["--host-identity", &fp_text]).await;
    let connected = ana.wait_type("connected").await;
    assert_eq!(connected["host_fingerprint"], fp_text);
    // An invite code naming one identity and the flag another: a usage error, nothing sent.
    let pass = tertulia_core::invite::encode_component(PASS);
    let code = format!("tertulia://{}/{fp_text}#{pass}", server.addr);
    let mut both = ChatProcess::start_target(&code, "bea", "", &["--host-identity", wrong]).await;
    assert_eq!(both.exit_code().await, Some(2));
}

#[tokio::test]
async fn a_room_that_needs_a_newer_tertulia_says_so_verbatim() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let hello = frame::encode(FrameKind::Hello, &hello_body_with(3, 3, &[7; 16]));
            let _ = stream.write_all(&hello).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let expected =
        "this room needs a newer Tertulia (it speaks protocol 3–3; this program speaks 2)";
    let mut ana = ChatProcess::start(addr, "ana", PASS, &[]).await;
    let code = ana.exit_code().await;
    let errors: Vec<_> = ana.seen.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(errors.len(), 3, "believed on the third: {errors:#?}");
    for e in &errors {
        assert_eq!(e["kind"], "needs_newer");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(expected)),
            "{e}"
        );
    }
    assert!(code.is_some_and(|c| c != 0), "{code:?}");
    // The terminal client shows the text as it is.
    let output = tokio::process::Command::new(tertulia_e2e::binary("tertulia-chat"))
        .arg(addr.to_string())
        .args(["--nick", "ana", "--lang", "en", "--known-hosts"])
        .arg(tempfile::tempdir().expect("dir").path().join("kh"))
        .env("TERTULIA_PASSPHRASE", PASS)
        .stdin(std::process::Stdio::piped())
        .output()
        .await
        .expect("run tertulia-chat");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains(expected), "{shown}");
}
