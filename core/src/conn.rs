//! The thin socket layer: reading frames from a byte stream, and running the handshake
//! ([`hello`](crate::hello), then Noise) over a connection on either side. Everything it decides
//! is delegated to the pure modules ([`frame`](crate::frame), [`hello`](crate::hello),
//! [`handshake`](crate::handshake), [`sealed`](crate::sealed)); this module is only I/O.

use std::future::Future;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cipher::{CryptoError, Key};
use crate::frame::{self, FrameError, FrameKind, MAX_PREAUTH_BODY};
use crate::handshake::{self, ClientDone, HandshakeError, TransportKeys};
use crate::hello::{
    bad_version_body, bad_version_text, hello_body, parse_hello, parse_reject, reject_body,
    HelloError, RejectCode,
};
use crate::identity::HostKey;
use crate::passphrase::Salt;
use crate::sealed::SealError;

/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// The read an idle connection waits in.
const FIRST_READ: usize = 512;

/// Everything that can end a connection.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by peer")]
    Closed,
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Sealed(#[from] SealError),
    #[error("unexpected {0:?} frame")]
    UnexpectedFrame(FrameKind),
    #[error(transparent)]
    Hello(#[from] HelloError),
    #[error("the server refused the handshake: {0:?}")]
    Rejected(Option<RejectCode>),
    /// `Reject(3)`: the server does not speak the version asked for; its text, shown as is.
    #[error("{0}")]
    BadVersion(String),
    /// `Reject(6)`: too many failed handshakes from this address; try again after the time
    /// given (`None`: the server did not say).
    #[error("the server refuses handshakes from this address for now (too many failed attempts)")]
    Throttled { retry_after_secs: Option<u16> },
    #[error("timed out")]
    Timeout,
    #[error("the passphrase key derivation did not finish: {0}")]
    KeyDerivation(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Passphrase(#[from] crate::passphrase::PassphraseError),
}

impl ConnError {
    /// Did the peer's data fail authentication (tampering, replay, reordering)?
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            ConnError::Crypto(CryptoError::Integrity)
                | ConnError::Sealed(SealError::Crypto(CryptoError::Integrity))
                | ConnError::Sealed(SealError::OutOfOrder { .. })
                | ConnError::Sealed(SealError::Short)
        )
    }

    /// Is this a wrong-passphrase verdict (as far as the client can tell)? A
    /// `HandshakeResponse` that does not authenticate (the SPAKE2 keys differ: a wrong
    /// passphrase or someone in the middle), or a `Reject(1)`; both unauthenticated, so the
    /// client believes them only when they repeat.
    pub fn is_wrong_passphrase(&self) -> bool {
        matches!(
            self,
            ConnError::Handshake(HandshakeError::AuthenticationFailed)
                | ConnError::Rejected(Some(RejectCode::AuthenticationFailed))
        )
    }
}

/// Buffered frame reader over any byte stream. Memory is bounded by `max_body` plus one read
/// chunk, and an idle connection holds no buffer at all.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The next frame with a body of at most `max_body` bytes. `Ok(None)` on a clean EOF between
    /// frames; EOF inside a frame is [`FrameError::Truncated`].
    pub async fn read_frame(
        &mut self,
        max_body: usize,
    ) -> Result<Option<(FrameKind, Vec<u8>)>, ConnError> {
        loop {
            if let Some((frame, used)) = frame::decode(&self.buf[self.start..], max_body)? {
                let result = (frame.kind, frame.body.to_vec());
                self.start += used;
                if self.start == self.buf.len() {
                    // Everything consumed: give the buffer back (idle connections cost little).
                    self.buf = Vec::new();
                    self.start = 0;
                }
                return Ok(Some(result));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            // `read_buf` is cancel-safe (no data is lost if a `select!` drops it), so this
            // method is too; it reads into spare capacity without zeroing it first.
            let n = if self.buf.is_empty() {
                // Between frames (most of an idle connection's life) hold no buffer: wait in a
                // small read, and grow only when there is more to take.
                let mut first = [0u8; FIRST_READ];
                let n = self.inner.read(&mut first).await?;
                self.buf = Vec::with_capacity(if n == FIRST_READ { READ_CHUNK } else { n });
                self.buf.extend_from_slice(&first[..n]);
                n
            } else {
                if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                    self.buf.reserve(READ_CHUNK);
                }
                self.inner.read_buf(&mut self.buf).await?
            };
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated.into())
                };
            }
        }
    }

    /// Like [`read_frame`](Self::read_frame) but EOF is an error.
    pub async fn expect_frame(
        &mut self,
        max_body: usize,
    ) -> Result<(FrameKind, Vec<u8>), ConnError> {
        self.read_frame(max_body).await?.ok_or(ConnError::Closed)
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    kind: FrameKind,
    body: &[u8],
) -> Result<(), ConnError> {
    writer.write_all(&frame::encode(kind, body)).await?;
    writer.flush().await?;
    Ok(())
}

/// Send a `Reject` frame; errors are ignored because the connection is being dropped anyway.
pub async fn send_reject<W: AsyncWrite + Unpin>(writer: &mut W, code: RejectCode) {
    let _ = write_frame(writer, FrameKind::Reject, &reject_body(code, 0)).await;
}

/// Send `Reject(6)`: too many failed attempts from the client's address, retry after `secs`.
pub async fn send_throttled<W: AsyncWrite + Unpin>(writer: &mut W, secs: u16) {
    let body = reject_body(RejectCode::TooManyFailedAttempts, secs);
    let _ = write_frame(writer, FrameKind::Reject, &body).await;
}

/// The error a `Reject` frame body stands for.
fn rejected(body: &[u8]) -> ConnError {
    let reject = parse_reject(body);
    match reject.code {
        Some(RejectCode::TooManyFailedAttempts) => ConnError::Throttled {
            retry_after_secs: reject.retry_after_secs,
        },
        Some(RejectCode::BadVersion) => {
            ConnError::BadVersion(reject.text.unwrap_or_else(|| {
                "the server does not speak this program's protocol version".into()
            }))
        }
        code => ConnError::Rejected(code),
    }
}

/// Server side of the handshake: Hello, then the `HandshakeInit`, answered with the
/// `HandshakeResponse` for room secret `w` as host `host_key`. When the init arrives,
/// `turn` is awaited first: it may wait (the source has as many answered, unconfirmed
/// handshakes as it may), then it decides — `Err(secs)` refuses the init unevaluated with
/// `Reject(6)` (the source got locked out, or is at its limit, while this connection
/// waited); `Ok(turn)` goes on. Then `answering(turn)` is called: it decides again, at once
/// with arming (`Err(secs)`: `Reject(6)` after all, the response not sent), or returns a
/// value that comes back with the keys (a guard that counts a failed guess unless the client
/// confirms the key, so a connection dropped from here on still counts) and how long to
/// hold the response back (the response is what tells a guesser whether its guess was
/// right, so it is what the online-guessing throttle delays).
pub async fn accept_handshake<R, W, G, F, P, A, T>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    salt: &Salt,
    w: &Key,
    host_key: &HostKey,
    turn: G,
    answering: A,
) -> Result<(TransportKeys, T), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    G: FnOnce() -> F,
    F: Future<Output = Result<P, u16>>,
    A: FnOnce(P) -> Result<(T, std::time::Duration), u16>,
{
    let hello = hello_body(salt);
    write_frame(writer, FrameKind::Hello, &hello).await?;
    let (kind, body) = reader.expect_frame(MAX_PREAUTH_BODY).await?;
    if kind != FrameKind::HandshakeInit {
        send_reject(writer, RejectCode::Malformed).await;
        return Err(ConnError::UnexpectedFrame(kind));
    }
    // Refused here, the init is not even evaluated.
    let turn = match turn().await {
        Ok(turn) => turn,
        Err(secs) => return Err(throttled(writer, secs).await),
    };
    let (keys, response) = match handshake::server_respond(w, host_key, &hello, &body) {
        Ok(ok) => ok,
        Err(e) => {
            let reply = match e {
                HandshakeError::BadVersion(_) => bad_version_body(&bad_version_text()),
                _ => reject_body(RejectCode::Malformed, 0),
            };
            let _ = write_frame(writer, FrameKind::Reject, &reply).await;
            return Err(e.into());
        }
    };
    // Decided again with the guard armed under one lock: exact when others arm meanwhile.
    let (guard, delay) = match answering(turn) {
        Ok(armed) => armed,
        Err(secs) => return Err(throttled(writer, secs).await),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    write_frame(writer, FrameKind::HandshakeResponse, &response).await?;
    Ok((keys, guard))
}

/// Refuse with `Reject(6)`, retry after `secs`.
async fn throttled<W: AsyncWrite + Unpin>(writer: &mut W, secs: u16) -> ConnError {
    send_throttled(writer, secs).await;
    ConnError::Throttled {
        retry_after_secs: Some(secs),
    }
}

/// Client side of the handshake. `w_for_salt` turns the room salt into the room secret
/// (normally a cached Argon2id derivation).
pub async fn initiate_handshake<R, W, F, Fut>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    w_for_salt: F,
) -> Result<ClientDone, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnOnce(Salt) -> Fut,
    Fut: Future<Output = Result<Key, ConnError>>,
{
    let hello = read_hello(reader).await?;
    let w = w_for_salt(parse_hello(&hello)?).await?;
    finish_initiator(reader, writer, &hello, &w).await
}

/// Client: read the server's `Hello` frame (or its `Reject`); returns the hello body.
pub async fn read_hello<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Vec<u8>, ConnError> {
    let (kind, body) = reader
        .expect_frame(MAX_PREAUTH_BODY)
        .await
        .map_err(|e| match e {
            ConnError::Frame(_) => ConnError::Hello(HelloError::NotTertulia),
            other => other,
        })?;
    match kind {
        FrameKind::Hello => Ok(body),
        FrameKind::Reject => Err(rejected(&body)),
        _ => Err(ConnError::Hello(HelloError::NotTertulia)),
    }
}

/// Client: after the hello, send the `HandshakeInit` and read the `HandshakeResponse`. The
/// result is authenticated (the host knows the passphrase, and proved the identity key in
/// [`ClientDone::host`]); the server takes it as confirmed at the first session frame.
pub async fn finish_initiator<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut W,
    hello: &[u8],
    w: &Key,
) -> Result<ClientDone, ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (waiting, init) = handshake::client_start(w, hello)?;
    write_frame(writer, FrameKind::HandshakeInit, &init).await?;
    let (kind, body) = reader.expect_frame(MAX_PREAUTH_BODY).await?;
    match kind {
        FrameKind::HandshakeResponse => Ok(waiting.read_response(&body)?),
        FrameKind::Reject => Err(rejected(&body)),
        other => Err(ConnError::UnexpectedFrame(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MAX_BODY;
    use crate::passphrase::SALT_LEN;

    #[tokio::test]
    async fn reads_frames_split_and_joined_across_reads() {
        let mut wire = Vec::new();
        for i in 0..50u8 {
            frame::encode_into(&mut wire, FrameKind::Session, &vec![i; i as usize * 37]);
        }
        // Deliver the stream in awkward pieces: 1, 2, 3… bytes at a time.
        let (mut tx, rx) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            let mut pos = 0;
            let mut step = 1;
            while pos < wire.len() {
                let end = (pos + step).min(wire.len());
                tx.write_all(&wire[pos..end]).await.unwrap();
                pos = end;
                step = step % 97 + 1;
            }
        });
        let mut reader = FrameReader::new(rx);
        for i in 0..50u8 {
            let (kind, body) = reader.expect_frame(MAX_BODY).await.unwrap();
            assert_eq!(kind, FrameKind::Session);
            assert_eq!(body, vec![i; i as usize * 37]);
        }
        writer.await.unwrap();
        assert!(
            reader.read_frame(MAX_BODY).await.unwrap().is_none(),
            "clean EOF"
        );
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        let wire = frame::encode(FrameKind::Session, b"hello");
        let mut reader = FrameReader::new(&wire[..7]);
        assert!(matches!(
            reader.read_frame(MAX_BODY).await,
            Err(ConnError::Frame(FrameError::Truncated))
        ));
    }

    #[tokio::test]
    async fn handshake_over_a_stream_and_wrong_passphrase_on_the_client() {
        let salt = [5u8; SALT_LEN];
        let host = HostKey::from_bytes([9; 32]);
        for (server_psk, client_psk) in [([1u8; 32], [1u8; 32]), ([1u8; 32], [2u8; 32])] {
            let host = host.clone();
            let (client_io, server_io) = tokio::io::duplex(4096);
            let (sr, mut sw) = tokio::io::split(server_io);
            let (cr, mut cw) = tokio::io::split(client_io);
            let server = tokio::spawn(async move {
                let mut reader = FrameReader::new(sr);
                accept_handshake(
                    &mut reader,
                    &mut sw,
                    &salt,
                    &server_psk,
                    &host,
                    || async { Ok(()) },
                    |()| Ok(((), std::time::Duration::ZERO)),
                )
                .await
                .map(|(k, ())| k.handshake_hash)
            });
            let mut reader = FrameReader::new(cr);
            let client = initiate_handshake(&mut reader, &mut cw, |s| async move {
                assert_eq!(s, salt);
                Ok(client_psk)
            })
            .await;
            let server = server.await.unwrap();
            if server_psk == client_psk {
                let client = client.unwrap();
                assert_eq!(client.keys.handshake_hash, server.unwrap());
                assert_eq!(client.host, HostKey::from_bytes([9; 32]).public());
            } else {
                // The server answered (it cannot tell); the client's check failed.
                assert!(server.is_ok());
                let client = client.err().unwrap();
                assert!(client.is_wrong_passphrase(), "{client}");
            }
        }
    }
}
