//! The buildlet over real sockets on 127.0.0.1: the key on every work
//! route, tarballs in and out, every way a path could escape the work
//! directory, and `/exec` streaming output and its `Process-State` trailer,
//! with the process group killed on timeout, disconnect and halt.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tar::EntryType;

use crate::support::{HttpResponse, exchange, runtime};
use almanac_services::buildlet::{Config, Server, host_key};
use almanac_services::ingest::config::Secret;

const HOST_TYPE: &str = "host-linux-test";
const MASTER: &[u8] = b"master key for tests";

/// The fixed mtime of the test tarballs' entries: 2020-09-13T12:26:40Z.
const MTIME: u64 = 1_600_000_000;

/// A script that starts a child in its own process group (the one the
/// buildlet made for it), records both pids, says `ready` and waits (30 s,
/// far longer than any test).
const HANG: &str = "#!/bin/sh\n\
sleep 30 &\n\
echo $! > \"$WORKDIR/child.pid\"\n\
echo $$ > \"$WORKDIR/leader.pid\"\n\
echo ready\n\
wait\n";

fn key() -> String {
    host_key(MASTER, HOST_TYPE)
}

/// Go's client credentials: user `gomote`, the key as password.
fn auth() -> String {
    format!("Basic {}", base64(format!("gomote:{}", key()).as_bytes()))
}

struct Running {
    rt: tokio::runtime::Runtime,
    server: Server,
    /// Holds the work directory (`<tmp>/work`) and room around it to check
    /// that nothing lands outside.
    tmp: tempfile::TempDir,
    workdir: PathBuf,
}

impl Running {
    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// A path next to the work directory, outside it.
    fn outside(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn stop(self) {
        self.rt
            .block_on(self.server.shutdown())
            .unwrap_or_else(|e| panic!("shutdown: {e:#}"));
    }
}

fn start() -> Running {
    start_with(|_| {})
}

fn start_with(tune: impl FnOnce(&mut Config)) -> Running {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("addr"),
        tmp.path().join("work"),
        HOST_TYPE.to_owned(),
        Secret::new(key()),
    );
    config.halt_exits = false;
    tune(&mut config);
    let server = rt
        .block_on(Server::start(config))
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    let workdir = server.buildlet().workdir().to_path_buf();
    Running {
        rt,
        server,
        tmp,
        workdir,
    }
}

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    exchange(addr, "GET", path, &[("Authorization", &auth())], b"", true)
}

fn put(addr: SocketAddr, path: &str, body: &[u8]) -> HttpResponse {
    let len = body.len().to_string();
    exchange(
        addr,
        "PUT",
        path,
        &[("Authorization", &auth()), ("Content-Length", &len)],
        body,
        true,
    )
}

fn post_form(addr: SocketAddr, path: &str, form: &[(&str, &str)]) -> HttpResponse {
    exchange(
        addr,
        "POST",
        path,
        &[
            ("Authorization", &auth()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        encode_form(form).as_bytes(),
        true,
    )
}

/// Writes an executable script into the work directory.
fn put_script(addr: SocketAddr, path: &str, script: &str) {
    let r = put(
        addr,
        &format!("/write?path={path}&mode=493"),
        script.as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = get(addr, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn every_work_route_needs_the_key() {
    let b = start();
    let addr = b.addr();
    let open = exchange(addr, "GET", "/", &[], b"", true);
    assert_eq!(open.status, 200);
    assert!(
        open.text().starts_with("buildlet running on "),
        "{}",
        open.text()
    );
    assert_eq!(
        exchange(addr, "GET", "/healthz", &[], b"", true).text(),
        "ok"
    );

    let wrong_basic = format!("Basic {}", base64(b"gomote:not-the-key"));
    let other_host_type = format!("Bearer {}", host_key(MASTER, "host-linux-other"));
    let refusals: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", &wrong_basic)],
        &[("Authorization", &other_host_type)],
        &[("Authorization", "Bearer ")],
    ];
    for headers in refusals {
        let mut headers = headers.to_vec();
        headers.push(("Content-Length", "5"));
        let r = exchange(
            addr,
            "PUT",
            "/write?path=x.txt&mode=420",
            &headers,
            b"hello",
            true,
        );
        assert_eq!(r.status, 403, "{headers:?}");
        assert_eq!(r.text(), "invalid password\n");
    }
    assert!(!b.workdir.join("x.txt").exists(), "a refused write wrote");
    for path in [
        "/status", "/workdir", "/ls", "/tgz", "/metrics", "/exec", "/halt",
    ] {
        let r = exchange(addr, "GET", path, &[], b"", true);
        assert_eq!(r.status, 403, "{path}");
    }

    // The key as a Basic password (whatever the user) or a Bearer token.
    let any_user = format!("Basic {}", base64(format!("someone:{}", key()).as_bytes()));
    let bearer = format!("Bearer {}", key());
    for credentials in [auth(), any_user, bearer] {
        let r = exchange(
            addr,
            "GET",
            "/status",
            &[("Authorization", &credentials)],
            b"",
            true,
        );
        assert_eq!(r.status, 200, "{credentials}: {}", r.text());
        let status = r.json();
        assert_eq!(status["Version"], 25);
        assert_eq!(status["HostType"], HOST_TYPE);
    }
    let wd = get(addr, "/workdir");
    assert_eq!(wd.text(), b.workdir.display().to_string());
    assert!(b.workdir.is_absolute());
    assert_eq!(metric(addr, "almanac_buildlet_auth_refused_total"), 11);
    b.stop();
}

#[test]
fn tarballs_round_trip_through_writetgz_ls_and_tgz() {
    let b = start();
    let addr = b.addr();
    let future = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 10 * 365 * 24 * 3600;
    let mut tar = Tar::new();
    tar.entry(
        "pax_global_header",
        EntryType::XGlobalHeader,
        0o644,
        b"17 comment=hello\n",
        None,
    );
    tar.dir("src/");
    tar.file("src/a.txt", 0o644, b"hello");
    tar.file("./src/dot.txt", 0o644, b"dot");
    tar.entry(
        "src/link",
        EntryType::Symlink,
        0o777,
        b"",
        Some("/etc/passwd"),
    );
    tar.entry("src/hard", EntryType::Link, 0o644, b"", Some("src/a.txt"));
    tar.entry_at(
        "src/future.txt",
        EntryType::Regular,
        0o644,
        future,
        b"later",
        None,
    );
    tar.file("bin/run.sh", 0o755, b"#!/bin/sh\necho hi\n");
    let r = put(addr, "/writetgz?dir=go", &tar.gz());
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));

    let go = b.workdir.join("go");
    assert_eq!(
        std::fs::read(go.join("src/a.txt")).expect("a.txt"),
        b"hello"
    );
    assert_eq!(
        std::fs::read(go.join("src/dot.txt")).expect("dot.txt"),
        b"dot"
    );
    assert_eq!(mode(&go.join("src/a.txt")), 0o644);
    assert_eq!(mode(&go.join("bin/run.sh")), 0o755);
    assert_eq!(mode(&go.join("bin")), 0o755, "made for a file's parent");
    assert!(
        std::fs::symlink_metadata(go.join("src/link")).is_err(),
        "symlinks are skipped"
    );
    assert!(
        std::fs::symlink_metadata(go.join("src/hard")).is_err(),
        "hard links are skipped"
    );
    assert!(!go.join("pax_global_header").exists());
    let mtime = |p: &str| {
        std::fs::metadata(go.join(p))
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    assert_eq!(mtime("src/a.txt"), UNIX_EPOCH + Duration::from_secs(MTIME));
    assert!(
        mtime("src/future.txt") <= SystemTime::now(),
        "a future mtime is clamped to now"
    );

    let listing = get(addr, "/ls?dir=go&recursive=true");
    assert_eq!(listing.status, 200, "{}", listing.text());
    let lines: Vec<Vec<String>> = listing
        .text()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    let names: Vec<(&str, &str)> = lines
        .iter()
        .map(|f| (f[0].as_str(), f[1].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("drwxr-xr-x", "bin/"),
            ("-rwxr-xr-x", "bin/run.sh"),
            ("drwxr-xr-x", "src/"),
            ("-rw-r--r--", "src/a.txt"),
            ("-rw-r--r--", "src/dot.txt"),
            ("-rw-r--r--", "src/future.txt"),
        ]
    );
    assert_eq!(lines[3][2..], ["5", "2020-09-13T12:26:40Z"]);
    assert_eq!(lines[0].len(), 2, "directories carry no size or time");

    let shallow = get(addr, "/ls?dir=go").text();
    assert_eq!(shallow, "drwxr-xr-x\tbin/\ndrwxr-xr-x\tsrc/\n");
    let skipped = get(addr, "/ls?dir=go&recursive=1&skip=src").text();
    assert!(
        skipped.starts_with("drwxr-xr-x\tbin/\n-rwxr-xr-x\tbin/run.sh\t18\t"),
        "{skipped}"
    );
    assert_eq!(skipped.lines().count(), 2, "{skipped}");
    let digest = get(addr, "/ls?dir=go&digest=true");
    assert_eq!(
        (digest.status, digest.text().as_str()),
        (400, "digest not supported\n")
    );

    let tgz = get(addr, "/tgz?dir=go");
    assert_eq!(tgz.status, 200, "{}", tgz.text());
    let entries = read_tgz(&tgz.body);
    let names: Vec<(&str, EntryType)> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        [
            ("bin/", EntryType::Directory),
            ("bin/run.sh", EntryType::Regular),
            ("src/", EntryType::Directory),
            ("src/a.txt", EntryType::Regular),
            ("src/dot.txt", EntryType::Regular),
            ("src/future.txt", EntryType::Regular),
        ]
    );
    assert_eq!(entries[1].mode & 0o777, 0o755);
    assert_eq!(entries[1].data, b"#!/bin/sh\necho hi\n");
    assert_eq!(entries[3].data, b"hello");

    // The whole work directory, and a directory that is not there.
    let all = read_tgz(&get(addr, "/tgz").body);
    assert!(
        all.iter()
            .any(|e| e.name == "go/src/a.txt" && e.data == b"hello")
    );
    assert_eq!(get(addr, "/tgz?dir=nope").status, 404);

    // Go's go1.4 special case, and no URL fetches.
    let mut bootstrap = Tar::new();
    bootstrap.file("VERSION", 0o644, b"go1.4");
    let bootstrap = bootstrap.gz();
    let first = put(addr, "/writetgz?dir=go1.4", &bootstrap);
    assert_eq!(first.text(), "OK");
    let again = put(addr, "/writetgz?dir=go1.4", &bootstrap);
    assert_eq!(again.text(), "SKIP");
    let fetch = post_form(
        addr,
        "/writetgz?dir=x",
        &[("url", "http://127.0.0.1:1/x.tgz")],
    );
    assert_eq!(
        (fetch.status, fetch.text().as_str()),
        (400, "url fetch not supported\n")
    );
    assert!(metric(addr, "almanac_buildlet_bytes_written_total") >= 5 + 3 + 5 + 18 + 5);
    b.stop();
}

#[test]
fn nothing_escapes_the_work_directory() {
    let b = start();
    let addr = b.addr();

    // Tar entry names.
    let abs = b.outside("abs-evil");
    let abs_name = abs.to_str().expect("utf-8 temp path").to_owned();
    let cases: [(&str, Vec<&str>); 4] = [
        ("parent", vec!["../evil"]),
        ("after a good entry", vec!["ok.txt", "../evil2"]),
        ("inside then out", vec!["sub/../../evil3"]),
        ("absolute", vec![abs_name.as_str()]),
    ];
    for (what, names) in cases {
        let mut tar = Tar::new();
        for name in names {
            tar.file(name, 0o644, b"pwned");
        }
        let r = put(addr, "/writetgz", &tar.gz());
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(
            r.text().starts_with("tar file contained invalid name"),
            "{what}: {}",
            r.text()
        );
    }
    for name in ["evil", "evil2", "evil3", "abs-evil"] {
        assert!(!b.outside(name).exists(), "{name} was written outside");
    }
    assert!(
        b.workdir.join("ok.txt").exists(),
        "entries before a bad one stay"
    );

    // Parameters.
    let mut tar = Tar::new();
    tar.file("f", 0o644, b"x");
    let tar = tar.gz();
    for path in ["/writetgz?dir=../out", "/writetgz?dir=/tmp"] {
        let r = put(addr, path, &tar);
        assert_eq!((r.status, r.text().as_str()), (400, "bad dir\n"), "{path}");
    }
    assert!(!b.outside("out").exists());
    for path in ["../x", "/abs", "a%5Cb", "", "."] {
        let r = put(addr, &format!("/write?path={path}&mode=420"), b"pwned");
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "bad path\n"),
            "{path:?}"
        );
    }
    assert!(!b.outside("x").exists());
    for path in ["/ls?dir=../", "/tgz?dir=../work", "/ls?dir=/"] {
        assert_eq!(get(addr, path).status, 400, "{path}");
    }

    // Symbolic links already in the work directory: never gone through.
    let outside_dir = b.outside("outside");
    std::fs::create_dir(&outside_dir).expect("mkdir");
    std::os::unix::fs::symlink(&outside_dir, b.workdir.join("link")).expect("symlink");
    let r = put(addr, "/write?path=link/x&mode=420", b"pwned");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("symbolic link"), "{}", r.text());
    let mut through = Tar::new();
    through.file("link/y", 0o644, b"pwned");
    assert_eq!(put(addr, "/writetgz", &through.gz()).status, 400);
    assert_eq!(put(addr, "/writetgz?dir=link", &tar).status, 400);
    assert_eq!(put(addr, "/writetgz?dir=link/deeper", &tar).status, 400);
    assert_eq!(get(addr, "/ls?dir=link").status, 400);
    assert_eq!(get(addr, "/tgz?dir=link").status, 400);
    assert_eq!(
        std::fs::read_dir(&outside_dir).expect("read_dir").count(),
        0,
        "something was written through the link"
    );
    // A link as the very thing written is replaced, not written through.
    let target = b.outside("target.txt");
    std::fs::write(&target, "original").expect("write");
    std::os::unix::fs::symlink(&target, b.workdir.join("flink")).expect("symlink");
    let r = put(addr, "/write?path=flink&mode=420", b"new");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "original");
    let replaced = std::fs::symlink_metadata(b.workdir.join("flink")).expect("lstat");
    assert!(replaced.is_file());
    assert_eq!(
        std::fs::read(b.workdir.join("flink")).expect("read"),
        b"new"
    );

    // Malformed tarballs.
    let r = put(addr, "/writetgz", b"this is not gzip");
    assert_eq!(r.status, 400, "{}", r.text());
    let mut device = Tar::new();
    device.entry("dev", EntryType::Char, 0o644, b"", None);
    let r = put(addr, "/writetgz", &device.gz());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("unsupported file type"), "{}", r.text());
    assert!(metric(addr, "almanac_buildlet_bad_requests_total") >= 20);
    b.stop();
}

#[test]
fn write_puts_one_file_with_its_mode() {
    let b = start();
    let addr = b.addr();
    let r = put(addr, "/write?path=dir/sub/f.txt&mode=384", b"data");
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    let f = b.workdir.join("dir/sub/f.txt");
    assert_eq!(std::fs::read(&f).expect("read"), b"data");
    assert_eq!(mode(&f), 0o600);
    assert_eq!(mode(&b.workdir.join("dir/sub")), 0o755);
    // Written again: replaced, with the new mode.
    let r = put(addr, "/write?path=dir/sub/f.txt&mode=420", b"other");
    assert_eq!(r.status, 200);
    assert_eq!(std::fs::read(&f).expect("read"), b"other");
    assert_eq!(mode(&f), 0o644);
    // Not a regular file's mode (os.ModeDir|0755), no mode, a directory.
    for query in ["path=g&mode=2147484141", "path=g", "path=g&mode=x"] {
        let r = put(addr, &format!("/write?{query}"), b"x");
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "bad mode\n"),
            "{query}"
        );
    }
    let r = put(addr, "/write?path=dir&mode=420", b"x");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = get(addr, "/write?path=g&mode=420");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "requires PUT method\n")
    );
    b.stop();
}

#[test]
fn removeall_removes_paths_and_dot_empties_the_work_directory() {
    let b = start();
    let addr = b.addr();
    for path in ["a/b.txt", "a/c/d.txt", "keep.txt", "ro/f.txt"] {
        let r = put(addr, &format!("/write?path={path}&mode=420"), b"x");
        assert_eq!(r.status, 200);
    }
    let r = post_form(
        addr,
        "/removeall",
        &[("path", "a"), ("path", "missing/deeper")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.is_empty());
    assert!(!b.workdir.join("a").exists());
    assert!(b.workdir.join("keep.txt").exists());

    // Every path is checked before any is removed.
    let r = post_form(
        addr,
        "/removeall",
        &[("path", "keep.txt"), ("path", "../x")],
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "bad 'path' parameter: \"../x\"\n")
    );
    assert!(b.workdir.join("keep.txt").exists());
    let r = post_form(addr, "/removeall", &[]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "requires 'path' parameter\n")
    );

    // `.`: everything, read-only trees included; the directory stays.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(b.workdir.join("ro"), std::fs::Permissions::from_mode(0o555))
        .expect("chmod");
    let r = post_form(addr, "/removeall", &[("path", ".")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut left: Vec<String> = std::fs::read_dir(&b.workdir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["gocache", "tmp"],
        "only what commands expect is remade"
    );
    b.stop();
}

#[test]
fn exec_streams_combined_output_and_ends_with_the_exit_status() {
    let b = start();
    let addr = b.addr();
    put_script(
        addr,
        "bin/fail.sh",
        "#!/bin/sh\necho out\necho err >&2\nexit 3\n",
    );
    let r = exec(addr, &[("cmd", "bin/fail.sh")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Trailer"), Some("Process-State"));
    assert_eq!(r.body, "out\nerr\n");
    assert_eq!(r.process_state(), Some("exit status 3"));

    // Default mode runs in the command's directory; the environment has
    // WORKDIR, TMPDIR, GOCACHE and the request's env.
    put_script(
        addr,
        "bin/env.sh",
        "#!/bin/sh\necho \"pwd=$(pwd) wd=$WORKDIR tmp=$TMPDIR cache=$GOCACHE foo=$FOO\"\n",
    );
    let r = exec(addr, &[("cmd", "bin/env.sh"), ("env", "FOO=bar")]);
    let w = b.workdir.display().to_string();
    assert_eq!(
        r.body,
        format!("pwd={w}/bin wd={w} tmp={w}/tmp cache={w}/gocache foo=bar\n")
    );
    assert_eq!(r.process_state(), Some("ok"));

    // mode=sys: from PATH, in the work directory, PATH rewritten.
    let r = exec(
        addr,
        &[
            ("mode", "sys"),
            ("cmd", "sh"),
            ("cmdArg", "-c"),
            (
                "cmdArg",
                "echo \"pwd=$(pwd)\"; echo \"path=$PATH\" | cut -d: -f1",
            ),
            ("path", "$WORKDIR/bin"),
            ("path", "$PATH"),
        ],
    );
    assert_eq!(r.body, format!("pwd={w}\npath={w}/bin\n"));
    assert_eq!(r.process_state(), Some("ok"));

    // debug: Go's preamble first.
    let r = exec(addr, &[("cmd", "bin/fail.sh"), ("debug", "true")]);
    assert!(r.body.starts_with(":: Running "), "{}", r.body);
    assert!(r.body.ends_with("\n\nout\nerr\n"), "{}", r.body);

    // A command that cannot start: 200, and the error in the trailer.
    let r = exec(addr, &[("cmd", "bin/missing.sh")]);
    assert_eq!(r.status, 200);
    let state = r.process_state().expect("a Process-State trailer");
    assert!(state.starts_with("fork/exec "), "{state}");
    assert_eq!(metric(addr, "almanac_buildlet_execs_total"), 5);
    b.stop();
}

#[test]
fn exec_refuses_bad_requests() {
    let b = start();
    let addr = b.addr();
    let r = get(addr, "/exec?cmd=x");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "requires POST method\n")
    );
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[], "requires 'cmd' parameter\n"),
        (&[("cmd", "../x")], "requires 'cmd' parameter\n"),
        (&[("cmd", "/bin/sh")], "requires 'cmd' parameter\n"),
        (&[("cmd", "x"), ("dir", "../y")], "bad 'dir' parameter\n"),
        (
            &[("mode", "sys"), ("cmd", "sh"), ("dir", "a/../../y")],
            "bad 'dir' parameter\n",
        ),
        (
            &[("cmd", "x"), ("timeout", "soon")],
            "bad 'timeout' parameter\n",
        ),
    ];
    for (form, want) in cases {
        let r = post_form(addr, "/exec", form);
        assert_eq!((r.status, r.text().as_str()), (400, want), "{form:?}");
    }
    let r = get(addr, "/halt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "requires POST method\n")
    );
    b.stop();
}

#[test]
fn exec_timeout_kills_the_whole_process_group() {
    // The configured bound caps what a request asks for. It leaves the
    // script (which forks a child and writes two files before it says
    // "ready") ample time on a loaded machine.
    let b = start_with(|c| c.exec_timeout = Duration::from_secs(10));
    let addr = b.addr();
    put_script(addr, "bin/hang.sh", HANG);
    let r = exec(addr, &[("cmd", "bin/hang.sh"), ("timeout", "600")]);
    assert!(
        r.body.contains("ready"),
        "killed before it started its child: {:?}",
        r.body
    );
    assert_eq!(r.process_state(), Some("timeout after 10s"));
    for name in ["child.pid", "leader.pid"] {
        wait_gone(read_pid(&b.workdir.join(name)));
    }
    assert_eq!(metric(addr, "almanac_buildlet_exec_timeouts_total"), 1);
    b.stop();
}

#[test]
fn a_client_going_away_kills_the_whole_process_group() {
    let b = start();
    let addr = b.addr();
    put_script(addr, "bin/hang.sh", HANG);
    let mut stream = ExecStream::start(addr, &[("cmd", "bin/hang.sh")]);
    stream.wait_for("ready");
    let child = read_pid(&b.workdir.join("child.pid"));
    let leader = read_pid(&b.workdir.join("leader.pid"));
    assert!(
        alive(child),
        "the child should be running before the disconnect"
    );
    drop(stream);
    wait_gone(child);
    wait_gone(leader);
    let running = &b.server.buildlet().metrics().execs_running;
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.load(Ordering::SeqCst) != 0 {
        assert!(Instant::now() < deadline, "the exec never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    b.stop();
}

#[test]
fn halt_kills_running_commands_and_stops_the_server() {
    let b = start_with(|c| c.halt_exits = true);
    let addr = b.addr();
    put_script(addr, "bin/hang.sh", HANG);
    let mut stream = ExecStream::start(addr, &[("cmd", "bin/hang.sh")]);
    stream.wait_for("ready");
    let child = read_pid(&b.workdir.join("child.pid"));
    let leader = read_pid(&b.workdir.join("leader.pid"));

    let r = exchange(
        addr,
        "POST",
        "/halt",
        &[("Authorization", &auth())],
        b"",
        true,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cut = stream.finish();
    assert!(cut.body.contains("ready"));
    assert_eq!(
        cut.trailers, None,
        "a halted command's response is cut, not ended with a state"
    );
    wait_gone(child);
    wait_gone(leader);
    b.rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), b.server.halted())
            .await
            .expect("halt stops the server");
    });
    b.stop();
}

// ---- a streaming /exec client ------------------------------------------

/// An `/exec` response read as it arrives.
struct ExecStream {
    stream: TcpStream,
    raw: Vec<u8>,
    status: u16,
    headers: Vec<(String, String)>,
    body_at: usize,
}

/// A finished (or cut) `/exec` response.
struct ExecResult {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// `None` when the chunked body never reached its end.
    trailers: Option<Vec<(String, String)>>,
}

impl ExecResult {
    fn header(&self, name: &str) -> Option<&str> {
        find_field(&self.headers, name)
    }

    fn process_state(&self) -> Option<&str> {
        find_field(self.trailers.as_deref()?, "Process-State")
    }
}

fn find_field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Runs a command to its end.
fn exec(addr: SocketAddr, form: &[(&str, &str)]) -> ExecResult {
    ExecStream::start(addr, form).finish()
}

impl ExecStream {
    /// Sends the request (with `TE: trailers`, which hyper needs to send
    /// trailers over HTTP/1.1) and reads the head.
    fn start(addr: SocketAddr, form: &[(&str, &str)]) -> ExecStream {
        let body = encode_form(form);
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        let head = format!(
            "POST /exec HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nTE: trailers\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            auth(),
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(body.as_bytes()).expect("write body");
        let mut s = ExecStream {
            stream,
            raw: Vec::new(),
            status: 0,
            headers: Vec::new(),
            body_at: 0,
        };
        let end = loop {
            if let Some(end) = find(&s.raw, b"\r\n\r\n") {
                break end;
            }
            assert!(
                s.read_more(),
                "no response head in {:?}",
                String::from_utf8_lossy(&s.raw)
            );
        };
        let head = String::from_utf8_lossy(&s.raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        s.status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status");
        s.headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        s.body_at = end + 4;
        assert_eq!(
            find_field(&s.headers, "Transfer-Encoding"),
            Some("chunked"),
            "{head}"
        );
        s
    }

    /// Reads what has arrived; false at the end of the stream (or a reset).
    fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Reads until the body so far contains `needle` (an event the command
    /// reports, so no test waits on a clock).
    fn wait_for(&mut self, needle: &str) {
        loop {
            let (body, _) = dechunk(&self.raw[self.body_at..]);
            if String::from_utf8_lossy(&body).contains(needle) {
                return;
            }
            assert!(
                self.read_more(),
                "the stream ended before {needle:?}: {:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    /// Reads to the end of the chunked body (or of the connection).
    fn finish(mut self) -> ExecResult {
        loop {
            let (body, trailers) = dechunk(&self.raw[self.body_at..]);
            if trailers.is_some() || !self.read_more() {
                return ExecResult {
                    status: self.status,
                    headers: self.headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    trailers,
                };
            }
        }
    }
}

/// The data of a chunked body so far, and its trailers once it is
/// complete.
fn dechunk(mut b: &[u8]) -> (Vec<u8>, Option<Vec<(String, String)>>) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(b, b"\r\n") else {
            return (out, None);
        };
        let size_text = String::from_utf8_lossy(&b[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16).expect("chunk size");
        b = &b[line_end + 2..];
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let Some(line_end) = find(b, b"\r\n") else {
                    return (out, None);
                };
                let line = String::from_utf8_lossy(&b[..line_end]).into_owned();
                b = &b[line_end + 2..];
                if line.is_empty() {
                    return (out, Some(trailers));
                }
                if let Some((k, v)) = line.split_once(':') {
                    trailers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
        }
        if b.len() < size + 2 {
            out.extend_from_slice(&b[..size.min(b.len())]);
            return (out, None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- processes -----------------------------------------------------------

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a pid")
}

/// Whether `pid` is a live process. A zombie is not: an orphan killed with
/// its group waits for a reaper, and PID 1 in a container may never reap.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last parenthesis.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        Err(_) => std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// Polls until `pid` is gone, for at most a minute.
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still alive after a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

// ---- encodings -----------------------------------------------------------

/// A tarball whose entry names are written raw, so tests can build the
/// names a careful writer would refuse.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, EntryType::Directory, 0o755, b"", None);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, EntryType::Regular, mode, data, None);
    }

    fn entry(&mut self, name: &str, kind: EntryType, mode: u32, data: &[u8], link: Option<&str>) {
        self.entry_at(name, kind, mode, MTIME, data, link);
    }

    fn entry_at(
        &mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        mtime: u64,
        data: &[u8],
        link: Option<&str>,
    ) {
        let mut h = tar::Header::new_gnu();
        let raw = name.as_bytes();
        assert!(raw.len() < 100, "{name} is too long for a plain header");
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        if let Some(link) = link {
            h.set_link_name(link).expect("link name");
        }
        h.set_cksum();
        self.0.append(&h, data).expect("append");
    }

    fn gz(self) -> Vec<u8> {
        let tar = self.0.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).expect("gzip");
        gz.finish().expect("gzip")
    }
}

struct TgzEntry {
    name: String,
    kind: EntryType,
    mode: u32,
    data: Vec<u8>,
}

fn read_tgz(bytes: &[u8]) -> Vec<TgzEntry> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().expect("mode");
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("data");
        out.push(TgzEntry {
            name,
            kind,
            mode,
            data,
        });
    }
    out
}

fn encode_form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The coordinator's client drives a listen-mode buildlet process over one
/// HTTP/2 connection: the wrong key is refused, the right one runs a
/// command from a tarball of a commit.
#[test]
fn the_coordinator_client_drives_a_listen_mode_buildlet_process() {
    use almanac_services::coordinator::client::{BuildletClient, ClientError};
    use almanac_services::ingest::config::Secret;

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "listen-key").expect("write");
    let addr_file = dir.path().join("addr");
    let mut child = crate::support::almanac()
        .args([
            "buildlet",
            "--listen",
            "127.0.0.1:0",
            "--host-type",
            "host-linux-amd64-local",
            "--key-file",
            crate::support::arg(&key_file),
            "--workdir",
            crate::support::arg(&dir.path().join("work")),
            "--addr-file",
            crate::support::arg(&addr_file),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let addr = crate::support::wait_for_addr_file(&addr_file, &mut child).to_string();
    let rt = crate::support::runtime();
    rt.block_on(async {
        let wrong = BuildletClient::connect(&addr, Secret::new("nope".into()))
            .await
            .expect("connect");
        match wrong.status().await {
            Err(ClientError::Status { status: 403, .. }) => {}
            other => panic!("want 403, got {other:?}"),
        }
        let client = BuildletClient::connect(&addr, Secret::new("listen-key".into()))
            .await
            .expect("connect");
        assert_eq!(client.status().await.expect("status").version, 25);
        let mut tar = Tar::new();
        tar.file("build.sh", 0o755, b"#!/bin/sh\necho built \"$1\"\n");
        client
            .put_tar("src", bytes::Bytes::from(tar.gz()))
            .await
            .expect("put tar");
        let run = client
            .exec("src/build.sh", &["ok"], &[], false, None, |_| {})
            .await
            .expect("exec");
        assert_eq!(run.output, b"built ok\n");
        assert!(run.succeeded(), "{}", run.process_state);
        client.halt().await.expect("halt");
    });
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}
