//! NATS core: SUB and PUB on one subject with echo on; a message is acknowledged when the
//! sender sees its own copy come back.

use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{answer_keepalives, find, read_loop, read_more, ClientError, Flow, Sender};
use crate::payload;
use crate::record::Shared;
use crate::RunConfig;

const SUBJECT: &str = "tertulia.bench";

pub struct Connected {
    stream: TcpStream,
    buf: Vec<u8>,
}

pub async fn connect(port: u16, id: usize) -> Result<Connected, ClientError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":true,\"name\":\"b{id}\"}}\r\nSUB {SUBJECT} 1\r\nPING\r\n"
    );
    stream.write_all(hello.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if let Some(at) = find(&buf, b"PONG\r\n") {
            buf.drain(..at + 6);
            return Ok(Connected { stream, buf });
        }
        if find(&buf, b"-ERR").is_some() {
            return Err(ClientError::Protocol(
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        read_more(&mut stream, &mut buf, "closed before subscribing").await?;
    }
}

enum Item {
    /// `MSG <subject> <sid> <len>` and its payload range.
    Msg(std::ops::Range<usize>),
    Ping,
    Other,
}

fn parse(buf: &[u8]) -> Result<Option<(Item, usize)>, ClientError> {
    let Some(eol) = find(buf, b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[..eol];
    if line.starts_with(b"MSG ") {
        let len = line
            .iter()
            .rposition(|&b| b == b' ')
            .map(|at| &line[at + 1..])
            .and_then(payload::decimal)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ClientError::Protocol("bad MSG line".into()))?;
        let start = eol + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        return Ok(Some((Item::Msg(start..start + len), start + len + 2)));
    }
    if line == b"PING" {
        return Ok(Some((Item::Ping, eol + 2)));
    }
    if line.starts_with(b"-ERR") {
        return Err(ClientError::Protocol(
            String::from_utf8_lossy(line).into_owned(),
        ));
    }
    Ok(Some((Item::Other, eol + 2)))
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
    let writer = async {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut text = Vec::with_capacity(size);
        let head = format!("PUB {SUBJECT} {size}\r\n");
        while let Some(n) = sender.wait_turn(&flow).await {
            out.clear();
            flow.take_control(&mut out);
            sender.push_lines(n, head.as_bytes(), &mut text, &mut out);
            wr.write_all(&out).await?;
        }
        answer_keepalives(&mut wr, &flow).await
    };
    let mut echoed = 0u64;
    let reader = read_loop(&mut rd, &mut buf, &rec, |buf, received| {
        let mut consumed = 0;
        while let Some((item, used)) = parse(&buf[consumed..])? {
            match item {
                Item::Msg(range) => {
                    let payload = &buf[consumed + range.start..consumed + range.end];
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
                }
                Item::Ping => flow.control(b"PONG\r\n"),
                Item::Other => {}
            }
            consumed += used;
        }
        Ok(consumed)
    });
    tokio::try_join!(writer, reader).map(|_: ((), ())| ())
}

/// Idle mode: stay connected and read what the server sends.
pub async fn sit_idle(mut conn: Connected) -> Result<(), ClientError> {
    super::discard_until_closed(&mut conn.stream).await
}
