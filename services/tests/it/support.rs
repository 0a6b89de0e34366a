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
