//! The PATCH body types: JSON merge patch (RFC 7386), strategic merge patch, JSON patch
//! (RFC 6902) and server-side apply (treated as a strategic merge of the applied object).
//!
//! Pure functions over `serde_json::Value`; the store decides what the result may change.

use serde_json::{Map, Value};

use super::status::ApiError;

/// The PATCH content types the server accepts, in the order its 415 message lists them.
pub(super) const ACCEPTED: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// A PATCH body type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    /// From a `Content-Type` header, parameters (`; charset=`) ignored.
    pub(super) fn from_content_type(content_type: &str) -> Option<PatchKind> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" => Some(PatchKind::Apply),
            _ => None,
        }
    }
}

/// Parses a PATCH body: JSON, or YAML for apply.
pub(super) fn parse_body(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) if kind == PatchKind::Apply => {
            let text =
                std::str::from_utf8(body).map_err(|_| ApiError::bad_request(e.to_string()))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Applies a parsed patch body to the current object.
pub(super) fn apply(kind: PatchKind, current: &Value, patch: &Value) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("Invalid JSON Patch"));
            }
            Ok(merge_patch(current, patch))
        }
        PatchKind::Strategic | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the body of the request was not a JSON object",
                ));
            }
            strategic_merge(current, patch, &mut Vec::new()).map_err(ApiError::bad_request)
        }
        PatchKind::Json => json_patch(current, patch),
    }
}

/// RFC 7386 JSON merge patch.
pub(super) fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The `patchMergeKey` of the list fields of Pod, Node and ObjectMeta that have one, found by
/// the field name and its parent's name.
fn merge_key(path: &[String], field: &str) -> Option<&'static str> {
    let parent = path.last().map(String::as_str).unwrap_or_default();
    match (parent, field) {
        ("status", "conditions" | "addresses") => Some("type"),
        ("status", "podIPs" | "hostIPs") => Some("ip"),
        ("spec", "containers" | "initContainers" | "ephemeralContainers") => Some("name"),
        ("spec", "volumes" | "imagePullSecrets") => Some("name"),
        ("metadata", "ownerReferences") => Some("uid"),
        (_, "env") => Some("name"),
        (_, "ports") => Some("containerPort"),
        (_, "volumeMounts") => Some("mountPath"),
        (_, "volumeDevices") => Some("devicePath"),
        _ => None,
    }
}

/// Primitive lists with `patchStrategy: merge` (set union).
fn is_merging_primitive_list(path: &[String], field: &str) -> bool {
    matches!(
        (path.last().map(String::as_str), field),
        (Some("metadata"), "finalizers")
    )
}

/// Strategic merge patch over the known Pod/Node list merge keys, with the directives
/// `$patch` (replace, delete), `$retainKeys`, `$setElementOrder/` and
/// `$deleteFromPrimitiveList/`. Lists without a merge key are replaced, as for merge patch.
pub(super) fn strategic_merge(
    target: &Value,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Value::Object(strip_directives(p))),
        Some("delete") => return Ok(Value::Null),
        Some(other) => return Err(format!("Unknown patch type: {other} in map: {patch}")),
        None => {}
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Value::Array(order) = v {
                orders.push((field, order));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (out.get_mut(field), v) {
                list.retain(|item| !gone.contains(item));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match v {
            Value::Object(_) => {
                path.push(k.clone());
                let r = strategic_merge(out.get(k).unwrap_or(&Value::Null), v, path);
                path.pop();
                r?
            }
            Value::Array(items) => match (merge_key(path, k), out.get(k)) {
                (Some(key), Some(Value::Array(current))) => {
                    path.push(k.clone());
                    let r = merge_list(current, items, key, path);
                    path.pop();
                    Value::Array(r?)
                }
                _ if is_merging_primitive_list(path, k) => {
                    let mut list = out
                        .get(k)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for item in items {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                    Value::Array(list)
                }
                _ => Value::Array(
                    items
                        .iter()
                        .filter(|i| !is_directive_item(i))
                        .cloned()
                        .collect(),
                ),
            },
            _ => v.clone(),
        };
        if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = out.get_mut(field) {
            let key = merge_key(path, field);
            reorder(list, order, key);
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        out.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(Value::Object(out))
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn is_directive_item(item: &Value) -> bool {
    item.get("$patch").is_some()
}

fn merge_list(
    current: &[Value],
    patch: &[Value],
    key: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|i| !is_directive_item(i))
            .cloned()
            .collect());
    }
    let mut out = current.to_vec();
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(format!(
                "map: {item} does not contain declared merge key: {key}"
            ));
        };
        let pos = out.iter().position(|c| c.get(key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(pos) = pos {
                out.remove(pos);
            }
            continue;
        }
        match pos {
            Some(pos) => out[pos] = strategic_merge(&out[pos], item, path)?,
            None => out.push(strategic_merge(&Value::Null, item, path)?),
        }
    }
    Ok(out)
}

/// `$setElementOrder`: listed elements first, in the given order, the rest after them.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let id = |v: &Value| -> Value {
        match key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut rest = std::mem::take(list);
    for wanted in order {
        let wanted = id(wanted);
        if let Some(pos) = rest.iter().position(|v| id(v) == wanted) {
            list.push(rest.remove(pos));
        }
    }
    list.append(&mut rest);
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy and test.
pub(super) fn json_patch(doc: &Value, ops: &Value) -> Result<Value, ApiError> {
    let Value::Array(ops) = ops else {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
        ));
    };
    let mut doc = doc.clone();
    for op in ops {
        let field = |name: &str| op.get(name).and_then(Value::as_str);
        let (Some(kind), Some(path)) = (field("op"), field("path")) else {
            return Err(ApiError::bad_request(format!(
                "invalid JSON patch operation: {op}"
            )));
        };
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| ApiError::bad_request(format!("missing value for op {kind}")))
        };
        let from = || {
            field("from")
                .ok_or_else(|| ApiError::bad_request(format!("missing from for op {kind}")))
        };
        let result = match kind {
            "add" => add(&mut doc, path, value()?),
            "remove" => remove(&mut doc, path).map(|_| ()),
            "replace" => replace(&mut doc, path, value()?),
            "move" => {
                let from = from()?;
                remove(&mut doc, from).and_then(|v| add(&mut doc, path, v))
            }
            "copy" => {
                let from = from()?;
                match doc.pointer(from).cloned() {
                    Some(v) => add(&mut doc, path, v),
                    None => Err(format!("copy from does not exist: {from}")),
                }
            }
            "test" => {
                let expected = value()?;
                if doc.pointer(path) == Some(&expected) {
                    Ok(())
                } else {
                    Err(format!("testing value {path} failed: test failed"))
                }
            }
            other => return Err(ApiError::bad_request(format!("Unexpected kind: {other}"))),
        };
        // The handler answers a failed operation with the generic 422.
        result.map_err(|_| ApiError::generic(http::StatusCode::UNPROCESSABLE_ENTITY))?;
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let Some(idx) = path.rfind('/') else {
        return Err(format!("invalid JSON pointer: {path:?}"));
    };
    let last = path[idx + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..idx].to_owned(), last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let idx = if last == "-" {
                list.len()
            } else {
                index(&last)?
            };
            if idx > list.len() {
                return Err(format!("index out of bounds: {path}"));
            }
            list.insert(idx, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => map
            .remove(&last)
            .ok_or_else(|| format!("remove operation does not apply: doc is missing key: {path}")),
        Some(Value::Array(list)) => {
            let idx = index(&last)?;
            if idx >= list.len() {
                return Err(format!("index out of bounds: {path}"));
            }
            Ok(list.remove(idx))
        }
        _ => Err(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        )),
    }
}

fn replace(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    match doc.pointer_mut(path) {
        Some(slot) => {
            *slot = value;
            Ok(())
        }
        None => Err(format!(
            "replace operation does not apply: doc is missing key: {path}"
        )),
    }
}

fn index(token: &str) -> Result<usize, String> {
    token
        .parse()
        .map_err(|_| format!("invalid array index: {token}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        let patch = json!({"a": "z", "c": {"f": null}, "l": [3]});
        assert_eq!(
            merge_patch(&target, &patch),
            json!({"a": "z", "c": {"d": "e"}, "l": [3]})
        );
    }

    #[test]
    fn strategic_merge_merges_conditions_by_type_and_keeps_others() {
        let target = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}]}});
        let patch = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Initialized", "status": "True"}]}});
        let out = strategic_merge(&target, &patch, &mut Vec::new()).unwrap();
        assert_eq!(out["status"]["phase"], "Running");
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"},
                   {"type": "PodScheduled", "status": "True"},
                   {"type": "Initialized", "status": "True"}])
        );
    }

    #[test]
    fn strategic_merge_honours_kubelet_directives() {
        let target = json!({"metadata": {"finalizers": ["a", "b"]},
            "status": {"conditions": [{"type": "A"}, {"type": "B"}, {"type": "C"}]}});
        let patch = json!({
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]},
            "status": {"$setElementOrder/conditions": [{"type": "C"}, {"type": "A"}],
                       "conditions": [{"type": "B", "$patch": "delete"}]}});
        let out = strategic_merge(&target, &patch, &mut Vec::new()).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "C"}, {"type": "A"}])
        );
    }

    #[test]
    fn strategic_merge_replaces_lists_without_merge_key() {
        let target = json!({"spec": {"tolerations": [{"key": "a"}]}});
        let patch = json!({"spec": {"tolerations": [{"key": "b"}]}});
        let out = strategic_merge(&target, &patch, &mut Vec::new()).unwrap();
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
    }

    #[test]
    fn json_patch_applies_add_replace_remove_and_test() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 3]});
        let ops = json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/k8s.io~1b", "value": "2"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
            {"op": "add", "path": "/list/1", "value": 2},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "remove", "path": "/list/0"},
        ]);
        let out = json_patch(&doc, &ops).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "9", "k8s.io/b": "2"}}, "list": [2, 3, 4]})
        );
    }

    #[test]
    fn failed_json_patch_test_is_the_generic_422() {
        let err = json_patch(
            &json!({"a": 1}),
            &json!([{"op": "test", "path": "/a", "value": 2}]),
        )
        .unwrap_err();
        let body = serde_json::to_value(err.body()).unwrap();
        assert_eq!(body["code"], 422);
        assert_eq!(body["reason"], "Invalid");
        assert_eq!(
            body["message"],
            "the server rejected our request due to an error in our request"
        );
    }
}
