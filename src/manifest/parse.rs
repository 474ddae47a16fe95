//! Bytes of one manifest file → validated, defaulted pods (node-independent).
//!
//! Accepts what the kubelet accepts (one `v1` `Pod` per file, YAML or JSON) and also
//! multi-document YAML and a `v1` `List`/`PodList` of pods, where the kubelet silently reads
//! only the first document. Every error names the document and the field or line. Pure; no IO.

use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::{DocRef, Format, MAX_MANIFEST_BYTES, ManifestError, apply_defaults, validate};

/// The deepest nesting of YAML collections read. A pod goes about 13 levels deep at most (the
/// items of a projected volume, in a `List`); the cap bounds the parser's recursion, so a
/// 10,000-deep file is an error rather than a stack overflow. JSON has serde_json's own cap
/// of 128.
const MAX_YAML_DEPTH: usize = 64;
/// The most values (scalars, sequences, mappings) a YAML file may amount to once its aliases
/// are expanded: the memory budget (see `budget`), which also stops an alias bomb ("billion
/// laughs") long before it is built.
const MAX_YAML_NODES: usize = super::budget::MAX_VALUES;
/// The most parser events aliases (`*name`) may replay in one YAML file. Pod manifests
/// rarely use aliases, and a container spec aliased into a hundred pods replays some 5,000:
/// an alias bomb is stopped after a few megabytes instead of tens.
const MAX_YAML_ALIAS_EVENTS: usize = 50_000;
/// The most scalar text a YAML file may amount to once its aliases are expanded: twice what
/// a file without aliases can hold, so only alias expansion can reach it.
const MAX_YAML_TEXT_BYTES: usize = 2 * MAX_MANIFEST_BYTES as usize;
/// The most documents in one YAML file.
const MAX_YAML_DOCUMENTS: usize = 1024;

/// One pod declared in a manifest, validated and defaulted, not yet bound to a node.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedPod {
    /// Where in the file.
    pub at: DocRef,
    /// Defaulted metadata (name without the node suffix).
    pub metadata: ObjectMeta,
    /// Defaulted spec.
    pub spec: PodSpec,
    /// Fields present in the file that podvisor does not know (likely typos).
    pub warnings: Vec<String>,
}

/// Parses, defaults and validates every pod in a manifest file. Any error rejects the whole
/// file: a file is applied entirely or not at all.
pub fn parse_manifest(
    path: &Path,
    format: Format,
    bytes: &[u8],
) -> Result<Vec<ParsedPod>, ManifestError> {
    let docs = match format {
        Format::Json => vec![(1, parse_json(path, bytes)?)],
        Format::Yaml => parse_yaml(path, bytes)?,
    };
    let mut pods = Vec::new();
    for (document, doc) in docs {
        if doc.is_null() {
            continue;
        }
        for (at, item) in pod_values(path, document, doc)? {
            pods.push(decode_pod(path, at, item)?);
        }
    }
    if pods.is_empty() {
        return Err(ManifestError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(pods)
}

fn parse_json(path: &Path, bytes: &[u8]) -> Result<Value, ManifestError> {
    if super::budget::json_within(bytes, super::budget::MAX_VALUES).is_err() {
        return Err(ManifestError::Syntax {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: super::budget::over_budget(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_owned(),
            None => full,
        };
        ManifestError::Syntax {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message,
        }
    })
}

/// The 1-based numbers of the documents in `text` that hold something, in order: what a
/// person counts when reading the file (the parser skips empty documents silently).
fn non_empty_documents(text: &str) -> Vec<usize> {
    // One flag per document: does it hold content? Comments before the first `---` do not
    // make a document of their own.
    let mut segments: Vec<bool> = vec![false];
    for line in text.lines() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            let leading_comments_only = segments.len() == 1 && !segments[0];
            if !leading_comments_only {
                segments.push(false);
            }
            let rest = line[3..].trim();
            if !rest.is_empty()
                && !rest.starts_with('#')
                && let Some(last) = segments.last_mut()
            {
                *last = true;
            }
            continue;
        }
        let content = line.trim();
        let meaningful = !(content.is_empty()
            || content.starts_with('#')
            || content.starts_with('%')
            || content == "..."
            || matches!(content, "~" | "null" | "Null" | "NULL"));
        if meaningful && let Some(last) = segments.last_mut() {
            *last = true;
        }
    }
    segments
        .iter()
        .enumerate()
        .filter(|(_, has)| **has)
        .map(|(i, _)| i + 1)
        .collect()
}

fn parse_yaml(path: &Path, bytes: &[u8]) -> Result<Vec<(usize, Value)>, ManifestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        ManifestError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: "not valid UTF-8".to_owned(),
        }
    })?;
    let values = serde_saphyr::from_multiple_with_options::<Value>(text, yaml_options())
        .map_err(|e| yaml_error(path, &e))?;
    let numbers = non_empty_documents(text);
    // Should the count disagree (a document the parser reads as null), fall back to order.
    let numbered = if numbers.len() == values.len() {
        numbers
    } else {
        (1..=values.len()).collect()
    };
    Ok(numbered.into_iter().zip(values).collect())
}

/// The YAML parser's settings: Kubernetes' YAML dialect, and limits that keep any input's
/// cost bounded (pinned here rather than left to the crate's defaults).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // As Kubernetes' YAML (YAML 1.1): `defaultMode: 0644` is octal, 420.
        legacy_octal_numbers: true,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_YAML_ALIAS_EVENTS,
        },
        budget: serde_saphyr::budget! {
            max_depth: MAX_YAML_DEPTH,
            max_nodes: MAX_YAML_NODES,
            max_total_scalar_bytes: MAX_YAML_TEXT_BYTES,
            max_documents: MAX_YAML_DOCUMENTS,
        },
    }
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> ManifestError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as usize, l.column() as usize))
        .unwrap_or((0, 0));
    // Unwrapped from the snippet and alias-location wrappers, which say nothing more.
    let mut cause = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = cause
    {
        cause = error;
    }
    let message = match cause {
        serde_saphyr::Error::Budget { breach, .. } => over_budget(breach),
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. } => too_many_aliases(),
        serde_saphyr::Error::ExternalMessage { source, .. }
            if matches!(
                &**source,
                serde_saphyr::ExternalMessageSource::Parser(s)
                    if matches!(s.kind(), serde_saphyr::granit_parser::ErrorKind::RecursionLimitExceeded)
            ) =>
        {
            too_deep()
        }
        other => {
            let full = other.to_string();
            match full.rfind(" at line ") {
                Some(i) => full[..i].to_owned(),
                None => full,
            }
        }
    };
    ManifestError::Syntax {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

fn too_many_aliases() -> String {
    "too many aliases (*name) or merge keys (<<): refused (an alias bomb?)".to_owned()
}

fn too_deep() -> String {
    format!("nested more than {MAX_YAML_DEPTH} levels deep")
}

/// Says which limit a YAML file went over, for people.
fn over_budget(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { .. } => too_deep(),
        B::Nodes { .. } => super::budget::over_budget(),
        B::ScalarBytes { .. } => format!(
            "more than {MAX_YAML_TEXT_BYTES} bytes of text once aliases are expanded: refused (an alias bomb?)"
        ),
        B::Aliases { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. }
        | B::MergeKeys { .. } => too_many_aliases(),
        B::Documents { .. } => format!("more than {MAX_YAML_DOCUMENTS} documents"),
        other => format!("over a limit of the YAML parser: {other:?}"),
    }
}

fn decode_error(path: &Path, at: DocRef, field: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Decode {
        path: path.to_owned(),
        at,
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Splits one document into pod values: itself when it is a Pod, its items when a List.
fn pod_values(
    path: &Path,
    document: usize,
    doc: Value,
) -> Result<Vec<(DocRef, Value)>, ManifestError> {
    let at = DocRef {
        document,
        item: None,
    };
    let Value::Object(map) = &doc else {
        return Err(decode_error(
            path,
            at,
            ".",
            "a document must be a mapping (a Pod)",
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind = map.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        let missing = if kind.is_none() { "kind" } else { "apiVersion" };
        return Err(decode_error(
            path,
            at,
            missing,
            "required: a static pod manifest is `apiVersion: v1` and `kind: Pod`",
        ));
    };
    if api_version != "v1" {
        return Err(decode_error(
            path,
            at,
            "apiVersion",
            format!("{api_version:?} is not supported: pods are apiVersion v1"),
        ));
    }
    match kind {
        "Pod" => Ok(vec![(at, doc)]),
        "List" | "PodList" => {
            let Some(Value::Array(items)) = map.get("items") else {
                return Err(decode_error(
                    path,
                    at,
                    "items",
                    "a List needs an items array",
                ));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = DocRef {
                    document,
                    item: Some(i),
                };
                let mut item = item.clone();
                if let Value::Object(m) = &mut item {
                    // A PodList's items may omit apiVersion and kind; a List's may not.
                    if kind == "PodList" {
                        m.entry("apiVersion").or_insert_with(|| Value::from("v1"));
                        m.entry("kind").or_insert_with(|| Value::from("Pod"));
                    }
                    match (
                        m.get("apiVersion").and_then(Value::as_str),
                        m.get("kind").and_then(Value::as_str),
                    ) {
                        (Some("v1"), Some("Pod")) => {}
                        (_, Some(other)) if other != "Pod" => {
                            return Err(decode_error(
                                path,
                                at,
                                "kind",
                                format!(
                                    "{other:?} is not supported: a List in a manifest may hold only Pods"
                                ),
                            ));
                        }
                        _ => {
                            return Err(decode_error(
                                path,
                                at,
                                "apiVersion",
                                "required: each item is `apiVersion: v1` and `kind: Pod`",
                            ));
                        }
                    }
                } else {
                    return Err(decode_error(
                        path,
                        at,
                        ".",
                        "a List item must be a mapping (a Pod)",
                    ));
                }
                out.push((at, item));
            }
            Ok(out)
        }
        other => Err(decode_error(
            path,
            at,
            "kind",
            format!(
                "{other:?} is not supported: static pod manifests hold Pods (or a v1 List of Pods)"
            ),
        )),
    }
}

fn decode_pod(path: &Path, at: DocRef, value: Value) -> Result<ParsedPod, ManifestError> {
    let pod: Pod = serde_path_to_error::deserialize(&value).map_err(|e| {
        let field = e.path().to_string();
        decode_error(path, at, &field, e.into_inner().to_string())
    })?;
    let mut warnings = Vec::new();
    let known = serde_json::to_value(&pod).unwrap_or(Value::Null);
    unknown_fields(&value, &known, &mut String::new(), &mut warnings);

    let mut pod = pod;
    apply_defaults(&mut pod);
    let issues = validate(&pod);
    if !issues.is_empty() {
        return Err(ManifestError::Invalid {
            path: path.to_owned(),
            at,
            issues,
        });
    }
    Ok(ParsedPod {
        at,
        metadata: pod.metadata,
        spec: pod.spec.unwrap_or_default(),
        warnings: warnings
            .into_iter()
            .map(|f| format!("{at}: unknown field {f} is ignored"))
            .collect(),
    })
}

/// Collects the paths of fields in `input` that did not survive decoding into `known`.
fn unknown_fields(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, path, out),
                    None if is_empty(v) => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{n}]"));
                unknown_fields(iv, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn p() -> PathBuf {
        PathBuf::from("/m/pod.yaml")
    }

    fn yaml(text: &str) -> Result<Vec<ParsedPod>, ManifestError> {
        parse_manifest(&p(), Format::Yaml, text.as_bytes())
    }

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: busybox:1.35\n";

    #[test]
    fn single_pod_yaml_is_parsed_and_defaulted() {
        let pods = yaml(WEB).expect("valid");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("web"));
        assert_eq!(pods[0].spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            pods[0].at,
            DocRef {
                document: 1,
                item: None
            }
        );
    }

    #[test]
    fn multi_document_yaml_yields_every_pod_and_skips_empty_documents() {
        let text = format!(
            "{WEB}---\n# nothing\n---\n{}",
            WEB.replace("name: web\nspec", "name: two\nspec")
        );
        let pods = yaml(&text).expect("valid");
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["web", "two"]);
        assert_eq!(pods[1].at.document, 3);
    }

    #[test]
    fn document_numbers_count_as_a_reader_does() {
        assert_eq!(non_empty_documents("a: 1\n---\n# c\n---\nb: 2\n"), [1, 3]);
        assert_eq!(
            non_empty_documents("# header\n---\na: 1\n---\nb: 2\n"),
            [1, 2]
        );
        assert_eq!(non_empty_documents("--- {a: 1}\n--- # x\n"), [1]);
        assert_eq!(non_empty_documents(""), Vec::<usize>::new());
    }

    #[test]
    fn leading_zero_numbers_are_octal_as_in_kubernetes_yaml() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: 'i:1'}]\n  volumes: [{name: d, downwardAPI: {defaultMode: 0644, items: [{path: x, fieldRef: {fieldPath: metadata.name}, mode: 0600}]}}]\n";
        let pods = yaml(text).expect("valid");
        let d = pods[0].spec.volumes.as_ref().expect("volumes")[0]
            .downward_api
            .clone()
            .expect("downwardAPI");
        assert_eq!(d.default_mode, Some(0o644));
        assert_eq!(d.items.expect("items")[0].mode, Some(0o600));
    }

    #[test]
    fn json_pod_is_parsed() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"i:1"}]}}"#;
        let pods = parse_manifest(&p(), Format::Json, json.as_bytes()).expect("valid");
        assert_eq!(pods[0].metadata.name.as_deref(), Some("j"));
    }

    #[test]
    fn a_v1_list_of_pods_yields_each_item() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  spec: {containers: [{name: c, image: 'i:1'}]}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: b}\n  spec: {containers: [{name: c, image: 'i:1'}]}\n";
        let pods = yaml(text).expect("valid");
        assert_eq!(pods.len(), 2);
        assert_eq!(
            pods[1].at,
            DocRef {
                document: 1,
                item: Some(1)
            }
        );
    }

    #[test]
    fn yaml_syntax_error_names_line_and_column() {
        let err =
            yaml("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   bad: indent\n").unwrap_err();
        assert!(
            matches!(err, ManifestError::Syntax { line: 5, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("/m/pod.yaml: line 5, column 7: "),
            "{err}"
        );
    }

    #[test]
    fn json_syntax_error_names_line() {
        let err = parse_manifest(&p(), Format::Json, b"{\"a\": 1,\n \"b\" }").unwrap_err();
        assert!(
            matches!(err, ManifestError::Syntax { line: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn wrong_field_type_names_document_and_field() {
        let text = format!(
            "{WEB}---\n{}",
            WEB.replace(
                "image: busybox:1.35",
                "image: busybox:1.35\n    ports:\n    - containerPort: http"
            )
        );
        let err = yaml(&text).unwrap_err();
        match &err {
            ManifestError::Decode { at, field, .. } => {
                assert_eq!(at.document, 2);
                assert_eq!(field, "spec.containers[0].ports[0].containerPort");
            }
            other => panic!("unexpected {other}"),
        }
        assert!(
            err.to_string()
                .contains("document 2: spec.containers[0].ports[0].containerPort: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn other_kinds_and_missing_kind_are_refused() {
        let err = yaml(&WEB.replace("kind: Pod", "kind: Deployment")).unwrap_err();
        assert!(
            err.to_string()
                .contains("kind: \"Deployment\" is not supported"),
            "{err}"
        );
        let err = yaml(&WEB.replace("kind: Pod\n", "")).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Decode { field, .. } if field == "kind"),
            "{err}"
        );
        let err = yaml(&WEB.replace("apiVersion: v1", "apiVersion: apps/v1")).unwrap_err();
        assert!(
            matches!(&err, ManifestError::Decode { field, .. } if field == "apiVersion"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(matches!(yaml(""), Err(ManifestError::Empty { .. })));
        assert!(matches!(
            yaml("# just a comment\n---\n"),
            Err(ManifestError::Empty { .. })
        ));
    }

    #[test]
    fn one_bad_document_rejects_the_whole_file() {
        let text = format!(
            "{WEB}---\n{}",
            WEB.replace("image: busybox:1.35", "image: ''")
        );
        let err = yaml(&text).unwrap_err();
        assert!(
            matches!(
                err,
                ManifestError::Invalid {
                    at: DocRef { document: 2, .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_warned_about_not_refused() {
        let pods = yaml(&WEB.replace(
            "image: busybox:1.35",
            "image: busybox:1.35\n    imagePullPolicyy: Never",
        ))
        .expect("valid");
        assert_eq!(
            pods[0].warnings,
            ["document 1: unknown field spec.containers[0].imagePullPolicyy is ignored"]
        );
        let pods = yaml(&format!("{WEB}status: {{}}\n")).expect("valid");
        assert!(pods[0].warnings.is_empty());
    }

    #[test]
    fn invalid_utf8_is_a_syntax_error() {
        let err = parse_manifest(&p(), Format::Yaml, b"a: b\nc: \xff\n").unwrap_err();
        assert!(
            matches!(err, ManifestError::Syntax { line: 2, .. }),
            "{err}"
        );
    }

    /// Whatever the bytes, parsing returns pods or an error naming the file: it never panics.
    #[test]
    fn truncated_and_random_input_never_panics() {
        let rich = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a, labels: {x: y}}\n  spec:\n    volumes: [{name: v, hostPath: {path: /x}}]\n    containers:\n    - name: c\n      image: 'i:1'\n      ports: [{containerPort: 80, hostPort: 80}]\n      resources: {limits: {cpu: 100m, memory: 1Gi}}\n      livenessProbe: {httpGet: {port: 80}}\n      volumeMounts: [{name: v, mountPath: /v}]\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}\n";
        for end in 0..=rich.len() {
            for format in [Format::Yaml, Format::Json] {
                let _ = parse_manifest(&p(), format, &rich.as_bytes()[..end]);
            }
        }
        // a fixed-seed xorshift, so failures reproduce
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"{}[]:,-\"' \n\tapiVersionkindPodv1metadata&*!|>#%@`0123456789.";
        for _ in 0..2000 {
            let len = (x % 200) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(if x.is_multiple_of(7) {
                    (x >> 8) as u8
                } else {
                    alphabet[(x % alphabet.len() as u64) as usize]
                });
            }
            for format in [Format::Yaml, Format::Json] {
                if let Err(e) = parse_manifest(&p(), format, &bytes) {
                    assert!(e.to_string().starts_with("/m/pod.yaml: "), "{e}");
                }
            }
        }
    }

    /// Parses `bytes` on a thread with a `stack`-byte stack; fails, rather than hangs, when
    /// that takes unboundedly long.
    fn parse_bounded(
        bytes: Vec<u8>,
        format: Format,
        stack: usize,
    ) -> Result<Vec<ParsedPod>, ManifestError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                let _ = tx.send(parse_manifest(&p(), format, &bytes));
            })
            .expect("thread");
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("parsing ends in bounded time")
    }

    /// The parser's own thread gets this much stack in the daemon (see `scan`).
    const PARSER_STACK: usize = 8 << 20;

    fn syntax_message(result: Result<Vec<ParsedPod>, ManifestError>) -> String {
        match result {
            Err(e @ ManifestError::Syntax { .. }) => {
                assert!(e.to_string().starts_with("/m/pod.yaml: line "), "{e}");
                e.to_string()
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn a_billion_laughs_alias_bomb_is_refused_before_it_is_expanded() {
        // nine levels of nine: 9^9 = 387,420,489 "lol"s if expanded
        let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in b'b'..=b'i' {
            let (this, prev) = (level as char, (level - 1) as char);
            let refs = vec![format!("*{prev}"); 9].join(", ");
            bomb.push_str(&format!("{this}: &{this} [{refs}]\n"));
        }
        let message = syntax_message(parse_bounded(bomb.into_bytes(), Format::Yaml, PARSER_STACK));
        assert!(
            message.ends_with(
                ": too many aliases (*name) or merge keys (<<): refused (an alias bomb?)"
            ),
            "{message}"
        );
    }

    #[test]
    fn files_of_more_than_50000_values_are_refused_in_yaml_and_json_issue_17() {
        let many = format!("{{\"a\": [{}]}}\n", vec!["1"; 60_000].join(","));
        for format in [Format::Yaml, Format::Json] {
            let message = syntax_message(parse_bounded(
                many.clone().into_bytes(),
                format,
                PARSER_STACK,
            ));
            assert!(
                message.contains(": more than 50000 values (counting each use of an alias)"),
                "{format:?}: {message}"
            );
        }
    }

    #[test]
    fn aliases_of_a_long_text_are_refused_before_they_are_copied() {
        // one 1 MiB scalar, aliased 100 times: 100 MiB once expanded
        let long = "x".repeat(1 << 20);
        let bomb = format!("a: &a '{long}'\nb: [{}]\n", vec!["*a"; 100].join(", "));
        let message = syntax_message(parse_bounded(bomb.into_bytes(), Format::Yaml, PARSER_STACK));
        assert!(
            message.contains("more than 20971520 bytes of text once aliases are expanded"),
            "{message}"
        );
    }

    #[test]
    fn recursive_and_undefined_anchors_are_syntax_errors() {
        assert!(matches!(
            yaml("a: &x [*x]\n"),
            Err(ManifestError::Syntax { .. })
        ));
        assert!(matches!(
            yaml("a: *nope\n"),
            Err(ManifestError::Syntax { .. })
        ));
    }

    #[test]
    fn ordinary_anchors_and_aliases_still_work() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - {name: one, image: 'i:1', env: &env [{name: MODE, value: fast}]}\n  - {name: two, image: 'i:1', env: *env}\n";
        let pods = yaml(text).expect("valid");
        let env = |i: usize| pods[0].spec.containers[i].env.clone().expect("env");
        assert_eq!(env(0), env(1));
    }

    #[test]
    fn yaml_nested_ten_thousand_deep_is_refused_at_64_levels() {
        const DEPTH: usize = 10_000;
        let block_sequences = format!("{}x\n", "- ".repeat(DEPTH));
        // indentation grows with depth: 2,000 levels is already 2 MB
        let block_mappings: String = (0..2_000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        let flow_sequences = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
        let flow_mappings = format!("{}x{}", "{a: ".repeat(DEPTH), "}".repeat(DEPTH));
        let shallow_flow = format!("{}{}", "[".repeat(100), "]".repeat(100));
        for text in [
            block_sequences,
            block_mappings,
            flow_sequences,
            flow_mappings,
            shallow_flow,
        ] {
            let message =
                syntax_message(parse_bounded(text.into_bytes(), Format::Yaml, PARSER_STACK));
            assert!(
                message.ends_with(": nested more than 64 levels deep"),
                "{message}"
            );
        }
    }

    #[test]
    fn nesting_within_the_limit_is_read() {
        let deep = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        let text = format!("{WEB}x-extra: {deep}\n");
        let pods = parse_bounded(text.into_bytes(), Format::Yaml, PARSER_STACK).expect("valid");
        assert_eq!(
            pods[0].warnings,
            ["document 1: unknown field x-extra is ignored"]
        );
    }

    #[test]
    fn json_nested_ten_thousand_deep_is_refused_within_a_small_stack() {
        let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        for text in [arrays, objects] {
            let message = syntax_message(parse_bounded(text.into_bytes(), Format::Json, 512 << 10));
            assert!(message.ends_with("recursion limit exceeded"), "{message}");
        }
    }

    #[test]
    fn invalid_utf8_json_is_a_syntax_error() {
        let err = parse_manifest(&p(), Format::Json, b"{\"apiVersion\": \"v\xff1\"}").unwrap_err();
        assert!(
            matches!(err, ManifestError::Syntax { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn thousands_of_documents_are_refused() {
        let message = syntax_message(yaml(&"---\na: 1\n".repeat(2_000)));
        assert!(message.ends_with(": more than 1024 documents"), "{message}");
    }
}
