//! # Tertulia core
//!
//! The encrypted chat protocol, the room server and the reconnecting client. The protocol
//! itself is specified in `docs/PROTOCOL.md`; this crate follows it module by module.
//!
//! ## Layout
//! The protocol, one module per section of `docs/PROTOCOL.md` (pure: bytes in, bytes or
//! values out, no sockets):
//! - [`frame`]: the length-prefixed frame codec and its limits.
//! - [`hello`]: the plaintext `Hello`, the Noise prologue and `Reject` codes.
//! - [`cipher`]: ChaCha20-Poly1305 with counter nonces (Noise `CipherState`).
//! - [`handshake`]: SPAKE2 inside the Noise NXpsk2 handshake, as consuming state types.
//! - [`identity`]: the host's static key, its fingerprint, and the client's pins.
//! - [`passphrase`]: passphrase → room secret (Argon2id), generated passphrases.
//! - [`sealed`]: typed messages ↔ sealed session and broadcast frames.
//! - [`message`]: the typed chat messages (client, server, room events) and their numbers.
//! - [`text`]: nickname and message-text rules.
//! - [`files`]: file chunks sealed once per file, safe file names, image signatures.
//! - [`discovery`]: finding rooms on the LAN (DNS-SD over mDNS): the pure TXT record and
//!   checks, and a thin announcer/browser over the `mdns-sd` daemon.
//! - [`conn`]: the one I/O module of the protocol: frames and the handshake over a byte stream.
//!
//! The two sides:
//! - [`server`]: the room (membership, presence, history, fan-out, store) behind a TCP
//!   listener, one reader and one writer task per connection.
//! - [`client`]: the reconnecting client — a pure session state machine driven by one task —
//!   and the events it reports.
//!
//! Beside the protocol: [`portmap`], asking the home router (UPnP-IGD, PCP, NAT-PMP) to
//! forward a hosted room's port, so friends outside the LAN can join.

pub mod author;
pub mod cipher;
pub mod client;
pub mod conn;
pub mod discovery;
pub mod files;
pub mod frame;
pub mod handshake;
pub mod hello;
pub mod identity;
pub mod invite;
pub mod message;
pub mod passphrase;
pub mod portmap;
pub mod sealed;
pub mod secret;
pub mod server;
pub mod text;
