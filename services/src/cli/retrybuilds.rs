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
//! `--dry-run` only lists. Go's `--substr` and `--redo-flaky` read failure
//! logs, which the log does not hold yet; they are refused with a clear
//! error rather than guessed.

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
    /// Go's: clear failures whose log contains this (not supported yet).
    #[arg(long)]
    pub substr: Option<String>,
    /// Go's: clear failures whose log looks flaky (not supported yet).
    #[arg(long)]
    pub redo_flaky: bool,
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
    anyhow::ensure!(
        args.substr.is_none() && !args.redo_flaky,
        "--substr and --redo-flaky read failure logs, which the log does not hold yet; \
         choose results with --builder [--hash] or --loghash"
    );
    anyhow::ensure!(
        args.builder.is_some() || args.loghash.is_some(),
        "choose results to clear with --builder [--hash PREFIX] or --loghash PREFIX"
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
        let chosen: Vec<&Failure> = failures
            .iter()
            .filter(|f| match (&args.builder, &args.hash, &args.loghash) {
                (Some(b), hash, _) => {
                    f.builder == *b && hash.as_ref().is_none_or(|h| f.hash.starts_with(h.as_str()))
                }
                (None, _, Some(prefix)) => f.log_hash.starts_with(prefix.as_str()),
                (None, _, None) => false,
            })
            .collect();
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
