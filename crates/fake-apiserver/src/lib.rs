//! An in-process fake of the Kubernetes API server, for testing the mirror-pod code with the
//! real kube-rs client over real HTTP.
//!
//! It serves the endpoints a kubelet uses for its node, node lease, mirror pods and events,
//! and answers in the API server's JSON: objects in their k8s-openapi form with server
//! metadata (`uid`, `resourceVersion`, `creationTimestamp`, `generation`), lists as
//! `{Kind}List`, and failures as `metav1.Status` bodies worded like apimachinery's. It applies
//! the admission a kubelet meets (NodeRestriction, the ServiceAccount rule for mirror pods,
//! Priority, DefaultTolerationSeconds), pod defaults and a subset of validation. Every
//! collection it serves can be watched (`?watch=true`), from a history of the store's writes,
//! as the API server's watch cache serves it (see "Watch" on [`FakeApiServer`]). Tests steer
//! outages with [`FakeApiServer::stop`], [`FakeApiServer::restart`], [`Mode`] and
//! [`FakeApiServer::inject_error`], and read the stored objects and the request log back,
//! counted by verb with [`FakeApiServer::request_count`].
//!
//! It also answers the TokenReviews and SubjectAccessReviews a kubelet's node API sends to
//! delegate its authentication and authorization (see "Reviews" on [`FakeApiServer`]).
//!
//! CertificateSigningRequests (certificates.k8s.io/v1, cluster-scoped) are stored, listed and
//! watched like the rest; what a cluster's approver and signer controllers do, the test does:
//! by hand ([`FakeApiServer::approve_csr`], [`FakeApiServer::issue_csr`],
//! [`FakeApiServer::deny_csr`]) or for every request as it is created
//! ([`FakeApiServer::set_csr_signer`], e.g. with [`TestCa::signer`]). The request is not
//! checked against its signer's rules.
//!
//! Not served: discovery, authorization of its own clients beyond NodeRestriction, the
//! garbage collector, and the other resources. Known differences from the real server are
//! listed on [`FakeApiServer`]. It is podvisor's dev-dependency only (`tests/mirror`,
//! `tests/it`): the shipped daemon never contains it. It names request verbs with
//! [`podvisor::mirror::verb`], so its request counts and podvisor's request metrics cannot
//! disagree.

mod admission;
mod csr;
mod handler;
mod history;
mod meta;
mod patch;
mod resource;
mod review;
mod selector;
mod shared;
mod status;
mod store;
mod strategy;
mod watch;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8s_openapi::api::authentication::v1::TokenReviewSpec;
use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use self::csr::{CsrSigner, TestCa};
use self::resource::Resource;
pub use self::review::system_masters_policy;
use self::shared::{Injection, Shared, State};
use self::status::ApiError;
use self::store::{Caller, DeleteOptions};

/// How the server answers requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Serve requests.
    #[default]
    Normal,
    /// Accept connections and read requests, but never answer.
    Hang,
    /// Answer every request with this status and its `Status` body (500 is `InternalError`).
    /// kube-rs retries 429, 503 and 504 by itself with backoff, so those make client calls
    /// slow rather than failing at once.
    Fail(StatusCode),
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: Method,
    /// URL path, e.g. `/api/v1/namespaces/kube-system/pods/etcd-n1/status`.
    pub path: String,
    /// Raw query string without `?`, empty when there was none.
    pub query: String,
    /// `Content-Type` header, e.g. `application/strategic-merge-patch+json`.
    pub content_type: Option<String>,
    /// Status answered; `None` while unanswered (always, under [`Mode::Hang`]).
    pub status: Option<StatusCode>,
}

impl RequestRecord {
    /// The Kubernetes verb, as the API server names it for authorization and audit: `get`,
    /// `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection` for a
    /// resource URL (served or not), the lowercased method otherwise (`/version` is `get`).
    pub fn verb(&self) -> &'static str {
        podvisor::mirror::verb(&self.method, &self.path, &self.query)
    }
}

struct Serving {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// A fake API server listening on `127.0.0.1` over plain HTTP.
///
/// # Watch
/// `GET` of a collection with `watch` set to anything but `0` or `false` (kube-rs sends
/// `?watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=N`), for pods,
/// nodes, leases and both event APIs, cluster-wide or in a namespace, answers `200` with
/// `Content-Type: application/json` and a chunked stream of newline-delimited watch events
/// (`{"type":"ADDED","object":{...}}`), objects as stored at that event:
/// * `resourceVersion` absent or `0`: `ADDED` for every matching object, then every later
///   change; `N`: the changes after revision `N`, in order. Every create, update, patch,
///   delete and graceful-deletion mark is one change. A pod deleted gracefully is `MODIFIED`
///   (with its `deletionTimestamp`), then `DELETED` when its node deletes it.
/// * `fieldSelector` and `labelSelector` as for lists; an object that stops matching is
///   `DELETED`, one that starts matching is `ADDED`.
/// * The last 1000 changes are kept ([`FakeApiServer::set_watch_history_limit`],
///   [`FakeApiServer::compact_watch_history`]; [`FakeApiServer::restart`] starts over). An
///   older `N` gets a single `ERROR` event with a `410 Expired` `Status`
///   (`too old resource version: N (M)`) after the `200`; an `N` the store has not reached
///   is waited for 3 s, then gets an `ERROR` with `504 Timeout`.
/// * `timeoutSeconds` ends the stream cleanly (absent or 0: 30 to 60 minutes, at random).
///   `allowWatchBookmarks` brings a `BOOKMARK` with the current revision every minute
///   ([`FakeApiServer::set_bookmark_interval`]) and 2 s before the timeout.
/// * [`FakeApiServer::stop`] and `restart` cut live streams (the client sees them end);
///   [`Mode`] and [`FakeApiServer::inject_error`] apply to a watch request as to any other,
///   and under [`Mode::Hang`] a live stream goes silent, under [`Mode::Fail`] it ends.
///
/// # Reviews
/// `POST /apis/authentication.k8s.io/v1/tokenreviews` and
/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` answer `201` with the review
/// and its `status`, as the API server answers a kubelet's webhook authenticator and
/// authorizer. Nothing is stored; other methods are `405`.
/// * TokenReview: a token given to [`FakeApiServer::register_token`] is
///   `{"authenticated":true,"user":{..},"audiences":[..]}`, the groups with
///   `system:authenticated` added and the audiences those of the review (or, when it names
///   none, the server's, `https://kubernetes.default.svc.cluster.local`). Any other token is
///   `{"user":{},"error":"invalid bearer token"}`: like Go, the fake leaves `authenticated`
///   out when false. An empty `spec.token` is a `400`.
/// * SubjectAccessReview: the policy of [`FakeApiServer::set_authorization_policy`]
///   (by default [`system_masters_policy`]) decides `allowed` and `reason` (left out when
///   empty); a refusal is "no opinion", `denied` left out, as RBAC refuses. A review without
///   `spec.user` or `spec.groups` is a `422`.
/// * Both are recorded ([`FakeApiServer::token_reviews`],
///   [`FakeApiServer::subject_access_reviews`]) and counted when answered with a status, so
///   a test can see what a cache saved. [`Mode`], [`FakeApiServer::inject_error`] and
///   [`FakeApiServer::require_token`] apply to them as to any request; NodeRestriction does
///   not, so any client, a node included, may create them (the real server lets nodes
///   through its Node authorizer, other callers with `system:auth-delegator`).
///
/// # Differences
/// Known differences from a real kube-apiserver:
/// * no discovery, no `dryRun` (a 400 rather than a real write), no `managedFields`, no
///   server-side apply conflicts: an apply patch is a strategic merge of the applied object
///   into the stored one;
/// * watch: one history for all resources (the real watch cache keeps a window per
///   resource, sized by time), so heavy writes to one resource expire the others' versions
///   too; no `sendInitialEvents`/`resourceVersionMatch` (a 400), no legacy `/watch/` paths
///   (a 404), JSON only (no protobuf, no `application/json;stream=watch` negotiation);
///   bookmarks carry only `kind`, `apiVersion` and `metadata.resourceVersion`; a live
///   stream that falls behind the history window gets `410 Expired` and ends (the real
///   cache would close it without an event);
/// * strategic merge knows the merge keys of Pod, Node and ObjectMeta lists only (e.g.
///   `conditions` by `type`, `containers` by `name`); other lists are replaced;
/// * every HTTP client is one identity: with NodeRestriction on (the default) it is the node
///   set by [`FakeApiServer::set_node_identity`] or, unset, the node a pod names in
///   `spec.nodeName` (then node and lease writes are not restricted);
/// * validation covers names, containers, restart policy, events.k8s.io required fields and
///   pod spec immutability only; QoS compares quantities as strings;
/// * core v1 and events.k8s.io/v1 events are stored apart (the real server shares them);
/// * the ServiceAccount plugin only enforces its mirror-pod rule; other pods get no
///   service account or token volume;
/// * reviews: a registered token is good for every audience; the tokens the fake itself
///   accepts ([`FakeApiServer::require_token`]) are not the ones its TokenReviews know; a
///   SubjectAccessReview is not checked for exactly one of `resourceAttributes` and
///   `nonResourceAttributes`, and never has an `evaluationError`;
/// * a DELETE that loses a race is impossible here, so the storage-level precondition
///   message (`Precondition failed: UID in precondition: ..`) only appears for PUT and PATCH
///   bodies that carry a different `metadata.uid`.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    serving: Option<Serving>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .field("serving", &self.serving.is_some())
            .finish_non_exhaustive()
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let cancel = cancel.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handler::handle(Arc::clone(&shared), req)
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection closes the socket: stop() cuts live clients off.
                    tokio::select! {
                        _ = connection => {}
                        () = cancel.cancelled() => {}
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

fn to_status(err: ApiError) -> Box<kube::core::Status> {
    let value = serde_json::to_value(err.body()).unwrap_or_default();
    Box::new(serde_json::from_value(value).unwrap_or_default())
}

fn to_value(obj: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(obj).unwrap_or_default()
}

impl FakeApiServer {
    /// Starts serving on a free port of `127.0.0.1`, with NodeRestriction on.
    ///
    /// # Panics
    /// Outside a Tokio runtime, or when no local port can be bound.
    pub async fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake apiserver: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("fake apiserver: local address");
        let state = State {
            node_restriction: true,
            ..State::default()
        };
        let mut server = FakeApiServer {
            shared: Arc::new(Shared::new(state)),
            addr,
            serving: None,
        };
        server.serve_on(listener);
        server
    }

    fn serve_on(&mut self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Arc::clone(&self.shared), cancel.clone()));
        self.serving = Some(Serving { cancel, task });
    }

    /// The base URL, `http://127.0.0.1:<port>`; the same after [`FakeApiServer::restart`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server with a bearer-token user, as a kubelet would be given.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\ncurrent-context: fake\n",
            url = self.url()
        )
    }

    /// A kube-rs client configured from [`FakeApiServer::kubeconfig_yaml`] the way production
    /// code loads a kubeconfig (so with kube's default retry of 429/503/504).
    ///
    /// # Panics
    /// When kube rejects the generated kubeconfig, which would be a bug here.
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig_yaml("fake-token"))
            .expect("fake apiserver: kubeconfig parses");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("fake apiserver: kubeconfig loads");
        kube::Client::try_from(config).expect("fake apiserver: client builds")
    }

    /// Stops listening and drops every open connection: new connections are refused and
    /// requests in flight fail. Stored objects are kept.
    pub async fn stop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.cancel.cancel();
            // A panicked server task has nothing left to clean up.
            let _ = serving.task.await;
        }
    }

    /// Serves again on the same port with the same objects (stopping first if serving).
    /// The watch history starts over at the current revision, as a restarted API server's
    /// watch cache does: a watch resuming from an older resourceVersion gets `410 Expired`.
    ///
    /// # Panics
    /// When the port was taken by someone else in the meantime.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.compact_watch_history();
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("fake apiserver: rebind the same port");
        self.serve_on(listener);
    }

    /// Sets how requests are answered from now on. Requests already hanging stay hung; live
    /// watch streams go silent under [`Mode::Hang`] (resuming under [`Mode::Normal`]) and end
    /// under [`Mode::Fail`].
    pub fn set_mode(&self, mode: Mode) {
        self.shared.lock().mode = mode;
    }

    /// Drops the whole watch history, as an etcd compaction at the current revision would: a
    /// watch from an older resourceVersion, new or live and behind, gets `410 Expired`.
    pub fn compact_watch_history(&self) {
        let mut state = self.shared.lock();
        let revision = state.store.current();
        state.store.history_mut().compact(revision);
    }

    /// Keeps only the last `events` writes for watches to resume from (1000 by default),
    /// dropping older ones at once.
    pub fn set_watch_history_limit(&self, events: usize) {
        self.shared.lock().store.history_mut().set_limit(events);
    }

    /// Sends watches that allow bookmarks one every `interval` (the API server's minute by
    /// default), besides the one 2 s before their timeout. Applies to watches started later.
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.shared.lock().bookmark_interval = Some(interval);
    }

    /// Turns the NodeRestriction admission plugin on (the default) or off.
    pub fn set_node_restriction(&self, on: bool) {
        self.shared.lock().node_restriction = on;
    }

    /// Makes every client the given node for NodeRestriction; `None` (the default) takes the
    /// node from each pod's `spec.nodeName`.
    pub fn set_node_identity(&self, node: Option<&str>) {
        self.shared.lock().node_identity = node.map(str::to_owned);
    }

    /// Requires `Authorization: Bearer <token>` (401 `Unauthorized` otherwise); `None`, the
    /// default, accepts any request.
    pub fn require_token(&self, token: Option<&str>) {
        self.shared.lock().token = token.map(str::to_owned);
    }

    /// Makes TokenReviews of `token` authenticate it as this user (see "Reviews" above);
    /// `uid` empty for none. Registering a token again replaces its user.
    pub fn register_token(&self, token: &str, username: &str, uid: &str, groups: &[&str]) {
        let user = review::user_info(username, uid, groups);
        self.shared
            .lock()
            .reviews
            .tokens
            .insert(token.to_owned(), user);
    }

    /// Forgets a registered token, as a deleted service account's token is no longer
    /// accepted: later TokenReviews of it are unauthenticated. Returns whether it was known.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.shared.lock().reviews.tokens.remove(token).is_some()
    }

    /// Every TokenReview answered with a status so far, oldest first: the token and the
    /// audiences asked about.
    pub fn token_reviews(&self) -> Vec<TokenReviewSpec> {
        self.shared.lock().reviews.token_reviews.clone()
    }

    /// How many TokenReviews were answered with a status so far.
    pub fn token_review_count(&self) -> usize {
        self.shared.lock().reviews.token_reviews.len()
    }

    /// Decides SubjectAccessReviews from now on: `policy` gets each review's spec (user,
    /// groups, uid, and the resource or non-resource attributes) and returns whether it is
    /// allowed and the reason to answer (empty for none). It replaces the default,
    /// [`system_masters_policy`], and may fall back to it. It runs without the fake's lock.
    ///
    /// ```no_run
    /// # async fn example() {
    /// use fake_apiserver::{FakeApiServer, system_masters_policy};
    ///
    /// let fake = FakeApiServer::start().await;
    /// fake.set_authorization_policy(|spec| {
    ///     let attrs = spec.resource_attributes.clone().unwrap_or_default();
    ///     match (spec.user.as_deref(), attrs.resource.as_deref(), attrs.subresource.as_deref()) {
    ///         (Some("prometheus"), Some("nodes"), Some("metrics")) => (true, "scraper".into()),
    ///         (Some("prometheus"), _, _) => (false, "metrics only".into()),
    ///         _ => system_masters_policy(spec),
    ///     }
    /// });
    /// # }
    /// ```
    pub fn set_authorization_policy(
        &self,
        policy: impl Fn(&SubjectAccessReviewSpec) -> (bool, String) + Send + Sync + 'static,
    ) {
        self.shared.lock().reviews.policy = Arc::new(policy);
    }

    /// Every SubjectAccessReview answered with a status so far, oldest first: what a node
    /// API asked to authorize.
    pub fn subject_access_reviews(&self) -> Vec<SubjectAccessReviewSpec> {
        self.shared.lock().reviews.access_reviews.clone()
    }

    /// How many SubjectAccessReviews were answered with a status so far.
    pub fn subject_access_review_count(&self) -> usize {
        self.shared.lock().reviews.access_reviews.len()
    }

    /// Fails the next `times` requests whose method matches and whose path starts with
    /// `path_prefix`, with `status` and its `Status` body. Earlier injections match first.
    pub fn inject_error(
        &self,
        method: Method,
        path_prefix: &str,
        status: StatusCode,
        times: usize,
    ) {
        self.shared.lock().injections.push(Injection {
            method,
            path_prefix: path_prefix.to_owned(),
            status,
            times,
        });
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.clone()
    }

    /// How many requests so far had this Kubernetes verb (see [`RequestRecord::verb`]), e.g.
    /// `request_count("watch")`; answered or not.
    pub fn request_count(&self, verb: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.verb() == verb)
            .count()
    }

    fn typed<K: DeserializeOwned>(&self, resource: Resource, ns: &str, name: &str) -> Option<K> {
        self.shared.lock().store.typed(resource, ns, name)
    }

    fn all<K: DeserializeOwned>(&self, resource: Resource) -> Vec<K> {
        self.shared.lock().store.all(resource)
    }

    fn upsert<K: Serialize + DeserializeOwned>(
        &self,
        resource: Resource,
        obj: &K,
    ) -> Result<K, Box<kube::core::Status>> {
        let stored = self
            .shared
            .lock()
            .store
            .upsert(resource, to_value(obj))
            .map_err(to_status)?;
        serde_json::from_value(stored).map_err(|e| to_status(ApiError::internal(&e.to_string())))
    }

    /// The stored pod, if any.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.typed(Resource::Pods, namespace, name)
    }

    /// All stored pods, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        self.all(Resource::Pods)
    }

    /// The stored node, if any.
    pub fn node(&self, name: &str) -> Option<Node> {
        self.typed(Resource::Nodes, "", name)
    }

    /// All stored nodes.
    pub fn nodes(&self) -> Vec<Node> {
        self.all(Resource::Nodes)
    }

    /// The stored lease, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        self.typed(Resource::Leases, namespace, name)
    }

    /// Core v1 events, as posted to `/api/v1/namespaces/{ns}/events`.
    pub fn events(&self) -> Vec<Event> {
        self.all(Resource::Events)
    }

    /// events.k8s.io/v1 events, as posted to `/apis/events.k8s.io/v1/...`.
    pub fn events_v1(&self) -> Vec<EventV1> {
        self.all(Resource::EventsV1)
    }

    /// Creates or replaces a pod as a cluster admin would with kubectl: NodeRestriction does
    /// not apply, the other admission rules and validation do; namespace `default` when unset.
    /// Its `status`, if any, is stored as given. Returns the stored pod.
    ///
    /// # Errors
    /// The `Status` the server would answer, e.g. 422 for an invalid pod or a spec change.
    pub fn set_pod(&self, pod: &Pod) -> Result<Pod, Box<kube::core::Status>> {
        self.upsert(Resource::Pods, pod)
    }

    /// Creates or replaces a node as a cluster admin would; see [`FakeApiServer::set_pod`].
    ///
    /// # Errors
    /// The `Status` the server would answer.
    pub fn set_node(&self, node: &Node) -> Result<Node, Box<kube::core::Status>> {
        self.upsert(Resource::Nodes, node)
    }

    /// Creates or replaces a lease as a cluster admin would; see [`FakeApiServer::set_pod`].
    ///
    /// # Errors
    /// The `Status` the server would answer.
    pub fn set_lease(&self, lease: &Lease) -> Result<Lease, Box<kube::core::Status>> {
        self.upsert(Resource::Leases, lease)
    }

    fn delete(&self, resource: Resource, ns: &str, name: &str, grace: Option<i64>) -> bool {
        let options = DeleteOptions {
            grace_period_seconds: grace,
            ..DeleteOptions::default()
        };
        self.shared
            .lock()
            .store
            .delete(resource, ns, name, &options, Caller::Admin)
            .is_ok()
    }

    /// Deletes a pod as `kubectl delete pod` does: a bound, running pod only gets a
    /// `deletionTimestamp` (its grace period from `terminationGracePeriodSeconds`) and stays
    /// until its node deletes it with grace 0. Returns whether the pod existed.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.delete(Resource::Pods, namespace, name, None)
    }

    /// Deletes a pod at once, as `kubectl delete --grace-period=0 --force` does. Returns
    /// whether the pod existed.
    pub fn force_delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.delete(Resource::Pods, namespace, name, Some(0))
    }

    /// Every CertificateSigningRequest, ordered by name.
    pub fn csrs(&self) -> Vec<CertificateSigningRequest> {
        self.all(Resource::Csrs)
    }

    /// Approves and signs every new CertificateSigningRequest as it is created, as a
    /// cluster's csrapproving and csrsigning controllers do for kubelet client requests:
    /// `signer` returns the certificate, or `None` to leave the request pending. `None` (the
    /// default) leaves every request to the test.
    pub fn set_csr_signer(
        &self,
        signer: Option<
            impl Fn(&CertificateSigningRequest) -> Option<String> + Send + Sync + 'static,
        >,
    ) {
        self.shared.lock().csr_signer = csr::Signer(signer.map(|s| Arc::new(s) as Arc<CsrSigner>));
    }

    /// Adds the `Approved` condition to a request, as `kubectl certificate approve`. Returns
    /// whether it exists.
    pub fn approve_csr(&self, name: &str) -> bool {
        csr::decide(
            &mut self.shared.lock().store,
            name,
            Some(csr::approved()),
            None,
        )
    }

    /// Adds the `Denied` condition, as `kubectl certificate deny`. Returns whether it exists.
    pub fn deny_csr(&self, name: &str, reason: &str, message: &str) -> bool {
        let denied = csr::denied(reason, message);
        csr::decide(&mut self.shared.lock().store, name, Some(denied), None)
    }

    /// Sets the issued certificate (PEM), as a signer does once a request is approved.
    /// Returns whether it exists.
    pub fn issue_csr(&self, name: &str, certificate_pem: &str) -> bool {
        csr::decide(
            &mut self.shared.lock().store,
            name,
            None,
            Some(certificate_pem),
        )
    }

    /// Deletes a node. Its mirror pods stay: the fake has no garbage collector.
    pub fn delete_node(&self, name: &str) -> bool {
        self.delete(Resource::Nodes, "", name, None)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(serving) = &self.serving {
            serving.cancel.cancel();
        }
    }
}
