//! The [`CredentialPlugin`] that execs a binary from `--image-credential-provider-bin-dir`,
//! as the kubelet's `execPlugin`: a `CredentialProviderRequest` on stdin, the response on
//! stdout, podvisor's environment plus the provider's `env`, one minute at most.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::plugin::{CredentialPlugin, PluginConfigError, PluginError, ProviderSpec};

/// The kubelet's catch-all limit for one plugin run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A plugin binary.
#[derive(Clone, Debug)]
pub struct ExecPlugin {
    name: String,
    bin: PathBuf,
    api_version: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ExecPlugin {
    /// The plugin of `spec` in `bin_dir`; refused when there is no such file (as the kubelet
    /// refuses to start).
    pub fn new(spec: &ProviderSpec, bin_dir: &Path) -> Result<ExecPlugin, PluginConfigError> {
        let bin = bin_dir.join(&spec.name);
        if !bin.is_file() {
            return Err(PluginConfigError::Missing(bin));
        }
        Ok(ExecPlugin {
            name: spec.name.clone(),
            bin,
            api_version: spec.api_version.clone(),
            args: spec.args.clone(),
            env: spec
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
        })
    }

    fn failed(&self, message: String) -> PluginError {
        PluginError::Exec {
            name: self.name.clone(),
            message,
        }
    }
}

impl CredentialPlugin for ExecPlugin {
    async fn request(&self, image: &str) -> Result<Vec<u8>, PluginError> {
        let request = serde_json::json!({
            "apiVersion": self.api_version,
            "kind": "CredentialProviderRequest",
            "image": image,
        })
        .to_string();
        let mut child = tokio::process::Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The plugin's diagnostics are not read: they may hold what it fetched.
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.failed(e.to_string()))?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A plugin that exits without reading its request is judged by its output.
                let _ = stdin.write_all(request.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let out = tokio::time::timeout(PLUGIN_TIMEOUT, run)
            .await
            .map_err(|_| self.failed(format!("no answer in {}s", PLUGIN_TIMEOUT.as_secs())))?
            .map_err(|e| self.failed(e.to_string()))?;
        if !out.status.success() {
            return Err(self.failed(format!("exited with {}", out.status)));
        }
        Ok(out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::registry::plugin::{EnvVar, parse_response};

    fn spec(name: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            match_images: vec!["*".into()],
            default_cache_duration: Duration::ZERO,
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            args: vec!["lab".into()],
            env: vec![EnvVar {
                name: "PASSWORD".into(),
                value: "s3cret".into(),
            }],
        }
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[tokio::test]
    async fn the_plugin_gets_the_request_on_stdin_its_args_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Echoes the image it was asked about as the user, $1 and $PASSWORD as the password.
        script(
            dir.path(),
            "p",
            r#"img=$(sed 's/.*"image":"\([^"]*\)".*/\1/')
printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","cacheKeyType":"Image","auth":{"r.io":{"username":"%s","password":"%s-%s"}}}' "$img" "$1" "$PASSWORD""#,
        );
        let plugin = ExecPlugin::new(&spec("p"), dir.path()).expect("exists");
        let out = plugin.request("r.io/app").await.expect("runs");
        let r = parse_response("p", &out).expect("valid");
        assert_eq!(r.auth["r.io"].username, "r.io/app");
        assert_eq!(r.auth["r.io"].password(), "lab-s3cret");
    }

    #[tokio::test]
    async fn a_failing_plugin_is_an_error_without_its_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "p", "echo s3cret; echo s3cret >&2; exit 3");
        let plugin = ExecPlugin::new(&spec("p"), dir.path()).expect("exists");
        let err = plugin.request("r.io/app").await.expect_err("fails");
        assert!(err.to_string().contains("exit status: 3"), "{err}");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn a_missing_plugin_binary_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            ExecPlugin::new(&spec("absent"), dir.path()),
            Err(PluginConfigError::Missing(_))
        ));
    }
}
