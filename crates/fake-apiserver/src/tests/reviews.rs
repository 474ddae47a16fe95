//! The TokenReviews and SubjectAccessReviews a node API sends to delegate authentication and
//! authorization, as the kubelet's webhook authenticator and authorizer send them.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};

use super::*;
use crate::system_masters_policy;

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

fn token_review(token: &str, audiences: &[&str]) -> TokenReview {
    TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: (!audiences.is_empty())
                .then(|| audiences.iter().map(|&a| a.to_owned()).collect()),
        },
        ..TokenReview::default()
    }
}

async fn review_token(client: &Client, token: &str, audiences: &[&str]) -> TokenReview {
    Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &token_review(token, audiences))
        .await
        .unwrap()
}

/// What a kubelet asks for a request to `/{subresource}` of its node API.
fn node_access(user: &str, groups: &[&str], verb: &str, subresource: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups.iter().map(|&g| g.to_owned()).collect()),
            uid: Some(format!("uid-{user}")),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                resource: Some("nodes".into()),
                subresource: Some(subresource.into()),
                name: Some("n1".into()),
                version: Some("v1".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

async fn review_access(client: &Client, review: &SubjectAccessReview) -> (bool, Option<String>) {
    let answered = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), review)
        .await
        .unwrap();
    let status = answered.status.unwrap();
    assert_eq!(
        status.denied, None,
        "a refusal is no opinion, never a denial"
    );
    (status.allowed, status.reason)
}

#[tokio::test]
async fn a_registered_token_authenticates_as_its_user_with_groups_and_audiences() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    fake.register_token("t0k3n", "alice", "uid-alice", &["ops", "viewers"]);

    let answered = review_token(&client, "t0k3n", &["podvisor"]).await;
    assert_eq!(answered.spec.token.as_deref(), Some("t0k3n"));
    let status = answered.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.error, None);
    assert_eq!(status.audiences.unwrap(), ["podvisor"]);
    let user = status.user.unwrap();
    assert_eq!(user.username.as_deref(), Some("alice"));
    assert_eq!(user.uid.as_deref(), Some("uid-alice"));
    assert_eq!(
        user.groups.unwrap(),
        ["ops", "viewers", "system:authenticated"]
    );

    // A kubelet names no audience: the API server's own are answered.
    let status = review_token(&client, "t0k3n", &[]).await.status.unwrap();
    assert_eq!(
        status.audiences.unwrap(),
        ["https://kubernetes.default.svc.cluster.local"]
    );
}

#[tokio::test]
async fn an_unknown_or_revoked_token_is_unauthenticated_with_an_error() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    let body = serde_json::to_string(&token_review("nobody", &[])).unwrap();
    let answered = raw(
        &client,
        Method::POST,
        TOKEN_REVIEWS,
        "application/json",
        &body,
    )
    .await
    .unwrap();
    let answered: serde_json::Value = serde_json::from_str(&answered).unwrap();
    // Go's omitempty: `authenticated` is left out when false, `user` is an empty object.
    assert_eq!(
        answered["status"],
        json!({"user": {}, "error": "invalid bearer token"})
    );
    assert_eq!(answered["kind"], "TokenReview");
    assert_eq!(answered["apiVersion"], "authentication.k8s.io/v1");

    fake.register_token("t0k3n", "alice", "", &[]);
    let user = review_token(&client, "t0k3n", &[])
        .await
        .status
        .unwrap()
        .user;
    assert_eq!(user.unwrap().uid, None);
    assert!(fake.revoke_token("t0k3n"));
    assert!(!fake.revoke_token("t0k3n"));
    let status = review_token(&client, "t0k3n", &[]).await.status.unwrap();
    assert_eq!(status.authenticated, None);
    assert_eq!(status.error.as_deref(), Some("invalid bearer token"));
}

#[tokio::test]
async fn a_token_review_without_a_token_is_a_bad_request() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    let status = api_error(
        Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &token_review("", &[]))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "token is required for TokenReview in authentication"
    );
    let status = api_error(
        raw(
            &client,
            Method::POST,
            TOKEN_REVIEWS,
            "application/json",
            r#"{"kind": "SubjectAccessReview", "spec": {"token": "t"}}"#,
        )
        .await,
    );
    assert_eq!(
        status.message,
        "the kind in the data (SubjectAccessReview) does not match the expected kind (TokenReview)"
    );
    let status = api_error(raw(&client, Method::GET, TOKEN_REVIEWS, "application/json", "").await);
    assert_eq!(status.code, 405);
    assert_eq!(fake.token_review_count(), 0);
}

#[tokio::test]
async fn by_default_only_system_masters_are_authorized() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    let admin = node_access("admin", &["system:masters"], "get", "proxy");
    assert_eq!(review_access(&client, &admin).await, (true, None));
    let alice = node_access("alice", &["system:authenticated"], "get", "proxy");
    assert_eq!(review_access(&client, &alice).await, (false, None));
}

#[tokio::test]
async fn subject_access_reviews_are_answered_by_the_policy_and_recorded() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    fake.set_authorization_policy(|spec| {
        let attrs = spec.resource_attributes.clone().unwrap_or_default();
        let rule = (
            spec.user.as_deref().unwrap_or_default(),
            attrs.verb.as_deref().unwrap_or_default(),
            attrs.resource.as_deref().unwrap_or_default(),
            attrs.subresource.as_deref().unwrap_or_default(),
        );
        match rule {
            ("prometheus", "get", "nodes", "metrics") => (true, "scraper".into()),
            ("prometheus", ..) => (false, "prometheus may only read metrics".into()),
            _ => system_masters_policy(spec),
        }
    });

    let metrics = node_access("prometheus", &[], "get", "metrics");
    assert_eq!(
        review_access(&client, &metrics).await,
        (true, Some("scraper".into()))
    );
    let exec = node_access("prometheus", &[], "create", "proxy");
    assert_eq!(
        review_access(&client, &exec).await,
        (false, Some("prometheus may only read metrics".into()))
    );
    let admin = node_access("admin", &["system:masters"], "create", "proxy");
    assert_eq!(review_access(&client, &admin).await, (true, None));
    let healthz = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            groups: Some(vec!["system:masters".into()]),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/healthz".into()),
                verb: Some("get".into()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    assert_eq!(review_access(&client, &healthz).await, (true, None));

    let received = fake.subject_access_reviews();
    assert_eq!(
        received,
        [metrics.spec, exec.spec, admin.spec, healthz.spec],
        "every attribute the client sent is recorded, in order"
    );
}

#[tokio::test]
async fn a_subject_access_review_without_user_or_groups_is_invalid() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    let mut review = node_access("", &[], "get", "proxy");
    review.spec.groups = None;
    let status = api_error(
        Api::<SubjectAccessReview>::all(client)
            .create(&PostParams::default(), &review)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        ".authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified"
    );
    assert_eq!(fake.subject_access_review_count(), 0);
}

#[tokio::test]
async fn reviews_are_counted_when_answered_with_a_status() {
    let fake = FakeApiServer::start().await;
    let client = fake.kube_client().await;
    fake.register_token("t0k3n", "alice", "uid-alice", &[]);
    review_token(&client, "t0k3n", &[]).await;
    review_token(&client, "unknown", &[]).await;
    review_token(&client, "t0k3n", &[]).await;
    let access = node_access("alice", &[], "get", "pods");
    review_access(&client, &access).await;

    // An API server failing the review answers nothing: not counted. (Not 503: kube-rs
    // would retry it.)
    fake.inject_error(
        Method::POST,
        TOKEN_REVIEWS,
        StatusCode::INTERNAL_SERVER_ERROR,
        1,
    );
    fake.inject_error(Method::POST, ACCESS_REVIEWS, StatusCode::FORBIDDEN, 1);
    let body = serde_json::to_string(&token_review("t0k3n", &[])).unwrap();
    let failed = raw(
        &client,
        Method::POST,
        TOKEN_REVIEWS,
        "application/json",
        &body,
    )
    .await;
    assert_eq!(api_error(failed).code, 500);
    let failed = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &access)
        .await;
    assert_eq!(api_error(failed).code, 403);

    assert_eq!(fake.token_review_count(), 3);
    let tokens: Vec<_> = fake
        .token_reviews()
        .into_iter()
        .map(|spec| spec.token.unwrap())
        .collect();
    assert_eq!(tokens, ["t0k3n", "unknown", "t0k3n"]);
    assert_eq!(fake.subject_access_review_count(), 1);
    // The request log sees every attempt, as `create`s.
    assert_eq!(fake.request_count("create"), 6);
}

#[tokio::test]
async fn a_node_may_create_reviews_under_node_restriction_and_a_required_token() {
    let fake = FakeApiServer::start().await;
    fake.set_node_identity(Some("n1"));
    fake.require_token(Some("fake-token"));
    let client = fake.kube_client().await;
    fake.register_token("t0k3n", "alice", "uid-alice", &[]);
    let status = review_token(&client, "t0k3n", &[]).await.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    let admin = node_access("admin", &["system:masters"], "get", "proxy");
    assert_eq!(review_access(&client, &admin).await, (true, None));

    fake.require_token(Some("another"));
    let status = api_error(
        Api::<TokenReview>::all(client)
            .create(&PostParams::default(), &token_review("t0k3n", &[]))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
}
