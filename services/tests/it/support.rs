//! Running the `almanac` binary and making its input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use almanac_log::{Log, Options};
use almanac_proto::pb::maintpb::{GerritMutation, GitCommit, GitRef, Mutation};
use almanac_services::codec::MutationCodec;
use almanac_services::sample::SampleHistory;
use bytes::Bytes;
use prost::Message as _;

/// The built `almanac` binary.
pub(crate) fn almanac() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_almanac"));
    cmd.env("ALMANAC_LOG", "warn");
    cmd
}

/// Runs `almanac args...` with `stdin` and returns its output.
pub(crate) fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = almanac()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn almanac");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_owned();
    let feeder = std::thread::spawn(move || {
        use std::io::Write as _;
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder");
    out
}

/// Text of a process's stdout.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of a process's stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `n` sample mutations as canonical JSON lines.
pub(crate) fn sample_json(seed: u64, n: usize) -> Vec<String> {
    let codec = MutationCodec::new().expect("codec");
    SampleHistory::new(seed)
        .take(n)
        .map(|m| codec.to_json(&m.encode_to_vec()).expect("json"))
        .collect()
}

/// The repository's Go fixtures.
pub(crate) fn go_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../log/tests/fixtures/go")
        .join(name)
}

/// A directory path as a `&str` argument.
pub(crate) fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The segment files of a log directory, by name, with their bytes.
pub(crate) fn segment_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "mutlog"))
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits for a daemon started with `--addr-file` to write the address it
/// bound (it writes through a rename, so a read never sees half of it).
/// Fails at once, with its exit status, if the daemon exits first.
pub(crate) fn wait_for_addr_file(
    path: &Path,
    daemon: &mut std::process::Child,
) -> std::net::SocketAddr {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(addr) = text.trim().parse()
        {
            return addr;
        }
        if let Ok(Some(status)) = daemon.try_wait() {
            panic!(
                "the daemon exited ({status}) before writing its address to {}",
                path.display()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no address in {} after two minutes",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The multi-threaded runtime in-process servers run on (two workers, as
/// CI has two cores).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every record of a running server's log, decoded.
pub(crate) fn logged(
    server: &almanac_services::maintnerd::Server,
) -> Vec<almanac_proto::pb::maintpb::Mutation> {
    use prost::Message as _;
    let snapshot = server.log().snapshot();
    let mut reader = snapshot
        .read_from(almanac_log::Position(0))
        .expect("reader");
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().expect("read") {
        out.push(
            almanac_proto::pb::maintpb::Mutation::decode(record.payload.as_ref()).expect("decode"),
        );
    }
    out
}

/// A raw HTTP/1.1 response, so headers and bodies are checked exactly.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 exchange over a fresh connection. With `send_body` false
/// only the head goes out (for `Expect: 100-continue`).
pub(crate) fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    send_body: bool,
) -> HttpResponse {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    if send_body {
        s.write_all(body).expect("write body");
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked")
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).expect("hex").trim(), 16)
                .expect("chunk size hex");
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Runs git in `dir` with a fixed identity and clock (author at +0530,
/// committer at -0800, both at Unix time 1,700,000,000) and no user or
/// system configuration; returns stdout, failing the test on an error.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    git_with(dir, args, None)
}

/// [`git`] with `stdin` fed to the command.
pub(crate) fn git_with(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Gopher")
        .env("GIT_AUTHOR_EMAIL", "gopher@example.com")
        .env("GIT_COMMITTER_NAME", "Gopher")
        .env("GIT_COMMITTER_EMAIL", "gopher@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0530")
        .env("GIT_COMMITTER_DATE", "1700000000 -0800")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn git");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// A Go-shaped Gerrit history, made by hand: the go project with release
// branches, subrepos, and CLs with NoteDB votes (for GoFindTryWork and
// work discovery).

/// The go project on Go's Gerrit host, as maintner names it.
pub(crate) const GO: &str = "go.googlesource.com/go";

/// The hex id of hand-made commit `i`.
pub(crate) fn hash(i: u32) -> String {
    format!("{:040x}", 0xc0ffee_u64 * 1000 + u64::from(i))
}

/// Hand-made commit `i` (committed at 1,700,000,000 plus `i` hours), with
/// at most one parent.
pub(crate) fn commit(i: u32, parent: Option<u32>, title: &str) -> GitCommit {
    let t = 1_700_000_000 + i64::from(i) * 3600;
    let parent = parent.map_or(String::new(), |p| format!("parent {}\n", hash(p)));
    GitCommit {
        sha1: hash(i),
        raw: format!(
            "tree {}\n{parent}author Gopher Gopherson <gopher@golang.org> {t} +0000\ncommitter Gopher Gopherson <gopher@golang.org> {t} +0000\n\n{title}\n\nMore text.\n",
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        )
        .into_bytes()
        .into(),
        diff_tree: None,
    }
}

/// A ref naming hand-made commit `i`.
pub(crate) fn git_ref(name: &str, i: u32) -> GitRef {
    GitRef {
        r#ref: name.to_owned(),
        sha1: hash(i),
    }
}

/// The go project: master c0..c4, release branches and tags for 1.21 and
/// 1.22 (whose newest patches are go1.21.3 and go1.22.1).
pub(crate) fn go_history() -> Vec<Bytes> {
    let commits = vec![
        commit(0, None, "all: initial commit"),
        commit(1, Some(0), "runtime: faster maps"),
        commit(2, Some(1), "cmd/go: better errors"),
        commit(3, Some(2), "net/http: fix a race"),
        commit(4, Some(3), "spec: clarify generics"),
    ];
    let refs = vec![
        git_ref("refs/heads/master", 4),
        git_ref("refs/heads/release-branch.go1.21", 1),
        git_ref("refs/tags/go1.21.2", 0),
        git_ref("refs/tags/go1.21.3", 1),
        git_ref("refs/heads/release-branch.go1.22", 2),
        git_ref("refs/tags/go1.22.0", 2),
        git_ref("refs/tags/go1.22.1", 2),
    ];
    vec![Bytes::from(
        Mutation {
            gerrit: Some(GerritMutation {
                project: GO.to_owned(),
                commits,
                refs,
                deleted_refs: Vec::new(),
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    )]
}

/// Writes `records` to a new log in `dir`.
pub(crate) fn write_log(dir: &Path, records: Vec<Bytes>) {
    let (log, _) = Log::open(dir, Options::default()).expect("open");
    log.append_blocking(records).expect("append");
    log.close();
}

const GERRIT_HOST_ID: &str = "62eb7196-b449-3ce5-99f1-c037f21e1705";

/// One CL's mutations: a patch set on top of `base`, then its NoteDB meta
/// commits, one per message.
pub(crate) fn cl_mutation(
    project: &str,
    number: u32,
    base: &str,
    metas: &[(u32, &str)],
) -> (Bytes, String) {
    let t = 1_700_100_000 + i64::from(number) * 60;
    let ps = format!("{:040x}", 0xabc000_u64 + u64::from(number));
    let change_id = change_id(number);
    let patch_set = GitCommit {
        sha1: ps,
        raw: format!(
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent {base}\nauthor Ann Author <ann@golang.org> {t} +0000\ncommitter Ann Author <ann@golang.org> {t} +0000\n\nruntime: change {number}\n\nChange-Id: {change_id}\n"
        )
        .into_bytes()
        .into(),
        diff_tree: None,
    };
    cl_mutation_of(project, number, patch_set, metas)
}

/// The Change-Id of hand-made CL `number`.
pub(crate) fn change_id(number: u32) -> String {
    format!("I{:040x}", 0xdef000_u64 + u64::from(number))
}

/// [`cl_mutation`] with a given patch-set commit (a real one, say, whose
/// tree a build can fetch).
pub(crate) fn cl_mutation_of(
    project: &str,
    number: u32,
    patch_set: GitCommit,
    metas: &[(u32, &str)],
) -> (Bytes, String) {
    let t = 1_700_100_000 + i64::from(number) * 60;
    let ps = patch_set.sha1.clone();
    let change_id = change_id(number);
    let mut commits = vec![patch_set];
    let create = format!(
        "Create change\n\nUploaded patch set 1.\n\nPatch-set: 1\nChange-id: {change_id}\nSubject: runtime: change {number}\nBranch: refs/heads/master\nStatus: new\nCommit: {ps}\nTag: autogenerated:gerrit:newPatchSet\nGroups: {ps}\n"
    );
    let mut parent: Option<String> = None;
    let mut all: Vec<(u32, String)> = vec![(1000, create)];
    all.extend(metas.iter().map(|(who, m)| (*who, (*m).to_owned())));
    for (i, (who, message)) in all.iter().enumerate() {
        let sha = format!(
            "{:040x}",
            0xfee000_u64 * 100 + u64::from(number) * 10 + i as u64
        );
        let parent_line = parent
            .as_ref()
            .map_or(String::new(), |p| format!("parent {p}\n"));
        let when = t + i as i64 * 10;
        commits.push(GitCommit {
            sha1: sha.clone(),
            raw: format!(
                "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n{parent_line}author Gopher {who} <{who}@{GERRIT_HOST_ID}> {when} +0000\ncommitter Gerrit Code Review <noreply-gerritcodereview@google.com> {when} +0000\n\n{message}"
            )
            .into_bytes()
            .into(),
            diff_tree: None,
        });
        parent = Some(sha);
    }
    let meta = parent.unwrap_or_default();
    let shard = number % 100;
    let m = Mutation {
        gerrit: Some(GerritMutation {
            project: project.to_owned(),
            commits,
            refs: vec![
                GitRef {
                    r#ref: format!("refs/changes/{shard:02}/{number}/1"),
                    sha1: ps.clone(),
                },
                GitRef {
                    r#ref: format!("refs/changes/{shard:02}/{number}/meta"),
                    sha1: meta,
                },
            ],
            deleted_refs: vec![],
        }),
        ..Default::default()
    };
    (Bytes::from(m.encode_to_vec()), ps)
}

/// A meta commit voting Run-TryBot+1 with a `TRY=` line.
pub(crate) const RUN_TRYBOT: &str = "Update patch set 1\n\nPatch Set 1: Run-TryBot+1\n\nTRY=linux-amd64-race\n\nPatch-set: 1\nLabel: Run-TryBot=+1\n";
/// A meta commit voting TryBot-Result+1.
pub(crate) const TRYBOT_DONE: &str =
    "Update patch set 1\n\nPatch Set 1: TryBot-Result+1\n\nPatch-set: 1\nLabel: TryBot-Result=+1\n";
/// A meta commit merging the CL.
pub(crate) const MERGED: &str =
    "Update patch set 1\n\nChange has been successfully merged\n\nPatch-set: 1\nStatus: merged\n";
