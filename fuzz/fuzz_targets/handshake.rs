//! The version-2 handshake (SPAKE2 + Noise NXpsk2) fed hostile bytes on either side: an
//! arbitrary `HandshakeInit` to the server, a genuine init with fuzzer-chosen corruption, and
//! an arbitrary `HandshakeResponse` to the client. Never panics; a corrupted response never
//! authenticates; a genuine exchange always yields matching session keys and the host key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tertulia_core::handshake::{client_start_with, server_respond_with};
use tertulia_core::identity::HostKey;
use x25519_dalek::StaticSecret;

const W: [u8; 32] = [7; 32];
const HELLO: &[u8] = b"TRTL\x02\x02fuzz salt 16 by";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let host = HostKey::from_bytes([3u8; 32]);
    let client = || client_start_with(&W, HELLO, [1u8; 64], StaticSecret::from([1u8; 32]));
    let server = |init: &[u8]| {
        server_respond_with(&W, &host, HELLO, init, [2u8; 64], StaticSecret::from([2u8; 32]))
    };
    match mode % 3 {
        // Arbitrary init to the server.
        0 => {
            let _ = server(rest);
        }
        // A genuine init, corrupted at fuzzer-chosen bytes (or truncated): the client never
        // accepts the server's answer to it.
        1 => {
            let (awaiting, mut init) = client().expect("init");
            let original = init.clone();
            for pair in rest.chunks(2) {
                if let [pos, xor] = pair {
                    let i = *pos as usize % init.len();
                    init[i] ^= xor;
                } else if let [cut] = pair {
                    init.truncate(*cut as usize % (init.len() + 1));
                }
            }
            match server(&init) {
                Ok((keys, response)) => {
                    let done = awaiting.read_response(&response);
                    if init != original {
                        assert!(done.is_err(), "a corrupted init completed");
                    } else {
                        let done = done.expect("genuine exchange");
                        assert_eq!(done.keys.handshake_hash, keys.handshake_hash);
                        assert_eq!(done.host, host.public());
                    }
                }
                Err(_) => assert_ne!(init, original, "a genuine init refused"),
            }
        }
        // A genuine init; the fuzzer plays the server's response.
        _ => {
            let (awaiting, init) = client().expect("init");
            let (keys, genuine) = server(&init).expect("genuine");
            match awaiting.read_response(rest) {
                Ok(done) => {
                    assert_eq!(rest, &genuine[..], "a forged response authenticated");
                    assert_eq!(done.keys.handshake_hash, keys.handshake_hash);
                }
                Err(_) => assert_ne!(rest, &genuine[..]),
            }
        }
    }
});
