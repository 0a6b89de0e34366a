//! `almanac log ...`: inspect, dump, append to, verify, repair and import logs.
//!
//! Reading commands (`info`, `dump`, `verify`) never write to the directory
//! and work while a writer is appending. Writing commands (`append`,
//! `repair`, `import`) take the writer lock and refuse while another writer
//! holds it.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use almanac_log::index::SegmentStats;
use almanac_log::lock::DirLock;
use almanac_log::segment::SegmentState;
use almanac_log::{Log, Options, Position, Snapshot};
use almanac_proto::pb::maintpb::Mutation;
use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::Subcommand;
use prost::Message as _;

use crate::codec::MutationCodec;

/// The `log` subcommands.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Segments, sizes, record counts and the end position.
    Info {
        /// The log directory.
        dir: PathBuf,
    },
    /// Print records from a position on, like maintwatch.
    Dump {
        /// The log directory.
        dir: PathBuf,
        /// Start at this record position.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// One mutation per line in protobuf's canonical JSON mapping
        /// (readable back by `log append --json`).
        #[arg(long)]
        json: bool,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Append mutations given one per line on standard input; prints each
    /// record's position once it is durable.
    Append {
        /// The log directory (created if missing); or give --server.
        #[arg(required_unless_present = "server")]
        dir: Option<PathBuf>,
        /// Append through a running maintnerd's gRPC `Append` instead
        /// (`host:port`, `http://` or `https://`), which owns the log.
        #[arg(long, conflicts_with = "dir", requires = "token_file")]
        server: Option<String>,
        /// With --server: the file holding the append token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// With --server: extra CA certificates (PEM) for an https server.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Input is protobuf JSON, one mutation per line (required; the only
        /// input format).
        #[arg(long)]
        json: bool,
        /// Seal segments at this many bytes instead of Go's 16 MiB (small
        /// segments suit tests; Go's readers accept any size).
        #[arg(long, default_value_t = almanac_log::segment::SEGMENT_TARGET_LEN)]
        segment_size: u64,
    },
    /// Check every segment's SHA-224, every record's framing and decoding.
    /// Exits non-zero when anything is wrong.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
    /// Cut the log at its first bad record so appends work again, keeping a
    /// copy of everything cut in DIR/repair-<time>/.
    Repair {
        /// The log directory.
        dir: PathBuf,
    },
    /// Import Go maintner logs: a directory of maintner-YYYY-MM-DD.mutlog
    /// disk-logger files, or a godata cache directory.
    Import {
        /// The (empty or new) almanac log directory.
        dir: PathBuf,
        /// The Go log directory.
        go_log_dir: PathBuf,
    },
    /// Write a realistic sample history into DIR and show the log at work.
    Demo {
        /// Where to write the demo log.
        dir: PathBuf,
        /// How many mutations to write.
        #[arg(long, default_value_t = 200_000)]
        records: u64,
    },
}

/// Runs a `log` subcommand.
pub fn run(cmd: LogCommand) -> Result<()> {
    match cmd {
        LogCommand::Info { dir } => info(&dir),
        LogCommand::Dump {
            dir,
            from,
            json,
            limit,
        } => dump(&dir, Position(from), json, limit),
        LogCommand::Append {
            dir,
            server,
            token_file,
            ca_file,
            json,
            segment_size,
        } => {
            if !json {
                bail!("give --json: input is one protobuf-JSON mutation per line");
            }
            if let Some(server) = server {
                let token = crate::maintnerd::load_token(token_file.as_deref())?
                    .context("an append token is needed (--token-file)")?;
                return append_json_remote(
                    &server,
                    &token,
                    ca_file.as_deref(),
                    io::stdin().lock(),
                    &mut io::stdout(),
                )
                .map(|_| ());
            }
            let dir = dir.context("give a log directory or --server")?;
            let opts = Options {
                segment_target_len: segment_size,
                ..Options::default()
            };
            append_json(&dir, opts, io::stdin().lock(), &mut io::stdout()).map(|_| ())
        }
        LogCommand::Verify { dir } => verify(&dir),
        LogCommand::Repair { dir } => repair(&dir),
        LogCommand::Import { dir, go_log_dir } => import(&dir, &go_log_dir),
        LogCommand::Demo { dir, records } => crate::cli::demo::run(&dir, records),
    }
}

fn open_snapshot(dir: &Path) -> Result<Snapshot> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    Snapshot::open(dir).with_context(|| format!("reading log directory {}", dir.display()))
}

/// Segment statistics and the running writer's process id, if any. Reads
/// the segment files (at framing speed; only the first and last records of
/// each segment are decoded) and takes no lock, so it never gets in a
/// writer's way.
pub fn stats(dir: &Path, snapshot: &Snapshot) -> Result<(Vec<SegmentStats>, Option<u32>)> {
    let stats = almanac_log::log::segment_stats(snapshot.table(), None)?;
    Ok((stats, DirLock::holder(dir)))
}

fn fmt_time(t: Option<prost_types::Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_string())
}

fn human(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn info(dir: &Path) -> Result<()> {
    let snapshot = open_snapshot(dir)?;
    let (stats, writer) = stats(dir, &snapshot)?;
    let mut out = io::stdout().lock();
    let records: u64 = stats.iter().map(|s| s.records).sum();
    let sealed = stats
        .iter()
        .filter(|s| matches!(s.meta.state, SegmentState::Sealed(_)))
        .count();
    writeln!(out, "log directory:  {}", dir.display())?;
    writeln!(
        out,
        "segments:       {} ({sealed} sealed, {} growing)",
        stats.len(),
        stats.len() - sealed
    )?;
    writeln!(
        out,
        "size:           {} ({} bytes)",
        human(snapshot.end().0),
        snapshot.end().0
    )?;
    writeln!(out, "records:        {records}")?;
    writeln!(out, "end position:   {}", snapshot.end())?;
    match writer {
        Some(pid) => writeln!(out, "writer:         running (process {pid})")?,
        None => writeln!(out, "writer:         none")?,
    }
    let first = stats.iter().find_map(|s| s.first_time);
    let last = stats.iter().rev().find_map(|s| s.last_time);
    writeln!(
        out,
        "time span:      {} .. {}",
        fmt_time(first),
        fmt_time(last)
    )?;
    if !stats.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<70} {:>10} {:>8} {:>12} {:>12}  {:<20}  {:<20}",
            "segment", "bytes", "records", "start", "last record", "first time", "last time"
        )?;
    }
    for s in &stats {
        writeln!(
            out,
            "{:<70} {:>10} {:>8} {:>12} {:>12}  {:<20}  {:<20}",
            s.meta.file_name(),
            s.meta.len,
            s.records,
            s.meta.start,
            s.last_record.map_or("-".to_owned(), |p| p.to_string()),
            fmt_time(s.first_time),
            fmt_time(s.last_time),
        )?;
    }
    for stale in &snapshot.stale_growing {
        writeln!(
            out,
            "stale growing file (superseded by a sealed segment, ignored): {}",
            stale.display()
        )?;
    }
    Ok(())
}

fn dump(dir: &Path, from: Position, json: bool, limit: Option<u64>) -> Result<()> {
    let snapshot = open_snapshot(dir)?;
    let codec = MutationCodec::new()?;
    let mut reader = snapshot.read_from(from)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut n = 0u64;
    while limit.is_none_or(|l| n < l) {
        let Some(rec) = reader.next_record()? else {
            break;
        };
        n += 1;
        if json {
            let line = codec
                .to_json(&rec.payload)
                .with_context(|| format!("record at position {}", rec.position))?;
            writeln!(out, "{line}")?;
            continue;
        }
        let described = match Mutation::decode(rec.payload.clone()) {
            Ok(m) => almanac_proto::summary::describe(&m),
            Err(e) => format!("UNDECODABLE: {e}"),
        };
        writeln!(
            out,
            "\n# position {} (segment {:04}, offset {}, {} bytes): {described}",
            rec.position,
            rec.segment,
            rec.offset,
            rec.payload.len()
        )?;
        if let Ok(text) = codec.to_text(&rec.payload) {
            write!(out, "{text}")?;
        }
    }
    out.flush()?;
    if let Some(torn) = reader.torn_tail() {
        tracing::warn!(
            segment = torn.segment,
            offset = torn.offset,
            len = torn.len,
            "the growing segment ends inside a record (an append in flight, or a torn tail)"
        );
    }
    Ok(())
}

/// Appends JSON lines from `input`, printing each record's position to `out`
/// once durable. Returns how many records were appended.
/// Lines (protobuf JSON) appended per gRPC `Append`.
const REMOTE_BATCH: usize = 256;

/// `log append --server`: the same input, appended through maintnerd's
/// authenticated gRPC `Append` in batches; prints each position once the
/// server says it is durable. A bad line stops the input; everything before
/// it is appended.
pub fn append_json_remote(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    input: impl io::BufRead,
    out: &mut impl io::Write,
) -> Result<u64> {
    let codec = MutationCodec::new()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut client = rt
        .block_on(almanac_log_client::LogClient::connect_with(server, ca_file))
        .with_context(|| format!("connecting to {server}"))?
        .with_token(token);
    let mut batch: Vec<Bytes> = Vec::new();
    let mut n = 0u64;
    let mut flush = |batch: &mut Vec<Bytes>, out: &mut dyn io::Write| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let positions = rt
            .block_on(client.append(std::mem::take(batch)))
            .context("appending")?;
        for p in positions {
            writeln!(out, "{p}")?;
            n += 1;
        }
        out.flush()?;
        Ok(())
    };
    let mut bad_line = None;
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        match codec.from_json(&line) {
            Ok(p) => batch.push(Bytes::from(p)),
            Err(e) => {
                bad_line = Some(e.context(format!("line {}", i + 1)));
                break;
            }
        }
        if batch.len() >= REMOTE_BATCH {
            flush(&mut batch, out)?;
        }
    }
    flush(&mut batch, out)?;
    match bad_line {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

pub fn append_json(
    dir: &Path,
    opts: Options,
    input: impl io::BufRead,
    out: &mut (impl io::Write + Send),
) -> Result<u64> {
    let codec = MutationCodec::new()?;
    let (log, recovery) =
        Log::open(dir, opts).with_context(|| format!("opening {} for appending", dir.display()))?;
    if let Some(cut) = &recovery.torn_tail {
        tracing::warn!(offset = cut.offset, len = cut.len, saved_to = %cut.saved_to.display(), "cut a torn tail");
    }
    // The printer waits for tickets in order while lines keep arriving, so
    // many lines share one fsync; each position is printed once durable.
    let (ticket_tx, ticket_rx) = mpsc::sync_channel::<almanac_log::append::Ticket>(4096);
    let mut bad_line = None;
    let printed = std::thread::scope(|scope| -> Result<u64> {
        let printer = scope.spawn(move || -> Result<u64> {
            let mut n = 0u64;
            for ticket in ticket_rx {
                for p in ticket.wait()? {
                    writeln!(out, "{p}")?;
                    n += 1;
                }
            }
            out.flush()?;
            Ok(n)
        });
        for (n, line) in input.lines().enumerate() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    bad_line = Some(anyhow::Error::from(e).context("reading standard input"));
                    break;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let payload = match codec.from_json(&line) {
                Ok(p) => p,
                Err(e) => {
                    bad_line = Some(e.context(format!("line {}", n + 1)));
                    break;
                }
            };
            let ticket = log.submit(vec![Bytes::from(payload)])?;
            if ticket_tx.send(ticket).is_err() {
                // The printer stopped: an append failed; it reports why.
                break;
            }
        }
        drop(ticket_tx);
        printer
            .join()
            .map_err(|_| anyhow::anyhow!("the printer thread panicked"))?
    });
    log.close();
    let appended = printed?;
    if let Some(e) = bad_line {
        return Err(e.context(format!(
            "stopped; the {appended} records before it were appended"
        )));
    }
    Ok(appended)
}

fn verify(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let started = Instant::now();
    let report = almanac_log::verify::verify(dir, |p| {
        tracing::info!(
            file = %p.file.path.display(),
            done = %format!("{:.0}%", 100.0 * p.bytes_done as f64 / p.bytes_total.max(1) as f64),
            "verifying"
        );
    })?;
    let mut out = io::stdout().lock();
    for p in &report.problems {
        writeln!(out, "PROBLEM {p}")?;
    }
    for stale in &report.stale_growing {
        writeln!(out, "note: stale growing file ignored: {}", stale.display())?;
    }
    if let Some(len) = report.in_flight_tail {
        writeln!(
            out,
            "note: the writer is appending; {len} bytes of an in-flight record were not checked"
        )?;
    }
    writeln!(
        out,
        "checked {} segments, {} records, {} in {:.2?}: {}",
        report.segments,
        report.records,
        human(report.bytes),
        started.elapsed(),
        if report.is_ok() {
            "OK".to_owned()
        } else {
            format!("{} problems", report.problems.len())
        }
    )?;
    if !report.is_ok() {
        bail!(
            "{} problems in {}; `almanac log repair {}` cuts the log at the first one",
            report.problems.len(),
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

fn repair(dir: &Path) -> Result<()> {
    let report = almanac_log::repair::repair(dir)?;
    let mut out = io::stdout().lock();
    match &report.cut {
        None => writeln!(out, "no framing or decoding problem found; nothing cut")?,
        Some(cut) => {
            writeln!(
                out,
                "cut segment {:04} at offset {}: {}",
                cut.segment, cut.offset, cut.reason
            )?;
            writeln!(
                out,
                "{} bytes moved to {}:",
                cut.bytes_cut,
                cut.backup_dir.display()
            )?;
            for f in &cut.saved {
                writeln!(out, "  {}", f.display())?;
            }
        }
    }
    for note in &report.left_alone {
        writeln!(out, "not repaired: {note}")?;
    }
    if !report.left_alone.is_empty() {
        bail!("some problems need a person; see above");
    }
    Ok(())
}

fn import(dir: &Path, source: &Path) -> Result<()> {
    let (log, _) = Log::open(dir, Options::default())
        .with_context(|| format!("opening {} for appending", dir.display()))?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let report = almanac_log::import::import(&log, source, |p| {
        if last_report.elapsed().as_secs() >= 1 {
            last_report = Instant::now();
            tracing::info!(
                records = p.records,
                done = %format!("{:.0}%", 100.0 * p.bytes_done as f64 / p.bytes_total.max(1) as f64),
                "importing"
            );
        }
    })?;
    log.close();
    writeln!(
        io::stdout().lock(),
        "imported {} records ({}) from {} files in {:.2?}; end position {}",
        report.records,
        human(report.payload_bytes),
        report.files,
        started.elapsed(),
        report.end
    )?;
    Ok(())
}
