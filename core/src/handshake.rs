//! The version-2 handshake (`docs/PROTOCOL.md` §3), byte for byte: SPAKE2 on the room
//! secret `w`, whose key `K` is the PSK of `Noise_NXpsk2_25519_ChaChaPoly_SHA256` (Noise
//! rev 34), in which the server also proves its static identity key.
//!
//! ```text
//! HandshakeInit      C→S  version (2) ‖ SPAKE2 A (33) ‖ Noise msg 1 (-> e: 48)
//! HandshakeResponse  S→C  SPAKE2 B (33) ‖ Noise msg 2 (<- e, ee, s, es, psk: 96)
//! ```
//! No sockets here: each side is a value that consumes bytes and produces bytes; a state is
//! consumed to produce the next, so a message cannot be processed twice or out of order.
//! The Noise layer ([`NoiseInitiator`], [`NoiseResponder`]) is public so the tests check it
//! against `snow`; the protocol uses it through [`client_start`] and [`server_respond`].
//!
//! A wrong passphrase (or an active attacker) gives different SPAKE2 keys on the two sides:
//! the client's check of message 2 fails. The server learns it only from the missing key
//! confirmation (the client's first session frame), see `server::handler`.

use hkdf::Hkdf;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::cipher::{CipherState, CryptoError, Key, TAG_LEN};
use crate::hello::PROLOGUE_PREFIX;
use crate::identity::{HostKey, HostPublicKey};

/// The Noise protocol name; its SHA-256 initialises the handshake hash.
pub const PROTOCOL_NAME: &[u8] = b"Noise_NXpsk2_25519_ChaChaPoly_SHA256";
/// The protocol version whose handshake this is (first byte of `HandshakeInit`).
pub const VERSION: u8 = 2;
/// Bytes of a SPAKE2 message (side byte ‖ Ed25519 point).
pub const SPAKE2_LEN: usize = 33;
/// SPAKE2 identity of the client (side A).
pub const SPAKE2_ID_CLIENT: &[u8] = b"tertulia client";
/// SPAKE2 identity of the server (side B).
pub const SPAKE2_ID_SERVER: &[u8] = b"tertulia server";
/// Bytes of Noise message 1 with an empty payload (`e` ‖ tag).
pub const NOISE_MSG1_LEN: usize = DH_LEN + TAG_LEN;
/// Bytes of Noise message 2 with an empty payload (`e` ‖ sealed `s` ‖ tag).
pub const NOISE_MSG2_LEN: usize = DH_LEN + DH_LEN + TAG_LEN + TAG_LEN;
/// Bytes of an X25519 public key.
pub const DH_LEN: usize = 32;
/// Largest handshake payload this implementation sends or accepts.
pub const MAX_HANDSHAKE_PAYLOAD: usize = 256;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Message 1 or 2 did not authenticate: the peer uses a different passphrase (or the
    /// bytes were altered in transit).
    #[error("handshake authentication failed: wrong passphrase (or data altered in transit)")]
    AuthenticationFailed,
    #[error("handshake message has the wrong length")]
    BadLength,
    /// The peer's ephemeral key is a low-order point: the shared secret would be predictable.
    #[error("peer sent a degenerate public key")]
    WeakKey,
    /// The `HandshakeInit` names a protocol version this side does not speak.
    #[error("the client speaks protocol version {0}")]
    BadVersion(u8),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Session keys after a completed handshake, one per direction, plus the handshake hash.
/// `Debug` shows the (public) handshake hash and counters, never a key.
pub struct TransportKeys {
    pub send: CipherState,
    pub recv: CipherState,
    /// The final handshake hash `h`: a unique, public identifier of this session.
    pub handshake_hash: [u8; 32],
}

impl std::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportKeys")
            .field("send", &self.send)
            .field("recv", &self.recv)
            .field("handshake_hash", &hex::encode(self.handshake_hash))
            .finish()
    }
}

/// Noise `SymmetricState` (§5.2): chaining key, handshake hash and the optional cipher key.
struct SymmetricState {
    ck: [u8; 32],
    h: [u8; 32],
    k: Option<CipherState>,
}

impl SymmetricState {
    fn new(prologue: &[u8]) -> Self {
        // Protocol name longer than HASHLEN: h = HASH(name).
        let h: [u8; 32] = Sha256::digest(PROTOCOL_NAME).into();
        let mut state = Self { ck: h, h, k: None };
        state.mix_hash(prologue);
        state
    }

    fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    /// Noise `HKDF(ck, ikm, n)` for n = 3; n = 2 callers ignore the third output. The
    /// outputs are keys: wiped when dropped.
    fn hkdf3(&self, ikm: &[u8]) -> Zeroizing<[[u8; 32]; 3]> {
        let mut okm = Zeroizing::new([0u8; 96]);
        Hkdf::<Sha256>::new(Some(&self.ck), ikm)
            .expand(&[], &mut *okm)
            .unwrap_or_else(|_| unreachable!("96 bytes is within HKDF-SHA256's limit"));
        let mut out = Zeroizing::new([[0u8; 32]; 3]);
        for (part, chunk) in out.iter_mut().zip(okm.chunks_exact(32)) {
            part.copy_from_slice(chunk);
        }
        out
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let out = self.hkdf3(ikm);
        self.ck = out[0];
        self.k = Some(CipherState::new(&out[1]));
    }

    fn mix_key_and_hash(&mut self, ikm: &[u8]) {
        let out = self.hkdf3(ikm);
        self.ck = out[0];
        self.mix_hash(&out[1]);
        self.k = Some(CipherState::new(&out[2]));
    }

    fn encrypt_and_hash(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), HandshakeError> {
        let ct = match &mut self.k {
            Some(k) => k.seal(&self.h, plaintext)?,
            None => plaintext.to_vec(),
        };
        self.mix_hash(&ct);
        out.extend_from_slice(&ct);
        Ok(())
    }

    fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        let pt = match &mut self.k {
            Some(k) => k
                .open(&self.h, ciphertext)
                .map_err(|_| HandshakeError::AuthenticationFailed)?,
            None => ciphertext.to_vec(),
        };
        self.mix_hash(ciphertext);
        Ok(pt)
    }

    /// `Split()`: the first key protects initiator → responder, the second the reverse.
    fn split(&self) -> (CipherState, CipherState) {
        let out = self.hkdf3(&[]);
        (CipherState::new(&out[0]), CipherState::new(&out[1]))
    }
}

/// The chaining key is secret (it leads to every later key): wiped when the state goes.
impl Drop for SymmetricState {
    fn drop(&mut self) {
        self.ck.zeroize();
    }
}

fn dh(secret: &StaticSecret, public: &[u8]) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
    let public: [u8; 32] = public.try_into().map_err(|_| HandshakeError::BadLength)?;
    let shared = secret.diffie_hellman(&PublicKey::from(public));
    if !shared.was_contributory() {
        return Err(HandshakeError::WeakKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

fn check_len(message: &[u8], min: usize) -> Result<(), HandshakeError> {
    if !(min..=min + MAX_HANDSHAKE_PAYLOAD).contains(&message.len()) {
        return Err(HandshakeError::BadLength);
    }
    Ok(())
}

/// Handshake states hold keys: `Debug` names the state only.
macro_rules! opaque_debug {
    ($($state:ident),*) => {$(
        impl std::fmt::Debug for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($state), " { <secret> }"))
            }
        }
    )*};
}
opaque_debug!(
    NoiseInitiator,
    NoiseAwaiting,
    NoiseResponder,
    NoiseReady,
    ClientAwaiting
);

/// Noise NXpsk2, initiator, before message 1.
pub struct NoiseInitiator {
    state: SymmetricState,
    ephemeral: StaticSecret,
}

/// Noise NXpsk2, initiator, after message 1: the PSK is needed only to read message 2.
pub struct NoiseAwaiting {
    state: SymmetricState,
    ephemeral: StaticSecret,
}

impl NoiseInitiator {
    pub fn new(prologue: &[u8]) -> Self {
        Self::with_ephemeral(prologue, StaticSecret::random_from_rng(OsRng))
    }

    /// Fixed ephemeral key: only for known-answer test vectors.
    pub fn with_ephemeral(prologue: &[u8], ephemeral: StaticSecret) -> Self {
        Self {
            state: SymmetricState::new(prologue),
            ephemeral,
        }
    }

    /// Write message 1 (`-> e`) carrying `payload`.
    pub fn write_message(
        mut self,
        payload: &[u8],
    ) -> Result<(NoiseAwaiting, Vec<u8>), HandshakeError> {
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(HandshakeError::BadLength);
        }
        let e_pub = PublicKey::from(&self.ephemeral);
        let mut out = Vec::with_capacity(NOISE_MSG1_LEN + payload.len());
        out.extend_from_slice(e_pub.as_bytes());
        self.state.mix_hash(e_pub.as_bytes());
        self.state.mix_key(e_pub.as_bytes()); // PSK handshake: `e` also calls MixKey
        self.state.encrypt_and_hash(payload, &mut out)?;
        Ok((
            NoiseAwaiting {
                state: self.state,
                ephemeral: self.ephemeral,
            },
            out,
        ))
    }
}

impl NoiseAwaiting {
    /// Read message 2 (`<- e, ee, s, es, psk`); returns the session keys, the responder's
    /// static key and its payload. Fails unless the responder used the same `psk`.
    pub fn read_message(
        mut self,
        psk: &Key,
        message: &[u8],
    ) -> Result<(TransportKeys, [u8; 32], Vec<u8>), HandshakeError> {
        check_len(message, NOISE_MSG2_LEN)?;
        let (re, rest) = message.split_at(DH_LEN);
        self.state.mix_hash(re);
        self.state.mix_key(re);
        let ee = dh(&self.ephemeral, re)?;
        self.state.mix_key(&ee[..]);
        let (sealed_s, rest) = rest.split_at(DH_LEN + TAG_LEN);
        let rs = self.state.decrypt_and_hash(sealed_s)?;
        let rs: [u8; 32] = rs.try_into().map_err(|_| HandshakeError::BadLength)?;
        let es = dh(&self.ephemeral, &rs)?;
        self.state.mix_key(&es[..]);
        self.state.mix_key_and_hash(psk);
        let payload = self.state.decrypt_and_hash(rest)?;
        let (send, recv) = self.state.split();
        let keys = TransportKeys {
            send,
            recv,
            handshake_hash: self.state.h,
        };
        Ok((keys, rs, payload))
    }
}

/// Noise NXpsk2, responder (the server, with its static key), before message 1.
pub struct NoiseResponder {
    state: SymmetricState,
    psk: Zeroizing<Key>,
    static_key: StaticSecret,
    ephemeral: StaticSecret,
}

impl NoiseResponder {
    pub fn new(psk: &Key, prologue: &[u8], static_key: &StaticSecret) -> Self {
        Self::with_ephemeral(
            psk,
            prologue,
            static_key,
            StaticSecret::random_from_rng(OsRng),
        )
    }

    /// Fixed ephemeral key: only for known-answer test vectors.
    pub fn with_ephemeral(
        psk: &Key,
        prologue: &[u8],
        static_key: &StaticSecret,
        ephemeral: StaticSecret,
    ) -> Self {
        Self {
            state: SymmetricState::new(prologue),
            psk: Zeroizing::new(*psk),
            static_key: static_key.clone(),
            ephemeral,
        }
    }

    /// Read message 1 (`-> e`); returns the ready responder and the client's payload.
    pub fn read_message(mut self, message: &[u8]) -> Result<(NoiseReady, Vec<u8>), HandshakeError> {
        check_len(message, NOISE_MSG1_LEN)?;
        let (re, rest) = message.split_at(DH_LEN);
        self.state.mix_hash(re);
        self.state.mix_key(re);
        let payload = self.state.decrypt_and_hash(rest)?;
        let remote: [u8; 32] = re.try_into().map_err(|_| HandshakeError::BadLength)?;
        Ok((
            NoiseReady {
                inner: self,
                remote,
            },
            payload,
        ))
    }
}

/// Noise NXpsk2, responder, after message 1.
pub struct NoiseReady {
    inner: NoiseResponder,
    remote: [u8; 32],
}

impl NoiseReady {
    /// Write message 2 (`<- e, ee, s, es, psk`) with `payload`; returns the session keys and
    /// the bytes to send.
    pub fn write_message(self, payload: &[u8]) -> Result<(TransportKeys, Vec<u8>), HandshakeError> {
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(HandshakeError::BadLength);
        }
        let NoiseReady { inner, remote } = self;
        let NoiseResponder {
            mut state,
            psk,
            static_key,
            ephemeral,
        } = inner;
        let e_pub = PublicKey::from(&ephemeral);
        let mut out = Vec::with_capacity(NOISE_MSG2_LEN + payload.len());
        out.extend_from_slice(e_pub.as_bytes());
        state.mix_hash(e_pub.as_bytes());
        state.mix_key(e_pub.as_bytes());
        let ee = dh(&ephemeral, &remote)?;
        state.mix_key(&ee[..]);
        let s_pub = PublicKey::from(&static_key);
        state.encrypt_and_hash(s_pub.as_bytes(), &mut out)?;
        let es = dh(&static_key, &remote)?;
        state.mix_key(&es[..]);
        state.mix_key_and_hash(&psk[..]);
        state.encrypt_and_hash(payload, &mut out)?;
        let (recv, send) = state.split();
        let keys = TransportKeys {
            send,
            recv,
            handshake_hash: state.h,
        };
        Ok((keys, out))
    }
}

/// The Noise prologue of version 2: `"tertulia/2\n" ‖ Hello body ‖ version ‖ SPAKE2 A`.
pub fn prologue(hello_body: &[u8], version: u8, spake_a: &[u8]) -> Vec<u8> {
    [PROLOGUE_PREFIX, hello_body, &[version], spake_a].concat()
}

/// A byte stream given in advance, as the randomness of a SPAKE2 side: only for known-answer
/// test vectors (the scalar is these 64 bytes, little-endian, reduced mod the group order).
pub struct FixedEntropy {
    bytes: Zeroizing<[u8; 64]>,
    used: usize,
}

impl FixedEntropy {
    pub fn new(bytes: [u8; 64]) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
            used: 0,
        }
    }
}

impl rand::RngCore for FixedEntropy {
    fn next_u32(&mut self) -> u32 {
        rand_core_next_u32(self)
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) << 32 | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            // Past the given bytes the stream repeats: a vector never reads that far.
            *byte = self.bytes[self.used % 64];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn rand_core_next_u32(rng: &mut FixedEntropy) -> u32 {
    let mut b = [0u8; 4];
    rand::RngCore::fill_bytes(rng, &mut b);
    u32::from_le_bytes(b)
}

impl rand::CryptoRng for FixedEntropy {}

type Spake = spake2::Spake2<spake2::Ed25519Group>;

fn spake_ids() -> (spake2::Identity, spake2::Identity) {
    (
        spake2::Identity::new(SPAKE2_ID_CLIENT),
        spake2::Identity::new(SPAKE2_ID_SERVER),
    )
}

/// The SPAKE2 key as the Noise PSK. Any SPAKE2 failure (not a point, wrong side byte) is an
/// authentication failure: an honest peer never sends such a message.
fn spake_finish(spake: Spake, peer: &[u8]) -> Result<Zeroizing<Key>, HandshakeError> {
    let key = Zeroizing::new(
        spake
            .finish(peer)
            .map_err(|_| HandshakeError::AuthenticationFailed)?,
    );
    let mut psk = Zeroizing::new([0u8; 32]);
    if key.len() != psk.len() {
        return Err(HandshakeError::AuthenticationFailed);
    }
    psk.copy_from_slice(&key);
    Ok(psk)
}

/// The client after sending `HandshakeInit`, waiting for `HandshakeResponse`.
pub struct ClientAwaiting {
    spake: Spake,
    noise: NoiseAwaiting,
}

/// A completed handshake on the client: session keys and the identity the host proved.
#[derive(Debug)]
pub struct ClientDone {
    pub keys: TransportKeys,
    pub host: HostPublicKey,
}

/// Client: start the handshake with room secret `w` after the Hello `hello_body`; returns the
/// `HandshakeInit` body.
pub fn client_start(
    w: &Key,
    hello_body: &[u8],
) -> Result<(ClientAwaiting, Vec<u8>), HandshakeError> {
    let (id_a, id_b) = spake_ids();
    let (spake, a) = Spake::start_a(&spake2::Password::new(w), &id_a, &id_b);
    client_continue(spake, a, hello_body, NoiseInitiator::new)
}

/// [`client_start`] with fixed randomness: only for known-answer test vectors.
pub fn client_start_with(
    w: &Key,
    hello_body: &[u8],
    spake_entropy: [u8; 64],
    ephemeral: StaticSecret,
) -> Result<(ClientAwaiting, Vec<u8>), HandshakeError> {
    let (id_a, id_b) = spake_ids();
    let (spake, a) = Spake::start_a_with_rng(
        &spake2::Password::new(w),
        &id_a,
        &id_b,
        FixedEntropy::new(spake_entropy),
    );
    client_continue(spake, a, hello_body, |p| {
        NoiseInitiator::with_ephemeral(p, ephemeral)
    })
}

fn client_continue(
    spake: Spake,
    a: Vec<u8>,
    hello_body: &[u8],
    noise: impl FnOnce(&[u8]) -> NoiseInitiator,
) -> Result<(ClientAwaiting, Vec<u8>), HandshakeError> {
    let (noise, msg1) = noise(&prologue(hello_body, VERSION, &a)).write_message(&[])?;
    let mut init = Vec::with_capacity(1 + a.len() + msg1.len());
    init.push(VERSION);
    init.extend_from_slice(&a);
    init.extend_from_slice(&msg1);
    Ok((ClientAwaiting { spake, noise }, init))
}

impl ClientAwaiting {
    /// Read the `HandshakeResponse` body. [`HandshakeError::AuthenticationFailed`]: the
    /// SPAKE2 keys differ — a wrong passphrase, or someone in the middle; the client cannot
    /// tell which.
    pub fn read_response(self, body: &[u8]) -> Result<ClientDone, HandshakeError> {
        if body.len() < SPAKE2_LEN + NOISE_MSG2_LEN {
            return Err(HandshakeError::BadLength);
        }
        let (b, msg2) = body.split_at(SPAKE2_LEN);
        let psk = spake_finish(self.spake, b)?;
        let (keys, host, _payload) = self.noise.read_message(&psk, msg2)?;
        Ok(ClientDone {
            keys,
            host: HostPublicKey(host),
        })
    }
}

/// Server: answer the `HandshakeInit` body `init` for the room secret `w`, as the host
/// `host_key`, after the Hello `hello_body`. Returns the session keys (unconfirmed until the
/// client's first session frame opens) and the `HandshakeResponse` body.
pub fn server_respond(
    w: &Key,
    host_key: &HostKey,
    hello_body: &[u8],
    init: &[u8],
) -> Result<(TransportKeys, Vec<u8>), HandshakeError> {
    let (id_a, id_b) = spake_ids();
    let a = check_init(init)?;
    let (spake, b) = Spake::start_b(&spake2::Password::new(w), &id_a, &id_b);
    server_continue(spake, b, a, hello_body, init, |psk, p| {
        NoiseResponder::new(psk, p, host_key.secret())
    })
}

/// [`server_respond`] with fixed randomness: only for known-answer test vectors.
pub fn server_respond_with(
    w: &Key,
    host_key: &HostKey,
    hello_body: &[u8],
    init: &[u8],
    spake_entropy: [u8; 64],
    ephemeral: StaticSecret,
) -> Result<(TransportKeys, Vec<u8>), HandshakeError> {
    let (id_a, id_b) = spake_ids();
    let a = check_init(init)?;
    let (spake, b) = Spake::start_b_with_rng(
        &spake2::Password::new(w),
        &id_a,
        &id_b,
        FixedEntropy::new(spake_entropy),
    );
    server_continue(spake, b, a, hello_body, init, |psk, p| {
        NoiseResponder::with_ephemeral(psk, p, host_key.secret(), ephemeral)
    })
}

/// The version and length of a `HandshakeInit`; returns SPAKE2 message A.
fn check_init(init: &[u8]) -> Result<&[u8], HandshakeError> {
    match init.first() {
        None => return Err(HandshakeError::BadLength),
        Some(&v) if v != VERSION => return Err(HandshakeError::BadVersion(v)),
        Some(_) => {}
    }
    if init.len() < 1 + SPAKE2_LEN + NOISE_MSG1_LEN {
        return Err(HandshakeError::BadLength);
    }
    Ok(&init[1..1 + SPAKE2_LEN])
}

fn server_continue(
    spake: Spake,
    b: Vec<u8>,
    a: &[u8],
    hello_body: &[u8],
    init: &[u8],
    noise: impl FnOnce(&Key, &[u8]) -> NoiseResponder,
) -> Result<(TransportKeys, Vec<u8>), HandshakeError> {
    // A that is not a point (or not side A) cannot come from any client: malformed.
    let psk = spake.finish(a).map_err(|_| HandshakeError::BadLength)?;
    let psk: Zeroizing<Key> = Zeroizing::new(
        psk.as_slice()
            .try_into()
            .map_err(|_| HandshakeError::BadLength)?,
    );
    let msg1 = &init[1 + SPAKE2_LEN..];
    let responder = noise(&psk, &prologue(hello_body, VERSION, a));
    let (ready, _payload) = responder.read_message(msg1)?;
    let (keys, msg2) = ready.write_message(&[])?;
    let mut response = Vec::with_capacity(b.len() + msg2.len());
    response.extend_from_slice(&b);
    response.extend_from_slice(&msg2);
    Ok((keys, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Key = [7u8; 32];
    const PSK: Key = [3u8; 32];
    const PROLOGUE: &[u8] = b"tertulia/2 test";
    const HELLO: &[u8] = b"TRTL\x02\x020123456789abcdef";

    fn host() -> HostKey {
        HostKey::from_bytes([0x44; 32])
    }

    fn snow_params() -> snow::params::NoiseParams {
        "Noise_NXpsk2_25519_ChaChaPoly_SHA256"
            .parse()
            .expect("valid noise params")
    }

    fn secret(byte: u8) -> StaticSecret {
        StaticSecret::from([byte; 32])
    }

    #[test]
    fn both_sides_agree_and_the_client_learns_the_host_key() {
        let (waiting, init) = client_start(&W, HELLO).unwrap();
        assert_eq!(init.len(), 1 + SPAKE2_LEN + NOISE_MSG1_LEN);
        assert_eq!(init[0], VERSION);
        assert_eq!(init[1], b'A');
        let (mut server, response) = server_respond(&W, &host(), HELLO, &init).unwrap();
        assert_eq!(response.len(), SPAKE2_LEN + NOISE_MSG2_LEN);
        assert_eq!(response[0], b'B');
        let mut client = waiting.read_response(&response).unwrap();
        assert_eq!(client.host, host().public());
        assert_eq!(client.keys.handshake_hash, server.handshake_hash);
        let ct = client.keys.send.seal(b"", b"to server").unwrap();
        assert_eq!(server.recv.open(b"", &ct).unwrap(), b"to server");
        let ct = server.send.seal(b"", b"to client").unwrap();
        assert_eq!(client.keys.recv.open(b"", &ct).unwrap(), b"to client");
    }

    #[test]
    fn a_wrong_secret_fails_on_the_client_and_the_server_cannot_tell() {
        let (waiting, init) = client_start(&[8u8; 32], HELLO).unwrap();
        // The server answers normally: nothing in message 1 depends on the secret.
        let (_, response) = server_respond(&W, &host(), HELLO, &init).unwrap();
        assert_eq!(
            waiting.read_response(&response).err(),
            Some(HandshakeError::AuthenticationFailed)
        );
    }

    #[test]
    fn anything_altered_fails() {
        // Another Hello (salt, versions) on the two sides.
        // (Message 1's tag covers the prologue: the server refuses it already.)
        let (_, init) = client_start(&W, HELLO).unwrap();
        assert_eq!(
            server_respond(&W, &host(), b"TRTL\x02\x02other salt......", &init).err(),
            Some(HandshakeError::AuthenticationFailed)
        );
        // Any byte of the init or the response.
        for at in 1..1 + SPAKE2_LEN + NOISE_MSG1_LEN {
            let (waiting, mut init) = client_start(&W, HELLO).unwrap();
            init[at] ^= 0x01;
            if let Ok((_, response)) = server_respond(&W, &host(), HELLO, &init) {
                assert!(waiting.read_response(&response).is_err(), "init byte {at}");
            }
        }
        for at in 0..SPAKE2_LEN + NOISE_MSG2_LEN {
            let (waiting, init) = client_start(&W, HELLO).unwrap();
            let (_, mut response) = server_respond(&W, &host(), HELLO, &init).unwrap();
            response[at] ^= 0x01;
            assert!(
                waiting.read_response(&response).is_err(),
                "response byte {at}"
            );
        }
    }

    #[test]
    fn versions_lengths_and_weak_keys_are_refused() {
        let (_, mut init) = client_start(&W, HELLO).unwrap();
        init[0] = 3;
        assert_eq!(
            server_respond(&W, &host(), HELLO, &init).err(),
            Some(HandshakeError::BadVersion(3))
        );
        assert_eq!(
            server_respond(&W, &host(), HELLO, &[]).err(),
            Some(HandshakeError::BadLength)
        );
        assert_eq!(
            server_respond(&W, &host(), HELLO, &init[..40]).err(),
            Some(HandshakeError::BadVersion(3))
        );
        init[0] = VERSION;
        assert_eq!(
            server_respond(&W, &host(), HELLO, &init[..40]).err(),
            Some(HandshakeError::BadLength)
        );
        let mut long = init.clone();
        long.extend(vec![0u8; MAX_HANDSHAKE_PAYLOAD + 1]);
        assert_eq!(
            server_respond(&W, &host(), HELLO, &long).err(),
            Some(HandshakeError::BadLength)
        );
        // An all-zero ephemeral key from the client (a message 1 made for it): the server's
        // DH is refused.
        let mut forged = SymmetricState::new(PROLOGUE);
        let mut weak = vec![0u8; DH_LEN];
        forged.mix_hash(&weak[..]);
        forged.mix_key(&[0u8; DH_LEN]);
        forged.encrypt_and_hash(&[], &mut weak).unwrap();
        let (ready, _) = NoiseResponder::new(&PSK, PROLOGUE, &secret(1))
            .read_message(&weak)
            .unwrap();
        assert_eq!(
            ready.write_message(&[]).err(),
            Some(HandshakeError::WeakKey)
        );
        // And from the server, at the client.
        let (waiting, init) = client_start(&W, HELLO).unwrap();
        let (_, mut response) = server_respond(&W, &host(), HELLO, &init).unwrap();
        response[SPAKE2_LEN..SPAKE2_LEN + DH_LEN].fill(0);
        assert_eq!(
            waiting.read_response(&response).err(),
            Some(HandshakeError::WeakKey)
        );
        let (waiting, _) = client_start(&W, HELLO).unwrap();
        assert_eq!(
            waiting.read_response(&[0u8; 100]).err(),
            Some(HandshakeError::BadLength)
        );
    }

    #[test]
    fn our_initiator_with_snow_responder() {
        let static_key = secret(0x55);
        let mut snow_resp = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(2, &PSK)
            .local_private_key(&static_key.to_bytes())
            .build_responder()
            .unwrap();
        let (waiting, m1) = NoiseInitiator::new(PROLOGUE)
            .write_message(b"client hello")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = snow_resp.read_message(&m1, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"client hello");
        let mut m2 = [0u8; 1024];
        let n = snow_resp.write_message(b"server hello", &mut m2).unwrap();
        assert_eq!(n, NOISE_MSG2_LEN + 12);
        let (mut keys, rs, payload) = waiting.read_message(&PSK, &m2[..n]).unwrap();
        assert_eq!(payload, b"server hello");
        assert_eq!(rs, PublicKey::from(&static_key).to_bytes());
        assert_eq!(
            keys.handshake_hash.as_slice(),
            snow_resp.get_handshake_hash()
        );
        let mut snow_t = snow_resp.into_transport_mode().unwrap();
        for i in 0..3u8 {
            let ct = keys.send.seal(b"", &[i; 20]).unwrap();
            let n = snow_t.read_message(&ct, &mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 20]);
            let n = snow_t.write_message(&[i + 100; 5], &mut buf).unwrap();
            assert_eq!(keys.recv.open(b"", &buf[..n]).unwrap(), vec![i + 100; 5]);
        }
    }

    #[test]
    fn snow_initiator_with_our_responder() {
        let static_key = secret(0x66);
        let mut snow_init = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(2, &PSK)
            .build_initiator()
            .unwrap();
        let mut m1 = [0u8; 1024];
        let n = snow_init.write_message(b"from snow", &mut m1).unwrap();
        assert_eq!(n, NOISE_MSG1_LEN + 9);
        let (ready, payload) = NoiseResponder::new(&PSK, PROLOGUE, &static_key)
            .read_message(&m1[..n])
            .unwrap();
        assert_eq!(payload, b"from snow");
        let (mut keys, m2) = ready.write_message(b"from us").unwrap();
        let mut buf = [0u8; 1024];
        let n = snow_init.read_message(&m2, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"from us");
        assert_eq!(
            snow_init.get_remote_static().unwrap(),
            PublicKey::from(&static_key).as_bytes()
        );
        assert_eq!(
            keys.handshake_hash.as_slice(),
            snow_init.get_handshake_hash()
        );
        let mut snow_t = snow_init.into_transport_mode().unwrap();
        let n = snow_t.write_message(b"ping", &mut buf).unwrap();
        assert_eq!(keys.recv.open(b"", &buf[..n]).unwrap(), b"ping");
        let ct = keys.send.seal(b"", b"pong").unwrap();
        let n = snow_t.read_message(&ct, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
    }

    #[test]
    fn snow_rejects_our_wrong_psk_and_we_reject_snows() {
        let static_key = secret(0x77);
        let mut buf = [0u8; 1024];
        // Our responder with another PSK: snow's initiator refuses message 2.
        let mut snow_init = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(2, &[9u8; 32])
            .build_initiator()
            .unwrap();
        let n = snow_init.write_message(b"", &mut buf).unwrap();
        let (ready, _) = NoiseResponder::new(&PSK, PROLOGUE, &static_key)
            .read_message(&buf[..n])
            .unwrap();
        let (_, m2) = ready.write_message(b"").unwrap();
        assert!(snow_init.read_message(&m2, &mut buf).is_err());

        // Snow's responder with another PSK: our initiator refuses message 2.
        let mut snow_resp = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(2, &[9u8; 32])
            .local_private_key(&static_key.to_bytes())
            .build_responder()
            .unwrap();
        let (waiting, m1) = NoiseInitiator::new(PROLOGUE).write_message(b"").unwrap();
        snow_resp.read_message(&m1, &mut buf).unwrap();
        let n = snow_resp.write_message(b"", &mut buf).unwrap();
        assert_eq!(
            waiting.read_message(&PSK, &buf[..n]).err(),
            Some(HandshakeError::AuthenticationFailed)
        );
    }
}
