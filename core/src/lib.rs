//! # Tertulia core
//!
//! The encrypted chat protocol, the room server and the reconnecting client. The protocol
//! itself is specified in `docs/PROTOCOL.md`; this crate follows it module by module.
//!
//! ## Layout
//! Pure protocol logic (bytes in, bytes/events out, no sockets):
//! - [`frame`]: the length-prefixed frame codec and its limits.
//! - [`cipher`]: ChaCha20-Poly1305 with counter nonces (Noise `CipherState`).
//! - [`handshake`]: the Noise NNpsk0 handshake as consuming state types.
//! - [`passphrase`]: passphrase → pre-shared key (Argon2id), generated passphrases.
//! - [`sealed`]: typed messages ↔ sealed session and broadcast frames.
//! - [`message`]: the typed chat messages (client, server, room events).
//! - [`text`]: nickname and message-text rules.
//! - [`outbox`]: the client outbox and the server's duplicate suppression.
//! - [`backoff`]: reconnect delays.
//! - [`flood`]: the per-member message rate limit.
//! - [`addr`]: host-name checks and the interface addresses a host shares.
//! - [`fanout`]: the shared log of sealed broadcasts every member's writer sends from.
//! - [`room`]: membership, history, presence and fan-out of one room.
//! - [`store`]: the room's durable state in SQLite.
//!
//! I/O at the edges:
//! - [`conn`]: frame reading and the handshake over a byte stream.
//! - [`server`]: the TCP listener and per-connection handlers.
//! - [`client`]: the reconnecting client and the events it reports.

pub mod addr;
pub mod backoff;
pub mod cipher;
pub mod client;
pub mod conn;
pub mod fanout;
pub mod flood;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod outbox;
pub mod passphrase;
pub mod room;
pub mod roster;
pub mod sealed;
pub mod server;
pub mod store;
pub mod text;
