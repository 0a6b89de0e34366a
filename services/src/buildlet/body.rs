//! Bodies between async and blocking code: a request body read as a
//! `std::io::Read` on the blocking pool, and response bodies fed from a
//! channel (command output with its trailer, a tarball being written).

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use bytes::Buf as _;
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use tokio::sync::mpsc;

/// One frame of a channel-fed response body. An `Err` makes hyper abort
/// the connection, so the client sees a cut response, never a clean end.
pub(crate) type FrameResult = Result<Frame<Bytes>, io::Error>;

/// How much of a refused request's body is read before answering, so the
/// client sees the answer rather than a reset (Go's server drains 256 KiB).
const DRAIN_LIMIT: usize = 256 << 10;

/// A response body whose frames come from a channel. It ends when every
/// sender is gone; a trailers frame is sent as HTTP trailers.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<FrameResult>,
}

impl ChannelBody {
    /// A body and the sender that feeds it, holding up to `depth` frames.
    pub(crate) fn channel(depth: usize) -> (mpsc::Sender<FrameResult>, ChannelBody) {
        let (tx, rx) = mpsc::channel(depth);
        (tx, ChannelBody { rx })
    }
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// It was longer than allowed (413).
    #[error("request body too large")]
    TooLarge,
    /// The connection failed mid-body.
    #[error("reading the request body: {0}")]
    Read(String),
    /// The blocking work panicked or was cancelled.
    #[error("the request's work failed: {0}")]
    Worker(String),
}

/// Runs `work` on the blocking pool with `body` as its reader, at most
/// `limit` bytes (beyond, the reader fails and this returns
/// [`BodyError::TooLarge`], whatever `work` returned). If `work` stops
/// reading early, the rest of the body is drained up to [`DRAIN_LIMIT`].
pub(crate) async fn with_reader<T, F>(body: Body, limit: u64, work: F) -> Result<T, BodyError>
where
    T: Send + 'static,
    F: FnOnce(BodyReader) -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    let worker = tokio::task::spawn_blocking(move || {
        work(BodyReader {
            rx,
            chunk: Bytes::new(),
        })
    });
    let pumped = pump(body, &tx, limit).await;
    // The end of the body: the reader sees EOF once it has every chunk.
    drop(tx);
    let out = worker.await.map_err(|e| BodyError::Worker(e.to_string()))?;
    pumped.map(|()| out)
}

/// Feeds `body` to the reader behind `tx`, counting against `limit`.
async fn pump(
    mut body: Body,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    limit: u64,
) -> Result<(), BodyError> {
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                // Request trailers carry nothing the buildlet reads.
                Err(_) => continue,
            },
            Err(e) => {
                let msg = e.to_string();
                let _ = tx.send(Err(io::Error::other(msg.clone()))).await;
                return Err(BodyError::Read(msg));
            }
        };
        total = total.saturating_add(data.len() as u64);
        if total > limit {
            let _ = tx
                .send(Err(io::Error::other("request body too large")))
                .await;
            return Err(BodyError::TooLarge);
        }
        if tx.send(Ok(data)).await.is_err() {
            // The work is done (or gave up) before the body's end.
            drain(body).await;
            return Ok(());
        }
    }
    Ok(())
}

/// Reads and drops up to [`DRAIN_LIMIT`] bytes of `body`.
pub(crate) async fn drain(mut body: Body) {
    let mut n = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            n += data.len();
            if n > DRAIN_LIMIT {
                return;
            }
        }
    }
}

/// A request body as blocking code reads it (only on the blocking pool: it
/// blocks the thread while waiting for the next chunk).
#[derive(Debug)]
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(chunk)) => self.chunk = chunk,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// Blocking code writing a response body: bytes are sent in chunks of
/// about 64 KiB. Once [`ChannelWriter::abort`]ed, it sends nothing more,
/// so what a dropped tar or gzip writer flushes on its way out (an
/// end-of-archive, a gzip trailer) can never make a cut stream look whole.
#[derive(Debug)]
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<FrameResult>,
    buf: Vec<u8>,
    aborted: bool,
}

const CHUNK: usize = 64 << 10;

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<FrameResult>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            aborted: false,
        }
    }

    /// Ends the response with an error: the connection is cut.
    pub(crate) fn abort(&mut self, err: io::Error) {
        if !self.aborted {
            self.aborted = true;
            self.buf = Vec::new();
            let _ = self.tx.blocking_send(Err(err));
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.aborted {
            return Err(gone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(Frame::data(data)))
            .map_err(|_| gone())
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the response was abandoned")
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.aborted {
            return Err(gone());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
