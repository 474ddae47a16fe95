//! Who is asking and may they: the kubelet's authentication (verified client certificate,
//! then bearer token through TokenReview, then anonymous if allowed) and Webhook
//! authorization (a SubjectAccessReview per request), with the kubelet's caches. The
//! decisions are here; the reviews themselves are behind [`Reviewer`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use super::route::Attributes;

/// Group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The anonymous user.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The anonymous user's group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// Most entries a cache holds; beyond it, expired entries go, then everything (a flood of
/// distinct tokens must not grow memory).
const CACHE_ENTRIES: usize = 4096;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// User name (`kube-apiserver-kubelet-client`, `system:serviceaccount:ns:name`).
    pub user: String,
    /// User UID, when the authenticator gives one.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl Identity {
    /// A user from a client certificate: the common name, the organizations as groups.
    pub fn from_certificate(common_name: String, organizations: Vec<String>) -> Identity {
        let mut groups = organizations;
        groups.push(AUTHENTICATED.to_owned());
        Identity {
            user: common_name,
            uid: String::new(),
            groups,
        }
    }

    fn anonymous() -> Identity {
        Identity {
            user: ANONYMOUS_USER.to_owned(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED.to_owned()],
        }
    }
}

/// What a request presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A client certificate the TLS layer verified against the client CA.
    Certificate(Identity),
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// A client certificate that does not chain to the client CA (or is expired): the
    /// request is unauthenticated whatever else it carries, as the kubelet's x509
    /// authenticator decides.
    Rejected,
    /// Nothing.
    None,
}

/// An API server's answer to a SubjectAccessReview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why, in the authorizer's words.
    pub reason: String,
}

/// A review the API server could not answer.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// A boxed review future.
pub type Review<'a, T> = Pin<Box<dyn Future<Output = Result<T, ReviewError>> + Send + 'a>>;

/// Asks the API server (TokenReview, SubjectAccessReview).
pub trait Reviewer: Send + Sync {
    /// Who a bearer token belongs to; `None` when the API server does not accept it.
    fn token(&self, token: &str) -> Review<'_, Option<Identity>>;
    /// Whether `who` may do `what` to node `node`.
    fn access(&self, who: &Identity, what: &Attributes, node: &str) -> Review<'_, Decision>;
}

/// How requests are authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every authenticated request is allowed (`--authorization-mode AlwaysAllow`).
    AlwaysAllow,
    /// A SubjectAccessReview per request (`Webhook`, the default).
    Webhook,
}

/// Authentication and authorization settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// Requests without credentials are `system:anonymous` (otherwise 401).
    pub anonymous: bool,
    /// Bearer tokens go to TokenReview (otherwise they are ignored, as the kubelet does).
    pub token_webhook: bool,
    /// How long a token's review is reused.
    pub token_ttl: Duration,
    /// How requests are authorized.
    pub mode: Mode,
    /// How long an allow is reused.
    pub allowed_ttl: Duration,
    /// How long a deny is reused.
    pub denied_ttl: Duration,
}

impl Default for AuthSettings {
    /// The kubelet's defaults, but anonymous requests refused.
    fn default() -> AuthSettings {
        AuthSettings {
            anonymous: false,
            token_webhook: false,
            token_ttl: Duration::from_secs(120),
            mode: Mode::Webhook,
            allowed_ttl: Duration::from_secs(300),
            denied_ttl: Duration::from_secs(30),
        }
    }
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// No acceptable credentials: 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// Authenticated, not allowed: 403, with the kubelet's message.
    #[error("{0}")]
    Forbidden(String),
    /// A review failed: 500 (the kubelet's answer when its authorizer errs).
    #[error("{0}")]
    ReviewFailed(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::Unauthorized => http::StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => http::StatusCode::FORBIDDEN,
            Refusal::ReviewFailed(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A small expiring map.
struct Cache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + ttl));
    }
}

/// Authenticates and authorizes node API requests.
pub struct Auth {
    settings: AuthSettings,
    node: String,
    reviewer: Option<Arc<dyn Reviewer>>,
    tokens: Cache<String, Option<Identity>>,
    decisions: Cache<(Identity, Attributes), Decision>,
}

impl Auth {
    /// An authenticator for node `node`; `reviewer` is needed for the token webhook and for
    /// Webhook authorization (without it they refuse everything).
    pub fn new(settings: AuthSettings, node: &str, reviewer: Option<Arc<dyn Reviewer>>) -> Auth {
        Auth {
            settings,
            node: node.to_owned(),
            reviewer,
            tokens: Cache::new(),
            decisions: Cache::new(),
        }
    }

    /// Who presented `credential`, as the kubelet decides: a verified certificate, else a
    /// token the API server accepts, else anonymous when enabled.
    pub async fn authenticate(&self, credential: Credential) -> Result<Identity, Refusal> {
        match credential {
            Credential::Certificate(who) => Ok(who),
            Credential::Bearer(token) if self.settings.token_webhook => {
                let who = match self.tokens.get(&token) {
                    Some(cached) => cached,
                    None => {
                        let reviewer = self.reviewer.as_ref().ok_or(Refusal::Unauthorized)?;
                        let who = reviewer.token(&token).await.map_err(|e| {
                            tracing::warn!(error = %e, "node API: token review failed");
                            Refusal::Unauthorized
                        })?;
                        let who = who.map(|mut w| {
                            if !w.groups.iter().any(|g| g == AUTHENTICATED) {
                                w.groups.push(AUTHENTICATED.to_owned());
                            }
                            w
                        });
                        self.tokens.put(token, who.clone(), self.settings.token_ttl);
                        who
                    }
                };
                who.ok_or(Refusal::Unauthorized)
            }
            Credential::Rejected => Err(Refusal::Unauthorized),
            _ if self.settings.anonymous => Ok(Identity::anonymous()),
            _ => Err(Refusal::Unauthorized),
        }
    }

    /// Whether `who` may make a request needing any one of `checks`.
    pub async fn authorize(&self, who: &Identity, checks: &[Attributes]) -> Result<(), Refusal> {
        if self.settings.mode == Mode::AlwaysAllow {
            return Ok(());
        }
        let reviewer = self
            .reviewer
            .as_ref()
            .ok_or_else(|| Refusal::ReviewFailed("no API server to authorize with".into()))?;
        for what in checks {
            let key = (who.clone(), what.clone());
            let decision = match self.decisions.get(&key) {
                Some(d) => d,
                None => {
                    let d = reviewer.access(who, what, &self.node).await.map_err(|e| {
                        Refusal::ReviewFailed(format!(
                            "Authorization error (user={}, verb={}, resource=nodes, subresource={}): {e}",
                            who.user, what.verb, what.subresource
                        ))
                    })?;
                    let ttl = if d.allowed {
                        self.settings.allowed_ttl
                    } else {
                        self.settings.denied_ttl
                    };
                    self.decisions.put(key, d.clone(), ttl);
                    d
                }
            };
            if decision.allowed {
                return Ok(());
            }
        }
        let verb = checks.first().map(|a| a.verb.as_str()).unwrap_or("");
        let subresources: Vec<&str> = checks.iter().map(|a| a.subresource.as_str()).collect();
        Err(Refusal::Forbidden(format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{}])",
            who.user,
            subresources.join(" ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Accepts token "good" as user "alice"; allows alice `get stats` only.
    #[derive(Default)]
    struct Script {
        tokens: AtomicUsize,
        reviews: AtomicUsize,
    }

    impl Reviewer for Script {
        fn token(&self, token: &str) -> Review<'_, Option<Identity>> {
            self.tokens.fetch_add(1, Ordering::SeqCst);
            let who = (token == "good").then(|| Identity {
                user: "alice".into(),
                uid: "u1".into(),
                groups: vec!["devs".into()],
            });
            Box::pin(async move { Ok(who) })
        }
        fn access(&self, who: &Identity, what: &Attributes, node: &str) -> Review<'_, Decision> {
            self.reviews.fetch_add(1, Ordering::SeqCst);
            let allowed = who.user == "alice" && what.subresource == "stats" && node == "n1";
            Box::pin(async move {
                Ok(Decision {
                    allowed,
                    reason: String::new(),
                })
            })
        }
    }

    fn auth(settings: AuthSettings) -> (Auth, Arc<Script>) {
        let script = Arc::new(Script::default());
        (Auth::new(settings, "n1", Some(script.clone())), script)
    }

    fn check(verb: &str, sub: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            subresource: sub.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_credentials_is_unauthorized_unless_anonymous_is_enabled() {
        let (a, _) = auth(AuthSettings::default());
        assert_eq!(
            a.authenticate(Credential::None).await,
            Err(Refusal::Unauthorized)
        );
        let (a, _) = auth(AuthSettings {
            anonymous: true,
            ..AuthSettings::default()
        });
        assert_eq!(
            a.authenticate(Credential::None)
                .await
                .expect("anonymous")
                .user,
            ANONYMOUS_USER
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_reviewed_only_when_the_webhook_is_on_and_reviews_are_cached() {
        let (a, script) = auth(AuthSettings::default());
        assert_eq!(
            a.authenticate(Credential::Bearer("good".into())).await,
            Err(Refusal::Unauthorized)
        );
        assert_eq!(script.tokens.load(Ordering::SeqCst), 0);
        let (a, script) = auth(AuthSettings {
            token_webhook: true,
            ..AuthSettings::default()
        });
        let who = a
            .authenticate(Credential::Bearer("good".into()))
            .await
            .expect("good token");
        assert_eq!(who.user, "alice");
        assert!(who.groups.contains(&AUTHENTICATED.to_owned()));
        a.authenticate(Credential::Bearer("good".into()))
            .await
            .expect("cached");
        assert_eq!(
            script.tokens.load(Ordering::SeqCst),
            1,
            "second use is cached"
        );
        assert_eq!(
            a.authenticate(Credential::Bearer("bad".into())).await,
            Err(Refusal::Unauthorized)
        );
        tokio::time::advance(Duration::from_secs(121)).await;
        a.authenticate(Credential::Bearer("good".into()))
            .await
            .expect("reviewed again");
        assert_eq!(script.tokens.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn webhook_authorization_allows_on_any_check_and_denies_with_the_kubelets_message() {
        let (a, script) = auth(AuthSettings::default());
        let alice = Identity::from_certificate("alice".into(), vec![]);
        a.authorize(&alice, &[check("get", "stats")])
            .await
            .expect("allowed");
        a.authorize(&alice, &[check("get", "stats")])
            .await
            .expect("cached allow");
        assert_eq!(script.reviews.load(Ordering::SeqCst), 1);
        let denied = a
            .authorize(&alice, &[check("get", "pods"), check("get", "proxy")])
            .await;
        assert_eq!(
            denied,
            Err(Refusal::Forbidden(
                "Forbidden (user=alice, verb=get, resource=nodes, subresource(s)=[pods proxy])"
                    .into()
            ))
        );
        assert_eq!(denied.expect_err("denied").status(), 403);
        // denials are kept 30 s, allows 5 min
        tokio::time::advance(Duration::from_secs(31)).await;
        let _ = a.authorize(&alice, &[check("get", "pods")]).await;
        a.authorize(&alice, &[check("get", "stats")])
            .await
            .expect("still cached");
        assert_eq!(script.reviews.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn always_allow_asks_nobody() {
        let (a, script) = auth(AuthSettings {
            mode: Mode::AlwaysAllow,
            ..AuthSettings::default()
        });
        let bob = Identity::from_certificate("bob".into(), vec![]);
        a.authorize(&bob, &[check("create", "proxy")])
            .await
            .expect("allowed");
        assert_eq!(script.reviews.load(Ordering::SeqCst), 0);
    }
}
