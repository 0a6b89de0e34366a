//! The event buffer: recent events in time order, and the long-polls
//! waiting for the next one (spec/bots.md §3.3).
//!
//! Rules, as Go's `publish`:
//! 1. Publishing stamps the event's `Time`, appends it, and renders its JSON
//!    once (every reader gets the same bytes).
//! 2. Only when more than [`KEEP_MIN`] events are buffered, every leading
//!    event older than [`MAX_AGE`] is dropped (so the buffer can then hold
//!    fewer than [`KEEP_MIN`], as Go's does). Trimming happens only here.
//! 3. Every waiting long-poll receives the event.
//!
//! One strengthening: stamps strictly increase, even if the wall clock
//! steps back or two events land in the same nanosecond, so a client that
//! resumes `after` the last `Time` it saw never skips or repeats one.
//!
//! No lost wake-up: a long-poll checks the buffer and subscribes under the
//! same lock `publish` appends and broadcasts under.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::broadcast;

use super::event::{Event, Time3339};

/// Old events are trimmed only while more than this many are buffered.
pub const KEEP_MIN: usize = 50;

/// Events older than this are trimmed (once more than [`KEEP_MIN`] are
/// buffered).
pub const MAX_AGE: TimeDelta = TimeDelta::hours(1);

/// Publishes a slow long-poll may fall behind by before it skips to newer
/// ones; it takes only the first anyway.
const WAKE_CAPACITY: usize = 64;

/// An event as published: stamped, and rendered once.
#[derive(Debug)]
pub(crate) struct Published {
    /// The stamp, also in `event.time`.
    pub(crate) time: DateTime<Utc>,
    pub(crate) event: Event,
    /// `event` as Go's `json.MarshalIndent` writes it.
    pub(crate) json: String,
}

/// What a long-poll does next.
pub(crate) enum Next {
    /// An event newer than `after` is buffered: answer at once.
    Ready(Arc<Published>),
    /// Nothing yet: wait on this receiver for the next publish.
    Wait(broadcast::Receiver<Arc<Published>>),
}

#[derive(Debug)]
pub(crate) struct Buffer {
    inner: Mutex<Inner>,
    wake: broadcast::Sender<Arc<Published>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Oldest first; stamps strictly increase.
    recent: VecDeque<Arc<Published>>,
    /// The last stamp handed out, by a publish or a long-poll timeout.
    last: Option<DateTime<Utc>>,
}

impl Inner {
    /// `now`, or just after the last stamp if the clock has not moved past it.
    fn stamp(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let time = match self.last {
            Some(last) if now <= last => last + TimeDelta::nanoseconds(1),
            _ => now,
        };
        self.last = Some(time);
        time
    }

    fn oldest_after(&self, after: DateTime<Utc>) -> Option<Arc<Published>> {
        self.recent.iter().find(|p| p.time > after).cloned()
    }
}

impl Buffer {
    pub(crate) fn new() -> Buffer {
        let (wake, _) = broadcast::channel(WAKE_CAPACITY);
        Buffer {
            inner: Mutex::new(Inner::default()),
            wake,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave `Inner` half-updated in a way that
        // matters here; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stamps `event` with the clock, buffers it and wakes every waiter.
    pub(crate) fn publish(&self, event: Event) -> Arc<Published> {
        self.publish_at(event, Time3339::now().0)
    }

    /// [`Buffer::publish`] with the clock reading given (for tests).
    pub(crate) fn publish_at(&self, mut event: Event, now: DateTime<Utc>) -> Arc<Published> {
        let mut inner = self.lock();
        let time = inner.stamp(now);
        event.time = Time3339(time);
        let published = Arc::new(Published {
            time,
            json: event.to_go_json(),
            event,
        });
        inner.recent.push_back(published.clone());
        if inner.recent.len() > KEEP_MIN {
            let too_old = time - MAX_AGE;
            while inner.recent.front().is_some_and(|p| p.time <= too_old) {
                inner.recent.pop_front();
            }
        }
        // Nobody waiting is not an error.
        let _ = self.wake.send(published.clone());
        published
    }

    /// The oldest buffered event strictly after `after`, or a receiver for
    /// the next publish.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Next {
        let inner = self.lock();
        match inner.oldest_after(after) {
            Some(p) => Next::Ready(p),
            None => Next::Wait(self.wake.subscribe()),
        }
    }

    /// What a long-poll answers when its wait ends without a wake-up: an
    /// event that slipped in after `after` meanwhile, else a timeout event
    /// stamped under the lock, so every later publish is stamped after it
    /// and a client resuming from it misses nothing.
    pub(crate) fn timeout_or_newer(
        &self,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Arc<Published> {
        let mut inner = self.lock();
        if let Some(p) = inner.oldest_after(after) {
            return p;
        }
        let time = inner.stamp(now);
        let event = Event::long_poll_timeout(Time3339(time));
        Arc::new(Published {
            time,
            json: event.to_go_json(),
            event,
        })
    }

    /// Buffered events not before `after` (all without it), newest first.
    pub(crate) fn recent(&self, after: Option<DateTime<Utc>>) -> Vec<Arc<Published>> {
        let inner = self.lock();
        inner
            .recent
            .iter()
            .rev()
            .filter(|p| after.is_none_or(|a| p.time >= a))
            .cloned()
            .collect()
    }

    /// How many events are buffered.
    pub(crate) fn len(&self) -> usize {
        self.lock().recent.len()
    }
}
