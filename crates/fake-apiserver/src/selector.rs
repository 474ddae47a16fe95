//! List selectors: a `fieldSelector` and a `labelSelector`, parsed as the API server parses
//! them and matched against stored objects.

use serde_json::Value;

use super::resource::Resource;
use super::status::ApiError;

/// Looks up a dotted path (`spec.nodeName`) in an object as a selector compares it.
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => {
                return match path {
                    "spec.hostNetwork" | "spec.unschedulable" => "false".into(),
                    _ => String::new(),
                };
            }
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(map) if path == "source" => map
            .get("component")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A `fieldSelector` plus a `labelSelector`, as a list or delete-collection request gives them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Selector {
    fields: Vec<Requirement>,
    labels: Vec<Requirement>,
}

impl Selector {
    /// Parses the two query parameters, rejecting field labels the resource does not index.
    pub(super) fn parse(
        resource: Resource,
        field_selector: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Selector, ApiError> {
        let mut selector = Selector::default();
        for term in field_selector
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (key, req) = if let Some((k, v)) = term.split_once("!=") {
                (
                    k.trim(),
                    Requirement::NotEquals(k.trim().into(), v.trim().into()),
                )
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (
                    k.trim(),
                    Requirement::Equals(k.trim().into(), v.trim().into()),
                )
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{}'; can't understand '{term}'",
                    field_selector.unwrap_or_default()
                )));
            };
            if !resource.field_labels().contains(&key) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {key}"
                )));
            }
            selector.fields.push(req);
        }
        for term in split_label_terms(label_selector.unwrap_or_default()) {
            selector.labels.push(parse_label_term(&term).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{term}', expected a label requirement"
                ))
            })?);
        }
        Ok(selector)
    }

    /// Whether an object passes every requirement.
    pub(super) fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let fields_ok = self.fields.iter().all(|req| match req {
            Requirement::Equals(k, v) => field_value(obj, k) == *v,
            Requirement::NotEquals(k, v) => field_value(obj, k) != *v,
            _ => true,
        });
        fields_ok
            && self.labels.iter().all(|req| match req {
                Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
                Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
                Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
                Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
                Requirement::Exists(k) => label(k).is_some(),
                Requirement::NotExists(k) => label(k).is_none(),
            })
    }
}

/// Splits a label selector on commas outside parentheses.
fn split_label_terms(selector: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_term(term: &str) -> Option<Requirement> {
    let set = |rest: &str| -> Option<Vec<String>> {
        let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
    };
    if let Some(key) = term.strip_prefix('!') {
        return Some(Requirement::NotExists(key.trim().to_owned()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Some(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Some(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Some(Requirement::NotIn(k.trim().into(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Some(Requirement::In(k.trim().into(), set(rest)?));
    }
    if term.contains(char::is_whitespace) {
        return None;
    }
    Some(Requirement::Exists(term.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors_filter_by_field_and_label() {
        let pod = json!({"metadata": {"name": "a", "labels": {"tier": "control-plane"}},
                         "spec": {"nodeName": "n1"}});
        let sel = |f: Option<&str>, l: Option<&str>| Selector::parse(Resource::Pods, f, l).unwrap();
        assert!(sel(Some("spec.nodeName=n1"), None).matches(&pod));
        assert!(!sel(Some("spec.nodeName!=n1"), None).matches(&pod));
        assert!(sel(None, Some("tier=control-plane,!component")).matches(&pod));
        assert!(sel(None, Some("tier in (node, control-plane)")).matches(&pod));
        assert!(!sel(None, Some("tier notin (control-plane)")).matches(&pod));
        assert!(!sel(None, Some("component")).matches(&pod));
    }

    #[test]
    fn unknown_field_label_is_a_bad_request() {
        let err = Selector::parse(Resource::Pods, Some("spec.foo=x"), None).unwrap_err();
        assert_eq!(err.code(), http::StatusCode::BAD_REQUEST);
    }
}
