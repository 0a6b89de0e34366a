//! `almanac corpus ...` and `almanac gen-history`: load the corpus from a
//! log directory, and generate Go-shaped logs to load.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use almanac_log::{Log, Options};
use almanac_projections::corpus::Corpus;
use almanac_projections::load::{LoadOptions, godata_dir};
use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message as _;

use crate::history::{History, Profile};

/// The `corpus` subcommands.
#[derive(Debug, Subcommand)]
pub enum CorpusCommand {
    /// Load a log directory into the corpus and print its counts and the
    /// load time.
    Stats {
        /// The log directory (default: the godata cache,
        /// `$XDG_CACHE_HOME/golang-maintner` or `~/.cache/golang-maintner`).
        dir: Option<PathBuf>,
        /// Skip records that do not decode (counted) instead of stopping.
        #[arg(long)]
        skip_undecodable: bool,
        /// Start from this checkpoint when it exists (then fold only what
        /// the log gained since), and save the loaded corpus to it.
        #[arg(long, conflicts_with = "server")]
        checkpoint: Option<PathBuf>,
        /// First sync DIR from this maintner `/logs` server (godata's
        /// algorithm: only missing bytes, every segment's SHA-224 checked),
        /// e.g. `https://maintner.golang.org/logs`.
        #[arg(long)]
        server: Option<String>,
        /// Extra CA certificates (PEM) to trust for an https server.
        #[arg(long, requires = "server")]
        ca_file: Option<PathBuf>,
    },
}

/// Which shape of history to generate.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileName {
    /// A few MB, for tests.
    Small,
    /// Go's real history: about 3 GB.
    Go,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs a `corpus` subcommand.
pub fn run(cmd: CorpusCommand) -> Result<()> {
    match cmd {
        CorpusCommand::Stats {
            dir,
            skip_undecodable,
            checkpoint,
            server,
            ca_file,
        } => match server {
            Some(url) => stats_network(&url, dir, ca_file, skip_undecodable),
            None => stats(dir, skip_undecodable, checkpoint.as_deref()),
        },
    }
}

/// `corpus stats --server URL [DIR]`: sync the cache from the server, then
/// fold it, with a progress bar for each.
fn stats_network(
    url: &str,
    dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    skip_undecodable: bool,
) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => godata_dir().context("no cache directory given and no home directory")?,
    };
    let started = Instant::now();
    let download = bar(0, "syncing");
    let shown = download.clone();
    let net = almanac_log_client::NetOptions {
        ca_file,
        progress: Some(std::sync::Arc::new(
            move |p: almanac_log_client::SyncProgress| {
                shown.set_length(p.total);
                shown.set_position(p.done);
            },
        )),
        ..almanac_log_client::NetOptions::default()
    };
    let folding = bar(0, "loading");
    let opts = LoadOptions {
        skip_undecodable,
        progress: Some(Box::new(|p| {
            download.finish_and_clear();
            folding.set_length(p.end.0);
            folding.set_position(p.position.0);
        })),
    };
    let corpus = Corpus::open_network_with(url, &dir, net, opts)
        .with_context(|| format!("loading {url} into {}", dir.display()))?;
    folding.finish_and_clear();
    let elapsed = started.elapsed();
    let mut out = io::stdout().lock();
    write!(out, "{}", corpus.counts())?;
    write_git_repos(&mut out, &corpus)?;
    writeln!(
        out,
        "synced {} from {url} and loaded {} bytes in {:.2?}",
        dir.display(),
        corpus.position(),
        elapsed
    )?;
    Ok(())
}

fn stats(dir: Option<PathBuf>, skip_undecodable: bool, checkpoint: Option<&Path>) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => godata_dir().context("no log directory given and no home directory")?,
    };
    if !dir.is_dir() {
        bail!("{} is not a log directory", dir.display());
    }
    let started = Instant::now();
    let progress = bar(0, "loading");
    let opts = LoadOptions {
        skip_undecodable,
        progress: Some(Box::new(|p| {
            progress.set_length(p.end.0);
            progress.set_position(p.position.0);
        })),
    };
    let mut from_checkpoint = None;
    let corpus = match checkpoint.filter(|c| c.exists()) {
        Some(path) => {
            let mut corpus = Corpus::open_checkpoint(path)?;
            let opened = started.elapsed();
            let wanted = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if let Some(folded) = corpus.log_dir().filter(|d| *d != wanted) {
                bail!(
                    "checkpoint {} was folded from {}, not {}",
                    path.display(),
                    folded.display(),
                    wanted.display()
                );
            }
            let at = corpus.position();
            corpus
                .update_with(opts)
                .with_context(|| format!("folding {} since the checkpoint", dir.display()))?;
            from_checkpoint = Some((opened, at));
            corpus
        }
        None => {
            Corpus::open_with(&dir, opts).with_context(|| format!("loading {}", dir.display()))?
        }
    };
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let bytes = corpus.position().0;
    let mut out = io::stdout().lock();
    write!(out, "{}", corpus.counts())?;
    write_git_repos(&mut out, &corpus)?;
    let mem = corpus.memory_use();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    writeln!(
        out,
        "memory (approx.):   {:.0} MiB: texts {:.0}, symbols {:.0}, github {:.0}, git {:.0}, gerrit {:.0}",
        mib(mem.total()),
        mib(mem.texts),
        mib(mem.symbols),
        mib(mem.github),
        mib(mem.git),
        mib(mem.gerrit)
    )?;
    let skipped = corpus.skipped();
    if skipped.total() > 0 {
        writeln!(out, "skipped:            {skipped:?}")?;
    }
    match from_checkpoint {
        Some((opened, at)) => writeln!(
            out,
            "opened the checkpoint (position {at}) in {opened:.2?}, then folded {} bytes more; {:.2?} in all",
            bytes - at.0,
            elapsed
        )?,
        None => writeln!(
            out,
            "loaded {} bytes in {:.2?}: {:.0} MB/s, {:.0} records/s",
            bytes,
            elapsed,
            bytes as f64 / 1e6 / elapsed.as_secs_f64(),
            corpus.counts().mutations as f64 / elapsed.as_secs_f64()
        )?,
    }
    if let Some(path) = checkpoint {
        let saving = Instant::now();
        corpus.save_checkpoint(path)?;
        writeln!(
            out,
            "saved the checkpoint at position {} to {} in {:.2?}",
            corpus.position(),
            path.display(),
            saving.elapsed()
        )?;
    }
    Ok(())
}

/// `almanac gen-history`.
pub fn gen_history(profile: ProfileName, seed: u64, out: &Path, target: Option<u64>) -> Result<()> {
    let base = match profile {
        ProfileName::Small => Profile::SMALL,
        ProfileName::Go => Profile::GO,
    };
    let nominal = base.nominal_size();
    let profile = match target {
        Some(t) => base.scaled(t as f64 / nominal as f64),
        None => base,
    };
    let (log, _) =
        Log::open(out, Options::default()).with_context(|| format!("opening {}", out.display()))?;
    if log.end().0 > 0 {
        bail!(
            "{} already holds a log; generate into an empty directory",
            out.display()
        );
    }
    let expected = target.unwrap_or(nominal);
    let progress = bar(expected, "generating");
    let started = Instant::now();
    let mut history = History::new(profile, seed);
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut in_flight = std::collections::VecDeque::new();
    let mut records = 0u64;
    while let Some(m) = history.next_mutation() {
        let b = Bytes::from(m.encode_to_vec());
        batch_bytes += b.len();
        batch.push(b);
        records += 1;
        if batch_bytes >= 4 << 20 {
            in_flight.push_back(log.submit(std::mem::take(&mut batch))?);
            batch_bytes = 0;
            if in_flight.len() > 2
                && let Some(t) = in_flight.pop_front()
            {
                t.wait()?;
            }
            progress.set_position(log.end().0);
        }
    }
    if !batch.is_empty() {
        in_flight.push_back(log.submit(batch)?);
    }
    for t in in_flight {
        t.wait()?;
    }
    progress.finish_and_clear();
    let end = log.end();
    log.close();
    writeln!(
        io::stdout().lock(),
        "wrote {records} mutations, {} bytes, to {} in {:.2?} ({profile:?}, seed {seed})",
        end.0,
        out.display(),
        started.elapsed()
    )?;
    Ok(())
}

/// The plain git repositories (almanac's `GitMutation.refs`), after Go's
/// counts, which have no line for them.
fn write_git_repos(out: &mut impl io::Write, corpus: &Corpus) -> io::Result<()> {
    let repos: Vec<String> = corpus
        .git_repos()
        .map(|r| format!("{} ({} refs)", r.name(), r.refs().count()))
        .collect();
    if !repos.is_empty() {
        writeln!(out, "{:<20}{}", "git repos:", repos.join(", "))?;
    }
    Ok(())
}
