//! Registry credentials, found as the kubelet finds them: Docker config files on the
//! kubelet's search path (the node keyring) and credential provider plugins, matched to the
//! image's repository. The runtime sends what [`RegistryAuth::lookup`] returns as CRI
//! `AuthConfig`s, trying each in turn, as the kubelet does.
//!
//! Secrets never leave this module in a printable form: [`Credentials`] prints redacted,
//! errors never quote files or plugin output, and [`Credentials::scrub`] removes them from
//! runtime messages before those reach logs, events or the status API.

pub mod dockercfg;
pub mod exec;
pub mod keyring;
pub mod plugin;
pub mod progress;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use dockercfg::SearchPaths;
use exec::ExecPlugin;
use keyring::Keyring;
use plugin::{PluginConfigError, Provider};

/// How long the node keyring is kept before the files are read again (the kubelet's
/// `CachingDockerConfigProvider` lifetime).
const NODE_KEYRING_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials of `username` with `password`.
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The password, for the one place that sends it (the CRI request).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `message` with the password, and the base64 `user:password` pair of basic auth,
    /// replaced by `<redacted>`, for a runtime error that may echo what it was sent.
    pub fn scrub(&self, message: &str) -> String {
        use base64::Engine;
        if self.password.is_empty() {
            return message.to_owned();
        }
        let pair = format!("{}:{}", self.username, self.password);
        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
        message
            .replace(&b64, "<redacted>")
            .replace(b64.trim_end_matches('='), "<redacted>")
            .replace(&self.password, "<redacted>")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where credentials come from: the kubelet's node keyring and its plugins.
pub struct RegistryAuth {
    paths: SearchPaths,
    node: Mutex<Option<(Instant, Keyring)>>,
    providers: Vec<Provider<ExecPlugin>>,
}

impl RegistryAuth {
    /// Credentials from the Docker config files on `paths` and from the providers of the
    /// `--image-credential-provider-config` at `plugin_config`, whose binaries are in
    /// `plugin_bin_dir`. Fails when the plugin config is unusable or names a missing binary,
    /// as the kubelet fails to start.
    pub fn new(
        paths: SearchPaths,
        plugins: Option<(&Path, &Path)>,
    ) -> Result<RegistryAuth, PluginConfigError> {
        let providers = match plugins {
            None => Vec::new(),
            Some((config, bin_dir)) => plugin::read_config(config)?
                .into_iter()
                .map(|spec| {
                    let exec = ExecPlugin::new(&spec, bin_dir)?;
                    Ok(Provider::new(spec, exec))
                })
                .collect::<Result<_, PluginConfigError>>()?,
        };
        Ok(RegistryAuth {
            paths,
            node: Mutex::new(None),
            providers,
        })
    }

    /// The search path for a daemon with root dir `root_dir`: the kubelet's, with podvisor's
    /// root dir before the kubelet's.
    pub fn search_paths(root_dir: &Path) -> SearchPaths {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let home = std::env::var_os("HOME").map(PathBuf::from);
        SearchPaths::kubelet(
            &[root_dir, Path::new(dockercfg::KUBELET_ROOT_DIR)],
            &cwd,
            home.as_deref(),
        )
    }

    /// The credentials to try for `image`, in order: the node keyring's, then each
    /// provider's. Empty: pull without credentials. A failing plugin is logged and
    /// contributes nothing, as in the kubelet.
    pub async fn lookup(&self, image: &str) -> Vec<Credentials> {
        let repo = keyring::repository(image);
        let mut found = self.node_keyring().lookup(&repo);
        let mut from_plugins = Keyring::default();
        for p in &self.providers {
            match p.provide(&repo).await {
                Ok(cfg) => from_plugins.add(cfg.iter().map(|(k, c)| (k.as_str(), c))),
                Err(e) => {
                    warn!(provider = p.name(), image, error = %e, "credential provider failed")
                }
            }
        }
        found.extend(from_plugins.lookup(&repo));
        found
    }

    fn node_keyring(&self) -> Keyring {
        let mut node = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let Some((read_at, k)) = node.as_ref()
            && now.duration_since(*read_at) < NODE_KEYRING_LIFETIME
        {
            return k.clone();
        }
        let (cfg, from) = dockercfg::read_node_config(&self.paths);
        if let Some(path) = &from {
            debug!(path = %path.display(), "registry credentials read");
        }
        let mut k = Keyring::default();
        k.add(cfg.iter().map(|(l, c)| (l.as_str(), c)));
        *node = Some((now, k.clone()));
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_print_without_their_password() {
        let c = Credentials::new("user", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn scrub_removes_the_password_in_any_form_from_runtime_messages() {
        let c = Credentials::new("user", "hunter2");
        let msg = "auth dXNlcjpodW50ZXIy failed for user:hunter2 (hunter2)";
        let clean = c.scrub(msg);
        assert!(!clean.contains("hunter2"), "{clean}");
        assert!(!clean.contains("dXNlcjpodW50ZXIy"), "{clean}");
        assert!(clean.contains("user"));
    }

    #[tokio::test]
    async fn node_keyring_and_plugins_both_answer_node_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"127.0.0.1:5000":{"username":"node","password":"a"}}}"#,
        )
        .expect("write");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let script = bin.join("lab");
        std::fs::write(
            &script,
            "#!/bin/sh\ncat >/dev/null\necho '{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderResponse\",\"cacheKeyType\":\"Registry\",\"auth\":{\"127.0.0.1:5000\":{\"username\":\"plugin\",\"password\":\"b\"}}}'\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let config = dir.path().join("providers.yaml");
        std::fs::write(
            &config,
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: lab\n  matchImages: ['127.0.0.1:5000']\n  defaultCacheDuration: 1m\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n",
        )
        .expect("write");
        let paths = SearchPaths::kubelet(&[dir.path()], dir.path(), None);
        let auth = RegistryAuth::new(paths, Some((&config, &bin))).expect("valid");
        let users: Vec<String> = auth
            .lookup("127.0.0.1:5000/busybox:1")
            .await
            .into_iter()
            .map(|c| c.username)
            .collect();
        assert_eq!(users, ["node", "plugin"]);
        assert!(auth.lookup("other.io/busybox").await.is_empty());
    }
}
