//! git sync of a generated repository into an in-process maintnerd:
//! commits per second for the first sync (reading objects with gix,
//! computing git's numstat, appending durably, folding), a pass with
//! nothing new, and an incremental pass after 100 new commits.
//!
//! Workload: `ALMANAC_GIT_COMMITS` commits (default 50,000) written with
//! `git fast-import`, each editing 1 to 3 of 500 Go-like files of 40 to 400
//! lines (so diffs are real line diffs, not whole-file rewrites), with a
//! merge every 200 commits and a tag every 1,000.
//!
//! Run: `cargo bench -p almanac-services --bench git_sync`

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use almanac_services::ingest::config::GitSource;
use almanac_services::ingest::git;
use almanac_services::maintnerd::{Config, Server};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes the history with one `git fast-import` stream.
fn generate(dir: &Path, commits: usize, from: usize, rng: &mut Rng, files: &mut [Vec<String>]) {
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(["fast-import", "--quiet", "--force"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut out = Vec::with_capacity(commits * 2048);
    for i in from..from + commits {
        let msg = format!(
            "pkg{}: change {i}\n\nA longer explanation of change {i}.\n\nChange-Id: I{i:040}\n",
            i % 37
        );
        let when = 1_600_000_000 + i as u64 * 600;
        out.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{}\nauthor Gopher {} <g{}@example.com> {when} +0000\n\
                 committer Gopher <g@example.com> {when} +0000\ndata {}\n{msg}",
                i + 1,
                i % 50,
                i % 50,
                msg.len()
            )
            .as_bytes(),
        );
        if i == from && from > 0 {
            // Marks do not outlive a fast-import run: continue the branch.
            out.extend_from_slice(b"from refs/heads/main^0\n");
        } else if i > 0 {
            out.extend_from_slice(format!("from :{i}\n").as_bytes());
        }
        if i % 200 == 199 && i >= from + 150 {
            out.extend_from_slice(format!("merge :{}\n", i - 150).as_bytes());
        }
        for _ in 0..1 + rng.below(3) {
            let f = rng.below(files.len() as u64) as usize;
            let lines = &mut files[f];
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(lines.len() as u64 + 1) as usize;
                match rng.below(3) {
                    0 if !lines.is_empty() && at < lines.len() => {
                        lines.remove(at);
                    }
                    1 if at < lines.len() => {
                        lines[at] = format!("\tv{} := {}\n", i, rng.below(1000))
                    }
                    _ => lines.insert(at, format!("\tx := f({i}, {})\n", rng.below(100))),
                }
            }
            let content = lines.concat();
            out.extend_from_slice(
                format!(
                    "M 100644 inline pkg{}/file{f}.go\ndata {}\n",
                    f % 37,
                    content.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(content.as_bytes());
            out.push(b'\n');
        }
        if i % 1000 == 999 {
            out.extend_from_slice(
                format!("reset refs/tags/v0.{i}\nfrom :{}\n\n", i + 1).as_bytes(),
            );
        }
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&out).expect("fast-import input");
    drop(stdin);
    assert!(child.wait().expect("fast-import").success());
}

fn main() {
    let commits: usize = std::env::var("ALMANAC_GIT_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    let status = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(&repo)
        .status()
        .expect("git init");
    assert!(status.success());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut files: Vec<Vec<String>> = (0..500)
        .map(|f| {
            (0..40 + rng.below(360))
                .map(|l| match l % 7 {
                    0 => "}\n".to_string(),
                    1 => "\n".to_string(),
                    _ => format!("\tline{l} := compute({f}, {})\n", rng.below(1000)),
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    generate(&repo, commits, 0, &mut rng, &mut files);
    println!(
        "== git sync: {commits} commits over 500 files, generated in {:.1?}",
        started.elapsed()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut server = rt
        .block_on(Server::start(Config::new(
            work.path().join("log"),
            "127.0.0.1:0".parse().expect("addr"),
        )))
        .unwrap_or_else(|e| panic!("start maintnerd: {e:#}"));
    rt.block_on(server.corpus_ready());
    let sink = server.sink();
    let source = GitSource {
        name: "bench".into(),
        url: repo.display().to_string(),
    };
    let repos = work.path().join("repos");

    let started = Instant::now();
    let first = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .expect("initial sync");
    let wall = started.elapsed();
    let bytes = server.log().end().0;
    println!(
        "initial sync: {wall:.2?}, {} commits ({:.0}/s), {} refs, {:.1} MB appended (durable and folded)",
        first.commits,
        first.commits as f64 / wall.as_secs_f64(),
        first.refs,
        bytes as f64 / 1e6
    );

    let started = Instant::now();
    let idle = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .expect("idle sync");
    println!(
        "pass with nothing new: {:.2?}, {} commits, {} bytes appended",
        started.elapsed(),
        idle.commits,
        server.log().end().0 - bytes
    );
    assert_eq!(idle, git::PassStats::default());

    generate(&repo, 100, commits, &mut rng, &mut files);
    let started = Instant::now();
    let more = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .expect("incremental sync");
    println!(
        "incremental sync of 100 new commits: {:.2?}, {} commits, {} refs",
        started.elapsed(),
        more.commits,
        more.refs
    );
    println!("peak RSS: {:.0} MiB", common::peak_rss_mib());
    rt.block_on(server.shutdown()).expect("shutdown");
}
