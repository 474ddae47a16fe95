//! [`Reviewer`] through the API server: TokenReview and SubjectAccessReview with the node's
//! own kubeconfig, as the kubelet's delegating authenticator and authorizer ask them. The
//! client is made at the first review and again after a failure (the kubeconfig may be
//! written or rotated after podvisor starts).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::Mutex;

use super::auth::{Decision, Identity, Review, ReviewError, Reviewer};
use super::route::Attributes;
use crate::mirror;

/// How long one review may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Reviews through the API server named by a kubeconfig.
pub struct KubeReviewer {
    kubeconfig: PathBuf,
    identity: Option<PathBuf>,
    /// The client, and the pair it presents (where `identity` pointed when it was made).
    client: Mutex<Option<(kube::Client, Option<PathBuf>)>>,
}

impl KubeReviewer {
    /// A reviewer using `kubeconfig` (the node's own, as for mirror pods).
    pub fn new(kubeconfig: PathBuf) -> KubeReviewer {
        KubeReviewer {
            kubeconfig,
            identity: None,
            client: Mutex::new(None),
        }
    }

    /// Presents the certificate manager's current pair (a symlink) rather than the
    /// kubeconfig's user once it exists, and a new client once it points at a new pair.
    pub fn with_identity(mut self, identity: Option<PathBuf>) -> KubeReviewer {
        self.identity = identity;
        self
    }

    async fn client(&self) -> Result<kube::Client, ReviewError> {
        let mut slot = self.client.lock().await;
        let presenting = self
            .identity
            .as_deref()
            .and_then(|p| std::fs::read_link(p).ok());
        if let Some((c, made_with)) = slot.as_ref()
            && *made_with == presenting
        {
            return Ok(c.clone());
        }
        let identity = self.identity.as_deref();
        let c = mirror::connect_as(&self.kubeconfig, identity, REVIEW_TIMEOUT, None)
            .await
            .map_err(|e| ReviewError(e.reason()))?;
        *slot = Some((c.clone(), presenting));
        Ok(c)
    }

    async fn forget(&self) {
        *self.client.lock().await = None;
    }

    async fn create<K>(&self, object: K) -> Result<K, ReviewError>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client().await?);
        let result =
            mirror::call(REVIEW_TIMEOUT, api.create(&PostParams::default(), &object)).await;
        match result {
            Ok(k) => Ok(k),
            Err(e) => {
                if e.is_unreachable() {
                    self.forget().await;
                }
                Err(ReviewError(e.reason()))
            }
        }
    }
}

impl Reviewer for KubeReviewer {
    fn token(&self, token: &str) -> Review<'_, Option<Identity>> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        Box::pin(async move {
            let answer = self.create(review).await?;
            let Some(status) = answer.status else {
                return Ok(None);
            };
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let user = status.user.unwrap_or_default();
            Ok(Some(Identity {
                user: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
            }))
        })
    }

    fn access(&self, who: &Identity, what: &Attributes, node: &str) -> Review<'_, Decision> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                uid: (!who.uid.is_empty()).then(|| who.uid.clone()),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(what.verb.clone()),
                    group: Some(String::new()),
                    version: Some("v1".to_owned()),
                    resource: Some("nodes".to_owned()),
                    subresource: Some(what.subresource.clone()),
                    name: Some(node.to_owned()),
                    namespace: Some(String::new()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        Box::pin(async move {
            let answer = self.create(review).await?;
            let status = answer.status.unwrap_or_default();
            Ok(Decision {
                allowed: status.allowed && status.denied != Some(true),
                reason: status.reason.unwrap_or_default(),
            })
        })
    }
}
