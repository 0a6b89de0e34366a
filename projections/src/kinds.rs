//! Counts of mutations by kind: the smallest useful view, and a check that
//! a replay saw what a log holds.

use std::collections::BTreeMap;
use std::convert::Infallible;

use almanac_log::Position;
use almanac_proto::pb::maintpb::Mutation;

use crate::Projection;

/// How many mutations carry each top-level field, and the last position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Mutations applied.
    pub mutations: u64,
    /// Count per kind: `github_issue`, `github`, `git`, `gerrit`, and the
    /// farm event names (`farm:build_requested`, ...).
    pub by_kind: BTreeMap<String, u64>,
    /// Position of the last mutation applied.
    pub last: Option<Position>,
}

impl Projection for KindCounts {
    type Error = Infallible;

    fn apply(&mut self, pos: Position, m: &Mutation) -> Result<(), Infallible> {
        self.mutations += 1;
        self.last = Some(pos);
        let mut bump = |k: &str| *self.by_kind.entry(k.to_owned()).or_default() += 1;
        if m.github_issue.is_some() {
            bump("github_issue");
        }
        if m.github.is_some() {
            bump("github");
        }
        if m.git.is_some() {
            bump("git");
        }
        if m.gerrit.is_some() {
            bump("gerrit");
        }
        if let Some(name) = almanac_proto::summary::farm_event_name(m) {
            bump(&format!("farm:{name}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use almanac_proto::pb::maintpb::{GitMutation, GithubIssueMutation};

    #[test]
    fn counts_each_top_level_field() {
        let mut view = KindCounts::default();
        let both = Mutation {
            github_issue: Some(GithubIssueMutation::default()),
            git: Some(GitMutation::default()),
            ..Default::default()
        };
        view.apply(Position(0), &both).expect("infallible");
        view.apply(Position(40), &Mutation::default())
            .expect("infallible");
        assert_eq!(view.mutations, 2);
        assert_eq!(view.last, Some(Position(40)));
        assert_eq!(
            view.by_kind.into_iter().collect::<Vec<_>>(),
            [("git".to_owned(), 1), ("github_issue".to_owned(), 1)]
        );
    }
}
