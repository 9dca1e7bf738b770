//! Redis pub/sub: per client a subscriber connection (SUBSCRIBE on one channel) and a
//! publisher connection (PUBLISH); a message is acknowledged when the sender's own subscriber
//! connection receives its copy, as for NATS (echo) and Tertulia (the ack follows the
//! broadcast on the member's connection). PUBLISH's integer reply is not an acknowledgement
//! of delivery: Redis sends it as soon as the message is queued in every subscriber's output
//! buffer, so a window counted on it bounds nothing, and the whole run piles up in Redis's
//! output buffers (1.2 GB at N = 100) while the subscribers read it at their own pace.

use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use super::{find, read_loop, read_more, ClientError, Flow, Sender};
use crate::payload;
use crate::record::Shared;
use crate::RunConfig;

const CHANNEL: &str = "tertulia-bench";

pub struct Connected {
    sub: TcpStream,
    publisher: TcpStream,
    buf: Vec<u8>,
}

pub async fn connect(port: u16) -> Result<Connected, ClientError> {
    let mut sub = TcpStream::connect(("127.0.0.1", port)).await?;
    let publisher = TcpStream::connect(("127.0.0.1", port)).await?;
    sub.set_nodelay(true)?;
    publisher.set_nodelay(true)?;
    sub.write_all(
        format!(
            "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{CHANNEL}\r\n",
            CHANNEL.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::with_capacity(4096);
    // The confirmation ends with the subscription count, ":1\r\n".
    loop {
        if let Some(at) = find(&buf, b":1\r\n") {
            buf.drain(..at + 4);
            return Ok(Connected {
                sub,
                publisher,
                buf,
            });
        }
        read_more(&mut sub, &mut buf, "closed before subscribing").await?;
    }
}

/// Parse `$<len>\r\n` at `buf[at..]`: (length, offset of the data).
fn bulk_len(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    if buf.get(at) != Some(&b'$') {
        return None;
    }
    let end = at + find(&buf[at..], b"\r\n")?;
    let len = usize::try_from(payload::decimal(&buf[at + 1..end])?).ok()?;
    Some((len, end + 2))
}

/// One complete `message` push: (payload range, bytes used); `Ok(None)` if incomplete.
fn parse_message(buf: &[u8]) -> Result<Option<(std::ops::Range<usize>, usize)>, ClientError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    if !buf.starts_with(b"*3\r\n") {
        return Err(ClientError::Protocol(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(40)])
        )));
    }
    let mut at = 4;
    let mut last = 0..0;
    for _ in 0..3 {
        let Some((len, data)) = bulk_len(buf, at) else {
            return Ok(None);
        };
        if buf.len() < data + len + 2 {
            return Ok(None);
        }
        last = data..data + len;
        at = data + len + 2;
    }
    Ok(Some((last, at)))
}

/// PUBLISH's replies (one integer line each): read and drop them so they do not pile up in
/// Redis, failing on an error reply. Returns only when the server closes the connection.
async fn drain_replies(publisher: &mut OwnedReadHalf) -> Result<(), ClientError> {
    let mut replies = Vec::with_capacity(4096);
    loop {
        read_more(publisher, &mut replies, "the server closed the connection").await?;
        if let Some(at) = replies.iter().position(|&b| b == b'-') {
            let line = &replies[at..];
            let end = find(line, b"\r\n").unwrap_or(line.len());
            return Err(ClientError::Protocol(format!(
                "PUBLISH failed: {}",
                String::from_utf8_lossy(&line[..end])
            )));
        }
        match replies.iter().rposition(|&b| b == b'\n') {
            Some(last) => drop(replies.drain(..=last)),
            None if replies.len() > 4096 => {
                return Err(ClientError::Protocol("a PUBLISH reply too long".into()))
            }
            None => {}
        }
    }
}

pub async fn run(
    me: usize,
    conn: Connected,
    cfg: Rc<RunConfig>,
    rec: Shared,
    flow: Rc<Flow>,
    mut sender: Sender,
) -> Result<(), ClientError> {
    let Connected {
        mut sub,
        publisher,
        mut buf,
    } = conn;
    let (mut pub_rd, mut pub_wr) = publisher.into_split();
    let size = cfg.size;
    let writer = async {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut text = Vec::with_capacity(size);
        // Every payload is `size` bytes (at least the header), so the PUBLISH prefix up to the
        // payload is the same for every message.
        let head = format!(
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{CHANNEL}\r\n${}\r\n",
            CHANNEL.len(),
            size.max(payload::HEADER_LEN)
        );
        while let Some(n) = sender.wait_turn(&flow).await {
            out.clear();
            sender.push_lines(n, head.as_bytes(), &mut text, &mut out);
            pub_wr.write_all(&out).await?;
        }
        // Everything sent: keep the connection open until the run is over.
        std::future::pending::<()>().await;
        Ok::<_, ClientError>(())
    };
    let replies = drain_replies(&mut pub_rd);
    let mut echoed = 0u64;
    let reader = read_loop(&mut sub, &mut buf, &rec, |buf, received| {
        let mut consumed = 0;
        while let Some((payload_range, used)) = parse_message(&buf[consumed..])? {
            let payload = &buf[consumed + payload_range.start..consumed + payload_range.end];
            let mut r = rec.borrow_mut();
            match payload::parse(payload, size) {
                Some(h) if h.sender as usize != me => r.deliver(me, h, received),
                Some(h) => {
                    flow.own_copy(h.seq, &mut r);
                    echoed += 1;
                    flow.ack(echoed);
                }
                None => r.corrupt += 1,
            }
            consumed += used;
        }
        Ok(consumed)
    });
    tokio::try_join!(writer, replies, reader).map(|_: ((), (), ())| ())
}

/// Idle mode: stay connected and read what the server sends (the publisher connection stays open).
pub async fn sit_idle(mut conn: Connected) -> Result<(), ClientError> {
    super::discard_until_closed(&mut conn.sub).await
}
