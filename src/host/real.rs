//! [`Host`] on the real filesystem. Every step is blocking IO (directories, files, mounts),
//! so it runs on tokio's blocking threads, never on the async ones.

use std::sync::Arc;

use super::{
    Host, HostError, NodeContext, Ready, TerminationSource, cleanup, log_links, podfiles, prepare,
    volumes,
};
use crate::pod::environment::Addresses;
use crate::pod::{PodKey, PodUid, StaticPod};

/// The node's own host side.
#[derive(Clone, Debug)]
pub struct RealHost {
    ctx: Arc<NodeContext>,
}

impl RealHost {
    /// The host side of the node `ctx` describes.
    pub fn new(ctx: Arc<NodeContext>) -> RealHost {
        RealHost { ctx }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&NodeContext) -> Result<T, HostError> + Send + 'static,
    ) -> Result<T, HostError> {
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || work(&ctx))
            .await
            .unwrap_or_else(|e| Err(HostError::new(what, &ctx_root(&self.ctx), e)))
    }
}

fn ctx_root(ctx: &NodeContext) -> std::path::PathBuf {
    ctx.root_dir.clone()
}

impl Host for RealHost {
    async fn prepare_pod(&self, pod: Arc<StaticPod>) -> Result<Ready, HostError> {
        self.blocking("preparing pod", move |ctx| prepare::pod(&pod, ctx))
            .await
    }

    async fn check_pod(&self, pod: Arc<StaticPod>) -> Result<(), HostError> {
        self.blocking("checking pod", move |_| volumes::check_host_paths(&pod))
            .await
    }

    async fn prepare_container(
        &self,
        pod: Arc<StaticPod>,
        name: String,
        attempt: u32,
        addrs: Addresses,
    ) -> Result<Ready, HostError> {
        self.blocking("preparing container", move |ctx| {
            prepare::container(&pod, &name, attempt, &addrs, ctx)
        })
        .await
    }

    async fn link_container_log(
        &self,
        pod: Arc<StaticPod>,
        name: String,
        attempt: u32,
        id: String,
    ) -> Result<(), HostError> {
        self.blocking("linking container log", move |ctx| {
            log_links::link(ctx, &pod, &name, attempt, &id)
        })
        .await
    }

    async fn unlink_container_log(&self, id: String) {
        let ctx = self.ctx.clone();
        let _ = tokio::task::spawn_blocking(move || log_links::unlink_container(&ctx, &id)).await;
    }

    async fn termination_message(&self, source: TerminationSource, exit_code: i32) -> String {
        tokio::task::spawn_blocking(move || podfiles::termination_message(&source, exit_code))
            .await
            .unwrap_or_default()
    }

    async fn cleanup_pod(&self, key: PodKey, uid: PodUid) -> Result<(), HostError> {
        self.blocking("cleaning up pod", move |ctx| cleanup::pod(&key, &uid, ctx))
            .await
    }
}
