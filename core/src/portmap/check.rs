//! The self-check: does the mapped address answer, and is it *this* room that answers?
//!
//! From inside the LAN the only way to the external address is back through the router
//! ("hairpin" NAT), which many routers do not do. So a connection that fails proves nothing
//! either way ("could not confirm", never "failed"). A connection that succeeds is compared:
//! every Tertulia server opens with its `Hello` (docs/PROTOCOL.md §1), which carries the
//! room's salt; the same `Hello` from the local listener and from the external address means
//! the router really forwards to this room, not to some other service. Closing after the
//! `Hello` costs the room nothing (no handshake was started).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::conn::{self, FrameReader};

/// How long one connection and its `Hello` may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the self-check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The room answered at its external address.
    Confirmed,
    /// Nothing (or something else) answered there from inside this network: the router may
    /// not loop connections back; friends outside may still reach it.
    CouldNotConfirm,
}

/// The `Hello` body the server at `addr` opens with, if it answers in time.
pub async fn hello_at(addr: SocketAddr) -> Option<Vec<u8>> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let mut reader = FrameReader::new(stream);
        conn::read_hello(&mut reader).await.ok()
    };
    tokio::time::timeout(CHECK_TIMEOUT, attempt).await.ok()?
}

/// Compare the room's `Hello` at `local` (its own listener) with the one at `external`.
pub async fn same_room(local: SocketAddr, external: SocketAddr) -> Check {
    let Some(ours) = hello_at(local).await else {
        return Check::CouldNotConfirm;
    };
    match hello_at(external).await {
        Some(theirs) if theirs == ours => Check::Confirmed,
        _ => Check::CouldNotConfirm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{self, FrameKind};
    use crate::hello::hello_body;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A listener on loopback that opens every connection with `body` as its Hello.
    async fn room(body: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream
                    .write_all(&frame::encode(FrameKind::Hello, &body))
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_same_room_at_both_addresses_is_confirmed() {
        let body = hello_body(&[7u8; 16]);
        let a = room(body.clone()).await;
        let b = room(body).await;
        assert_eq!(same_room(a, b).await, Check::Confirmed);
    }

    #[tokio::test]
    async fn another_room_or_nothing_is_not_confirmed() {
        let ours = room(hello_body(&[7u8; 16])).await;
        let other = room(hello_body(&[8u8; 16])).await;
        assert_eq!(same_room(ours, other).await, Check::CouldNotConfirm);
        // A port nobody listens on (bound, then closed).
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert_eq!(same_room(ours, closed).await, Check::CouldNotConfirm);
        // Something that is not Tertulia.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await;
            }
        });
        assert_eq!(same_room(ours, http).await, Check::CouldNotConfirm);
    }
}
