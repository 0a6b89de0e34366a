//! Running the `almanac` binary and making its input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use almanac_services::codec::MutationCodec;
use almanac_services::sample::SampleHistory;
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
pub(crate) fn wait_for_addr_file(path: &Path) -> std::net::SocketAddr {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(addr) = text.trim().parse()
        {
            return addr;
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
