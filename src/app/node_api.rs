//! Wiring of the node API: its certificate, listener and authenticator from the settings.

use std::sync::Arc;

use anyhow::Context;

use crate::api::ApiState;
use crate::config::{AuthorizationMode, Config, NodeApiSettings};
use crate::host::NodeContext;
use crate::nodeapi::{
    Auth, AuthSettings, ClientCa, KubeReviewer, Limits, Mode, NodeApi, NodeApiServer, Reviewer,
    self_signed, server_config,
};
use crate::runtime::CriRuntime;

/// Binds the node API's port with its TLS set-up: the given certificate, or a self-signed one
/// for the node name and address kept in `<root-dir>/pki`. Failing here stops podvisor before
/// it touches a pod, as a kubelet that cannot serve its port stops.
pub async fn bind(
    config: &Config,
    settings: &NodeApiSettings,
    ctx: &NodeContext,
) -> anyhow::Result<(NodeApiServer, ClientCa)> {
    let (cert, key) = match &settings.tls {
        Some(pair) => pair.clone(),
        None => self_signed(
            &config.root_dir.join("pki"),
            config.node_name.as_str(),
            &ctx.host_ip.into_iter().collect::<Vec<_>>(),
        )?,
    };
    let tls = server_config(&cert, &key, settings.client_ca.as_deref())?;
    let client_ca = ClientCa::load(settings.client_ca.as_deref())?;
    let server = NodeApiServer::bind(settings.listen, tls, Limits::default())
        .await
        .with_context(|| format!("node API: cannot listen on {}", settings.listen))?;
    Ok((server, client_ca))
}

/// The node API over the runtime and the published state.
pub fn assemble(
    config: &Config,
    settings: &NodeApiSettings,
    client_ca: ClientCa,
    runtime: Arc<CriRuntime>,
    state: Arc<ApiState>,
) -> NodeApi<CriRuntime> {
    let reviewer: Option<Arc<dyn Reviewer>> = config
        .mirror
        .as_ref()
        .map(|m| Arc::new(KubeReviewer::new(m.kubeconfig.clone())) as Arc<dyn Reviewer>);
    let auth = Auth::new(
        AuthSettings {
            anonymous: settings.anonymous,
            token_webhook: settings.token_webhook,
            token_ttl: settings.token_ttl,
            mode: match settings.mode {
                AuthorizationMode::Webhook => Mode::Webhook,
                AuthorizationMode::AlwaysAllow => Mode::AlwaysAllow,
            },
            allowed_ttl: settings.allowed_ttl,
            denied_ttl: settings.denied_ttl,
        },
        config.node_name.as_str(),
        reviewer,
    );
    NodeApi::new(
        runtime,
        state,
        auth,
        client_ca,
        config.node_name.as_str().to_owned(),
        Limits::default().streams,
    )
}
