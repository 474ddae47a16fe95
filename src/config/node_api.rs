//! The node API's and healthz's settings, with the kubelet's names: flags as the kubelet's,
//! config file keys as KubeletConfiguration's (`address`, `port`, `tlsCertFile`,
//! `authentication.x509.clientCAFile`, `authorization.mode`, `healthzPort`, ...).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, ConfigFile, duration, env_bool};
use crate::cli::NodeApiArgs;
use crate::nodeapi::{AuthSettings, Mode};

/// The kubelet's port.
pub const DEFAULT_PORT: u16 = 10250;
/// The kubelet's healthz port.
pub const DEFAULT_HEALTHZ_PORT: u16 = 10248;

/// `authentication` in the config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticationFile {
    /// `x509.clientCAFile`.
    pub x509: Option<X509File>,
    /// `webhook.enabled`, `webhook.cacheTTL`.
    pub webhook: Option<WebhookFile>,
    /// `anonymous.enabled`.
    pub anonymous: Option<Enabled>,
}

/// `authentication.x509`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct X509File {
    /// The client CA.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
}

/// `authentication.webhook`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookFile {
    /// Token reviews on.
    pub enabled: Option<bool>,
    /// How long a review is reused.
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<String>,
}

/// `{enabled: bool}`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    /// On or off.
    pub enabled: Option<bool>,
}

/// `authorization` in the config file.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationFile {
    /// `Webhook` or `AlwaysAllow`.
    pub mode: Option<String>,
    /// Cache lifetimes.
    pub webhook: Option<AuthorizationWebhookFile>,
}

/// `authorization.webhook`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthorizationWebhookFile {
    /// How long an allow is reused.
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<String>,
    /// How long a deny is reused.
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<String>,
}

/// The node API, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeApiSettings {
    /// Where it listens (port 0: any free port).
    pub listen: SocketAddr,
    /// Serving certificate and key; `None`: self-signed under the root dir.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Client CA, for certificate authentication.
    pub client_ca: Option<PathBuf>,
    /// Authentication and authorization.
    pub auth: AuthSettings,
}

fn ip(key: &'static str, value: &str) -> Result<IpAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::NodeApi(format!("{key}: {value:?} is not an IP address")))
}

/// Validates the node API settings. `mirroring`: a kubeconfig is set, which turns the API on
/// by default and is what the webhooks ask.
pub fn node_api(
    args: &NodeApiArgs,
    file: &ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
    mirroring: bool,
) -> Result<Option<NodeApiSettings>, ConfigError> {
    let serve = match args.node_api {
        Some(b) => b,
        None => env_bool("PODVISOR_NODE_API", env)?
            .or(file.serve_node_api)
            .unwrap_or(mirroring),
    };
    if !serve {
        return Ok(None);
    }
    let authn = file.authentication.as_ref();
    let authz = file.authorization.as_ref();
    let address = args
        .address
        .clone()
        .or_else(|| file.address.clone())
        .unwrap_or_else(|| "0.0.0.0".to_owned());
    let port = args.port.or(file.port).unwrap_or(DEFAULT_PORT);
    let cert = args.tls_cert_file.clone().or(file.tls_cert_file.clone());
    let key = args
        .tls_private_key_file
        .clone()
        .or(file.tls_private_key_file.clone());
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::NodeApi(
                "--tls-cert-file and --tls-private-key-file go together".into(),
            ));
        }
    };
    let webhook = authn.and_then(|a| a.webhook.as_ref());
    let token_webhook = args
        .authentication_token_webhook
        .or(webhook.and_then(|w| w.enabled))
        .unwrap_or(false);
    let mode = match args
        .authorization_mode
        .clone()
        .or_else(|| authz.and_then(|a| a.mode.clone()))
        .as_deref()
        .unwrap_or("Webhook")
    {
        "Webhook" => Mode::Webhook,
        "AlwaysAllow" => Mode::AlwaysAllow,
        other => {
            return Err(ConfigError::NodeApi(format!(
                "authorization mode {other:?}: use Webhook or AlwaysAllow"
            )));
        }
    };
    if !mirroring && mode == Mode::Webhook {
        return Err(ConfigError::NodeApi(
            "Webhook authorization asks the API server: set --kubeconfig, or --authorization-mode AlwaysAllow".into(),
        ));
    }
    if !mirroring && token_webhook {
        return Err(ConfigError::NodeApi(
            "--authentication-token-webhook asks the API server: set --kubeconfig".into(),
        ));
    }
    let authz_webhook = authz.and_then(|a| a.webhook.as_ref());
    // the kubelet's cache lifetimes
    let defaults = AuthSettings::default();
    let ttl = |key, flag: &Option<String>, file: Option<String>, default| {
        duration(
            key,
            flag.clone().or(file),
            default,
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
        )
    };
    Ok(Some(NodeApiSettings {
        listen: SocketAddr::new(ip("address", &address)?, port),
        tls,
        client_ca: args.client_ca_file.clone().or_else(|| {
            authn
                .and_then(|a| a.x509.as_ref())
                .and_then(|x| x.client_ca_file.clone())
        }),
        auth: AuthSettings {
            anonymous: args
                .anonymous_auth
                .or(authn
                    .and_then(|a| a.anonymous.as_ref())
                    .and_then(|a| a.enabled))
                .unwrap_or(false),
            token_webhook,
            token_ttl: ttl(
                "authentication.webhook.cacheTTL",
                &args.authentication_token_webhook_cache_ttl,
                webhook.and_then(|w| w.cache_ttl.clone()),
                defaults.token_ttl,
            )?,
            mode,
            allowed_ttl: ttl(
                "authorization.webhook.cacheAuthorizedTTL",
                &args.authorization_webhook_cache_authorized_ttl,
                authz_webhook.and_then(|w| w.cache_authorized_ttl.clone()),
                defaults.allowed_ttl,
            )?,
            denied_ttl: ttl(
                "authorization.webhook.cacheUnauthorizedTTL",
                &args.authorization_webhook_cache_unauthorized_ttl,
                authz_webhook.and_then(|w| w.cache_unauthorized_ttl.clone()),
                defaults.denied_ttl,
            )?,
        },
    }))
}

/// The plain-HTTP healthz address; `None` when its port is 0.
pub fn healthz(args: &NodeApiArgs, file: &ConfigFile) -> Result<Option<SocketAddr>, ConfigError> {
    let port = args
        .healthz_port
        .or(file.healthz_port)
        .unwrap_or(DEFAULT_HEALTHZ_PORT);
    if port == 0 {
        return Ok(None);
    }
    let address = args
        .healthz_bind_address
        .clone()
        .or(file.healthz_bind_address.clone())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    Ok(Some(SocketAddr::new(
        ip("healthzBindAddress", &address)?,
        port,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_node_api_is_on_with_mirroring_with_the_kubelets_defaults() {
        let s = node_api(
            &NodeApiArgs::default(),
            &ConfigFile::default(),
            &no_env,
            true,
        )
        .expect("valid")
        .expect("on");
        assert_eq!(s.listen, "0.0.0.0:10250".parse().expect("addr"));
        assert_eq!(s.auth.mode, Mode::Webhook);
        assert!(!s.auth.anonymous && !s.auth.token_webhook);
        assert_eq!(
            (s.auth.token_ttl, s.auth.allowed_ttl, s.auth.denied_ttl),
            (
                Duration::from_secs(120),
                Duration::from_secs(300),
                Duration::from_secs(30)
            )
        );
        assert_eq!(
            node_api(
                &NodeApiArgs::default(),
                &ConfigFile::default(),
                &no_env,
                false
            )
            .expect("valid"),
            None,
            "off when standalone"
        );
    }

    #[test]
    fn standalone_it_serves_only_when_asked_and_only_with_always_allow() {
        let asked = NodeApiArgs {
            node_api: Some(true),
            ..NodeApiArgs::default()
        };
        let err = node_api(&asked, &ConfigFile::default(), &no_env, false).expect_err("webhook");
        assert!(err.to_string().contains("--kubeconfig"), "{err}");
        let allow = NodeApiArgs {
            node_api: Some(true),
            authorization_mode: Some("AlwaysAllow".into()),
            port: Some(0),
            ..NodeApiArgs::default()
        };
        let s = node_api(&allow, &ConfigFile::default(), &no_env, false)
            .expect("valid")
            .expect("on");
        assert_eq!(s.auth.mode, Mode::AlwaysAllow);
        assert_eq!(s.listen.port(), 0);
    }

    #[test]
    fn healthz_defaults_to_loopback_10248_and_port_zero_turns_it_off() {
        assert_eq!(
            healthz(&NodeApiArgs::default(), &ConfigFile::default()).expect("valid"),
            Some("127.0.0.1:10248".parse().expect("addr"))
        );
        let off = NodeApiArgs {
            healthz_port: Some(0),
            ..NodeApiArgs::default()
        };
        assert_eq!(healthz(&off, &ConfigFile::default()).expect("valid"), None);
    }
}
