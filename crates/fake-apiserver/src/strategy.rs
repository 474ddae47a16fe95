//! What the registry does to an object on its way to storage: decoding through the
//! k8s-openapi type (unknown fields dropped), defaulting, `PrepareForCreate` and validation.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::meta::text;
use super::resource::Resource;
use super::status::{ApiError, FieldError};

/// Decodes a request body as `K`, as the server's codec does: `apiVersion` and `kind` may be
/// left out (the URL names them) but must match when given, unknown fields are dropped, and a
/// malformed field is a 400.
pub(super) fn decode<K: k8s_openapi::Resource + DeserializeOwned>(
    mut obj: Value,
) -> Result<K, ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request was not a JSON object",
        ));
    };
    for (field, expected) in [("apiVersion", K::API_VERSION), ("kind", K::KIND)] {
        match map.get(field).and_then(Value::as_str) {
            None | Some("") => {
                map.insert(field.into(), json!(expected));
            }
            Some(given) if given != expected => {
                let what = if field == "kind" {
                    "kind"
                } else {
                    "API version"
                };
                return Err(ApiError::bad_request(format!(
                    "the {what} in the data ({given}) does not match the expected {what} ({expected})"
                )));
            }
            Some(_) => {}
        }
    }
    serde_json::from_value(obj).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {e}",
            kind = K::KIND,
            version = K::VERSION,
        ))
    })
}

/// Decodes the object as its typed form and encodes it again (see [`decode`]): what is stored
/// is what the typed form keeps.
pub(super) fn normalize(resource: Resource, obj: Value) -> Result<Value, ApiError> {
    fn via<K: k8s_openapi::Resource + Serialize + DeserializeOwned>(
        obj: Value,
    ) -> Result<Value, ApiError> {
        serde_json::to_value(decode::<K>(obj)?)
            .map_err(|e| ApiError::internal(&format!("encoding {}: {e}", K::KIND)))
    }
    match resource {
        Resource::Pods => via::<Pod>(obj),
        Resource::Nodes => via::<Node>(obj),
        Resource::Events => via::<Event>(obj),
        Resource::EventsV1 => via::<EventV1>(obj),
        Resource::Leases => via::<Lease>(obj),
        Resource::Csrs => via::<CertificateSigningRequest>(obj),
    }
}

fn object_at<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    obj.as_object_mut()?
        .entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

/// `SetDefaults_Pod`, `_PodSpec` and `_Container`: the defaults a user sees on a created pod.
pub(super) fn default_pod(pod: &mut Value) {
    let Some(spec) = object_at(pod, "spec") else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let tag = image.rsplit('/').next().unwrap_or_default();
            let pull = if image.contains('@') || (tag.contains(':') && !tag.ends_with(":latest")) {
                "IfNotPresent"
            } else {
                "Always"
            };
            set_default(c, "imagePullPolicy", json!(pull));
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            set_default(c, "resources", json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
    }
}

/// The pod's QoS class, from the cpu and memory requests and limits of its containers.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["/spec/containers", "/spec/initContainers"]
        .into_iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect();
    let get = |c: &Value, kind: &str, res: &str| {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for res in ["cpu", "memory"] {
            let limit = get(c, "limits", res);
            let request = get(c, "requests", res).or_else(|| limit.clone());
            any |= limit.is_some() || request.is_some();
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `PrepareForCreate`: a new pod's or CSR's status is the server's, not the client's.
pub(super) fn prepare_for_create(resource: Resource, obj: &mut Value) {
    if resource == Resource::Csrs
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    if resource == Resource::Pods {
        let qos = qos_class(obj);
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
}

fn check_subdomain(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if value.len() > 253 {
        errors.push(FieldError::Invalid {
            field: field.into(),
            value: value.into(),
            detail: "must be no more than 253 characters".into(),
        });
    }
    if !value.split('.').all(is_dns_label) {
        errors.push(FieldError::Invalid {
            field: field.into(),
            value: value.into(),
            detail: SUBDOMAIN_MSG.into(),
        });
    }
}

fn check_label(field: &str, value: &str, errors: &mut Vec<FieldError>) {
    if value.len() > 63 {
        errors.push(FieldError::Invalid {
            field: field.into(),
            value: value.into(),
            detail: "must be no more than 63 characters".into(),
        });
    }
    if !is_dns_label(value) {
        errors.push(FieldError::Invalid {
            field: field.into(),
            value: value.into(),
            detail: LABEL_MSG.into(),
        });
    }
}

fn required(field: &str) -> FieldError {
    FieldError::Required {
        field: field.into(),
        detail: String::new(),
    }
}

fn validate_pod(pod: &Value, errors: &mut Vec<FieldError>) {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if containers.is_empty() {
        errors.push(required("spec.containers"));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (list, items) in [
        ("spec.initContainers", pod.pointer("/spec/initContainers")),
        ("spec.containers", pod.pointer("/spec/containers")),
    ] {
        for (i, c) in items
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = text(c, "/name");
            let field = format!("{list}[{i}].name");
            if name.is_empty() {
                errors.push(required(&field));
            } else if seen.contains(&name) {
                errors.push(FieldError::Duplicate {
                    field,
                    value: name.into(),
                });
            } else {
                check_label(&field, name, errors);
                seen.push(name);
            }
            if text(c, "/image").is_empty() {
                errors.push(required(&format!("{list}[{i}].image")));
            }
        }
    }
    let policy = text(pod, "/spec/restartPolicy");
    if !["Always", "OnFailure", "Never"].contains(&policy) {
        errors.push(FieldError::NotSupported {
            field: "spec.restartPolicy".into(),
            value: policy.into(),
            supported: &["Always", "OnFailure", "Never"],
        });
    }
}

/// The legacy rule for core events without `eventTime`: the event lives in the namespace of
/// what it is about, and events about cluster-scoped objects in `default`.
fn validate_core_event(event: &Value, errors: &mut Vec<FieldError>) {
    if event.get("eventTime").is_some_and(|t| !t.is_null()) {
        return;
    }
    let namespace = text(event, "/metadata/namespace");
    let involved = text(event, "/involvedObject/namespace");
    let matches = if involved.is_empty() {
        namespace.is_empty() || namespace == "default"
    } else {
        namespace == involved
    };
    if !matches {
        errors.push(FieldError::Invalid {
            field: "involvedObject.namespace".into(),
            value: involved.into(),
            detail: "does not match event.namespace".into(),
        });
    }
}

fn validate_event_v1(event: &Value, errors: &mut Vec<FieldError>) {
    if event.get("eventTime").is_none_or(Value::is_null) {
        errors.push(required("eventTime"));
    }
    for (pointer, field) in [
        ("/reportingController", "reportingController"),
        ("/reportingInstance", "reportingInstance"),
        ("/action", "action"),
        ("/reason", "reason"),
    ] {
        if text(event, pointer).is_empty() {
            errors.push(required(field));
        }
    }
    let kind = text(event, "/type");
    if kind != "Normal" && kind != "Warning" {
        errors.push(FieldError::NotSupported {
            field: "type".into(),
            value: kind.into(),
            supported: &["Normal", "Warning"],
        });
    }
}

/// A CSR's required fields (the real server also parses the request and checks the usages
/// against its signer, which the fake leaves to the test signing it).
fn validate_csr(obj: &Value, errors: &mut Vec<FieldError>) {
    if text(obj, "/spec/request").is_empty() {
        errors.push(FieldError::Required {
            field: "spec.request".into(),
            detail: String::new(),
        });
    }
    if text(obj, "/spec/signerName").is_empty() {
        errors.push(FieldError::Required {
            field: "spec.signerName".into(),
            detail: String::new(),
        });
    }
}

/// The resource's `Validate`: a 422 listing every field error.
pub(super) fn validate(resource: Resource, obj: &Value) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let name = text(obj, "/metadata/name");
    if name.is_empty() {
        errors.push(FieldError::Required {
            field: "metadata.name".into(),
            detail: "name or generateName is required".into(),
        });
    } else if resource == Resource::Csrs {
        // CSR names are path segments only: the kubelet's `node-csr-<base64url>` has
        // capitals and underscores.
        if name == "." || name == ".." || name.contains(['/', '%']) {
            errors.push(FieldError::Invalid {
                field: "metadata.name".into(),
                value: name.into(),
                detail: "may not contain '/' or '%', nor be '.' or '..'".into(),
            });
        }
    } else {
        check_subdomain("metadata.name", name, &mut errors);
    }
    match resource {
        Resource::Pods => validate_pod(obj, &mut errors),
        Resource::Events => validate_core_event(obj, &mut errors),
        Resource::EventsV1 => validate_event_v1(obj, &mut errors),
        Resource::Csrs => validate_csr(obj, &mut errors),
        Resource::Nodes | Resource::Leases => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(resource, name, &errors))
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A pod spec with the fields an update may change blanked out.
fn pod_spec_frozen(pod: &Value) -> Value {
    let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        map.remove("activeDeadlineSeconds");
        map.remove("tolerations");
        map.remove("terminationGracePeriodSeconds");
        for list in ["containers", "initContainers"] {
            for c in map
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    spec
}

/// `ValidateUpdate`: the create rules plus, for pods, the immutable spec.
pub(super) fn validate_update(
    resource: Resource,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    validate(resource, new)?;
    if resource == Resource::Pods && pod_spec_frozen(old) != pod_spec_frozen(new) {
        let name = text(new, "/metadata/name");
        return Err(ApiError::invalid(
            resource,
            name,
            &[FieldError::Forbidden {
                field: "spec".into(),
                detail: POD_UPDATE_MSG.into(),
            }],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_drops_unknown_fields_and_fills_type_meta() {
        let pod = normalize(
            Resource::Pods,
            json!({"metadata": {"name": "a"}, "bogus": 1, "spec": {"containers": []}}),
        )
        .unwrap();
        assert_eq!(pod["apiVersion"], "v1");
        assert_eq!(pod["kind"], "Pod");
        assert!(pod.get("bogus").is_none());
    }

    #[test]
    fn wrong_kind_is_a_bad_request() {
        let err = normalize(Resource::Pods, json!({"kind": "Node"})).unwrap_err();
        assert_eq!(err.code(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn pod_defaults_match_the_api_server() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "etcd:3.5"},
                                                      {"name": "d", "image": "busybox"}]}});
        default_pod(&mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "Always");
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let with = |res: Value| json!({"spec": {"containers": [{"resources": res}]}});
        assert_eq!(qos_class(&with(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&with(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }

    #[test]
    fn invalid_names_and_missing_containers_are_listed() {
        let err = validate(
            Resource::Pods,
            &json!({"metadata": {"name": "Bad_Name"},
                                                   "spec": {"restartPolicy": "Always"}}),
        )
        .unwrap_err();
        let body = serde_json::to_value(err.body()).unwrap();
        let causes = body["details"]["causes"].as_array().unwrap();
        assert_eq!(causes[0]["field"], "metadata.name");
        assert_eq!(causes[0]["reason"], "FieldValueInvalid");
        assert_eq!(causes[1]["field"], "spec.containers");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Pod \"Bad_Name\" is invalid: [")
        );
    }
}
