//! IRC (ngIRCd): JOIN one channel, PRIVMSG to it. IRC does not echo a sender's own messages,
//! so after each batch the client sends `PING :<count>`; the `PONG` acknowledges the batch.

use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{answer_keepalives, find, read_loop, read_more, ClientError, Flow, Sender};
use crate::payload;
use crate::record::Shared;
use crate::RunConfig;

const CHANNEL: &str = "#bench";

pub struct Connected {
    stream: TcpStream,
    buf: Vec<u8>,
}

async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    needle: &[u8],
) -> Result<(), ClientError> {
    loop {
        if let Some(at) = find(buf, needle) {
            // Keep what follows the line containing the needle.
            let eol = find(&buf[at..], b"\r\n").map_or(buf.len(), |e| at + e + 2);
            buf.drain(..eol);
            return Ok(());
        }
        if let Some(at) = find(buf, b"ERROR") {
            return Err(ClientError::Protocol(
                String::from_utf8_lossy(&buf[at..]).into_owned(),
            ));
        }
        read_more(stream, buf, "closed during registration").await?;
    }
}

pub async fn connect(port: u16, id: usize) -> Result<Connected, ClientError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(format!("NICK b{id}\r\nUSER b{id} 0 * :bench\r\n").as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(4096);
    read_until(&mut stream, &mut buf, b" 001 ").await?;
    stream
        .write_all(format!("JOIN {CHANNEL}\r\n").as_bytes())
        .await?;
    read_until(&mut stream, &mut buf, b" 366 ").await?;
    Ok(Connected { stream, buf })
}

pub async fn run(
    me: usize,
    conn: Connected,
    cfg: Rc<RunConfig>,
    rec: Shared,
    flow: Rc<Flow>,
    mut sender: Sender,
) -> Result<(), ClientError> {
    let Connected { stream, mut buf } = conn;
    let (mut rd, mut wr) = stream.into_split();
    let size = cfg.size;
    let window_mode = matches!(cfg.mode, crate::Mode::Window(_));
    let writer = async {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut text = Vec::with_capacity(size);
        let head = format!("PRIVMSG {CHANNEL} :");
        while let Some(n) = sender.wait_turn(&flow).await {
            out.clear();
            flow.take_control(&mut out);
            sender.push_lines(n, head.as_bytes(), &mut text, &mut out);
            if n > 0 && window_mode {
                out.extend_from_slice(format!("PING :{}\r\n", sender.sent).as_bytes());
            } else if n > 0 {
                flow.ack(sender.sent); // rate mode: nothing waits on acks
            }
            wr.write_all(&out).await?;
        }
        answer_keepalives(&mut wr, &flow).await
    };
    let reader = read_loop(&mut rd, &mut buf, &rec, |buf, received| {
        let mut consumed = 0;
        while let Some(eol) = find(&buf[consumed..], b"\r\n") {
            let line = &buf[consumed..consumed + eol];
            if let Some(at) = find(line, b" PRIVMSG ") {
                let payload = find(&line[at..], b" :").map(|c| &line[at + c + 2..]);
                let mut r = rec.borrow_mut();
                match payload.and_then(|p| payload::parse(p, size)) {
                    Some(h) if h.sender as usize != me => r.deliver(me, h, received),
                    Some(_) => {}
                    None => r.corrupt += 1,
                }
            } else if let Some(at) = find(line, b" PONG ") {
                let token = line[at..].rsplit(|&b| b == b':').next().unwrap_or_default();
                if let Some(count) = std::str::from_utf8(token).ok().and_then(|t| t.parse().ok()) {
                    flow.ack(count);
                }
            } else if line.starts_with(b"PING ") {
                let mut pong = b"PONG ".to_vec();
                pong.extend_from_slice(&line[5..]);
                pong.extend_from_slice(b"\r\n");
                flow.control(&pong);
            } else if line.starts_with(b"ERROR") {
                return Err(ClientError::Protocol(
                    String::from_utf8_lossy(line).into_owned(),
                ));
            }
            consumed += eol + 2;
        }
        Ok(consumed)
    });
    tokio::try_join!(writer, reader).map(|_: ((), ())| ())
}

/// Idle mode: stay connected and read what the server sends.
pub async fn sit_idle(mut conn: Connected) -> Result<(), ClientError> {
    super::discard_until_closed(&mut conn.stream).await
}
