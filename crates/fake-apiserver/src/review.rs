//! The two review APIs a kubelet's delegated authentication and authorization call:
//! `tokenreviews` (authentication.k8s.io/v1) and `subjectaccessreviews` (authorization.k8s.io/v1).
//!
//! Neither stores anything: a review is a question answered in the response. The tokens the
//! fake knows, the authorization policy and the reviews received live in [`Reviews`], part of
//! the shared state; the HTTP edge locks it, and calls the policy with the lock released so a
//! test's policy may itself use the fake.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{
    TokenReview, TokenReviewSpec, TokenReviewStatus, UserInfo,
};
use k8s_openapi::api::authorization::v1::{
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use serde::Serialize;
use serde_json::Value;

use super::status::{ApiError, FieldError};
use super::strategy::decode;

/// The group every authenticated user gets (`user.AllAuthenticated`).
const ALL_AUTHENTICATED: &str = "system:authenticated";
/// The group the API server allows everything (`user.SystemPrivilegedGroup`).
const PRIVILEGED_GROUP: &str = "system:masters";
/// What the server's audiences are (`--api-audiences`, by default its service account
/// issuer, as kubeadm sets it): a review naming no audience is answered with these.
pub(super) const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// A SubjectAccessReview policy: whether the subject may, and why.
pub(super) type Policy = Arc<dyn Fn(&SubjectAccessReviewSpec) -> (bool, String) + Send + Sync>;

/// A review endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/apis/authentication.k8s.io/v1/tokenreviews`.
    TokenReviews,
    /// `/apis/authorization.k8s.io/v1/subjectaccessreviews`.
    SubjectAccessReviews,
}

impl Endpoint {
    /// The endpoint at this URL path, if it is one.
    pub(super) fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/apis/authentication.k8s.io/v1/tokenreviews" => Some(Endpoint::TokenReviews),
            "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
                Some(Endpoint::SubjectAccessReviews)
            }
            _ => None,
        }
    }
}

/// What the review endpoints know and have seen.
pub(super) struct Reviews {
    /// Registered bearer tokens and who they authenticate.
    pub(super) tokens: BTreeMap<String, UserInfo>,
    /// Decides SubjectAccessReviews.
    pub(super) policy: Policy,
    /// Every TokenReview answered, oldest first.
    pub(super) token_reviews: Vec<TokenReviewSpec>,
    /// Every SubjectAccessReview answered, oldest first.
    pub(super) access_reviews: Vec<SubjectAccessReviewSpec>,
}

impl Default for Reviews {
    fn default() -> Reviews {
        Reviews {
            tokens: BTreeMap::new(),
            policy: Arc::new(system_masters_policy),
            token_reviews: Vec::new(),
            access_reviews: Vec::new(),
        }
    }
}

impl fmt::Debug for Reviews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reviews")
            .field("tokens", &self.tokens.len())
            .field("token_reviews", &self.token_reviews.len())
            .field("access_reviews", &self.access_reviews.len())
            .finish_non_exhaustive()
    }
}

/// The fake's default SubjectAccessReview policy, as a cluster without RBAC bindings
/// answers: users in group `system:masters` may do anything (allowed, no reason, like the
/// API server's privileged-group authorizer); everyone else gets no opinion, which a
/// kubelet treats as a refusal.
///
/// A policy given to [`super::FakeApiServer::set_authorization_policy`] can fall back to it.
pub fn system_masters_policy(spec: &SubjectAccessReviewSpec) -> (bool, String) {
    let privileged = spec.groups.iter().flatten().any(|g| g == PRIVILEGED_GROUP);
    (privileged, String::new())
}

fn to_json(obj: &impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(obj).map_err(|e| ApiError::internal(&e.to_string()))
}

/// `user.Info` as the authenticator chain returns it: `system:authenticated` is added to the
/// groups (`group.AuthenticatedGroupAdder`) unless already there.
pub(super) fn user_info(username: &str, uid: &str, groups: &[&str]) -> UserInfo {
    let mut groups: Vec<String> = groups.iter().map(|&g| g.to_owned()).collect();
    if !groups.iter().any(|g| g == ALL_AUTHENTICATED) {
        groups.push(ALL_AUTHENTICATED.to_owned());
    }
    UserInfo {
        username: Some(username.to_owned()),
        uid: (!uid.is_empty()).then(|| uid.to_owned()),
        groups: Some(groups),
        extra: None,
    }
}

/// Answers a TokenReview (`tokenreview.REST.Create`): the review back with its status.
///
/// A registered token is authenticated as its user, for the audiences the review names (the
/// server's, [`API_AUDIENCE`], when it names none). Any other token is not, with the error
/// the bearer-token authenticator gives a token no authenticator accepts. As Go writes
/// the status, `authenticated` is left out when false and `user` is `{}` then.
pub(super) fn token_review(reviews: &mut Reviews, body: Value) -> Result<Value, ApiError> {
    let mut review: TokenReview = decode(body)?;
    let token = review.spec.token.as_deref().unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let status = match reviews.tokens.get(token) {
        Some(user) => {
            let audiences = match review.spec.audiences.as_deref() {
                Some(given) if !given.is_empty() => given.to_vec(),
                _ => vec![API_AUDIENCE.to_owned()],
            };
            TokenReviewStatus {
                authenticated: Some(true),
                user: Some(user.clone()),
                audiences: Some(audiences),
                error: None,
            }
        }
        None => TokenReviewStatus {
            authenticated: None,
            user: Some(UserInfo::default()),
            audiences: None,
            error: Some("invalid bearer token".to_owned()),
        },
    };
    review.status = Some(status);
    reviews.token_reviews.push(review.spec.clone());
    to_json(&review)
}

/// A SubjectAccessReview decoded, validated and recorded, waiting for the policy.
pub(super) struct PendingAccessReview {
    review: SubjectAccessReview,
    policy: Policy,
}

/// Takes a SubjectAccessReview in (`subjectaccessreview.REST.Create` up to the authorizer):
/// decoded, validated, and recorded among the reviews received.
pub(super) fn receive_access_review(
    reviews: &mut Reviews,
    body: Value,
) -> Result<PendingAccessReview, ApiError> {
    let review: SubjectAccessReview = decode(body)?;
    let spec = &review.spec;
    let no_user = spec.user.as_deref().unwrap_or_default().is_empty();
    let no_groups = spec.groups.as_deref().unwrap_or_default().is_empty();
    if no_user && no_groups {
        // The real message names an empty kind: it is taken from the decoded object, whose
        // type meta the decoder has cleared by then.
        return Err(ApiError::invalid_kind(
            ".authorization.k8s.io",
            "authorization.k8s.io",
            "",
            "",
            &[FieldError::Invalid {
                field: "spec.user".into(),
                value: String::new(),
                detail: "at least one of user or group must be specified".into(),
            }],
        ));
    }
    reviews.access_reviews.push(review.spec.clone());
    Ok(PendingAccessReview {
        review,
        policy: Arc::clone(&reviews.policy),
    })
}

impl PendingAccessReview {
    /// Asks the policy and answers the review with its status. A refusal is "no opinion"
    /// (`denied` left out), as RBAC refuses.
    pub(super) fn decide(mut self) -> Result<Value, ApiError> {
        let (allowed, reason) = (self.policy)(&self.review.spec);
        self.review.status = Some(SubjectAccessReviewStatus {
            allowed,
            denied: None,
            reason: (!reason.is_empty()).then_some(reason),
            evaluation_error: None,
        });
        to_json(&self.review)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_urls_are_recognised_exactly() {
        assert_eq!(
            Endpoint::from_path("/apis/authentication.k8s.io/v1/tokenreviews"),
            Some(Endpoint::TokenReviews)
        );
        assert_eq!(
            Endpoint::from_path("/apis/authorization.k8s.io/v1/subjectaccessreviews"),
            Some(Endpoint::SubjectAccessReviews)
        );
        for path in [
            "/apis/authentication.k8s.io/v1/tokenreviews/x",
            "/apis/authorization.k8s.io/v1/namespaces/ns/localsubjectaccessreviews",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "/apis/authentication.k8s.io/v1beta1/tokenreviews",
        ] {
            assert_eq!(Endpoint::from_path(path), None, "{path}");
        }
    }

    #[test]
    fn authenticated_users_get_the_all_authenticated_group_once() {
        let groups = |given: &[&str]| user_info("u", "", given).groups.unwrap();
        assert_eq!(groups(&["a"]), ["a", "system:authenticated"]);
        assert_eq!(groups(&["system:authenticated"]), ["system:authenticated"]);
    }

    #[test]
    fn the_default_policy_allows_system_masters_only() {
        let spec = |groups: &[&str]| SubjectAccessReviewSpec {
            user: Some("u".into()),
            groups: Some(groups.iter().map(|&g| g.to_owned()).collect()),
            ..SubjectAccessReviewSpec::default()
        };
        assert_eq!(
            system_masters_policy(&spec(&["system:masters"])),
            (true, String::new())
        );
        assert_eq!(
            system_masters_policy(&spec(&["system:nodes"])),
            (false, String::new())
        );
    }
}
