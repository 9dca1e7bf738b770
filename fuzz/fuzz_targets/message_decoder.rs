//! The message decoders (postcard, `docs/PROTOCOL.md` §6): every message kind from arbitrary
//! bytes, and sealed session and broadcast frames opened with a known key. Never panics;
//! whatever decodes as a known message re-encodes to something that decodes to the same value
//! (and is no longer than what was read: trailing bytes are dropped, never invented).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tertulia_core::cipher::CipherState;
use tertulia_core::message::{self, BroadcastMessage, ClientMessage, ServerMessage};
use tertulia_core::sealed::{self, BroadcastOpener};

/// Whatever decodes re-encodes, unless it holds a value this version never sends (an
/// unknown type, or an `Other` enum value), whose encoding must then fail cleanly.
fn round_trips<T>(data: &[u8], decoded: Result<T, postcard::Error>)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decoded {
        if let Ok(again) = message::encode(&value) {
            assert!(again.len() <= data.len(), "{value:?}");
            let back: T = message::decode(&again).expect("decode what we encoded");
            assert_eq!(back, value);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<ClientMessage>(data, message::decode_client_message(data));
    round_trips::<ServerMessage>(data, message::decode_server_message(data));
    round_trips::<BroadcastMessage>(data, message::decode_broadcast_message(data));
    let key = [9u8; 32];
    let _ = sealed::open_session::<ClientMessage>(&mut CipherState::new(&key), data);
    let _ = BroadcastOpener::new(&key, 0).open::<BroadcastMessage>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tertulia_core::text::validate_message(text);
        let _ = tertulia_core::text::validate_nick(text);
    }
});
