//! The API client: built from a kubeconfig (client certificates as in kubeadm's
//! `kubelet.conf`, tokens, CA), with timeouts on every request, and the errors the mirror
//! task tells apart.
//!
//! The kubeconfig is read again on every (re)connection: kubeadm writes `kubelet.conf` during
//! `init` and rotates the client certificate behind it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::core::Status;
use thiserror::Error;

use super::metering::MeterLayer;
use crate::metrics::Metrics;

/// Why an API call, or getting a client, failed.
#[derive(Debug, Error)]
pub enum MirrorError {
    /// The kubeconfig cannot be read or used.
    #[error("kubeconfig {}", path.display())]
    Kubeconfig {
        /// The kubeconfig path.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: KubeconfigError,
    },
    /// The client cannot be built from the kubeconfig (e.g. a bad certificate).
    #[error("kubeconfig {}: cannot build a client", path.display())]
    Client {
        /// The kubeconfig path.
        path: PathBuf,
        /// What kube reported.
        #[source]
        source: kube::Error,
    },
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request did not get an answer (connection refused or cut, TLS failure), or the
    /// answer says the server cannot serve now (5xx, 429) or does not accept our credentials.
    #[error("{0}")]
    Unreachable(String),
    /// The API server answered and refused this request (4xx).
    #[error("{} {}: {}", .0.code, .0.reason, .0.message)]
    Refused(Box<Status>),
}

impl MirrorError {
    /// Whether the API server is out of reach, which ends the session and backs off.
    pub fn is_unreachable(&self) -> bool {
        !matches!(self, MirrorError::Refused(_))
    }

    /// The refusal's `Status`, when the server answered with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            MirrorError::Refused(s) => Some(s),
            _ => None,
        }
    }

    /// The server's own words for a refusal, else the whole error chain.
    pub fn reason(&self) -> String {
        match self {
            MirrorError::Refused(s) if !s.message.is_empty() => s.message.clone(),
            other => chain(other),
        }
    }

    /// A refusal with this HTTP code.
    pub fn is_code(&self, code: u16) -> bool {
        self.status().is_some_and(|s| s.code == code)
    }
}

impl From<kube::Error> for MirrorError {
    fn from(err: kube::Error) -> MirrorError {
        match err {
            kube::Error::Api(status)
                if (400..500).contains(&status.code) && !matches!(status.code, 401 | 429) =>
            {
                MirrorError::Refused(status)
            }
            kube::Error::Api(status) => MirrorError::Unreachable(format!(
                "{} {}: {}",
                status.code, status.reason, status.message
            )),
            other => MirrorError::Unreachable(chain(&other)),
        }
    }
}

pub use crate::chain::chain;

/// Builds a client from the kubeconfig at `path`, every request bounded by `timeout` and,
/// with `metrics`, counted by verb. kube's own retries are off: the mirror task retries with
/// its own backoff.
pub async fn connect(
    path: &Path,
    timeout: Duration,
    metrics: Option<&Arc<Metrics>>,
) -> Result<kube::Client, MirrorError> {
    connect_as(path, None, timeout, metrics).await
}

/// As [`connect`], but authenticated with the certificate and key in `identity` (one PEM
/// file, the certificate manager's `kubelet-client-current.pem`) instead of the
/// kubeconfig's user, when that file exists: as the kubelet's rotating transport presents
/// the certificate manager's current pair whatever the kubeconfig says.
pub async fn connect_as(
    path: &Path,
    identity: Option<&Path>,
    timeout: Duration,
    metrics: Option<&Arc<Metrics>>,
) -> Result<kube::Client, MirrorError> {
    let kubeconfig_error = |source| MirrorError::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(kubeconfig_error)?;
    if let Some(pem) = identity.filter(|p| p.exists()) {
        let pem = pem.display().to_string();
        config.auth_info = kube::config::AuthInfo {
            client_certificate: Some(pem.clone()),
            client_key: Some(pem),
            ..kube::config::AuthInfo::default()
        };
    }
    config.connect_timeout = Some(timeout);
    // No read timeout: it would cut a quiet pod watch every `timeout`. Every other request
    // is bounded by `call`, and the watch by the server's timeoutSeconds and the worker's
    // idle limit.
    config.read_timeout = None;
    config.write_timeout = Some(timeout);
    config.reset_reader_on_write = true;
    config.default_retry = false;
    let client_error = |source| MirrorError::Client {
        path: path.to_owned(),
        source,
    };
    match metrics {
        None => kube::Client::try_from(config).map_err(client_error),
        Some(m) => Ok(kube::client::ClientBuilder::try_from(config)
            .map_err(client_error)?
            .with_layer(&MeterLayer(m.clone()))
            .build()),
    }
}

/// Runs one API call, bounded by `timeout` whatever the client does.
pub async fn call<T>(
    timeout: Duration,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, MirrorError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result.map_err(MirrorError::from),
        Err(_) => Err(MirrorError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("msg", reason).with_code(code)))
    }

    #[test]
    fn client_errors_are_refusals_and_server_errors_are_unreachable() {
        let refused = MirrorError::from(api(422, "Invalid"));
        assert!(!refused.is_unreachable());
        assert!(refused.is_code(422));
        assert_eq!(refused.reason(), "msg");
        for (code, reason) in [
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
            (429, "TooManyRequests"),
            (401, "Unauthorized"),
        ] {
            let err = MirrorError::from(api(code, reason));
            assert!(err.is_unreachable(), "{code}");
            assert_eq!(err.to_string(), format!("{code} {reason}: msg"));
        }
        assert!(MirrorError::Timeout(Duration::from_secs(1)).is_unreachable());
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file_and_the_cause() {
        let Err(err) = connect(
            Path::new("/nonexistent/kubelet.conf"),
            Duration::from_secs(1),
            None,
        )
        .await
        else {
            panic!("a missing kubeconfig must fail");
        };
        assert!(matches!(err, MirrorError::Kubeconfig { .. }));
        let text = err.reason();
        assert!(
            text.starts_with("kubeconfig /nonexistent/kubelet.conf: "),
            "{text}"
        );
        assert!(text.contains("No such file"), "{text}");
    }

    #[tokio::test]
    async fn a_hanging_call_ends_at_the_timeout() {
        let pending = std::future::pending::<Result<(), kube::Error>>();
        let err = call(Duration::from_millis(10), pending).await.unwrap_err();
        assert!(matches!(err, MirrorError::Timeout(_)));
    }
}
