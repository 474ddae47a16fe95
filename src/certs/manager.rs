//! The certificate manager's loop, one per certificate: bootstrap the client certificate when
//! the kubeconfig cannot be used, then sleep until [`rotation::next`] says to renew or warn,
//! renew through [`Csrs`], store the pair and hand it on. Failures back off (client-go: 2 s
//! doubling to 32 s, then every 32 s), each one a warning and a count in
//! `podvisor_certificate_manager_<client|server>_expiration_renew_errors`.
//!
//! Nothing here blocks anything else: the manager is a task of its own, and what it produces
//! reaches the others through `on_update` (a generation bump for the mirror task, a new
//! serving certificate for the node API).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::Api;
use rcgen::{KeyPair, PublicKeyData};
use tokio::time::sleep;
use tracing::{info, warn};

use super::csr::{self, Template};
use super::kubeconfig;
use super::pair::Pair;
use super::request;
use super::rotation::{self, Held, Lifetime, Next};
use super::store::{Store, write_atomic};
use super::{CertError, Kind};
use crate::backoff::{Delays, Policy};
use crate::chain::chain;
use crate::clock::{Clock, Timestamp};
use crate::metrics::Metrics;
use crate::mirror;

/// The temporary bootstrap key, kept so that a restart files the same request again
/// (kubelet `kubelet-client.key.tmp`).
const BOOTSTRAP_KEY: &str = "kubelet-client.key.tmp";

/// Waits and retries. The defaults are the kubelet's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertTimings {
    /// Limit on each API request.
    pub request_timeout: Duration,
    /// How long a rotation request is waited for (client-go: 15 minutes).
    pub approval_timeout: Duration,
    /// How long a bootstrap request is waited for (kubelet: 1 hour).
    pub bootstrap_timeout: Duration,
    /// Retrying after a failure (client-go: 2 s doubling to 32 s).
    pub retry: Policy,
}

impl Default for CertTimings {
    fn default() -> CertTimings {
        CertTimings {
            request_timeout: Duration::from_secs(10),
            approval_timeout: Duration::from_secs(15 * 60),
            bootstrap_timeout: Duration::from_secs(3600),
            retry: Policy::new(
                Duration::from_secs(2),
                Duration::from_secs(32),
                Duration::from_secs(600),
            )
            .jittered(),
        }
    }
}

/// A certificate to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Which certificate.
    pub kind: Kind,
    /// Its name (bootstrap); `None` lets the server name it `csr-…`.
    pub name: Option<String>,
    /// The PEM request.
    pub csr_pem: String,
    /// Its public key (SubjectPublicKeyInfo DER).
    pub spki: Vec<u8>,
}

/// Where certificates are asked for: the API server, or a stand-in in tests.
pub trait Csrs: Send + Sync + 'static {
    /// Files `request` and waits at most `wait` for its certificate (PEM).
    fn obtain(
        &self,
        request: &Request,
        wait: Duration,
    ) -> impl Future<Output = Result<String, CertError>> + Send;
}

/// The API server a kubeconfig names, with a new client for every request (the credentials
/// may have changed since the last one), authenticated with the `identity` pair when that
/// file exists.
#[derive(Clone, Debug)]
pub struct KubeCsrs {
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    /// A pair to authenticate with instead of the kubeconfig's user, when present.
    pub identity: Option<PathBuf>,
    /// Limit on each request.
    pub timeout: Duration,
    /// Where requests are counted.
    pub metrics: Option<Arc<Metrics>>,
}

impl Csrs for KubeCsrs {
    async fn obtain(&self, r: &Request, wait: Duration) -> Result<String, CertError> {
        let client = mirror::connect_as(
            &self.kubeconfig,
            self.identity.as_deref(),
            self.timeout,
            self.metrics.as_ref(),
        )
        .await
        .map_err(CertError::Api)?;
        let api: Api<CertificateSigningRequest> = Api::all(client);
        let filed = request::file(
            &api,
            r.name.as_deref(),
            r.kind,
            &r.csr_pem,
            &r.spki,
            self.timeout,
        )
        .await?;
        info!(csr = %filed.name, signer = r.kind.signer(), "certificate signing request filed; waiting for approval");
        request::wait_issued(&api, &filed, wait, self.timeout).await
    }
}

/// Bootstrap: the bootstrap kubeconfig's credentials, and the kubeconfig to write.
struct Bootstrap<C> {
    csrs: C,
    bootstrap_kubeconfig: PathBuf,
    kubeconfig: PathBuf,
}

/// One certificate's manager.
pub struct Manager<C> {
    kind: Kind,
    template: Template,
    store: Store,
    rotate: bool,
    csrs: C,
    /// The kubeconfig whose client certificate is used while the store has none.
    kubeconfig: Option<PathBuf>,
    bootstrap: Option<Bootstrap<C>>,
    timings: CertTimings,
    clock: Clock,
    metrics: Option<Arc<Metrics>>,
    on_update: Box<dyn Fn(&Pair) + Send + Sync>,
    jitter: Option<(Lifetime, f64)>,
    warned_at: Option<(Lifetime, Timestamp)>,
}

/// The serving certificate's names: the node's host names and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingNames {
    /// DNS names.
    pub hostnames: Vec<String>,
    /// IP addresses.
    pub ips: Vec<std::net::IpAddr>,
}

impl<C: Csrs> Manager<C> {
    fn new(kind: Kind, template: Template, cert_dir: &std::path::Path, csrs: C) -> Manager<C> {
        Manager {
            kind,
            template,
            store: Store::new(cert_dir, kind),
            rotate: true,
            csrs,
            kubeconfig: None,
            bootstrap: None,
            timings: CertTimings::default(),
            clock: Clock::System,
            metrics: None,
            on_update: Box::new(|_| {}),
            jitter: None,
            warned_at: None,
        }
    }

    /// The client certificate of `node`, kept in `cert_dir`, renewed when `rotate`; until the
    /// store has one, the one `kubeconfig` names is the one in use.
    pub fn client(
        node: &str,
        cert_dir: &std::path::Path,
        kubeconfig: PathBuf,
        rotate: bool,
        csrs: C,
    ) -> Manager<C> {
        Manager {
            rotate,
            kubeconfig: Some(kubeconfig),
            ..Manager::new(Kind::Client, Template::client(node), cert_dir, csrs)
        }
    }

    /// The serving certificate of `node` for `names`, kept in `cert_dir` and always renewed;
    /// `None` when the node has no IP address to request it for.
    pub fn serving(
        node: &str,
        names: &ServingNames,
        cert_dir: &std::path::Path,
        csrs: C,
    ) -> Option<Manager<C>> {
        let template = Template::serving(node, &names.hostnames, &names.ips)?;
        Some(Manager::new(Kind::Serving, template, cert_dir, csrs))
    }

    /// Bootstraps the client certificate with `csrs` (the bootstrap kubeconfig's
    /// credentials) whenever `kubeconfig` cannot be used, then writes it.
    pub fn with_bootstrap(mut self, csrs: C, bootstrap_kubeconfig: PathBuf) -> Manager<C> {
        let kubeconfig = self.kubeconfig.clone().unwrap_or_default();
        self.bootstrap = Some(Bootstrap {
            csrs,
            bootstrap_kubeconfig,
            kubeconfig,
        });
        self
    }

    /// Other waits (tests shorten them).
    pub fn with_timings(mut self, timings: CertTimings) -> Manager<C> {
        self.timings = timings;
        self
    }

    /// Another clock (tests pause it).
    pub fn with_clock(mut self, clock: Clock) -> Manager<C> {
        self.clock = clock;
        self
    }

    /// Where expiry and failures are reported.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Manager<C> {
        self.metrics = Some(metrics);
        self
    }

    /// Called with every new pair, and at the start with a usable one already stored.
    pub fn on_update(mut self, f: impl Fn(&Pair) + Send + Sync + 'static) -> Manager<C> {
        self.on_update = Box::new(f);
        self
    }

    /// Runs forever.
    pub async fn run(mut self) {
        let mut backoff = Delays::new(self.timings.retry);
        if let Some((pair, false)) = self.held()
            && self.kind == Kind::Serving
            && self.template.satisfied_by(&pair.facts)
            && !pair.facts.lifetime.expired(self.clock.now())
        {
            (self.on_update)(&pair);
        }
        loop {
            if let Some(why) = self.needs_bootstrap() {
                info!(reason = %why, "requesting a client certificate with the bootstrap kubeconfig");
                match self.bootstrap_once().await {
                    Ok(pair) => {
                        backoff.reset();
                        info!(expires = %pair.facts.lifetime.not_after, "client certificate issued; kubeconfig written");
                        (self.on_update)(&pair);
                    }
                    Err(e) => {
                        self.failed(&e);
                        sleep(backoff.next_drawn()).await;
                    }
                }
                continue;
            }
            let held = self.held();
            let lifetime = held.as_ref().map(|(p, _)| p.facts.lifetime);
            self.report_expiry(lifetime);
            let now = self.clock.now();
            let state = Held {
                lifetime,
                satisfies: held
                    .as_ref()
                    .is_some_and(|(p, embedded)| !embedded && self.template.satisfied_by(&p.facts)),
                jitter: self.jitter_for(lifetime),
            };
            let warned = self
                .warned_at
                .filter(|(l, _)| Some(*l) == lifetime)
                .map(|(_, at)| at);
            match rotation::next(&state, self.rotate, warned, now) {
                Next::Renew => match self.renew().await {
                    Ok(pair) => {
                        backoff.reset();
                        info!(certificate = self.kind.metric_name(), expires = %pair.facts.lifetime.not_after, "certificate renewed");
                        (self.on_update)(&pair);
                    }
                    Err(e) => {
                        self.failed(&e);
                        sleep(backoff.next_drawn()).await;
                    }
                },
                Next::Wait { until } => {
                    tokio::time::sleep_until(self.clock.instant_at(until)).await;
                    if let Some(l) = lifetime {
                        self.warn_if_due(l, warned);
                    }
                }
                Next::Idle => std::future::pending::<()>().await,
            }
        }
    }

    /// Why the kubeconfig must be bootstrapped, if it must.
    fn needs_bootstrap(&self) -> Option<String> {
        let b = self.bootstrap.as_ref()?;
        kubeconfig::usable(&b.kubeconfig, self.clock.now()).err()
    }

    /// The pair in use and whether it is embedded in the kubeconfig.
    fn held(&self) -> Option<(Pair, bool)> {
        match self.store.current() {
            Ok(Some(pair)) => return Some((pair, false)),
            Ok(None) => {}
            Err(e) => warn!(error = %chain(&e), "stored certificate unusable"),
        }
        let path = self.kubeconfig.as_ref()?;
        match kubeconfig::client_identity(path) {
            Ok(id) => id.map(|id| (id.pair, id.embedded)),
            Err(e) => {
                warn!(error = %chain(&e), "cannot read the kubeconfig's client certificate");
                None
            }
        }
    }

    fn jitter_for(&mut self, lifetime: Option<Lifetime>) -> f64 {
        match (self.jitter, lifetime) {
            (Some((l, j)), Some(now)) if l == now => j,
            (_, Some(l)) => {
                let j = rand::random_range(0.0..=1.0);
                self.jitter = Some((l, j));
                j
            }
            (_, None) => 0.0,
        }
    }

    fn report_expiry(&self, lifetime: Option<Lifetime>) {
        if let Some(m) = &self.metrics {
            m.certificate_expiry(
                self.kind.metric_name(),
                lifetime.map(|l| l.not_after_unix()),
            );
        }
    }

    fn warn_if_due(&mut self, lifetime: Lifetime, warned: Option<Timestamp>) {
        let now = self.clock.now();
        if !rotation::warning_due(&lifetime, self.rotate, warned, now) {
            return;
        }
        self.warned_at = Some((lifetime, now));
        let ttl = lifetime.ttl_seconds(now);
        let kind = self.kind.metric_name();
        if self.rotate {
            warn!(certificate = kind, expires = %lifetime.not_after, ttl_seconds = ttl, "certificate expires soon and could not be renewed yet");
        } else {
            warn!(certificate = kind, expires = %lifetime.not_after, ttl_seconds = ttl, "certificate expires soon and rotateCertificates is off: renew it");
        }
    }

    fn failed(&self, e: &CertError) {
        if let Some(m) = &self.metrics {
            m.certificate_renew_error(self.kind.metric_name());
        }
        let kind = self.kind.metric_name();
        match e {
            CertError::NotApproved { name, waited } => warn!(
                certificate = kind,
                csr = %name,
                waited = ?waited,
                "certificate signing request not approved in time; filing a new one (is an approver running? kubectl certificate approve {name})"
            ),
            _ => {
                warn!(certificate = kind, error = %chain(e), "cannot renew the certificate; retrying")
            }
        }
    }

    async fn renew(&self) -> Result<Pair, CertError> {
        let key = csr::new_key().map_err(CertError::Generate)?;
        let request = self.request(&key, None)?;
        let cert = self
            .csrs
            .obtain(&request, self.timings.approval_timeout)
            .await?;
        self.store
            .update(&cert, &key.serialize_pem(), self.clock.now())
    }

    fn request(&self, key: &KeyPair, name: Option<String>) -> Result<Request, CertError> {
        Ok(Request {
            kind: self.kind,
            name,
            csr_pem: csr::request(&self.template, key).map_err(CertError::Generate)?,
            spki: key.subject_public_key_info(),
        })
    }

    /// kubelet `LoadClientCert`: a request named after its key (the stored pair's, else one
    /// kept across restarts), the pair stored, the kubeconfig written.
    async fn bootstrap_once(&self) -> Result<Pair, CertError> {
        let Some(b) = &self.bootstrap else {
            return Err(CertError::Kubeconfig {
                path: PathBuf::new(),
                message: "no bootstrap kubeconfig".into(),
            });
        };
        let tmp = self.store.current_path().with_file_name(BOOTSTRAP_KEY);
        let key = self.bootstrap_key(&tmp)?;
        let usages = csr::usages(self.kind);
        let name = csr::digested_name(&key, &self.template, &usages);
        let request = self.request(&key, Some(name))?;
        let cert = b
            .csrs
            .obtain(&request, self.timings.bootstrap_timeout)
            .await?;
        let pair = self
            .store
            .update(&cert, &key.serialize_pem(), self.clock.now())?;
        let _ = std::fs::remove_file(&tmp);
        kubeconfig::write_from_bootstrap(
            &b.bootstrap_kubeconfig,
            &b.kubeconfig,
            &self.store.current_path(),
        )?;
        Ok(pair)
    }

    fn bootstrap_key(&self, tmp: &std::path::Path) -> Result<KeyPair, CertError> {
        let stored = self.store.current().ok().flatten();
        let reused = stored
            .map(|p| p.key_pem)
            .or_else(|| std::fs::read_to_string(tmp).ok())
            .and_then(|pem| KeyPair::from_pem(&pem).ok());
        if let Some(key) = reused {
            return Ok(key);
        }
        let key = csr::new_key().map_err(CertError::Generate)?;
        write_atomic(tmp, key.serialize_pem().as_bytes())?;
        Ok(key)
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
