//! Deterministic sample mutations shaped like the Go project's real log:
//! issues with comments and events, git commits with raw commit text and
//! diff trees, Gerrit refs, and build-farm events, interleaved in time.
//!
//! Used by `almanac log demo` and by tests and benchmarks that need
//! realistic records. The same seed always yields the same bytes.

use almanac_proto::pb::farm;
use almanac_proto::pb::maintpb::{
    GerritMutation, GitCommit, GitDiffTree, GitDiffTreeFile, GitMutation, GitRef, GitRepo,
    GithubIssueCommentMutation, GithubIssueEvent, GithubIssueMutation, GithubLabel, GithubMutation,
    GithubUser, Mutation,
};
use prost_types::Timestamp;

/// A small, fast, deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A length with a long tail: usually near `typical`, sometimes far above.
    pub fn long_tail(&mut self, typical: u64) -> u64 {
        let r = self.below(1000);
        match r {
            0..=899 => typical / 2 + self.below(typical),
            900..=989 => typical * 2 + self.below(typical * 8),
            _ => typical * 10 + self.below(typical * 100),
        }
    }
}

/// The words sample texts are made of.
pub(crate) const WORDS: &[&str] = &[
    "the",
    "runtime",
    "compiler",
    "test",
    "fails",
    "on",
    "linux",
    "darwin",
    "windows",
    "with",
    "race",
    "detector",
    "panic",
    "goroutine",
    "channel",
    "deadlock",
    "timeout",
    "build",
    "module",
    "proxy",
    "cmd/go",
    "net/http",
    "TLS",
    "handshake",
    "regression",
    "since",
    "go1.21",
    "bisect",
    "points",
    "to",
    "commit",
    "flaky",
    "builder",
    "arm64",
    "please",
    "investigate",
    "reproduces",
    "reliably",
    "after",
    "change",
    "memory",
    "allocation",
];

fn words(rng: &mut Rng, bytes: u64) -> String {
    let mut s = String::with_capacity(bytes as usize + 16);
    while (s.len() as u64) < bytes {
        if !s.is_empty() {
            s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s
}

/// 40 random hex digits: a git object id.
pub(crate) fn hex40(rng: &mut Rng) -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        rng.next_u64(),
        rng.next_u64(),
        rng.next_u64() as u32
    )
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// Generates an endless, time-ordered stream of mutations.
#[derive(Debug, Clone)]
pub struct SampleHistory {
    rng: Rng,
    now: i64,
    issues: i32,
    comment_id: i64,
    event_id: i64,
    last_commit: Option<String>,
    builds: u64,
    started: bool,
    /// Whether it makes up build requests (off where a real coordinator
    /// owns the log's build events).
    farm_events: bool,
}

impl SampleHistory {
    /// A history for `seed`, starting in 2017.
    pub fn new(seed: u64) -> SampleHistory {
        SampleHistory {
            rng: Rng::new(seed),
            now: 1_483_228_800,
            issues: 0,
            comment_id: 1_000_000,
            event_id: 5_000_000,
            last_commit: None,
            builds: 0,
            started: false,
            farm_events: true,
        }
    }

    /// The same history with no made-up build requests (the draws that
    /// would have made one make a comment instead), for a log a real
    /// coordinator acts on.
    pub fn without_farm_events(mut self) -> SampleHistory {
        self.farm_events = false;
        self
    }

    fn user(&mut self) -> GithubUser {
        let id = 1 + self.rng.below(5000) as i64;
        GithubUser {
            id,
            login: format!("gopher{id}"),
        }
    }

    /// The next mutation.
    pub fn next_mutation(&mut self) -> Mutation {
        self.now += 1 + self.rng.below(120) as i64;
        if !self.started {
            self.started = true;
            return Mutation {
                github: Some(GithubMutation {
                    owner: "golang".into(),
                    repo: "go".into(),
                    labels: [
                        "NeedsFix",
                        "NeedsInvestigation",
                        "Documentation",
                        "release-blocker",
                    ]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| GithubLabel {
                        id: i as i64 + 1,
                        name: (*n).into(),
                    })
                    .collect(),
                    milestones: vec![],
                }),
                ..Default::default()
            };
        }
        match self.rng.below(100) {
            0..=11 => self.new_issue(),
            12..=59 => self.comment(),
            60..=79 => self.event(),
            80..=91 => self.git_commit(),
            92..=95 => self.gerrit_refs(),
            _ if self.farm_events => self.build_event(),
            _ => self.comment(),
        }
    }

    fn issue_header(&mut self, number: i32) -> GithubIssueMutation {
        GithubIssueMutation {
            owner: "golang".into(),
            repo: "go".into(),
            number,
            updated: ts(self.now),
            ..Default::default()
        }
    }

    fn existing_issue(&mut self) -> i32 {
        if self.issues == 0 {
            self.issues = 1;
        }
        1 + self.rng.below(self.issues as u64) as i32
    }

    fn new_issue(&mut self) -> Mutation {
        self.issues += 1;
        let number = self.issues;
        let user = self.user();
        let title_len = 30 + self.rng.below(50);
        let body_len = self.rng.long_tail(400);
        let mut issue = self.issue_header(number);
        issue.id = 100_000_000 + i64::from(number);
        issue.user = Some(user);
        issue.created = ts(self.now);
        issue.title = words(&mut self.rng, title_len);
        issue.body = words(&mut self.rng, body_len);
        Mutation {
            github_issue: Some(issue),
            ..Default::default()
        }
    }

    fn comment(&mut self) -> Mutation {
        let number = self.existing_issue();
        self.comment_id += 1;
        let body_len = self.rng.long_tail(200);
        let comment = GithubIssueCommentMutation {
            id: self.comment_id,
            user: Some(self.user()),
            body: words(&mut self.rng, body_len),
            created: ts(self.now),
            updated: ts(self.now),
        };
        let mut issue = self.issue_header(number);
        issue.comment = vec![comment];
        Mutation {
            github_issue: Some(issue),
            ..Default::default()
        }
    }

    fn event(&mut self) -> Mutation {
        let number = self.existing_issue();
        self.event_id += 1;
        let label = 1 + self.rng.below(4) as i64;
        let actor = self.user().id;
        let event = GithubIssueEvent {
            id: self.event_id,
            event_type: "labeled".into(),
            actor_id: actor,
            created: ts(self.now),
            label: Some(GithubLabel {
                id: 0,
                name: [
                    "NeedsFix",
                    "NeedsInvestigation",
                    "Documentation",
                    "release-blocker",
                ][label as usize - 1]
                    .into(),
            }),
            ..Default::default()
        };
        let mut issue = self.issue_header(number);
        issue.event = vec![event];
        issue.add_label = vec![GithubLabel {
            id: label,
            name: String::new(),
        }];
        Mutation {
            github_issue: Some(issue),
            ..Default::default()
        }
    }

    fn raw_commit(&mut self) -> (String, Vec<u8>) {
        let sha = hex40(&mut self.rng);
        let tree = hex40(&mut self.rng);
        let author = self.user();
        let mut raw = format!("tree {tree}\n");
        if let Some(parent) = &self.last_commit {
            raw.push_str(&format!("parent {parent}\n"));
        }
        raw.push_str(&format!(
            "author {} <{}@golang.org> {} -0700\ncommitter Gopher Robot <gobot@golang.org> {} +0000\n\n",
            author.login, author.login, self.now - 3600, self.now
        ));
        let subject_len = 30 + self.rng.below(40);
        let body_len = self.rng.long_tail(300);
        raw.push_str(&format!(
            "runtime: {}\n\n{}\n\nFixes #{}\n\nChange-Id: I{}\nReviewed-on: https://go-review.googlesource.com/c/go/+/{}\n",
            words(&mut self.rng, subject_len),
            words(&mut self.rng, body_len),
            self.existing_issue(),
            hex40(&mut self.rng),
            100_000 + self.rng.below(400_000)
        ));
        self.last_commit = Some(sha.clone());
        (sha, raw.into_bytes())
    }

    fn git_commit(&mut self) -> Mutation {
        let (sha1, raw) = self.raw_commit();
        let files = (0..1 + self.rng.below(6))
            .map(|i| GitDiffTreeFile {
                file: format!("src/runtime/file{}_{i}.go", self.rng.below(400)),
                added: self.rng.below(200) as i64,
                deleted: self.rng.below(80) as i64,
                binary: false,
            })
            .collect();
        Mutation {
            git: Some(GitMutation {
                repo: Some(GitRepo {
                    go_repo: "go".into(),
                }),
                commit: Some(GitCommit {
                    sha1,
                    raw: raw.into(),
                    diff_tree: Some(GitDiffTree { file: files }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn gerrit_refs(&mut self) -> Mutation {
        let cl = 100_000 + self.rng.below(400_000);
        let ps = 1 + self.rng.below(6);
        let (sha1, raw) = self.raw_commit();
        Mutation {
            gerrit: Some(GerritMutation {
                project: "go.googlesource.com/go".into(),
                commits: vec![GitCommit {
                    sha1: sha1.clone(),
                    raw: raw.into(),
                    diff_tree: None,
                }],
                refs: vec![GitRef {
                    r#ref: format!("refs/changes/{:02}/{cl}/{ps}", cl % 100),
                    sha1,
                }],
                deleted_refs: vec![],
            }),
            ..Default::default()
        }
    }

    fn build_event(&mut self) -> Mutation {
        self.builds += 1;
        let build_id = format!("B{:09x}", self.builds);
        let meta = Some(farm::EventMeta {
            event_id: format!("E{:016x}", self.rng.next_u64()),
            time: ts(self.now),
            coordinator_instance: "P000000001".into(),
            correlation_id: build_id.clone(),
            batch_following: 0,
        });
        let rev = self
            .last_commit
            .clone()
            .unwrap_or_else(|| hex40(&mut self.rng));
        Mutation {
            build: Some(farm::BuildEvent {
                meta,
                event: Some(farm::build_event::Event::BuildRequested(
                    farm::BuildRequested {
                        build_id,
                        work: Some(farm::BuilderRev {
                            builder: "linux-amd64".into(),
                            rev,
                            ..Default::default()
                        }),
                        host_type: "host-linux-amd64-local".into(),
                        kind: farm::BuildKind::PostSubmit as i32,
                        branch: "master".into(),
                        attempt: 1,
                        ..Default::default()
                    },
                )),
            }),
            ..Default::default()
        }
    }
}

impl Iterator for SampleHistory {
    type Item = Mutation;

    fn next(&mut self) -> Option<Mutation> {
        Some(self.next_mutation())
    }
}
