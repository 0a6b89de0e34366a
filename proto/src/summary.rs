//! What a mutation is about and when it happened, for indexes and dumps.
//!
//! These never interpret a mutation the way a fold does; they only name it.

use prost_types::Timestamp;

use crate::pb::farm;
use crate::pb::maintpb::{GitCommit, Mutation};

/// The time a mutation describes, where it carries one: a GitHub issue's
/// update (or creation, comment, event or review) time, a git commit's
/// committer time, or a farm event's append time. `None` for mutations that
/// carry no time at all (label and milestone updates, ref-only Gerrit
/// mutations).
pub fn record_time(m: &Mutation) -> Option<Timestamp> {
    if let Some(issue) = &m.github_issue {
        let nested = issue
            .comment
            .iter()
            .filter_map(|c| c.updated.or(c.created))
            .chain(issue.event.iter().filter_map(|e| e.created))
            .chain(issue.review.iter().filter_map(|r| r.created));
        if let Some(t) = issue.updated.or(issue.created).or_else(|| latest(nested)) {
            return Some(t);
        }
    }
    if let Some(t) = m
        .git
        .as_ref()
        .and_then(|g| g.commit.as_ref())
        .and_then(commit_time)
    {
        return Some(t);
    }
    if let Some(t) = m
        .gerrit
        .as_ref()
        .and_then(|g| latest(g.commits.iter().filter_map(commit_time)))
    {
        return Some(t);
    }
    farm_meta(m).and_then(|meta| meta.time)
}

/// The envelope of whichever farm event the mutation carries.
pub fn farm_meta(m: &Mutation) -> Option<&farm::EventMeta> {
    m.farm_input
        .as_ref()
        .and_then(|e| e.meta.as_ref())
        .or_else(|| m.build.as_ref().and_then(|e| e.meta.as_ref()))
        .or_else(|| m.machine.as_ref().and_then(|e| e.meta.as_ref()))
        .or_else(|| m.result.as_ref().and_then(|e| e.meta.as_ref()))
}

fn latest(times: impl Iterator<Item = Timestamp>) -> Option<Timestamp> {
    times.max_by_key(|t| (t.seconds, t.nanos))
}

/// The committer time of a raw commit object: the seconds field of the
/// `committer` header line (the zone is ignored; the time is absolute).
pub fn commit_time(commit: &GitCommit) -> Option<Timestamp> {
    let raw = &commit.raw[..];
    let header_end = find(raw, b"\n\n").unwrap_or(raw.len());
    raw[..header_end]
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"committer "))
        .and_then(|person| {
            let mut fields = person.rsplit(|&b| b == b' ');
            let _zone = fields.next()?;
            let seconds = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            Some(Timestamp { seconds, nanos: 0 })
        })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A one-line description of a mutation: its kind and the entity it
/// touches, e.g. `github_issue golang/go#123`, `git go 3f2a…`,
/// `gerrit go.googlesource.com/net commits=2 refs=3`, `farm build_requested B12ab`.
pub fn describe(m: &Mutation) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(i) = &m.github_issue {
        parts.push(format!("github_issue {}/{}#{}", i.owner, i.repo, i.number));
    }
    if let Some(g) = &m.github {
        parts.push(format!(
            "github {}/{} labels={} milestones={}",
            g.owner,
            g.repo,
            g.labels.len(),
            g.milestones.len()
        ));
    }
    if let Some(g) = &m.git {
        let repo = g.repo.as_ref().map(|r| r.go_repo.as_str()).unwrap_or("");
        let sha = g.commit.as_ref().map(|c| c.sha1.as_str()).unwrap_or("");
        parts.push(format!("git {repo} {sha}"));
    }
    if let Some(g) = &m.gerrit {
        parts.push(format!(
            "gerrit {} commits={} refs={} deleted_refs={}",
            g.project,
            g.commits.len(),
            g.refs.len(),
            g.deleted_refs.len()
        ));
    }
    if let Some(name) = farm_event_name(m) {
        let id = farm_meta(m)
            .map(|meta| meta.correlation_id.as_str())
            .unwrap_or("");
        parts.push(format!("farm {name} {id}").trim_end().to_owned());
    }
    if parts.is_empty() {
        return "empty".to_owned();
    }
    parts.join("; ")
}

/// The snake_case name of the farm event a mutation carries, if any.
pub fn farm_event_name(m: &Mutation) -> Option<&'static str> {
    use farm::{build_event as b, farm_input as i, machine_event as me, result_event as r};
    if let Some(e) = m.farm_input.as_ref().and_then(|e| e.event.as_ref()) {
        return Some(match e {
            i::Event::ConfigSnapshotLoaded(_) => "config_snapshot_loaded",
            i::Event::CommitObserved(_) => "commit_observed",
            i::Event::BranchHeadMoved(_) => "branch_head_moved",
            i::Event::TryRunRequested(_) => "try_run_requested",
            i::Event::TryRunWithdrawn(_) => "try_run_withdrawn",
        });
    }
    if let Some(e) = m.build.as_ref().and_then(|e| e.event.as_ref()) {
        return Some(match e {
            b::Event::BuildRequested(_) => "build_requested",
            b::Event::BuildSkipped(_) => "build_skipped",
            b::Event::SnapshotChecked(_) => "snapshot_checked",
            b::Event::BuildletRequested(_) => "buildlet_requested",
            b::Event::BuildletRequestWithdrawn(_) => "buildlet_request_withdrawn",
            b::Event::BuildletAssigned(_) => "buildlet_assigned",
            b::Event::BuildStarted(_) => "build_started",
            b::Event::StepStarted(_) => "step_started",
            b::Event::StepFinished(_) => "step_finished",
            b::Event::BuildEventNoted(_) => "build_event_noted",
            b::Event::LogChunkAppended(_) => "log_chunk_appended",
            b::Event::TestPlanComputed(_) => "test_plan_computed",
            b::Event::TestGroupDispatched(_) => "test_group_dispatched",
            b::Event::TestGroupCompleted(_) => "test_group_completed",
            b::Event::TestGroupExecFailed(_) => "test_group_exec_failed",
            b::Event::SnapshotStored(_) => "snapshot_stored",
            b::Event::BuildCompleted(_) => "build_completed",
            b::Event::BuildCanceled(_) => "build_canceled",
        });
    }
    if let Some(e) = m.machine.as_ref().and_then(|e| e.event.as_ref()) {
        return Some(match e {
            me::Event::QuotaReserved(_) => "quota_reserved",
            me::Event::QuotaReleased(_) => "quota_released",
            me::Event::QuotaObserved(_) => "quota_observed",
            me::Event::ProvisionRequested(_) => "provision_requested",
            me::Event::InstanceCreated(_) => "instance_created",
            me::Event::Ready(_) => "ready",
            me::Event::ProvisionFailed(_) => "provision_failed",
            me::Event::Registered(_) => "registered",
            me::Event::RegistrationRejected(_) => "registration_rejected",
            me::Event::HealthCheckFailed(_) => "health_check_failed",
            me::Event::SeenHealthy(_) => "seen_healthy",
            me::Event::Cleaned(_) => "cleaned",
            me::Event::Released(_) => "released",
            me::Event::Lost(_) => "lost",
            me::Event::Destroyed(_) => "destroyed",
        });
    }
    if let Some(e) = m.result.as_ref().and_then(|e| e.event.as_ref()) {
        return Some(match e {
            r::Event::ResultRecorded(_) => "result_recorded",
            r::Event::ResultCleared(_) => "result_cleared",
            r::Event::LogStored(_) => "log_stored",
            r::Event::TryBuildConcluded(_) => "try_build_concluded",
            r::Event::GerritReviewPosted(_) => "gerrit_review_posted",
            r::Event::GerritReviewFailed(_) => "gerrit_review_failed",
            r::Event::TryRunFinished(_) => "try_run_finished",
            r::Event::GomoteSessionCreated(_) => "gomote_session_created",
            r::Event::GomoteSessionRenewed(_) => "gomote_session_renewed",
            r::Event::GomoteSessionEnded(_) => "gomote_session_ended",
        });
    }
    None
}
