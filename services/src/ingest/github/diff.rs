//! GitHub payloads turned into the smallest mutations that bring the corpus
//! up to date: Go maintner's `githubIssueDiffer`, label and milestone diffs,
//! comment diffs, and its `parseGithubEvents` / `parseGithubReviews`
//! (spec/maintner.md §6.3).
//!
//! Everything here is a pure function of a payload and a corpus view: no IO,
//! no clock, no logging. A `None` or an empty result means "nothing
//! changed", so a pass over unchanged data appends nothing.

use std::collections::{HashMap, HashSet};

use almanac_projections::corpus::api::{Issue, IssueMilestone, Label, Milestone, Repo, User};
use almanac_projections::corpus::time::Time;
use almanac_proto::pb::maintpb::{
    BoolChange, GithubCommit, GithubDismissedReviewEvent, GithubIssueCommentMutation,
    GithubIssueEvent, GithubIssueMutation, GithubLabel, GithubMilestone, GithubReview, GithubTeam,
    GithubUser, StringChange,
};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A user as the issues, comments and labels endpoints embed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApiUser {
    pub id: i64,
    pub login: Option<String>,
}

impl ApiUser {
    /// The login, "" when GitHub sent none (go-github's `GetLogin`).
    pub fn login(&self) -> &str {
        self.login.as_deref().unwrap_or("")
    }

    fn proto(&self) -> GithubUser {
        GithubUser {
            id: self.id,
            login: self.login().to_owned(),
        }
    }
}

/// A label, as `GET /repos/{o}/{r}/labels` and issues carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApiLabel {
    pub id: i64,
    pub name: Option<String>,
}

impl ApiLabel {
    /// The name, "" when absent.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// A milestone, as `GET /repos/{o}/{r}/milestones` and issues carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApiMilestone {
    pub id: i64,
    pub number: i64,
    pub title: Option<String>,
    /// `open` or `closed`.
    pub state: Option<String>,
}

impl ApiMilestone {
    /// The title, "" when absent.
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or("")
    }

    /// Whether GitHub says it is closed.
    pub fn is_closed(&self) -> bool {
        self.state.as_deref() == Some("closed")
    }
}

/// An issue or pull request from the issues endpoints (list or single).
/// Unknown fields are ignored: only what maintner records is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApiIssue {
    /// The global id (used only to skip issues seen twice in one pass).
    pub id: i64,
    pub number: i32,
    pub title: Option<String>,
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: Option<String>,
    pub locked: Option<bool>,
    pub user: Option<ApiUser>,
    pub assignees: Option<Vec<ApiUser>>,
    pub labels: Option<Vec<ApiLabel>>,
    pub milestone: Option<ApiMilestone>,
    #[serde(deserialize_with = "rfc3339")]
    pub created_at: Option<Time>,
    #[serde(deserialize_with = "rfc3339")]
    pub updated_at: Option<Time>,
    #[serde(deserialize_with = "rfc3339")]
    pub closed_at: Option<Time>,
    /// Only the single-issue endpoint sends it.
    pub closed_by: Option<ApiUser>,
    /// Present (non-null) exactly on pull requests.
    pub pull_request: Option<Value>,
}

impl ApiIssue {
    /// go-github's `IsPullRequest`.
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }

    fn is_closed(&self) -> bool {
        self.state.as_deref() == Some("closed")
    }

    fn assignees(&self) -> &[ApiUser] {
        self.assignees.as_deref().unwrap_or(&[])
    }

    fn labels(&self) -> &[ApiLabel] {
        self.labels.as_deref().unwrap_or(&[])
    }
}

/// An issue comment from `GET /repos/{o}/{r}/issues/{n}/comments`. Every
/// field is optional so that a bogus comment is skipped, not fatal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ApiComment {
    pub id: Option<i64>,
    pub body: Option<String>,
    pub user: Option<ApiUser>,
    #[serde(deserialize_with = "rfc3339")]
    pub created_at: Option<Time>,
    #[serde(deserialize_with = "rfc3339")]
    pub updated_at: Option<Time>,
}

/// Why an events or reviews page could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is not a JSON array of objects.
    #[error("not a JSON array of objects: {0}")]
    Json(#[from] serde_json::Error),
    /// A time field that is not RFC 3339.
    #[error("{field} {value:?} is not an RFC 3339 time")]
    Time {
        /// The JSON key.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// Parses an RFC 3339 time (Go's `time.RFC3339` layout, fractions allowed)
/// into UTC.
pub fn parse_rfc3339(text: &str) -> Option<Time> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(Time {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos(),
    })
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => parse_rfc3339(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time"))),
    }
}

/// A corpus time as a protobuf timestamp.
pub fn timestamp(t: Time) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos as i32,
    }
}

/// Go's `newGithubUserProto`: the whole user when none is known, only
/// `{id, login}` when the login changed (an id change alone is not seen),
/// nothing otherwise.
fn user_diff(have: Option<User<'_>>, api: Option<&ApiUser>) -> Option<GithubUser> {
    let api = api?;
    match have {
        Some(u) if u.login() == api.login() => None,
        _ => Some(api.proto()),
    }
}

/// Sets `dst` when GitHub's time is set and differs from the corpus's.
fn time_diff(dst: &mut Option<prost_types::Timestamp>, have: Time, api: Option<Time>) -> bool {
    match api {
        Some(t) if t != have => {
            *dst = Some(timestamp(t));
            true
        }
        _ => false,
    }
}

/// Go's `githubIssueDiffer.Diff`: the mutation that takes the corpus's
/// issue (`have`, `None` when unknown) to GitHub's (`api`), or `None` when
/// nothing differs. Every mutation carries owner, repo, number and
/// `pull_request`; `id` (field 12) is never set, as Go never sets it.
pub fn diff_issue(
    owner: &str,
    repo: &str,
    have: Option<Issue<'_>>,
    api: &ApiIssue,
) -> Option<GithubIssueMutation> {
    let mut m = GithubIssueMutation {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        number: api.number,
        pull_request: api.is_pull_request(),
        ..GithubIssueMutation::default()
    };
    let mut changed = false;

    // The fold reads `created` only when it creates the issue, so it is
    // sent only then; sending it later would change nothing and repeat
    // every pass.
    if have.is_none() {
        changed |= time_diff(&mut m.created, Time::ZERO, api.created_at);
    }
    changed |= time_diff(
        &mut m.updated,
        have.map_or(Time::ZERO, |h| h.updated()),
        api.updated_at,
    );

    m.user = user_diff(have.and_then(|h| h.user()), api.user.as_ref());
    changed |= m.user.is_some();

    let body = api.body.as_deref().unwrap_or("");
    if have.is_none_or(|h| h.body() != body) {
        m.body_change = Some(StringChange {
            val: body.to_owned(),
        });
        changed = true;
    }

    // A title can only be set, never cleared (Go ignores an empty one).
    let title = api.title.as_deref().unwrap_or("");
    if have.is_none_or(|h| h.title() != title) && !title.is_empty() {
        m.title = title.to_owned();
        changed = true;
    }

    changed |= milestone_diff(&mut m, have, api.milestone.as_ref());
    changed |= assignee_diff(&mut m, have, api.assignees());

    let closed = api.is_closed();
    if have.is_none_or(|h| h.closed() != closed) {
        m.closed = Some(BoolChange { val: closed });
        changed = true;
    }
    changed |= time_diff(
        &mut m.closed_at,
        have.map_or(Time::ZERO, |h| h.closed_at()),
        api.closed_at,
    );
    m.closed_by = user_diff(have.and_then(|h| h.closed_by()), api.closed_by.as_ref());
    changed |= m.closed_by.is_some();

    let locked = api.locked.unwrap_or(false);
    let locked_changed = match have {
        Some(h) => h.locked() != locked,
        None => locked,
    };
    if locked_changed {
        m.locked = Some(BoolChange { val: locked });
        changed = true;
    }

    changed |= label_diff(&mut m, have, api.labels());
    changed.then_some(m)
}

/// Go's `diffMilestone`. An unknown milestone counts as changed; a renamed
/// milestone with the same id does not.
fn milestone_diff(
    m: &mut GithubIssueMutation,
    have: Option<Issue<'_>>,
    api: Option<&ApiMilestone>,
) -> bool {
    let unchanged = match (have.map(|h| h.milestone()), api) {
        (Some(IssueMilestone::None), None) => true,
        // Go compares the sentinel's id, 0, like any other.
        (Some(IssueMilestone::None), Some(b)) => b.id == 0,
        (Some(IssueMilestone::Set(ms)), Some(b)) => ms.id() == b.id,
        _ => false,
    };
    if unchanged {
        return false;
    }
    match api {
        Some(b) => {
            m.milestone_id = b.id;
            m.milestone_num = b.number;
            m.milestone_title = b.title().to_owned();
        }
        None => m.no_milestone = true,
    }
    true
}

/// Go's `diffAssignees`: new users whole, known users only when their login
/// changed, then the ids no longer assigned. A new issue always counts as
/// changed here, as in Go.
fn assignee_diff(m: &mut GithubIssueMutation, have: Option<Issue<'_>>, api: &[ApiUser]) -> bool {
    let Some(have) = have else {
        m.assignees = api.iter().map(ApiUser::proto).collect();
        return true;
    };
    let existing: Vec<(i64, &str)> = have.assignees().map(|u| (u.id(), u.login())).collect();
    for u in api {
        match existing.iter().find(|(id, _)| *id == u.id) {
            Some((_, login)) if *login == u.login() => {}
            Some(_) => m.assignees.push(GithubUser {
                id: u.id,
                login: u.login().to_owned(),
            }),
            None => m.assignees.push(u.proto()),
        }
    }
    m.deleted_assignees = existing
        .iter()
        .filter(|(id, _)| !api.iter().any(|u| u.id == *id))
        .map(|(id, _)| *id)
        .collect();
    !m.assignees.is_empty() || !m.deleted_assignees.is_empty()
}

/// Go's `diffLabels`: nothing when the id sets are equal; otherwise the
/// labels to add (id and name, in GitHub's order) and the ids to remove
/// (ascending). Labels with id 0 are skipped (Go panics on them).
fn label_diff(m: &mut GithubIssueMutation, have: Option<Issue<'_>>, api: &[ApiLabel]) -> bool {
    let have_ids: Vec<i64> = have
        .map(|h| h.labels().map(|l| l.id()).collect())
        .unwrap_or_default();
    if have.is_some() && have_ids.len() == api.len() && api.iter().all(|l| have_ids.contains(&l.id))
    {
        return false;
    }
    for l in api {
        if l.id == 0 || have_ids.contains(&l.id) || m.add_label.iter().any(|a| a.id == l.id) {
            continue;
        }
        m.add_label.push(GithubLabel {
            id: l.id,
            name: l.name().to_owned(),
        });
    }
    m.remove_label = have_ids
        .iter()
        .copied()
        .filter(|id| !api.iter().any(|l| l.id == *id))
        .collect();
    !m.add_label.is_empty() || !m.remove_label.is_empty()
}

/// Go's `GitHubLabel.GenMutationDiff` over a whole listing: `{id, name}` for
/// every label that is new or renamed, in GitHub's order.
pub fn diff_labels(repo: Option<Repo<'_>>, api: &[ApiLabel]) -> Vec<GithubLabel> {
    let have: HashMap<i64, &str> = repo
        .map(|r| r.labels().map(|l: Label<'_>| (l.id(), l.name())).collect())
        .unwrap_or_default();
    api.iter()
        .filter(|l| l.id != 0 && have.get(&l.id) != Some(&l.name()))
        .map(|l| GithubLabel {
            id: l.id,
            name: l.name().to_owned(),
        })
        .collect()
}

/// Go's `GitHubMilestone.GenMutationDiff` over a whole listing: the id plus
/// whichever of title, number and closed changed (an unknown milestone is
/// compared with an empty one), in GitHub's order.
pub fn diff_milestones(repo: Option<Repo<'_>>, api: &[ApiMilestone]) -> Vec<GithubMilestone> {
    let have: HashMap<i64, Milestone<'_>> = repo
        .map(|r| r.milestones().map(|m| (m.id(), m)).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for b in api.iter().filter(|b| b.id != 0) {
        let (title, number, closed) = match have.get(&b.id) {
            Some(a) => (a.title(), a.number(), a.closed()),
            None => ("", 0, false),
        };
        let mut diff = GithubMilestone {
            id: b.id,
            ..GithubMilestone::default()
        };
        let mut changed = false;
        if title != b.title() {
            diff.title = b.title().to_owned();
            changed = true;
        }
        // Go keeps the number as an int32.
        if number as i32 != b.number as i32 {
            diff.number = b.number;
            changed = true;
        }
        if closed != b.is_closed() {
            diff.closed = Some(BoolChange { val: b.is_closed() });
            changed = true;
        }
        if changed {
            out.push(diff);
        }
    }
    out
}

/// What one page of comments changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommentDiff {
    /// New comments whole; edited ones as id plus what changed.
    pub changes: Vec<GithubIssueCommentMutation>,
    /// The last valid comment's `updated_at`: the next page's `since`.
    pub cursor: Option<Time>,
}

/// Go's comment sync over one page: comments missing any of id, body, user,
/// created or updated are skipped; an unknown comment is sent whole; a
/// known one only when its update time or body differs, with just those.
pub fn diff_comments(have: Option<Issue<'_>>, page: &[ApiComment]) -> CommentDiff {
    let known: HashMap<i64, (Time, &str)> = have
        .map(|h| {
            h.comments()
                .map(|c| (c.id(), (c.updated(), c.body())))
                .collect()
        })
        .unwrap_or_default();
    let mut out = CommentDiff::default();
    for c in page {
        let (Some(id), Some(body), Some(user), Some(created), Some(updated)) = (
            c.id,
            c.body.as_deref(),
            c.user.as_ref(),
            c.created_at,
            c.updated_at,
        ) else {
            continue;
        };
        out.cursor = Some(updated);
        match known.get(&id) {
            None => out.changes.push(GithubIssueCommentMutation {
                id,
                user: Some(user.proto()),
                body: body.to_owned(),
                created: Some(timestamp(created)),
                updated: Some(timestamp(updated)),
            }),
            Some((have_updated, have_body)) if *have_updated != updated || *have_body != body => {
                let mut edit = GithubIssueCommentMutation {
                    id,
                    ..GithubIssueCommentMutation::default()
                };
                if *have_updated != updated {
                    edit.updated = Some(timestamp(updated));
                }
                if *have_body != body {
                    edit.body = body.to_owned();
                }
                out.changes.push(edit);
            }
            Some(_) => {}
        }
    }
    out
}

/// The numbers 1..max−1 the corpus has no issue for (Go's
/// `missingIssues`); NotExist issues count as known.
pub fn missing_numbers(repo: Option<Repo<'_>>) -> Vec<i32> {
    let Some(repo) = repo else {
        return Vec::new();
    };
    let known: Vec<i32> = repo.issues().map(|i| i.number()).collect();
    let mut missing = Vec::new();
    let mut next = 1;
    // `issues()` is in ascending number order.
    for n in known {
        if n < next {
            continue;
        }
        missing.extend(next..n);
        next = n + 1;
    }
    missing
}

/// The ids of an issue's known events.
pub fn known_event_ids(have: Option<Issue<'_>>) -> HashSet<i64> {
    have.map(|h| h.events().map(|e| e.id()).collect())
        .unwrap_or_default()
}

/// The ids of a pull request's known reviews.
pub fn known_review_ids(have: Option<Issue<'_>>) -> HashSet<i64> {
    have.map(|h| h.reviews().map(|r| r.id()).collect())
        .unwrap_or_default()
}

/// Go's `jint64`: a JSON integer, 0 for anything else.
fn jint64(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn jstr(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Removes `key` when it holds an object, and returns that object.
fn take_object(em: &mut Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    if !em.get(key).is_some_and(Value::is_object) {
        return None;
    }
    match em.remove(key) {
        Some(Value::Object(o)) => Some(o),
        _ => None,
    }
}

/// Removes `key` and returns its string value ("" when not a string).
fn take_str(em: &mut Map<String, Value>, key: &str) -> String {
    jstr(em.remove(key).as_ref())
}

/// A user object's id (`GitHubUser{ID: jint64(am["id"])}`), when `key` holds
/// an object.
fn take_user_id(em: &mut Map<String, Value>, key: &str) -> Option<i64> {
    take_object(em, key).map(|u| jint64(u.get("id")))
}

/// Removes `key` when it holds a string, parsed as RFC 3339.
fn take_time(em: &mut Map<String, Value>, key: &'static str) -> Result<Option<Time>, ParseError> {
    let Some(text) = em.get(key).and_then(Value::as_str).map(str::to_owned) else {
        return Ok(None);
    };
    em.remove(key);
    parse_rfc3339(&text).map(Some).ok_or(ParseError::Time {
        field: key,
        value: text,
    })
}

/// The owner and repo of `https://api.github.com/repos/<o>/<r>/commits/…`.
fn commit_url_repo(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("https://api.github.com/repos/")?;
    let mut parts = rest.splitn(3, '/');
    let owner = parts.next()?;
    let repo = parts.next()?;
    let tail = parts.next()?;
    (!owner.is_empty() && !repo.is_empty() && tail.starts_with("commits/")).then_some((owner, repo))
}

/// What is left of an object after the known keys were taken: Go's
/// `json.Marshal` of it (sorted keys, HTML-safe escapes), or nothing for
/// `{}`.
fn other_json(rest: &Map<String, Value>) -> bytes::Bytes {
    if rest.is_empty() {
        return bytes::Bytes::new();
    }
    let mut out = String::new();
    write_go_object(rest, &mut out);
    bytes::Bytes::from(out)
}

fn write_go_object(m: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_go_string(k, out);
        out.push(':');
        write_go_value(v, out);
    }
    out.push('}');
}

/// JSON as Go's `encoding/json` writes it.
fn write_go_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_go_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_value(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => write_go_object(m, out),
    }
}

/// A string as Go's `encoding/json` writes it: `<`, `>`, `&`, control
/// characters, U+2028 and U+2029 as `\u00XX`-style escapes.
fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < '\u{20}' || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `parseGithubEvents` then `GitHubIssueEvent.Proto`: a page of
/// `GET /repos/{o}/{r}/issues/{n}/events` as proto events. Null-valued keys
/// and `url` are dropped; the known keys are extracted (users as ids only,
/// `label.name`, `milestone.title`, `rename.from/to`, the commit, the
/// dismissed review, the requested team); `node_id` and `lock_reason` are
/// discarded; whatever remains is kept in `other_json`.
pub fn parse_events(payload: &[u8]) -> Result<Vec<GithubIssueEvent>, ParseError> {
    let items: Vec<Map<String, Value>> = serde_json::from_slice(payload)?;
    let mut out = Vec::with_capacity(items.len());
    for mut em in items {
        em.retain(|_, v| !v.is_null());
        em.remove("url");

        let event_type = take_str(&mut em, "event");
        let id = jint64(em.remove("id").as_ref());
        let commit_id = take_str(&mut em, "commit_id");
        let commit_url = take_str(&mut em, "commit_url");

        let actor_id = take_user_id(&mut em, "actor").unwrap_or(0);
        let assignee_id = take_user_id(&mut em, "assignee").unwrap_or(0);
        let assigner_id = take_user_id(&mut em, "assigner").unwrap_or(0);
        let reviewer_id = take_user_id(&mut em, "requested_reviewer").unwrap_or(0);
        let review_requester_id = take_user_id(&mut em, "review_requester").unwrap_or(0);

        let label = take_object(&mut em, "label").map(|l| jstr(l.get("name")));
        let milestone = take_object(&mut em, "milestone").map(|m| jstr(m.get("title")));
        let (rename_from, rename_to) = take_object(&mut em, "rename")
            .map(|r| (jstr(r.get("from")), jstr(r.get("to"))))
            .unwrap_or_default();
        let created = take_time(&mut em, "created_at")?;
        let dismissed_review =
            take_object(&mut em, "dismissed_review").map(|d| GithubDismissedReviewEvent {
                review_id: jint64(d.get("review_id")),
                dismissal_message: jstr(d.get("dismissal_message")),
                state: jstr(d.get("state")),
            });
        // Go drops a requested_team that is not an object (it logs it).
        let team_reviewer = em.remove("requested_team").and_then(|t| match t {
            Value::Object(t) => Some(GithubTeam {
                id: jint64(t.get("id")),
                slug: jstr(t.get("slug")),
            }),
            _ => None,
        });
        em.remove("node_id");
        em.remove("lock_reason");

        let commit = (!commit_id.is_empty()).then(|| {
            let (owner, repo) = commit_url_repo(&commit_url).unwrap_or(("", ""));
            GithubCommit {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                commit_id: commit_id.clone(),
            }
        });
        out.push(GithubIssueEvent {
            id,
            event_type,
            actor_id,
            created: created.map(timestamp),
            label: label
                .filter(|n| !n.is_empty())
                .map(|name| GithubLabel { id: 0, name }),
            milestone: milestone
                .filter(|t| !t.is_empty())
                .map(|title| GithubMilestone {
                    title,
                    ..GithubMilestone::default()
                }),
            assignee_id,
            assigner_id,
            commit,
            other_json: other_json(&em),
            rename_from,
            rename_to,
            reviewer_id,
            review_requester_id,
            dismissed_review,
            team_reviewer,
        });
    }
    Ok(out)
}

/// Go's `parseGithubReviews` then `GitHubReview.Proto`: a page of
/// `GET /repos/{o}/{r}/pulls/{n}/reviews` as proto reviews. `node_id`,
/// `html_url`, `pull_request_url` and `_links` are dropped; unknown keys go
/// to `other_json`.
pub fn parse_reviews(payload: &[u8]) -> Result<Vec<GithubReview>, ParseError> {
    let items: Vec<Map<String, Value>> = serde_json::from_slice(payload)?;
    let mut out = Vec::with_capacity(items.len());
    for mut em in items {
        em.retain(|_, v| !v.is_null());
        let id = jint64(em.remove("id").as_ref());
        let body = take_str(&mut em, "body");
        let state = take_str(&mut em, "state");
        let commit_id = take_str(&mut em, "commit_id");
        let actor_id = take_user_id(&mut em, "user").unwrap_or(0);
        let actor_association = take_str(&mut em, "author_association");
        let created = take_time(&mut em, "submitted_at")?;
        for key in ["node_id", "html_url", "pull_request_url", "_links"] {
            em.remove(key);
        }
        out.push(GithubReview {
            id,
            actor_id,
            created: created.map(timestamp),
            body,
            state,
            commit_id,
            actor_association,
            other_json: other_json(&em),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
