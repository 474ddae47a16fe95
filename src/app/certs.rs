//! Wiring of the certificate managers: the client one (bootstrap, rotation) beside the
//! mirror task, which it tells about every new certificate, and the serving one beside the
//! node API, whose certificate it replaces. Both are tasks of their own that end at
//! shutdown; pods never wait for them.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::certs::{Kind, KubeCsrs, Manager, ServingNames, Store};
use crate::config::{Config, MirrorSettings};
use crate::metrics::Metrics;
use crate::mirror::{MirrorTimings, NodeInfo};
use crate::nodeapi;

/// What the mirror task needs from the client certificate manager.
#[derive(Debug, Default)]
pub struct ClientIdentity {
    /// The pair to present instead of the kubeconfig's user.
    pub identity: Option<PathBuf>,
    /// Bumped with every new client certificate.
    pub credentials: Option<watch::Receiver<u64>>,
}

/// Starts the certificate managers `settings` ask for on `tasks`, until `token`.
pub fn start(
    config: &Config,
    settings: &MirrorSettings,
    node_info: &NodeInfo,
    serving: Option<Arc<nodeapi::ServingCert>>,
    metrics: &Arc<Metrics>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    token: &CancellationToken,
) -> ClientIdentity {
    let certs = &settings.certs;
    let timeout = MirrorTimings::default().request_timeout;
    let node = config.node_name.as_str();
    let mut out = ClientIdentity::default();
    if certs.manages_client() {
        out.identity = Some(Store::new(&certs.cert_dir, Kind::Client).current_path());
    }
    let csrs = |kubeconfig: &PathBuf, identity: Option<PathBuf>| KubeCsrs {
        kubeconfig: kubeconfig.clone(),
        identity,
        timeout,
        metrics: Some(metrics.clone()),
    };
    if certs.manages_client() {
        let (tx, rx) = watch::channel(0u64);
        out.credentials = Some(rx);
        let rotation = csrs(&settings.kubeconfig, out.identity.clone());
        let mut manager = Manager::client(
            node,
            &certs.cert_dir,
            settings.kubeconfig.clone(),
            certs.rotate,
            rotation,
        )
        .with_metrics(metrics.clone())
        .on_update(move |_| tx.send_modify(|generation| *generation += 1));
        if let Some(bootstrap) = &certs.bootstrap_kubeconfig {
            manager = manager.with_bootstrap(csrs(bootstrap, None), bootstrap.clone());
        }
        info!(cert_dir = %certs.cert_dir.display(), rotate = certs.rotate, bootstrap = certs.bootstrap_kubeconfig.is_some(), "managing the client certificate");
        spawn(tasks, token, manager.run());
    }
    if let (true, Some(serving)) = (certs.server_tls_bootstrap, serving) {
        // the Node's Hostname address (its name) and InternalIPs, as the kubelet asks
        let names = ServingNames {
            hostnames: vec![node_info.hostname.clone()],
            ips: node_info
                .internal_ips
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect(),
        };
        let requester = csrs(&settings.kubeconfig, out.identity.clone());
        match Manager::serving(node, &names, &certs.cert_dir, requester) {
            Some(manager) => {
                let manager = manager.with_metrics(metrics.clone()).on_update(move |pair| {
                    info!(expires = %pair.facts.lifetime.not_after, "node API serving the issued certificate");
                    serving.set(pair.certified.clone());
                });
                spawn(tasks, token, manager.run());
            }
            None => warn!(
                "serverTLSBootstrap: the node has no IP address to request a serving certificate for"
            ),
        }
    }
    out
}

fn spawn(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    token: &CancellationToken,
    run: impl Future<Output = ()> + Send + 'static,
) {
    let token = token.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = token.cancelled() => {}
            () = run => {}
        }
        Ok(())
    });
}
