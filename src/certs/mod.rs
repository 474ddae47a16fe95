//! The node's certificates, as the kubelet's certificate managers keep them (client-go
//! `util/certificate`, kubelet `certificate` and `certificate/bootstrap`):
//!
//! * TLS bootstrap (`--bootstrap-kubeconfig`): while the kubeconfig has no usable client
//!   certificate, a CSR to `kubernetes.io/kube-apiserver-client-kubelet` is filed with the
//!   bootstrap credentials (a token), and once issued the pair is stored and a kubeconfig
//!   naming it is written, so that a node joins as kubeadm joins kubelets.
//! * Client rotation (`rotateCertificates`): a new key and CSR at 70–90 % of the
//!   certificate's lifetime, the pair written atomically, and the mirror task told to
//!   reconnect with it, without a restart.
//! * Serving certificates (`serverTLSBootstrap`): CSRs to `kubernetes.io/kubelet-serving`
//!   for the node's names, the node API switching to the issued certificate.
//!
//! Each runs as a task of its own beside the pods, never before them: static pods start at
//! once whatever the API server does, and nothing here touches a pod. Trouble (a CSR never
//! approved, a certificate about to expire) is a warning in the log and a metric.
//!
//! * `rotation` (pure): the rotation deadline and when to warn.
//! * `csr` (pure but for drawing keys): the request, its usages and names.
//! * `pair`, `store`: PEM pairs and the kubelet's file layout, written atomically.
//! * `kubeconfig`: the kubeconfig's client certificate, whether it is usable, the one
//!   bootstrap writes.
//! * `request`: the CertificateSigningRequest API calls.
//! * `manager`: the loop that drives them.

mod csr;
mod kubeconfig;
mod manager;
mod pair;
mod request;
mod rotation;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub use csr::Template;
pub use kubeconfig::{KubeconfigIdentity, client_identity, usable as kubeconfig_usable};
pub use manager::{CertTimings, Csrs, KubeCsrs, Manager, Request, ServingNames};
pub use pair::{Facts, Pair};
pub use rotation::Lifetime;
pub use store::Store;

use crate::mirror::MirrorError;

/// `kubernetes.io/kube-apiserver-client-kubelet`: the signer of kubelet client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// `kubernetes.io/kubelet-serving`: the signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Which certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The node's client certificate, for the API server.
    Client,
    /// The node API's serving certificate.
    Serving,
}

impl Kind {
    /// The signer that issues it.
    pub fn signer(self) -> &'static str {
        match self {
            Kind::Client => CLIENT_SIGNER,
            Kind::Serving => SERVING_SIGNER,
        }
    }

    /// The kubelet's file prefix in the certificate directory.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Kind::Client => "kubelet-client",
            Kind::Serving => "kubelet-server",
        }
    }

    /// `client` or `server`, as the kubelet's metric names say it.
    pub fn metric_name(self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::Serving => "server",
        }
    }
}

/// Why getting or keeping a certificate failed.
#[derive(Debug, Error)]
pub enum CertError {
    /// A key or request could not be made.
    #[error("cannot make a key or certificate request")]
    Generate(#[source] rcgen::Error),
    /// A file of the certificate directory cannot be read or written.
    #[error("certificate store {}", path.display())]
    Store {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key that does not parse, or a key that is not the certificate's.
    #[error("{}: {message}", path.display())]
    Pem {
        /// Where it came from.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A kubeconfig that cannot be read or used.
    #[error("kubeconfig {}: {message}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The API server is out of reach or refused a request.
    #[error("certificate signing request")]
    Api(#[source] MirrorError),
    /// A request with this name exists for another key or signer.
    #[error("certificate signing request {name} exists and is not ours")]
    Incompatible {
        /// The request.
        name: String,
    },
    /// An approver denied the request.
    #[error("certificate signing request {name} denied: {reason}: {message}")]
    Denied {
        /// The request.
        name: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// The signer failed to issue it.
    #[error("certificate signing request {name} failed: {reason}: {message}")]
    Failed {
        /// The request.
        name: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// Deleted, or replaced by another with the same name, while waiting.
    #[error("certificate signing request {name} was deleted while waiting for it")]
    Deleted {
        /// The request.
        name: String,
    },
    /// Not approved and issued in time.
    #[error("certificate signing request {name} not approved and issued within {waited:?}")]
    NotApproved {
        /// The request.
        name: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The issued certificate is not usable with the key (or does not parse).
    #[error("certificate signing request {name}: issued certificate unusable: {message}")]
    Unusable {
        /// The request.
        name: String,
        /// What is wrong.
        message: String,
    },
}
