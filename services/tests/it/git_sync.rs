//! git sync against real repositories made with the git command: merges,
//! root commits, non-UTF-8 and unusual author lines, `gpgsig`, renames,
//! binary files, quoted names, annotated tags, and this project's own
//! history. The oracle is git itself: every logged commit's raw bytes must
//! equal `git cat-file commit`, its diff tree must equal what Go's maintner
//! parses out of `git diff-tree --numstat`, and the refs must equal
//! `git for-each-ref`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{git, git_with, logged, runtime};
use almanac_proto::pb::maintpb::{GitDiffTreeFile, Mutation};
use almanac_services::ingest::config::GitSource;
use almanac_services::ingest::git;
use almanac_services::maintnerd::{Config, Server};

/// Runs git in `dir` with a fixed identity and clock, returning stdout.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8").trim().to_string()
}

fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
}

/// A repository with the shapes maintner meets in the wild.
fn make_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README"), "hello\nworld\n").expect("write");
    std::fs::write(dir.join("name with spaces.txt"), "a\n").expect("write");
    commit_all(dir, "root commit");

    // Binary file, a quoted name, an edit.
    std::fs::write(dir.join("image.bin"), [0u8, 1, 2, 3, 0, 255]).expect("write");
    std::fs::write(dir.join("café.txt"), "bonjour\n").expect("write");
    std::fs::write(dir.join("README"), "hello\nthere\nworld\n").expect("write");
    commit_all(dir, "binary, quoted name, edit");

    // A rename (diff-tree without -M: a deletion and an addition), a
    // subdirectory, a file without a trailing newline.
    git(dir, &["mv", "README", "README.md"]);
    std::fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    std::fs::write(dir.join("sub/deeper/x.go"), "package x").expect("write");
    commit_all(dir, "rename and subdirectory");

    // A branch and a merge.
    git(dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("sub/feature.go"), "package sub\n\nfunc F() {}\n").expect("write");
    commit_all(dir, "feature work");
    git(dir, &["checkout", "-q", "main"]);
    std::fs::write(dir.join("main.go"), "package main\n").expect("write");
    commit_all(dir, "main work");
    git(
        dir,
        &["merge", "-q", "--no-ff", "-m", "Merge feature", "feature"],
    );

    // Hand-written commit objects: a gpgsig block with continuation lines,
    // a non-UTF-8 author name with an encoding header, an unusual zone.
    let head = text(git(dir, &["rev-parse", "HEAD"]));
    let tree = text(git(dir, &["rev-parse", "HEAD^{tree}"]));
    let mut signed = format!(
        "tree {tree}\nparent {head}\nauthor Signed Gopher <signed@example.com> 1700000100 +0000\n\
         committer Signed Gopher <signed@example.com> 1700000100 +0000\n\
         gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n\n\
         signed commit\n"
    )
    .into_bytes();
    let signed_hash = text(git_with(
        dir,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        Some(&signed),
    ));
    signed.clear();
    let mut latin1 = format!("tree {tree}\nparent {signed_hash}\nauthor ").into_bytes();
    latin1.extend_from_slice(b"Andr\xe9 Gopher <andre@example.com> 1700000200 +1345\n");
    latin1.extend_from_slice(
        b"committer Gopher <gopher@example.com> 1700000200 -0930\nencoding ISO-8859-1\n\nlatin-1 author\n",
    );
    let latin1_hash = text(git_with(
        dir,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        Some(&latin1),
    ));
    git(dir, &["update-ref", "refs/heads/main", &latin1_hash]);
    git(dir, &["reset", "-q", "--hard", "main"]);

    // Large edits of a file full of repeated lines: xdiff's cleanup
    // discards frequent lines and its search heuristics cut the cost, so
    // counts differ from a minimal diff's; they must still equal git's.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let original: Vec<String> = (0..6000)
        .map(|i| match next() % 4 {
            0 => "}\n".to_string(),
            1 => format!("\tx{} := f({})\n", next() % 40, i % 97),
            _ => format!("line {}\n", next() % 3000),
        })
        .collect();
    std::fs::write(dir.join("big.txt"), original.concat()).expect("write");
    commit_all(dir, "big file");
    for round in 0..3 {
        let mut edited = Vec::new();
        for line in &original {
            match next() % 10 {
                0 => {}
                1 => {
                    edited.push(format!("inserted {round} {}\n", next() % 500));
                    edited.push(line.clone());
                }
                2 => edited.push("}\n".to_string()),
                _ => edited.push(line.clone()),
            }
        }
        std::fs::write(dir.join("big.txt"), edited.concat()).expect("write");
        commit_all(dir, &format!("big edit {round}"));
    }

    // An annotated tag and a lightweight one.
    git(dir, &["tag", "-a", "v1.0", "-m", "release 1.0", "HEAD~2"]);
    git(dir, &["tag", "light", "feature"]);
}

/// Go's parse of `git diff-tree --numstat <hash>` (maintner's
/// parseCommitFromGit): trim the line, skip a first line equal to the hash,
/// three fields at least, the rest is the name.
fn go_numstat(dir: &Path, hash: &str) -> Vec<GitDiffTreeFile> {
    let out = git(dir, &["diff-tree", "--numstat", hash]);
    let mut files = Vec::new();
    for (n, line) in String::from_utf8_lossy(&out).lines().enumerate() {
        let line = line.trim();
        if n == 0 && line == hash {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 {
            continue;
        }
        let binary = fields[0] == "-" || fields[1] == "-";
        let rest = line[fields[0].len()..].trim_start();
        let name = rest[fields[1].len()..].trim();
        files.push(GitDiffTreeFile {
            file: name.to_string(),
            added: fields[0].parse().unwrap_or(0),
            deleted: fields[1].parse().unwrap_or(0),
            binary,
        });
    }
    files.sort_by(|a, b| a.file.cmp(&b.file));
    files
}

/// `git for-each-ref` over heads and tags: name → direct target.
fn for_each_ref(dir: &Path) -> BTreeMap<String, String> {
    let out = text(git(
        dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    ));
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, n)| (n.to_string(), h.to_string()))
        .collect()
}

/// What [`check_commits_against_git`] found.
struct Checked {
    commits: usize,
    files: usize,
    /// Files whose added or deleted counts differ from git's.
    count_mismatches: Vec<String>,
}

/// Checks every logged commit against git, and parent-before-child order.
///
/// File names, binary flags and each file's net change (added - deleted)
/// are asserted here; the counts themselves depend on which edit script
/// the diff picks (git's xdiff discards frequent lines and cuts costly
/// searches short, so they are not a minimal diff's), and are returned for
/// the caller to assert, with a readable list of every difference.
fn check_commits_against_git(dir: &Path, mutations: &[Mutation], name: &str) -> Checked {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut count = 0;
    let mut file_count = 0;
    let mut count_mismatches = Vec::new();
    for (i, m) in mutations.iter().enumerate() {
        let Some(g) = &m.git else { continue };
        assert_eq!(g.repo.as_ref().map(|r| r.go_repo.as_str()), Some(name));
        let Some(c) = &g.commit else { continue };
        count += 1;
        let raw = git(dir, &["cat-file", "commit", &c.sha1]);
        assert_eq!(c.raw.as_ref(), raw.as_slice(), "raw bytes of {}", c.sha1);
        let files = c
            .diff_tree
            .as_ref()
            .map(|d| d.file.clone())
            .unwrap_or_default();
        let want = go_numstat(dir, &c.sha1);
        let shape = |f: &[GitDiffTreeFile]| -> Vec<(String, bool, i64)> {
            f.iter()
                .map(|f| (f.file.clone(), f.binary, f.added - f.deleted))
                .collect()
        };
        assert_eq!(shape(&files), shape(&want), "numstat of {}", c.sha1);
        file_count += files.len();
        for (ours, git) in files.iter().zip(&want) {
            if ours != git {
                count_mismatches.push(format!(
                    "{} {}: ours {}/{} git {}/{}",
                    c.sha1, ours.file, ours.added, ours.deleted, git.added, git.deleted
                ));
            }
        }
        let parents = text(git(dir, &["rev-parse", &format!("{}^@", c.sha1)]));
        for parent in parents.lines() {
            let at = seen
                .get(parent)
                .unwrap_or_else(|| panic!("{} logged before its parent {parent}", c.sha1));
            assert!(*at < i);
        }
        assert!(seen.insert(c.sha1.clone(), i).is_none(), "{} twice", c.sha1);
    }
    Checked {
        commits: count,
        files: file_count,
        count_mismatches,
    }
}

fn start(data: &Path, rt: &tokio::runtime::Runtime) -> Server {
    let mut server = rt
        .block_on(Server::start(Config::new(
            data.to_path_buf(),
            "127.0.0.1:0".parse().expect("addr"),
        )))
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    rt.block_on(server.corpus_ready());
    server
}

#[test]
fn logs_commits_and_refs_exactly_as_git_shows_them() {
    let work = tempfile::tempdir().expect("tempdir");
    let repo_dir = work.path().join("repo");
    std::fs::create_dir_all(&repo_dir).expect("mkdir");
    make_repo(&repo_dir);
    let data = work.path().join("log");
    let repos = work.path().join("repos");
    let rt = runtime();
    let server = start(&data, &rt);
    let sink = server.sink();
    let source = GitSource {
        name: "demo".into(),
        url: repo_dir.display().to_string(),
    };

    let stats = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .unwrap_or_else(|e| panic!("sync: {e}"));
    let all = text(git(&repo_dir, &["rev-list", "--all"]));
    let expected_commits = all.lines().count();
    assert_eq!(stats.commits as usize, expected_commits);
    let mutations = logged(&server);
    let checked = check_commits_against_git(&repo_dir, &mutations, "demo");
    assert_eq!(checked.commits, expected_commits);
    assert!(checked.files >= 12, "{} files", checked.files);
    assert_eq!(checked.count_mismatches, Vec::<String>::new());
    // The last record carries the refs, after every commit.
    let refs_record = mutations.last().and_then(|m| m.git.as_ref()).expect("refs");
    assert!(refs_record.commit.is_none());
    let expected_refs = for_each_ref(&repo_dir);
    let logged_refs: BTreeMap<String, String> = refs_record
        .refs
        .iter()
        .map(|r| (r.r#ref.clone(), r.sha1.clone()))
        .collect();
    assert_eq!(logged_refs, expected_refs);

    // The corpus folded it: commits by hash with their parents and
    // authors as git prints them, and the refs.
    sink.read(|c| {
        for hash in all.lines() {
            let commit = c.git_commit(hash).expect("commit in corpus");
            assert!(!commit.is_placeholder(), "{hash}");
            let parents: Vec<String> = commit.parents().map(|p| p.hash().to_string()).collect();
            let want = text(git(&repo_dir, &["rev-parse", &format!("{hash}^@")]));
            assert_eq!(parents, want.lines().collect::<Vec<_>>(), "{hash}");
        }
        let repo = c.git_repo("demo").expect("repo refs");
        let folded: BTreeMap<String, String> = repo
            .refs()
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect();
        assert_eq!(folded, expected_refs);
    })
    .expect("corpus");

    // Nothing new: nothing appended.
    let end = server.log().end();
    let again = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .expect("second sync");
    assert_eq!(again, git::PassStats::default());
    assert_eq!(server.log().end(), end);

    // One commit on main, a branch deleted: one commit, one moved ref, one
    // deleted ref.
    std::fs::write(repo_dir.join("main.go"), "package main\n\nfunc main() {}\n").expect("write");
    commit_all(&repo_dir, "more main work");
    git(&repo_dir, &["branch", "-q", "-D", "feature"]);
    let third = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .expect("third sync");
    assert_eq!(
        third,
        git::PassStats {
            commits: 1,
            refs: 1,
            deleted_refs: 1
        }
    );
    sink.read(|c| {
        let repo = c.git_repo("demo").expect("repo");
        assert!(repo.ref_hash("refs/heads/feature").is_none());
        let head = text(git(&repo_dir, &["rev-parse", "main"]));
        assert_eq!(
            repo.ref_hash("refs/heads/main").map(|h| h.to_string()),
            Some(head)
        );
    })
    .expect("corpus");
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn a_url_is_fetched_into_a_mirror_with_gix() {
    let work = tempfile::tempdir().expect("tempdir");
    let repo_dir = work.path().join("upstream");
    std::fs::create_dir_all(&repo_dir).expect("mkdir");
    make_repo(&repo_dir);
    let data = work.path().join("log");
    let repos = work.path().join("repos");
    let rt = runtime();
    let server = start(&data, &rt);
    let sink = server.sink();
    let source = GitSource {
        name: "fetched".into(),
        url: format!("file://{}", repo_dir.display()),
    };
    let stats = rt
        .block_on(git::sync_repo(&sink, &source, &repos))
        .unwrap_or_else(|e| panic!("sync: {e}"));
    let expected_commits = text(git(&repo_dir, &["rev-list", "--all"])).lines().count();
    assert_eq!(stats.commits as usize, expected_commits);
    assert!(
        git::mirror_dir(&repos, "git", "fetched")
            .join("HEAD")
            .exists()
    );
    let mutations = logged(&server);
    let checked = check_commits_against_git(&repo_dir, &mutations, "fetched");
    assert_eq!(checked.commits, expected_commits);
    assert_eq!(checked.count_mismatches, Vec::<String>::new());
    sink.read(|c| {
        let folded: BTreeMap<String, String> = c
            .git_repo("fetched")
            .expect("refs")
            .refs()
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect();
        assert_eq!(folded, for_each_ref(&repo_dir));
    })
    .expect("corpus");
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// This project's own repository (the checkout the tests run in).
fn own_repository() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let top = text(git(&manifest, &["rev-parse", "--show-toplevel"]));
    PathBuf::from(top)
}

#[test]
fn this_projects_history_matches_git_log() {
    let own = own_repository();
    let work = tempfile::tempdir().expect("tempdir");
    // A bare copy, so commits made while the test runs change nothing.
    let copy = work.path().join("own.git");
    let status = Command::new("git")
        .args(["clone", "-q", "--bare", "--no-local"])
        .arg(&own)
        .arg(&copy)
        .status()
        .expect("git clone");
    assert!(status.success());
    let rt = runtime();
    let server = start(&work.path().join("log"), &rt);
    let sink = server.sink();
    let source = GitSource {
        name: "almanac".into(),
        url: copy.display().to_string(),
    };
    let stats = rt
        .block_on(git::sync_repo(&sink, &source, &work.path().join("repos")))
        .unwrap_or_else(|e| panic!("sync: {e}"));
    let log = text(git(&copy, &["log", "--all", "--format=%H %P|%an <%ae>|%s"]));
    assert_eq!(stats.commits as usize, log.lines().count());
    let mutations = logged(&server);
    let checked = check_commits_against_git(&copy, &mutations, "almanac");
    assert_eq!(checked.commits, log.lines().count());
    assert!(
        checked.count_mismatches.is_empty(),
        "{} of {} files count differently from git: {:#?}",
        checked.count_mismatches.len(),
        checked.files,
        checked.count_mismatches
    );
    sink.read(|c| {
        for line in log.lines() {
            let (ids, rest) = line.split_once('|').expect("format");
            let (author, subject) = rest.split_once('|').expect("format");
            let mut ids = ids.split_whitespace();
            let hash = ids.next().expect("hash");
            let commit = c.git_commit(hash).expect("in corpus");
            let parents: Vec<String> = commit.parents().map(|p| p.hash().to_string()).collect();
            assert_eq!(parents, ids.collect::<Vec<_>>(), "{hash}");
            assert_eq!(
                commit.author().map(|p| p.text().into_owned()).as_deref(),
                Some(author),
                "{hash}"
            );
            assert_eq!(commit.summary(), subject, "{hash}");
        }
    })
    .expect("corpus");
    rt.block_on(server.shutdown()).expect("shutdown");
}
