//! GitHub state folded from `GithubMutation` and `GithubIssueMutation`,
//! with Go maintner's semantics (spec/maintner.md §3.2).
//!
//! Users and teams are interned by id, as Go does, so a login learnt from
//! any mutation shows everywhere that user appears. Issues point at repo
//! labels and milestones by id for the same reason.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use super::text::{Interner, Sym, Text, Texts};
use super::time::Time;
use super::wire::{EventView, IssueView, MilestoneView, RepoView, UserView};

/// A repository key, case-sensitive as in the mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    /// Owner (`golang`).
    pub owner: Sym,
    /// Repository (`go`).
    pub repo: Sym,
}

/// Everything GitHub.
#[derive(Debug, Clone, Default)]
pub struct GitHubState {
    /// Logins by user id (empty when unknown).
    pub(crate) users: HashMap<i64, Sym>,
    /// Slugs by team id.
    pub(crate) teams: HashMap<i64, Sym>,
    pub(crate) repos: HashMap<RepoKey, RepoData>,
}

/// One repository.
#[derive(Debug, Clone, Default)]
pub struct RepoData {
    pub(crate) issues: BTreeMap<i32, IssueData>,
    pub(crate) labels: BTreeMap<i64, Sym>,
    pub(crate) milestones: BTreeMap<i64, MilestoneData>,
}

/// A repository milestone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MilestoneData {
    pub(crate) title: Sym,
    pub(crate) number: i64,
    pub(crate) closed: bool,
}

/// Which milestone an issue has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MilestoneRef {
    /// Never said (Go's nil milestone).
    #[default]
    Unknown,
    /// Explicitly none.
    None,
    /// This repo milestone.
    Id(i64),
}

/// One issue or pull request.
#[derive(Debug, Clone, Default)]
pub struct IssueData {
    pub(crate) id: i64,
    pub(crate) number: i32,
    pub(crate) not_exist: bool,
    pub(crate) closed: bool,
    pub(crate) locked: bool,
    pub(crate) pull_request: bool,
    pub(crate) user: Option<i64>,
    pub(crate) assignees: Vec<i64>,
    pub(crate) created: Time,
    pub(crate) updated: Time,
    pub(crate) closed_at: Time,
    pub(crate) closed_by: Option<i64>,
    pub(crate) title: Text,
    pub(crate) body: Text,
    pub(crate) milestone: MilestoneRef,
    /// Label ids, kept sorted.
    pub(crate) labels: Vec<i64>,
    pub(crate) comments: Vec<CommentData>,
    pub(crate) events: Vec<EventData>,
    pub(crate) reviews: Vec<ReviewData>,
    pub(crate) comments_synced: Time,
    pub(crate) events_synced: Time,
    pub(crate) reviews_synced: Time,
    pub(crate) event_max_time: Time,
}

/// An issue comment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommentData {
    pub(crate) id: i64,
    pub(crate) user: Option<i64>,
    pub(crate) created: Time,
    pub(crate) updated: Time,
    pub(crate) body: Text,
}

/// An issue timeline event.
#[derive(Debug, Clone, Default)]
pub struct EventData {
    pub(crate) id: i64,
    pub(crate) typ: Sym,
    pub(crate) actor: Option<i64>,
    pub(crate) created: Time,
    pub(crate) label: Sym,
    pub(crate) milestone: Sym,
    pub(crate) assignee: Option<i64>,
    pub(crate) assigner: Option<i64>,
    pub(crate) reviewer: Option<i64>,
    pub(crate) review_requester: Option<i64>,
    pub(crate) team_reviewer: Option<i64>,
    pub(crate) from: Text,
    pub(crate) to: Text,
    pub(crate) commit_id: Sym,
    pub(crate) commit_url: Text,
    pub(crate) dismissed_review: Option<DismissedReview>,
}

/// The review a `review_dismissed` event dismissed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DismissedReview {
    pub(crate) review_id: i64,
    pub(crate) state: Sym,
    pub(crate) message: Text,
}

/// A pull-request review.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReviewData {
    pub(crate) id: i64,
    pub(crate) actor: Option<i64>,
    pub(crate) created: Time,
    pub(crate) body: Text,
    pub(crate) state: Sym,
    pub(crate) commit_id: Sym,
    pub(crate) actor_association: Sym,
    pub(crate) other_json: Text,
}

/// Why a GitHub mutation was dropped (Go logs these and carries on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Owner or repo is empty.
    NoRepo,
    /// Issue number 0.
    NoNumber,
    /// A label or milestone with id 0 (Go panics; we skip that entry).
    ZeroId,
}

/// Mutable access to the strings while folding.
pub(crate) struct Strings<'a> {
    pub(crate) syms: &'a mut Interner,
    pub(crate) texts: &'a mut Texts,
}

impl GitHubState {
    fn user(&mut self, strings: &mut Strings<'_>, pb: &UserView<'_>) -> i64 {
        let login = self.users.entry(pb.id).or_insert(Interner::EMPTY);
        if !pb.login.is_empty() && strings.syms.get(*login) != pb.login {
            *login = strings.syms.intern(pb.login);
        }
        pb.id
    }

    /// Go's `getOrCreateUserID`: nothing for id 0.
    fn user_id(&mut self, id: i64) -> Option<i64> {
        if id == 0 {
            return None;
        }
        self.users.entry(id).or_insert(Interner::EMPTY);
        Some(id)
    }

    fn team(&mut self, strings: &mut Strings<'_>, pb: &UserView<'_>) -> i64 {
        let slug = self.teams.entry(pb.id).or_insert(Interner::EMPTY);
        if !pb.login.is_empty() {
            *slug = strings.syms.intern(pb.login);
        }
        pb.id
    }

    /// Gets or creates a repo; `None` when owner or repo is empty.
    pub(crate) fn repo_mut(
        &mut self,
        syms: &mut Interner,
        owner: &[u8],
        repo: &[u8],
    ) -> Option<&mut RepoData> {
        if owner.is_empty() || repo.is_empty() {
            return None;
        }
        let key = RepoKey {
            owner: syms.intern(owner),
            repo: syms.intern(repo),
        };
        Some(self.repos.entry(key).or_default())
    }

    /// Applies a repository-level mutation.
    pub(crate) fn apply_repo(
        &mut self,
        strings: &mut Strings<'_>,
        m: &RepoView<'_>,
        dropped: &mut Vec<Dropped>,
    ) {
        let Some(repo) = self.repo_mut(strings.syms, m.owner(), m.repo()) else {
            dropped.push(Dropped::NoRepo);
            return;
        };
        for label in m.labels() {
            if label.id == 0 {
                dropped.push(Dropped::ZeroId);
                continue;
            }
            let name = repo.labels.entry(label.id).or_insert(Interner::EMPTY);
            if !label.name.is_empty() {
                *name = strings.syms.intern(label.name);
            }
        }
        for ms in m.milestones() {
            if ms.id == 0 {
                dropped.push(Dropped::ZeroId);
                continue;
            }
            apply_milestone(repo.milestones.entry(ms.id).or_default(), strings, &ms);
        }
    }

    /// Applies an issue mutation, in Go's order.
    pub(crate) fn apply_issue(
        &mut self,
        strings: &mut Strings<'_>,
        m: &IssueView<'_>,
        dropped: &mut Vec<Dropped>,
    ) {
        if m.owner.is_empty() || m.repo.is_empty() {
            dropped.push(Dropped::NoRepo);
            return;
        }
        if m.number == 0 {
            // Go creates the repo before it notices the missing number.
            self.repo_mut(strings.syms, m.owner, m.repo);
            dropped.push(Dropped::NoNumber);
            return;
        }
        // Resolve users first: they live beside the repos.
        let user = m.user.as_ref().map(|u| self.user(strings, u));
        let closed_by = m.closed_by.as_ref().map(|u| self.user(strings, u));
        let mut assignees: Vec<i64> = Vec::new();
        for u in m.assignees() {
            assignees.push(self.user(strings, &u));
        }
        let mut events: Vec<EventData> = Vec::new();
        for e in m.events().filter(|e| e.id != 0) {
            events.push(self.event(strings, &e));
        }
        let mut reviews: Vec<ReviewData> = Vec::new();
        for r in m.reviews().filter(|r| r.id != 0) {
            reviews.push(ReviewData {
                id: r.id,
                actor: self.user_id(r.actor_id),
                created: r.created.unwrap_or(Time::ZERO),
                body: strings.texts.push(r.body),
                state: strings.syms.intern(r.state),
                commit_id: strings.syms.intern(r.commit_id),
                actor_association: strings.syms.intern(r.actor_association),
                other_json: strings.texts.push(r.other_json),
            });
        }
        let mut comment_users: Vec<Option<i64>> = Vec::new();
        for c in m.comments() {
            comment_users.push(c.user.as_ref().map(|u| self.user(strings, u)));
        }

        let repo = self
            .repos
            .entry(RepoKey {
                owner: strings.syms.intern(m.owner),
                repo: strings.syms.intern(m.repo),
            })
            .or_default();
        let issue = match repo.issues.entry(m.number) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let issue = e.insert(IssueData {
                    number: m.number,
                    id: m.id,
                    ..IssueData::default()
                });
                if m.not_exist {
                    issue.not_exist = true;
                    return;
                }
                // Go 2022 panics on a missing creation time; later Go (and
                // we) take the Unix epoch.
                issue.created = m.created.unwrap_or(Time::from_unix(0));
                issue
            }
        };
        issue.not_exist = m.not_exist;
        if m.not_exist {
            return;
        }
        if let Some(t) = m.updated {
            issue.updated = t;
        }
        if let Some(t) = m.closed_at {
            issue.closed_at = t;
        }
        if user.is_some() {
            issue.user = user;
        }
        if m.no_milestone {
            issue.milestone = MilestoneRef::None;
        } else if m.milestone_id != 0 {
            let ms = repo.milestones.entry(m.milestone_id).or_default();
            apply_milestone(
                ms,
                strings,
                &MilestoneView {
                    id: m.milestone_id,
                    title: m.milestone_title,
                    closed: None,
                    number: m.milestone_num,
                },
            );
            issue.milestone = MilestoneRef::Id(m.milestone_id);
        }
        if closed_by.is_some() {
            issue.closed_by = closed_by;
        }
        if let Some(c) = m.closed {
            issue.closed = c;
        }
        if let Some(l) = m.locked {
            issue.locked = l;
        }
        if m.pull_request {
            issue.pull_request = true;
        }
        let deleted: Vec<i64> = m.deleted_assignees().collect();
        set_assignees(&mut issue.assignees, &assignees, &deleted);
        if !m.body.is_empty() {
            issue.body = strings.texts.push(m.body);
        }
        if let Some(b) = m.body_change {
            issue.body = strings.texts.push(b);
        }
        if !m.title.is_empty() {
            issue.title = strings.texts.push(m.title);
        }
        let remove: Vec<i64> = m.remove_labels().collect();
        let mut adds = m.add_labels().peekable();
        if !remove.is_empty() || adds.peek().is_some() {
            issue.labels.retain(|id| !remove.contains(id));
            for label in adds {
                if label.id == 0 {
                    dropped.push(Dropped::ZeroId);
                    continue;
                }
                let name = repo.labels.entry(label.id).or_insert(Interner::EMPTY);
                if !label.name.is_empty() {
                    *name = strings.syms.intern(label.name);
                }
                if let Err(at) = issue.labels.binary_search(&label.id) {
                    issue.labels.insert(at, label.id);
                }
            }
        }
        for (c, user) in m.comments().zip(comment_users) {
            if c.id == 0 {
                continue;
            }
            let idx = match issue.comments.iter().rposition(|x| x.id == c.id) {
                Some(i) => i,
                None => {
                    issue.comments.push(CommentData {
                        id: c.id,
                        ..CommentData::default()
                    });
                    issue.comments.len() - 1
                }
            };
            let comment = &mut issue.comments[idx];
            if user.is_some() {
                comment.user = user;
            }
            if let Some(t) = c.created {
                comment.created = t;
            }
            if let Some(t) = c.updated {
                comment.updated = t;
            }
            if !c.body.is_empty() {
                comment.body = strings.texts.push(c.body);
            }
        }
        if let Some(t) = m.comment_status {
            issue.comments_synced = t;
        }
        for e in events {
            if e.created > issue.event_max_time {
                issue.event_max_time = e.created;
            }
            match issue.events.iter().rposition(|x| x.id == e.id) {
                Some(i) => issue.events[i] = e,
                None => issue.events.push(e),
            }
        }
        if let Some(t) = m.event_status {
            issue.events_synced = t;
        }
        for r in reviews {
            if r.created > issue.event_max_time {
                issue.event_max_time = r.created;
            }
            match issue.reviews.iter().rposition(|x| x.id == r.id) {
                Some(i) => issue.reviews[i] = r,
                None => issue.reviews.push(r),
            }
        }
        if let Some(t) = m.review_status {
            issue.reviews_synced = t;
        }
    }

    fn event(&mut self, strings: &mut Strings<'_>, e: &EventView<'_>) -> EventData {
        let mut out = EventData {
            id: e.id,
            typ: strings.syms.intern(e.event_type),
            actor: self.user_id(e.actor_id),
            created: e.created.unwrap_or(Time::ZERO),
            assignee: self.user_id(e.assignee_id),
            assigner: self.user_id(e.assigner_id),
            reviewer: self.user_id(e.reviewer_id),
            review_requester: self.user_id(e.review_requester_id),
            from: strings.texts.push(e.rename_from),
            to: strings.texts.push(e.rename_to),
            // Go logs an event's unknown JSON and keeps none of it.
            ..EventData::default()
        };
        if let Some(name) = e.label {
            out.label = strings.syms.intern(name);
        }
        if let Some(title) = e.milestone {
            out.milestone = strings.syms.intern(title);
        }
        if let Some((owner, repo, commit_id)) = e.commit {
            out.commit_id = strings.syms.intern(commit_id);
            if !owner.is_empty() && !repo.is_empty() {
                let url = [
                    &b"https://api.github.com/repos/"[..],
                    owner,
                    b"/",
                    repo,
                    b"/commits/",
                    commit_id,
                ]
                .concat();
                out.commit_url = strings.texts.push_owned(&url);
            }
        }
        if let Some(t) = &e.team_reviewer {
            out.team_reviewer = Some(self.team(strings, t));
        }
        if let Some((review_id, message, state)) = e.dismissed_review {
            out.dismissed_review = Some(DismissedReview {
                review_id,
                state: strings.syms.intern(state),
                message: strings.texts.push(message),
            });
        }
        out
    }
}

fn apply_milestone(ms: &mut MilestoneData, strings: &mut Strings<'_>, pb: &MilestoneView<'_>) {
    if !pb.title.is_empty() {
        ms.title = strings.syms.intern(pb.title);
    }
    if pb.number != 0 {
        ms.number = pb.number;
    }
    if let Some(c) = pb.closed {
        ms.closed = c;
    }
}

/// Go's `setAssigneesFromProto`, quirks included: ids already assigned
/// before this mutation are kept in place, new ones are appended (twice if
/// given twice), then deletions remove indexes collected by prepending each
/// match, one at a time from the shrinking list. Where Go would index out of
/// range and panic, the index is skipped.
fn set_assignees(list: &mut Vec<i64>, added: &[i64], deleted: &[i64]) {
    let before: Vec<i64> = list.clone();
    for &id in added {
        if !before.contains(&id) {
            list.push(id);
        }
    }
    let mut indexes: Vec<usize> = Vec::new();
    for del in deleted {
        for (i, id) in list.iter().enumerate() {
            if id == del {
                indexes.insert(0, i);
            }
        }
    }
    for i in indexes {
        if i < list.len() {
            list.remove(i);
        }
    }
}
