//! `almanac.log.v1.LogService`: the live log over gRPC.
//!
//! `Subscribe` catches a subscriber up from its position, reading the
//! segment files in bounded batches on a blocking thread, then follows the
//! writer's table channel and sends each record once it is durable. The
//! switch needs no handover: one [`Follower`](almanac_log::Follower) does
//! both, so there is no gap and no duplicate. The stream is polled by the
//! subscriber's HTTP/2 connection only when flow control lets it send, so a
//! slow subscriber only makes its own follower read further behind, from
//! disk, and never slows appends or other subscribers.
//!
//! `Append` checks the bearer token and every record (size, decoding)
//! before anything reaches the writer, and replies after the fsync.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use prost::Message as _;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use almanac_log::read::{self, Record};
use almanac_log::segment::SegmentState;
use almanac_log::{Follower, Position};
use almanac_proto::pb::log::log_service_server::LogService;
use almanac_proto::pb::log::{
    AppendRequest, AppendResponse, HeadRequest, HeadResponse, LogRecord, Segment, SubscribeRequest,
};
use almanac_proto::pb::maintpb::Mutation;

use super::Shared;
use super::metrics::GaugeGuard;

/// The service.
#[derive(Debug, Clone)]
pub struct LogGrpc {
    pub(super) shared: Arc<Shared>,
}

fn to_record(shared: &Shared, rec: Record) -> LogRecord {
    LogRecord {
        append_time: shared
            .log
            .append_time(rec.position)
            .map(prost_types::Timestamp::from),
        position: rec.position.0,
        mutation: rec.payload,
        segment: rec.segment,
        offset: rec.offset,
    }
}

fn read_status(e: &read::Error) -> Status {
    match e {
        read::Error::NotRecordBoundary { .. } | read::Error::PastEnd { .. } => {
            Status::out_of_range(e.to_string())
        }
        read::Error::Io { .. } | read::Error::Corrupt { .. } => Status::internal(e.to_string()),
    }
}

/// Counts a record sent to a subscriber.
fn count_sent(shared: &Shared, rec: &Record) {
    shared
        .metrics
        .records_streamed
        .fetch_add(1, Ordering::Relaxed);
    shared
        .metrics
        .grpc_bytes_streamed
        .fetch_add(rec.payload.len() as u64, Ordering::Relaxed);
}

/// How far behind the durable end a subscriber must be before it catches up
/// on a blocking thread rather than on the connection's task.
const CATCH_UP_BYTES: u64 = 1 << 20;

/// Records read per blocking catch-up step (bounded in bytes too).
const CATCH_UP_BATCH: usize = 512;

type LiveWait =
    Pin<Box<dyn Future<Output = (Follower, Option<Result<Record, read::Error>>)> + Send>>;
type CatchUp = tokio::task::JoinHandle<(Follower, Vec<Result<Record, read::Error>>)>;

/// One subscription as a stream polled directly by its HTTP/2 connection:
/// no task and no queue of its own. Far behind, it reads a bounded batch
/// on a blocking thread; near the end, it reads the tail inline and waits
/// on the writer's table channel. HTTP/2 flow control is the backpressure:
/// a subscriber that stops reading stops being polled, so its follower
/// stops reading and nothing accumulates.
struct RecordStream {
    shared: Arc<Shared>,
    follower: Option<Follower>,
    batch: std::collections::VecDeque<Result<Record, read::Error>>,
    catching_up: Option<CatchUp>,
    waiting: Option<LiveWait>,
    done: bool,
    /// Counts this subscriber while the stream lives.
    _gauge: GaugeGuard,
}

impl RecordStream {
    fn deliver(&mut self, item: Result<Record, read::Error>) -> Result<LogRecord, Status> {
        match item {
            Ok(rec) => {
                count_sent(&self.shared, &rec);
                Ok(to_record(&self.shared, rec))
            }
            Err(e) => {
                self.done = true;
                Err(read_status(&e))
            }
        }
    }
}

impl Stream for RecordStream {
    type Item = Result<LogRecord, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(item) = this.batch.pop_front() {
                return Poll::Ready(Some(this.deliver(item)));
            }
            if let Some(task) = this.catching_up.as_mut() {
                let (follower, records) = match std::pin::Pin::new(task).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(v)) => v,
                    Poll::Ready(Err(e)) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(Status::internal(e.to_string()))));
                    }
                };
                this.catching_up = None;
                this.follower = Some(follower);
                this.batch.extend(records);
                continue;
            }
            if let Some(wait) = this.waiting.as_mut() {
                let (follower, next) = match wait.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(v) => v,
                };
                this.waiting = None;
                this.follower = Some(follower);
                match next {
                    None => {
                        // The log closed (shutdown): end the stream.
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    Some(item) => return Poll::Ready(Some(this.deliver(item))),
                }
            }
            let Some(mut follower) = this.follower.take() else {
                this.done = true;
                return Poll::Ready(None);
            };
            let behind = this
                .shared
                .log
                .end()
                .0
                .saturating_sub(follower.next_position().0);
            if behind > CATCH_UP_BYTES {
                this.catching_up = Some(tokio::task::spawn_blocking(move || {
                    let mut records = Vec::new();
                    let mut bytes = 0usize;
                    while records.len() < CATCH_UP_BATCH && bytes < (1 << 20) {
                        match follower.try_next() {
                            Some(Ok(rec)) => {
                                bytes += rec.payload.len();
                                records.push(Ok(rec));
                            }
                            Some(Err(e)) => {
                                records.push(Err(e));
                                break;
                            }
                            None => break,
                        }
                    }
                    (follower, records)
                }));
                continue;
            }
            if let Some(item) = follower.try_next() {
                this.follower = Some(follower);
                return Poll::Ready(Some(this.deliver(item)));
            }
            this.waiting = Some(Box::pin(async move {
                let next = follower.next().await;
                (follower, next)
            }));
        }
    }
}

type RecordStreamBox = Pin<Box<dyn Stream<Item = Result<LogRecord, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl LogService for LogGrpc {
    type SubscribeStream = RecordStreamBox;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let from = Position(request.get_ref().from_position);
        let log = self.shared.log.clone();
        // Checking the position may walk a segment's framing: off the
        // async workers.
        let follower = tokio::task::spawn_blocking(move || log.follow(from))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| read_status(&e))?;
        tracing::debug!(from = from.0, "subscriber joined");
        Ok(Response::new(Box::pin(RecordStream {
            shared: self.shared.clone(),
            follower: Some(follower),
            batch: std::collections::VecDeque::new(),
            catching_up: None,
            waiting: None,
            done: false,
            _gauge: GaugeGuard::hold(&self.shared.metrics.subscribers),
        })))
    }

    async fn append(
        &self,
        request: Request<AppendRequest>,
    ) -> Result<Response<AppendResponse>, Status> {
        let refuse = |status: Status| {
            self.shared
                .metrics
                .appends_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(code = ?status.code(), message = status.message(), "append refused");
            status
        };
        self.check_token(&request).map_err(refuse)?;
        let records = request.into_inner().mutation;
        if records.is_empty() {
            return Err(refuse(Status::invalid_argument("no records to append")));
        }
        let max = self.shared.max_record_len;
        for (i, rec) in records.iter().enumerate() {
            if rec.len() as u64 > max {
                return Err(refuse(Status::invalid_argument(format!(
                    "record {i} is {} bytes; the largest accepted is {max}; nothing was written",
                    rec.len()
                ))));
            }
            if let Err(e) = Mutation::decode(rec.as_ref()) {
                return Err(refuse(Status::invalid_argument(format!(
                    "record {i} does not decode as a maintpb.Mutation ({e}); nothing was written"
                ))));
            }
        }
        let records: Vec<Bytes> = records;
        let positions = self
            .shared
            .log
            .append(records)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(AppendResponse {
            position: positions.into_iter().map(|p| p.0).collect(),
        }))
    }

    async fn head(&self, _request: Request<HeadRequest>) -> Result<Response<HeadResponse>, Status> {
        let table = self.shared.log.table();
        let segments = table
            .segments()
            .map(|s| Segment {
                number: s.number,
                start_position: s.start.0,
                size: s.len,
                sha224: match s.state {
                    SegmentState::Sealed(sha) => sha.to_string(),
                    SegmentState::Growing => String::new(),
                },
                sealed: matches!(s.state, SegmentState::Sealed(_)),
            })
            .collect();
        Ok(Response::new(HeadResponse {
            end_position: table.end().0,
            segments,
        }))
    }
}

impl LogGrpc {
    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(want) = self.shared.append_token.as_deref() else {
            return Err(Status::unauthenticated(
                "appends are disabled: this maintnerd has no append token (--token-file or ALMANAC_APPEND_TOKEN)",
            ));
        };
        let got = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match got {
            None => Err(Status::unauthenticated(
                "append needs `authorization: Bearer <token>` metadata",
            )),
            Some(got) if constant_time_eq(got.as_bytes(), want.as_bytes()) => Ok(()),
            Some(_) => Err(Status::unauthenticated("wrong append token")),
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
