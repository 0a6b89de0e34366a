//! GitHub state folded from `GithubMutation` and `GithubIssueMutation`,
//! with Go maintner's semantics (spec/maintner.md §3.2).
//!
//! Users and teams are interned by id, as Go does, so a login learnt from
//! any mutation shows everywhere that user appears. Issues point at repo
//! labels and milestones by id for the same reason. Records are kept small
//! (a comment is 48 bytes, an event 48 plus a side record for the rare
//! fields) because a Go-sized history holds millions of them.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use rustc_hash::FxHashMap as HashMap;

use super::text::{Interner, Sym, Text, Texts};
use super::time::Time;
use super::wire::{CommentView, EventView, IssueView, MilestoneView, RepoView, UserView};

/// A repository key, case-sensitive as in the mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    /// Owner (`golang`).
    pub owner: Sym,
    /// Repository (`go`).
    pub repo: Sym,
}

/// A user: index + 1 into [`GitHubState::users`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserRef(pub(crate) NonZeroU32);

/// A known user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserData {
    pub(crate) id: i64,
    /// Empty when never seen.
    pub(crate) login: Sym,
}

/// Everything GitHub.
#[derive(Debug, Clone, Default)]
pub struct GitHubState {
    pub(crate) users: Vec<UserData>,
    pub(crate) user_index: HashMap<i64, UserRef>,
    /// Slugs by team id.
    pub(crate) teams: HashMap<i64, Sym>,
    pub(crate) repos: HashMap<RepoKey, RepoData>,
    /// The rarely set fields of events, out of line.
    pub(crate) event_extras: Vec<EventExtra>,
}

/// One repository.
#[derive(Debug, Clone, Default)]
pub struct RepoData {
    pub(crate) issues: BTreeMap<i32, Box<IssueData>>,
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
    pub(crate) user: Option<UserRef>,
    pub(crate) assignees: Vec<UserRef>,
    pub(crate) created: Time,
    pub(crate) updated: Time,
    pub(crate) closed_at: Time,
    pub(crate) closed_by: Option<UserRef>,
    pub(crate) title: Text,
    pub(crate) body: Text,
    pub(crate) milestone: MilestoneRef,
    /// Label ids, kept sorted.
    pub(crate) labels: Vec<i64>,
    pub(crate) comments: ById<CommentData>,
    pub(crate) events: ById<EventData>,
    pub(crate) reviews: Vec<ReviewData>,
    pub(crate) comments_synced: Time,
    pub(crate) events_synced: Time,
    pub(crate) reviews_synced: Time,
    pub(crate) event_max_time: Time,
}

/// Entries with ids, in arrival order, replaced by id (Go keeps them in
/// maps by id). New ids are almost always larger than every id before, so
/// the largest is kept to add those without scanning the entries: a
/// linear scan per added event made the events of long-lived issues cost
/// quadratic time.
#[derive(Debug, Clone)]
pub(crate) struct ById<T> {
    items: Vec<T>,
    /// The largest id among `items` (`i64::MIN` when there are none).
    max_id: i64,
}

/// An entry of a [`ById`] table.
pub(crate) trait HasId {
    fn id(&self) -> i64;
}

impl HasId for CommentData {
    fn id(&self) -> i64 {
        self.id
    }
}

impl HasId for EventData {
    fn id(&self) -> i64 {
        self.id
    }
}

impl<T> Default for ById<T> {
    fn default() -> Self {
        ById {
            items: Vec::new(),
            max_id: i64::MIN,
        }
    }
}

impl<T: HasId> ById<T> {
    /// The table holding `items`.
    pub(crate) fn from_items(items: Vec<T>) -> ById<T> {
        let max_id = items.iter().map(HasId::id).max().unwrap_or(i64::MIN);
        ById { items, max_id }
    }

    /// Where the entry with `id` is, if there is one.
    pub(crate) fn position(&self, id: i64) -> Option<usize> {
        if id > self.max_id {
            return None;
        }
        self.items.iter().rposition(|x| x.id() == id)
    }

    /// Adds an entry whose id the table does not hold.
    pub(crate) fn push(&mut self, item: T) {
        self.max_id = self.max_id.max(item.id());
        self.items.push(item);
    }

    /// The memory held, in entries.
    pub(crate) fn capacity(&self) -> usize {
        self.items.capacity()
    }
}

impl<T> std::ops::Deref for ById<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T> std::ops::DerefMut for ById<T> {
    /// For changing entries in place; callers keep their ids.
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}

/// An issue comment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommentData {
    pub(crate) id: i64,
    pub(crate) created: Time,
    pub(crate) updated: Time,
    pub(crate) user: Option<UserRef>,
    pub(crate) body: Text,
}

/// An issue timeline event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventData {
    pub(crate) id: i64,
    pub(crate) created: Time,
    pub(crate) typ: Sym,
    pub(crate) actor: Option<UserRef>,
    pub(crate) label: Sym,
    pub(crate) milestone: Sym,
    pub(crate) commit_id: Sym,
    /// Index + 1 into [`GitHubState::event_extras`]; 0 when none.
    pub(crate) extra: u32,
}

/// The rarely set fields of an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventExtra {
    pub(crate) assignee: Option<UserRef>,
    pub(crate) assigner: Option<UserRef>,
    pub(crate) reviewer: Option<UserRef>,
    pub(crate) review_requester: Option<UserRef>,
    pub(crate) team_reviewer: Option<i64>,
    pub(crate) from: Text,
    pub(crate) to: Text,
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
    pub(crate) created: Time,
    pub(crate) actor: Option<UserRef>,
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

/// The user table, borrowed apart from the repos.
struct Users<'a> {
    users: &'a mut Vec<UserData>,
    index: &'a mut HashMap<i64, UserRef>,
}

impl Users<'_> {
    fn get_or_create(&mut self, id: i64) -> UserRef {
        if let Some(&r) = self.index.get(&id) {
            return r;
        }
        self.users.push(UserData {
            id,
            login: Interner::EMPTY,
        });
        let r = UserRef(
            NonZeroU32::new(self.users.len() as u32).expect("a pushed vector is non-empty"),
        );
        self.index.insert(id, r);
        r
    }

    /// Go's `getUser`: creates the user (even id 0) and updates a non-empty
    /// login.
    fn user(&mut self, syms: &mut Interner, pb: &UserView<'_>) -> UserRef {
        let r = self.get_or_create(pb.id);
        let login = &mut self.users[r.0.get() as usize - 1].login;
        if !pb.login.is_empty() && syms.get(*login) != pb.login {
            *login = syms.intern(pb.login);
        }
        r
    }

    /// Go's `getOrCreateUserID`: nothing for id 0.
    fn user_id(&mut self, id: i64) -> Option<UserRef> {
        (id != 0).then(|| self.get_or_create(id))
    }
}

impl GitHubState {
    /// The user behind a reference.
    pub(crate) fn user_data(&self, r: UserRef) -> &UserData {
        &self.users[r.0.get() as usize - 1]
    }

    /// A user by id.
    pub(crate) fn user_by_id(&self, id: i64) -> Option<UserRef> {
        self.user_index.get(&id).copied()
    }

    /// The extra fields of an event.
    pub(crate) fn extra(&self, e: &EventData) -> EventExtra {
        match e.extra {
            0 => EventExtra::default(),
            n => self.event_extras[n as usize - 1],
        }
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
        comments: &[CommentView<'_>],
        events: &[EventView<'_>],
        dropped: &mut Vec<Dropped>,
    ) {
        if m.owner.is_empty() || m.repo.is_empty() {
            dropped.push(Dropped::NoRepo);
            return;
        }
        let key = RepoKey {
            owner: strings.syms.intern(m.owner),
            repo: strings.syms.intern(m.repo),
        };
        let GitHubState {
            users,
            user_index,
            teams,
            repos,
            event_extras,
        } = self;
        let mut users = Users {
            users,
            index: user_index,
        };
        // Go creates the repo before it looks at the number.
        let repo = repos.entry(key).or_default();
        if m.number == 0 {
            dropped.push(Dropped::NoNumber);
            return;
        }
        let issue = match repo.issues.entry(m.number) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let issue = e.insert(Box::new(IssueData {
                    number: m.number,
                    id: m.id,
                    ..IssueData::default()
                }));
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
        if let Some(u) = &m.user {
            issue.user = Some(users.user(strings.syms, u));
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
        if let Some(u) = &m.closed_by {
            issue.closed_by = Some(users.user(strings.syms, u));
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
        set_assignees(&mut issue.assignees, &mut users, strings.syms, m);
        if !m.body.is_empty() {
            issue.body = strings.texts.push(m.body);
        }
        if let Some(b) = m.body_change {
            issue.body = strings.texts.push(b);
        }
        if !m.title.is_empty() {
            issue.title = strings.texts.push(m.title);
        }
        let mut removes = m.remove_labels().peekable();
        let mut adds = m.add_labels().peekable();
        if removes.peek().is_some() || adds.peek().is_some() {
            for id in removes {
                issue.labels.retain(|l| *l != id);
            }
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
        for c in comments {
            if c.id == 0 {
                continue;
            }
            let user = c.user.as_ref().map(|u| users.user(strings.syms, u));
            let idx = match issue.comments.position(c.id) {
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
            if e.id == 0 {
                continue;
            }
            let e = event(&mut users, teams, event_extras, strings, e);
            if e.created > issue.event_max_time {
                issue.event_max_time = e.created;
            }
            match issue.events.position(e.id) {
                Some(i) => issue.events[i] = e,
                None => issue.events.push(e),
            }
        }
        if let Some(t) = m.event_status {
            issue.events_synced = t;
        }
        for r in m.reviews() {
            if r.id == 0 {
                continue;
            }
            let r = ReviewData {
                id: r.id,
                actor: users.user_id(r.actor_id),
                created: r.created.unwrap_or(Time::ZERO),
                body: strings.texts.push(r.body),
                state: strings.syms.intern(r.state),
                commit_id: strings.syms.intern(r.commit_id),
                actor_association: strings.syms.intern(r.actor_association),
                other_json: strings.texts.push(r.other_json),
            };
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
}

/// Go's `newGithubEvent`. Users are resolved by id only; the label and
/// milestone are plain names; the unknown-JSON field is not kept (Go logs
/// it and keeps none).
fn event(
    users: &mut Users<'_>,
    teams: &mut HashMap<i64, Sym>,
    extras: &mut Vec<EventExtra>,
    strings: &mut Strings<'_>,
    e: &EventView<'_>,
) -> EventData {
    let mut out = EventData {
        id: e.id,
        typ: strings.syms.intern(e.event_type),
        actor: users.user_id(e.actor_id),
        created: e.created.unwrap_or(Time::ZERO),
        label: e.label.map_or(Interner::EMPTY, |n| strings.syms.intern(n)),
        milestone: e
            .milestone
            .map_or(Interner::EMPTY, |t| strings.syms.intern(t)),
        ..EventData::default()
    };
    let mut extra = EventExtra {
        assignee: users.user_id(e.assignee_id),
        assigner: users.user_id(e.assigner_id),
        reviewer: users.user_id(e.reviewer_id),
        review_requester: users.user_id(e.review_requester_id),
        from: strings.texts.push(e.rename_from),
        to: strings.texts.push(e.rename_to),
        ..EventExtra::default()
    };
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
            extra.commit_url = strings.texts.push_owned(&url);
        }
    }
    if let Some(t) = &e.team_reviewer {
        let slug = teams.entry(t.id).or_insert(Interner::EMPTY);
        if !t.login.is_empty() {
            *slug = strings.syms.intern(t.login);
        }
        extra.team_reviewer = Some(t.id);
    }
    if let Some((review_id, message, state)) = e.dismissed_review {
        extra.dismissed_review = Some(DismissedReview {
            review_id,
            state: strings.syms.intern(state),
            message: strings.texts.push(message),
        });
    }
    let has_extra = extra.assignee.is_some()
        || extra.assigner.is_some()
        || extra.reviewer.is_some()
        || extra.review_requester.is_some()
        || extra.team_reviewer.is_some()
        || !extra.from.is_empty()
        || !extra.to.is_empty()
        || !extra.commit_url.is_empty()
        || extra.dismissed_review.is_some();
    if has_extra {
        extras.push(extra);
        out.extra = extras.len() as u32;
    }
    out
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
/// before this mutation are kept in place (their login updated), new ones
/// are appended (twice if given twice), then deletions remove indexes
/// collected by prepending each match, one at a time from the shrinking
/// list. Where Go would index out of range and panic, the index is skipped.
fn set_assignees(
    list: &mut Vec<UserRef>,
    users: &mut Users<'_>,
    syms: &mut Interner,
    m: &IssueView<'_>,
) {
    let before = list.len();
    for u in m.assignees() {
        let r = users.user(syms, &u);
        if !list[..before].contains(&r) {
            list.push(r);
        }
    }
    let mut deleted = m.deleted_assignees().peekable();
    if deleted.peek().is_none() {
        return;
    }
    let mut indexes: Vec<usize> = Vec::new();
    for del in deleted {
        for (i, r) in list.iter().enumerate() {
            if users.users[r.0.get() as usize - 1].id == del {
                indexes.insert(0, i);
            }
        }
    }
    for i in indexes {
        // Go's removal by index panics past the end; that one is skipped.
        if i < list.len() {
            list.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ById, EventData};

    fn event(id: i64) -> EventData {
        EventData {
            id,
            ..EventData::default()
        }
    }

    /// Ids in any order are found where they are, whether the table was
    /// built entry by entry or from a saved list.
    #[test]
    fn entries_are_found_by_id_in_any_order() {
        let ids = [40, 7, 41, -3, 12, 100, 99];
        let mut table = ById::default();
        assert_eq!(table.position(5), None);
        for id in ids {
            assert_eq!(table.position(id), None, "{id} before it is added");
            table.push(event(id));
        }
        let rebuilt = ById::from_items(ids.map(event).to_vec());
        for t in [&table, &rebuilt] {
            for (at, id) in ids.iter().enumerate() {
                assert_eq!(t.position(*id), Some(at), "{id}");
            }
            for absent in [i64::MIN, -4, 8, 98, 101, i64::MAX] {
                assert_eq!(t.position(absent), None, "{absent}");
            }
        }
        table[2].created = crate::corpus::time::Time::from_unix(5);
        assert_eq!(table.position(41), Some(2));
        assert_eq!(table.len(), ids.len());
    }
}
