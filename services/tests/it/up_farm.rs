//! `almanac up` with the project's own `env/`: beside maintnerd it runs a
//! coordinator and a local listen-mode buildlet, so a commit made in a
//! tracked repository is built (its `build.sh`, by the
//! `linux-amd64-script` builder) and shows on the status page, passing or
//! failing as the commit says, with its log served.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{almanac, arg, exchange, git, wait_for_addr_file};

fn head(repo: &Path) -> String {
    String::from_utf8(git(repo, &["rev-parse", "HEAD"]))
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Polls the coordinator's JSON status until a finished build of `commit`
/// appears; returns it.
fn wait_for_build(coordinator: SocketAddr, commit: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = exchange(coordinator, "GET", "/status.json", &[], b"", true).json();
        if let Some(b) = status["recent_builds"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["sub_rev"] == commit)
        {
            return b.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no finished build of {commit} within two minutes: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_script(repo: &Path, body: &str) {
    let path = repo.join("build.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
    let mut perms = std::fs::metadata(&path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
}

#[test]
fn up_builds_a_new_commit_and_shows_it_on_the_status_page() {
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("hello");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    write_script(&repo, "echo hello builds");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "hello: first"]);
    let first = head(&repo);

    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("../env");
    let data = work.path().join("data");
    let addr_file = work.path().join("addr");
    let mut child = almanac()
        .args([
            "up",
            "--data",
            arg(&data),
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            arg(&addr_file),
            "--no-seed",
            "--sample-rate",
            "0",
            "--git",
            arg(&repo),
            "--env",
            arg(&env),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    wait_for_addr_file(&addr_file, &mut child);
    let coordinator = wait_for_addr_file(&addr_file.with_extension("coordinator"), &mut child);

    let built = wait_for_build(coordinator, &first);
    assert_eq!(built["builder"], "linux-amd64-script");
    assert_eq!(built["outcome"], "passed", "{built:#}");

    // A commit made while up runs: built within its poll, failing as its
    // script says, and on the page with its log.
    write_script(&repo, "echo about to fail; exit 7");
    git(&repo, &["commit", "-q", "-am", "hello: second"]);
    let second = head(&repo);
    let made = Instant::now();
    let built = wait_for_build(coordinator, &second);
    eprintln!(
        "second commit built and on the status page after {:?}",
        made.elapsed()
    );
    assert_eq!(built["outcome"], "failed", "{built:#}");
    let page = exchange(coordinator, "GET", "/", &[], b"", true).text();
    let id = built["build_id"].as_str().expect("build id");
    assert!(page.contains(id), "the page lists {id}");
    let log_url = built["log"]["url"].as_str().expect("log url");
    let log = exchange(coordinator, "GET", log_url, &[], b"", true).text();
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains("exit status 7"), "{log}");
    let build_page = exchange(coordinator, "GET", &format!("/build/{id}"), &[], b"", true).text();
    assert!(build_page.contains("./build.sh"), "{build_page}");
    let metrics = exchange(coordinator, "GET", "/metrics", &[], b"", true).text();
    assert!(
        metrics.contains("almanac_coordinator_builds_failed_total 1"),
        "{metrics}"
    );
    let gauge = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(gauge("almanac_coordinator_builds_kept") >= 2, "{metrics}");
    assert_eq!(gauge("almanac_coordinator_builds_retired"), 0, "{metrics}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success());
}
