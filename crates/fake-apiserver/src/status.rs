//! `metav1.Status` bodies, built the way apimachinery's `api/errors` package builds them.
//!
//! Every failure the fake answers with goes through [`ApiError`], so the JSON a client sees
//! (field names, `reason` strings, message wording, `details`) matches the real API server's.

use http::StatusCode;
use serde::Serialize;

use super::resource::Resource;

/// A failed request: the HTTP status plus the `Status` object written as its body.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ApiError {
    body: Box<StatusBody>,
}

/// The wire form of `metav1.Status`, fields in the order the API server writes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusBody {
    kind: &'static str,
    api_version: &'static str,
    metadata: EmptyObject,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
struct EmptyObject {}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
    #[serde(skip_serializing_if = "is_zero")]
    retry_after_seconds: u16,
}

/// `metav1.StatusCause`: its `Type` is written as `reason`.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

/// One `field.Error` of a validation failure (`k8s.io/apimachinery/pkg/util/validation/field`).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum FieldError {
    /// `Required value[: detail]`.
    Required { field: String, detail: String },
    /// `Invalid value: "v": detail`.
    Invalid {
        field: String,
        value: String,
        detail: String,
    },
    /// `Duplicate value: "v"`.
    Duplicate { field: String, value: String },
    /// `Forbidden: detail`.
    Forbidden { field: String, detail: String },
    /// `Unsupported value: "v": supported values: "a", "b"`.
    NotSupported {
        field: String,
        value: String,
        supported: &'static [&'static str],
    },
}

impl FieldError {
    fn field(&self) -> &str {
        match self {
            FieldError::Required { field, .. }
            | FieldError::Invalid { field, .. }
            | FieldError::Duplicate { field, .. }
            | FieldError::Forbidden { field, .. }
            | FieldError::NotSupported { field, .. } => field,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            FieldError::Required { .. } => "FieldValueRequired",
            FieldError::Invalid { .. } => "FieldValueInvalid",
            FieldError::Duplicate { .. } => "FieldValueDuplicate",
            FieldError::Forbidden { .. } => "FieldValueForbidden",
            FieldError::NotSupported { .. } => "FieldValueNotSupported",
        }
    }

    /// `field.Error.ErrorBody()`: the message without the field path.
    fn body(&self) -> String {
        match self {
            FieldError::Required { detail, .. } if detail.is_empty() => "Required value".into(),
            FieldError::Required { detail, .. } => format!("Required value: {detail}"),
            FieldError::Invalid { value, detail, .. } => {
                format!("Invalid value: {value:?}: {detail}")
            }
            FieldError::Duplicate { value, .. } => format!("Duplicate value: {value:?}"),
            FieldError::Forbidden { detail, .. } => format!("Forbidden: {detail}"),
            FieldError::NotSupported {
                value, supported, ..
            } => {
                let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {value:?}: supported values: {}",
                    list.join(", ")
                )
            }
        }
    }
}

impl ApiError {
    fn failure(code: StatusCode, reason: &'static str, message: String) -> ApiError {
        ApiError {
            body: Box::new(StatusBody {
                kind: "Status",
                api_version: "v1",
                metadata: EmptyObject {},
                status: "Failure",
                message,
                reason,
                details: None,
                code: code.as_u16(),
            }),
        }
    }

    fn with_details(mut self, details: Details) -> ApiError {
        self.body.details = Some(details);
        self
    }

    fn resource_details(resource: Resource, name: &str) -> Details {
        Details {
            name: name.to_owned(),
            group: resource.group(),
            kind: resource.plural().to_owned(),
            ..Details::default()
        }
    }

    /// The HTTP status this error is answered with.
    pub(super) fn code(&self) -> StatusCode {
        StatusCode::from_u16(self.body.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Status` body.
    pub(super) fn body(&self) -> &StatusBody {
        &self.body
    }

    /// `errors.NewNotFound`: `pods "x" not found`.
    pub(super) fn not_found(resource: Resource, name: &str) -> ApiError {
        let message = format!("{} {name:?} not found", resource.qualified());
        ApiError::failure(StatusCode::NOT_FOUND, "NotFound", message)
            .with_details(Self::resource_details(resource, name))
    }

    /// What the node lister of NodeRestriction returns for a missing node: `node "n" not found`.
    pub(super) fn node_lister_not_found(name: &str) -> ApiError {
        ApiError::failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("node {name:?} not found"),
        )
        .with_details(Details {
            name: name.to_owned(),
            kind: "node".to_owned(),
            ..Details::default()
        })
    }

    /// `errors.NewAlreadyExists`: `pods "x" already exists`.
    pub(super) fn already_exists(resource: Resource, name: &str) -> ApiError {
        let message = format!("{} {name:?} already exists", resource.qualified());
        ApiError::failure(StatusCode::CONFLICT, "AlreadyExists", message)
            .with_details(Self::resource_details(resource, name))
    }

    /// `errors.NewConflict` over a resource: `Operation cannot be fulfilled on pods "x": why`.
    pub(super) fn conflict(resource: Resource, name: &str, why: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: {why}",
            resource.qualified()
        );
        ApiError::failure(StatusCode::CONFLICT, "Conflict", message)
            .with_details(Self::resource_details(resource, name))
    }

    /// `errors.NewConflict` as `rest.BeforeDelete` builds it: qualified by Kind, not resource.
    pub(super) fn delete_precondition_conflict(
        resource: Resource,
        name: &str,
        why: &str,
    ) -> ApiError {
        let qualified = match resource.group() {
            "" => resource.kind().to_owned(),
            group => format!("{}.{group}", resource.kind()),
        };
        let message = format!("Operation cannot be fulfilled on {qualified} {name:?}: {why}");
        ApiError::failure(StatusCode::CONFLICT, "Conflict", message).with_details(Details {
            name: name.to_owned(),
            group: resource.group(),
            kind: resource.kind().to_owned(),
            ..Details::default()
        })
    }

    /// `errors.NewForbidden`: `pods "x" is forbidden: why`.
    pub(super) fn forbidden(resource: Resource, name: &str, why: &str) -> ApiError {
        let message = if name.is_empty() {
            format!("{} is forbidden: {why}", resource.qualified())
        } else {
            format!("{} {name:?} is forbidden: {why}", resource.qualified())
        };
        ApiError::failure(StatusCode::FORBIDDEN, "Forbidden", message)
            .with_details(Self::resource_details(resource, name))
    }

    /// `errors.NewInvalid` for an object: `Pod "x" is invalid: spec.containers: Required value`.
    pub(super) fn invalid(resource: Resource, name: &str, errors: &[FieldError]) -> ApiError {
        let qualified = match resource.group() {
            "" => resource.kind().to_owned(),
            group => format!("{}.{group}", resource.kind()),
        };
        Self::invalid_kind(&qualified, resource.group(), resource.kind(), name, errors)
    }

    /// `errors.NewInvalid` for a `GroupKind` that is not a stored resource (`DeleteOptions`).
    pub(super) fn invalid_kind(
        qualified: &str,
        group: &'static str,
        kind: &str,
        name: &str,
        errors: &[FieldError],
    ) -> ApiError {
        let causes = errors
            .iter()
            .map(|e| Cause {
                reason: e.reason(),
                message: e.body(),
                field: e.field().to_owned(),
            })
            .collect();
        // utilerrors.Aggregate: one error alone, several as "[a, b]" without repeats.
        let mut messages: Vec<String> = Vec::new();
        for e in errors {
            let m = format!("{}: {}", e.field(), e.body());
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
        let message = match messages.len() {
            0 => format!("{qualified} {name:?} is invalid"),
            1 => format!("{qualified} {name:?} is invalid: {}", messages[0]),
            _ => format!("{qualified} {name:?} is invalid: [{}]", messages.join(", ")),
        };
        ApiError::failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message).with_details(
            Details {
                name: name.to_owned(),
                group,
                kind: kind.to_owned(),
                causes,
                ..Details::default()
            },
        )
    }

    /// `errors.NewBadRequest`.
    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::failure(StatusCode::BAD_REQUEST, "BadRequest", message.into())
    }

    /// `errors.NewInternalError`: `Internal error occurred: why`.
    pub(super) fn internal(why: &str) -> ApiError {
        ApiError::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("Internal error occurred: {why}"),
        )
        .with_details(Details {
            causes: vec![Cause {
                reason: "",
                message: why.to_owned(),
                field: String::new(),
            }],
            ..Details::default()
        })
    }

    /// A plain Go error that reached the handler without a status: 500, reason unknown.
    pub(super) fn unknown_internal(message: &str) -> ApiError {
        ApiError::failure(StatusCode::INTERNAL_SERVER_ERROR, "", message.to_owned())
    }

    /// `errors.NewResourceExpired`: a watch from a resourceVersion the server no longer has.
    pub(super) fn expired(message: String) -> ApiError {
        ApiError::failure(StatusCode::GONE, "Expired", message)
    }

    /// `storage.NewTooLargeResourceVersionError`: a watch from a resourceVersion the server
    /// has not reached within its wait, `Timeout: Too large resource version: 9, current: 7`.
    pub(super) fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
        ApiError::failure(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        )
        .with_details(Details {
            causes: vec![Cause {
                reason: "ResourceVersionTooLarge",
                message: "Too large resource version".to_owned(),
                field: String::new(),
            }],
            retry_after_seconds: 1,
            ..Details::default()
        })
    }

    /// The negotiation error for a PATCH body type the resource does not accept.
    pub(super) fn unsupported_media_type(accepted: &[&str]) -> ApiError {
        ApiError::failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// The authentication failure: `{"message":"Unauthorized","reason":"Unauthorized"}`.
    pub(super) fn unauthorized() -> ApiError {
        ApiError::failure(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".to_owned(),
        )
    }

    /// What go-restful and the generic response path write for a status with no better
    /// description (`errors.NewGenericServerResponse`): also used for scripted failures.
    pub(super) fn generic(code: StatusCode) -> ApiError {
        let (reason, message) = match code.as_u16() {
            400 => (
                "BadRequest",
                "the server rejected our request for an unknown reason",
            ),
            401 => return ApiError::unauthorized(),
            403 => ("Forbidden", "forbidden: scripted failure"),
            404 => (
                "NotFound",
                "the server could not find the requested resource",
            ),
            405 => (
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
            409 => ("Conflict", "the server reported a conflict"),
            415 => ("UnsupportedMediaType", "unsupported media type"),
            422 => (
                "Invalid",
                "the server rejected our request due to an error in our request",
            ),
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            500 => return ApiError::internal("scripted failure"),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            c if c >= 500 => ("InternalError", "scripted failure"),
            _ => ("", "scripted failure"),
        };
        ApiError::failure(code, reason, message.to_owned()).with_details(Details::default())
    }
}

/// The `Status` of a successful DELETE on a resource that does not return the deleted object.
pub(super) fn delete_success(resource: Resource, name: &str, uid: &str) -> StatusBody {
    StatusBody {
        kind: "Status",
        api_version: "v1",
        metadata: EmptyObject {},
        status: "Success",
        message: String::new(),
        reason: "",
        details: Some(Details {
            name: name.to_owned(),
            group: resource.group(),
            kind: resource.plural().to_owned(),
            uid: uid.to_owned(),
            ..Details::default()
        }),
        code: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_body_matches_the_api_server_byte_for_byte() {
        let err = ApiError::not_found(Resource::Pods, "x");
        let json = serde_json::to_string(err.body()).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#
        );
        assert_eq!(err.code(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn grouped_resources_are_qualified_by_group() {
        let err = ApiError::already_exists(Resource::Leases, "l");
        let json = serde_json::to_value(err.body()).unwrap();
        assert_eq!(
            json["message"],
            r#"leases.coordination.k8s.io "l" already exists"#
        );
        assert_eq!(json["details"]["group"], "coordination.k8s.io");
    }

    #[test]
    fn invalid_aggregates_several_causes_in_brackets() {
        let errors = [
            FieldError::Required {
                field: "metadata.name".into(),
                detail: "name or generateName is required".into(),
            },
            FieldError::Required {
                field: "spec.containers".into(),
                detail: String::new(),
            },
        ];
        let err = ApiError::invalid(Resource::Pods, "", &errors);
        let json = serde_json::to_value(err.body()).unwrap();
        assert_eq!(
            json["message"],
            "Pod \"\" is invalid: [metadata.name: Required value: name or generateName is required, spec.containers: Required value]"
        );
        assert_eq!(json["details"]["causes"][1]["reason"], "FieldValueRequired");
        assert_eq!(json["details"]["causes"][1]["field"], "spec.containers");
        assert_eq!(json["details"]["kind"], "Pod");
        assert_eq!(json["code"], 422);
    }

    #[test]
    fn delete_success_has_no_code_and_names_the_resource() {
        let json = serde_json::to_string(&delete_success(Resource::Nodes, "n", "u")).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"n","kind":"nodes","uid":"u"}}"#
        );
    }
}
