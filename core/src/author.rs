//! Author tags: the mark a server puts on each chat message event so that its author, and only
//! its author, can tell the message is its own (`docs/PROTOCOL.md` §6, §7).
//!
//! `tag = hex(SHA-256("tertulia author tag v1" ‖ 0x00 ‖ client_id)[..8])`. The client id is
//! the client's secret, so others cannot compute a client's tag from what they see; the same
//! client always gets the same tag (its messages under two nicknames carry one tag).

use sha2::{Digest, Sha256};

const LABEL: &[u8] = b"tertulia author tag v1\0";
/// Bytes of the digest kept (16 hex digits).
pub const AUTHOR_TAG_BYTES: usize = 8;

/// The author tag of the client with secret id `client_id`.
pub fn author_tag(client_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(LABEL)
        .chain_update(client_id.as_bytes())
        .finalize();
    hex::encode(&digest[..AUTHOR_TAG_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_stable_and_per_client() {
        let a = author_tag("00112233445566778899aabbccddeeff");
        assert_eq!(a.len(), 2 * AUTHOR_TAG_BYTES);
        assert_eq!(a, author_tag("00112233445566778899aabbccddeeff"));
        assert_ne!(a, author_tag("00112233445566778899aabbccddeefe"));
        assert!(!a.contains("0011"), "the id is not in its tag");
    }
}
