//! `/exec`: runs one command in its own process group and streams its
//! combined output, ending with the process state in the `Process-State`
//! trailer (spec/coordinator.md §1.4).
//!
//! The handler validates the form and answers the 200 head at once; a task
//! owns the child from then on. It forwards output chunks as they are read
//! and watches four ends: the command exiting (and its output closing),
//! the timeout, a halt or shutdown, and the client going away (the
//! response body, and with it the channel, dropped). On the last three it
//! kills the whole process group.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use hyper::body::Frame;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Buildlet;
use super::body::{ChannelBody, FrameResult};
use super::form::{Form, parse_bool};
use super::fs::RelPath;
use crate::maintnerd::metrics::GaugeGuard;
use crate::pubsubhelper::plain;

/// The trailer that carries how the command ended. (A function, not a
/// `const`: a `HeaderName` holds `Bytes`, which clippy counts as interior
/// mutability.)
fn process_state() -> HeaderName {
    HeaderName::from_static("process-state")
}

/// After killing a group, how long to keep reading output for a process
/// that escaped it (`setsid`) and still holds the pipe.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What to run, from the request.
#[derive(Debug)]
struct Spec {
    /// Absolute under the work directory, or (`mode=sys`) as given, looked
    /// up in the command's `PATH`.
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    /// The command's whole environment, de-duplicated, last value kept.
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
    debug: bool,
}

/// `POST /exec`.
pub(crate) async fn exec(State(b): State<Buildlet>, req: Request) -> Response {
    if req.method() != Method::POST {
        return plain(StatusCode::BAD_REQUEST, "requires POST method");
    }
    if req.version() < Version::HTTP_11 {
        return plain(StatusCode::BAD_REQUEST, "HTTP/1.1 or higher required");
    }
    let (parts, body) = req.into_parts();
    let form = match Form::read(&parts, body).await {
        Ok(form) => form,
        Err(resp) => return resp,
    };
    let spec = match Spec::from_form(&b, &form) {
        Ok(spec) => spec,
        Err(msg) => {
            b.metrics().bad_requests.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::BAD_REQUEST, msg);
        }
    };
    let (tx, body) = ChannelBody::channel(16);
    tokio::spawn(run(b, spec, tx));
    let mut resp = Response::new(Body::new(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // hyper sends a trailer field only if the head declared it.
    h.insert(header::TRAILER, HeaderValue::from_static("Process-State"));
    resp
}

impl Spec {
    /// Go's command resolution (spec §1.4), plus our `timeout`. The error
    /// is Go's 400 text.
    fn from_form(b: &Buildlet, form: &Form) -> Result<Spec, &'static str> {
        let workdir = b.workdir();
        let cmd = form.value("cmd");
        let dir = form.value("dir");
        let (program, dir) = if form.value("mode") == "sys" {
            if cmd.is_empty() {
                return Err("requires 'cmd' parameter");
            }
            let dir = if dir.is_empty() {
                workdir.to_path_buf()
            } else if Path::new(dir).is_absolute() {
                PathBuf::from(dir)
            } else {
                RelPath::parse(dir)
                    .map_err(|_| "bad 'dir' parameter")?
                    .under(workdir)
            };
            (PathBuf::from(cmd), dir)
        } else {
            let rel = RelPath::parse(cmd)
                .ok()
                .filter(|rel| !rel.is_root())
                .ok_or("requires 'cmd' parameter")?;
            let program = rel.under(workdir);
            let dir = if dir.is_empty() {
                program.parent().unwrap_or(workdir).to_path_buf()
            } else {
                RelPath::parse(dir)
                    .map_err(|_| "bad 'dir' parameter")?
                    .under(workdir)
            };
            (program, dir)
        };
        let timeout = match form.value("timeout") {
            "" => b.exec_timeout(),
            secs => {
                let secs: u64 = secs
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("bad 'timeout' parameter")?;
                Duration::from_secs(secs).min(b.exec_timeout())
            }
        };
        Ok(Spec {
            program,
            args: form
                .values("cmdArg")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            dir,
            env: environment(workdir, &form.values("env"), &form.values("path")),
            timeout,
            debug: parse_bool(form.value("debug")),
        })
    }

    /// Go's `debug=true` preamble.
    fn preamble(&self) -> String {
        let mut argv = vec![self.program.display().to_string()];
        argv.extend(self.args.iter().cloned());
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        format!(
            ":: Running {} with args {argv:?} and env {env:?} in dir {}\n\n",
            self.program.display(),
            self.dir.display()
        )
    }
}

/// The command's environment, in Go's order, the last value of a name
/// winning: the buildlet's own; `WORKDIR` (Go exports it into its own);
/// `GOROOT_BOOTSTRAP=$WORKDIR/go1.4` when that directory exists; the
/// request's `env`; `TMPDIR` and `GOCACHE` in the work directory; then
/// `PATH` rebuilt from the request's `path` values, if any.
pub(crate) fn environment(
    workdir: &Path,
    request_env: &[&str],
    path: &[&str],
) -> Vec<(OsString, OsString)> {
    let mut env = Env::default();
    for (k, v) in std::env::vars_os() {
        env.set(k, v);
    }
    env.set("WORKDIR".into(), workdir.into());
    let bootstrap = workdir.join("go1.4");
    if bootstrap.is_dir() {
        env.set("GOROOT_BOOTSTRAP".into(), bootstrap.into());
    }
    for kv in request_env {
        if let Some((k, v)) = kv.split_once('=')
            && !k.is_empty()
        {
            env.set(k.into(), v.into());
        }
    }
    env.set("TMPDIR".into(), workdir.join("tmp").into());
    env.set("GOCACHE".into(), workdir.join("gocache").into());
    if !path.is_empty() {
        let rebuilt = rewrite_path(path, env.get("PATH"), workdir);
        env.set("PATH".into(), rebuilt);
    }
    env.0
}

/// `PATH` from the request's `path` values: `$PATH` is the value so far,
/// `$WORKDIR` (anywhere in an element) the work directory, `$EMPTY`
/// nothing (Go's client sends it for an explicitly empty path).
pub(crate) fn rewrite_path(elems: &[&str], current: Option<&OsStr>, workdir: &Path) -> OsString {
    let workdir = workdir.to_string_lossy();
    let mut parts: Vec<OsString> = Vec::new();
    for elem in elems {
        match *elem {
            "$EMPTY" => {}
            "$PATH" => {
                if let Some(p) = current.filter(|p| !p.is_empty()) {
                    parts.push(p.to_owned());
                }
            }
            elem => parts.push(elem.replace("$WORKDIR", &workdir).into()),
        }
    }
    let mut out = OsString::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(part);
    }
    out
}

/// An environment in order, one entry per name.
#[derive(Debug, Default)]
struct Env(Vec<(OsString, OsString)>);

impl Env {
    fn set(&mut self, k: OsString, v: OsString) {
        match self.0.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }

    fn get(&self, k: &str) -> Option<&OsStr> {
        self.0
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_os_str())
    }
}

/// Why the loop stopped before the command ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Timeout,
    /// `/halt` or shutdown.
    Killed,
    /// The client went away.
    Gone,
}

/// Runs `spec`, feeding `tx` (the response body).
async fn run(b: Buildlet, spec: Spec, tx: mpsc::Sender<FrameResult>) {
    let metrics = b.metrics();
    let _running = GaugeGuard::hold(&metrics.execs_running);
    metrics.execs_total.fetch_add(1, Ordering::Relaxed);
    // Subscribed before the stop check: a halt from here on is seen.
    let mut kill = b.kill_signal();
    if b.stopping() {
        let _ = tx
            .send(Err(io::Error::other("the buildlet is stopping")))
            .await;
        return;
    }
    let started = std::time::Instant::now();
    if let Err(e) = b.ensure_dirs() {
        send_state(&tx, &format!("preparing the work directory: {e}")).await;
        return;
    }
    if spec.debug {
        let _ = tx.send(Ok(Frame::data(Bytes::from(spec.preamble())))).await;
    }
    let (mut child, output) = match spawn(&spec).await {
        Ok(spawned) => spawned,
        Err(e) => {
            let state = format!("fork/exec {}: {e}", spec.program.display());
            tracing::info!(program = %spec.program.display(), %state, "exec could not start");
            send_state(&tx, &state).await;
            return;
        }
    };
    let mut group = Group { pgid: child.id() };
    tracing::info!(
        program = %spec.program.display(),
        args = spec.args.len(),
        pgid = ?group.pgid,
        timeout = ?spec.timeout,
        "exec started"
    );

    let deadline = Instant::now() + spec.timeout;
    let mut buf = vec![0u8; 32 << 10];
    let mut pending: Option<Bytes> = None;
    let mut eof = false;
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut ended: Option<Ended> = None;
    let mut give_up_output: Option<Instant> = None;
    // Until the output is closed and the command reaped.
    while !eof || status.is_none() {
        // Every branch's expression is evaluated even when its condition
        // disables it, so this one must not panic on `None`.
        let give_up_at = give_up_output.unwrap_or(deadline);
        tokio::select! {
            ready = output.readable(), if !eof && pending.is_none() => {
                match ready.and_then(|()| output.try_read(&mut buf)) {
                    Ok(0) => eof = true,
                    Ok(n) => pending = Some(Bytes::copy_from_slice(&buf[..n])),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "reading command output");
                        eof = true;
                    }
                }
            }
            permit = tx.reserve(), if pending.is_some() => match permit {
                Ok(permit) => {
                    if let Some(data) = pending.take() {
                        permit.send(Ok(Frame::data(data)));
                    }
                }
                Err(_) => {
                    if ended.is_none() {
                        terminate(&mut child, &group);
                        give_up_output = Some(Instant::now() + KILL_GRACE);
                    }
                    ended = Some(Ended::Gone);
                    pending = None;
                    eof = true;
                }
            },
            res = child.wait(), if status.is_none() => status = Some(res),
            () = tokio::time::sleep_until(deadline), if ended.is_none() => {
                ended = Some(Ended::Timeout);
                terminate(&mut child, &group);
                give_up_output = Some(Instant::now() + KILL_GRACE);
            }
            _ = kill.changed(), if ended.is_none() => {
                ended = Some(Ended::Killed);
                terminate(&mut child, &group);
                give_up_output = Some(Instant::now() + KILL_GRACE);
            }
            () = tx.closed(), if ended.is_none() => {
                ended = Some(Ended::Gone);
                terminate(&mut child, &group);
                pending = None;
                eof = true;
            }
            () = tokio::time::sleep_until(give_up_at), if give_up_output.is_some() && !eof => {
                tracing::warn!(pgid = ?group.pgid, "a killed command's output is still open; leaving it");
                eof = true;
            }
        }
    }
    // The command ended by itself (its stragglers, like Go's, are left
    // alone) or its group was killed above.
    group.disarm();
    if let Some(data) = pending.take()
        && ended != Some(Ended::Gone)
    {
        let _ = tx.send(Ok(Frame::data(data))).await;
    }

    let state = match (ended, &status) {
        (Some(Ended::Gone), _) => "the client went away".to_owned(),
        (Some(Ended::Killed), _) => "killed by halt".to_owned(),
        (Some(Ended::Timeout), _) => format!("timeout after {}", go_duration(spec.timeout)),
        (None, Some(Ok(s))) => describe(*s),
        (None, Some(Err(e))) => format!("wait: {e}"),
        (None, None) => "unknown".to_owned(),
    };
    tracing::info!(
        program = %spec.program.display(),
        %state,
        elapsed = ?started.elapsed(),
        "exec ended"
    );
    match ended {
        Some(Ended::Gone) => {}
        // Go's client reads a missing trailer as "the buildlet went away",
        // which is what a halt is.
        Some(Ended::Killed) => {
            let _ = tx
                .send(Err(io::Error::other("the buildlet was halted")))
                .await;
        }
        Some(Ended::Timeout) => {
            metrics.exec_timeouts.fetch_add(1, Ordering::Relaxed);
            send_state(&tx, &state).await;
        }
        None => send_state(&tx, &state).await,
    }
}

/// Starts the command with stdout and stderr on one pipe (so their writes
/// interleave as written), stdin empty, in a new process group.
async fn spawn(spec: &Spec) -> io::Result<(Child, pipe::Receiver)> {
    let (writer, reader) = pipe::pipe()?;
    let writer = writer.into_blocking_fd()?;
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let mut attempt: u32 = 0;
    let child = loop {
        match cmd.spawn() {
            Ok(child) => break child,
            // A file just written (`/write`, `/writetgz`) can be briefly
            // "busy": another thread of this process may have forked while
            // it was open for writing, and the fork holds that descriptor
            // until it execs. It clears within milliseconds.
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    };
    // The command holds our copies of the pipe's write end; dropping it
    // leaves the command's processes as the only writers, so the output
    // ends when they are gone.
    drop(cmd);
    Ok((child, reader))
}

/// Kills the leader directly and its whole group.
fn terminate(child: &mut Child, group: &Group) {
    if let Err(e) = child.start_kill() {
        tracing::debug!(error = %e, "killing the command (already reaped?)");
    }
    group.kill();
}

/// A command's process group: killed when dropped unless disarmed, so a
/// task dropped mid-command (the runtime shutting down) leaves nothing
/// running.
#[derive(Debug)]
struct Group {
    pgid: Option<u32>,
}

impl Group {
    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            kill_group(pgid);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGKILL to every process in group `pgid`. std has no `killpg`,
/// and this crate uses no `unsafe` and no libc binding, so the shell's
/// `kill` builtin does it (`kill -9 -PGID`; POSIX sh, dash, bash and
/// busybox all take a negative pid as a group). It takes a fork and exec,
/// a few milliseconds, only when a command is killed.
fn kill_group(pgid: u32) {
    let res = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("kill -9 -{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match res {
        Ok(s) if s.success() => {}
        // ESRCH: the group is already gone.
        Ok(s) => tracing::debug!(pgid, status = %s, "kill of a process group failed"),
        Err(e) => tracing::warn!(pgid, error = %e, "could not run /bin/sh to kill a process group"),
    }
}

async fn send_state(tx: &mpsc::Sender<FrameResult>, state: &str) {
    let mut trailers = HeaderMap::new();
    trailers.insert(process_state(), header_value(state));
    let _ = tx.send(Ok(Frame::trailers(trailers))).await;
}

/// `text` as a header value: control characters become spaces, anything
/// beyond ASCII `?`.
fn header_value(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| match c {
            c if c.is_ascii_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Go's `ProcessState.String()`, with `ok` for success as the buildlet
/// reports it.
pub(crate) fn describe(status: ExitStatus) -> String {
    if status.success() {
        return "ok".to_owned();
    }
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    if let Some(sig) = status.signal() {
        let mut s = format!("signal: {}", signal_name(sig));
        if status.core_dumped() {
            s.push_str(" (core dumped)");
        }
        return s;
    }
    status.to_string()
}

/// Go's names for the signals whose numbers every Unix shares.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        8 => "floating point exception",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// Go's `Duration.String()` for whole seconds (`1s`, `1m30s`, `2h0m0s`);
/// anything finer as Rust prints it.
pub(crate) fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{d:?}");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}
