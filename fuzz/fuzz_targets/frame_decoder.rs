//! The frame decoder on arbitrary bytes and limits: never panics, never claims more bytes than
//! it was given or a body over the limit, and decodes a buffer frame by frame consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tertulia_core::frame::{self, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&limit_byte, mut rest)) = data.split_first() else {
        return;
    };
    let limit = (limit_byte as usize) * 64;
    while let Ok(Some((f, used))) = frame::decode(rest, limit) {
        assert!(used <= rest.len());
        assert_eq!(used, HEADER_LEN + f.body.len());
        assert!(f.body.len() <= limit);
        // Re-encoding gives back exactly the bytes consumed.
        assert_eq!(frame::encode(f.kind, f.body), rest[..used]);
        rest = &rest[used..];
    }
    let _ = tertulia_core::hello::parse_hello(data);
});
