//! Following a live log: catch up from a position, then wake on each append.
//!
//! A [`Follower`] reads durable records like a [`Reader`]; at the durable end
//! it waits on the writer's table channel, which changes after every group
//! commit, so it wakes exactly when there is something new and never polls.
//! It holds no records in memory beyond the current read chunk: a slow
//! follower simply reads further behind, from the files. It ends when the
//! log is closed and every durable record has been delivered.

use std::sync::Arc;

use tokio::sync::watch;

use crate::read::{Error, Reader, Record};
use crate::table::{Position, SegmentTable};

/// An async stream of records from a position on, live.
#[derive(Debug)]
pub struct Follower {
    reader: Reader,
    rx: watch::Receiver<Arc<SegmentTable>>,
    /// Set after an error or the end: every later call returns `None`.
    finished: bool,
}

impl Follower {
    pub(crate) fn new(reader: Reader, rx: watch::Receiver<Arc<SegmentTable>>) -> Follower {
        Follower {
            reader,
            rx,
            finished: false,
        }
    }

    /// The position of the next record.
    pub fn next_position(&self) -> Position {
        self.reader.next_position()
    }

    /// The next record: at once if it is durable, else when it becomes so.
    /// `None` once the log is closed and everything durable was returned. An
    /// error ends the follow: later calls return `None`.
    pub async fn next(&mut self) -> Option<Result<Record, Error>> {
        loop {
            if let Some(item) = self.take() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            if self.rx.changed().await.is_err() {
                // The writer is gone: deliver what it made durable last, then
                // end.
                let table = self.rx.borrow().clone();
                self.reader.extend(table);
                let item = self.take();
                if item.is_none() {
                    self.finished = true;
                }
                return item;
            }
            let table = self.rx.borrow_and_update().clone();
            self.reader.extend(table);
        }
    }

    /// The next record if one is durable now, without waiting.
    pub fn try_next(&mut self) -> Option<Result<Record, Error>> {
        if let Some(item) = self.take() {
            return Some(item);
        }
        let table = self.rx.borrow_and_update().clone();
        self.reader.extend(table);
        self.take()
    }

    fn take(&mut self) -> Option<Result<Record, Error>> {
        if self.finished {
            return None;
        }
        let item = self.reader.next();
        if matches!(item, Some(Err(_))) {
            self.finished = true;
        }
        item
    }
}
