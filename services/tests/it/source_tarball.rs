//! A build's source: the tarball of one commit's tree, read with gix, must
//! hold exactly what `git ls-tree -r` lists with the contents `git show`
//! gives, executable bits and links included, and be the same bytes every
//! time.

use std::collections::BTreeMap;
use std::io::Read as _;

use almanac_services::coordinator::source::tarball;

use crate::support::git;

#[test]
fn a_commits_tarball_is_its_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.join("src/deep")).expect("mkdir");
    std::fs::write(repo.join("README"), "hello\n").expect("write");
    std::fs::write(repo.join("build.sh"), "#!/bin/sh\necho building\n").expect("write");
    std::fs::write(repo.join("src/deep/x.go"), "package deep\n").expect("write");
    std::fs::write(repo.join("bin.dat"), [0u8, 1, 2, 255]).expect("write");
    std::os::unix::fs::symlink("README", repo.join("LINK")).expect("symlink");
    git(repo, &["add", "-A"]);
    git(repo, &["update-index", "--chmod=+x", "build.sh"]);
    git(repo, &["commit", "-q", "-m", "first"]);
    let first = String::from_utf8(git(repo, &["rev-parse", "HEAD"])).expect("utf-8");
    let first = first.trim();
    std::fs::write(repo.join("README"), "changed later\n").expect("write");
    git(repo, &["commit", "-q", "-am", "second"]);

    let r = gix::open(repo).expect("open");
    let tgz = tarball(&r, first).expect("tarball");
    assert_eq!(tgz, tarball(&r, first).expect("again"), "deterministic");

    // What git says the first commit holds.
    let listing = String::from_utf8(git(repo, &["ls-tree", "-r", first])).expect("utf-8");
    let mut want: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    for line in listing.lines() {
        let (meta, path) = line.split_once('\t').expect("tab");
        let mode = meta.split(' ').next().expect("mode").to_string();
        let content = git(repo, &["show", &format!("{first}:{path}")]);
        want.insert(path.to_string(), (mode, content));
    }

    let mut got: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz.as_slice()));
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let header = entry.header().clone();
        assert_eq!(header.mtime().expect("mtime"), 1_700_000_000, "{path}");
        match header.entry_type() {
            tar::EntryType::Directory => dirs.push(path),
            tar::EntryType::Symlink => {
                let target = entry.link_name().expect("link").expect("target");
                got.insert(
                    path,
                    (
                        "120000".into(),
                        target.to_string_lossy().as_bytes().to_vec(),
                    ),
                );
            }
            tar::EntryType::Regular => {
                let mode = if header.mode().expect("mode") & 0o111 != 0 {
                    "100755"
                } else {
                    "100644"
                };
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("read");
                got.insert(path, (mode.into(), data));
            }
            other => panic!("unexpected entry type {other:?} for {path}"),
        }
    }
    assert_eq!(got, want);
    assert_eq!(dirs, ["src/", "src/deep/"]);
    assert_eq!(
        got["README"].1, b"hello\n",
        "the first commit's README, not the working tree's"
    );

    assert!(tarball(&r, "not-a-hash").is_err());
}
