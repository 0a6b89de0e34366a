//! Running one assigned build on its machine (spec/coordinator.md §4.5, in
//! the small): clean the work directory, write the commit's tree, run the
//! builder's steps in order through `sh -c`, stream the output into the
//! blob store as numbered chunks, and record the outcome.
//!
//! The outcome is a verdict only when every step ran to an exit status: all
//! passed, or the first failure (the later steps are not run). Anything
//! else (the machine went away, a request failed, no `Process-State`) is a
//! communication error: the machine is dropped, the build ends as
//! `COMM_ERROR`, which is never a result, and its work is requested again.
//! A post-submit verdict is recorded as the dashboard's result, with its
//! log stored and named by hash. A build whose source cannot be read here
//! (a commit the repository copy lacks) is no verdict either: it ends as
//! `COMM_ERROR`, its machine is kept, and its work waits out a backoff.
//!
//! One deliberate difference from Go, which destroys a buildlet after every
//! build: a machine is reused, its work directory emptied (`/removeall .`)
//! before each build. The buildlet kills a command's process group when
//! the command is cut short; processes a finished build left running in
//! the background survive, as they would on Go's reverse machines between
//! health checks.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use almanac_projections::farm::Build;
use almanac_proto::pb::farm::{
    BlobRef, BuildCompleted, BuildKind, BuildOutcome, BuildSkipped, BuildStarted, LogChunkAppended,
    LogStored, MachineLostReason, ResultKey, ResultRecorded, StepFinished, StepStarted,
    TryBuildConcluded, build_event, result_event,
};
use almanac_proto::pb::maintpb::Mutation;

use super::client::{BuildletClient, ClientError};
use super::run::Inner;

/// Go's limit on a source tarball.
const MAX_SOURCE: usize = 100 << 20;
/// The most build output kept (a runaway step is cut off there).
const MAX_LOG: usize = 64 << 20;
/// How often output is flushed to a log chunk while a step runs.
const CHUNK_EVERY: Duration = Duration::from_secs(2);

/// How a build ended here.
enum Ending {
    /// Every step ran; `failed` names the first that did not pass.
    Verdict { failed: Option<(String, String)> },
    /// The build cannot run at all (unknown builder).
    Skipped(String),
    /// Not a result: the machine is dropped and the build requested again
    /// (at once for the first failures of its work, then after a backoff).
    CommError(String),
    /// Not a result, and not the machine's fault (the source could not be
    /// read here): the work is tried again after a backoff.
    Unavailable(String),
}

/// Runs `build_id` on `machine_id`, records how it ended, and returns once
/// the coordinator's fold has seen that (so the build is never both done
/// and unaccounted for).
pub(crate) async fn run(inner: Arc<Inner>, build_id: String, machine_id: String) {
    let build = {
        let farm = inner.read_farm();
        farm.build(&build_id)
            .filter(|_| farm.machine_of(&build_id) == Some(machine_id.as_str()))
            .cloned()
    };
    let final_events = match build {
        None => {
            tracing::warn!(build = %build_id, machine = %machine_id, "the fold does not show this build assigned to this machine; not running it");
            Vec::new()
        }
        Some(build) => {
            let mut exec = Execution {
                inner: &inner,
                build: &build,
                machine_id: &machine_id,
                log: Vec::new(),
                chunk_from: 0,
                chunks: 0,
                truncated: false,
            };
            let started = Instant::now();
            let ending = exec.execute().await;
            let log = std::mem::take(&mut exec.log);
            finish(&inner, &build, &machine_id, ending, log, started.elapsed()).await
        }
    };
    let mut delay = Duration::from_millis(200);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match inner.append(&final_events).await {
            Ok(Some(last)) => {
                inner.wait_folded(last).await;
                break;
            }
            Ok(None) => break,
            Err(super::upstream::UpstreamError::Stopping) => {
                inner
                    .metrics
                    .builds_left_running
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(build = %build_id, "stopping: the build's end is left for the next coordinator");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(build = %build_id, error = %e, ?delay, "recording the build's end failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                // The failed append may have been durable with its answer
                // lost: catch up with the log, and send it again only if
                // the build is still not done there.
                if inner.sync_to_head().await.is_ok() && !inner.is_live(&build_id) {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(build = %build_id, error = %e, "could not record the build's end; it will be requeued");
                break;
            }
        }
    }
    inner
        .executing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&build_id);
    // The loop may be asleep; a folded change wakes it, and the end above
    // was folded. If nothing was appended, nudge it.
    inner.folded.send_modify(|_| {});
}

/// Why a build's source could not be had.
enum SourceFailure {
    /// Over Go's size limit: the commit's own doing.
    TooBig(String),
    /// Missing here (a commit not yet in the repository, a repository that
    /// does not open): retried later.
    Unavailable(String),
}

struct Execution<'a> {
    inner: &'a Arc<Inner>,
    build: &'a Build,
    machine_id: &'a str,
    /// The whole log so far.
    log: Vec<u8>,
    /// Where the next chunk starts in `log`.
    chunk_from: usize,
    chunks: u64,
    /// Whether output past [`MAX_LOG`] was dropped.
    truncated: bool,
}

impl Execution<'_> {
    async fn execute(&mut self) -> Ending {
        let inner = self.inner;
        let b = self.build;
        let Some(builder) = inner.config.envs.builders.get(&b.builder) else {
            return Ending::Skipped("unknown_builder".into());
        };
        let Some(host) = inner.config.envs.host_of(builder) else {
            return Ending::Skipped("unknown_host_type".into());
        };
        let Some(client) = inner.machines.client(self.machine_id) else {
            return Ending::CommError("the machine went away before the build started".into());
        };
        if let Err(e) = self.connected(client.remove_all(&["."])).await {
            return Ending::CommError(format!("cleaning the work directory: {e}"));
        }
        let header = match (b.sub_name.is_empty(), b.rev.is_empty()) {
            (true, _) => format!("{} at {}\n\n", b.builder, b.rev),
            (false, true) => format!("{} building {} at {}\n\n", b.builder, b.sub_name, b.sub_rev),
            (false, false) => format!(
                "{} at {} building {} at {}\n\n",
                b.builder, b.rev, b.sub_name, b.sub_rev
            ),
        };
        self.log.extend_from_slice(header.as_bytes());
        let source = match self.source().await {
            Ok(tgz) => tgz,
            Err(SourceFailure::TooBig(e)) => {
                // Go's TooBigError: a verdict on the commit, not a glitch.
                self.log
                    .extend_from_slice(format!("fetching the source: {e}\n").as_bytes());
                return Ending::Verdict {
                    failed: Some(("source".into(), e)),
                };
            }
            Err(SourceFailure::Unavailable(e)) => {
                return Ending::Unavailable(format!("fetching the source: {e}"));
            }
        };
        if let Err(e) = self
            .connected(client.put_tar(".", Bytes::from(source)))
            .await
        {
            return Ending::CommError(format!("writing the source: {e}"));
        }
        let started = inner.build_event(
            &b.build_id,
            build_event::Event::BuildStarted(BuildStarted {
                build_id: b.build_id.clone(),
                machine_id: self.machine_id.to_owned(),
            }),
        );
        if let Err(e) = inner.append(&[started]).await {
            return Ending::CommError(format!("recording the start: {e}"));
        }
        let env = builder.build_env(host);
        for (i, step) in builder.steps.iter().enumerate() {
            match self.step(&client, i, step, &env).await {
                Ok(None) => {}
                Ok(Some(state)) => {
                    return Ending::Verdict {
                        failed: Some((step.clone(), state)),
                    };
                }
                Err(e) => return Ending::CommError(e),
            }
        }
        Ending::Verdict { failed: None }
    }

    /// Why the machine is gone, if it is: a dropped connection does not
    /// always fail the requests still waiting on it, so executions watch
    /// the pool too.
    fn lost(&self) -> Option<String> {
        self.inner
            .machines
            .client(self.machine_id)
            .is_none()
            .then(|| "the machine left the pool (connection closed or health check failed)".into())
    }

    /// Runs a request to the machine, giving up if the machine leaves the
    /// pool first.
    async fn connected<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, String> {
        let (mut local, mut reverse) = self.inner.machines.changes();
        tokio::pin!(request);
        loop {
            if let Some(lost) = self.lost() {
                return Err(lost);
            }
            tokio::select! {
                r = &mut request => return r.map_err(|e| e.to_string()),
                _ = local.changed() => {}
                _ = reverse.changed() => {}
            }
        }
    }

    /// The commit's tree as a tarball, built on a blocking thread.
    async fn source(&self) -> Result<Vec<u8>, SourceFailure> {
        let b = self.build;
        let repo = if b.sub_name.is_empty() {
            "go"
        } else {
            b.sub_name.as_str()
        };
        let commit = if b.sub_rev.is_empty() {
            b.rev.clone()
        } else {
            b.sub_rev.clone()
        };
        let path = self.inner.config.repos.get(repo).cloned().ok_or_else(|| {
            SourceFailure::Unavailable(format!("no source repository configured for {repo:?}"))
        })?;
        let tgz = tokio::task::spawn_blocking(move || {
            let repo = gix::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
            super::source::tarball(&repo, &commit).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| SourceFailure::Unavailable(format!("tarball task: {e}")))?
        .map_err(SourceFailure::Unavailable)?;
        if tgz.len() > MAX_SOURCE {
            return Err(SourceFailure::TooBig(format!(
                "the source tarball is {} bytes, over the {MAX_SOURCE}-byte limit",
                tgz.len()
            )));
        }
        Ok(tgz)
    }

    /// Runs one step; `Ok(None)` if it passed, `Ok(Some(state))` if it
    /// exited unsuccessfully, `Err` on a communication failure.
    async fn step(
        &mut self,
        client: &BuildletClient,
        index: usize,
        step: &str,
        env: &[String],
    ) -> Result<Option<String>, String> {
        let inner = self.inner;
        let b = self.build;
        let step_id = format!("{}.{index}", b.build_id);
        let name: String = step.chars().take(120).collect();
        inner
            .append(&[inner.build_event(
                &b.build_id,
                build_event::Event::StepStarted(StepStarted {
                    build_id: b.build_id.clone(),
                    step_id: step_id.clone(),
                    name,
                    detail: String::new(),
                    machine_id: self.machine_id.to_owned(),
                }),
            )])
            .await
            .map_err(|e| format!("recording step {index}: {e}"))?;
        self.log.extend_from_slice(format!("$ {step}\n").as_bytes());
        let started = Instant::now();
        let pending = Arc::new(Mutex::new(Vec::new()));
        let sink = pending.clone();
        let args = ["-c", step];
        let exec = client.exec(
            "sh",
            &args,
            env,
            true,
            Some(inner.config.step_timeout),
            move |chunk: &[u8]| {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(chunk);
            },
        );
        tokio::pin!(exec);
        let mut tick = tokio::time::interval(CHUNK_EVERY);
        tick.tick().await;
        let (mut local, mut reverse) = inner.machines.changes();
        let result = loop {
            if let Some(lost) = self.lost() {
                self.take_output(&pending);
                return Err(format!("running step {index}: {lost}"));
            }
            tokio::select! {
                r = &mut exec => break r,
                _ = tick.tick() => {
                    self.take_output(&pending);
                    self.flush_chunk().await;
                }
                _ = local.changed() => {}
                _ = reverse.changed() => {}
            }
        };
        self.take_output(&pending);
        let state = match result {
            Ok(r) => r.process_state,
            Err(ClientError::NoProcessState) => {
                return Err("the command's output ended without its exit state".into());
            }
            Err(e) => return Err(format!("running step {index}: {e}")),
        };
        let error = if state == "ok" {
            String::new()
        } else {
            self.log
                .extend_from_slice(format!("\n{state}\n").as_bytes());
            state.clone()
        };
        self.flush_chunk().await;
        let elapsed = started.elapsed();
        inner
            .append(&[inner.build_event(
                &b.build_id,
                build_event::Event::StepFinished(StepFinished {
                    build_id: b.build_id.clone(),
                    step_id,
                    error: error.clone(),
                    duration: Some(prost_types::Duration {
                        seconds: i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
                        nanos: i32::try_from(elapsed.subsec_nanos()).unwrap_or(0),
                    }),
                }),
            )])
            .await
            .map_err(|e| format!("recording step {index}'s end: {e}"))?;
        Ok((!error.is_empty()).then_some(error))
    }

    fn take_output(&mut self, pending: &Mutex<Vec<u8>>) {
        let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_LOG.saturating_sub(self.log.len());
        if p.len() > room && !self.truncated {
            self.truncated = true;
            self.log.extend_from_slice(&p[..room]);
            self.log.extend_from_slice(
                format!("\n... output truncated at {MAX_LOG} bytes ...\n").as_bytes(),
            );
        } else if !self.truncated {
            self.log.extend_from_slice(&p);
        }
        p.clear();
    }

    /// Stores the output since the last chunk as the next chunk and records
    /// it. A failure here loses only the live view (the whole log is
    /// stored at the end), so it is logged, not fatal.
    async fn flush_chunk(&mut self) {
        if self.chunk_from >= self.log.len() {
            return;
        }
        let bytes = self.log[self.chunk_from..].to_vec();
        let blobs = self.inner.blobs.clone();
        let stored = tokio::task::spawn_blocking(move || blobs.put(&bytes)).await;
        let blob = match stored {
            Ok(Ok(blob)) => blob,
            Ok(Err(e)) => {
                tracing::warn!(build = %self.build.build_id, error = %e, "storing a log chunk failed");
                return;
            }
            Err(e) => {
                tracing::warn!(build = %self.build.build_id, error = %e, "log chunk task failed");
                return;
            }
        };
        let event = self.inner.build_event(
            &self.build.build_id,
            build_event::Event::LogChunkAppended(LogChunkAppended {
                build_id: self.build.build_id.clone(),
                seq: self.chunks,
                blob: Some(blob),
                inline: Bytes::new(),
                stream: "main".into(),
            }),
        );
        match self.inner.append(&[event]).await {
            Ok(_) => {
                self.chunk_from = self.log.len();
                self.chunks += 1;
            }
            Err(e) => {
                tracing::warn!(build = %self.build.build_id, error = %e, "recording a log chunk failed")
            }
        }
    }
}

/// The events that end the build.
async fn finish(
    inner: &Arc<Inner>,
    b: &Build,
    machine_id: &str,
    ending: Ending,
    mut log: Vec<u8>,
    elapsed: Duration,
) -> Vec<Mutation> {
    let (outcome, done_msg, remote_error) = match ending {
        Ending::Skipped(reason) => {
            tracing::warn!(build = %b.build_id, reason, "build skipped");
            return vec![inner.build_event(
                &b.build_id,
                build_event::Event::BuildSkipped(BuildSkipped {
                    build_id: b.build_id.clone(),
                    reason,
                    dep_sha: String::new(),
                }),
            )];
        }
        Ending::CommError(why) => {
            inner
                .metrics
                .builds_comm_error
                .fetch_add(1, Ordering::Relaxed);
            inner
                .machines
                .disconnect_because(machine_id, MachineLostReason::Broken, &why);
            let wait = inner.note_failure(b, true);
            tracing::warn!(build = %b.build_id, machine = machine_id, why, ?wait, "communication error; dropped the machine");
            let farm = inner.read_farm();
            return match wait {
                None => inner.requeue_events(&farm, b, &why, &mut BTreeSet::new()),
                Some(_) => vec![inner.comm_error_event(b, &why)],
            };
        }
        Ending::Unavailable(why) => {
            inner
                .metrics
                .builds_comm_error
                .fetch_add(1, Ordering::Relaxed);
            let wait = inner.note_failure(b, false);
            tracing::warn!(build = %b.build_id, why, ?wait, "the build could not start here; its work is tried again later");
            return vec![inner.comm_error_event(b, &why)];
        }
        Ending::Verdict { failed: None } => {
            inner.metrics.builds_passed.fetch_add(1, Ordering::Relaxed);
            (
                BuildOutcome::Passed,
                "all tests passed".to_owned(),
                String::new(),
            )
        }
        Ending::Verdict {
            failed: Some((step, state)),
        } => {
            inner.metrics.builds_failed.fetch_add(1, Ordering::Relaxed);
            (
                BuildOutcome::Failed,
                "with test failures".to_owned(),
                format!("{step}: {state}"),
            )
        }
    };
    if log.iter().filter(|&&c| c == b'\n').count() < 10 && !remote_error.is_empty() {
        log.extend_from_slice(format!("\n{remote_error}\n").as_bytes());
    }
    let blobs = inner.blobs.clone();
    let stored = tokio::task::spawn_blocking(move || blobs.put(&log)).await;
    let blob: Option<BlobRef> = match stored {
        Ok(Ok(blob)) => Some(blob),
        Ok(Err(e)) => {
            tracing::error!(build = %b.build_id, error = %e, "storing the build log failed");
            None
        }
        Err(e) => {
            tracing::error!(build = %b.build_id, error = %e, "build log task failed");
            None
        }
    };
    let log_hash = blob.as_ref().map(|l| l.sha256.clone()).unwrap_or_default();
    inner.note_verdict(b);
    tracing::info!(build = %b.build_id, builder = %b.builder, ?outcome, "build done");
    let mut events = vec![inner.build_event(
        &b.build_id,
        build_event::Event::BuildCompleted(BuildCompleted {
            build_id: b.build_id.clone(),
            outcome: outcome as i32,
            done_msg,
            remote_error,
            exec_duration: Some(prost_types::Duration {
                seconds: i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(elapsed.subsec_nanos()).unwrap_or(0),
            }),
            log: blob.clone(),
            log_url: if log_hash.is_empty() {
                String::new()
            } else {
                format!("/log/{log_hash}")
            },
        }),
    )];
    if let Some(blob) = &blob {
        events.push(inner.result_event(
            &b.build_id,
            result_event::Event::LogStored(LogStored {
                log_hash: log_hash.clone(),
                blob: Some(blob.clone()),
                size: blob.size,
                public_url: format!("/log/{log_hash}"),
            }),
        ));
    }
    if !b.try_id.is_empty() {
        events.push(inner.result_event(
            &b.build_id,
            result_event::Event::TryBuildConcluded(TryBuildConcluded {
                try_id: b.try_id.clone(),
                slot: 0,
                build_id: b.build_id.clone(),
                succeeded: outcome == BuildOutcome::Passed,
                log_url: if log_hash.is_empty() {
                    String::new()
                } else {
                    format!("/log/{log_hash}")
                },
            }),
        ));
    }
    if b.kind == BuildKind::PostSubmit {
        let (package_path, hash, go_hash) = if b.sub_name.is_empty() {
            (String::new(), b.rev.clone(), String::new())
        } else {
            (b.sub_name.clone(), b.sub_rev.clone(), b.rev.clone())
        };
        events.push(inner.result_event(
            &b.build_id,
            result_event::Event::ResultRecorded(ResultRecorded {
                key: Some(ResultKey {
                    builder: b.builder.clone(),
                    package_path,
                    hash,
                    go_hash,
                }),
                ok: outcome == BuildOutcome::Passed,
                log_hash,
                run_time_ns: i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX),
                build_id: b.build_id.clone(),
            }),
        ));
    }
    events
}
