//! Reverse buildlets as real processes: `almanac buildlet --reverse` dials
//! an in-process coordinator pool on 127.0.0.1, registers, and is then
//! driven over that one connection (HTTP/2): exec with output and exit
//! state, tarballs, halt. A wrong key is refused and recorded; a killed
//! buildlet leaves the pool; buildlets come back by themselves after the
//! coordinator restarts.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use bytes::Bytes;

use almanac_services::coordinator::reverse::ReversePool;
use almanac_services::ingest::config::Secret;

use crate::support::{almanac, arg};

const MASTER: &str = "test master key";
const HOST_TYPE: &str = "host-linux-amd64-local";
const WAIT: Duration = Duration::from_secs(120);

/// A coordinator pool serving `/reverse` on `addr` (port 0 picks one), on
/// its own runtime, so dropping it drops every connection, as a
/// coordinator crash would.
struct Coordinator {
    rt: tokio::runtime::Runtime,
    pool: std::sync::Arc<ReversePool>,
    addr: SocketAddr,
}

impl Coordinator {
    fn start(addr: SocketAddr) -> Coordinator {
        let rt = crate::support::runtime();
        let pool = ReversePool::new(Secret::new(MASTER.into()));
        let router = pool.router();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move { axum::serve(listener, router).await });
        Coordinator { rt, pool, addr }
    }

    fn wait(
        &self,
        what: &str,
        ready: impl Fn(
            &[almanac_services::coordinator::reverse::MachineInfo],
            &[almanac_services::coordinator::reverse::Refusal],
        ) -> bool,
    ) {
        let ok = self.rt.block_on(self.pool.wait_until(WAIT, ready));
        assert!(
            ok,
            "{what}: not within {WAIT:?}; machines {:?}, refusals {:?}",
            self.pool.machines(),
            self.pool.refusals()
        );
    }
}

fn buildlet(coordinator: SocketAddr, hostname: &str, key_args: &[&str], work: &Path) -> Child {
    let workdir = work.join(hostname);
    almanac()
        .args([
            "buildlet",
            "--reverse",
            &coordinator.to_string(),
            "--host-type",
            HOST_TYPE,
            "--hostname",
            hostname,
            "--workdir",
            arg(&workdir),
        ])
        .args(key_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn buildlet")
}

fn tgz(name: &str, data: &[u8]) -> Bytes {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, data).expect("tar");
    let raw = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("gzip");
    Bytes::from(gz.finish().expect("gzip"))
}

/// Waits for a child to exit, up to `WAIT`.
fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "buildlet did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reverse_buildlets_register_run_commands_and_come_back() {
    let work = tempfile::tempdir().expect("tempdir");
    let master_file = work.path().join("master");
    std::fs::write(&master_file, MASTER).expect("write");
    let bad_key = work.path().join("bad-key");
    std::fs::write(&bad_key, "not the key").expect("write");
    let master_args = ["--master-key-file", arg(&master_file)];

    let coordinator = Coordinator::start("127.0.0.1:0".parse().expect("addr"));
    let addr = coordinator.addr;
    let mut one = buildlet(addr, "one", &master_args, work.path());
    let mut two = buildlet(addr, "two", &master_args, work.path());
    let mut intruder = buildlet(
        addr,
        "intruder",
        &["--key-file", arg(&bad_key)],
        work.path(),
    );
    coordinator.wait(
        "two machines and a refused intruder",
        |machines, refusals| {
            machines.len() == 2
                && refusals
                    .iter()
                    .any(|r| r.hostname == "intruder" && r.status == 412)
        },
    );
    assert!(
        coordinator
            .pool
            .machines()
            .iter()
            .all(|m| m.host_type == HOST_TYPE && m.version == "25")
    );
    assert!(
        coordinator
            .pool
            .machines()
            .iter()
            .all(|m| m.hostname != "intruder"),
        "a wrong key never registers"
    );

    // Work over the registered connection: a tarball, commands with
    // output and exit states.
    let (machine, client) = coordinator.pool.take(HOST_TYPE).expect("an idle machine");
    coordinator.rt.block_on(async {
        let status = client.status().await.expect("status");
        assert_eq!(status.version, 25);
        client
            .put_tar("src", tgz("hello.txt", b"hello from a tarball\n"))
            .await
            .expect("put tar");
        let cat = client
            .exec("cat", &["src/hello.txt"], &[], true, None, |_| {})
            .await
            .expect("exec cat");
        assert_eq!(cat.output, b"hello from a tarball\n");
        assert!(cat.succeeded());
        let mut streamed = Vec::new();
        let failing = client
            .exec(
                "sh",
                &["-c", "echo out; echo err >&2; exit 3"],
                &["GREETING=hi".to_string()],
                true,
                None,
                |chunk| streamed.extend_from_slice(chunk),
            )
            .await
            .expect("exec sh");
        assert_eq!(failing.process_state, "exit status 3");
        let text = String::from_utf8_lossy(&failing.output);
        assert!(text.contains("out") && text.contains("err"), "{text}");
        assert_eq!(streamed, failing.output);
        client.remove_all(&["."]).await.expect("removeall");
    });
    coordinator.pool.release(machine.id);

    // A buildlet killed outright leaves the pool.
    let killed = coordinator
        .pool
        .machines()
        .into_iter()
        .find(|m| m.hostname == "two")
        .expect("two");
    two.kill().expect("kill");
    two.wait().expect("wait");
    coordinator.wait("the killed machine gone", |machines, _| {
        machines.iter().all(|m| m.id != killed.id) && machines.len() == 1
    });

    // The coordinator goes away (every connection with it) and comes back
    // on the same address: the surviving buildlet registers again.
    drop(coordinator);
    let coordinator = Coordinator::start(addr);
    coordinator.wait("the survivor back", |machines, _| {
        machines.len() == 1 && machines[0].hostname == "one"
    });

    // Halt: the buildlet stops.
    let (_, client) = coordinator.pool.take(HOST_TYPE).expect("one");
    coordinator.rt.block_on(client.halt()).expect("halt");
    let status = wait_exit(&mut one);
    assert!(status.success(), "{status}");
    coordinator.wait("the halted machine gone", |machines, _| machines.is_empty());

    intruder.kill().expect("kill");
    intruder.wait().expect("wait");

    // What the pool saw becomes the log's machine events, and the farm
    // fold agrees with the pool: no machine left.
    use almanac_projections::Projection as _;
    let mut farm = almanac_projections::farm::Farm::new();
    let events = coordinator.pool.events();
    assert!(events.iter().any(|e| matches!(
        e,
        almanac_services::coordinator::reverse::PoolEvent::Registered(m) if m.hostname == "one"
    )));
    for (i, e) in events.iter().enumerate() {
        let m = almanac_proto::pb::maintpb::Mutation {
            machine: Some(e.to_machine_event()),
            ..Default::default()
        };
        farm.apply(almanac_log::Position(i as u64), &m)
            .expect("fold");
    }
    assert_eq!(farm.machines().count(), 0);
    assert_eq!(
        farm.skipped().unknown_machine,
        0,
        "every lost machine was registered first"
    );
}
