//! `almanac retrybuilds`: clears dashboard results so the coordinator's next
//! discovery pass builds those cells again (Go's `cmd/retrybuilds`,
//! spec/coordinator.md §7).
//!
//! Go's tool reads the dashboard's failure list and calls the coordinator,
//! which deletes results in the dashboard's datastore. Here results are
//! facts in the log: the tool folds the log's farm events (from maintnerd,
//! over gRPC) to find the failures, then appends one `ResultCleared` per
//! chosen result through maintnerd's authenticated `Append`, so the
//! clearing is itself on the record (who, why). Targets are chosen as Go
//! chooses them: `--builder` (all of its failures), `--builder` with
//! `--hash` (a hash prefix among them), or `--loghash` (a log-hash prefix).
//! `--dry-run` only lists. `--substr` and `--redo-flaky` read each failure's
//! log from the coordinator that stored it (`/log/<hash>`), as Go's read
//! them from the dashboard, and keep the failures whose log contains the
//! text or looks flaky by Go's rules; either may be narrowed by
//! `--builder`. A failure whose log cannot be fetched is reported and left
//! alone.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use clap::Args;
use prost::Message as _;

use almanac_log_client::grpc::{LogClient, record_end};
use almanac_projections::Projection as _;
use almanac_projections::farm::Farm;
use almanac_proto::pb::farm::{EventMeta, ResultCleared, ResultEvent, ResultKey, result_event};
use almanac_proto::pb::maintpb::Mutation;

/// `almanac retrybuilds`.
#[derive(Debug, Args)]
pub struct RetrybuildsArgs {
    /// maintnerd's gRPC address (`host:port` or a URL).
    #[arg(long, default_value = "127.0.0.1:8020")]
    pub server: String,
    /// File holding maintnerd's append token (else `ALMANAC_APPEND_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Clear this builder's failures.
    #[arg(long)]
    pub builder: Option<String>,
    /// With --builder: only commits whose hash starts with this.
    #[arg(long, requires = "builder")]
    pub hash: Option<String>,
    /// Clear failures whose log hash starts with this.
    #[arg(long, conflicts_with_all = ["builder", "hash"])]
    pub loghash: Option<String>,
    /// Clear failures whose log contains this text (with --builder: only
    /// that builder's).
    #[arg(long, conflicts_with_all = ["hash", "loghash"])]
    pub substr: Option<String>,
    /// Clear failures whose log looks flaky by Go's rules (with --builder:
    /// only that builder's).
    #[arg(long, conflicts_with_all = ["hash", "loghash", "substr"])]
    pub redo_flaky: bool,
    /// The coordinator serving the logs (`/log/<hash>`), for --substr and
    /// --redo-flaky.
    #[arg(long, default_value = "http://127.0.0.1:8030")]
    pub coordinator: String,
    /// List what would be cleared; append nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Recorded as who cleared the results.
    #[arg(long, default_value = "retrybuilds")]
    pub actor: String,
}

/// One failed result, as the fold holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    builder: String,
    package_path: String,
    hash: String,
    go_hash: String,
    log_hash: String,
}

pub fn run(args: RetrybuildsArgs) -> Result<()> {
    let by_log = args.substr.is_some() || args.redo_flaky;
    anyhow::ensure!(
        args.builder.is_some() || args.loghash.is_some() || by_log,
        "choose results to clear with --builder [--hash PREFIX], --loghash PREFIX, \
         --substr TEXT or --redo-flaky"
    );
    let token = crate::maintnerd::load_token(args.token_file.as_deref())?;
    if token.is_none() && !args.dry_run {
        anyhow::bail!("an append token is needed (--token-file or ALMANAC_APPEND_TOKEN)");
    }
    super::maint::runtime()?.block_on(async move {
        let mut client = LogClient::connect(&args.server)
            .await
            .with_context(|| format!("connecting to {}", args.server))?;
        let failures = read_failures(&mut client).await?;
        let mut chosen: Vec<&Failure> = failures
            .iter()
            .filter(|f| match (&args.builder, &args.hash, &args.loghash) {
                (Some(b), hash, _) => {
                    f.builder == *b && hash.as_ref().is_none_or(|h| f.hash.starts_with(h.as_str()))
                }
                (None, _, Some(prefix)) => f.log_hash.starts_with(prefix.as_str()),
                (None, _, None) => by_log,
            })
            .collect();
        if by_log {
            let logs = crate::http_get::Client::new(&args.coordinator)?;
            let mut kept = Vec::new();
            for f in chosen {
                if f.log_hash.is_empty() {
                    eprintln!("{} {}: no log recorded; left alone", f.builder, f.hash);
                    continue;
                }
                let url = format!("{}/log/{}", logs.base(), f.log_hash);
                let text = match logs.get(&url, MAX_LOG).await {
                    Ok((status, body)) if status.is_success() => {
                        String::from_utf8_lossy(&body).into_owned()
                    }
                    Ok((status, _)) => {
                        eprintln!("{} {}: GET {url}: {status}; left alone", f.builder, f.hash);
                        continue;
                    }
                    Err(e) => {
                        eprintln!("{} {}: GET {url}: {e:#}; left alone", f.builder, f.hash);
                        continue;
                    }
                };
                let wanted = match &args.substr {
                    Some(needle) => text.contains(needle.as_str()),
                    None => is_flaky(&text),
                };
                if wanted {
                    kept.push(f);
                }
            }
            chosen = kept;
        }
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for f in &chosen {
                writeln!(out, "{}\t{}\t{}", f.builder, f.hash, f.log_hash)?;
            }
        }
        if args.dry_run || chosen.is_empty() {
            eprintln!(
                "{} of {} failures chosen{}",
                chosen.len(),
                failures.len(),
                if args.dry_run {
                    " (dry run: nothing cleared)"
                } else {
                    ""
                }
            );
            return Ok(());
        }
        let records: Vec<Bytes> = chosen
            .iter()
            .map(|f| {
                Bytes::from(
                    Mutation {
                        result: Some(ResultEvent {
                            meta: Some(EventMeta {
                                correlation_id: format!("{}@{}", f.builder, f.hash),
                                ..Default::default()
                            }),
                            event: Some(result_event::Event::ResultCleared(ResultCleared {
                                key: Some(ResultKey {
                                    builder: f.builder.clone(),
                                    package_path: f.package_path.clone(),
                                    hash: f.hash.clone(),
                                    go_hash: f.go_hash.clone(),
                                }),
                                actor: args.actor.clone(),
                                reason: "retrybuilds".into(),
                            })),
                        }),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
            })
            .collect();
        let mut client = client.with_token(token.unwrap_or_default());
        let positions = client
            .append(records)
            .await
            .context("appending the clearings (is the token right?)")?;
        eprintln!(
            "cleared {} of {} failures (log positions {}..)",
            positions.len(),
            failures.len(),
            positions.first().copied().unwrap_or(0)
        );
        Ok(())
    })
}

/// The largest failure log read.
const MAX_LOG: usize = 64 << 20;

/// Text in a failure log that marks the failure as the machine's or the
/// network's rather than the code's (Go's list, plus the cases its later
/// versions add: the kernel's OOM killer, allocation failures, DNS
/// timeouts).
const FLAKE_PHRASES: &[&str] = &[
    "No space left on device",
    "no space left on device",
    "fatal error: error in backend: IO failure on output stream",
    "Boffset: unknown state 0",
    "Bseek: unknown state 0",
    "error exporting repository: exit status",
    "remote error: User Is Over Quota",
    "fatal: remote did not send all necessary objects",
    "Failed to schedule \"",
    "signal: killed",
    "fatal error: runtime: out of memory",
    "cannot allocate memory",
    "i/o timeout",
    "Temporary failure in name resolution",
];

/// Go's `isFlaky`: does a failure's log look like the machine's fault?
fn is_flaky(log: &str) -> bool {
    if log.matches('\n').count() < 2 {
        return true;
    }
    if ["exit status ", "timed out after ", "Failed to schedule "]
        .iter()
        .any(|p| log.starts_with(p))
    {
        return true;
    }
    if FLAKE_PHRASES.iter().any(|p| log.contains(p)) {
        return true;
    }
    if log.matches('\n').count() < 20 && log.contains("error: exit status") {
        return true;
    }
    log.contains("fatal: destination path '")
        && log.contains("' already exists and is not an empty directory.")
}

/// Folds the whole log (up to its end now) and lists the failed results.
async fn read_failures(client: &mut LogClient) -> Result<Vec<Failure>> {
    let end = client
        .head()
        .await
        .context("asking for the log's end")?
        .end_position;
    let mut farm = Farm::new();
    if end > 0 {
        let mut stream = client.subscribe(0).await.context("reading the log")?;
        while let Some(record) = stream.message().await.context("reading the log")? {
            let m = Mutation::decode(record.mutation.as_ref())
                .with_context(|| format!("record at {}", record.position))?;
            farm.apply(almanac_log::Position(record.position), &m)
                .context("folding farm events")?;
            if record_end(&record) >= end {
                break;
            }
        }
    }
    Ok(farm
        .results()
        .filter(|(_, r)| !r.ok)
        .map(|((builder, package_path, hash, go_hash), r)| Failure {
            builder: builder.clone(),
            package_path: package_path.clone(),
            hash: hash.clone(),
            go_hash: go_hash.clone(),
            log_hash: r.log_hash.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::is_flaky;

    #[test]
    fn flaky_logs_are_recognised_as_go_does() {
        let long_failure = "building\n".repeat(30) + "--- FAIL: TestX\nFAIL\n";
        assert!(!is_flaky(&long_failure));
        assert!(is_flaky("one line only\n"));
        assert!(is_flaky("exit status 2\nmore\nlines\n"));
        assert!(is_flaky("timed out after 30m\nmore\nlines\n"));
        assert!(is_flaky(&format!(
            "{long_failure}write /tmp/x: No space left on device\n"
        )));
        assert!(is_flaky(&format!("{long_failure}signal: killed\n")));
        assert!(is_flaky("a\nb\nerror: exit status 1\n"));
        assert!(!is_flaky(&("line\n".repeat(25) + "error: exit status 1\n")));
        assert!(is_flaky(&format!(
            "{long_failure}fatal: destination path 'go.tools.TMP' already exists and is not an empty directory.\n"
        )));
    }
}
