//! The Noise `NNpsk0_25519_ChaChaPoly_SHA256` handshake (Noise rev 34), byte for byte.
//!
//! ```text
//! NNpsk0:
//!   -> psk, e          (client: 32-byte ephemeral key ‖ sealed payload)
//!   <- e, ee           (server: 32-byte ephemeral key ‖ sealed payload)
//! ```
//! No sockets here: each side is a value that consumes bytes and produces bytes. A state is
//! consumed to produce the next ([`Initiator`] → [`AwaitingResponse`] → [`TransportKeys`]),
//! so a message cannot be processed twice or out of order.
//!
//! A client that does not know the room's pre-shared key fails at message 1 on the server,
//! which therefore never sends bytes that depend on the key to such a peer.

use hkdf::Hkdf;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::cipher::{CipherState, CryptoError, Key, TAG_LEN};

/// The Noise protocol name; its SHA-256 initialises the handshake hash.
pub const PROTOCOL_NAME: &[u8] = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256";
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

fn check_len(message: &[u8]) -> Result<(), HandshakeError> {
    let len = message.len();
    if !(DH_LEN + TAG_LEN..=DH_LEN + TAG_LEN + MAX_HANDSHAKE_PAYLOAD).contains(&len) {
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
opaque_debug!(Initiator, AwaitingResponse, Responder, ReadyToRespond);

/// The client side before message 1 is written.
pub struct Initiator {
    state: SymmetricState,
    ephemeral: StaticSecret,
}

/// The client side after writing message 1, waiting for message 2.
pub struct AwaitingResponse {
    state: SymmetricState,
    ephemeral: StaticSecret,
}

impl Initiator {
    pub fn new(psk: &Key, prologue: &[u8]) -> Self {
        Self::with_ephemeral(psk, prologue, StaticSecret::random_from_rng(OsRng))
    }

    /// Fixed ephemeral key: only for known-answer test vectors.
    pub fn with_ephemeral(psk: &Key, prologue: &[u8], ephemeral: StaticSecret) -> Self {
        let mut state = SymmetricState::new(prologue);
        state.mix_key_and_hash(psk);
        Self { state, ephemeral }
    }

    /// Write message 1 (`psk, e`) carrying `payload`.
    pub fn write_message(
        mut self,
        payload: &[u8],
    ) -> Result<(AwaitingResponse, Vec<u8>), HandshakeError> {
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(HandshakeError::BadLength);
        }
        let e_pub = PublicKey::from(&self.ephemeral);
        let mut out = Vec::with_capacity(DH_LEN + payload.len() + TAG_LEN);
        out.extend_from_slice(e_pub.as_bytes());
        self.state.mix_hash(e_pub.as_bytes());
        self.state.mix_key(e_pub.as_bytes());
        self.state.encrypt_and_hash(payload, &mut out)?;
        Ok((
            AwaitingResponse {
                state: self.state,
                ephemeral: self.ephemeral,
            },
            out,
        ))
    }
}

impl AwaitingResponse {
    /// Read message 2 (`e, ee`); returns the session keys and the server's payload.
    pub fn read_message(
        mut self,
        message: &[u8],
    ) -> Result<(TransportKeys, Vec<u8>), HandshakeError> {
        check_len(message)?;
        let (re, rest) = message.split_at(DH_LEN);
        self.state.mix_hash(re);
        self.state.mix_key(re);
        let shared = dh(&self.ephemeral, re)?;
        self.state.mix_key(&shared[..]);
        let payload = self.state.decrypt_and_hash(rest)?;
        let (send, recv) = self.state.split();
        let keys = TransportKeys {
            send,
            recv,
            handshake_hash: self.state.h,
        };
        Ok((keys, payload))
    }
}

/// The server side: reads message 1 and answers with message 2 in one step.
pub struct Responder {
    state: SymmetricState,
    ephemeral: StaticSecret,
}

impl Responder {
    pub fn new(psk: &Key, prologue: &[u8]) -> Self {
        Self::with_ephemeral(psk, prologue, StaticSecret::random_from_rng(OsRng))
    }

    /// Fixed ephemeral key: only for known-answer test vectors.
    pub fn with_ephemeral(psk: &Key, prologue: &[u8], ephemeral: StaticSecret) -> Self {
        let mut state = SymmetricState::new(prologue);
        state.mix_key_and_hash(psk);
        Self { state, ephemeral }
    }

    /// Read message 1; on success returns the client's payload and the ready responder.
    pub fn read_message(
        mut self,
        message: &[u8],
    ) -> Result<(ReadyToRespond, Vec<u8>), HandshakeError> {
        check_len(message)?;
        let (re, rest) = message.split_at(DH_LEN);
        self.state.mix_hash(re);
        self.state.mix_key(re);
        let payload = self.state.decrypt_and_hash(rest)?;
        let remote: [u8; 32] = re.try_into().map_err(|_| HandshakeError::BadLength)?;
        Ok((
            ReadyToRespond {
                state: self.state,
                ephemeral: self.ephemeral,
                remote,
            },
            payload,
        ))
    }
}

/// The server side after an authentic message 1.
pub struct ReadyToRespond {
    state: SymmetricState,
    ephemeral: StaticSecret,
    remote: [u8; 32],
}

impl ReadyToRespond {
    /// Write message 2 (`e, ee`) with `payload`; returns the session keys and the bytes to send.
    pub fn write_message(
        mut self,
        payload: &[u8],
    ) -> Result<(TransportKeys, Vec<u8>), HandshakeError> {
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(HandshakeError::BadLength);
        }
        let e_pub = PublicKey::from(&self.ephemeral);
        let mut out = Vec::with_capacity(DH_LEN + payload.len() + TAG_LEN);
        out.extend_from_slice(e_pub.as_bytes());
        self.state.mix_hash(e_pub.as_bytes());
        self.state.mix_key(e_pub.as_bytes());
        let shared = dh(&self.ephemeral, &self.remote)?;
        self.state.mix_key(&shared[..]);
        self.state.encrypt_and_hash(payload, &mut out)?;
        let (recv, send) = self.state.split();
        let keys = TransportKeys {
            send,
            recv,
            handshake_hash: self.state.h,
        };
        Ok((keys, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSK: Key = [7u8; 32];
    const PROLOGUE: &[u8] = b"tertulia/1 test";

    fn snow_params() -> snow::params::NoiseParams {
        "Noise_NNpsk0_25519_ChaChaPoly_SHA256"
            .parse()
            .expect("valid noise params")
    }

    #[test]
    fn both_sides_agree() {
        let (waiting, m1) = Initiator::new(&PSK, PROLOGUE).write_message(b"hi").unwrap();
        let (ready, p1) = Responder::new(&PSK, PROLOGUE).read_message(&m1).unwrap();
        assert_eq!(p1, b"hi");
        let (mut server, m2) = ready.write_message(b"").unwrap();
        let (mut client, p2) = waiting.read_message(&m2).unwrap();
        assert!(p2.is_empty());
        assert_eq!(client.handshake_hash, server.handshake_hash);
        let ct = client.send.seal(b"", b"to server").unwrap();
        assert_eq!(server.recv.open(b"", &ct).unwrap(), b"to server");
        let ct = server.send.seal(b"", b"to client").unwrap();
        assert_eq!(client.recv.open(b"", &ct).unwrap(), b"to client");
    }

    #[test]
    fn wrong_psk_fails_at_message_one() {
        let (_, m1) = Initiator::new(&PSK, PROLOGUE).write_message(b"").unwrap();
        let wrong = [8u8; 32];
        assert_eq!(
            Responder::new(&wrong, PROLOGUE).read_message(&m1).err(),
            Some(HandshakeError::AuthenticationFailed)
        );
    }

    #[test]
    fn different_prologue_fails() {
        let (_, m1) = Initiator::new(&PSK, PROLOGUE).write_message(b"").unwrap();
        assert_eq!(
            Responder::new(&PSK, b"tertulia/1 other room")
                .read_message(&m1)
                .err(),
            Some(HandshakeError::AuthenticationFailed)
        );
    }

    #[test]
    fn altered_message_two_fails_on_client() {
        let (waiting, m1) = Initiator::new(&PSK, PROLOGUE).write_message(b"").unwrap();
        let (ready, _) = Responder::new(&PSK, PROLOGUE).read_message(&m1).unwrap();
        let (_, mut m2) = ready.write_message(b"").unwrap();
        let last = m2.len() - 1;
        m2[last] ^= 0x80;
        assert_eq!(
            waiting.read_message(&m2).err(),
            Some(HandshakeError::AuthenticationFailed)
        );
    }

    #[test]
    fn bad_lengths_and_weak_keys_rejected() {
        assert_eq!(
            Responder::new(&PSK, PROLOGUE)
                .read_message(&[0u8; 47])
                .err(),
            Some(HandshakeError::BadLength)
        );
        assert_eq!(
            Responder::new(&PSK, PROLOGUE)
                .read_message(&vec![0u8; 48 + MAX_HANDSHAKE_PAYLOAD + 1])
                .err(),
            Some(HandshakeError::BadLength)
        );
        // An all-zero ephemeral key from the "server" is a low-order point.
        let (waiting, _) = Initiator::new(&PSK, PROLOGUE).write_message(b"").unwrap();
        assert_eq!(
            waiting.read_message(&[0u8; 48]).err(),
            Some(HandshakeError::WeakKey)
        );
    }

    #[test]
    fn our_initiator_with_snow_responder() {
        let mut snow_resp = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(0, &PSK)
            .build_responder()
            .unwrap();
        let (waiting, m1) = Initiator::new(&PSK, PROLOGUE)
            .write_message(b"client hello")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = snow_resp.read_message(&m1, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"client hello");
        let mut m2 = [0u8; 1024];
        let n = snow_resp.write_message(b"server hello", &mut m2).unwrap();
        let (mut keys, payload) = waiting.read_message(&m2[..n]).unwrap();
        assert_eq!(payload, b"server hello");
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
        let mut snow_init = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(0, &PSK)
            .build_initiator()
            .unwrap();
        let mut m1 = [0u8; 1024];
        let n = snow_init.write_message(b"from snow", &mut m1).unwrap();
        let (ready, payload) = Responder::new(&PSK, PROLOGUE)
            .read_message(&m1[..n])
            .unwrap();
        assert_eq!(payload, b"from snow");
        let (mut keys, m2) = ready.write_message(b"from us").unwrap();
        let mut buf = [0u8; 1024];
        let n = snow_init.read_message(&m2, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"from us");
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
        let mut snow_resp = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(0, &[9u8; 32])
            .build_responder()
            .unwrap();
        let (_, m1) = Initiator::new(&PSK, PROLOGUE).write_message(b"").unwrap();
        let mut buf = [0u8; 1024];
        assert!(snow_resp.read_message(&m1, &mut buf).is_err());

        let mut snow_init = snow::Builder::new(snow_params())
            .prologue(PROLOGUE)
            .psk(0, &[9u8; 32])
            .build_initiator()
            .unwrap();
        let n = snow_init.write_message(b"", &mut buf).unwrap();
        assert!(Responder::new(&PSK, PROLOGUE)
            .read_message(&buf[..n])
            .is_err());
    }
}
