//! Property tests of the public protocol surface: framing round trips under any chunking, and
//! sealed messages round trips with tampering detected. (Exactly-once delivery through the
//! outbox and the server's dedupe is a property test next to the outbox, `client/outbox.rs`.)

use proptest::prelude::*;
use tertulia_core::cipher::CipherState;
use tertulia_core::frame::{self, FrameKind, MAX_BODY};
use tertulia_core::message::{ClientMessage, ServerMessage};
use tertulia_core::sealed;

fn kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        Just(FrameKind::Hello),
        Just(FrameKind::HandshakeInit),
        Just(FrameKind::HandshakeResponse),
        Just(FrameKind::Session),
        Just(FrameKind::Broadcast),
        Just(FrameKind::Reject),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Frames written back to back and read in arbitrary chunks come out as they went in.
    #[test]
    fn frames_round_trip_under_any_chunking(
        frames in prop::collection::vec((kind(), prop::collection::vec(any::<u8>(), 0..600)), 1..12),
        cuts in prop::collection::vec(1usize..700, 1..40),
    ) {
        let mut wire = Vec::new();
        for (kind, body) in &frames {
            frame::encode_into(&mut wire, *kind, body);
        }
        // Feed the bytes in chunks, decoding whatever is complete, like the socket reader.
        let mut buffered: Vec<u8> = Vec::new();
        let mut decoded = Vec::new();
        let mut offset = 0;
        let mut cut = cuts.iter().cycle();
        while offset < wire.len() {
            let take = (*cut.next().unwrap()).min(wire.len() - offset);
            buffered.extend_from_slice(&wire[offset..offset + take]);
            offset += take;
            while let Some((f, used)) = frame::decode(&buffered, MAX_BODY).unwrap() {
                decoded.push((f.kind, f.body.to_vec()));
                buffered.drain(..used);
            }
        }
        prop_assert!(buffered.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    /// Arbitrary bytes never panic the decoder, and a decoded frame never claims more than it has.
    #[test]
    fn decoding_arbitrary_bytes_is_safe(bytes in prop::collection::vec(any::<u8>(), 0..2048), limit in 0usize..4096) {
        if let Ok(Some((f, used))) = frame::decode(&bytes, limit) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(used, frame::HEADER_LEN + f.body.len());
            prop_assert!(f.body.len() <= limit);
        }
    }

    /// Any chat text survives sealing and opening; any single flipped bit is detected.
    #[test]
    fn sealed_messages_round_trip_and_tampering_is_detected(
        text in "\\PC{0,300}",
        id in any::<u64>(),
        key in any::<[u8; 32]>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let message = ClientMessage::Say { id, text };
        let mut tx = CipherState::new(&key);
        let mut rx = CipherState::new(&key);
        let mut wire = Vec::new();
        sealed::seal_session(&mut tx, &message, &mut wire).unwrap();
        let opened: ClientMessage = sealed::open_session(&mut rx, &wire[frame::HEADER_LEN..]).unwrap();
        prop_assert_eq!(&opened, &message);

        let mut tampered = wire.clone();
        let bit = flip.index(tampered.len() * 8);
        if bit >= frame::HEADER_LEN * 8 {
            tampered[bit / 8] ^= 1 << (bit % 8);
            let mut tx = CipherState::new(&key);
            let mut rx = CipherState::new(&key);
            let mut again = Vec::new();
            sealed::seal_session(&mut tx, &message, &mut again).unwrap();
            prop_assert_eq!(&again, &wire);
            let result: Result<ServerMessage, _> = sealed::open_session(&mut rx, &tampered[frame::HEADER_LEN..]);
            prop_assert!(result.is_err());
        }
    }
}
