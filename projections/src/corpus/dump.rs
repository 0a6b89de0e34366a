//! The corpus rendered in the text format of the Go oracle fixtures (one
//! entity per tab-separated line; see `log/tests/fixtures/go/README.md`), so
//! that our fold can be compared line for line with Go's.

use std::fmt::Write as _;

use almanac_log::quote::go_quote;

use super::Corpus;
use super::gerrit::ClData;
use super::git::{CommitData, Committer, GitHash, GitTime};
use super::github::{IssueData, MilestoneRef, RepoKey, UserRef};
use super::text::Sym;
use super::time::Time;

impl Corpus {
    /// Renders the whole corpus in the oracle dump format.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.dump_github(&mut out);
        self.dump_gerrit(&mut out);
        self.dump_git(&mut out);
        out
    }

    pub(crate) fn sym(&self, s: Sym) -> &[u8] {
        self.syms.get(s)
    }

    fn user(&self, r: Option<UserRef>) -> String {
        match r {
            None => "-".to_owned(),
            Some(r) => {
                let u = self.github.user_data(r);
                format!("{}:{}", u.id, String::from_utf8_lossy(self.sym(u.login)))
            }
        }
    }

    fn repo_name(&self, key: &RepoKey) -> String {
        format!(
            "{}/{}",
            String::from_utf8_lossy(self.sym(key.owner)),
            String::from_utf8_lossy(self.sym(key.repo))
        )
    }

    fn dump_github(&self, out: &mut String) {
        let mut repos: Vec<(&RepoKey, _)> = self.github.repos.iter().collect();
        repos.sort_by(|a, b| {
            (self.sym(a.0.owner), self.sym(a.0.repo))
                .cmp(&(self.sym(b.0.owner), self.sym(b.0.repo)))
        });
        for (key, repo) in repos {
            let name = self.repo_name(key);
            let _ = writeln!(
                out,
                "GHREPO\t{name}\tissues={}\tlabels={}\tmilestones={}",
                repo.issues.len(),
                repo.labels.len(),
                repo.milestones.len()
            );
            for (id, label) in &repo.labels {
                let _ = writeln!(out, "GHLABEL\t{name}\t{id}\t{}", go_quote(self.sym(*label)));
            }
            for (id, ms) in &repo.milestones {
                let _ = writeln!(
                    out,
                    "GHMS\t{name}\t{id}\t{}\tnum={}\tclosed={}",
                    go_quote(self.sym(ms.title)),
                    ms.number,
                    ms.closed
                );
            }
            for issue in repo.issues.values() {
                self.dump_issue(out, &name, repo, issue);
            }
        }
    }

    fn dump_issue(
        &self,
        out: &mut String,
        repo_name: &str,
        repo: &super::github::RepoData,
        issue: &IssueData,
    ) {
        let at = format!("{repo_name}#{}", issue.number);
        let ms = match issue.milestone {
            MilestoneRef::Unknown => "<unknown>".to_owned(),
            MilestoneRef::None => "<none>".to_owned(),
            MilestoneRef::Id(id) => {
                let title = repo
                    .milestones
                    .get(&id)
                    .map_or(&b""[..], |m| self.sym(m.title));
                format!("{id}:{}", String::from_utf8_lossy(title))
            }
        };
        let mut labels: Vec<String> = issue
            .labels
            .iter()
            .map(|id| {
                let name = repo.labels.get(id).map_or(&b""[..], |s| self.sym(*s));
                format!("{id}:{}", String::from_utf8_lossy(name))
            })
            .collect();
        labels.sort();
        let assignees: Vec<String> = issue
            .assignees
            .iter()
            .map(|a| self.user(Some(*a)))
            .collect();
        let _ = writeln!(
            out,
            "GHISSUE\t{at}\tid={}\tnotexist={}\tpr={}\tclosed={}\tlocked={}\tuser={}\tcreated={}\tupdated={}\tclosedat={}\tclosedby={}\tms={}\tlabels={}\tassignees={}\ttitle={}\tbody={}",
            issue.id,
            issue.not_exist,
            issue.pull_request,
            issue.closed,
            issue.locked,
            self.user(issue.user),
            issue.created,
            issue.updated,
            issue.closed_at,
            self.user(issue.closed_by),
            go_quote(ms),
            labels.join(","),
            assignees.join(","),
            go_quote(self.texts.get(issue.title)),
            go_quote(self.texts.get(issue.body)),
        );
        let mut comments: Vec<_> = issue.comments.iter().collect();
        comments.sort_by_key(|c| (c.created, c.id));
        for c in comments {
            let _ = writeln!(
                out,
                "GHCOMMENT\t{at}\t{}\tuser={}\tcreated={}\tupdated={}\tbody={}",
                c.id,
                self.user(c.user),
                c.created,
                c.updated,
                go_quote(self.texts.get(c.body))
            );
        }
        let mut events: Vec<_> = issue.events.iter().collect();
        events.sort_by_key(|e| (e.created, e.id));
        for e in events {
            let x = self.github.extra(e);
            let _ = writeln!(
                out,
                "GHEVENT\t{at}\t{}\t{}\tactor={}\tcreated={}\tlabel={}\tms={}\tfrom={}\tto={}\tcommit={}\tassignee={}\tassigner={}\treviewer={}\tother={}",
                e.id,
                String::from_utf8_lossy(self.sym(e.typ)),
                self.user(e.actor),
                e.created,
                go_quote(self.sym(e.label)),
                go_quote(self.sym(e.milestone)),
                go_quote(self.texts.get(x.from)),
                go_quote(self.texts.get(x.to)),
                String::from_utf8_lossy(self.sym(e.commit_id)),
                self.user(x.assignee),
                self.user(x.assigner),
                self.user(x.reviewer),
                go_quote(""),
            );
        }
        if issue.pull_request {
            let mut reviews: Vec<_> = issue.reviews.iter().collect();
            reviews.sort_by_key(|r| (r.created, r.id));
            for r in reviews {
                let _ = writeln!(
                    out,
                    "GHREVIEW\t{at}\t{}\tactor={}\tcreated={}\tstate={}\tcommit={}\tassoc={}\tbody={}",
                    r.id,
                    self.user(r.actor),
                    r.created,
                    String::from_utf8_lossy(self.sym(r.state)),
                    String::from_utf8_lossy(self.sym(r.commit_id)),
                    String::from_utf8_lossy(self.sym(r.actor_association)),
                    go_quote(self.texts.get(r.body)),
                );
            }
        }
    }

    fn hash_of(&self, idx: Option<super::git::CommitIdx>) -> String {
        idx.map_or_else(|| "-".to_owned(), |i| self.git.get(i).hash.to_string())
    }

    fn dump_gerrit(&self, out: &mut String) {
        for (name, p) in &self.gerrit.projects {
            let _ = writeln!(
                out,
                "GPROJ\t{name}\tcls={}\tcommits={}\tneed={}\trefs={}\tremote={}\tlabelchanges={}",
                p.cls.len(),
                p.commit_count,
                p.need.len(),
                p.refs.len(),
                p.remote_count(),
                p.num_label_changes
            );
            for (r, hash) in &p.refs {
                let _ = writeln!(out, "GREF\t{name}\t{}\t{hash}", String::from_utf8_lossy(r));
            }
            for cl in p.cls.values() {
                self.dump_cl(out, name, cl);
            }
        }
    }

    fn dump_cl(&self, out: &mut String, project: &str, cl: &ClData) {
        let msg: &[u8] = cl
            .commit
            .map_or(&b""[..], |c| self.texts.get(self.git.get(c).msg));
        let refs: Vec<String> = cl
            .github_refs
            .iter()
            .map(|(k, n)| format!("{}#{n}", self.repo_name(k)))
            .collect();
        let _ = writeln!(
            out,
            "GCL\t{project}\t{}\tversion={}\tstatus={}\tprivate={}\twip={}\tbranch={}\tcreated={}\tcommit={}\tmeta={}\tmetas={}\tmsgs={}\tghrefs={}\tchangeid={}\tsubject={}",
            cl.number,
            cl.version,
            cl.status.as_str(),
            cl.private,
            self.work_in_progress(cl),
            String::from_utf8_lossy(self.sym(cl.branch)),
            git_time(cl.created),
            self.hash_of(cl.commit),
            self.hash_of(cl.meta),
            cl.metas.len(),
            cl.messages.len(),
            refs.join(","),
            String::from_utf8_lossy(super::notedb::change_id(msg)),
            go_quote(super::notedb::subject(msg)),
        );
        for m in &cl.messages {
            let _ = writeln!(
                out,
                "GCLMSG\t{project}\t{}\tv={}\tdate={}\tauthor={}\tmeta={}\tmsg={}",
                cl.number,
                m.version,
                git_time(m.date),
                m.author.map_or("-".to_owned(), |a| go_quote(self.sym(a))),
                self.git.get(m.meta).hash,
                go_quote(self.texts.get(m.text)),
            );
        }
        for m in &cl.metas {
            let _ = writeln!(
                out,
                "GCLMETA\t{project}\t{}\t{}",
                cl.number,
                self.git.get(*m).hash
            );
        }
    }

    /// Go's `WorkInProgress()`: the last true/false `Work-in-progress:`
    /// value over the metas, oldest to newest.
    pub(crate) fn work_in_progress(&self, cl: &ClData) -> bool {
        let mut wip = false;
        for m in &cl.metas {
            match super::notedb::line_value(
                self.texts.get(self.git.get(*m).msg),
                b"Work-in-progress:",
            ) {
                b"true" => wip = true,
                b"false" => wip = false,
                _ => {}
            }
        }
        wip
    }

    fn dump_git(&self, out: &mut String) {
        let mut commits: Vec<&CommitData> = self.git.commits.iter().collect();
        commits.sort_by_key(|c| c.hash);
        for c in commits {
            let parents: Vec<String> = c
                .parents
                .as_slice()
                .iter()
                .map(|p| self.git.get(*p).hash.to_string())
                .collect();
            let committer = match c.committer {
                Committer::None => "-".to_owned(),
                Committer::Placeholder => "<placeholder>".to_owned(),
                Committer::Person(p) => go_quote(self.sym(p)),
            };
            let _ = writeln!(
                out,
                "GIT\t{}\ttree={}\tparents={}\tauthor={}\tatime={}\tcommitter={committer}\tctime={}\treviewer={}\tfiles={}\tgerritmeta={}\tmsg={}",
                c.hash,
                hash_or_dash(c.tree),
                parents.join(","),
                c.author.map_or("-".to_owned(), |a| go_quote(self.sym(a))),
                git_time(c.author_time),
                git_time(c.commit_time),
                c.reviewer
                    .map_or("-".to_owned(), |r| go_quote(self.texts.get(r))),
                c.files.as_ref().map_or(0, |f| f.len()),
                c.gerrit_meta.get(),
                go_quote(self.texts.get(c.msg)),
            );
        }
    }
}

fn git_time(t: Option<GitTime>) -> String {
    t.map_or(Time::ZERO, GitTime::instant).to_string()
}

fn hash_or_dash(h: GitHash) -> String {
    if h.is_zero() {
        "-".to_owned()
    } else {
        h.to_string()
    }
}
