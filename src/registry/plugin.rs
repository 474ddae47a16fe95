//! Credential provider plugins as the kubelet runs them (`pkg/credentialprovider/plugin`,
//! v1.35): the `CredentialProviderConfig` file, the `CredentialProviderResponse` a plugin
//! prints, and the cache of its answers by `cacheKeyType`. The plugin itself is behind
//! [`CredentialPlugin`] (exec in `exec.rs`); everything here is pure but the mutex.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::Credentials;
use super::dockercfg::DockerConfig;
use super::keyring::{registry, url_matches};

/// The API group plugins speak.
const PLUGIN_GROUP: &str = "credentialprovider.kubelet.k8s.io";
/// The plugin API versions the kubelet accepts.
const PLUGIN_VERSIONS: &[&str] = &[
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];
/// The config file API versions the kubelet accepts.
const CONFIG_VERSIONS: &[&str] = &[
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
/// The cache key of a `Global` answer.
const GLOBAL_KEY: &str = "<global>";

/// A credential provider config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PluginConfigError {
    /// The file or directory cannot be read.
    #[error("image credential provider config {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a CredentialProviderConfig.
    #[error("image credential provider config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin named in the config is not an executable in the bin dir.
    #[error("credential provider plugin binary {0} does not exist")]
    Missing(PathBuf),
}

/// A plugin that did not answer usefully. Never carries what the plugin printed: that holds
/// secrets.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// It could not be started, failed, or did not finish in time.
    #[error("credential provider plugin {name}: {message}")]
    Exec {
        /// The provider's name.
        name: String,
        /// What happened (an exit status, a timeout, an OS error).
        message: String,
    },
    /// Its output is not a CredentialProviderResponse.
    #[error("credential provider plugin {name}: invalid response: {message}")]
    Response {
        /// The provider's name.
        name: String,
        /// What is wrong, without quoting the output.
        message: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProviderFile {
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
}

/// An environment variable a plugin runs with.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// One configured provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Its name, which is also its executable's name in the bin dir.
    pub name: String,
    /// Images it is asked about (globs as the keyring matches them).
    pub match_images: Vec<String>,
    /// How long an answer without `cacheDuration` is kept.
    pub default_cache_duration: Duration,
    /// The plugin API version it speaks.
    pub api_version: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment, over podvisor's own.
    pub env: Vec<EnvVar>,
}

/// Parses one CredentialProviderConfig file's text and validates it as the kubelet does.
pub fn parse_config(path: &Path, text: &str) -> Result<Vec<ProviderSpec>, PluginConfigError> {
    let invalid = |message: String| PluginConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let file: ConfigFile =
        serde_saphyr::from_str(text).map_err(|e| invalid(without_values(&e.to_string())))?;
    if file.kind != "CredentialProviderConfig" {
        return Err(invalid(format!(
            "kind {:?} is not CredentialProviderConfig",
            file.kind
        )));
    }
    if !CONFIG_VERSIONS.contains(&file.api_version.as_str()) {
        return Err(invalid(format!(
            "apiVersion {:?} is not supported",
            file.api_version
        )));
    }
    if file.providers.is_empty() {
        return Err(invalid("providers: at least one is required".into()));
    }
    let mut out: Vec<ProviderSpec> = Vec::new();
    for p in file.providers {
        let name = &p.name;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', ' ']) {
            return Err(invalid(format!(
                "provider name {name:?} is not a file name"
            )));
        }
        if out.iter().any(|o| &o.name == name) {
            return Err(invalid(format!("provider name {name:?} is duplicated")));
        }
        if !PLUGIN_VERSIONS.contains(&p.api_version.as_str()) {
            return Err(invalid(format!(
                "provider {name}: apiVersion {:?} is not supported",
                p.api_version
            )));
        }
        if p.match_images.is_empty() {
            return Err(invalid(format!("provider {name}: matchImages is required")));
        }
        let default_cache_duration = match &p.default_cache_duration {
            None => {
                return Err(invalid(format!(
                    "provider {name}: defaultCacheDuration is required"
                )));
            }
            Some(d) => go_duration(d)
                .ok_or_else(|| invalid(format!("provider {name}: defaultCacheDuration {d:?}")))?,
        };
        out.push(ProviderSpec {
            name: p.name,
            match_images: p.match_images,
            default_cache_duration,
            api_version: p.api_version,
            args: p.args,
            env: p.env,
        });
    }
    Ok(out)
}

/// A YAML error's first line (where, and what was expected) with quoted values cut out: the
/// parser shows the offending line and quotes values, and a provider's `env` or `args` may
/// hold a secret.
fn without_values(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    let mut quoted = false;
    for c in first.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Reads the config at `path`: one file, or every file of a directory in name order (as the
/// kubelet since 1.33), provider names unique across them.
pub fn read_config(path: &Path) -> Result<Vec<ProviderSpec>, PluginConfigError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| PluginConfigError::Read { path, source }
    };
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err(path))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut out: Vec<ProviderSpec> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(read_err(&f))?;
        for p in parse_config(&f, &text)? {
            if out.iter().any(|o| o.name == p.name) {
                return Err(PluginConfigError::Invalid {
                    path: f,
                    message: format!("provider name {:?} is duplicated", p.name),
                });
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// A Go `metav1.Duration` string (`12h`, `5m0s`, `0s`).
fn go_duration(s: &str) -> Option<Duration> {
    match s.trim() {
        "0" => Some(Duration::ZERO),
        s => humantime::parse_duration(s).ok(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseFile {
    api_version: String,
    kind: String,
    cache_key_type: String,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: BTreeMap<String, AuthFile>,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// What a cached answer is filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKeyType {
    /// The image (repository) asked about.
    Image,
    /// Its registry (host and port).
    Registry,
    /// Every image.
    Global,
}

/// A plugin's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// How to file it.
    pub cache_key_type: CacheKeyType,
    /// How long to keep it; `None`: the provider's default.
    pub cache_duration: Option<Duration>,
    /// Locations (matched as keyring keys) and their credentials.
    pub auth: DockerConfig,
}

/// Parses what a plugin printed.
pub fn parse_response(name: &str, out: &[u8]) -> Result<Response, PluginError> {
    let bad = |message| PluginError::Response {
        name: name.to_owned(),
        message,
    };
    let r: ResponseFile = serde_json::from_slice(out).map_err(|_| bad("not a JSON response"))?;
    if r.kind != "CredentialProviderResponse" {
        return Err(bad("kind is not CredentialProviderResponse"));
    }
    if r.api_version.split('/').next() != Some(PLUGIN_GROUP) {
        return Err(bad("apiVersion is not credentialprovider.kubelet.k8s.io"));
    }
    let cache_key_type = match r.cache_key_type.as_str() {
        "Image" => CacheKeyType::Image,
        "Registry" => CacheKeyType::Registry,
        "Global" => CacheKeyType::Global,
        _ => return Err(bad("cacheKeyType is not Image, Registry or Global")),
    };
    let cache_duration = r
        .cache_duration
        .map(|d| go_duration(&d).ok_or_else(|| bad("cacheDuration is not a duration")))
        .transpose()?;
    Ok(Response {
        cache_key_type,
        cache_duration,
        auth: r
            .auth
            .into_iter()
            .map(|(k, a)| (k, Credentials::new(&a.username, &a.password)))
            .collect(),
    })
}

/// Answers kept until they expire, as the kubelet's plugin cache: looked up by image, then
/// registry, then the global key.
#[derive(Debug, Default)]
pub struct PluginCache {
    entries: HashMap<String, (Instant, DockerConfig)>,
}

impl PluginCache {
    /// The answer for `image` still valid at `now`, if any.
    pub fn get(&mut self, image: &str, now: Instant) -> Option<DockerConfig> {
        self.entries.retain(|_, (expires, _)| *expires >= now);
        [image, registry(image), GLOBAL_KEY]
            .into_iter()
            .find_map(|k| self.entries.get(k).map(|(_, c)| c.clone()))
    }

    /// Keeps `response` for `image` as its cache key type and duration say (a zero duration,
    /// or none with a zero default, keeps nothing).
    pub fn put(&mut self, image: &str, response: &Response, default: Duration, now: Instant) {
        let keep = response.cache_duration.unwrap_or(default);
        if keep.is_zero() {
            return;
        }
        let key = match response.cache_key_type {
            CacheKeyType::Image => image,
            CacheKeyType::Registry => registry(image),
            CacheKeyType::Global => GLOBAL_KEY,
        };
        self.entries
            .insert(key.to_owned(), (now + keep, response.auth.clone()));
    }
}

/// Asks a plugin about an image: returns what it printed on stdout.
pub trait CredentialPlugin: Send + Sync + 'static {
    /// Runs the plugin for `image` (a repository, as the kubelet passes it).
    fn request(&self, image: &str) -> impl Future<Output = Result<Vec<u8>, PluginError>> + Send;
}

/// One configured provider: its spec, its plugin and its cache.
pub struct Provider<P> {
    spec: ProviderSpec,
    plugin: P,
    cache: Mutex<PluginCache>,
    /// One plugin run at a time, so pulls that start together ask once and share the
    /// cached answer (the kubelet's singleflight, per provider rather than per image).
    running: tokio::sync::Mutex<()>,
}

impl<P: CredentialPlugin> Provider<P> {
    /// A provider asking `plugin`.
    pub fn new(spec: ProviderSpec, plugin: P) -> Provider<P> {
        Provider {
            spec,
            plugin,
            cache: Mutex::new(PluginCache::default()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The locations and credentials this provider gives for `image` (a repository): none
    /// when `matchImages` does not cover it; a cached answer when one is valid; else the
    /// plugin's, cached as it says.
    pub async fn provide(&self, image: &str) -> Result<DockerConfig, PluginError> {
        if !self.spec.match_images.iter().any(|m| url_matches(m, image)) {
            return Ok(DockerConfig::new());
        }
        if let Some(found) = self.lock().get(image, Instant::now()) {
            return Ok(found);
        }
        let _running = self.running.lock().await;
        // Another pull may have asked while this one waited.
        if let Some(found) = self.lock().get(image, Instant::now()) {
            return Ok(found);
        }
        let out = self.plugin.request(image).await?;
        let response = parse_response(&self.spec.name, &out)?;
        self.lock().put(
            image,
            &response,
            self.spec.default_cache_duration,
            Instant::now(),
        );
        Ok(response.auth)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PluginCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const CONFIG: &str = "
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: lab-creds
    matchImages: ['127.0.0.1:5000', '*.example.com']
    defaultCacheDuration: 5m
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [--verbose]
    env:
      - {name: TOKEN_FILE, value: /etc/token}
";

    fn spec() -> ProviderSpec {
        parse_config(Path::new("c.yaml"), CONFIG)
            .expect("valid")
            .remove(0)
    }

    #[test]
    fn a_kubelet_credential_provider_config_parses() {
        let s = spec();
        assert_eq!(s.name, "lab-creds");
        assert_eq!(s.match_images, ["127.0.0.1:5000", "*.example.com"]);
        assert_eq!(s.default_cache_duration, Duration::from_secs(300));
        assert_eq!(s.args, ["--verbose"]);
        assert_eq!(s.env[0].name, "TOKEN_FILE");
    }

    #[test]
    fn configs_the_kubelet_refuses_are_refused() {
        for bad in [
            CONFIG.replace("kind: CredentialProviderConfig", "kind: Pod"),
            CONFIG.replace("defaultCacheDuration: 5m", ""),
            CONFIG.replace("name: lab-creds", "name: ../x"),
            CONFIG.replace("credentialprovider.kubelet.k8s.io/v1", "v9"),
            CONFIG.replace("matchImages: ['127.0.0.1:5000', '*.example.com']", ""),
            CONFIG.replace("args:", "tokenAttributes: {}\n    args:"),
        ] {
            assert!(
                matches!(
                    parse_config(Path::new("c.yaml"), &bad),
                    Err(PluginConfigError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_errors_say_where_but_never_quote_the_file() {
        for bad in [
            CONFIG.replace("value: /etc/token", "value: s3cret, extra: 1"),
            CONFIG.replace("value: /etc/token", "value: [s3cret]"),
            CONFIG.replace("args: [--verbose]", "args: \"s3cret\""),
        ] {
            let err = parse_config(Path::new("c.yaml"), &bad).expect_err("invalid");
            let text = err.to_string();
            assert!(text.contains("line "), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    fn response(key: &str, duration: Option<&str>) -> Vec<u8> {
        let duration = duration.map_or(String::new(), |d| format!(r#","cacheDuration":"{d}""#));
        format!(
            r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse",
               "cacheKeyType":"{key}"{duration},"auth":{{"127.0.0.1:5000":{{"username":"u","password":"s3cret"}}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_plugin_response_parses_with_its_cache_instructions() {
        let r = parse_response("p", &response("Registry", Some("1m30s"))).expect("valid");
        assert_eq!(r.cache_key_type, CacheKeyType::Registry);
        assert_eq!(r.cache_duration, Some(Duration::from_secs(90)));
        assert_eq!(r.auth["127.0.0.1:5000"], Credentials::new("u", "s3cret"));
    }

    #[test]
    fn a_bad_response_error_never_quotes_the_output() {
        let out = br#"{"kind":"Nope","auth":{"r":{"password":"s3cret"}}}"#;
        let err = parse_response("p", out).expect_err("invalid");
        assert!(!err.to_string().contains("s3cret"));
        let err = parse_response("p", &response("Forever", None)).expect_err("bad key type");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_registry_keyed_answer_serves_other_images_of_that_registry_until_it_expires() {
        let mut cache = PluginCache::default();
        let now = Instant::now();
        let r = parse_response("p", &response("Registry", Some("1m"))).expect("valid");
        cache.put("127.0.0.1:5000/a", &r, Duration::ZERO, now);
        assert!(cache.get("127.0.0.1:5000/b", now).is_some());
        assert!(cache.get("127.0.0.1:5001/b", now).is_none());
        assert!(
            cache
                .get("127.0.0.1:5000/b", now + Duration::from_secs(61))
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_keyed_answer_serves_only_that_image() {
        let mut cache = PluginCache::default();
        let now = Instant::now();
        let r = parse_response("p", &response("Image", None)).expect("valid");
        cache.put("127.0.0.1:5000/a", &r, Duration::from_secs(60), now);
        assert!(cache.get("127.0.0.1:5000/a", now).is_some());
        assert!(cache.get("127.0.0.1:5000/b", now).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_cache_duration_keeps_nothing() {
        let mut cache = PluginCache::default();
        let now = Instant::now();
        let r = parse_response("p", &response("Global", Some("0s"))).expect("valid");
        cache.put("127.0.0.1:5000/a", &r, Duration::from_secs(60), now);
        assert!(cache.get("127.0.0.1:5000/a", now).is_none());
        let r = parse_response("p", &response("Global", None)).expect("valid");
        cache.put("127.0.0.1:5000/a", &r, Duration::ZERO, now);
        assert!(cache.get("127.0.0.1:5000/a", now).is_none());
    }

    struct Counting(AtomicUsize, Vec<u8>);

    impl CredentialPlugin for Counting {
        async fn request(&self, _image: &str) -> Result<Vec<u8>, PluginError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(self.1.clone())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_asks_its_plugin_once_per_cache_lifetime_and_only_for_matching_images() {
        let p = Provider::new(
            spec(),
            Counting(AtomicUsize::new(0), response("Global", None)),
        );
        assert!(p.provide("quay.io/app").await.expect("ok").is_empty());
        assert_eq!(p.plugin.0.load(Ordering::SeqCst), 0);
        assert_eq!(p.provide("127.0.0.1:5000/a").await.expect("ok").len(), 1);
        assert_eq!(p.provide("reg.example.com/b").await.expect("ok").len(), 1);
        assert_eq!(p.plugin.0.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(301)).await;
        p.provide("127.0.0.1:5000/a").await.expect("ok");
        assert_eq!(p.plugin.0.load(Ordering::SeqCst), 2);
    }
}
