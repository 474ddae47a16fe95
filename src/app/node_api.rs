//! Wiring of the node API: its certificate, listener and authenticator from the settings.

use std::sync::Arc;

use anyhow::Context;

use crate::api::ApiState;
use crate::certs::{Kind, Store};
use crate::config::{Config, NodeApiSettings};
use crate::host::NodeContext;
use crate::nodeapi::{
    Auth, ClientCa, KubeReviewer, Limits, NodeApi, NodeApiServer, Reviewer, ServingCert,
    self_signed, serving_config,
};
use crate::runtime::CriRuntime;

/// Binds the node API's port with its TLS set-up: the given certificate, or a self-signed one
/// for the node name and address kept in `<root-dir>/pki`. Failing here stops podvisor before
/// it touches a pod, as a kubelet that cannot serve its port stops. The certificate can be
/// replaced while serving (`serverTLSBootstrap`).
pub async fn bind(
    config: &Config,
    settings: &NodeApiSettings,
    ctx: &NodeContext,
) -> anyhow::Result<(NodeApiServer, ClientCa, Arc<ServingCert>)> {
    let (cert, key) = match &settings.tls {
        Some(pair) => pair.clone(),
        None => self_signed(
            &config.root_dir.join("pki"),
            config.node_name.as_str(),
            &ctx.host_ip.into_iter().collect::<Vec<_>>(),
        )?,
    };
    let client_ca = ClientCa::load(settings.client_ca.as_deref())?;
    let serving = ServingCert::load(&cert, &key)?;
    let tls = serving_config(serving.clone(), &client_ca)?;
    let server = NodeApiServer::bind(settings.listen, tls, Limits::default())
        .await
        .with_context(|| format!("node API: cannot listen on {}", settings.listen))?;
    Ok((server, client_ca, serving))
}

/// The node API over the runtime and the published state.
pub fn assemble(
    config: &Config,
    settings: &NodeApiSettings,
    client_ca: ClientCa,
    runtime: Arc<CriRuntime>,
    state: Arc<ApiState>,
) -> NodeApi<CriRuntime> {
    let reviewer: Option<Arc<dyn Reviewer>> = config.mirror.as_ref().map(|m| {
        // The pair the certificate manager keeps, when it manages one.
        let identity = m
            .certs
            .manages_client()
            .then(|| Store::new(&m.certs.cert_dir, Kind::Client).current_path());
        Arc::new(KubeReviewer::new(m.kubeconfig.clone()).with_identity(identity))
            as Arc<dyn Reviewer>
    });
    let auth = Auth::new(settings.auth.clone(), config.node_name.as_str(), reviewer);
    NodeApi::new(
        runtime,
        state,
        auth,
        client_ca,
        config.node_name.as_str().to_owned(),
        Limits::default().streams,
    )
}
