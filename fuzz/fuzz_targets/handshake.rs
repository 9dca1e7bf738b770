//! The Noise NNpsk0 handshake state machine fed hostile bytes on either side: arbitrary
//! message 1 to the server, a genuine message 1 with fuzzer-chosen corruption, and arbitrary
//! message 2 to the client. Never panics; corrupted messages never authenticate; a genuine
//! exchange always yields matching session keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tertulia_core::handshake::{Initiator, Responder};
use x25519_dalek::StaticSecret;

const PSK: [u8; 32] = [7; 32];
const PROLOGUE: &[u8] = b"tertulia fuzz prologue";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let client_e = StaticSecret::from([1u8; 32]);
    let server_e = StaticSecret::from([2u8; 32]);
    match mode % 3 {
        // Arbitrary message 1 to the server.
        0 => {
            let responder = Responder::with_ephemeral(&PSK, PROLOGUE, server_e);
            if let Ok((ready, _payload)) = responder.read_message(rest) {
                let _ = ready.write_message(b"");
            }
        }
        // A genuine message 1, then corrupted at fuzzer-chosen bytes (or truncated).
        1 => {
            let (_, mut msg1) = Initiator::with_ephemeral(&PSK, PROLOGUE, client_e)
                .write_message(b"hello")
                .expect("message 1");
            let original = msg1.clone();
            for pair in rest.chunks(2) {
                if let [pos, xor] = pair {
                    let i = *pos as usize % msg1.len();
                    msg1[i] ^= xor;
                } else if let [cut] = pair {
                    msg1.truncate(*cut as usize % (msg1.len() + 1));
                }
            }
            let responder = Responder::with_ephemeral(&PSK, PROLOGUE, server_e);
            let result = responder.read_message(&msg1);
            if msg1 != original {
                assert!(result.is_err(), "a corrupted message 1 authenticated");
            } else {
                let (_, payload) = result.expect("genuine message 1");
                assert_eq!(payload, b"hello");
            }
        }
        // A genuine message 1; the fuzzer plays the server's message 2.
        _ => {
            let (awaiting, msg1) = Initiator::with_ephemeral(&PSK, PROLOGUE, client_e)
                .write_message(b"")
                .expect("message 1");
            let genuine = Responder::with_ephemeral(&PSK, PROLOGUE, server_e)
                .read_message(&msg1)
                .expect("genuine")
                .0
                .write_message(b"")
                .expect("message 2");
            match awaiting.read_message(rest) {
                Ok((keys, _)) => {
                    // Only the genuine message 2 can authenticate.
                    assert_eq!(rest, &genuine.1[..], "a forged message 2 authenticated");
                    assert_eq!(keys.handshake_hash, genuine.0.handshake_hash);
                }
                Err(_) => assert_ne!(rest, &genuine.1[..]),
            }
        }
    }
});
