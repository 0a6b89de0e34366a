//! The ingest configuration: a TOML file naming the tracked sources.
//!
//! ```toml
//! github_rate = 10             # optional; GitHub requests/s over all repos (0: unlimited)
//!
//! [[git]]                      # a plain git repository; name is GitRepo.go_repo
//! name = "go"
//! url = "/srv/git/go"          # a local path or a URL
//!
//! [[github]]
//! repo = "golang/go"
//! token_file = "/etc/almanac/github-token"   # optional; or token_env = "VAR"
//! api_url = "https://api.github.com"         # optional
//!
//! [[gerrit]]
//! project = "go.googlesource.com/go"         # as maintner names Gerrit projects
//! url = "https://go.googlesource.com/go"     # where to fetch it from
//!
//! [pubsub]                     # optional: wake syncers from a pubsubhelper
//! url = "http://127.0.0.1:8021"
//!
//! [poll]                       # optional; seconds between passes
//! github = 900
//! gerrit = 300
//! git = 300
//! ```
//!
//! Tokens are read when the file is loaded and are never logged: [`Secret`]
//! prints as `"<redacted>"`. Loading never touches the network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub git: Vec<GitSource>,
    #[serde(default)]
    pub github: Vec<GitHubSource>,
    #[serde(default)]
    pub gerrit: Vec<GerritSource>,
    #[serde(default)]
    pub pubsub: Option<PubsubSource>,
    #[serde(default)]
    pub poll: Poll,
    /// GitHub requests per second, over every `[[github]]` repository
    /// together (Go's `-github-rate`); 0 is unlimited.
    #[serde(default = "default_github_rate")]
    pub github_rate: f64,
}

fn default_github_rate() -> f64 {
    10.0
}

impl Default for Config {
    fn default() -> Config {
        Config {
            git: Vec::new(),
            github: Vec::new(),
            gerrit: Vec::new(),
            pubsub: None,
            poll: Poll::default(),
            github_rate: default_github_rate(),
        }
    }
}

/// A plain git repository, logged as `GitMutation`s under `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    /// maintner's `GitRepo.go_repo`.
    pub name: String,
    /// A local path (read in place) or a URL (fetched into the data
    /// directory).
    pub url: String,
}

/// A GitHub repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubSource {
    /// `owner/repo`.
    pub repo: String,
    /// A file holding the token, as `token` or Go's `user:token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The API's base URL; GitHub's own when absent.
    #[serde(default = "default_github_api")]
    pub api_url: String,
    /// Resolved from `token_file` or `token_env` by [`Config::load`].
    #[serde(skip)]
    pub token: Option<Secret>,
}

/// GitHub's API.
pub const GITHUB_API: &str = "https://api.github.com";

fn default_github_api() -> String {
    GITHUB_API.to_string()
}

impl GitHubSource {
    /// The owner and the repository name.
    pub fn owner_repo(&self) -> (&str, &str) {
        self.repo.split_once('/').unwrap_or((&self.repo, ""))
    }
}

/// A Gerrit project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GerritSource {
    /// `host/project`, as maintner names Gerrit projects.
    pub project: String,
    /// Where to fetch from: a URL, or a local path. Defaults to
    /// `https://<project>`.
    #[serde(default)]
    pub url: Option<String>,
}

impl GerritSource {
    /// The fetch URL.
    pub fn fetch_url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.project))
    }
}

/// A pubsubhelper to follow for wake-ups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubSource {
    pub url: String,
}

/// Seconds between polling passes, the fallback when no wake-up comes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    #[serde(default = "default_github_poll")]
    pub github: u64,
    #[serde(default = "default_gerrit_poll")]
    pub gerrit: u64,
    #[serde(default = "default_git_poll")]
    pub git: u64,
}

fn default_github_poll() -> u64 {
    15 * 60
}
fn default_gerrit_poll() -> u64 {
    5 * 60
}
fn default_git_poll() -> u64 {
    5 * 60
}

impl Default for Poll {
    fn default() -> Poll {
        Poll {
            github: default_github_poll(),
            gerrit: default_gerrit_poll(),
            git: default_git_poll(),
        }
    }
}

impl Poll {
    pub fn github(&self) -> Duration {
        Duration::from_secs(self.github)
    }
    pub fn gerrit(&self) -> Duration {
        Duration::from_secs(self.gerrit)
    }
    pub fn git(&self) -> Duration {
        Duration::from_secs(self.git)
    }
}

/// A credential. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message names the line, column and key.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads, parses and validates `path`, and resolves every token.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` (named `path` in errors) and resolves every token.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut names = std::collections::HashSet::new();
        for (i, git) in config.git.iter().enumerate() {
            if git.name.is_empty() || git.url.is_empty() {
                return Err(invalid(format!(
                    "[[git]] #{}: name and url must be set",
                    i + 1
                )));
            }
            if !names.insert(git.name.clone()) {
                return Err(invalid(format!(
                    "[[git]] name {:?} appears twice",
                    git.name
                )));
            }
        }
        for (i, gh) in config.github.iter_mut().enumerate() {
            let valid = gh
                .repo
                .split_once('/')
                .is_some_and(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'));
            if !valid {
                return Err(invalid(format!(
                    "[[github]] #{}: repo {:?} is not owner/repo",
                    i + 1,
                    gh.repo
                )));
            }
            gh.token = resolve_token(gh.token_file.as_deref(), gh.token_env.as_deref())
                .map_err(|m| invalid(format!("[[github]] {}: {m}", gh.repo)))?;
        }
        for (i, g) in config.gerrit.iter().enumerate() {
            let valid = g
                .project
                .split_once('/')
                .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty());
            if !valid || g.project.contains("://") {
                return Err(invalid(format!(
                    "[[gerrit]] #{}: project {:?} is not host/project",
                    i + 1,
                    g.project
                )));
            }
        }
        Ok(config)
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.git.is_empty() && self.github.is_empty() && self.gerrit.is_empty()
    }
}

/// Reads a token from a file (`token` or Go's `user:token`, trimmed) or an
/// environment variable. Neither set is no token.
fn resolve_token(file: Option<&Path>, env: Option<&str>) -> Result<Option<Secret>, String> {
    let raw = match (file, env) {
        (Some(_), Some(_)) => return Err("set token_file or token_env, not both".into()),
        (Some(file), None) => std::fs::read_to_string(file)
            .map_err(|e| format!("reading token_file {}: {e}", file.display()))?,
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| format!("token_env {var} is not set"))?
        }
        (None, None) => return Ok(None),
    };
    let raw = raw.trim();
    let token = raw.split_once(':').map_or(raw, |(_, t)| t).trim();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(Some(Secret::new(token.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_keys() {
        let text = r#"
            [[git]]
            name = "go"
            url = "/srv/git/go"
            [[github]]
            repo = "golang/go"
            [[gerrit]]
            project = "go.googlesource.com/go"
            url = "https://go.googlesource.com/go"
        "#;
        let c = Config::parse(text, Path::new("c.toml")).expect("parses");
        assert_eq!(c.git[0].name, "go");
        assert_eq!(c.github[0].owner_repo(), ("golang", "go"));
        assert_eq!(c.github[0].api_url, GITHUB_API);
        assert_eq!(c.gerrit[0].fetch_url(), "https://go.googlesource.com/go");
        assert_eq!(c.poll.github(), Duration::from_secs(900));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = Config::parse(
            "[[github]]\nrepo = \"a/b\"\nbogus = 1\n",
            Path::new("x.toml"),
        )
        .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("x.toml: "), "{text}");
        assert!(text.contains("bogus") && text.contains('3'), "{text}");
        let err = Config::parse("[[github]]\nrepo = \"nobody\"\n", Path::new("x.toml"))
            .expect_err("bad repo");
        assert!(err.to_string().contains("not owner/repo"), "{err}");
    }

    #[test]
    fn tokens_never_print() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "gopher:s3cret\n").expect("write");
        let text = format!("[[github]]\nrepo = \"a/b\"\ntoken_file = {:?}\n", file);
        let c = Config::parse(&text, Path::new("c.toml")).expect("parses");
        let token = c.github[0].token.as_ref().expect("token");
        assert_eq!(token.expose(), "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
