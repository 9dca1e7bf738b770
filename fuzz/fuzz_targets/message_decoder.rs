//! The message decoders: JSON of every message type from arbitrary bytes, and sealed session
//! and broadcast frames opened with a known key. Never panics; whatever decodes re-encodes to
//! something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tertulia_core::cipher::CipherState;
use tertulia_core::message::{BroadcastMessage, ClientMessage, ServerMessage};
use tertulia_core::sealed::{self, BroadcastOpener};

fn round_trips<T>(data: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&value).expect("encode");
        let back: T = serde_json::from_slice(&again).expect("decode what we encoded");
        assert_eq!(back, value);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<ClientMessage>(data);
    round_trips::<ServerMessage>(data);
    round_trips::<BroadcastMessage>(data);
    let key = [9u8; 32];
    let _ = sealed::open_session::<ClientMessage>(&mut CipherState::new(&key), data);
    let _ = BroadcastOpener::new(&key, 0).open::<BroadcastMessage>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tertulia_core::text::validate_message(text);
        let _ = tertulia_core::text::validate_nick(text);
    }
});
