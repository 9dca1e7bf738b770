//! Known-answer test vectors: fixed keys and nonces → exact bytes.
//!
//! `testdata/vectors.json` holds the expected values; `docs/PROTOCOL.md` quotes the same hex
//! strings (checked below), and the handshake bytes are reproduced independently with `snow`.
//! The session and broadcast frames are sealed with fixed keys listed in the vectors (not
//! keys from the handshake), with postcard plaintexts; `docs/vectors/messages.json` holds one
//! encoded message of every type.

use serde_json::{json, Value};
use tertulia_core::cipher::CipherState;
use tertulia_core::handshake::{
    client_start_with, prologue, server_respond_with, FixedEntropy, NoiseResponder,
    SPAKE2_ID_CLIENT, SPAKE2_ID_SERVER, SPAKE2_LEN,
};
use tertulia_core::hello::hello_body;
use tertulia_core::identity::HostKey;
use tertulia_core::message::{
    decode, decode_broadcast_message, decode_client_message, decode_server_message, encode,
    BroadcastMessage, ClientMessage, ErrorCode, FileMissingReason, FileRefusal, LeaveReason,
    Resume, RoomEvent, RoomEventKind, ServerMessage,
};
use tertulia_core::passphrase::derive_psk;
use tertulia_core::sealed::{seal_session, BroadcastSealer};
use tertulia_core::text::{MessageTextError, NickError};
use x25519_dalek::StaticSecret;

const PASSPHRASE: &str = "correct horse battery staple";

fn bytes(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn arr32(v: Vec<u8>) -> [u8; 32] {
    v.try_into().expect("32 bytes")
}

struct Inputs {
    salt: [u8; 16],
    client_ephemeral: [u8; 32],
    server_ephemeral: [u8; 32],
    broadcast_key: [u8; 32],
    session_key_c2s: [u8; 32],
    session_key_s2c: [u8; 32],
    host_static: [u8; 32],
    client_spake_entropy: [u8; 64],
    server_spake_entropy: [u8; 64],
}

fn inputs() -> Inputs {
    Inputs {
        salt: bytes(0x00, 16).try_into().expect("16 bytes"),
        client_ephemeral: arr32(bytes(0x20, 32)),
        server_ephemeral: arr32(bytes(0x40, 32)),
        broadcast_key: arr32(bytes(0x60, 32)),
        session_key_c2s: arr32(bytes(0x80, 32)),
        session_key_s2c: arr32(bytes(0xa0, 32)),
        host_static: arr32(bytes(0xa0, 32)),
        client_spake_entropy: bytes(0x80, 64).try_into().expect("64"),
        server_spake_entropy: bytes(0xc0, 64).try_into().expect("64"),
    }
}

/// SPAKE2 with the crate directly (the same fixed randomness): A, B and the key K.
fn spake2_reference(w: &[u8; 32], i: &Inputs) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    type S = spake2::Spake2<spake2::Ed25519Group>;
    let (ida, idb) = (
        spake2::Identity::new(SPAKE2_ID_CLIENT),
        spake2::Identity::new(SPAKE2_ID_SERVER),
    );
    let pw = spake2::Password::new(w);
    let (a_state, a) =
        S::start_a_with_rng(&pw, &ida, &idb, FixedEntropy::new(i.client_spake_entropy));
    let (b_state, b) =
        S::start_b_with_rng(&pw, &ida, &idb, FixedEntropy::new(i.server_spake_entropy));
    let ka = a_state.finish(&b).expect("A finishes");
    let kb = b_state.finish(&a).expect("B finishes");
    assert_eq!(ka, kb);
    (a, b, ka)
}

fn join_message() -> ClientMessage {
    ClientMessage::Join {
        nick: "ana".into(),
        client_id: "00112233445566778899aabbccddeeff".into(),
        resume: None,
    }
}

/// Compute every vector with this crate's implementation.
fn compute() -> Value {
    let i = inputs();
    let w = derive_psk(PASSPHRASE, &i.salt).expect("kdf");
    let hello = hello_body(&i.salt);
    let host = HostKey::from_bytes(i.host_static);
    let (waiting, init) = client_start_with(
        &w,
        &hello,
        i.client_spake_entropy,
        StaticSecret::from(i.client_ephemeral),
    )
    .expect("init");
    let (mut server, response) = server_respond_with(
        &w,
        &host,
        &hello,
        &init,
        i.server_spake_entropy,
        StaticSecret::from(i.server_ephemeral),
    )
    .expect("response");
    let done = waiting.read_response(&response).expect("client finishes");
    assert_eq!(done.host, host.public());
    let mut client = done.keys;
    let (a, b, k) = spake2_reference(&w, &i);
    assert_eq!(&init[1..1 + SPAKE2_LEN], a.as_slice());
    assert_eq!(&response[..SPAKE2_LEN], b.as_slice());
    let prologue = prologue(&hello, 2, &a);
    // The handshake's own transport keys: the first frame each side seals after it.
    let mut confirm = Vec::new();
    seal_session(
        &mut client.send,
        &ServerMessage::Ack { up_to: 0 },
        &mut confirm,
    )
    .expect("seal");
    let mut first_reply = Vec::new();
    seal_session(
        &mut server.send,
        &ServerMessage::Ack { up_to: 0 },
        &mut first_reply,
    )
    .expect("seal");
    let mut c2s = Vec::new();
    seal_session(
        &mut CipherState::new(&i.session_key_c2s),
        &join_message(),
        &mut c2s,
    )
    .expect("seal");
    let mut s2c = Vec::new();
    seal_session(
        &mut CipherState::new(&i.session_key_s2c),
        &ServerMessage::Ack { up_to: 1 },
        &mut s2c,
    )
    .expect("seal");
    let event = BroadcastMessage::Event(RoomEvent {
        seq: 1,
        time_ms: 0,
        kind: RoomEventKind::Join { nick: "ana".into() },
    });
    let broadcast = BroadcastSealer::new(&i.broadcast_key, 7)
        .seal(&encode(&event).expect("encode"))
        .expect("seal broadcast");
    // A rotation (§5): the server's second session frame (n = 1) hands out a new key from
    // counter 8 on, and broadcast 8 is sealed with it.
    let mut s2c_cipher = CipherState::new(&i.session_key_s2c);
    let mut skipped = Vec::new();
    seal_session(
        &mut s2c_cipher,
        &ServerMessage::Ack { up_to: 1 },
        &mut skipped,
    )
    .expect("seal");
    let mut room_key_frame = Vec::new();
    seal_session(
        &mut s2c_cipher,
        &ServerMessage::RoomKey {
            room_key: ROTATED_KEY,
            from_broadcast: 8,
        },
        &mut room_key_frame,
    )
    .expect("seal");
    let rotated = BroadcastSealer::new(&ROTATED_KEY, 8)
        .seal(&encode(&BroadcastMessage::Typing { nick: "ana".into() }).expect("encode"))
        .expect("seal broadcast");
    json!({
        "passphrase": PASSPHRASE,
        "salt": hex::encode(i.salt),
        "w": hex::encode(w),
        "hello_frame": hex::encode(tertulia_core::frame::encode(tertulia_core::frame::FrameKind::Hello, &hello)),
        "client_spake2_entropy": hex::encode(i.client_spake_entropy),
        "server_spake2_entropy": hex::encode(i.server_spake_entropy),
        "spake2_a": hex::encode(&a),
        "spake2_b": hex::encode(&b),
        "spake2_key": hex::encode(&k),
        "host_static_private": hex::encode(i.host_static),
        "host_public_key": host.public().to_hex(),
        "host_fingerprint": host.public().fingerprint().to_string(),
        "prologue": hex::encode(&prologue),
        "client_ephemeral_private": hex::encode(i.client_ephemeral),
        "server_ephemeral_private": hex::encode(i.server_ephemeral),
        "noise_message_1": hex::encode(&init[1 + SPAKE2_LEN..]),
        "noise_message_2": hex::encode(&response[SPAKE2_LEN..]),
        "handshake_init_frame": hex::encode(tertulia_core::frame::encode(tertulia_core::frame::FrameKind::HandshakeInit, &init)),
        "handshake_response_frame": hex::encode(tertulia_core::frame::encode(tertulia_core::frame::FrameKind::HandshakeResponse, &response)),
        "handshake_hash": hex::encode(client.handshake_hash),
        "session_key_client_to_server": hex::encode(i.session_key_c2s),
        "session_key_server_to_client": hex::encode(i.session_key_s2c),
        "client_join_plaintext": hex::encode(encode(&join_message()).expect("encode")),
        "handshake_client_first_frame": hex::encode(&confirm),
        "handshake_server_first_frame": hex::encode(&first_reply),
        "client_join_frame": hex::encode(&c2s),
        "server_ack_plaintext": hex::encode(encode(&ServerMessage::Ack { up_to: 1 }).expect("encode")),
        "server_ack_frame": hex::encode(&s2c),
        "broadcast_plaintext": hex::encode(encode(&event).expect("encode")),
        "broadcast_key": hex::encode(i.broadcast_key),
        "broadcast_counter": 7,
        "broadcast_frame": hex::encode(&broadcast),
        "rotated_key": hex::encode(ROTATED_KEY),
        "room_key_frame": hex::encode(&room_key_frame),
        "rotated_broadcast_frame": hex::encode(&rotated),
    })
}

/// The key of the rotation vector (§11).
const ROTATED_KEY: [u8; 32] = [0x5a; 32];

fn stored() -> Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).expect("valid vectors.json")
}

#[test]
fn implementation_matches_stored_vectors() {
    let computed = compute();
    let stored = stored();
    assert_eq!(
        computed,
        stored,
        "computed vectors:\n{}",
        serde_json::to_string_pretty(&computed).unwrap_or_default()
    );
}

#[test]
fn stored_vectors_open_correctly() {
    let v = stored();
    let hex_of = |k: &str| hex::decode(v[k].as_str().expect("hex string")).expect("hex");
    // Replay the stored transcript with a fresh Noise responder keyed with the stored
    // SPAKE2 key and check the frames open to the expected messages.
    let k = arr32(hex_of("spake2_key"));
    let prologue = hex_of("prologue");
    let (ready, _) = NoiseResponder::with_ephemeral(
        &k,
        &prologue,
        &StaticSecret::from(arr32(hex_of("host_static_private"))),
        StaticSecret::from(arr32(hex_of("server_ephemeral_private"))),
    )
    .read_message(&hex_of("noise_message_1"))
    .expect("stored message 1 reads");
    let (mut server, msg2) = ready.write_message(&[]).expect("msg2");
    assert_eq!(msg2, hex_of("noise_message_2"));
    // The handshake's transport keys (k1, k2 of Split) open the first frames sealed with them.
    let frame = hex_of("handshake_client_first_frame");
    let first: ServerMessage =
        tertulia_core::sealed::open_session(&mut server.recv, &frame[5..]).expect("k1 opens");
    assert_eq!(first, ServerMessage::Ack { up_to: 0 });
    let mut reply = Vec::new();
    seal_session(
        &mut server.send,
        &ServerMessage::Ack { up_to: 0 },
        &mut reply,
    )
    .expect("seal");
    assert_eq!(reply, hex_of("handshake_server_first_frame"), "k2");
    // The session frames open with the listed keys, at n = 0.
    let frame = hex_of("client_join_frame");
    let mut c2s = CipherState::new(&arr32(hex_of("session_key_client_to_server")));
    let join: ClientMessage =
        tertulia_core::sealed::open_session(&mut c2s, &frame[5..]).expect("open join");
    assert_eq!(join, join_message());
    let frame = hex_of("server_ack_frame");
    let mut s2c = CipherState::new(&arr32(hex_of("session_key_server_to_client")));
    let ack = tertulia_core::sealed::open_session_plaintext(&mut s2c, &frame[5..]).expect("open");
    assert_eq!(ack, hex_of("server_ack_plaintext"));
    assert_eq!(
        decode::<ServerMessage>(&ack).expect("ack"),
        ServerMessage::Ack { up_to: 1 }
    );
    // The rotation: the room_key frame (n = 1 under the server → client key) names the new key
    // and its first counter; broadcast 8 opens with it and not with the old key.
    let frame = hex_of("room_key_frame");
    let mut s2c = CipherState::new(&arr32(hex_of("session_key_server_to_client")));
    let _: ServerMessage =
        tertulia_core::sealed::open_session(&mut s2c, &hex_of("server_ack_frame")[5..])
            .expect("n=0");
    let room_key: ServerMessage =
        tertulia_core::sealed::open_session(&mut s2c, &frame[5..]).expect("n=1 opens");
    let rotated = arr32(hex_of("rotated_key"));
    assert_eq!(
        room_key,
        ServerMessage::RoomKey {
            room_key: rotated,
            from_broadcast: 8
        }
    );
    let body = hex_of("rotated_broadcast_frame");
    let mut old = tertulia_core::sealed::BroadcastOpener::new(&arr32(hex_of("broadcast_key")), 8);
    assert!(
        old.open::<BroadcastMessage>(&body[5..]).is_err(),
        "the old key does not open it"
    );
    let mut new = tertulia_core::sealed::BroadcastOpener::new(&rotated, 8);
    assert_eq!(
        new.open::<BroadcastMessage>(&body[5..])
            .expect("the new key opens it"),
        BroadcastMessage::Typing { nick: "ana".into() }
    );
    let broadcast = hex_of("broadcast_frame");
    let mut opener =
        tertulia_core::sealed::BroadcastOpener::new(&arr32(hex_of("broadcast_key")), 7);
    let opened: BroadcastMessage = opener.open(&broadcast[5..]).expect("open broadcast");
    assert_eq!(
        opened,
        BroadcastMessage::Event(RoomEvent {
            seq: 1,
            time_ms: 0,
            kind: RoomEventKind::Join { nick: "ana".into() }
        })
    );
}

#[test]
fn snow_produces_the_same_handshake_bytes() {
    let v = stored();
    let hex_of = |k: &str| hex::decode(v[k].as_str().expect("hex string")).expect("hex");
    let params: snow::params::NoiseParams = "Noise_NXpsk2_25519_ChaChaPoly_SHA256"
        .parse()
        .expect("params");
    let psk = hex_of("spake2_key");
    let prologue = hex_of("prologue");
    let client_e = hex_of("client_ephemeral_private");
    let server_e = hex_of("server_ephemeral_private");
    let mut init = snow::Builder::new(params.clone())
        .prologue(&prologue)
        .psk(2, &psk)
        .fixed_ephemeral_key_for_testing_only(&client_e)
        .build_initiator()
        .expect("initiator");
    let mut resp = snow::Builder::new(params)
        .prologue(&prologue)
        .psk(2, &psk)
        .local_private_key(&hex_of("host_static_private"))
        .fixed_ephemeral_key_for_testing_only(&server_e)
        .build_responder()
        .expect("responder");
    let mut m1 = [0u8; 256];
    let n1 = init.write_message(&[], &mut m1).expect("snow msg1");
    assert_eq!(&m1[..n1], hex_of("noise_message_1").as_slice());
    let mut scratch = [0u8; 256];
    resp.read_message(&m1[..n1], &mut scratch)
        .expect("snow reads msg1");
    let mut m2 = [0u8; 256];
    let n2 = resp.write_message(&[], &mut m2).expect("snow msg2");
    assert_eq!(&m2[..n2], hex_of("noise_message_2").as_slice());
    init.read_message(&m2[..n2], &mut scratch)
        .expect("snow reads msg2");
    assert_eq!(
        init.get_remote_static().expect("server static"),
        hex_of("host_public_key").as_slice()
    );
    assert_eq!(
        init.get_handshake_hash(),
        hex_of("handshake_hash").as_slice()
    );
    // The first transport message of each side, with empty associated data, matches our
    // CipherState with the same keys: the split is identical.
    let mut snow_t = init.into_transport_mode().expect("transport");
    let mut ct = [0u8; 256];
    let n = snow_t.write_message(b"vector", &mut ct).expect("snow seal");
    let mut server_t = resp.into_transport_mode().expect("transport");
    let mut pt = [0u8; 256];
    let m = server_t.read_message(&ct[..n], &mut pt).expect("snow open");
    assert_eq!(&pt[..m], b"vector");
    let _ = CipherState::new(&[0u8; 32]);
}

#[test]
fn protocol_document_quotes_the_vectors() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let v = stored();
    for (name, value) in v.as_object().expect("object") {
        if let Some(text) = value.as_str() {
            // Long hex values are wrapped in the document; compare without whitespace.
            let flat: String = doc.split_whitespace().collect();
            let text_flat: String = text.split_whitespace().collect();
            assert!(
                flat.contains(&text_flat),
                "docs/PROTOCOL.md does not quote vector {name} = {text}"
            );
        }
    }
}

#[test]
#[ignore = "prints freshly computed vectors; run with --ignored to regenerate testdata/vectors.json"]
fn print_vectors() {
    println!(
        "{}",
        serde_json::to_string_pretty(&compute()).unwrap_or_default()
    );
}

/// `docs/vectors/passphrase.json`: the passphrase as typed (UTF-8 hex), the exact bytes the
/// KDF gets (trimmed, NFC) and the resulting key, so "José" typed precomposed and decomposed
/// gives one key. Checked through `derive_psk` and through Argon2id called directly.
#[test]
fn passphrase_vectors_normalise_to_nfc_before_the_kdf() {
    use argon2::{Algorithm, Argon2, Params, Version};
    use tertulia_core::passphrase::{normalize, ARGON2_M_KIB, ARGON2_P, ARGON2_T};
    let file: Value = serde_json::from_str(include_str!("../../docs/vectors/passphrase.json"))
        .expect("docs/vectors/passphrase.json is JSON");
    let vectors = file["vectors"].as_array().expect("vectors");
    assert!(vectors.len() >= 3);
    let hex_of = |v: &Value, k: &str| hex::decode(v[k].as_str().expect(k)).expect("hex");
    for v in vectors {
        let typed = String::from_utf8(hex_of(v, "typed_utf8")).expect("utf-8");
        let kdf_input = hex_of(v, "kdf_input_utf8");
        let salt: [u8; 16] = hex_of(v, "salt").try_into().expect("16 bytes");
        let psk = hex_of(v, "psk");
        assert_eq!(
            normalize(&typed).expect("valid").as_bytes(),
            kdf_input,
            "{typed:?}"
        );
        assert_eq!(
            derive_psk(&typed, &salt).expect("kdf").to_vec(),
            psk,
            "{typed:?}"
        );
        let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32)).expect("params");
        let mut direct = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(&kdf_input, &salt, &mut direct)
            .expect("argon2");
        assert_eq!(direct.to_vec(), psk, "{typed:?}: Argon2id of the NFC bytes");
    }
    assert_eq!(
        vectors[0]["psk"], vectors[1]["psk"],
        "precomposed = decomposed"
    );
}

#[test]
#[ignore = "prints passphrase vectors for docs/vectors/passphrase.json"]
fn print_passphrase_vectors() {
    for typed in [
        "Jos\u{e9} ma\u{f1}ana",
        "Jose\u{301} man\u{303}ana",
        "  Jos\u{e9} ma\u{f1}ana\n",
    ] {
        let salt = bytes(0x00, 16);
        let input = tertulia_core::passphrase::normalize(typed).expect("valid");
        let psk = derive_psk(typed, &salt.clone().try_into().expect("16")).expect("kdf");
        println!(
            "{{ \"typed_utf8\": \"{}\", \"kdf_input_utf8\": \"{}\", \"salt\": \"{}\", \"psk\": \"{}\" }},",
            hex::encode(typed),
            hex::encode(input),
            hex::encode(salt),
            hex::encode(psk)
        );
    }
}

// ---- docs/vectors/messages.json: one encoded message of every type ----

/// Every message of the vectors file: (kind, name, message as JSON, the Rust value).
fn message_vectors() -> Vec<(&'static str, &'static str, Value)> {
    let event = |seq: u64, kind: RoomEventKind| RoomEvent {
        seq,
        time_ms: 1_700_000_000_000,
        kind,
    };
    let chat = event(
        1000,
        RoomEventKind::Message {
            from: "ana".into(),
            text: "hola, ¿qué tal?".into(),
            msg_id: 1,
            author: "0011223344556677".into(),
        },
    );
    let leave = event(
        1001,
        RoomEventKind::Leave {
            nick: "ben".into(),
            reason: LeaveReason::ConnectionLost,
        },
    );
    let client = [
        (
            "join",
            ClientMessage::Join {
                nick: "ana".into(),
                client_id: "00112233445566778899aabbccddeeff".into(),
                resume: None,
            },
        ),
        (
            "join with resume",
            ClientMessage::Join {
                nick: "ana".into(),
                client_id: "00112233445566778899aabbccddeeff".into(),
                resume: Some(Resume {
                    epoch: "000102030405060708090a0b0c0d0e0f".into(),
                    last_seq: 300,
                }),
            },
        ),
        (
            "say",
            ClientMessage::Say {
                id: 1,
                text: "hola, ¿qué tal?".into(),
            },
        ),
        ("ping", ClientMessage::Ping),
        ("typing", ClientMessage::Typing),
        ("leave", ClientMessage::Leave),
        (
            "older",
            ClientMessage::Older {
                before_seq: 1000,
                limit: 200,
            },
        ),
        (
            "file_offer",
            ClientMessage::FileOffer {
                upload_id: 1,
                name: "playa.png".into(),
                size: 100_000,
                mime: "image/png".into(),
                sha256: std::array::from_fn(|i| 0x80 + i as u8),
            },
        ),
        (
            "file_chunk",
            ClientMessage::FileChunk {
                upload_id: 1,
                offset: 61_440,
                data: b"\x89PNG".to_vec(),
            },
        ),
        ("file_cancel", ClientMessage::FileCancel { upload_id: 1 }),
        (
            "file_get",
            ClientMessage::FileGet {
                file_id: 0x1122_3344_5566_7788,
                offset: 0,
            },
        ),
        (
            "file_stop",
            ClientMessage::FileStop {
                file_id: 0x1122_3344_5566_7788,
            },
        ),
    ];
    let server = [
        (
            "welcome",
            ServerMessage::Welcome {
                nick: "ana".into(),
                epoch: "000102030405060708090a0b0c0d0e0f".into(),
                room_key: arr32(bytes(0x60, 32)),
                next_broadcast: 7,
                head_seq: 300,
                online: vec!["ana".into(), "ben".into()],
                acked_up_to: 0,
                resync: false,
                gap: true,
                resumed: false,
                oldest_seq: 1,
                send_window: 32,
            },
        ),
        (
            "more_online",
            ServerMessage::MoreOnline {
                online: vec!["cy".into()],
            },
        ),
        (
            "history",
            ServerMessage::History {
                events: vec![chat.clone(), leave.clone()],
            },
        ),
        (
            "older",
            ServerMessage::Older {
                before_seq: 1000,
                events: vec![event(999, RoomEventKind::Join { nick: "ana".into() })],
                more: true,
            },
        ),
        ("ack", ServerMessage::Ack { up_to: 1 }),
        (
            "nick_rejected",
            ServerMessage::NickRejected {
                nick: "ana".into(),
                reason: NickError::Taken,
            },
        ),
        (
            "message_rejected",
            ServerMessage::MessageRejected {
                id: 2,
                reason: MessageTextError::TooLong,
            },
        ),
        (
            "pong",
            ServerMessage::Pong {
                broadcast_next: 300,
            },
        ),
        ("unsupported", ServerMessage::Unsupported { what: 11 }),
        (
            "error",
            ServerMessage::Error {
                code: ErrorCode::Flood,
                message: "slow down".into(),
            },
        ),
        (
            "room_key",
            ServerMessage::RoomKey {
                room_key: std::array::from_fn(|i| 0x60 + i as u8),
                from_broadcast: 7,
            },
        ),
        (
            "file_accepted",
            ServerMessage::FileAccepted {
                upload_id: 1,
                have: 61_440,
                window: 16,
            },
        ),
        (
            "file_stored",
            ServerMessage::FileStored {
                upload_id: 1,
                have: 100_000,
            },
        ),
        (
            "file_refused",
            ServerMessage::FileRefused {
                upload_id: 2,
                reason: FileRefusal::TooLarge,
                message: "files up to 100 MiB".into(),
            },
        ),
        (
            "file_done",
            ServerMessage::FileDone {
                upload_id: 1,
                file_id: 0x1122_3344_5566_7788,
                seq: 1003,
            },
        ),
        (
            "file_begin",
            ServerMessage::FileBegin {
                file_id: 0x1122_3344_5566_7788,
                size: 100_000,
                offset: 0,
                key: std::array::from_fn(|i| 0xa0 + i as u8),
            },
        ),
        (
            "file_missing",
            ServerMessage::FileMissing {
                file_id: 9,
                reason: FileMissingReason::Gone,
            },
        ),
    ];
    let broadcast = [
        ("event: message", BroadcastMessage::Event(chat)),
        (
            "event: join",
            BroadcastMessage::Event(event(1002, RoomEventKind::Join { nick: "cy".into() })),
        ),
        ("event: leave", BroadcastMessage::Event(leave)),
        (
            "event: file",
            BroadcastMessage::Event(event(
                1003,
                RoomEventKind::File {
                    from: "ana".into(),
                    file_id: 0x1122_3344_5566_7788,
                    name: "playa.png".into(),
                    size: 100_000,
                    mime: "image/png".into(),
                    sha256: std::array::from_fn(|i| 0x80 + i as u8),
                    upload_id: 1,
                    author: "0011223344556677".into(),
                },
            )),
        ),
        ("typing", BroadcastMessage::Typing { nick: "ana".into() }),
    ];
    let json = |v: &dyn erased::Json| v.json();
    let mut all = Vec::new();
    all.extend(client.iter().map(|(n, m)| ("client", *n, json(m))));
    all.extend(server.iter().map(|(n, m)| ("server", *n, json(m))));
    all.extend(broadcast.iter().map(|(n, m)| ("broadcast", *n, json(m))));
    all
}

mod erased {
    pub trait Json {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("json")
        }
    }
}

/// Encode a message given as JSON (its kind says which), and decode bytes back to JSON.
fn encode_as(kind: &str, value: &Value) -> Vec<u8> {
    match kind {
        "client" => {
            encode(&serde_json::from_value::<ClientMessage>(value.clone()).expect("client"))
        }
        "server" => {
            encode(&serde_json::from_value::<ServerMessage>(value.clone()).expect("server"))
        }
        "broadcast" => {
            encode(&serde_json::from_value::<BroadcastMessage>(value.clone()).expect("broadcast"))
        }
        other => panic!("kind {other}"),
    }
    .expect("encode")
}

/// Check what a reader of this version makes of `bytes`: the message `expected` describes as
/// JSON, or what it does with one of a type it does not know (`{"unsupported": N}` for a client
/// message, `"ignored"` for the others).
fn check_reads(kind: &str, bytes: &[u8], expected: &Value) {
    let ignored = expected == &json!("ignored");
    match kind {
        "client" => {
            let got = decode_client_message(bytes).expect("client message");
            match expected["unsupported"].as_u64() {
                Some(what) => assert_eq!(got, ClientMessage::Unsupported { what }),
                None => assert_eq!(
                    got,
                    serde_json::from_value(expected.clone()).expect("value")
                ),
            }
        }
        "server" => {
            let got = decode_server_message(bytes).expect("server message");
            match ignored {
                true => assert_eq!(got, ServerMessage::Unknown),
                false => assert_eq!(
                    got,
                    serde_json::from_value(expected.clone()).expect("value")
                ),
            }
        }
        "broadcast" => {
            let got = decode_broadcast_message(bytes).expect("broadcast");
            match ignored {
                true => assert_eq!(got, BroadcastMessage::Unknown),
                false => assert_eq!(
                    got,
                    serde_json::from_value(expected.clone()).expect("value")
                ),
            }
        }
        other => panic!("kind {other}"),
    }
}

/// Messages of a newer version: (kind, what it is, hex, what this version reads).
fn forward_vectors() -> Vec<(&'static str, &'static str, String, Value)> {
    let ack = encode(&ServerMessage::Ack { up_to: 1 }).expect("ack");
    let join = RoomEvent {
        seq: 5,
        time_ms: 0,
        kind: RoomEventKind::Join { nick: "ana".into() },
    };
    let mut grown_event = encode(&join).expect("event");
    grown_event.extend_from_slice(&[0x01, 0x02]);
    let mut history = vec![2, 1, grown_event.len() as u8];
    history.extend_from_slice(&grown_event);
    vec![
        (
            "client",
            "type 11, unknown to this version, with fields",
            "0b03f09f918d".into(),
            json!({ "unsupported": 11 }),
        ),
        (
            "client",
            "type 300 (a two-byte varint)",
            "ac02".into(),
            json!({ "unsupported": 300 }),
        ),
        (
            "client",
            "ping with two bytes appended",
            "020102".into(),
            json!("ping"),
        ),
        (
            "server",
            "type 17, unknown to this version",
            "1100".into(),
            json!("ignored"),
        ),
        (
            "server",
            "type 2^32, beyond 32 bits",
            "8080808010".into(),
            json!("ignored"),
        ),
        (
            "server",
            "ack with a field appended",
            hex::encode([&ack[..], &[0x05, 0x2a]].concat()),
            serde_json::to_value(ServerMessage::Ack { up_to: 1 }).expect("json"),
        ),
        (
            "server",
            "history whose event has a field appended",
            hex::encode(&history),
            serde_json::to_value(ServerMessage::History { events: vec![join] }).expect("json"),
        ),
        (
            "broadcast",
            "type 2, unknown to this version",
            "02".into(),
            json!("ignored"),
        ),
        (
            "broadcast",
            "leave with reason 3, unknown to this version: reason other",
            "000500020361 6e6103".replace(' ', ""),
            json!({"event": {"seq": 5, "time_ms": 0, "kind": {"leave": {"nick": "ana", "reason": "other"}}}}),
        ),
        (
            "broadcast",
            "event of kind 4, unknown to this version: kind other, not shown",
            "00050004ffff".into(),
            json!({"event": {"seq": 5, "time_ms": 0, "kind": "other"}}),
        ),
    ]
}

fn compute_messages() -> Value {
    let messages: Vec<Value> = message_vectors()
        .into_iter()
        .map(|(kind, name, value)| {
            let bytes = encode_as(kind, &value);
            json!({
                "kind": kind,
                "name": name,
                "type": bytes[0],
                "hex": hex::encode(&bytes),
                "value": value,
            })
        })
        .collect();
    let newer: Vec<Value> = forward_vectors()
        .into_iter()
        .map(|(kind, name, hex, reads_as)| {
            json!({ "kind": kind, "name": name, "hex": hex, "reads_as": reads_as })
        })
        .collect();
    json!({
        "about": "Protocol version 2 message plaintexts (docs/PROTOCOL.md §6): postcard, varint(type) then the fields in order. `value` is the message as JSON (externally tagged: {\"type name\": {fields}}, or \"type name\" alone when it has no fields; room_key as its 32 byte values). `newer` holds messages of a newer version and what this version reads from them: {\"unsupported\": N} (a client message, answered with unsupported), \"ignored\" (a server or broadcast message), or the known message without the appended bytes.",
        "messages": messages,
        "newer": newer,
    })
}

fn stored_messages() -> Value {
    serde_json::from_str(include_str!("../../docs/vectors/messages.json"))
        .expect("docs/vectors/messages.json is JSON")
}

#[test]
fn message_vectors_encode_to_the_exact_bytes_and_decode_back() {
    let stored = stored_messages();
    let computed = compute_messages();
    assert_eq!(
        computed,
        stored,
        "computed:\n{}",
        serde_json::to_string_pretty(&computed).unwrap_or_default()
    );
    // Independently of how the file was made: every entry, read from the file alone.
    let mut types: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for v in stored["messages"].as_array().expect("messages") {
        let kind = v["kind"].as_str().expect("kind");
        let bytes = hex::decode(v["hex"].as_str().expect("hex")).expect("hex");
        assert_eq!(encode_as(kind, &v["value"]), bytes, "{v}");
        check_reads(kind, &bytes, &v["value"]);
        assert_eq!(u64::from(bytes[0]), v["type"].as_u64().expect("type"));
        types.entry(kind).or_default().push(u64::from(bytes[0]));
    }
    for (kind, count) in [("client", 11), ("server", 17), ("broadcast", 2)] {
        let mut seen = types[kind].clone();
        seen.dedup();
        assert_eq!(
            seen,
            (0..count).collect::<Vec<_>>(),
            "every {kind} type, in order"
        );
    }
    for v in stored["newer"].as_array().expect("newer") {
        let kind = v["kind"].as_str().expect("kind");
        let bytes = hex::decode(v["hex"].as_str().expect("hex")).expect("hex");
        check_reads(kind, &bytes, &v["reads_as"]);
    }
}

#[test]
#[ignore = "prints docs/vectors/messages.json; run with --ignored to regenerate it"]
fn print_message_vectors() {
    println!(
        "{}",
        serde_json::to_string_pretty(&compute_messages()).unwrap_or_default()
    );
}

/// The size on the wire of a broadcast chat message with 128 bytes of text and a 3-letter
/// nickname (issue #13: about 260 bytes in version 1, as JSON).
#[test]
fn a_broadcast_chat_message_is_much_smaller_than_in_version_1() {
    let text = "x".repeat(128);
    let event = RoomEvent {
        seq: 12_345,
        time_ms: 1_700_000_000_000,
        kind: RoomEventKind::Message {
            from: "ana".into(),
            text: text.clone(),
            msg_id: 42,
            author: "0011223344556677".into(),
        },
    };
    let frame = BroadcastSealer::new(&[1; 32], 99)
        .seal(&encode(&BroadcastMessage::Event(event)).expect("encode"))
        .expect("seal");
    // Version 1's plaintext of the same event.
    let v1 = json!({"type": "event", "seq": 12_345, "time_ms": 1_700_000_000_000u64,
        "kind": "message", "from": "ana", "text": text, "msg_id": 42,
        "author": "0011223344556677"});
    let v1_plaintext = serde_json::to_vec(&v1).expect("json").len();
    let v1_frame = 5 + 8 + v1_plaintext + 16;
    println!(
        "broadcast chat message, 128 bytes of text, 3-letter nick: {} bytes on the wire, plaintext {} \
         (version 1: {v1_frame}, plaintext {v1_plaintext})",
        frame.len(),
        frame.len() - 5 - 8 - 16
    );
    assert_eq!(frame.len(), 191);
    assert!(v1_frame >= 250, "{v1_frame}");
}
