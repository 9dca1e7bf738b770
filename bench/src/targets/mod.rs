//! One module per target: connect and join, then send (window or rate) and verify deliveries.

pub mod irc;
pub mod nats;
pub mod redis;
pub mod tertulia;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::payload::{self, Header};
use crate::record::Shared;
use crate::{Mode, RunConfig};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Idle mode: read and discard whatever the server sends, as a real idle client does (a chat
/// client keeps reading join notices while its user is silent). Returns only when the
/// connection ends, which for an idle client is an error.
pub async fn discard_until_closed(stream: &mut TcpStream) -> Result<(), ClientError> {
    let mut buf = [0u8; 4096];
    loop {
        if stream.read(&mut buf).await? == 0 {
            return Err(ClientError::Protocol(
                "the server closed an idle connection".into(),
            ));
        }
    }
}

/// Read more of what the server sends into `buf`; the server closing the connection is an
/// error, `closed` says when it happened (e.g. "closed before subscribing").
pub async fn read_more<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    closed: &str,
) -> Result<(), ClientError> {
    if rd.read_buf(buf).await? == 0 {
        return Err(ClientError::Protocol(closed.into()));
    }
    Ok(())
}

/// The most a reader holds unparsed: a unit (frame, line, push) larger than this is an error,
/// not a reason to grow the buffer (the largest real unit is a Tertulia frame of at most
/// `MAX_BODY` bytes plus its header).
const MAX_UNPARSED: usize = 2 * tertulia_core::frame::MAX_BODY + 64 * 1024;

/// How much one read may take: every target's reader reads up to 256 KiB at a time. (With
/// 64 KiB reads Redis spent 0.44–0.57 server CPU-µs per delivery at N = 100, with 256 KiB
/// 0.42–0.45, in one A/B run; an independent C generator reading 256 KiB got 0.44–0.54.)
const READ_SIZE: usize = 256 * 1024;

/// A client's reader during the run: `parse` is given the bytes not parsed yet (starting with
/// those left over from connecting) and the time they arrived, handles every complete unit at
/// their start and returns how many bytes that was; the rest waits for the next read. Every
/// unit of one read arrived at the same time: one clock read per read. Returns only when the
/// server closes the connection, which during a run is an error. Every target reads the same
/// way: one task per client, reads of up to [`READ_SIZE`], every complete unit of a read
/// parsed in place without allocating.
pub async fn read_loop<R, F>(
    rd: &mut R,
    buf: &mut Vec<u8>,
    rec: &Shared,
    mut parse: F,
) -> Result<(), ClientError>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8], u64) -> Result<usize, ClientError>,
{
    let mut received = rec.borrow().now_ns();
    loop {
        let consumed = parse(buf, received)?;
        buf.drain(..consumed);
        if buf.len() > MAX_UNPARSED {
            return Err(ClientError::Protocol(format!(
                "over {MAX_UNPARSED} bytes without a complete unit"
            )));
        }
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        read_more(rd, buf, "the server closed the connection").await?;
        received = rec.borrow().now_ns();
    }
}

/// A writer that has sent everything: keep the connection open (closing our side would end
/// the session) and keep writing what the reader asks for (keep-alive answers) until the run
/// is over.
pub async fn answer_keepalives<W: AsyncWrite + Unpin>(
    wr: &mut W,
    flow: &Flow,
) -> Result<(), ClientError> {
    loop {
        flow.changed.notified().await;
        let mut out = Vec::new();
        flow.take_control(&mut out);
        if !out.is_empty() {
            wr.write_all(&out).await?;
        }
    }
}

/// The flow control between a client's reader and its writer.
#[derive(Default)]
pub struct Flow {
    /// Messages of ours acknowledged (or echoed) so far.
    pub acked: Cell<u64>,
    /// Messages of ours handed to the connection so far (set by [`Sender::wait_turn`]).
    pub sent: Cell<u64>,
    pub changed: Notify,
    /// Frames (or protocol units) the reader has handled, and bytes left unparsed (diagnostics).
    pub frames: Cell<u64>,
    pub pending_bytes: Cell<usize>,
    /// Bytes the reader needs written (protocol keep-alive answers).
    pub control: RefCell<Vec<u8>>,
}

impl Flow {
    pub fn ack(&self, count: u64) {
        self.acked.set(count);
        self.changed.notify_one();
    }

    /// Ask the writer to send `bytes` soon (e.g. a PONG).
    pub fn control(&self, bytes: &[u8]) {
        self.control.borrow_mut().extend_from_slice(bytes);
        self.changed.notify_one();
    }

    /// Our own message `seq` came back on our connection (targets that deliver a sender's
    /// own copy): note how many of ours were still out, for [`crate::record::Recorder`]'s
    /// `max_in_flight` — what a window of W must keep at W or below.
    pub fn own_copy(&self, seq: u32, rec: &mut crate::record::Recorder) {
        let out = self.sent.get().saturating_sub(u64::from(seq));
        rec.max_in_flight = rec.max_in_flight.max(out);
    }

    /// Take what the reader asked to be written.
    pub fn take_control(&self, out: &mut Vec<u8>) {
        out.append(&mut self.control.borrow_mut());
    }
}

/// The messages one client sends, produced on demand by [`Sender::next_batch`].
pub struct Sender {
    pub id: u32,
    pub sent: u64,
    cfg: Rc<RunConfig>,
    rec: Shared,
    start: Instant,
    phase: Duration,
}

impl Sender {
    pub fn new(id: u32, cfg: Rc<RunConfig>, rec: Shared, start: Instant) -> Self {
        let phase = match cfg.mode {
            Mode::Rate(rate) => Duration::from_secs_f64(rand::random::<f64>() / rate.max(0.001)),
            _ => Duration::ZERO,
        };
        Self {
            id,
            sent: 0,
            cfg,
            rec,
            start,
            phase,
        }
    }

    /// Sent everything, or the run asked senders to stop (the end of a timed run).
    pub fn done(&self) -> bool {
        self.sent >= self.cfg.messages || self.rec.borrow().stop
    }

    /// Wait until more may be sent: `Some(n)` messages now (`n` may be 0 when only control
    /// bytes are waiting to be written), `None` when this client has sent everything.
    pub async fn wait_turn(&mut self, flow: &Flow) -> Option<u64> {
        if self.done() {
            return None;
        }
        match self.cfg.mode {
            Mode::Window(window) => loop {
                if self.done() {
                    return None;
                }
                let in_flight = self.sent - flow.acked.get().min(self.sent);
                if in_flight < window {
                    let n = (window - in_flight).min(self.cfg.messages - self.sent);
                    flow.sent.set(self.sent + n);
                    return Some(n);
                }
                if !flow.control.borrow().is_empty() {
                    return Some(0);
                }
                flow.changed.notified().await;
            },
            Mode::Rate(rate) => {
                let due =
                    self.start + self.phase + Duration::from_secs_f64(self.sent as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let lag = Instant::now().saturating_duration_since(due);
                self.rec.borrow_mut().record_lag(lag.as_micros() as u64);
                flow.sent.set(self.sent + 1);
                Some(1)
            }
            Mode::Idle => None,
        }
    }

    /// Our next `n` messages as lines of a text protocol — `head`, the payload, CRLF — each
    /// payload built in `text` first (writing it straight into `out` cost the NATS generator
    /// about 20% more CPU).
    pub fn push_lines(&mut self, n: u64, head: &[u8], text: &mut Vec<u8>, out: &mut Vec<u8>) {
        for _ in 0..n {
            text.clear();
            self.next_payload(text);
            out.extend_from_slice(head);
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The payload of our next message (timestamped now).
    pub fn next_payload(&mut self, out: &mut Vec<u8>) {
        let header = Header {
            sender: self.id,
            seq: self.sent as u32,
            sent_ns: self.rec.borrow().now_ns(),
        };
        payload::write(out, header, self.cfg.size);
        self.sent += 1;
        self.rec.borrow_mut().sent += 1;
    }
}

/// Find `needle` in `haystack`: scan for its first byte, then compare (the readers call this
/// for every line or unit they parse).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if haystack.get(at + 1..at + needle.len())? == rest {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn find_matches_a_naive_search() {
        let hay = b"ab\r\r\nPRIVMSG #x :PRIV PRIVMSG\r\n";
        for needle in [
            &b"\r\n"[..],
            b"PRIVMSG",
            b" :",
            b"PRIV ",
            b"zz",
            b"\n",
            b"a",
        ] {
            let naive = hay.windows(needle.len()).position(|w| w == needle);
            assert_eq!(find(hay, needle), naive, "{needle:?}");
        }
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b"a"), None);
    }
}
