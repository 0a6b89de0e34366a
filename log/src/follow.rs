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
}

impl Follower {
    pub(crate) fn new(reader: Reader, rx: watch::Receiver<Arc<SegmentTable>>) -> Follower {
        Follower { reader, rx }
    }

    /// The position of the next record.
    pub fn next_position(&self) -> Position {
        self.reader.next_position()
    }

    /// The next record: at once if it is durable, else when it becomes so.
    /// `None` once the log is closed and everything durable was returned.
    pub async fn next(&mut self) -> Option<Result<Record, Error>> {
        loop {
            if let Some(item) = self.reader.next() {
                return Some(item);
            }
            if self.rx.changed().await.is_err() {
                // The writer is gone; deliver whatever it made durable last.
                let table = self.rx.borrow().clone();
                if table.end() > self.reader.next_position() {
                    self.reader.extend(table);
                    continue;
                }
                return None;
            }
            let table = self.rx.borrow_and_update().clone();
            self.reader.extend(table);
        }
    }

    /// The next record if one is durable now, without waiting.
    pub fn try_next(&mut self) -> Option<Result<Record, Error>> {
        if let Some(item) = self.reader.next() {
            return Some(item);
        }
        let table = self.rx.borrow_and_update().clone();
        self.reader.extend(table);
        self.reader.next()
    }
}
