//! The build configuration as the log records it: `env/`'s builders and
//! host types (and the listen-mode buildlets the coordinator dials) as one
//! `ConfigSnapshotLoaded`, named by a hash of its content, so every later
//! decision can be read against the policy in force when it was made.
//!
//! Pure: converts and hashes, never reads files or appends.

use std::collections::BTreeMap;

use prost::Message as _;

use almanac_proto::pb::farm::{
    BuildPolicy, BuildStepConfig, BuilderConfig, ConfigSnapshotLoaded, HostConfig,
};

use super::machines::StaticBuildlet;
use crate::farm::env::{Environments, Pool};

/// `KEY=VALUE` pairs as a map (a pair without `=` maps to "").
fn env_map(pairs: &[String]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.clone(), String::new()),
        })
        .collect()
}

/// The snapshot of `envs`, with its hash (hex SHA-256 of the snapshot's
/// deterministic protobuf encoding with the hash field empty).
pub fn snapshot(envs: &Environments, statics: &[StaticBuildlet]) -> ConfigSnapshotLoaded {
    let builders = envs
        .builders
        .values()
        .map(|b| {
            let config = BuilderConfig {
                name: b.name.clone(),
                host_type: b.host_type.clone(),
                env: env_map(&b.env).into_iter().collect(),
                build_policy: if b.try_only {
                    Vec::new()
                } else {
                    b.repos
                        .iter()
                        .map(|repo| BuildPolicy {
                            repo: repo.clone(),
                            branches: b.branches.clone(),
                        })
                        .collect()
                },
                try_repos: if b.try_bot {
                    b.repos.clone()
                } else {
                    Vec::new()
                },
                notes: b.notes.clone(),
                known_issues: b.known_issues.clone(),
                steps: b
                    .steps
                    .iter()
                    .map(|step| BuildStepConfig {
                        name: step.clone(),
                        argv: vec!["sh".into(), "-c".into(), step.clone()],
                        env: Default::default(),
                        dir: String::new(),
                        timeout: None,
                    })
                    .collect(),
                timeout: None,
            };
            (b.name.clone(), config)
        })
        .collect();
    let hosts = envs
        .hosts
        .values()
        .map(|h| {
            let config = HostConfig {
                host_type: h.name.clone(),
                pool: match h.pool {
                    Pool::Reverse => "reverse".into(),
                    Pool::Listen => "static".into(),
                },
                expected_machines: i32::try_from(h.expected_machines).unwrap_or(i32::MAX),
                env: env_map(&h.env).into_iter().collect(),
                notes: h.notes.clone(),
                addresses: statics
                    .iter()
                    .filter(|s| s.host_type == h.name)
                    .map(|s| s.addr.clone())
                    .collect(),
                goos: String::new(),
                goarch: String::new(),
            };
            (h.name.clone(), config)
        })
        .collect();
    let mut snapshot = ConfigSnapshotLoaded {
        config_hash: String::new(),
        builders,
        hosts,
    };
    // prost encodes maps in iteration order; sort them through BTreeMaps
    // so equal configurations hash equally.
    let canonical = canonical_bytes(&snapshot);
    snapshot.config_hash = super::blobs::sha256_hex(&canonical);
    snapshot
}

/// The snapshot's encoding with its maps in key order.
fn canonical_bytes(s: &ConfigSnapshotLoaded) -> Vec<u8> {
    let mut out = Vec::new();
    let builders: BTreeMap<&String, &BuilderConfig> = s.builders.iter().collect();
    for (name, b) in builders {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        let mut b = b.clone();
        let env: BTreeMap<String, String> = b.env.drain().collect();
        out.extend_from_slice(&b.encode_to_vec());
        for (k, v) in env {
            out.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
    }
    out.push(1);
    let hosts: BTreeMap<&String, &HostConfig> = s.hosts.iter().collect();
    for (name, h) in hosts {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        let mut h = h.clone();
        let env: BTreeMap<String, String> = h.env.drain().collect();
        out.extend_from_slice(&h.encode_to_vec());
        for (k, v) in env {
            out.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(builders: &str) -> Environments {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("setup.sh"), "#!/bin/sh\n").expect("setup");
        let hosts = "[[host]]\ntype = \"host-a\"\npool = \"listen\"\nenv = [\"A=1\", \"B=2\"]\nsetup = \"setup.sh\"\n";
        std::fs::write(dir.path().join("hosts.toml"), hosts).expect("hosts");
        std::fs::write(dir.path().join("builders.toml"), builders).expect("builders");
        Environments::load(dir.path()).expect("load")
    }

    #[test]
    fn equal_configurations_hash_equally_and_changes_show() {
        let one = "[[builder]]\nname = \"linux-b1\"\nhost_type = \"host-a\"\nsteps = [\"./x.sh\"]\nenv = [\"X=1\", \"Y=2\", \"Z=3\"]\nrepos = [\"demo\"]\nbranches = [\"main\"]\ntry_bot = true\n";
        let statics = [StaticBuildlet {
            host_type: "host-a".into(),
            addr: "127.0.0.1:1".into(),
        }];
        let a = snapshot(&envs(one), &statics);
        for _ in 0..5 {
            assert_eq!(snapshot(&envs(one), &statics).config_hash, a.config_hash);
        }
        assert_eq!(a.config_hash.len(), 64);
        let b1 = &a.builders["linux-b1"];
        assert_eq!(b1.build_policy.len(), 1);
        assert_eq!(b1.build_policy[0].branches, ["main"]);
        assert_eq!(b1.try_repos, ["demo"]);
        assert_eq!(b1.steps[0].argv, ["sh", "-c", "./x.sh"]);
        assert_eq!(b1.env.get("Y").map(String::as_str), Some("2"));
        assert_eq!(a.hosts["host-a"].addresses, ["127.0.0.1:1"]);
        let changed = one.replace("./x.sh", "./y.sh");
        assert_ne!(
            snapshot(&envs(&changed), &statics).config_hash,
            a.config_hash
        );
        assert_ne!(snapshot(&envs(one), &[]).config_hash, a.config_hash);
    }
}
