//! Build environments as data: host types and builders, read from the TOML
//! files under `env/` (spec/coordinator.md §5).
//!
//! A host type says how to get a machine (`pool`: reverse buildlets that
//! dial in, or listen-mode buildlets at known addresses), how many are
//! expected, the base environment, and the script that prepares a machine
//! and starts its buildlet. A builder says what to run on one host type:
//! its steps, extra environment, and which repositories and branches it
//! builds post-submit and as a trybot.
//!
//! Loading checks everything a coordinator would otherwise trip over later
//! (duplicate names, unknown host types, missing setup scripts, bad branch
//! patterns) and every error names the file, the line and the field. This
//! module reads files and never runs anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Where machines of a host type come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Buildlets dial the coordinator and register (`--reverse`).
    Reverse,
    /// Buildlets listen at addresses the coordinator's config names.
    Listen,
}

impl Pool {
    /// The name `hosts.toml` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Reverse => "reverse",
            Pool::Listen => "listen",
        }
    }
}

/// One `[[host]]` of `hosts.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    #[serde(rename = "type")]
    host_type: Spanned<String>,
    pool: Pool,
    #[serde(default = "one")]
    expected_machines: u32,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    setup: Spanned<String>,
    #[serde(default)]
    owners: Vec<String>,
    #[serde(default)]
    notes: String,
}

fn one() -> u32 {
    1
}

/// One `[[builder]]` of `builders.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuilderEntry {
    name: Spanned<String>,
    host_type: Spanned<String>,
    steps: Spanned<Vec<String>>,
    #[serde(default)]
    env: Vec<Spanned<String>>,
    #[serde(default = "default_repos")]
    repos: Vec<String>,
    #[serde(default = "default_branches")]
    branches: Vec<Spanned<String>>,
    #[serde(default)]
    try_bot: bool,
    #[serde(default)]
    try_only: bool,
    #[serde(default)]
    known_issues: Vec<i64>,
    #[serde(default)]
    notes: String,
}

fn default_repos() -> Vec<String> {
    vec!["go".to_string()]
}

fn default_branches() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "master".to_string())]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    #[serde(default)]
    host: Vec<HostEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildersFile {
    #[serde(default)]
    builder: Vec<BuilderEntry>,
}

/// A host type, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostType {
    pub name: String,
    pub pool: Pool,
    pub expected_machines: u32,
    /// `KEY=VALUE` pairs, in order.
    pub env: Vec<String>,
    /// The machine setup script, as an absolute path.
    pub setup: PathBuf,
    pub owners: Vec<String>,
    pub notes: String,
}

/// A builder, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Builder {
    pub name: String,
    pub host_type: String,
    /// Commands run in order in the checked-out tree, each through `sh -c`;
    /// the first that fails fails the build.
    pub steps: Vec<String>,
    pub env: Vec<String>,
    /// Repositories built (maintner's names: `go`, `net`, ...; `*` is
    /// every repository the coordinator has a source for).
    pub repos: Vec<String>,
    /// Branch patterns: exact names, or a prefix ending in `*`.
    pub branches: Vec<String>,
    pub try_bot: bool,
    /// Built only as a trybot, never post-submit.
    pub try_only: bool,
    pub known_issues: Vec<i64>,
    pub notes: String,
}

impl Builder {
    /// Whether it builds `repo` on `branch` post-submit.
    pub fn builds_post_submit(&self, repo: &str, branch: &str) -> bool {
        !self.try_only && self.builds(repo, branch)
    }

    /// Whether it runs as a trybot for `repo` on `branch`.
    pub fn builds_try(&self, repo: &str, branch: &str) -> bool {
        self.try_bot && self.builds(repo, branch)
    }

    fn builds(&self, repo: &str, branch: &str) -> bool {
        self.repos.iter().any(|r| r == repo || r == "*")
            && self
                .branches
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => branch.starts_with(prefix),
                    None => branch == pattern,
                })
    }

    /// The environment a build runs with: `GO_BUILDER_NAME`, then the host
    /// type's, then the builder's (Go's `BuildConfig.Env`).
    pub fn build_env(&self, host: &HostType) -> Vec<String> {
        let mut env = vec![format!("GO_BUILDER_NAME={}", self.name)];
        env.extend(host.env.iter().cloned());
        env.extend(self.env.iter().cloned());
        env
    }
}

/// Every host type and builder of an `env/` directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environments {
    pub hosts: BTreeMap<String, HostType>,
    pub builders: BTreeMap<String, Builder>,
}

/// Why an `env/` directory could not be loaded. Each names the file, the
/// line (1-based) and the field.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's own message names the line, column and key.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}:{line}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        field: &'static str,
        message: String,
    },
}

/// A source file's text, for turning byte spans into line numbers.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        1 + self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
    }

    fn invalid(
        &self,
        span: std::ops::Range<usize>,
        field: &'static str,
        message: String,
    ) -> EnvError {
        EnvError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(span.start),
            field,
            message,
        }
    }
}

fn read(path: &Path) -> Result<String, EnvError> {
    std::fs::read_to_string(path).map_err(|source| EnvError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, EnvError> {
    toml::from_str(text).map_err(|e| EnvError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn check_env(src: &Source<'_>, env: &[Spanned<String>]) -> Result<Vec<String>, EnvError> {
    env.iter()
        .map(|pair| {
            let valid = pair
                .get_ref()
                .split_once('=')
                .is_some_and(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace));
            if valid {
                Ok(pair.get_ref().clone())
            } else {
                Err(src.invalid(
                    pair.span(),
                    "env",
                    format!("{:?} is not KEY=VALUE", pair.get_ref()),
                ))
            }
        })
        .collect()
}

impl Environments {
    /// Loads `dir/hosts.toml` and `dir/builders.toml`; setup scripts are
    /// relative to `dir`.
    pub fn load(dir: &Path) -> Result<Environments, EnvError> {
        let hosts_path = dir.join("hosts.toml");
        let builders_path = dir.join("builders.toml");
        let hosts_text = read(&hosts_path)?;
        let builders_text = read(&builders_path)?;
        Environments::parse(
            dir,
            &hosts_path,
            &hosts_text,
            &builders_path,
            &builders_text,
        )
    }

    /// [`Environments::load`] over texts already read (named by their
    /// paths in errors).
    pub fn parse(
        dir: &Path,
        hosts_path: &Path,
        hosts_text: &str,
        builders_path: &Path,
        builders_text: &str,
    ) -> Result<Environments, EnvError> {
        let src = Source {
            path: hosts_path,
            text: hosts_text,
        };
        let file: HostsFile = parse(hosts_path, hosts_text)?;
        let mut hosts = BTreeMap::new();
        for h in file.host {
            let name = h.host_type.get_ref().clone();
            if !name.starts_with("host-") {
                return Err(src.invalid(
                    h.host_type.span(),
                    "type",
                    format!("{name:?} must start with \"host-\" (Go's naming)"),
                ));
            }
            let setup = dir.join(h.setup.get_ref());
            if !setup.is_file() {
                return Err(src.invalid(
                    h.setup.span(),
                    "setup",
                    format!("{} does not exist", setup.display()),
                ));
            }
            if h.pool == Pool::Reverse && h.expected_machines == 0 {
                return Err(src.invalid(
                    h.host_type.span(),
                    "expected_machines",
                    "a reverse pool expects at least one machine".into(),
                ));
            }
            let host = HostType {
                name: name.clone(),
                pool: h.pool,
                expected_machines: h.expected_machines,
                env: check_env(&src, &h.env)?,
                setup,
                owners: h.owners,
                notes: h.notes,
            };
            if hosts.insert(name.clone(), host).is_some() {
                return Err(src.invalid(
                    h.host_type.span(),
                    "type",
                    format!("host type {name:?} is defined twice"),
                ));
            }
        }

        let src = Source {
            path: builders_path,
            text: builders_text,
        };
        let file: BuildersFile = parse(builders_path, builders_text)?;
        let mut builders = BTreeMap::new();
        for b in file.builder {
            let name = b.name.get_ref().clone();
            let valid_name = name.split('-').count() >= 2
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
            if !valid_name {
                return Err(src.invalid(
                    b.name.span(),
                    "name",
                    format!("{name:?} is not GOOS-GOARCH[-suffix]"),
                ));
            }
            if !hosts.contains_key(b.host_type.get_ref()) {
                return Err(src.invalid(
                    b.host_type.span(),
                    "host_type",
                    format!(
                        "unknown host type {:?} (hosts.toml defines {})",
                        b.host_type.get_ref(),
                        hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if b.steps.get_ref().is_empty() {
                return Err(src.invalid(b.steps.span(), "steps", "a builder needs a step".into()));
            }
            for pattern in &b.branches {
                let p = pattern.get_ref();
                if p.is_empty() || p[..p.len() - 1].contains('*') {
                    return Err(src.invalid(
                        pattern.span(),
                        "branches",
                        format!("{p:?}: a branch is a name or a prefix ending in *"),
                    ));
                }
            }
            if b.try_only && !b.try_bot {
                return Err(src.invalid(
                    b.name.span(),
                    "try_only",
                    "try_only needs try_bot = true".into(),
                ));
            }
            let builder = Builder {
                name: name.clone(),
                host_type: b.host_type.get_ref().clone(),
                steps: b.steps.into_inner(),
                env: check_env(&src, &b.env)?,
                repos: b.repos,
                branches: b.branches.into_iter().map(Spanned::into_inner).collect(),
                try_bot: b.try_bot,
                try_only: b.try_only,
                known_issues: b.known_issues,
                notes: b.notes,
            };
            if builders.insert(name.clone(), builder).is_some() {
                return Err(src.invalid(
                    b.name.span(),
                    "name",
                    format!("builder {name:?} is defined twice"),
                ));
            }
        }
        Ok(Environments { hosts, builders })
    }

    /// The host type of a builder.
    pub fn host_of(&self, builder: &Builder) -> Option<&HostType> {
        self.hosts.get(&builder.host_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(hosts: &str, builders: &str) -> Result<Environments, EnvError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("setup")).expect("mkdir");
        std::fs::write(dir.path().join("setup/local.sh"), "#!/bin/sh\n").expect("write");
        Environments::parse(
            dir.path(),
            Path::new("env/hosts.toml"),
            hosts,
            Path::new("env/builders.toml"),
            builders,
        )
    }

    const HOSTS: &str = r#"
[[host]]
type = "host-linux-amd64-local"
pool = "reverse"
expected_machines = 2
env = ["GOROOT_BOOTSTRAP=/usr/lib/go"]
setup = "setup/local.sh"
"#;

    #[test]
    fn the_repository_env_directory_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../env");
        let envs = Environments::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let linux = envs.builders.get("linux-amd64").expect("linux-amd64");
        let host = envs.host_of(linux).expect("its host type");
        assert!(host.setup.is_file());
        assert!(linux.builds_post_submit("go", "master"));
        assert!(linux.build_env(host)[0].starts_with("GO_BUILDER_NAME=linux-amd64"));
    }

    #[test]
    fn builder_policies() {
        let envs = load(
            HOSTS,
            r#"
[[builder]]
name = "linux-amd64"
host_type = "host-linux-amd64-local"
steps = ["./make.bash"]
repos = ["go", "net"]
branches = ["master", "release-branch.go1.2*"]
try_bot = true
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let b = &envs.builders["linux-amd64"];
        assert!(b.builds_post_submit("net", "release-branch.go1.21"));
        assert!(!b.builds_post_submit("net", "release-branch.go1.19"));
        assert!(!b.builds_post_submit("tools", "master"));
        assert!(b.builds_try("go", "master"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = load(
            HOSTS,
            "[[builder]]\nname = \"linux-arm64\"\nhost_type = \"host-nope\"\nsteps = [\"x\"]\n",
        )
        .expect_err("unknown host type");
        let text = err.to_string();
        assert!(
            text.starts_with("env/builders.toml:3: host_type: unknown host type \"host-nope\""),
            "{text}"
        );

        let err = load(
            "[[host]]\ntype = \"host-a\"\npool = \"reverse\"\nsetup = \"setup/missing.sh\"\n",
            "",
        )
        .expect_err("missing script");
        assert!(
            err.to_string().starts_with("env/hosts.toml:4: setup: "),
            "{err}"
        );

        let err = load(HOSTS, "[[builder]]\nname = \"x\"\n").expect_err("bad name");
        assert!(err.to_string().contains("env/builders.toml"), "{err}");

        let err = load(&format!("{HOSTS}bogus = 1\n"), "").expect_err("unknown field");
        assert!(err.to_string().contains("bogus"), "{err}");

        let err = load(
            HOSTS,
            "[[builder]]\nname = \"linux-amd64\"\nhost_type = \"host-linux-amd64-local\"\nsteps = [\"x\"]\nenv = [\"NOEQUALS\"]\n",
        )
        .expect_err("bad env");
        assert!(
            err.to_string().starts_with("env/builders.toml:5: env: "),
            "{err}"
        );
    }
}
