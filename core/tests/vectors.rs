//! Known-answer test vectors: fixed keys and nonces → exact bytes.
//!
//! `testdata/vectors.json` holds the expected values; `docs/PROTOCOL.md` quotes the same hex
//! strings (checked below), and the handshake bytes are reproduced independently with `snow`.

use serde_json::{json, Value};
use tertulia_core::cipher::CipherState;
use tertulia_core::handshake::{
    client_start_with, prologue, server_respond_with, FixedEntropy, NoiseResponder,
    SPAKE2_ID_CLIENT, SPAKE2_ID_SERVER, SPAKE2_LEN,
};
use tertulia_core::hello::hello_body;
use tertulia_core::identity::HostKey;
use tertulia_core::message::{
    BroadcastMessage, ClientMessage, RoomEvent, RoomEventKind, ServerMessage,
};
use tertulia_core::passphrase::derive_psk;
use tertulia_core::sealed::{seal_session, BroadcastSealer};
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
    let mut c2s = Vec::new();
    seal_session(&mut client.send, &join_message(), &mut c2s).expect("seal");
    let mut s2c = Vec::new();
    seal_session(&mut server.send, &ServerMessage::Ack { up_to: 1 }, &mut s2c).expect("seal");
    let event = BroadcastMessage::Event(RoomEvent {
        seq: 1,
        time_ms: 0,
        kind: RoomEventKind::Join { nick: "ana".into() },
    });
    let broadcast = BroadcastSealer::new(&i.broadcast_key, 7)
        .seal(&serde_json::to_vec(&event).expect("json"))
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
        "client_join_frame": hex::encode(&c2s),
        "server_ack_frame": hex::encode(&s2c),
        "broadcast_key": hex::encode(i.broadcast_key),
        "broadcast_counter": 7,
        "broadcast_frame": hex::encode(&broadcast),
    })
}

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
    let frame = hex_of("client_join_frame");
    let join: ClientMessage =
        tertulia_core::sealed::open_session(&mut server.recv, &frame[5..]).expect("open join");
    assert_eq!(join, join_message());
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
