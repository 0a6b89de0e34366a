//! `almanac log demo DIR`: the log at work on data it makes itself.
//!
//! Writes a realistic sample history with concurrent appenders (so group
//! commit shows), follows it live from another thread, then shows what
//! `log info`, `log verify` and `log dump` report, and which commands to try
//! next.

use std::io::{self, Write as _};
use std::path::Path;
use std::time::Instant;

use almanac_log::{Log, Options, Position};
use anyhow::{Context as _, Result};
use bytes::Bytes;
use prost::Message as _;

use crate::sample::SampleHistory;

const APPENDERS: u64 = 8;

/// Runs the demo.
pub fn run(dir: &Path, records: u64) -> Result<()> {
    let mut out = io::stdout().lock();
    let (log, recovery) =
        Log::open(dir, Options::default()).with_context(|| format!("opening {}", dir.display()))?;
    let start = log.end();
    writeln!(out, "== almanac log demo in {}", dir.display())?;
    if start > Position(0) {
        writeln!(
            out,
            "the log already holds {start} bytes; appending after them"
        )?;
    }
    if let Some(cut) = &recovery.torn_tail {
        writeln!(
            out,
            "recovery cut a torn tail of {} bytes (kept in {})",
            cut.len,
            cut.saved_to.display()
        )?;
    }

    // A follower on its own thread, woken by each group commit.
    let mut follower = log.follow(start)?;
    let follow_thread = std::thread::spawn(move || -> Result<u64> {
        let rt = tokio::runtime::Builder::new_current_thread().build()?;
        rt.block_on(async move {
            let mut n = 0u64;
            while n < records {
                match follower.next().await {
                    Some(rec) => {
                        rec?;
                        n += 1;
                    }
                    None => break,
                }
            }
            Ok(n)
        })
    });

    writeln!(
        out,
        "appending {records} sample mutations (issues, comments, events, git and Gerrit commits, builds) from {APPENDERS} threads..."
    )?;
    let started = Instant::now();
    let per = records / APPENDERS;
    let appenders: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let log = log.clone();
            let n = if t + 1 == APPENDERS {
                records - per * (APPENDERS - 1)
            } else {
                per
            };
            std::thread::spawn(move || -> Result<u64> {
                let mut history = SampleHistory::new(t + 1);
                let mut bytes = 0u64;
                for _ in 0..n {
                    let payload = Bytes::from(history.next_mutation().encode_to_vec());
                    bytes += payload.len() as u64;
                    log.append_blocking(vec![payload])?;
                }
                Ok(bytes)
            })
        })
        .collect();
    let mut payload_bytes = 0;
    for a in appenders {
        payload_bytes += a
            .join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    let elapsed = started.elapsed();
    let m = log.metrics();
    writeln!(
        out,
        "  {} durable appends in {elapsed:.2?}: {:.0}/s, {:.1} MB/s of payload, {} fsyncs (group commit: {:.1} appends per fsync), {} segments sealed",
        m.records,
        m.records as f64 / elapsed.as_secs_f64(),
        payload_bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        m.commits,
        m.records as f64 / m.commits.max(1) as f64,
        m.seals,
    )?;
    // Closing ends the follower once it has every durable record.
    log.close();
    drop(log);
    let followed = follow_thread
        .join()
        .map_err(|_| anyhow::anyhow!("follower panicked"))??;
    writeln!(
        out,
        "  a live follower received all {followed} records as they became durable"
    )?;

    drop(out);
    use crate::cli::log::LogCommand;
    let dir_buf = dir.to_owned();
    let shown = dir.display();
    section(
        &format!("almanac log info {shown}"),
        LogCommand::Info {
            dir: dir_buf.clone(),
        },
    )?;
    section(
        &format!("almanac log verify {shown}"),
        LogCommand::Verify {
            dir: dir_buf.clone(),
        },
    )?;
    section(
        &format!("almanac log dump {shown} --from {start} --limit 3"),
        LogCommand::Dump {
            dir: dir_buf,
            from: start.0,
            json: false,
            limit: Some(3),
        },
    )?;
    let d = dir.display();
    let mut out = io::stdout().lock();
    writeln!(out, "\n== try next")?;
    writeln!(
        out,
        "  almanac log dump {d} --json --limit 5            # canonical protobuf JSON, one per line"
    )?;
    writeln!(
        out,
        "  almanac log dump {d} --json --limit 5 | almanac log append /tmp/copy --json"
    )?;
    writeln!(out, "  almanac log verify {d}")?;
    writeln!(
        out,
        "  almanac log import /tmp/imported GO_MAINTNER_DIR  # Go disk-logger files or a godata cache"
    )?;
    writeln!(
        out,
        "  almanac corpus stats {d}                          # fold it into issues, CLs and commits"
    )?;
    writeln!(
        out,
        "  almanac gen-history --profile go --seed 1 --out /tmp/go-history  # a Go-sized history, about 2.9 GB"
    )?;
    Ok(())
}

/// Prints a heading, then runs the command it names.
fn section(heading: &str, cmd: crate::cli::log::LogCommand) -> Result<()> {
    {
        let mut out = io::stdout().lock();
        writeln!(out, "\n== {heading}")?;
        out.flush()?;
    }
    crate::cli::log::run(cmd)
}
