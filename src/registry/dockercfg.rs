//! Docker credential files, found and read as the kubelet does
//! (`pkg/credentialprovider/config.go`, v1.35): the first valid `config.json` in the search
//! path, else the first valid legacy `.dockercfg`. Parsing is pure; [`read_node_config`]
//! touches files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::Credentials;

/// The kubelet's read limit for these files.
const MAX_LENGTH: u64 = 10 << 20;

/// Locations and their credentials, as a Docker config file lists them.
pub type DockerConfig = BTreeMap<String, Credentials>;

/// Where the kubelet looks, in order: `config.json` in its root dir, the working directory,
/// `~/.docker` and `/.docker`; then `.dockercfg` in its root dir, the working directory, `~`
/// and `/`. podvisor looks in its own root dir and then in the kubelet's, so that a node
/// moving from the kubelet keeps its credentials where they were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPaths {
    /// Candidate `config.json` files, in order.
    pub config_json: Vec<PathBuf>,
    /// Candidate `.dockercfg` files, in order.
    pub dockercfg: Vec<PathBuf>,
}

/// The kubelet's default root dir.
pub const KUBELET_ROOT_DIR: &str = "/var/lib/kubelet";

impl SearchPaths {
    /// The search path for a process whose root dirs are `root_dirs` (podvisor's, then the
    /// kubelet's), with working directory `cwd` and home `home` (none when `$HOME` is unset).
    pub fn kubelet(root_dirs: &[&Path], cwd: &Path, home: Option<&Path>) -> SearchPaths {
        let root = Path::new("/");
        let mut json_dirs: Vec<PathBuf> = Vec::new();
        let mut cfg_dirs: Vec<PathBuf> = Vec::new();
        for d in root_dirs {
            if !json_dirs.iter().any(|j| j == d) {
                json_dirs.push(d.to_path_buf());
                cfg_dirs.push(d.to_path_buf());
            }
        }
        json_dirs.push(cwd.to_owned());
        cfg_dirs.push(cwd.to_owned());
        if let Some(h) = home {
            json_dirs.push(h.join(".docker"));
            cfg_dirs.push(h.to_owned());
        }
        json_dirs.push(root.join(".docker"));
        cfg_dirs.push(root.to_owned());
        SearchPaths {
            config_json: json_dirs.iter().map(|d| d.join("config.json")).collect(),
            dockercfg: cfg_dirs.iter().map(|d| d.join(".dockercfg")).collect(),
        }
    }
}

/// A file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    /// Not JSON of the expected shape. The serde message is left out on purpose: it can
    /// quote the file's content, which holds secrets.
    #[error("not a valid docker config file")]
    Invalid,
    /// An `auth` field that is not base64 of `user:password`.
    #[error("entry {0:?}: auth is not base64(username:password)")]
    Auth(String),
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

fn entries(raw: BTreeMap<String, Entry>) -> Result<DockerConfig, DockerConfigError> {
    raw.into_iter()
        .map(|(location, e)| {
            let creds = if e.auth.is_empty() {
                Credentials::new(&e.username, &e.password)
            } else {
                decode_auth(&e.auth).ok_or_else(|| DockerConfigError::Auth(location.clone()))?
            };
            Ok((location, creds))
        })
        .collect()
}

/// base64 (padded or not) of `user:password`.
fn decode_auth(field: &str) -> Option<Credentials> {
    let field = field.trim();
    let bytes = if field.ends_with('=') {
        base64::engine::general_purpose::STANDARD.decode(field)
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(field)
    }
    .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials::new(user, password))
}

/// A `config.json`: its `auths` map.
pub fn parse_config_json(bytes: &[u8]) -> Result<DockerConfig, DockerConfigError> {
    let file: ConfigJson = serde_json::from_slice(bytes).map_err(|_| DockerConfigError::Invalid)?;
    entries(file.auths)
}

/// A legacy `.dockercfg`: the map itself.
pub fn parse_dockercfg(bytes: &[u8]) -> Result<DockerConfig, DockerConfigError> {
    let raw: BTreeMap<String, Entry> =
        serde_json::from_slice(bytes).map_err(|_| DockerConfigError::Invalid)?;
    entries(raw)
}

/// The credentials of the first valid file on the search path, as the kubelet's
/// `ReadDockerConfigFile`, with the file it came from; empty when there is none. Files that
/// are missing or invalid are skipped (the kubelet logs those at a verbose level only).
pub fn read_node_config(paths: &SearchPaths) -> (DockerConfig, Option<PathBuf>) {
    let read = |p: &Path| -> Option<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        std::fs::File::open(p)
            .ok()?
            .take(MAX_LENGTH)
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    };
    for p in &paths.config_json {
        if let Some(Ok(cfg)) = read(p).map(|b| parse_config_json(&b)) {
            return (cfg, Some(p.clone()));
        }
    }
    for p in &paths.dockercfg {
        if let Some(Ok(cfg)) = read(p).map(|b| parse_dockercfg(&b)) {
            return (cfg, Some(p.clone()));
        }
    }
    (DockerConfig::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_path_is_root_dirs_then_cwd_then_home_then_slash() {
        let p = SearchPaths::kubelet(
            &[Path::new("/var/lib/podvisor"), Path::new(KUBELET_ROOT_DIR)],
            Path::new("/srv"),
            Some(Path::new("/root")),
        );
        assert_eq!(
            p.config_json,
            [
                "/var/lib/podvisor/config.json",
                "/var/lib/kubelet/config.json",
                "/srv/config.json",
                "/root/.docker/config.json",
                "/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            p.dockercfg,
            [
                "/var/lib/podvisor/.dockercfg",
                "/var/lib/kubelet/.dockercfg",
                "/srv/.dockercfg",
                "/root/.dockercfg",
                "/.dockercfg"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_root_dir_named_twice_is_searched_once() {
        let kubelet = Path::new(KUBELET_ROOT_DIR);
        let p = SearchPaths::kubelet(&[kubelet, kubelet], Path::new("/srv"), None);
        assert_eq!(p.config_json.len(), 3);
        assert_eq!(p.dockercfg.len(), 3);
    }

    #[test]
    fn config_json_auth_fields_decode_padded_or_not() {
        let json = br#"{"auths":{
            "reg.io":{"auth":"dXNlcjpwYXNzd29yZA=="},
            "other.io":{"auth":"dXNlcjpwYXNzd29yZA"},
            "plain.io":{"username":"u","password":"p:q"}}}"#;
        let cfg = parse_config_json(json).expect("valid");
        assert_eq!(cfg["reg.io"], Credentials::new("user", "password"));
        assert_eq!(cfg["other.io"], Credentials::new("user", "password"));
        assert_eq!(cfg["plain.io"], Credentials::new("u", "p:q"));
    }

    #[test]
    fn a_legacy_dockercfg_is_the_bare_map() {
        let cfg =
            parse_dockercfg(br#"{"https://index.docker.io/v1/":{"auth":"YTpi"}}"#).expect("valid");
        assert_eq!(
            cfg["https://index.docker.io/v1/"],
            Credentials::new("a", "b")
        );
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let err = parse_config_json(br#"{"auths":{"r":{"auth":5, "password":"hunter2"}}}"#)
            .expect_err("invalid");
        assert!(!err.to_string().contains("hunter2"));
        let err =
            parse_config_json(br#"{"auths":{"r":{"auth":"aHVudGVyMg=="}}}"#).expect_err("no colon");
        assert!(matches!(err, DockerConfigError::Auth(_)));
    }

    #[test]
    fn the_first_valid_file_wins_and_config_json_beats_dockercfg() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(a.join("config.json"), "not json").expect("write");
        std::fs::write(a.join(".dockercfg"), r#"{"old.io":{"auth":"YTpi"}}"#).expect("write");
        std::fs::write(
            b.join("config.json"),
            r#"{"auths":{"new.io":{"auth":"YTpi"}}}"#,
        )
        .expect("write");
        let paths = SearchPaths::kubelet(&[&a], &b, None);
        let (cfg, from) = read_node_config(&paths);
        assert!(cfg.contains_key("new.io"));
        assert_eq!(from, Some(b.join("config.json")));
        std::fs::remove_file(b.join("config.json")).expect("rm");
        let (cfg, _) = read_node_config(&paths);
        assert!(cfg.contains_key("old.io"));
    }
}
